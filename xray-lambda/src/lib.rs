//! AWS X-Ray tracing for Rust Lambda functions.
//!
//! Lambda owns the trace of each invocation: it records the function segment and hands
//! the function a trace header. This crate attaches to that segment, adds subsegments
//! under it (the handler, your own units of work, errors, annotations, metadata) and
//! sends them to the X-Ray daemon nested in the handler's subsegment: one datagram for
//! most invocations.
//!
//! ```
//! use xray_lambda::{begin_subsegment, put_annotation, FutureExt};
//!
//! async fn load_user(id: &str) -> Result<String, std::io::Error> {
//!     // A subsegment for the block, nested under whatever is current.
//!     let s = begin_subsegment("validate");
//!     s.put_annotation("user_id", id);
//!     s.put_metadata("request", &serde_json::json!({ "id": id }));
//!     s.end();
//!
//!     async { Ok(format!("user {id}")) }.in_subsegment("fetch").await
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Without an invocation (or outside Lambda without a segment) every call is a cheap
//! // no-op, so the same code runs in unit tests.
//! put_annotation("ignored", true);
//! assert_eq!(load_user("u-1").await.unwrap(), "user u-1");
//! # }
//! ```
//!
//! Any function becomes a subsegment with [`macro@capture`]:
//!
//! ```
//! #[xray_lambda::capture]
//! fn parse_order(body: &str) -> Result<u32, std::num::ParseIntError> {
//!     body.trim().parse()
//! }
//! # assert_eq!(parse_order(" 7 ").unwrap(), 7);
//! ```
//!
//! In `main`, replace `lambda_runtime::run` with [`run`] (or [`run_concurrent`] for
//! Lambda Managed Instances), or wrap your service with [`XRayLayer`]:
//!
//! ```no_run
//! use lambda_runtime::{service_fn, Error, LambdaEvent};
//! use serde_json::Value;
//!
//! async fn handler(event: LambdaEvent<Value>) -> Result<Value, Error> {
//!     let _s = xray_lambda::begin_subsegment("work");
//!     Ok(event.payload)
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Error> {
//!     xray_lambda::run(service_fn(handler)).await
//! }
//! ```
//!
//! Services outside Lambda (axum, tonic, hyper) get a segment per request, sampled by
//! X-Ray's rules, from `http::XRayServerLayer` (feature `http-server`).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]
#![forbid(unsafe_code)]

#[cfg(feature = "aws-sdk")]
#[cfg_attr(docsrs, doc(cfg(feature = "aws-sdk")))]
pub mod aws;
mod capture;
mod config;
mod context;
mod deadline;
mod document;
mod emitter;
mod exception;
mod future;
#[cfg(any(feature = "__http-client", feature = "http-server"))]
mod glob;
mod header;
#[cfg(any(feature = "__http-client", feature = "http-server"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "reqwest", feature = "http-client", feature = "http-server")))
)]
pub mod http;
mod id;
mod lambda;
mod name_chars;
mod panic;
#[cfg(feature = "http-server")]
mod plain_http;
#[cfg(feature = "http-server")]
mod platform;
#[cfg(feature = "http-server")]
mod sampling;
mod sanitize;
mod segment;
mod spare;
mod subsegment;
#[cfg(feature = "tracing-layer")]
mod tracing_layer;

pub use config::AddressError;
pub use document::{AnnotationValue, ErrorKind};
pub use future::{FutureExt, InCurrentTrace, InSegment, InSubsegment};
pub use header::{HeaderError, Sampling, TraceHeader};
pub use id::{SegmentId, TraceId};
#[cfg(feature = "concurrency-tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "concurrency-tokio")))]
pub use lambda::run_concurrent;
pub use lambda::{
    run, CaptureResponse, HandlerFuture, NoResponseCapture, SerializeResponse, XRayLayer,
    XRayService,
};
pub use segment::{begin_segment, Segment};
pub use subsegment::{
    begin_subsegment, current_trace_header, current_trace_id, put_annotation, put_metadata,
    put_metadata_in, record_error, Subsegment,
};
#[cfg(feature = "tracing-layer")]
#[cfg_attr(docsrs, doc(cfg(feature = "tracing-layer")))]
pub use tracing_layer::XRayTracingLayer;

