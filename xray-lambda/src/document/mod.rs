//! The segment document as sent to the daemon: the one place that knows the JSON names.
//!
//! [`Record`] is a segment or subsegment being recorded; [`Subtree`] is one that ended,
//! encoded with the subsegments that ended under it nested inside; [`Shrink`] makes a
//! record fit one datagram.

mod encode;
mod shrink;

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::id::{SegmentId, TraceId};

pub(crate) use encode::{report, Children, Shrunk, Subtree, MAX_DOCUMENT_PREFIX};
pub(crate) use shrink::Shrink;
/// Metadata namespace when none is given.
pub(crate) const DEFAULT_NAMESPACE: &str = "default";
/// Metadata namespace of the fields of `tracing` spans and events.
#[cfg(feature = "tracing-layer")]
pub(crate) const TRACING_NAMESPACE: &str = "tracing";
/// Metadata namespace of what a database query reports besides its statement.
#[cfg(feature = "tracing-layer")]
pub(crate) const SQL_NAMESPACE: &str = "sql";
/// Metadata namespace for what this crate itself notes on a document.
pub(crate) const SDK_NAMESPACE: &str = "xray_lambda";
/// Key (under [`SDK_NAMESPACE`]) saying a subsegment did not end by itself, and why.
pub(crate) const INCOMPLETE_KEY: &str = "incomplete";
/// Key (under [`SDK_NAMESPACE`]) listing what was cut to fit one datagram.
pub(crate) const TRUNCATED_KEY: &str = "truncated";

/// A segment or subsegment name: borrowed for literals, so naming costs no allocation.
pub(crate) type Name = Cow<'static, str>;

/// How an error counts in X-Ray's statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A server-side failure (`fault`, like an HTTP 5xx). The default.
    #[default]
    Fault,
    /// A client error (`error`, like an HTTP 4xx).
    Error,
    /// A throttled request (`throttle` and `error`, like an HTTP 429).
    Throttle,
}

impl ErrorKind {
    /// How an HTTP status counts: 429 a throttle, another 4xx a client error, 5xx a
    /// fault; `None` below 400.
    #[cfg(any(
        feature = "aws-sdk",
        feature = "__http-client",
        feature = "http-server"
    ))]
    pub(crate) fn for_status(status: u16) -> Option<ErrorKind> {
        match status {
            429 => Some(ErrorKind::Throttle),
            400..=499 => Some(ErrorKind::Error),
            500.. => Some(ErrorKind::Fault),
            _ => None,
        }
    }

    pub(crate) fn set_flags(self, r: &mut Record) {
        match self {
            ErrorKind::Fault => r.fault = true,
            ErrorKind::Error => r.error = true,
            ErrorKind::Throttle => {
                r.error = true;
                r.throttle = true;
            }
        }
    }
}

/// Epoch time in microseconds; on the wire, seconds as a JSON number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Timestamp(pub(crate) u64);

impl Timestamp {
    pub(crate) fn now() -> Self {
        Timestamp(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(0),
        )
    }

    /// Whole seconds and the microseconds after them.
    fn parts(self) -> (u64, u32) {
        (self.0 / 1_000_000, (self.0 % 1_000_000) as u32)
    }
}

/// Wall-clock times from the monotonic clock: read once, then every time is the anchor
/// plus the time elapsed since. One clock read per timestamp, and within a trace
/// `end_time >= start_time` even if the wall clock steps back.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    wall: Timestamp,
    at: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Clock {
            wall: Timestamp::now(),
            at: Instant::now(),
        }
    }

    /// The wall-clock time of `instant`.
    pub(crate) fn timestamp(&self, instant: Instant) -> Timestamp {
        let micros = |d: Duration| d.as_micros() as u64;
        match instant.checked_duration_since(self.at) {
            Some(after) => Timestamp(self.wall.0 + micros(after)),
            None => Timestamp(self.wall.0.saturating_sub(micros(self.at - instant))),
        }
    }
}

/// An annotation value: indexed by X-Ray and usable in filter expressions.
#[derive(Clone, Debug, PartialEq)]
pub enum AnnotationValue {
    /// A string (at most 1000 characters are kept).
    String(String),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    UInt(u64),
    /// A finite float (NaN and infinities are refused).
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl Serialize for AnnotationValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AnnotationValue::String(v) => s.serialize_str(v),
            AnnotationValue::Int(v) => s.serialize_i64(*v),
            AnnotationValue::UInt(v) => s.serialize_u64(*v),
            AnnotationValue::Float(v) => s.serialize_f64(*v),
            AnnotationValue::Bool(v) => s.serialize_bool(*v),
        }
    }
}

