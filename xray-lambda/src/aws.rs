//! [`XRayInterceptor`]: every AWS SDK for Rust call as a subsegment, and the trace
//! header on every request. Feature `aws-sdk` (on by default).
//!
//! The AWS SDK has no global registration: add the interceptor to each client's
//! config, or to a single call.
//!
//! ```no_run
//! # async fn example(sdk_config: aws_types::SdkConfig) {
//! use xray_lambda::aws::XRayInterceptor;
//!
//! // Every call of this client:
//! // let dynamodb = aws_sdk_dynamodb::Client::from_conf(
//! //     aws_sdk_dynamodb::config::Builder::from(&sdk_config)
//! //         .interceptor(XRayInterceptor::new())
//! //         .build(),
//! // );
//! // One call:
//! // s3.get_object().bucket("b").key("k")
//! //     .customize().interceptor(XRayInterceptor::new())
//! //     .send().await;
//! # let _ = (sdk_config, XRayInterceptor::new());
//! # }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextMut,
    FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse, Metadata};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::context::{self, Node};
use crate::document::{self, Http, AWS_NAMESPACE};
use crate::exception;
use crate::header::TraceHeader;
use crate::ErrorKind;

/// The request header that carries the trace, as a parsed name: the SDK parses a string
/// name on every insert (and, for one with capitals, copies it first).
const TRACE_HEADER: http::HeaderName = http::HeaderName::from_static("x-amzn-trace-id");
/// Where services put the request id: most, S3, a few others. Parsed names again: a
/// lookup by string parses it first.
const REQUEST_ID_HEADERS: [http::HeaderName; 3] = [
    http::HeaderName::from_static("x-amzn-requestid"),
    http::HeaderName::from_static("x-amz-request-id"),
    http::HeaderName::from_static("x-amzn-request-id"),
];
/// S3's extended request id.
const ID_2_HEADER: http::HeaderName = http::HeaderName::from_static("x-amz-id-2");
/// Subsegment name when the operation metadata is missing.
const UNKNOWN_SERVICE: &str = "AWS";

/// Error codes that mean "slow down", whatever the HTTP status.
const THROTTLING_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
    "TooManyRequestsException",
    "TransactionInProgressException",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// DynamoDB request parameters recorded when present (PROTOCOL §4): JSON key, and the
/// field it is recorded under (its snake_case form, spelled out so that no call has to
/// compute it).
const DYNAMODB_PARAMETERS: &[(&str, &str)] = &[
    ("TableName", "table_name"),
    ("IndexName", "index_name"),
    ("Limit", "limit"),
    ("Select", "select"),
    ("ConsistentRead", "consistent_read"),
    ("ProjectionExpression", "projection_expression"),
    ("ScanIndexForward", "scan_index_forward"),
    ("Segment", "segment"),
    ("TotalSegments", "total_segments"),
    ("ExclusiveStartTableName", "exclusive_start_table_name"),
];

/// Records each AWS SDK call made under a trace as a subsegment named after the service
/// (`DynamoDB`, `S3`, …) with the operation, region, request id, retries, HTTP status
/// and the request parameters X-Ray knows (`table_name`, `bucket_name`, `key`, …), and
/// sends the trace header with the request.
///
/// One subsegment per operation, however many attempts it takes (`aws.retries`). Safe
/// to share: per-call state lives in the call's config bag, not in the interceptor.
/// Without a trace it does nothing, and the SDK's own header handling is untouched.
#[derive(Clone, Default)]
pub struct XRayInterceptor {
    extra: Arc<Vec<ExtraParameter>>,
}

#[derive(Clone, Debug)]
struct ExtraParameter {
    service: String,
    operation: String,
    name: String,
    field: String,
}

impl fmt::Debug for XRayInterceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XRayInterceptor")
            .field("extra", &self.extra)
            .finish()
    }
}

