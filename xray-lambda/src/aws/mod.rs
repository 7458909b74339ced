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

mod json_object;
mod parameters;

use std::collections::BTreeMap;
use std::fmt;
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
use serde_json::Value;

use crate::context::{self, Node};
use crate::document::{self, Http, AWS_NAMESPACE};
use crate::exception;
use crate::header::{TraceHeader, TRACE_HEADER};
use crate::ErrorKind;
use parameters::{request_parameters, ExtraParameter};

/// Where services put the request id, most usual first: most services, S3, a few
/// others.
const REQUEST_ID_HEADERS: [&str; 3] = ["x-amzn-requestid", "x-amz-request-id", "x-amzn-request-id"];
/// S3's extended request id.
const ID_2_HEADER: &str = "x-amz-id-2";
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

/// Records each AWS SDK call made under a trace as a subsegment named after the service
/// (`DynamoDB`, `S3`, …) with the operation, region, request id, retries, HTTP status
/// and the request parameters X-Ray knows (`table_name`, `bucket_name`, `key`, …), and
/// sends the trace header with the request.
///
/// One subsegment per operation, however many attempts it takes (`aws.retries`). Safe
/// to share: per-call state lives in the call's config bag, not in the interceptor.
/// Without a trace it does nothing, and the SDK's own header handling is untouched. A
/// presigned request (`.presigned(config)`) is not a call: it records nothing and gets
/// no trace header.
///
/// Give `.interceptor()` the interceptor itself: that wraps it in a `SharedInterceptor`
/// that knows which hooks it implements. A `SharedInterceptor` given to `.interceptor()`
/// is wrapped again, and the outer one reports every hook, so the SDK calls all of them
/// on every call; register one you already have with the config builder's
/// `push_interceptor` instead.
#[derive(Clone, Default)]
pub struct XRayInterceptor {
    extra: Arc<Vec<ExtraParameter>>,
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
        Arc::make_mut(&mut self.extra).push(ExtraParameter::new(service, operation, name));
        self
    }
}