macro_rules! annotation_from {
    ($($t:ty => $variant:ident as $as:ty),* $(,)?) => {$(
        impl From<$t> for AnnotationValue {
            fn from(v: $t) -> Self {
                AnnotationValue::$variant(v as $as)
            }
        }
    )*};
}
annotation_from!(
    i8 => Int as i64, i16 => Int as i64, i32 => Int as i64, i64 => Int as i64, isize => Int as i64,
    u8 => UInt as u64, u16 => UInt as u64, u32 => UInt as u64, u64 => UInt as u64, usize => UInt as u64,
    f32 => Float as f64, f64 => Float as f64,
);

impl From<bool> for AnnotationValue {
    fn from(v: bool) -> Self {
        AnnotationValue::Bool(v)
    }
}
impl From<&str> for AnnotationValue {
    fn from(v: &str) -> Self {
        AnnotationValue::String(v.to_owned())
    }
}
impl From<String> for AnnotationValue {
    fn from(v: String) -> Self {
        AnnotationValue::String(v)
    }
}
impl From<&String> for AnnotationValue {
    fn from(v: &String) -> Self {
        AnnotationValue::String(v.clone())
    }
}
impl From<std::borrow::Cow<'_, str>> for AnnotationValue {
    fn from(v: std::borrow::Cow<'_, str>) -> Self {
        AnnotationValue::String(v.into_owned())
    }
}

/// A stack frame of an exception.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct StackFrame {
    pub path: String,
    pub line: u32,
    pub label: String,
}

/// One exception of a `cause`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Exception {
    pub id: SegmentId,
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub remote: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<SegmentId>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stack: Vec<StackFrame>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<u32>,
}

/// A subsegment's `cause`: its own exceptions, or the id of an exception recorded in a
/// child that propagated up.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub(crate) enum Cause {
    Ref(SegmentId),
    Exceptions {
        working_directory: &'static str,
        exceptions: Vec<Exception>,
    },
}

impl Cause {
    pub(crate) fn exceptions(exceptions: Vec<Exception>) -> Self {
        static CWD: OnceLock<String> = OnceLock::new();
        let working_directory = CWD.get_or_init(|| {
            std::env::current_dir()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        });
        Cause::Exceptions {
            working_directory,
            exceptions,
        }
    }
}

/// An annotation key or a metadata namespace or key: a `&str` is copied, a [`Name`]
/// (borrowed for `'static` strings such as `tracing` field names) is kept as it is.
pub(crate) trait Key {
    fn as_str(&self) -> &str;
    fn into_name(self) -> Name;
}

impl Key for &str {
    fn as_str(&self) -> &str {
        self
    }
    fn into_name(self) -> Name {
        Cow::Owned(self.to_owned())
    }
}

impl Key for Name {
    fn as_str(&self) -> &str {
        self
    }
    fn into_name(self) -> Name {
        self
    }
}

/// Annotations in insertion order; a key set twice keeps its last value.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Annotations(Vec<(Name, AnnotationValue)>);

impl Annotations {
    pub(crate) fn insert(&mut self, key: impl Key, value: AnnotationValue) {
        match self.0.iter_mut().find(|(k, _)| k == key.as_str()) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key.into_name(), value)),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Annotations {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// A metadata value: JSON encoded when it was put, or a scalar kept as it is until the
/// document is encoded (a number or a boolean then costs no allocation).
#[derive(Clone, Debug)]
pub(crate) enum MetadataValue {
    Json(Box<RawValue>),
    Scalar(AnnotationValue),
}

impl From<Box<RawValue>> for MetadataValue {
    fn from(raw: Box<RawValue>) -> Self {
        MetadataValue::Json(raw)
    }
}

impl From<AnnotationValue> for MetadataValue {
    /// JSON has no NaN or infinity: such floats are kept as their text.
    fn from(value: AnnotationValue) -> Self {
        match value {
            AnnotationValue::Float(f) if !f.is_finite() => {
                MetadataValue::Scalar(AnnotationValue::String(f.to_string()))
            }
            v => MetadataValue::Scalar(v),
        }
    }
}

impl Serialize for MetadataValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MetadataValue::Json(raw) => raw.serialize(s),
            MetadataValue::Scalar(v) => v.serialize(s),
        }
    }
}

/// Metadata: namespace → key → value. Kept flat (one allocation for any number of
/// entries) and grouped by namespace, in the order each namespace first appeared, when
/// encoded.
#[derive(Clone, Debug, Default)]
pub(crate) struct Metadata(Vec<(Name, Name, MetadataValue)>);