impl XRayInterceptor {
    /// An interceptor recording the standard parameters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tells this instance from another registered for the same call: its address,
    /// stable while the SDK holds it (it is never zero-sized).
    fn id(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// Also records the request parameter `name` (as sent: a JSON body key, a form or
    /// query parameter, e.g. `"ReturnValues"`) of `service`'s `operation` (`"*"` for
    /// all), under its snake_case name (`return_values`).
    pub fn with_parameter(mut self, service: &str, operation: &str, name: &str) -> Self {
        Arc::make_mut(&mut self.extra).push(ExtraParameter {
            service: service.to_owned(),
            operation: operation.to_owned(),
            name: name.to_owned(),
            field: snake_case(name),
        });
        self
    }
}

/// What a recorded call carries through its config bag. The bag boxes it; hooks share
/// it by reference, hence the atomics.
#[derive(Debug)]
struct Call {
    /// The interceptor that recorded it ([`XRayInterceptor::id`]): another one
    /// registered for the same call leaves it alone.
    owner: usize,
    node: Arc<Node>,
    /// Made into text for each attempt: the request takes the text by value.
    header: TraceHeader,
    attempts: AtomicU32,
    parameters_recorded: AtomicBool,
}

impl Storable for Call {
    type Storer = StoreReplace<Self>;
}

// Tells the SDK which hooks this implements: it then skips the others, each of which it
// would otherwise call after a config-bag lookup (`DisableInterceptor`), about a fifth of
// this interceptor's own work per call.
#[aws_smithy_runtime_api::client::interceptors::dyn_dispatch_hint]
impl Intercept for XRayInterceptor {
    fn name(&self) -> &'static str {
        "XRayInterceptor"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Nothing to keep for a call that is not recorded: its header is read from the
        // current context when the request goes out.
        let Some(at) = context::current_recording() else {
            return Ok(());
        };
        if cfg.load::<Call>().is_some() {
            // Registered twice (on the client and on the call): one subsegment is enough.
            return Ok(());
        }
        // The operation's metadata is not in the bag yet: `identify` names the
        // subsegment once it is.
        let Some(node) = Node::child(at, UNKNOWN_SERVICE.into(), false) else {
            return Ok(());
        };
        node.with_record(|r| {
            r.namespace = Some(AWS_NAMESPACE);
            r.aws = Some(Box::default());
        });
        cfg.interceptor_state().store_put(Call {
            owner: self.id(),
            header: node.outgoing_header(),
            node,
            attempts: AtomicU32::new(0),
            parameters_recorded: AtomicBool::new(false),
        });
        Ok(())
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let header = match cfg.load::<Call>() {
            Some(call) if call.owner != self.id() => return Ok(()),
            Some(call) => {
                call.attempts.fetch_add(1, Ordering::Relaxed);
                if !call.parameters_recorded.swap(true, Ordering::Relaxed) {
                    record_parameters(&call.node, cfg, context.request(), &self.extra);
                }
                call.header.to_wire()
            }
            None => match context::current().and_then(|c| c.outgoing_header()) {
                Some(header) => header.to_wire(),
                None => return Ok(()),
            },
        };
        // After signing, so the header is never part of a signature; replacing whatever
        // the SDK's recursion detection put there from the process-wide variable.
        if let Err(e) = context
            .request_mut()
            .headers_mut()
            .try_insert(TRACE_HEADER, header)
        {
            tracing::debug!(error = %e, "trace header not added to the AWS request");
        }
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(call) = cfg.load::<Call>().filter(|c| c.owner == self.id()) else {
            return Ok(());
        };
        let node = &call.node;
        if !call.parameters_recorded.load(Ordering::Relaxed) {
            identify(node, cfg);
        }
        let retries = call.attempts.load(Ordering::Relaxed).saturating_sub(1);
        let response = context.response();
        node.with_record(|r| {
            if let Some(aws) = &mut r.aws {
                aws.retries = retries;
                if let Some(resp) = response {
                    aws.request_id = REQUEST_ID_HEADERS
                        .iter()
                        .find_map(|name| header(resp, name))
                        .map(str::to_owned);
                    aws.id_2 = header(resp, &ID_2_HEADER).map(str::to_owned);
                }
            }
            if let Some(resp) = response {
                r.http = Some(Box::new(Http {
                    request: None,
                    response: Some(document::HttpResponse {
                        status: resp.status().as_u16(),
                        content_length: header(resp, &http::header::CONTENT_LENGTH)
                            .and_then(|v| v.parse().ok()),
                    }),
                }));
            }
        });
        match (response, context.output_or_error()) {
            (Some(resp), _) if resp.status().as_u16() >= 400 => {
                record_service_error(node, resp, context)
            }
            (_, Some(Err(err))) => {
                let mut exceptions = exception::from_error(err, None);
                if let Some(first) = exceptions.first_mut() {
                    first.kind = orchestrator_error_kind(err).to_owned();
                }
                node.add_exceptions(exceptions, ErrorKind::Fault);
            }
            _ => {}
        }
        node.end();
        Ok(())
    }
}

