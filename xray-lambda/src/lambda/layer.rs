//! [`XRayLayer`]: each invocation's trace context and its `## <function>` subsegment.

use std::borrow::Cow;
use std::fmt::{self, Debug};
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::tower::{Layer, Service};
use lambda_runtime::LambdaEvent;

use crate::config;
use crate::context::{Context as TraceContext, Entered, Node, OnComplete, Opened, Scope, Trace};
use crate::deadline::{self, Watch};
use crate::document::ErrorKind;
use crate::emitter::Emitter;
use crate::exception;
use crate::header::TraceHeader;
use crate::id::TraceId;

use super::response::{CaptureResponse, NoResponseCapture, SerializeResponse};
use super::settings::Settings;

/// True until the first invocation of this process starts.
static COLD_START: AtomicBool = AtomicBool::new(true);

const COLD_START_ANNOTATION: &str = "ColdStart";
const SERVICE_ANNOTATION: &str = "Service";

/// What every invocation of one service shares: its settings and where its documents go.
#[derive(Debug)]
struct Shared {
    settings: Settings,
    emitter: Option<Arc<Emitter>>,
}

impl Shared {
    /// The context an invocation's handler runs under, and its handler subsegment.
    ///
    /// Every invocation gets a context, even one that records nothing: its code is
    /// then known to be inside an invocation (no "during init" warning), and a trace it
    /// came with is still passed on to the services it calls.
    fn start(&self, ctx: &lambda_runtime::Context) -> Opened {
        let cold = COLD_START.swap(false, Ordering::Relaxed);
        let untraced = || Opened {
            context: Some(TraceContext::Untraced),
            node: None,
        };
        let raw = ctx
            .xray_trace_id
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(config::trace_id_env);
        let Some(raw) = raw else {
            if self.settings.sam_local {
                if let Some(emitter) = &self.emitter {
                    return self.local_trace(emitter.clone(), cold);
                }
            }
            tracing::debug!(request_id = %ctx.request_id, "no trace header; invocation not traced");
            return untraced();
        };
        let header = match TraceHeader::parse(&raw) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(header = %raw, error = %e, "malformed trace header; invocation not traced");
                return untraced();
            }
        };
        let Some(parent) = header.parent() else {
            tracing::warn!(header = %raw, "trace header has no Parent; invocation not traced");
            return untraced();
        };
        let trace = Trace::new(
            header.root(),
            header.extra(),
            header.is_sampled(),
            self.emitter.clone(),
            self.settings.streaming_threshold,
        );
        let facade = Node::facade(trace, parent);
        let handler = Node::child(
            facade.clone(),
            self.settings.names.handler.clone().into(),
            true,
        );
        self.annotate(handler.as_deref(), cold);
        Opened {
            context: Some(TraceContext::Node(handler.clone().unwrap_or(facade))),
            node: handler,
        }
    }

    /// Under `sam local`, which sends no header, the handler becomes the top-level
    /// segment of a fresh trace, so local runs are still traced (there is no Lambda
    /// function segment to attach to).
    fn local_trace(&self, emitter: Arc<Emitter>, cold: bool) -> Opened {
        let handler = Node::segment(
            Trace::new(
                TraceId::new(),
                "",
                true,
                Some(emitter),
                self.settings.streaming_threshold,
            ),
            self.settings.names.handler.clone().into(),
            None,
        );
        self.annotate(handler.as_deref(), cold);
        Opened::node_or_current(handler)
    }

    /// Arranges for what the invocation holds to be sent `timeout_margin` before its
    /// deadline (`deadline_ms`, ms since the epoch), in case the handler is still running
    /// then. With less time than the margin left, at half the time left.
    fn watch_deadline(&self, handler: Option<&Node>, deadline_ms: u64) -> Option<Watch> {
        let margin = self.settings.timeout_margin;
        let handler = handler.filter(|_| !margin.is_zero() && deadline_ms > 0)?;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let left = Duration::from_millis(deadline_ms.checked_sub(now_ms)?);
        let now = Instant::now();
        let deadline = now + left;
        let flush_at = if left > margin {
            deadline - margin
        } else {
            now + left / 2
        };
        let trace = Arc::downgrade(handler.trace());
        deadline::at(flush_at, move || {
            if let Some(trace) = trace.upgrade() {
                trace.flush_before_deadline(deadline);
            }
        })
    }

    fn annotate(&self, handler: Option<&Node>, cold: bool) {
        if let Some(h) = handler {
            // Borrowed names: nothing to allocate for the keys of every invocation.
            h.put_annotation(Cow::Borrowed(COLD_START_ANNOTATION), cold.into());
            h.put_annotation(
                Cow::Borrowed(SERVICE_ANNOTATION),
                self.settings.service.as_str().into(),
            );
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
/// the builder methods override them. The daemon address is resolved, and its socket
/// opened, when [`Layer::layer`] builds the service, not during an invocation; an
/// unusable address is logged then, once, and switches recording off (the trace
/// header is still passed on).
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
        f.debug_struct("XRayLayer")
            .field("settings", &self.settings)
            .finish()
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
    /// `tcp:host:port udp:host:port`. A host name is resolved here. A bad address is
    /// logged and turns recording off.
    pub fn daemon_address(mut self, address: &str) -> Self {
        self.settings.set_daemon(address);
        self
    }

    /// Switches tracing on or off (default: on unless `AWS_XRAY_SDK_ENABLED=false` or
    /// `POWERTOOLS_TRACE_DISABLED=true`). Off, nothing is recorded or sent, but an
    /// invocation's trace header is still passed on to the services it calls.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.settings.enabled = enabled;
        self
    }

    /// How long before each invocation's deadline everything it holds is sent, in case
    /// the handler is still running then (default 200 ms, or
    /// `XRAY_LAMBDA_TIMEOUT_MARGIN_MS`; zero switches it off). Subsegments still open
    /// are sent ended at that moment, as faults whose cause says the function was about
    /// to time out and how long each had been running; if the handler then finishes, the
    /// complete documents follow with the same ids and replace them. With less time left
    /// than the margin when an invocation starts, this happens halfway to the deadline.
    pub fn timeout_margin(mut self, margin: Duration) -> Self {
        self.settings.timeout_margin = margin;
        self
    }

    /// How many finished subsegments an invocation holds, to send nested in its
    /// handler's document, before the largest finished subtrees are sent early as
    /// documents of their own (default 1,000, or `XRAY_LAMBDA_STREAMING_THRESHOLD`;
    /// zero sends each subsegment as soon as it ends). Whatever the threshold, what is
    /// held never exceeds one datagram: past that, the largest finished subtrees are
    /// sent early too. A lower threshold sends finished work sooner, in more datagrams.
    pub fn streaming_threshold(mut self, subsegments: usize) -> Self {
        self.settings.streaming_threshold = subsegments;
        self
    }

    /// For handlers whose response is not `Serialize` (response streaming): the
    /// response is not recorded.
    pub fn opaque_response(self) -> XRayLayer<NoResponseCapture> {
        self.with_capture()
    }

    pub(super) fn with_capture<D>(self) -> XRayLayer<D> {
        XRayLayer {
            settings: self.settings,
            capture: PhantomData,
        }
    }
}

