//! The runtime wrapper: [`run`], [`run_concurrent`] and [`XRayLayer`] give each
//! invocation its trace context and its `## <function>` handler subsegment.

mod layer;
mod response;
mod run;
mod settings;

pub use layer::{HandlerFuture, XRayLayer, XRayService};
pub use response::{CaptureResponse, NoResponseCapture, SerializeResponse};
pub use run::run;
#[cfg(feature = "concurrency-tokio")]
pub use run::run_concurrent;
