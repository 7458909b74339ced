//! How the wrapper records a handler's response as metadata.

use lambda_runtime::FunctionResponse;
use serde::Serialize;
use serde_json::value::RawValue;

/// How the wrapper turns a handler's response into metadata. Implemented by
/// [`SerializeResponse`] (the default) and [`NoResponseCapture`].
pub trait CaptureResponse<R>: sealed::Sealed {
    #[doc(hidden)]
    fn capture(response: &R) -> Option<Box<RawValue>>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::SerializeResponse {}
    impl Sealed for super::NoResponseCapture {}
    impl Sealed for super::BufferedResponse {}
}

/// Records responses that implement `Serialize` (JSON values, `lambda_http` responses).
#[derive(Clone, Copy, Debug, Default)]
pub struct SerializeResponse;

impl<R: Serialize> CaptureResponse<R> for SerializeResponse {
    fn capture(response: &R) -> Option<Box<RawValue>> {
        serde_json::value::to_raw_value(response)
            .map_err(|e| tracing::warn!(error = %e, "handler response could not be serialized for X-Ray metadata"))
            .ok()
    }
}

/// Records no response: for handlers whose response is not `Serialize` (streaming).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoResponseCapture;

impl<R> CaptureResponse<R> for NoResponseCapture {
    fn capture(_: &R) -> Option<Box<RawValue>> {
        None
    }
}

/// Records buffered [`FunctionResponse`]s; streamed ones are not recorded.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BufferedResponse;

impl<B: Serialize, S> CaptureResponse<FunctionResponse<B, S>> for BufferedResponse {
    fn capture(response: &FunctionResponse<B, S>) -> Option<Box<RawValue>> {
        match response {
            FunctionResponse::BufferedResponse(b) => SerializeResponse::capture(b),
            FunctionResponse::StreamingResponse(_) => None,
        }
    }
}