impl Metadata {
    pub(crate) fn insert(
        &mut self,
        namespace: impl Key,
        key: impl Key,
        value: impl Into<MetadataValue>,
    ) {
        let value = value.into();
        let existing = self
            .0
            .iter_mut()
            .find(|(ns, k, _)| ns == namespace.as_str() && k == key.as_str());
        match existing {
            Some(slot) => slot.2 = value,
            None => self.0.push((namespace.into_name(), key.into_name(), value)),
        }
    }

    /// The value under `namespace` and `key`.
    pub(crate) fn get(&self, namespace: &str, key: &str) -> Option<&MetadataValue> {
        self.0
            .iter()
            .find(|(ns, k, _)| ns == namespace && k == key)
            .map(|(_, _, v)| v)
    }

    /// Whether anything but what `keep` says is there.
    pub(crate) fn has_other_than(&self, keep: impl Fn(&str, &str) -> bool) -> bool {
        self.0.iter().any(|(ns, k, _)| !keep(ns, k))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

impl Metadata {
    /// Each namespace, in the order it first appeared, with its entries.
    pub(crate) fn namespaces(
        &self,
    ) -> impl Iterator<Item = (&str, impl Iterator<Item = (&str, &MetadataValue)>)> {
        let all = &self.0;
        all.iter().enumerate().filter_map(move |(i, (ns, _, _))| {
            if all[..i].iter().any(|(seen, _, _)| seen == ns) {
                return None;
            }
            let entries = all[i..]
                .iter()
                .filter(move |(n, _, _)| n == ns)
                .map(|(_, k, v)| (&**k, v));
            Some((&**ns, entries))
        })
    }
}

/// The entries of one namespace.
struct Entries<I>(std::cell::Cell<Option<I>>);

impl<'a, I: Iterator<Item = (&'a str, &'a MetadataValue)>> Serialize for Entries<I> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (k, v) in self.0.take().into_iter().flatten() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl Serialize for Metadata {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (ns, entries) in self.namespaces() {
            map.serialize_entry(ns, &Entries(std::cell::Cell::new(Some(entries))))?;
        }
        map.end()
    }
}

/// `namespace` of a subsegment for an AWS SDK call.
#[cfg(feature = "aws-sdk")]
pub(crate) const AWS_NAMESPACE: &str = "aws";

/// `http` of a subsegment for a downstream call (written by `encode`).
#[derive(Clone, Debug, Default)]
pub(crate) struct Http {
    pub request: Option<HttpRequest>,
    pub response: Option<HttpResponse>,
}

/// `http.request`. Its strings are cut to [`MAX_HTTP_FIELD`] characters when encoded.
#[derive(Clone, Debug, Default)]
pub(crate) struct HttpRequest {
    pub method: String,
    pub url: String,
    /// Incoming requests only.
    pub user_agent: Option<String>,
    pub client_ip: Option<String>,
    /// Whether `client_ip` came from `X-Forwarded-For` (and so is not verified).
    pub x_forwarded_for: bool,
}

/// The most characters AWS's schema allows in `http.request` strings.
pub(crate) const MAX_HTTP_FIELD: usize = 250;

/// `http.response`.
#[derive(Clone, Debug)]
pub(crate) struct HttpResponse {
    pub status: u16,
    pub content_length: Option<u64>,
}

/// `namespace` of a subsegment for a call to a service that is not AWS (a database, an
/// HTTP API).
#[cfg(any(feature = "tracing-layer", feature = "__http-client"))]
pub(crate) const REMOTE_NAMESPACE: &str = "remote";

/// `sql` of a subsegment for a database query. Only the statement as written (with its
/// placeholders) is kept: bound values never reach it.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Sql {
    pub sanitized_query: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_type: Option<String>,
}

/// `aws` of a subsegment for an AWS SDK call. `parameters` are the recorded request
/// parameters, already snake_cased (`table_name`, `bucket_name`, …).
#[derive(Clone, Debug, Default)]
pub(crate) struct Aws {
    pub operation: String,
    pub region: Option<String>,
    pub request_id: Option<String>,
    pub id_2: Option<String>,
    pub retries: u32,
    pub parameters: serde_json::Map<String, serde_json::Value>,
}

/// What a segment says about where its service runs (`origin`, and the `aws` fields
/// describing the host), and which SDK sent it; encoded once per process.
#[derive(Clone, Debug)]
pub(crate) struct Origin {
    origin: Option<&'static str>,
    /// The `aws` object.
    aws: Option<Box<RawValue>>,
}