impl<S, C> Layer<S> for XRayLayer<C> {
    type Service = XRayService<S, C>;
    fn layer(&self, inner: S) -> XRayService<S, C> {
        XRayService {
            inner,
            shared: Arc::new(Shared {
                emitter: self.settings.emitter(),
                settings: self.settings.clone(),
            }),
            capture: PhantomData,
        }
    }
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
        f.debug_struct("XRayService")
            .field("inner", &self.inner)
            .finish()
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
        let Opened { mut context, node } = self.shared.start(&event.context);
        #[cfg(feature = "tracing-layer")]
        if let Some(handler) = &node {
            crate::tracing_layer::bind_current_span(handler);
        }
        let watch = self
            .shared
            .watch_deadline(node.as_deref(), event.context.deadline);
        let called = {
            let _entered = Entered::new(&mut context);
            catch_unwind(AssertUnwindSafe(|| self.inner.call(event)))
        };
        match called {
            Ok(fut) => HandlerFuture {
                scope: Scope::new(
                    fut,
                    Opened { context, node },
                    Handler {
                        shared: self.shared.clone(),
                        watch,
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
    /// The deadline watch, dropped (so cancelled) when the handler finishes.
    watch: Option<Watch>,
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
        self.watch = None;
        let s = &self.shared.settings;
        match output {
            Ok(response) => {
                if s.capture_response {
                    if let Some(raw) = C::capture(response) {
                        node.put_raw_metadata(
                            s.service.as_str(),
                            s.names.response_key.as_str(),
                            raw,
                        );
                    }
                }
            }
            Err(err) if s.capture_error => {
                let exceptions = exception::from_handler_error(err);
                if let Some(first) = exceptions.first() {
                    node.put_metadata(&s.service, &s.names.error_key, &first.message);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::test_support::{by_name, Daemon};
    use lambda_runtime::service_fn;
    use serde_json::{json, Value};

    const ROOT: &str = "1-5759e988-bd862e3fe1be46a994272793";
    const PARENT: &str = "53995c3f42cd8ad8";

    fn layer(d: &Daemon) -> XRayLayer {
        XRayLayer::new()
            .daemon_address(&d.address())
            .service_name("users")
            .enabled(true)
    }

    fn event(header: Option<&str>) -> LambdaEvent<Value> {
        let mut ctx = lambda_runtime::Context::default();
        ctx.request_id = "req-1".into();
        ctx.xray_trace_id = header.map(str::to_owned);
        LambdaEvent::new(json!({"userId": "u-1"}), ctx)
    }

    fn sampled() -> String {
        format!("Root={ROOT};Parent={PARENT};Sampled=1;Lineage=a87bd80c:0")
    }

    async fn ok_handler(e: LambdaEvent<Value>) -> Result<Value, lambda_runtime::Error> {
        let s = crate::begin_subsegment("work");
        s.put_annotation("user", e.payload["userId"].as_str().unwrap_or_default());
        drop(s);
        Ok(json!({"ok": true}))
    }

    #[tokio::test]
    async fn handler_subsegment_under_the_function_segment() {
        let d = Daemon::new();
        let mut svc = layer(&d).layer(service_fn(ok_handler));
        let out = svc.call(event(Some(&sampled()))).await.unwrap();
        assert_eq!(out, json!({"ok": true}));
        let docs = d.documents();
        assert_eq!(docs.len(), 2);
        let handler = &docs[1];
        assert!(handler["name"].as_str().unwrap().starts_with("## "));
        assert_eq!(handler["parent_id"], PARENT);
        assert_eq!(handler["trace_id"], ROOT);
        assert_eq!(handler["annotations"]["Service"], "users");
        assert!(handler["annotations"]["ColdStart"].is_boolean());
        let response_key = format!(
            "{} response",
            handler["name"].as_str().unwrap().trim_start_matches("## ")
        );
        assert_eq!(
            handler["metadata"]["users"][&response_key],
            json!({"ok": true})
        );
        let work = by_name(&docs, "work");
        assert_eq!(work["parent_id"], handler["id"]);
        assert_eq!(work["annotations"]["user"], "u-1");
    }

    #[tokio::test]
    async fn cold_start_only_on_the_first_invocation() {
        let d = Daemon::new();
        let mut svc = layer(&d).layer(service_fn(ok_handler));
        svc.call(event(Some(&sampled()))).await.unwrap();
        svc.call(event(Some(&sampled()))).await.unwrap();
        let cold: Vec<_> = d
            .documents()
            .iter()
            .filter(|doc| doc["name"].as_str().unwrap().starts_with("## "))
            .map(|doc| doc["annotations"]["ColdStart"].as_bool().unwrap())
            .collect();
        // Other tests in this process may have run an invocation first.
        assert_eq!(cold.len(), 2);
        assert!(!cold[1]);
    }

    #[tokio::test]
    async fn errors_are_faults_with_causes_and_returned_unchanged() {
        let d = Daemon::new();
        let mut svc = layer(&d).layer(service_fn(|_: LambdaEvent<Value>| async {
            Err::<Value, lambda_runtime::Error>(Box::new(std::io::Error::other("disk on fire")))
        }));
        let err = svc.call(event(Some(&sampled()))).await.unwrap_err();
        assert_eq!(err.to_string(), "disk on fire");
        let docs = d.documents();
        let h = &docs[0];
        assert_eq!(h["fault"], true);
        assert_eq!(h["cause"]["exceptions"][0]["message"], "disk on fire");
        assert_eq!(h["cause"]["exceptions"][0]["type"], "io::Error");
        let key = format!(
            "{} error",
            h["name"].as_str().unwrap().trim_start_matches("## ")
        );
        assert_eq!(h["metadata"]["users"][&key], "disk on fire");
    }

    #[tokio::test]
    async fn capture_switches_off_response_and_error_details() {
        let d = Daemon::new();
        let layer = layer(&d).capture_response(false).capture_error(false);
        layer
            .layer(service_fn(ok_handler))
            .call(event(Some(&sampled())))
            .await
            .unwrap();
        let mut failing = layer.layer(service_fn(|_: LambdaEvent<Value>| async {
            Err::<Value, _>("secret detail".to_owned())
        }));
        assert_eq!(
            failing.call(event(Some(&sampled()))).await.unwrap_err(),
            "secret detail"
        );
        let docs = d.documents();
        let handlers: Vec<_> = docs
            .iter()
            .filter(|d| d["name"].as_str().unwrap().starts_with("## "))
            .collect();
        assert!(handlers[0].get("metadata").is_none());
        assert_eq!(handlers[1]["fault"], true);
        assert!(handlers[1].get("cause").is_none());
        assert!(!serde_json::to_string(&docs).unwrap().contains("secret"));
    }

    #[tokio::test]
    async fn panics_are_recorded_and_keep_unwinding() {
        let d = Daemon::new();
        let svc = layer(&d).layer(service_fn(|_: LambdaEvent<Value>| async {
            let _inner = crate::begin_subsegment("inner");
            if true {
                panic!("handler blew up");
            }
            Ok::<Value, lambda_runtime::Error>(Value::Null)
        }));
        let res = tokio::spawn(async move {
            let mut svc = svc;
            svc.call(event(Some(&sampled()))).await
        })
        .await;
        let payload = res.unwrap_err().into_panic();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"handler blew up"));
        let docs = d.documents();
        let inner = by_name(&docs, "inner");
        let handler = docs
            .iter()
            .find(|d| d["name"].as_str().unwrap().starts_with("## "))
            .unwrap();
        assert_eq!(
            inner["cause"]["exceptions"][0]["message"],
            "handler blew up"
        );
        assert_eq!(inner["cause"]["exceptions"][0]["stack"][0]["path"], file!());
        assert_eq!(handler["fault"], true);
        assert_eq!(handler["cause"], inner["cause"]["exceptions"][0]["id"]);
    }

    #[tokio::test]
    async fn unsampled_missing_and_malformed_headers_send_nothing() {
        let d = Daemon::new();
        let mut svc = layer(&d).layer(service_fn(|_: LambdaEvent<Value>| async {
            let s = crate::begin_subsegment("work");
            assert!(!s.is_recording());
            Ok::<_, lambda_runtime::Error>(crate::current_trace_header().map(|h| h.to_string()))
        }));
        let unsampled = svc
            .call(event(Some(&format!(
                "Root={ROOT};Parent={PARENT};Sampled=0;Lineage=a87bd80c:0"
            ))))
            .await
            .unwrap();
        assert_eq!(
            unsampled.as_deref(),
            Some(format!("Root={ROOT};Parent={PARENT};Sampled=0;Lineage=a87bd80c:0").as_str())
        );
        for header in [
            Some(format!("Root={ROOT};Parent={PARENT};Sampled=?")),
            Some("Root=1-bad;Parent=53995c3f42cd8ad8;Sampled=1".to_owned()),
            Some(format!("Root={ROOT};Sampled=1")),
            None,
        ] {
            let out = svc.call(event(header.as_deref())).await.unwrap();
            if header.as_deref().is_some_and(|h| h.ends_with('?')) {
                assert!(out.is_some(), "deferred sampling still propagates");
            } else {
                assert_eq!(out, None);
            }
        }
        assert!(d.documents().is_empty());
    }

    #[tokio::test]
    async fn subsegments_left_open_are_ended_and_marked() {
        let d = Daemon::new();
        let mut svc = layer(&d).layer(service_fn(|_: LambdaEvent<Value>| async {
            let outer = crate::begin_subsegment("leaked_outer");
            let inner = crate::begin_subsegment("leaked_inner");
            std::mem::forget(inner);
            std::mem::forget(outer);
            Ok::<_, lambda_runtime::Error>(Value::Null)
        }));
        svc.call(event(Some(&sampled()))).await.unwrap();
        let docs = d.documents();
        let names: Vec<_> = docs
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(names[..2], ["leaked_inner", "leaked_outer"]);
        assert!(names[2].starts_with("## "));
        for leaked in &docs[..2] {
            assert_eq!(
                leaked["metadata"]["xray_lambda"]["incomplete"],
                "still open when the handler returned"
            );
        }
        assert!(docs[2]
            .get("metadata")
            .is_none_or(|m| m.get("xray_lambda").is_none()));
    }

    #[tokio::test]
    async fn opaque_response_traces_handlers_whose_response_is_not_serialize() {
        struct Streamed(u8);
        let d = Daemon::new();
        let mut svc =
            layer(&d)
                .opaque_response()
                .layer(service_fn(|_: LambdaEvent<Value>| async {
                    Ok::<_, lambda_runtime::Error>(Streamed(7))
                }));
        let out = svc.call(event(Some(&sampled()))).await.unwrap();
        assert_eq!(out.0, 7);
        let docs = d.documents();
        assert_eq!(docs.len(), 1);
        assert!(docs[0]["name"].as_str().unwrap().starts_with("## "));
        assert!(docs[0].get("metadata").is_none(), "no response recorded");
    }

    #[tokio::test]
    async fn sam_local_without_a_header_starts_a_local_trace() {
        let d = Daemon::new();
        let mut local = layer(&d);
        local.settings.sam_local = true;
        let mut svc = local.layer(service_fn(ok_handler));
        svc.call(event(None)).await.unwrap();
        let docs = d.documents();
        assert_eq!(docs.len(), 2);
        let handler = &docs[1];
        assert!(handler["name"].as_str().unwrap().starts_with("## "));
        assert!(
            handler.get("parent_id").is_none() && handler.get("type").is_none(),
            "a top-level segment"
        );
        assert_eq!(by_name(&docs, "work")["parent_id"], handler["id"]);
        assert_eq!(docs[0]["trace_id"], handler["trace_id"]);
        // Outside SAM, the same invocation is not traced.
        layer(&d)
            .layer(service_fn(ok_handler))
            .call(event(None))
            .await
            .unwrap();
        assert!(d.documents().is_empty());
    }

    /// With less time left than the margin, what the invocation holds is sent halfway
    /// to the deadline, not at once.
    #[tokio::test]
    async fn with_less_time_than_the_margin_the_flush_comes_halfway() {
        let d = Daemon::new();
        let mut svc = layer(&d)
            .timeout_margin(std::time::Duration::from_secs(10))
            .layer(service_fn(|_: LambdaEvent<Value>| async {
                let _s = crate::begin_subsegment("slow");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                Ok::<_, lambda_runtime::Error>(Value::Null)
            }));
        let mut e = event(Some(&sampled()));
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        e.context.deadline = now_ms + 600;
        svc.call(e).await.unwrap();
        let datagrams = d.datagrams();
        assert_eq!(
            datagrams.len(),
            2,
            "the flush, then the true end: {datagrams:#?}"
        );
        let early = &datagrams[0];
        let ran = early["end_time"].as_f64().unwrap() - early["start_time"].as_f64().unwrap();
        assert!(
            (0.25..0.45).contains(&ran),
            "flushed after {ran} s, not halfway"
        );
        assert_eq!(
            early["subsegments"][0]["cause"]["exceptions"][0]["type"],
            "Timeout"
        );
        assert!(datagrams[1].get("fault").is_none());
    }

    /// With a streaming threshold of zero, each subsegment goes as soon as it ends.
    #[tokio::test]
    async fn a_zero_threshold_sends_each_subsegment_as_it_ends() {
        let d = Daemon::new();
        let mut svc = layer(&d)
            .streaming_threshold(0)
            .layer(service_fn(ok_handler));
        svc.call(event(Some(&sampled()))).await.unwrap();
        let datagrams = d.datagrams();
        let names: Vec<_> = datagrams
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(names.len(), 2, "{datagrams:#?}");
        assert_eq!(names[0], "work");
        assert!(datagrams[1].get("subsegments").is_none());
    }

    /// With nothing to send documents to (an unusable address, tracing disabled), the
    /// invocation records nothing, but its trace still reaches the services it calls.
    #[tokio::test]
    async fn without_documents_the_trace_header_still_propagates() {
        let d = Daemon::new();
        let header_handler = |_: LambdaEvent<Value>| async {
            let s = crate::begin_subsegment("work");
            assert!(!s.is_recording());
            Ok::<_, lambda_runtime::Error>(crate::current_trace_header().map(|h| h.to_string()))
        };
        for layer in [
            XRayLayer::new()
                .daemon_address("not an address")
                .enabled(true),
            XRayLayer::new().daemon_address("127.0.0.1:0").enabled(true),
            layer(&d).enabled(false),
        ] {
            let mut svc = layer.layer(service_fn(header_handler));
            let out = svc.call(event(Some(&sampled()))).await.unwrap();
            assert_eq!(
                out.as_deref(),
                Some(format!("Root={ROOT};Parent={PARENT};Sampled=1;Lineage=a87bd80c:0").as_str()),
                "{layer:?}"
            );
        }
        assert!(d.documents().is_empty());
    }
}

#[cfg(test)]
mod http_tests {
    use super::*;
    use crate::context::test_support::{by_name, Daemon};
    use lambda_http::{Body, Request, Response};
    use serde_json::json;

    async fn http_handler(req: Request) -> Result<Response<Body>, lambda_runtime::Error> {
        crate::begin_subsegment("route").end();
        let user = req
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        Ok(Response::builder()
            .status(201)
            .body(Body::from(format!("created {user}")))?)
    }

    #[tokio::test]
    async fn wraps_the_lambda_http_adapter() {
        let d = Daemon::new();
        let adapter = lambda_http::Adapter::from(lambda_runtime::service_fn(http_handler));
        let mut svc = XRayLayer::new()
            .daemon_address(&d.address())
            .enabled(true)
            .layer(adapter);
        let event: lambda_http::request::LambdaRequest = serde_json::from_value(json!({
            "resource": "/users/{id}", "path": "/users/u-1", "httpMethod": "POST",
            "headers": {"Host": "example.com"}, "multiValueHeaders": {"Host": ["example.com"]},
            "queryStringParameters": null, "multiValueQueryStringParameters": null,
            "pathParameters": {"id": "u-1"}, "stageVariables": null,
            "requestContext": {"accountId": "123456789012", "resourceId": "r", "stage": "prod",
                "requestId": "req", "identity": {"sourceIp": "127.0.0.1"}, "resourcePath": "/users/{id}",
                "httpMethod": "POST", "apiId": "api"},
            "body": null, "isBase64Encoded": false
        }))
        .unwrap();
        let mut ctx = lambda_runtime::Context::default();
        ctx.xray_trace_id = Some(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".into(),
        );
        let response = svc.call(LambdaEvent::new(event, ctx)).await.unwrap();
        let response = serde_json::to_value(&response).unwrap();
        assert_eq!(response["statusCode"], 201);
        let docs = d.documents();
        let handler = docs
            .iter()
            .find(|d| d["name"].as_str().unwrap().starts_with("## "))
            .unwrap();
        assert_eq!(handler["parent_id"], "53995c3f42cd8ad8");
        assert_eq!(by_name(&docs, "route")["parent_id"], handler["id"]);
        let recorded = handler["metadata"]["service_undefined"]
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap();
        assert_eq!(recorded["statusCode"], 201);
        assert_eq!(recorded["body"], "created u-1");
    }
}
