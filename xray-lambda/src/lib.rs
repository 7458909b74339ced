//! AWS X-Ray tracing for Rust Lambda functions.
//!
//! Lambda owns the trace of each invocation: it records the function segment and hands
//! the function a trace header. This crate attaches to that segment, adds subsegments
//! under it (the handler, your own units of work, errors, annotations, metadata) and
//! sends each one to the X-Ray daemon as it ends.
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
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod config;
mod context;
mod document;
mod emitter;
mod exception;
mod header;
mod id;
mod lambda;
mod name_chars;
mod sanitize;
mod subsegment;

pub use config::AddressError;
pub use document::AnnotationValue;
pub use header::{HeaderError, Sampling, TraceHeader};
pub use id::{SegmentId, TraceId};
#[cfg(feature = "concurrency-tokio")]
pub use lambda::run_concurrent;
pub use lambda::{
    run, CaptureResponse, HandlerFuture, NoResponseCapture, SerializeResponse, XRayLayer,
    XRayService,
};
pub use subsegment::{
    begin_segment, begin_subsegment, current_trace_header, put_annotation, put_metadata,
    put_metadata_in, record_error, ErrorKind, FutureExt, InCurrentTrace, InSubsegment, Segment,
    Subsegment,
};