/// The first value of a response header, if it is text.
fn header<'a>(resp: &'a HttpResponse, name: &http::HeaderName) -> Option<&'a str> {
    let value = resp.headers().get_all_bytes_by_name(name).next()?;
    std::str::from_utf8(value).ok()
}

/// The call's request parameters (after identifying the call: which ones X-Ray records
/// depends on the service), recorded once.
fn record_parameters(
    node: &Node,
    cfg: &ConfigBag,
    request: &HttpRequest,
    extra: &[ExtraParameter],
) {
    let metadata = identify(node, cfg);
    let (service, operation) = metadata.map_or(("", ""), |m| (m.service(), m.name()));
    let mut parameters = request_parameters(service, operation, request, extra);
    node.with_record(|r| {
        if let Some(aws) = &mut r.aws {
            // Into an empty map, a move rather than an insert per entry.
            aws.parameters.append(&mut parameters);
        }
    });
}

/// Names the subsegment after the service (`DynamoDB`, `S3`) and records the operation
/// and region, from what the SDK put in the config bag. Returns the operation metadata
/// it found, for callers that need it too.
fn identify<'a>(node: &Node, cfg: &'a ConfigBag) -> Option<&'a Metadata> {
    let metadata = cfg.load::<Metadata>()?;
    let region = cfg
        .load::<aws_types::region::Region>()
        .map(|r| r.as_ref().to_owned());
    node.with_record(|r| {
        r.name = crate::sanitize::sanitize_name(metadata.service().to_owned().into());
        if let Some(aws) = &mut r.aws {
            aws.operation = metadata.name().to_owned();
            aws.region = region;
        }
    });
    Some(metadata)
}

fn orchestrator_error_kind<E>(
    err: &aws_smithy_runtime_api::client::orchestrator::OrchestratorError<E>,
) -> &'static str {
    if err.is_timeout_error() {
        "TimeoutError"
    } else if let Some(c) = err.as_connector_error() {
        if c.is_timeout() {
            "TimeoutError"
        } else if c.is_io() {
            "ConnectionError"
        } else {
            "ConnectorError"
        }
    } else if err.is_response_error() {
        "ResponseError"
    } else if err.is_interceptor_error() {
        "InterceptorError"
    } else {
        "SdkError"
    }
}

/// A 4xx or 5xx answer: the service's error code and message as a remote exception.
fn record_service_error(
    node: &Node,
    resp: &HttpResponse,
    context: &FinalizerInterceptorContextRef<'_>,
) {
    let status = resp.status().as_u16();
    let (code, message) = error_code_and_message(resp);
    let code = code.unwrap_or_else(|| format!("HTTP {status}"));
    let message = message
        .or_else(|| match context.output_or_error() {
            Some(Err(e)) => Some(e.to_string()),
            _ => None,
        })
        .unwrap_or_default();
    let kind = if THROTTLING_CODES.contains(&code.as_str()) {
        ErrorKind::Throttle
    } else {
        ErrorKind::for_status(status).unwrap_or(ErrorKind::Error)
    };
    node.add_exceptions(vec![exception::remote(code, message)], kind);
}

/// The error code and message of an AWS error response: JSON (`__type`, `code`,
/// `message`), XML (`<Code>`, `<Message>`), or the `x-amzn-ErrorType` header.
fn error_code_and_message(resp: &HttpResponse) -> (Option<String>, Option<String>) {
    let header_code = resp.headers().get("x-amzn-errortype").map(clean_code);
    let Some(body) = resp.body().bytes().filter(|b| !b.is_empty()) else {
        return (header_code, None);
    };
    if let Ok(json) = serde_json::from_slice::<BTreeMap<String, Value>>(body) {
        let field = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| json.get(*k)?.as_str().map(str::to_owned))
        };
        let code = field(&["__type", "code", "Code"]).map(|c| clean_code(&c));
        return (
            header_code.or(code),
            field(&["message", "Message", "errorMessage"]),
        );
    }
    let text = String::from_utf8_lossy(body);
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find("</")? + start;
        Some(text[start..end].trim().to_owned())
    };
    (header_code.or_else(|| tag("Code")), tag("Message"))
}

/// `com.amazonaws.dynamodb.v20120810#ResourceNotFoundException` → the last part;
/// `Code:http://…` → `Code`.
fn clean_code(raw: &str) -> String {
    let after_hash = raw.rsplit('#').next().unwrap_or(raw);
    after_hash
        .split(':')
        .next()
        .unwrap_or(after_hash)
        .trim()
        .to_owned()
}

