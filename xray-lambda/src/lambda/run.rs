//! The drop-in replacements for `lambda_runtime::run` and `run_concurrent`.

use std::fmt::Debug;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use lambda_runtime::tower::{Layer, Service};
use lambda_runtime::{FunctionResponse, IntoFunctionResponse, LambdaEvent};
use serde::Serialize;

use super::response::BufferedResponse;
use super::XRayLayer;

/// Adapts a handler whose response is any [`IntoFunctionResponse`] to one returning
/// [`FunctionResponse`], so buffered responses can be recorded and streams pass through.
struct IntoResponse<F, B, S> {
    inner: F,
    types: PhantomData<fn() -> (B, S)>,
}

impl<F: Clone, B, S> Clone for IntoResponse<F, B, S> {
    fn clone(&self) -> Self {
        IntoResponse {
            inner: self.inner.clone(),
            types: PhantomData,
        }
    }
}

impl<F, A, R, B, S> Service<LambdaEvent<A>> for IntoResponse<F, B, S>
where
    F: Service<LambdaEvent<A>, Response = R>,
    R: IntoFunctionResponse<B, S>,
{
    type Response = FunctionResponse<B, S>;
    type Error = F::Error;
    type Future = IntoResponseFuture<F::Future, B, S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), F::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, event: LambdaEvent<A>) -> Self::Future {
        IntoResponseFuture {
            inner: self.inner.call(event),
            types: PhantomData,
        }
    }
}

pin_project_lite::pin_project! {
    struct IntoResponseFuture<Fut, B, S> {
        #[pin]
        inner: Fut,
        types: PhantomData<fn() -> (B, S)>,
    }
}

impl<Fut, R, E, B, S> Future for IntoResponseFuture<Fut, B, S>
where
    Fut: Future<Output = Result<R, E>>,
    R: IntoFunctionResponse<B, S>,
{
    type Output = Result<FunctionResponse<B, S>, E>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project()
            .inner
            .poll(cx)
            .map(|r| r.map(IntoFunctionResponse::into_response))
    }
}

/// Starts the Lambda runtime with every invocation traced: a drop-in for
/// [`lambda_runtime::run`], accepting the same handlers.
pub async fn run<A, F, R, B, S, D, E>(handler: F) -> Result<(), lambda_runtime::Error>
where
    F: Service<LambdaEvent<A>, Response = R>,
    F::Future: Future<Output = Result<R, F::Error>>,
    F::Error: Into<lambda_runtime::Diagnostic> + Debug + 'static,
    A: for<'de> serde::Deserialize<'de>,
    R: IntoFunctionResponse<B, S>,
    B: Serialize,
    S: futures_core::Stream<Item = Result<D, E>> + Unpin + Send + 'static,
    D: Into<bytes::Bytes> + Send,
    E: Into<lambda_runtime::Error> + Send + Debug,
{
    let layer = XRayLayer::new().with_capture::<BufferedResponse>();
    lambda_runtime::run(layer.layer(IntoResponse {
        inner: handler,
        types: PhantomData,
    }))
    .await
}

/// Starts the Lambda runtime for concurrent invocations (Lambda Managed Instances,
/// `AWS_LAMBDA_MAX_CONCURRENCY` > 1) with every invocation traced: a drop-in for
/// `lambda_runtime::run_concurrent`. Each invocation's trace comes from its own
/// `Context`, never from the process-wide `_X_AMZN_TRACE_ID`. Feature
/// `concurrency-tokio`.
#[cfg(feature = "concurrency-tokio")]
pub async fn run_concurrent<A, F, R, B, S, D, E>(handler: F) -> Result<(), lambda_runtime::Error>
where
    F: Service<LambdaEvent<A>, Response = R> + Clone + Send + 'static,
    F::Future: Future<Output = Result<R, F::Error>> + Send + 'static,
    F::Error: Into<lambda_runtime::Diagnostic> + Debug + Send + 'static,
    A: for<'de> serde::Deserialize<'de> + Send + 'static,
    R: IntoFunctionResponse<B, S> + Send + 'static,
    B: Serialize + Send + 'static,
    S: futures_core::Stream<Item = Result<D, E>> + Unpin + Send + 'static,
    D: Into<bytes::Bytes> + Send + 'static,
    E: Into<lambda_runtime::Error> + Send + Debug + 'static,
{
    let layer = XRayLayer::new().with_capture::<BufferedResponse>();
    lambda_runtime::run_concurrent(layer.layer(IntoResponse {
        inner: handler,
        types: PhantomData,
    }))
    .await
}