/// What a recorded call carries through its config bag's interceptor state, the one
/// layer each hook may change and the first searched.
#[derive(Debug)]
struct Call {
    /// The interceptor that recorded it ([`XRayInterceptor::id`]): another one
    /// registered for the same call leaves it alone.
    owner: usize,
    /// Taken when the call ends, so that it ends once.
    node: Option<Arc<Node>>,
    /// Made into text for each attempt: the request takes the text by value.
    header: TraceHeader,
    attempts: u32,
    parameters_recorded: bool,
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
        if cfg.get_mut_from_interceptor_state::<Call>().is_some() {
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
            node: Some(node),
            attempts: 0,
            parameters_recorded: false,
        });
        Ok(())
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let id = self.id();
        // A presigned request is signed here, to be sent later by someone else, if at
        // all: there is no call to record, and the trace is not theirs to join. (The
        // SDK disables its own header-adding interceptors for it too.) Looked for only
        // when there is a header to add: a call without a trace pays nothing for it.
        let (header, first_attempt_of) = match cfg.get_mut_from_interceptor_state::<Call>() {
            Some(call) if call.owner != id => return Ok(()),
            Some(call) if is_presigned(context.request()) => {
                if let Some(node) = call.node.take() {
                    node.discard();
                }
                return Ok(());
            }
            Some(call) => {
                call.attempts += 1;
                let first = !std::mem::replace(&mut call.parameters_recorded, true);
                // Its own handle: recording reads the rest of the bag.
                let node = call.node.as_ref().filter(|_| first).map(Arc::clone);
                (call.header.to_wire(), node)
            }
            None => match context::current().and_then(|c| c.outgoing_header()) {
                Some(_) if is_presigned(context.request()) => return Ok(()),
                Some(header) => (header.to_wire(), None),
                None => return Ok(()),
            },
        };
        if let Some(node) = first_attempt_of {
            record_parameters(&node, cfg, context.request(), &self.extra);
        }
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
        let id = self.id();
        let Some((node, identified, attempts)) = cfg
            .get_mut_from_interceptor_state::<Call>()
            .filter(|c| c.owner == id)
            .and_then(|c| Some((c.node.take()?, c.parameters_recorded, c.attempts)))
        else {
            return Ok(());
        };
        if !identified {
            identify(&node, cfg);
        }
        let retries = attempts.saturating_sub(1);
        let response = context.response();
        let found = response.map(Found::in_response);
        node.with_record(|r| {
            if let Some(aws) = &mut r.aws {
                aws.retries = retries;
                if let Some(found) = &found {
                    aws.request_id = found.request_id.map(|(_, id)| id.to_owned());
                    aws.id_2 = found.id_2.map(str::to_owned);
                }
            }
            if let Some((resp, found)) = response.zip(found.as_ref()) {
                r.http = Some(Box::new(Http {
                    request: None,
                    response: Some(document::HttpResponse {
                        status: resp.status().as_u16(),
                        content_length: found.content_length,
                    }),
                }));
            }
        });
        let status = response.map(|r| r.status().as_u16());
        match (response, context.output_or_error()) {
            (Some(resp), _) if status >= Some(400) => record_service_error(&node, resp, context),
            // The answer to a conditional request (S3's `If-None-Match`): the SDK gives
            // it as an error, but the call did what it was asked.
            (Some(_), Some(Err(_))) if status == Some(304) => {}
            // A redirect the SDK does not follow (S3's `PermanentRedirect` for a bucket
            // in another region): the service's answer to a mistaken request.
            (Some(resp), Some(Err(_))) if status >= Some(300) => {
                record_service_error(&node, resp, context)
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

/// Whether `request` was signed for someone else to send: a SigV4 or SigV4a presigned
/// request carries its signature in the query string, a sent one in a header.
fn is_presigned(request: &HttpRequest) -> bool {
    request
        .uri()
        .split_once('?')
        .is_some_and(|(_, query)| query.contains("X-Amz-Signature="))
}

/// The response headers a call records, found in one pass over them rather than a
/// lookup (a hash of the name) for each.
#[derive(Debug, Default)]
struct Found<'a> {
    /// The request id, and its header's place in [`REQUEST_ID_HEADERS`].
    request_id: Option<(usize, &'a str)>,
    id_2: Option<&'a str>,
    content_length: Option<u64>,
}

impl<'a> Found<'a> {
    /// The first value of each header that is text (of `content-length`, the first that
    /// is a number).
    fn in_response(resp: &'a HttpResponse) -> Self {
        let mut found = Found::default();
        for (name, value) in resp.headers().iter_bytes() {
            let Ok(value) = std::str::from_utf8(value) else {
                continue;
            };
            if name == "content-length" {
                if found.content_length.is_none() {
                    found.content_length = value.parse().ok();
                }
            } else if name == ID_2_HEADER {
                found.id_2.get_or_insert(value);
            } else if let Some(rank) = REQUEST_ID_HEADERS.iter().position(|h| *h == name) {
                if found.request_id.is_none_or(|(best, _)| rank < best) {
                    found.request_id = Some((rank, value));
                }
            }
        }
        found
    }
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

/// A 4xx or 5xx answer, or a redirect: the service's error code and message as a
/// remote exception; an error unless the status says otherwise.
fn record_service_error(
    node: &Node,
    resp: &HttpResponse,
    context: &FinalizerInterceptorContextRef<'_>,
) {
    let status = resp.status().as_u16();
    let (code, message) = error_code_and_message(resp);
    // What the SDK made of the answer, for what the answer itself does not say (a HEAD
    // request's error has no body).
    let sdk = match context.output_or_error() {
        Some(Err(e)) if code.is_none() || message.is_none() => {
            e.as_operation_error().map(ToString::to_string)
        }
        _ => None,
    };
    let (sdk_code, sdk_message) = sdk
        .as_deref()
        .and_then(sdk_error_code)
        .map_or((None, None), |(code, message)| (Some(code), message));
    let code = code
        .or_else(|| sdk_code.map(str::to_owned))
        .unwrap_or_else(|| format!("HTTP {status}"));
    let message = message
        .or_else(|| sdk_message.map(str::to_owned))
        .or_else(|| {
            let reason = http::StatusCode::from_u16(status)
                .ok()?
                .canonical_reason()?;
            Some(reason.to_owned())
        })
        .unwrap_or_default();
    let kind = if THROTTLING_CODES.contains(&code.as_str()) {
        ErrorKind::Throttle
    } else {
        ErrorKind::for_status(status).unwrap_or(ErrorKind::Error)
    };
    node.add_exceptions(vec![exception::remote(code, message)], kind);
}

/// The code and message of an SDK error's text that names a modeled error:
/// `NoSuchKey: The specified key does not exist.`, `NotFound` (code only). `None` for
/// text that does not start with a code (`unhandled error`), which says nothing a
/// status's reason would not say better.
fn sdk_error_code(text: &str) -> Option<(&str, Option<&str>)> {
    let (code, message) = text
        .split_once(": ")
        .map_or((text, None), |(code, message)| (code, Some(message)));
    let is_code = code.starts_with(|c: char| c.is_ascii_uppercase())
        && code.bytes().all(|b| b.is_ascii_alphanumeric());
    is_code.then_some((code, message.filter(|m| !m.is_empty())))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::test_support::{within, Daemon};
    use aws_smithy_runtime_api::client::interceptors::context::{Input, InterceptorContext};

    #[test]
    fn response_headers_are_found_in_one_pass_by_rank_and_first_value() {
        let response = |headers: &[(&str, &[u8])]| {
            let mut b = http::Response::builder().status(200);
            for (name, value) in headers {
                b = b.header(*name, http::HeaderValue::from_bytes(value).unwrap());
            }
            HttpResponse::try_from(b.body(aws_smithy_types::body::SdkBody::empty()).unwrap())
                .unwrap()
        };
        let r = response(&[
            ("x-amzn-request-id", b"third"),
            ("Content-Length", b"12"),
            ("x-amz-request-id", b"second"),
            ("x-amz-id-2", b"id2"),
            ("x-amz-id-2", b"later"),
            ("content-length", b"99"),
        ]);
        let found = Found::in_response(&r);
        assert_eq!(
            found.request_id,
            Some((1, "second")),
            "the better-ranked header"
        );
        assert_eq!(found.id_2, Some("id2"), "the first value");
        assert_eq!(found.content_length, Some(12));

        let r = response(&[
            ("x-amzn-requestid", b"\xff\xfe"),
            ("x-amzn-request-id", b"readable"),
            ("content-length", b"many"),
        ]);
        let found = Found::in_response(&r);
        assert_eq!(found.request_id, Some((2, "readable")), "text only");
        assert_eq!((found.id_2, found.content_length), (None, None));
    }

    #[test]
    fn an_sdk_error_text_gives_the_code_it_starts_with() {
        for (text, split) in [
            (
                "NoSuchKey: The specified key does not exist.",
                Some(("NoSuchKey", Some("The specified key does not exist."))),
            ),
            ("NotFound", Some(("NotFound", None))),
            ("NotFound: ", Some(("NotFound", None))),
            ("unhandled error", None),
            ("Bad thing: happened", None),
            ("", None),
        ] {
            assert_eq!(sdk_error_code(text), split, "{text:?}");
        }
    }

    /// What `read_before_execution` leaves in a call's config bag under a trace.
    fn kept_for_a_call(sampled: bool) -> Option<bool> {
        let daemon = Daemon::new();
        let facade = daemon.facade(sampled);
        let context = InterceptorContext::new(Input::erase(()));
        let mut cfg = ConfigBag::base();
        let interceptor = XRayInterceptor::new();
        within(&facade, || {
            interceptor
                .read_before_execution(&(&context).into(), &mut cfg)
                .unwrap();
            // A second registration of the same call records nothing of its own.
            XRayInterceptor::new()
                .read_before_execution(&(&context).into(), &mut cfg)
                .unwrap();
        });
        // In the interceptor state, the layer every hook looks in first.
        cfg.get_mut_from_interceptor_state::<Call>()
            .map(|call| call.owner == interceptor.id())
    }

    #[test]
    fn the_sdk_is_told_which_hooks_to_call() {
        use aws_smithy_runtime_api::client::interceptors::OverriddenHooks as Hooks;
        let hooks = XRayInterceptor::new().overridden_hooks();
        assert_eq!(
            hooks,
            Hooks::READ_BEFORE_EXECUTION
                | Hooks::MODIFY_BEFORE_TRANSMIT
                | Hooks::READ_AFTER_EXECUTION
        );
    }

    #[test]
    fn a_shared_interceptor_wrapped_again_loses_its_list_of_hooks() {
        // What the README warns of: `.interceptor()` wraps what it is given in a
        // `SharedInterceptor`, and one given a `SharedInterceptor` reports every hook.
        use aws_smithy_runtime_api::client::interceptors::{OverriddenHooks, SharedInterceptor};
        let once = SharedInterceptor::new(XRayInterceptor::new());
        assert_eq!(
            once.overridden_hooks(),
            XRayInterceptor::new().overridden_hooks()
        );
        let twice = SharedInterceptor::new(once);
        assert_eq!(twice.overridden_hooks(), OverriddenHooks::all());
    }

    #[test]
    fn only_a_sampled_call_keeps_state_in_the_config_bag() {
        assert_eq!(kept_for_a_call(false), None);
        assert_eq!(
            kept_for_a_call(true),
            Some(true),
            "the first registration's"
        );
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
}