/// The request parameters X-Ray records for this call, snake_cased.
fn request_parameters(
    service: &str,
    operation: &str,
    request: &HttpRequest,
    extra: &[ExtraParameter],
) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    let standard: &[(&str, &str)] = match service {
        "DynamoDB" => DYNAMODB_PARAMETERS,
        "S3" => {
            s3_parameters(request, &mut out);
            &[]
        }
        "SQS" => &[("QueueUrl", "queue_url")],
        "SNS" => &[("TopicArn", "topic_arn")],
        // In the path for all but CreateFunction, which has it in the body.
        "Lambda" => match lambda_function(request) {
            Some(name) => {
                out.insert("function_name".into(), name.into());
                &[]
            }
            None => &[("FunctionName", "function_name")],
        },
        _ => &[],
    };
    let wanted = || {
        let extra = extra
            .iter()
            .filter(|p| p.service == service && (p.operation == operation || p.operation == "*"))
            .map(|p| (p.name.as_str(), p.field.as_str()));
        standard.iter().copied().chain(extra)
    };
    let table_names = service == "DynamoDB";
    if wanted().next().is_none() {
        return out;
    }
    // For S3 (and Lambda's Invoke) the body is the user's payload, possibly megabytes,
    // and never holds parameters.
    let view = RequestView::new(request, service != "S3", |key| {
        (table_names && key == "RequestItems") || wanted().any(|(name, _)| name == key)
    });
    for (name, field) in wanted() {
        if let Some(v) = view.get(name) {
            out.insert(field.to_owned(), v);
        }
    }
    if let Some(items) = view.json_raw("RequestItems") {
        if let Ok(tables) = serde_json::from_str::<BTreeMap<&str, &RawValue>>(items.get()) {
            out.insert(
                "table_names".into(),
                tables.keys().map(|t| Value::from(*t)).collect(),
            );
        }
    }
    out
}

/// The function a Lambda API request's path names (`/2015-03-31/functions/{name}/…`).
fn lambda_function(request: &HttpRequest) -> Option<String> {
    let path = request.uri().split('?').next().unwrap_or_default();
    let rest = path.split("/functions/").nth(1)?;
    Some(percent_decode(rest.split('/').next().unwrap_or_default()))
}

/// Bucket, key and prefix from an S3 request: path-style (`/bucket/key`) or
/// virtual-hosted (`bucket.s3.region.amazonaws.com/key`).
fn s3_parameters(request: &HttpRequest, out: &mut serde_json::Map<String, Value>) {
    let uri = request.uri();
    let after_scheme = uri.split_once("://").map_or(uri, |(_, r)| r);
    let (host, path_and_query) = after_scheme.split_once('/').unwrap_or((after_scheme, ""));
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let host = host.split(':').next().unwrap_or(host);
    let virtual_bucket = host
        .find(".s3.")
        .or_else(|| host.find(".s3-"))
        .map(|i| &host[..i])
        .filter(|b| !b.is_empty());
    let (bucket, key) = match virtual_bucket {
        Some(b) => (Some(b.to_owned()), path),
        None => {
            let (b, k) = path.split_once('/').unwrap_or((path, ""));
            (Some(percent_decode(b)).filter(|b| !b.is_empty()), k)
        }
    };
    if let Some(b) = bucket {
        out.insert("bucket_name".into(), b.into());
    }
    if !key.is_empty() {
        out.insert("key".into(), percent_decode(key).into());
    }
    for (k, v) in form_pairs(query, &|k| k == "prefix" || k == "versionId") {
        match k.as_str() {
            "prefix" => {
                out.insert("prefix".into(), v.into());
            }
            "versionId" => {
                out.insert("version_id".into(), v.into());
            }
            _ => {}
        }
    }
}

/// The parameters a call wants from its request: top-level values of a JSON body (kept
/// unparsed), form fields of a query-protocol body, and query-string parameters. The
/// rest (a DynamoDB item, an SQS message) is skipped without being copied or decoded.
struct RequestView<'a> {
    json: Vec<(&'a str, &'a RawValue)>,
    form: Vec<(String, String)>,
}

