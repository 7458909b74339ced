//! The segment document as sent to the daemon: the one place that knows the JSON names.

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::id::{SegmentId, TraceId};

/// The `"type"` of an independent subsegment document.
const SUBSEGMENT_TYPE: &str = "subsegment";
/// Metadata namespace when none is given.
pub(crate) const DEFAULT_NAMESPACE: &str = "default";
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
pub(crate) struct Timestamp(u64);

impl Timestamp {
    pub(crate) fn now() -> Self {
        Timestamp(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(0),
        )
    }

    /// `self` plus the time elapsed since `since`: end times come from the monotonic
    /// clock, so `end_time >= start_time` even if the wall clock steps back.
    pub(crate) fn after(self, since: Instant) -> Self {
        Timestamp(self.0 + since.elapsed().as_micros() as u64)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0 as f64 / 1e6)
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

/// Annotations in insertion order; a key set twice keeps its last value.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Annotations(Vec<(String, AnnotationValue)>);

impl Annotations {
    pub(crate) fn insert(&mut self, key: &str, value: AnnotationValue) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key.to_owned(), value)),
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

/// Metadata: namespace → key → JSON, each value encoded when it was put.
#[derive(Clone, Debug, Default)]
pub(crate) struct Metadata(Vec<(String, KeyValues)>);

/// One namespace's entries, in insertion order.
type KeyValues = Vec<(String, Box<RawValue>)>;

impl Metadata {
    pub(crate) fn insert(&mut self, namespace: &str, key: &str, value: Box<RawValue>) {
        let entries = match self.0.iter().position(|(ns, _)| ns == namespace) {
            Some(i) => &mut self.0[i].1,
            None => {
                self.0.push((namespace.to_owned(), Vec::new()));
                let last = self.0.len() - 1;
                &mut self.0[last].1
            }
        };
        match entries.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => entries.push((key.to_owned(), value)),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

struct Entries<'a>(&'a [(String, Box<RawValue>)]);

impl Serialize for Entries<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl Serialize for Metadata {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (ns, entries) in &self.0 {
            map.serialize_entry(ns, &Entries(entries))?;
        }
        map.end()
    }
}

/// `namespace` of a subsegment for an AWS SDK call.
#[cfg(feature = "aws-sdk")]
pub(crate) const AWS_NAMESPACE: &str = "aws";

/// `http` of a subsegment for a downstream call.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Http {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<HttpResponse>,
}

/// `http.response`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct HttpResponse {
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_length: Option<u64>,
}

/// `aws` of a subsegment for an AWS SDK call. `parameters` are the recorded request
/// parameters, already snake_cased (`table_name`, `bucket_name`, …).
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Aws {
    pub operation: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_2: Option<String>,
    pub retries: u32,
    #[serde(flatten)]
    pub parameters: serde_json::Map<String, serde_json::Value>,
}

/// Whether a document is a top-level segment or an independent subsegment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Segment,
    Subsegment,
}

impl Serialize for Kind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Kind::Subsegment => s.serialize_str(SUBSEGMENT_TYPE),
            // Skipped by `skip_serializing_if`; segments carry no `type`.
            Kind::Segment => s.serialize_none(),
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Kind {
    fn is_segment(&self) -> bool {
        *self == Kind::Segment
    }
}

/// One segment or subsegment document.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Record {
    pub name: Name,
    pub id: SegmentId,
    pub trace_id: TraceId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<SegmentId>,
    #[serde(rename = "type", skip_serializing_if = "Kind::is_segment")]
    pub kind: Kind,
    pub start_time: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Timestamp>,
    #[serde(skip_serializing_if = "is_false")]
    pub in_progress: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<&'static str>,
    #[serde(skip_serializing_if = "is_false")]
    pub error: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub throttle: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub fault: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
    #[serde(skip_serializing_if = "Annotations::is_empty")]
    pub annotations: Annotations,
    #[serde(skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<Http>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws: Option<Aws>,
}

/// Ways to make a document smaller, tried in order until it fits one datagram. Every
/// field that can grow is cut by one of them, and the last leaves only the fields of
/// fixed size, so every document can be made to fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shrink {
    /// All metadata (user data: most likely what is large).
    Metadata,
    /// The largest request parameter recorded on an AWS call (again while it helps).
    Parameters,
    /// Exception stacks.
    Stacks,
    /// Exception messages and types, cut to [`SHRUNK_TEXT_CHARS`].
    Messages,
    /// All annotations.
    Annotations,
    /// Every exception but the first.
    Exceptions,
    /// Everything else that can grow: the cause, `aws` and `http`.
    Rest,
}