/// Where a service outside Lambda runs, as far as it could be found out.
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(not(feature = "http-server"), allow(dead_code))]
pub(crate) enum Platform {
    /// Nothing known.
    #[default]
    Unknown,
    /// A container of an ECS task (`AWS::ECS::Container`).
    Ecs {
        container: Option<String>,
        container_id: Option<String>,
        container_arn: Option<String>,
    },
    /// An EC2 instance (`AWS::EC2::Instance`).
    Ec2 {
        instance_id: Option<String>,
        availability_zone: Option<String>,
        instance_size: Option<String>,
        ami_id: Option<String>,
    },
}

impl Origin {
    #[cfg_attr(not(feature = "http-server"), allow(dead_code))]
    pub(crate) fn new(platform: &Platform) -> Self {
        #[derive(Serialize)]
        struct Aws<'a> {
            xray: Sdk,
            #[serde(skip_serializing_if = "Option::is_none")]
            ecs: Option<Ecs<'a>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            ec2: Option<Ec2<'a>>,
        }
        #[derive(Serialize)]
        struct Sdk {
            sdk: &'static str,
            sdk_version: &'static str,
        }
        #[derive(Serialize)]
        struct Ecs<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            container: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            container_id: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            container_arn: Option<&'a str>,
        }
        #[derive(Serialize)]
        struct Ec2<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            instance_id: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            availability_zone: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            instance_size: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            ami_id: Option<&'a str>,
        }
        let mut aws = Aws {
            xray: Sdk {
                sdk: "xray-lambda for Rust",
                sdk_version: env!("CARGO_PKG_VERSION"),
            },
            ecs: None,
            ec2: None,
        };
        let origin = match platform {
            Platform::Unknown => None,
            Platform::Ecs {
                container,
                container_id,
                container_arn,
            } => {
                aws.ecs = Some(Ecs {
                    container: container.as_deref(),
                    container_id: container_id.as_deref(),
                    container_arn: container_arn.as_deref(),
                });
                Some("AWS::ECS::Container")
            }
            Platform::Ec2 {
                instance_id,
                availability_zone,
                instance_size,
                ami_id,
            } => {
                aws.ec2 = Some(Ec2 {
                    instance_id: instance_id.as_deref(),
                    availability_zone: availability_zone.as_deref(),
                    instance_size: instance_size.as_deref(),
                    ami_id: ami_id.as_deref(),
                });
                Some("AWS::EC2::Instance")
            }
        };
        Origin {
            origin,
            // Strings and objects always encode.
            aws: serde_json::value::to_raw_value(&aws).ok(),
        }
    }

    /// The `origin` value: the service type sampling rules match (`""` when unknown).
    #[cfg_attr(not(feature = "http-server"), allow(dead_code))]
    pub(crate) fn service_type(&self) -> &'static str {
        self.origin.unwrap_or("")
    }
}

/// Whether a document is a top-level segment or a subsegment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Segment,
    Subsegment,
}

/// One segment or subsegment document, as it is recorded.
#[derive(Clone, Debug)]
pub(crate) struct Record {
    pub name: Name,
    pub id: SegmentId,
    pub trace_id: TraceId,
    pub parent_id: Option<SegmentId>,
    pub kind: Kind,
    pub start_time: Timestamp,
    pub end_time: Option<Timestamp>,
    pub namespace: Option<&'static str>,
    pub error: bool,
    pub throttle: bool,
    pub fault: bool,
    /// Boxed, as `http`.
    pub cause: Option<Box<Cause>>,
    pub annotations: Annotations,
    pub metadata: Metadata,
    /// Boxed: most subsegments have none, and a smaller record is cheaper to move.
    pub http: Option<Box<Http>>,
    /// Boxed: only AWS calls have it, and a smaller record is cheaper to move.
    pub aws: Option<Box<Aws>>,
    /// Boxed: only database queries have it.
    pub sql: Option<Box<Sql>>,
    /// Segments begun for incoming requests: where the service runs. Shared by all.
    pub origin: Option<std::sync::Arc<Origin>>,
}

impl Record {
    pub(crate) fn new(
        name: Name,
        id: SegmentId,
        trace_id: TraceId,
        parent_id: Option<SegmentId>,
        kind: Kind,
        start_time: Timestamp,
    ) -> Self {
        Record {
            name,
            id,
            trace_id,
            parent_id,
            kind,
            start_time,
            end_time: None,
            namespace: None,
            error: false,
            throttle: false,
            fault: false,
            cause: None,
            annotations: Annotations::default(),
            metadata: Metadata::default(),
            http: None,
            aws: None,
            sql: None,
            origin: None,
        }
    }