impl<'a> RequestView<'a> {
    /// `with_body: false` for protocols whose body is a payload rather than parameters.
    fn new(request: &'a HttpRequest, with_body: bool, wanted: impl Fn(&str) -> bool) -> Self {
        let body = match request.body().bytes() {
            Some(b) if with_body => b,
            _ => &[],
        };
        let json = if body.first() == Some(&b'{') {
            json_fields(body, &wanted)
        } else {
            None
        };
        let mut form = Vec::new();
        if json.is_none() && !body.is_empty() {
            if let Ok(text) = std::str::from_utf8(body) {
                form.extend(form_pairs(text, &wanted));
            }
        }
        if let Some((_, query)) = request.uri().split_once('?') {
            form.extend(form_pairs(query, &wanted));
        }
        RequestView {
            json: json.unwrap_or_default(),
            form,
        }
    }

    fn json_raw(&self, name: &str) -> Option<&'a RawValue> {
        self.json.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    fn get(&self, name: &str) -> Option<Value> {
        if let Some(raw) = self.json_raw(name) {
            return serde_json::from_str(raw.get()).ok();
        }
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| Value::from(v.as_str()))
    }
}

/// The `wanted` top-level fields of a JSON object, unparsed; `None` if `body` is not one.
fn json_fields<'a>(
    body: &'a [u8],
    wanted: &dyn Fn(&str) -> bool,
) -> Option<Vec<(&'a str, &'a RawValue)>> {
    struct Fields<'w>(&'w dyn Fn(&str) -> bool);
    impl<'de> Visitor<'de> for Fields<'_> {
        type Value = Vec<(&'de str, &'de RawValue)>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut fields = Vec::new();
            while let Some(key) = map.next_key::<&'de str>()? {
                if (self.0)(key) {
                    fields.push((key, map.next_value()?));
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(fields)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let fields = serde::Deserializer::deserialize_map(&mut de, Fields(wanted)).ok()?;
    de.end().ok()?;
    Some(fields)
}

/// The `wanted` pairs of a form or query string, decoded.
fn form_pairs<'t>(
    text: &'t str,
    wanted: &'t dyn Fn(&str) -> bool,
) -> impl Iterator<Item = (String, String)> + 't {
    text.split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = percent_decode(k);
            wanted(&k).then(|| (k, percent_decode(v)))
        })
}