impl Shrink {
    pub(crate) const ALL: [Shrink; 7] = [
        Shrink::Metadata,
        Shrink::Parameters,
        Shrink::Stacks,
        Shrink::Messages,
        Shrink::Annotations,
        Shrink::Exceptions,
        Shrink::Rest,
    ];

    fn label(self) -> &'static str {
        match self {
            Shrink::Metadata => "metadata",
            Shrink::Parameters => "aws_parameters",
            Shrink::Stacks => "stacks",
            Shrink::Messages => "messages",
            Shrink::Annotations => "annotations",
            Shrink::Exceptions => "exceptions",
            Shrink::Rest => "cause_aws_http",
        }
    }
}

/// Exception messages and types are cut to this many characters when a document is too
/// large.
const SHRUNK_TEXT_CHARS: usize = 1024;

/// Cuts `s` to `max` characters; whether it changed.
fn cut(s: &mut String, max: usize) -> bool {
    let keep = crate::sanitize::truncate_chars(s, max).len();
    let changed = keep < s.len();
    s.truncate(keep);
    changed
}

impl Record {
    pub(crate) fn new(
        name: Name,
        id: SegmentId,
        trace_id: TraceId,
        parent_id: Option<SegmentId>,
        kind: Kind,
    ) -> Self {
        Record {
            name,
            id,
            trace_id,
            parent_id,
            kind,
            start_time: Timestamp::now(),
            end_time: None,
            in_progress: false,
            namespace: None,
            error: false,
            throttle: false,
            fault: false,
            cause: None,
            annotations: Annotations::default(),
            metadata: Metadata::default(),
            http: None,
            aws: None,
        }
    }

    /// Adds exceptions to the document's own cause (replacing a reference to a child's).
    pub(crate) fn add_exceptions(&mut self, new: Vec<Exception>) {
        match &mut self.cause {
            Some(Cause::Exceptions { exceptions, .. }) => exceptions.extend(new),
            _ => self.cause = Some(Cause::exceptions(new)),
        }
    }

    fn exceptions_mut(&mut self) -> &mut [Exception] {
        match &mut self.cause {
            Some(Cause::Exceptions { exceptions, .. }) => exceptions,
            _ => &mut [],
        }
    }

    /// Applies one shrinking step; returns whether it removed anything.
    pub(crate) fn shrink(&mut self, step: Shrink) -> bool {
        let changed = match step {
            Shrink::Metadata => {
                // What shrinking itself noted does not count.
                let had = self.metadata.0.iter().any(|(ns, entries)| {
                    ns != SDK_NAMESPACE || entries.iter().any(|(k, _)| k != TRUNCATED_KEY)
                });
                if had {
                    self.metadata.clear();
                }
                had
            }
            Shrink::Parameters => self.aws.as_mut().is_some_and(|aws| {
                let largest = aws
                    .parameters
                    .iter()
                    .max_by_key(|(k, v)| k.len() + v.to_string().len())
                    .map(|(k, _)| k.clone());
                largest.is_some_and(|k| aws.parameters.remove(&k).is_some())
            }),
            Shrink::Annotations => {
                let had = !self.annotations.is_empty();
                self.annotations = Annotations::default();
                had
            }
            Shrink::Stacks => {
                let mut changed = false;
                for e in self
                    .exceptions_mut()
                    .iter_mut()
                    .filter(|e| !e.stack.is_empty())
                {
                    e.truncated = Some(e.truncated.unwrap_or(0) + e.stack.len() as u32);
                    e.stack.clear();
                    changed = true;
                }
                changed
            }
            Shrink::Messages => {
                let mut changed = false;
                for e in self.exceptions_mut() {
                    changed |= cut(&mut e.message, SHRUNK_TEXT_CHARS);
                    changed |= cut(&mut e.kind, SHRUNK_TEXT_CHARS);
                }
                changed
            }
            Shrink::Exceptions => match &mut self.cause {
                Some(Cause::Exceptions { exceptions, .. }) if exceptions.len() > 1 => {
                    exceptions.truncate(1);
                    exceptions[0].cause = None;
                    true
                }
                _ => false,
            },
            Shrink::Rest => {
                let had = self.cause.is_some() || self.aws.is_some() || self.http.is_some();
                self.cause = None;
                self.aws = None;
                self.http = None;
                had
            }
        };
        if changed {
            self.note_truncated(step);
        }
        changed
    }