/// Runs a function or method in a subsegment (feature `macros`, on by default):
/// `#[capture]` names it after the function, `#[capture("name")]` or
/// `#[capture(name = "name")]` names it explicitly.
///
/// ```
/// use xray_lambda::capture;
///
/// #[derive(Debug)]
/// struct NotFound;
/// # impl std::fmt::Display for NotFound {
/// #     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("not found") }
/// # }
/// # impl std::error::Error for NotFound {}
///
/// #[capture(annotate(user_id), error_kind = "error")]
/// async fn load_user(user_id: &str) -> Result<String, NotFound> {
///     if user_id.is_empty() {
///         return Err(NotFound); // recorded: `error` flag, exception of type `NotFound`
///     }
///     Ok(format!("user {user_id}"))
/// }
///
/// #[capture("checksum")]
/// fn checksum(data: &[u8]) -> u32 {
///     data.iter().map(|&b| b as u32).sum()
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// assert_eq!(load_user("u-1").await.unwrap(), "user u-1");
/// assert_eq!(checksum(b"ab"), 195);
/// # }
/// ```
///
/// It applies to functions, `async fn`s, methods (`&self`, `&mut self`, `self`), generic
/// functions, functions returning `impl Trait`, `unsafe fn`s and `#[async_trait]` methods
/// (the inner future is instrumented, not the boxing). A sync `fn` whose body ends in the
/// future it returns (`-> impl Future<…> { async move { … } }`) has that future
/// instrumented, not its construction. For an `async` block, use
/// [`FutureExt::in_subsegment`].
///
/// - The subsegment opens when the body starts (for `async fn`: at the first poll, not at
///   the call) and ends when it returns or the future completes; a future dropped before
///   completion ends it marked `{"xray_lambda": {"incomplete": "cancelled: future dropped before completion"}}`.
/// - A returned `Result` is inspected, however its type is spelled (an alias, `io::Result`,
///   `Result<impl Debug, E>`): an `Err` is recorded as a fault
///   with one exception per error in its `source()` chain (`type` is `E`'s name). Boxed
///   `dyn Error`s keep their chain; other error types are recorded by `Display` or
///   `Debug`. When the same error propagates through several captured functions, the
///   outer subsegments refer to the inner exception by id instead of repeating it.
/// - A panic is recorded as a fault with its message and location, then keeps unwinding.
/// - With no sampled trace, the generated code does not allocate.
///
/// Options, comma-separated:
///
/// | option | effect |
/// |---|---|
/// | `"name"`, `name = "name"` | the subsegment name (default: the function's) |
/// | `error_kind = "error"` | count an `Err` as a client error (`"throttle"`: a throttle; default `"fault"`) |
/// | `annotate(param, …)` | record these parameters as annotations (strings, integers, floats, bools, and references to them) |
/// | `metadata(param, …)` | record these parameters (any `Serialize`) as metadata under `default` |
/// | `response` | record the return value (the `Ok` value for a `Result`) as metadata `response` |
#[cfg(feature = "macros")]
#[cfg_attr(docsrs, doc(cfg(feature = "macros")))]
pub use xray_macros::capture;

/// What code generated by `#[capture]` calls; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::capture::{
        annotate, begin, call, capture_future, complete, none_like, AnnotationArg, Captured,
        ErrorView, Hook, NotAnError, Outcome, ResultView, Site, ViaBoxedError, ViaDebug,
        ViaDisplay, ViaResult, ViaStdError, ViaTypeName, ViaValue,
    };
    pub use crate::subsegment::put_metadata;
    pub use crate::ErrorKind;
}
