//! The runtime wrapper: per-invocation trace context, the `## <function>` handler
//! subsegment, and the drop-in `run` functions.

use std::fmt::{self, Debug};
use std::future::Future;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use lambda_runtime::{FunctionResponse, IntoFunctionResponse, LambdaEvent};
use serde::Serialize;
use serde_json::value::RawValue;
use lambda_runtime::tower::{Layer, Service};

use crate::config::{self, AddressError};
use crate::context::{Entered, Node, OnComplete, Scope, Trace};
use crate::emitter::Emitter;
use crate::exception;
use crate::header::TraceHeader;
use crate::ErrorKind;

/// True until the first invocation of this process starts.
static COLD_START: AtomicBool = AtomicBool::new(true);

const COLD_START_ANNOTATION: &str = "ColdStart";
const SERVICE_ANNOTATION: &str = "Service";
const HANDLER_PREFIX: &str = "## ";
/// Function name used when neither the environment nor the runtime knows it.
const UNKNOWN_FUNCTION: &str = "handler";

/// Opens the daemon socket for `address`, logging (once, here) why tracing is off when
/// it cannot be used.
pub(crate) fn connect_emitter(address: Result<SocketAddr, AddressError>) -> Option<Arc<Emitter>> {
    let address = match address {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("{e}; X-Ray tracing is off");
            return None;
        }
    };
    match Emitter::connect(address) {
        Ok(e) => Some(Arc::new(e)),
        Err(e) => {
            tracing::error!(%address, error = %e, "cannot open a UDP socket to the X-Ray daemon; X-Ray tracing is off");
            None
        }
    }
}

#[derive(Clone, Debug)]
struct Settings {
    enabled: bool,
    function_name: Option<String>,
    service: String,
    capture_response: bool,
    capture_error: bool,
    daemon: Option<Result<SocketAddr, AddressError>>,
    emitter: Arc<OnceLock<Option<Arc<Emitter>>>>,
}

impl Settings {
    fn from_env() -> Self {
        Settings {
            enabled: config::tracing_enabled(),
            function_name: config::function_name(),
            service: config::service_name().unwrap_or_else(|| config::DEFAULT_SERVICE_NAME.to_owned()),
            capture_response: config::capture_response().unwrap_or(true),
            capture_error: config::capture_error().unwrap_or(true),
            daemon: None,
            emitter: Arc::default(),
        }
    }

    fn emitter(&self) -> Option<Arc<Emitter>> {
        match &self.daemon {
            None => crate::subsegment::global_emitter(),
            Some(address) => self
                .emitter
                .get_or_init(|| connect_emitter(address.clone()))
                .clone(),
        }
    }

    /// The context an invocation's handler runs under, and its handler subsegment.
    fn start(&self, ctx: &lambda_runtime::Context) -> (Option<Arc<Node>>, Option<Arc<Node>>) {
        let cold = COLD_START.swap(false, Ordering::Relaxed);
        if !self.enabled {
            return (None, None);
        }
        let raw = ctx
            .xray_trace_id
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(config::trace_id_env);
        let Some(raw) = raw else {
            tracing::debug!(request_id = %ctx.request_id, "no trace header; invocation not traced");
            return (None, None);
        };
        let header = match TraceHeader::parse(&raw) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(header = %raw, error = %e, "malformed trace header; invocation not traced");
                return (None, None);
            }
        };
        let Some(parent) = header.parent() else {
            tracing::warn!(header = %raw, "trace header has no Parent; invocation not traced");
            return (None, None);
        };
        let emitter = if header.is_sampled() {
            match self.emitter() {
                Some(e) => Some(e),
                None => return (None, None),
            }
        } else {
            None
        };
        let facade = Node::facade(Trace::new(header.root(), header.extra(), emitter), parent);
        let function = self
            .function_name
            .as_deref()
            .or_else(|| Some(ctx.env_config.function_name.as_str()).filter(|s| !s.is_empty()))
            .unwrap_or(UNKNOWN_FUNCTION);
        let handler = Node::child(&facade, &format!("{HANDLER_PREFIX}{function}"), true);
        if let Some(h) = &handler {
            h.put_annotation(COLD_START_ANNOTATION, cold.into());
            h.put_annotation(SERVICE_ANNOTATION, self.service.as_str().into());
        }
        (Some(handler.clone().unwrap_or(facade)), handler)
    }
}

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

