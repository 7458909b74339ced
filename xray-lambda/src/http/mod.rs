//! HTTP: outgoing requests as subsegments, [`XRayMiddleware`] for a
//! `reqwest-middleware` client (feature `reqwest`) and [`XRayClientLayer`] for any tower
//! HTTP client (feature `http-client`); and incoming requests outside Lambda as
//! segments, [`XRayServerLayer`] (feature `http-server`).
//!
//! # Outgoing requests
//!
//! Both client entry points record the same way:
//!
//! - One subsegment per request, named after the host (as the official SDKs do),
//!   `namespace: "remote"`, under whatever is current: `http.request.method`,
//!   `http.request.url` (without user info, fragment and query string: URLs carry
//!   tokens; `.record_query()` keeps the query), `http.response.status` and
//!   `http.response.content_length` when the response says it.
//! - A 4xx is an `error`, 429 a `throttle` and an `error`, a 5xx a `fault`; no response
//!   (a refused connection, DNS, a timeout) is a `fault` with the error and its
//!   `source()` chain as a remote cause. The response, or the error, reaches the caller
//!   unchanged.
//! - The request carries `X-Amzn-Trace-Id: Root=…;Parent=<this subsegment>;Sampled=1`
//!   plus `Lineage` and the incoming header's other fields, replacing any such header
//!   already there. Unsampled: `Root=…;Parent=<function segment>;Sampled=0`, and no
//!   subsegment. Without a trace the request is left as it is.
//! - `.ignore_host("*.internal")` (a glob, `*` and `?`, any letter case): no subsegment
//!   and no header for those hosts.
//! - The subsegment ends when the response head arrives: the body is not waited for
//!   (nor buffered), so a streamed download's time is not in it.
//! - Retries by a middleware or layer outside this one: one subsegment per attempt.
//!
//! # Incoming requests
//!
//! See [`XRayServerLayer`]: a segment per request, sampled by X-Ray's rules
//! ([`SamplingRules`]).

#[cfg(feature = "__http-client")]
mod call;
#[cfg(feature = "http-server")]
mod incoming;
#[cfg(feature = "reqwest")]
mod middleware;
#[cfg(feature = "http-server")]
mod server;
#[cfg(feature = "http-client")]
mod tower;

#[cfg(feature = "http-server")]
#[cfg_attr(docsrs, doc(cfg(feature = "http-server")))]
pub use crate::sampling::{SamplingRules, SamplingRulesError};
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub use middleware::XRayMiddleware;
#[cfg(feature = "http-server")]
#[cfg_attr(docsrs, doc(cfg(feature = "http-server")))]
pub use server::{ServerFuture, XRayServerLayer, XRayServerService};
#[cfg(feature = "http-client")]
#[cfg_attr(docsrs, doc(cfg(feature = "http-client")))]
pub use tower::{ResponseFuture, XRayClientLayer, XRayClientService};

use crate::context::Node;
use crate::document::{ErrorKind, HttpResponse};
use crate::header::TRACE_HEADER;

/// `Content-Length`, when the response says it.
fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Records a response on the (sub)segment of its request: `http.response`, and the
/// flags its status calls for.
fn record_response(node: &Node, status: u16, content_length: Option<u64>) {
    node.with_record(|r| {
        r.http.get_or_insert_with(Box::default).response = Some(HttpResponse {
            status,
            content_length,
        });
    });
    if let Some(kind) = ErrorKind::for_status(status) {
        node.add_exceptions(Vec::new(), kind);
    }
}
/// The builder methods both client entry points have.
#[cfg(feature = "__http-client")]
macro_rules! client_builder {
    ($t:ty) => {
        impl $t {
            /// Leaves requests to hosts matching `pattern` alone (no subsegment, no
            /// header): a glob with `*` and `?`, in any letter case (`"*.internal"`).
            pub fn ignore_host(mut self, pattern: impl Into<String>) -> Self {
                self.settings.ignore_host(pattern);
                self
            }

            /// Records the query string in `http.request.url` (left out by default:
            /// URLs carry tokens).
            pub fn record_query(mut self) -> Self {
                self.settings.record_query();
                self
            }
        }
    };
}
#[cfg(feature = "__http-client")]
use client_builder;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_is_read_when_it_is_a_number() {
        let mut h = http::HeaderMap::new();
        assert_eq!(content_length(&h), None);
        h.insert(http::header::CONTENT_LENGTH, "42".parse().unwrap());
        assert_eq!(content_length(&h), Some(42));
        h.insert(http::header::CONTENT_LENGTH, "many".parse().unwrap());
        assert_eq!(content_length(&h), None);
    }
}