    fn note_truncated(&mut self, step: Shrink) {
        let mut cut: Vec<&str> = Vec::new();
        if let Some((_, entries)) = self.metadata.0.iter().find(|(ns, _)| ns == SDK_NAMESPACE) {
            if let Some((_, v)) = entries.iter().find(|(k, _)| k == TRUNCATED_KEY) {
                cut = serde_json::from_str(v.get()).unwrap_or_default();
            }
        }
        if cut.contains(&step.label()) {
            return;
        }
        cut.push(step.label());
        if let Ok(v) = serde_json::value::to_raw_value(&cut) {
            self.metadata.insert(SDK_NAMESPACE, TRUNCATED_KEY, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An exception with a one-frame stack.
    fn exception(kind: String, message: String) -> Exception {
        Exception {
            id: SegmentId::random(),
            message,
            kind,
            remote: false,
            cause: None,
            stack: vec![StackFrame {
                path: "a.rs".into(),
                line: 1,
                label: "f".into(),
            }],
            truncated: None,
        }
    }

    fn record() -> Record {
        Record::new(
            "n".into(),
            SegmentId::parse("1111222233334444").unwrap(),
            TraceId::parse("1-5759e988-bd862e3fe1be46a994272793").unwrap(),
            SegmentId::parse("53995c3f42cd8ad8"),
            Kind::Subsegment,
        )
    }

    #[test]
    fn minimal_subsegment_json() {
        let mut r = record();
        r.start_time = Timestamp(1_795_460_769_158_351);
        r.end_time = Some(Timestamp(1_795_460_769_158_362));
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "name": "n",
                "id": "1111222233334444",
                "trace_id": "1-5759e988-bd862e3fe1be46a994272793",
                "parent_id": "53995c3f42cd8ad8",
                "type": "subsegment",
                "start_time": 1795460769.158351,
                "end_time": 1795460769.158362,
            })
        );
    }

    #[test]
    fn segments_have_no_type_or_parent() {
        let mut r = record();
        r.kind = Kind::Segment;
        r.parent_id = None;
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert!(v.get("type").is_none());
        assert!(v.get("parent_id").is_none());
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
        let s = serde_json::to_string(&r).unwrap();
        assert!(s.contains(r#""annotations":{"b":true,"a":"x"}"#), "{s}");
        assert!(
            s.contains(r#""metadata":{"ns":{"k":2},"default":{"j":[1,2]}}"#),
            "{s}"
        );
    }

    #[test]
    fn shrinking_marks_what_was_cut() {
        let mut r = record();
        r.metadata
            .insert("ns", "k", serde_json::value::to_raw_value(&"big").unwrap());
        r.add_exceptions(vec![exception("E".into(), "m".repeat(5000))]);
        assert!(r.shrink(Shrink::Metadata));
        assert!(r.shrink(Shrink::Stacks));
        assert!(r.shrink(Shrink::Messages));
        assert!(!r.shrink(Shrink::Exceptions));
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v["metadata"],
            serde_json::json!({"xray_lambda": {"truncated": ["metadata", "stacks", "messages"]}})
        );
        let e = &v["cause"]["exceptions"][0];
        assert_eq!(e["truncated"], 1);
        assert!(e.get("stack").is_none());
        assert_eq!(e["message"].as_str().unwrap().len(), SHRUNK_TEXT_CHARS);
    }

    /// The emitter applies each step for as long as it changes something: every step
    /// must run out, including after the notes shrinking itself leaves.
    #[test]
    fn every_shrink_step_runs_out() {
        let mut r = record();
        r.metadata
            .insert("ns", "k", serde_json::value::to_raw_value(&"v").unwrap());
        r.annotations.insert("a", 1i64.into());
        let mut parameters = serde_json::Map::new();
        for i in 0..5 {
            parameters.insert(format!("p{i}"), i.into());
        }
        r.aws = Some(Aws {
            parameters,
            ..Aws::default()
        });
        r.add_exceptions(
            (0..3)
                .map(|_| exception("k".repeat(3000), "m".repeat(3000)))
                .collect(),
        );
        for step in Shrink::ALL {
            let mut applied = 0;
            while r.shrink(step) {
                applied += 1;
                assert!(applied <= 5, "{step:?} does not run out");
            }
        }
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v["metadata"],
            serde_json::json!({"xray_lambda": {"truncated": [
                "metadata", "aws_parameters", "stacks", "messages", "annotations",
                "exceptions", "cause_aws_http"
            ]}})
        );
    }
}