/// Decodes `%XX` escapes and `+` (form encoding); invalid escapes are kept as they are.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `TableName` → `table_name`, `QueueUrl` → `queue_url`, `SSEKMSKeyId` → `ssekms_key_id`.
fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev_lower =
                i > 0 && (chars[i - 1].is_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_uppercase();
            if i > 0 && (prev_lower || (prev_upper && next_lower)) {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_cases_aws_names() {
        for (from, to) in [
            ("TableName", "table_name"),
            ("QueueUrl", "queue_url"),
            ("TopicArn", "topic_arn"),
            ("SSEKMSKeyId", "ssekms_key_id"),
            ("IndexName", "index_name"),
            ("Limit", "limit"),
        ] {
            assert_eq!(snake_case(from), to);
        }
    }

    fn extra(service: &str, name: &str) -> Vec<ExtraParameter> {
        XRayInterceptor::new()
            .with_parameter(service, "*", name)
            .extra
            .to_vec()
    }

    #[test]
    fn an_s3_body_is_payload_not_parameters() {
        let req = request(
            "https://b.s3.us-east-1.amazonaws.com/k.json?versionId=v1",
            r#"{"Bucket":"not-this","key":"nor-this"}"#,
        );
        let p = request_parameters("S3", "PutObject", &req, &extra("S3", "Bucket"));
        assert_eq!(
            Value::Object(p),
            serde_json::json!({"bucket_name": "b", "key": "k.json", "version_id": "v1"})
        );
        // A parameter asked for still comes from the query string.
        let p = request_parameters("S3", "GetObject", &req, &extra("S3", "versionId"));
        assert_eq!(p["version_id"], "v1");
    }

    #[test]
    fn lambda_function_name_comes_from_the_path_before_the_payload() {
        let invoke = request(
            "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/my%2Dfn/invocations",
            r#"{"FunctionName":"from-the-payload"}"#,
        );
        let p = request_parameters("Lambda", "Invoke", &invoke, &[]);
        assert_eq!(p["function_name"], "my-fn");
        let create = request(
            "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions",
            r#"{"FunctionName":"new-fn","Runtime":"provided.al2023"}"#,
        );
        let p = request_parameters("Lambda", "CreateFunction", &create, &[]);
        assert_eq!(p["function_name"], "new-fn");
    }

    #[test]
    fn spelled_out_dynamodb_fields_are_the_snake_case_of_their_keys() {
        for (name, field) in DYNAMODB_PARAMETERS {
            assert_eq!(snake_case(name), *field);
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(
            percent_decode("users%2Fu-1%2Finfo.txt"),
            "users/u-1/info.txt"
        );
        assert_eq!(percent_decode("a+b%zz%4"), "a b%zz%4");
        assert_eq!(percent_decode("%E2%9C%93"), "✓");
    }

    #[test]
    fn error_codes() {
        assert_eq!(
            clean_code("com.amazonaws.dynamodb.v20120810#ResourceNotFoundException"),
            "ResourceNotFoundException"
        );
        assert_eq!(
            clean_code("ValidationException:http://internal.amazon.com/coral/"),
            "ValidationException"
        );
        assert_eq!(clean_code("NoSuchKey"), "NoSuchKey");
    }

    fn request(uri: &str, body: &str) -> HttpRequest {
        let mut r = HttpRequest::new(aws_smithy_types::body::SdkBody::from(body.to_owned()));
        r.set_uri(uri.to_owned()).unwrap();
        r
    }

    #[test]
    fn dynamodb_parameters_from_the_json_body() {
        let r = request(
            "https://dynamodb.us-east-1.amazonaws.com/",
            r#"{"TableName":"users","IndexName":"by_email","Limit":10,"ConsistentRead":true,"Item":{"userId":{"S":"u-1"}}}"#,
        );
        let p = request_parameters("DynamoDB", "Query", &r, &[]);
        assert_eq!(
            Value::Object(p),
            serde_json::json!({"table_name": "users", "index_name": "by_email", "limit": 10, "consistent_read": true})
        );
        let batch = request("https://x/", r#"{"RequestItems":{"users":[],"orders":[]}}"#);
        let p = request_parameters("DynamoDB", "BatchWriteItem", &batch, &[]);
        assert_eq!(p["table_names"], serde_json::json!(["orders", "users"]));
    }

    #[test]
    fn s3_path_and_virtual_hosted_styles() {
        let p = request_parameters(
            "S3",
            "PutObject",
            &request(
                "http://127.0.0.1:5000/user-files/users/u-1/info.txt?x-id=PutObject",
                "",
            ),
            &[],
        );
        assert_eq!(
            Value::Object(p),
            serde_json::json!({"bucket_name": "user-files", "key": "users/u-1/info.txt"})
        );
        let p = request_parameters(
            "S3",
            "GetObject",
            &request(
                "https://user-files.s3.us-east-1.amazonaws.com/a%20b.txt?versionId=3",
                "",
            ),
            &[],
        );
        assert_eq!(
            Value::Object(p),
            serde_json::json!({"bucket_name": "user-files", "key": "a b.txt", "version_id": "3"})
        );
        let p = request_parameters(
            "S3",
            "ListObjectsV2",
            &request(
                "http://127.0.0.1:5000/user-files?list-type=2&prefix=users%2F",
                "",
            ),
            &[],
        );
        assert_eq!(
            Value::Object(p),
            serde_json::json!({"bucket_name": "user-files", "prefix": "users/"})
        );
    }

    #[test]
    fn sqs_sns_lambda_and_user_parameters() {
        let sqs = request(
            "https://sqs.us-east-1.amazonaws.com/",
            r#"{"QueueUrl":"https://sqs/q","MessageBody":"x"}"#,
        );
        assert_eq!(
            request_parameters("SQS", "SendMessage", &sqs, &[])["queue_url"],
            "https://sqs/q"
        );
        let sns = request(
            "https://sns.us-east-1.amazonaws.com/",
            "Action=Publish&TopicArn=arn%3Aaws%3Asns%3Aus-east-1%3A1%3At&Message=hi",
        );
        assert_eq!(
            request_parameters("SNS", "Publish", &sns, &[])["topic_arn"],
            "arn:aws:sns:us-east-1:1:t"
        );
        let lambda = request(
            "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/my-fn/invocations",
            "{}",
        );
        assert_eq!(
            request_parameters("Lambda", "Invoke", &lambda, &[])["function_name"],
            "my-fn"
        );
        let i = XRayInterceptor::new().with_parameter("DynamoDB", "PutItem", "ReturnValues");
        let put = request(
            "https://x/",
            r#"{"TableName":"t","ReturnValues":"ALL_OLD"}"#,
        );
        assert_eq!(
            request_parameters("DynamoDB", "PutItem", &put, &i.extra)["return_values"],
            "ALL_OLD"
        );
        assert!(request_parameters("DynamoDB", "GetItem", &put, &i.extra)
            .get("return_values")
            .is_none());
    }
}