    /// Makes it what [`Record::new`] gives, reusing what it can (the annotations' and
    /// metadata's room).
    pub(crate) fn reset(
        &mut self,
        name: Name,
        id: SegmentId,
        trace_id: TraceId,
        parent_id: Option<SegmentId>,
        kind: Kind,
        start_time: Timestamp,
    ) {
        // Every field, by name: a field added later cannot be forgotten here.
        let Record {
            name: old_name,
            id: old_id,
            trace_id: old_trace_id,
            parent_id: old_parent_id,
            kind: old_kind,
            start_time: old_start_time,
            end_time,
            namespace,
            error,
            throttle,
            fault,
            cause,
            annotations,
            metadata,
            http,
            aws,
            sql,
            origin,
        } = self;
        *old_name = name;
        *old_id = id;
        *old_trace_id = trace_id;
        *old_parent_id = parent_id;
        *old_kind = kind;
        *old_start_time = start_time;
        *end_time = None;
        *namespace = None;
        (*error, *throttle, *fault) = (false, false, false);
        if cause.is_some() {
            *cause = None;
        }
        annotations.0.clear();
        metadata.0.clear();
        if http.is_some() {
            *http = None;
        }
        if aws.is_some() {
            *aws = None;
        }
        if sql.is_some() {
            *sql = None;
        }
        if origin.is_some() {
            *origin = None;
        }
    }

    /// Adds exceptions to the document's own cause (replacing a reference to a child's).
    pub(crate) fn add_exceptions(&mut self, new: Vec<Exception>) {
        match self.cause.as_deref_mut() {
            Some(Cause::Exceptions { exceptions, .. }) => exceptions.extend(new),
            _ => self.cause = Some(Box::new(Cause::exceptions(new))),
        }
    }

    /// Notes, under this crate's metadata namespace, why the record did not end by
    /// itself.
    pub(crate) fn note_incomplete(&mut self, reason: &str) {
        if let Ok(v) = serde_json::value::to_raw_value(reason) {
            self.metadata.insert(SDK_NAMESPACE, INCOMPLETE_KEY, v);
        }
    }
}

#[cfg(test)]
pub(crate) mod test_records {
    //! Records and exceptions for the tests of the document layer.
    use super::*;

    /// A subsegment document with fixed ids and times.
    pub(crate) fn record() -> Record {
        let mut r = Record::new(
            "n".into(),
            SegmentId::parse("1111222233334444").unwrap(),
            TraceId::parse("1-5759e988-bd862e3fe1be46a994272793").unwrap(),
            SegmentId::parse("53995c3f42cd8ad8"),
            Kind::Subsegment,
            Timestamp(1_795_460_769_158_351),
        );
        r.end_time = Some(Timestamp(1_795_460_769_158_362));
        r
    }

    /// An exception as the crate makes them, with a one-frame stack, but with any
    /// type, however long.
    pub(crate) fn exception(kind: String, message: String) -> Exception {
        let frame = StackFrame {
            path: "a.rs".into(),
            line: 1,
            label: "f".into(),
        };
        Exception {
            kind,
            ..crate::exception::exception(String::new(), message, Some(frame))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_records::record;
    use super::*;

    #[test]
    fn clock_times_follow_the_monotonic_clock() {
        let clock = Clock::new();
        let start = Instant::now();
        let later = start + Duration::from_millis(1500);
        let (a, b) = (clock.timestamp(start), clock.timestamp(later));
        assert_eq!(b.0 - a.0, 1_500_000);
        assert!(a.0.abs_diff(Timestamp::now().0) < 1_000_000);
        let before = clock.timestamp(clock.at - Duration::from_secs(1));
        assert_eq!(clock.wall.0 - before.0, 1_000_000);
    }

    #[test]
    fn annotations_and_metadata_keep_order_and_last_value() {
        let mut r = record();
        r.annotations.insert("b", 1i64.into());
        r.annotations.insert("a", "x".into());
        r.annotations.insert("b", true.into());
        r.metadata
            .insert("ns", "k", serde_json::value::to_raw_value(&1).unwrap());
        r.metadata
            .insert("ns", "k", serde_json::value::to_raw_value(&2).unwrap());
        r.metadata.insert(
            "default",
            "j",
            serde_json::value::to_raw_value(&[1, 2]).unwrap(),
        );
        r.metadata
            .insert("ns", "l", serde_json::value::to_raw_value(&3).unwrap());
        let s = serde_json::to_string(&(&r.annotations, &r.metadata)).unwrap();
        assert_eq!(
            s, r#"[{"b":true,"a":"x"},{"ns":{"k":2,"l":3},"default":{"j":[1,2]}}]"#,
            "grouped by namespace, in the order each first appeared"
        );
    }
}