/// A tower [`Layer`] that traces every invocation of a `Service<LambdaEvent<A>>`: the
/// handler of [`lambda_runtime::run`], or `lambda_http::Adapter` for HTTP functions.
///
/// ```no_run
/// use lambda_runtime::{service_fn, Error, LambdaEvent};
/// use serde_json::Value;
/// use lambda_runtime::tower::Layer;
/// use xray_lambda::XRayLayer;
///
/// async fn handler(event: LambdaEvent<Value>) -> Result<Value, Error> {
///     Ok(event.payload)
/// }
///
/// # async fn main_() -> Result<(), Error> {
/// let traced = XRayLayer::new().service_name("users").layer(service_fn(handler));
/// lambda_runtime::run(traced).await
/// # }
/// ```
///
/// Settings come from the environment (`POWERTOOLS_SERVICE_NAME`,
/// `POWERTOOLS_TRACER_CAPTURE_RESPONSE`, `POWERTOOLS_TRACER_CAPTURE_ERROR`,
/// `AWS_XRAY_SDK_ENABLED`, `POWERTOOLS_TRACE_DISABLED`, `AWS_XRAY_DAEMON_ADDRESS`);
/// the builder methods override them.
pub struct XRayLayer<C = SerializeResponse> {
    settings: Settings,
    capture: PhantomData<fn() -> C>,
}

impl<C> Clone for XRayLayer<C> {
    fn clone(&self) -> Self {
        XRayLayer {
            settings: self.settings.clone(),
            capture: PhantomData,
        }
    }
}

impl<C> fmt::Debug for XRayLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XRayLayer").field("settings", &self.settings).finish()
    }
}

impl Default for XRayLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl XRayLayer {
    /// A layer configured from the environment, recording `Serialize` responses.
    pub fn new() -> Self {
        XRayLayer {
            settings: Settings::from_env(),
            capture: PhantomData,
        }
    }
}

impl<C> XRayLayer<C> {
    /// The `Service` annotation and the metadata namespace of the handler subsegment
    /// (default: `POWERTOOLS_SERVICE_NAME`, else `service_undefined`).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.settings.service = name.into();
        self
    }

    /// Whether the handler's response is recorded as metadata (default: true, or
    /// `POWERTOOLS_TRACER_CAPTURE_RESPONSE`). Responses can be large or sensitive.
    pub fn capture_response(mut self, capture: bool) -> Self {
        self.settings.capture_response = capture;
        self
    }

    /// Whether the handler's error is recorded with its message (default: true, or
    /// `POWERTOOLS_TRACER_CAPTURE_ERROR`). When false only the `fault` flag is set.
    pub fn capture_error(mut self, capture: bool) -> Self {
        self.settings.capture_error = capture;
        self
    }

    /// Where documents go, instead of `AWS_XRAY_DAEMON_ADDRESS`: `host:port` or
    /// `tcp:host:port udp:host:port`. A bad address is logged and turns tracing off.
    pub fn daemon_address(mut self, address: &str) -> Self {
        self.settings.daemon = Some(config::parse_daemon_address(address));
        self.settings.emitter = Arc::default();
        self
    }

    /// Switches tracing on or off (default: on unless `AWS_XRAY_SDK_ENABLED=false` or
    /// `POWERTOOLS_TRACE_DISABLED=true`).
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.settings.enabled = enabled;
        self
    }

    /// For handlers whose response is not `Serialize` (response streaming): the
    /// response is not recorded.
    pub fn opaque_response(self) -> XRayLayer<NoResponseCapture> {
        XRayLayer {
            settings: self.settings,
            capture: PhantomData,
        }
    }

    fn with_capture<D>(self) -> XRayLayer<D> {
        XRayLayer {
            settings: self.settings,
            capture: PhantomData,
        }
    }
}

