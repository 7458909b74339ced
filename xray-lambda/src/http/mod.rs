//! Outgoing HTTP requests as subsegments: [`XRayMiddleware`] for a `reqwest-middleware`
//! client (feature `reqwest`), [`XRayClientLayer`] for any tower HTTP client (feature
//! `http-client`). Both record the same way:
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

mod call;
#[cfg(feature = "reqwest")]
mod middleware;
#[cfg(feature = "http-client")]
mod tower;

#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub use middleware::XRayMiddleware;
#[cfg(feature = "http-client")]
#[cfg_attr(docsrs, doc(cfg(feature = "http-client")))]
pub use tower::{ResponseFuture, XRayClientLayer, XRayClientService};

/// The builder methods both client entry points have.
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
use client_builder;