impl<S, C> Layer<S> for XRayLayer<C> {
    type Service = XRayService<S, C>;
    fn layer(&self, inner: S) -> XRayService<S, C> {
        let function = self.settings.function_name.as_deref().unwrap_or(UNKNOWN_FUNCTION);
        XRayService {
            inner,
            shared: Arc::new(Shared {
                response_key: format!("{function} response"),
                error_key: format!("{function} error"),
                settings: self.settings.clone(),
            }),
            capture: PhantomData,
        }
    }
}

#[derive(Debug)]
struct Shared {
    settings: Settings,
    response_key: String,
    error_key: String,
}

/// The service [`XRayLayer`] makes: runs each invocation of `S` in its trace.
pub struct XRayService<S, C = SerializeResponse> {
    inner: S,
    shared: Arc<Shared>,
    capture: PhantomData<fn() -> C>,
}

impl<S: Clone, C> Clone for XRayService<S, C> {
    fn clone(&self) -> Self {
        XRayService {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            capture: PhantomData,
        }
    }
}

impl<S: Debug, C> Debug for XRayService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XRayService").field("inner", &self.inner).finish()
    }
}

impl<S, A, C> Service<LambdaEvent<A>> for XRayService<S, C>
where
    S: Service<LambdaEvent<A>>,
    S::Error: Debug + 'static,
    C: CaptureResponse<S::Response>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = HandlerFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, event: LambdaEvent<A>) -> Self::Future {
        let (mut context, node) = self.shared.settings.start(&event.context);
        let called = {
            let _entered = Entered::new(&mut context);
            catch_unwind(AssertUnwindSafe(|| self.inner.call(event)))
        };
        match called {
            Ok(fut) => HandlerFuture {
                scope: Scope::new(
                    fut,
                    context,
                    node,
                    Handler {
                        shared: self.shared.clone(),
                        capture: PhantomData,
                    },
                ),
            },
            Err(payload) => {
                if let Some(n) = node {
                    n.record_panic(Some(&*payload));
                    n.end();
                }
                resume_unwind(payload)
            }
        }
    }
}

/// Records the handler's outcome on its subsegment.
struct Handler<C> {
    shared: Arc<Shared>,
    capture: PhantomData<fn() -> C>,
}

impl<C> Debug for Handler<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Handler")
    }
}

impl<R, E, C> OnComplete<Result<R, E>> for Handler<C>
where
    E: Debug + 'static,
    C: CaptureResponse<R>,
{
    fn on_complete(&mut self, node: &Node, output: &Result<R, E>) {
        let s = &self.shared;
        match output {
            Ok(response) => {
                if s.settings.capture_response {
                    if let Some(raw) = C::capture(response) {
                        node.put_raw_metadata(&s.settings.service, &s.response_key, raw);
                    }
                }
            }
            Err(err) if s.settings.capture_error => {
                let exceptions = exception::from_handler_error(err);
                if let Some(first) = exceptions.first() {
                    node.put_metadata(&s.settings.service, &s.error_key, &first.message);
                }
                node.add_exceptions(exceptions, ErrorKind::Fault);
            }
            Err(_) => node.add_exceptions(Vec::new(), ErrorKind::Fault),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of a traced invocation.
    #[must_use = "futures do nothing unless polled"]
    pub struct HandlerFuture<F, C> {
        #[pin]
        scope: Scope<F, Handler<C>>,
    }
}

impl<F, C> Debug for HandlerFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HandlerFuture")
    }
}

impl<F, R, E, C> Future for HandlerFuture<F, C>
where
    F: Future<Output = Result<R, E>>,
    E: Debug + 'static,
    C: CaptureResponse<R>,
{
    type Output = Result<R, E>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().scope.poll(cx)
    }
}

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
    lambda_runtime::run(layer.layer(IntoResponse { inner: handler, types: PhantomData })).await
}

/// Starts the Lambda runtime for concurrent invocations (Lambda Managed Instances,
/// `AWS_LAMBDA_MAX_CONCURRENCY` > 1) with every invocation traced: a drop-in for
/// `lambda_runtime::run_concurrent`. Each invocation's trace comes from its own
/// `Context`, never from the process-wide `_X_AMZN_TRACE_ID`.
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
    lambda_runtime::run_concurrent(layer.layer(IntoResponse { inner: handler, types: PhantomData })).await
}
