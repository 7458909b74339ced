//! [`XRayServerLayer`]: a segment for each request a service outside Lambda serves.

use std::borrow::Cow;
use std::fmt::{self, Debug};
use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use lambda_runtime::tower::{Layer, Service};

use crate::config::{self, AddressError, DaemonAddresses};
use crate::context::{Context as TraceContext, Entered, Node, OnComplete, Opened, Scope, Trace};
use crate::document::{ErrorKind, Http};
use crate::emitter::Emitter;
use crate::exception;
use crate::header::{Sampling, TraceHeader};
use crate::id::{SegmentId, TraceId};
use crate::platform::{self, Found};
use crate::sampling::{Sampler, SamplingRequest, SamplingRules, SamplingRulesError};

use super::incoming::{self, PeerIp};
use super::{content_length, record_response, TRACE_HEADER};

/// Names the segments, and wins over the name given in code (as in the official SDKs).
const ENV_TRACING_NAME: &str = "AWS_XRAY_TRACING_NAME";
/// A sampling rules file, used instead of one given in code.
const ENV_SAMPLING_RULES: &str = "XRAY_LAMBDA_SAMPLING_RULES";

/// A tower layer for HTTP servers outside Lambda (axum, tonic, hyper): one X-Ray
/// segment per request, sampled by X-Ray's rules. Feature `http-server`.
///
/// ```no_run
/// # #[cfg(feature = "http-server")] {
/// use xray_lambda::http::XRayServerLayer;
/// # fn router() -> XRayServerLayer {
/// let layer = XRayServerLayer::new("orders")
///     .sampling_rules_file("sampling-rules.json")
///     .expect("valid sampling rules");
/// // axum: Router::new().route(...).layer(layer)
/// # layer }
/// # }
/// ```
///
/// **The segment.** Named by [`new`](Self::new), or by `AWS_XRAY_TRACING_NAME`, which
/// wins. It records `http.request` (method; URL without the query string; user agent;
/// client IP from `X-Forwarded-For`, then marked `x_forwarded_for`, else the peer's
/// address when the server exposes it, see [`peer_ip`](Self::peer_ip)) and
/// `http.response` (status, and `content_length` when the response says it). A 4xx is
/// an `error`, 429 a `throttle` too, a 5xx a `fault`; an error from the service, or a
/// panic in it, is a `fault` with the error as its cause. On ECS the segment has
/// `origin: AWS::ECS::Container` and the container, on EC2 (when
/// [`ec2_metadata`](Self::ec2_metadata) is on) `AWS::EC2::Instance` and the instance.
///
/// **When it is sent.** When the response head is ready: the body is not waited for,
/// so a streamed body's time is not in it. Everything begun under it (subsegments,
/// `#[capture]`, AWS and HTTP calls, `tracing` spans) is its children, sent with it.
///
/// **The trace header.** An incoming `X-Amzn-Trace-Id` with a `Root` continues that
/// trace, its `Parent` becoming the segment's `parent_id`; `Sampled=1` and `Sampled=0`
/// are obeyed; without a decision (`Sampled=?` or none), or without a usable header,
/// the sampling rules decide. The response carries `X-Amzn-Trace-Id: Root=…;Sampled=…`.
///
/// **Sampling.** By the rules set in the X-Ray console, which the daemon serves
/// ([`centralized_sampling`](Self::centralized_sampling), on by default), whenever it
/// does; else by local rules: a rules file ([`SamplingRules`]), else X-Ray's default
/// rule (1 request a second, then 5%). An unsampled request is passed on with its
/// header and nothing recorded.
///
/// **Inside Lambda** segments belong to Lambda: the layer logs one warning and passes
/// requests through untouched. With tracing switched off (`AWS_XRAY_SDK_ENABLED=false`)
/// it passes them through too.
#[derive(Clone)]
pub struct XRayServerLayer {
    config: Config,
    /// Started at the first `layer`: the sampler's poller and the platform lookup.
    started: Arc<OnceLock<Arc<Shared>>>,
}

#[derive(Clone)]
struct Config {
    name: String,
    rules: Option<Arc<SamplingRules>>,
    centralized: bool,
    daemon: Option<Result<DaemonAddresses, AddressError>>,
    ec2: bool,
    peer_ip: PeerIp,
}

impl Debug for XRayServerLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XRayServerLayer")
            .field("name", &self.config.name)
            .field("centralized_sampling", &self.config.centralized)
            .finish_non_exhaustive()
    }
}

impl XRayServerLayer {
    /// Segments named `name` (unless `AWS_XRAY_TRACING_NAME` is set), sampled by the
    /// rules file `XRAY_LAMBDA_SAMPLING_RULES` names if it is set, else by X-Ray's
    /// default rule, and by the console's rules whenever the daemon serves them. The
    /// environment is read when the layer first wraps a service.
    pub fn new(name: impl Into<String>) -> Self {
        XRayServerLayer {
            config: Config {
                name: name.into(),
                rules: None,
                centralized: true,
                daemon: None,
                ec2: false,
                peer_ip: incoming::default_peer_ip,
            },
            started: Arc::default(),
        }
    }

    fn with(mut self, change: impl FnOnce(&mut Config)) -> Self {
        change(&mut self.config);
        self.started = Arc::default();
        self
    }

    /// Samples by the rules in the file at `path` (see [`SamplingRules`]), unless
    /// `XRAY_LAMBDA_SAMPLING_RULES` names another file. A file that cannot be used is
    /// an error naming its line and field.
    pub fn sampling_rules_file(self, path: impl AsRef<Path>) -> Result<Self, SamplingRulesError> {
        let rules = SamplingRules::from_path(path)?;
        Ok(self.sampling_rules(rules))
    }

    /// Samples by `rules`, unless `XRAY_LAMBDA_SAMPLING_RULES` names a rules file.
    pub fn sampling_rules(self, rules: SamplingRules) -> Self {
        self.with(|c| c.rules = Some(Arc::new(rules)))
    }

    /// Whether to follow the sampling rules set in the X-Ray console, which the daemon
    /// serves (on by default). The local rules decide until the daemon has answered,
    /// and whenever it has not for an hour.
    pub fn centralized_sampling(self, on: bool) -> Self {
        self.with(|c| c.centralized = on)
    }

    /// The daemon's address (`host:port`, or `tcp:host:port udp:host:port`), instead
    /// of `AWS_XRAY_DAEMON_ADDRESS` or `127.0.0.1:2000`. An unusable address is logged
    /// when the layer starts, and nothing is sent.
    pub fn daemon_address(self, address: &str) -> Self {
        let parsed = config::parse_daemon_addresses(address);
        self.with(|c| c.daemon = Some(parsed))
    }

    /// Whether to ask EC2's instance metadata service (IMDSv2) where this runs, for the
    /// segments' `origin` and `aws.ec2` (off by default: off EC2 it costs a round trip
    /// that times out). Done once, in the background; requests never wait for it. On
    /// ECS the container is recorded instead, without asking.
    pub fn ec2_metadata(self, on: bool) -> Self {
        self.with(|c| c.ec2 = on)
    }

    /// How to find the peer's IP address in a request's extensions, for `client_ip`
    /// when there is no `X-Forwarded-For`. By default a `SocketAddr` or `IpAddr` there
    /// is used. With axum's `into_make_service_with_connect_info::<SocketAddr>()`:
    ///
    /// ```ignore
    /// layer.peer_ip(|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()))
    /// ```
    pub fn peer_ip(self, find: fn(&http::Extensions) -> Option<std::net::IpAddr>) -> Self {
        self.with(|c| c.peer_ip = find)
    }

    fn shared(&self) -> Arc<Shared> {
        self.started
            .get_or_init(|| Arc::new(Shared::start(&self.config)))
            .clone()
    }
}

/// What every request of one layer shares.
struct Shared {
    /// `None`: requests pass through untouched (inside Lambda, tracing off).
    active: Option<Active>,
}

struct Active {
    name: String,
    sampler: Sampler,
    emitter: Option<Arc<Emitter>>,
    origin: Found,
    peer_ip: PeerIp,
    streaming_threshold: usize,
}

impl Shared {
    fn start(c: &Config) -> Self {
        if config::in_lambda() {
            static WARNED: AtomicBool = AtomicBool::new(false);
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "XRayServerLayer inside a Lambda function: Lambda owns the segment; \
                     requests pass through untraced (use xray_lambda::run or XRayLayer)"
                );
            }
            return Shared { active: None };
        }
        if !config::tracing_enabled() {
            return Shared { active: None };
        }
        let daemon = c
            .daemon
            .clone()
            .unwrap_or_else(config::daemon_addresses_from_env);
        let (emitter, tcp) = match daemon {
            Ok(a) => (Emitter::connect_or_log(Ok(a.udp)), Some(a.tcp)),
            Err(e) => (Emitter::connect_or_log(Err(e)), None),
        };
        let name = std::env::var(ENV_TRACING_NAME)
            .ok()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| c.name.clone());
        Shared {
            active: Some(Active {
                name,
                sampler: Sampler::new(rules_from_env(c), tcp.filter(|_| c.centralized)),
                emitter,
                origin: platform::detect(platform::Sources::from_env(c.ec2)),
                peer_ip: c.peer_ip,
                streaming_threshold: config::streaming_threshold(),
            }),
        }
    }
}

impl Active {
    /// The context a request runs under, the segment that records it (when sampled),
    /// and the header its response carries. An unsampled request only passes its trace
    /// on: nothing is allocated for it.
    fn begin<B>(
        &self,
        req: &http::Request<B>,
    ) -> (TraceContext, Option<Arc<Node>>, Option<http::HeaderValue>) {
        let incoming = req
            .headers()
            .get(&TRACE_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| match TraceHeader::parse(v) {
                Ok(h) => Some(h),
                Err(e) => {
                    warn_bad_header(&e);
                    None
                }
            });
        let origin = self.origin.get();
        let decided = incoming
            .as_ref()
            .map_or(Sampling::Requested, |h| h.sampling());
        let sampled = match decided {
            Sampling::Sampled => true,
            Sampling::NotSampled => false,
            Sampling::Requested => self.sampler.decide(&SamplingRequest {
                host: incoming::host_name(incoming::authority(req)),
                method: req.method().as_str(),
                path: req.uri().path(),
                service_name: &self.name,
                service_type: origin.map_or("", |o| o.service_type()),
            }),
        };
        let incoming =
            incoming.unwrap_or_else(|| TraceHeader::new(TraceId::new(), None, Sampling::Requested));
        let response = response_header(incoming.root(), sampled);
        let segment = match &self.emitter {
            Some(emitter) if sampled => {
                let trace = Trace::new(
                    incoming.root(),
                    incoming.extra(),
                    true,
                    Some(emitter.clone()),
                    self.streaming_threshold,
                );
                Node::segment(trace, Cow::Owned(self.name.clone()), incoming.parent())
            }
            _ => None,
        };
        let Some(segment) = segment else {
            // Passed on as it came (a new trace without a header), under the caller.
            let sampling = if sampled {
                Sampling::Sampled
            } else {
                Sampling::NotSampled
            };
            let parent = incoming.parent().unwrap_or_else(SegmentId::random);
            let passed = incoming.passed_on(parent, sampling);
            return (TraceContext::Passed(passed), None, response);
        };
        let peer = (self.peer_ip)(req.extensions());
        let request = incoming::describe(req, peer);
        segment.with_record(|r| {
            r.http = Some(Box::new(Http {
                request: Some(request),
                response: None,
            }));
            r.origin = origin.cloned();
        });
        (TraceContext::Node(segment.clone()), Some(segment), response)
    }
}

/// The rules file `XRAY_LAMBDA_SAMPLING_RULES` names, over the rules given in code; a
/// file that cannot be used is logged as an error, and the rules in code (else the
/// default rule) used.
fn rules_from_env(c: &Config) -> Option<Arc<SamplingRules>> {
    let path = std::env::var_os(ENV_SAMPLING_RULES).filter(|p| !p.is_empty());
    let Some(path) = path else {
        return c.rules.clone();
    };
    match SamplingRules::from_path(&path) {
        Ok(rules) => Some(Arc::new(rules)),
        Err(e) => {
            let instead = if c.rules.is_some() {
                "the rules given in code"
            } else {
                "X-Ray's default rule"
            };
            tracing::error!("{e}; sampling by {instead}");
            c.rules.clone()
        }
    }
}

/// An unusable incoming header is the caller's problem, and may come with every
/// request: said once, at warning level.
fn warn_bad_header(e: &crate::header::HeaderError) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(error = %e, "incoming X-Amzn-Trace-Id unusable; starting a new trace (said once)");
    } else {
        tracing::debug!(error = %e, "incoming X-Amzn-Trace-Id unusable; starting a new trace");
    }
}

impl<S> Layer<S> for XRayServerLayer {
    type Service = XRayServerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        XRayServerService {
            inner,
            shared: self.shared(),
        }
    }
}

/// The service [`XRayServerLayer`] makes. Feature `http-server`.
#[derive(Clone)]
pub struct XRayServerService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: Debug> Debug for XRayServerService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XRayServerService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, B, R> Service<http::Request<B>> for XRayServerService<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Error: Debug + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = ServerFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let Some(active) = &self.shared.active else {
            return ServerFuture {
                state: State::Plain {
                    inner: self.inner.call(req),
                },
            };
        };
        let (context, segment, response_header) = active.begin(&req);
        #[cfg(feature = "tracing-layer")]
        if let Some(s) = &segment {
            crate::tracing_layer::bind_current_span(s);
        }
        let mut context = Some(context);
        let called = {
            let _entered = Entered::new(&mut context);
            catch_unwind(AssertUnwindSafe(|| self.inner.call(req)))
        };
        match called {
            Ok(inner) => ServerFuture {
                state: State::Traced {
                    scope: Scope::new(
                        inner,
                        Opened {
                            context,
                            node: segment,
                        },
                        RecordResponse,
                    ),
                    response_header,
                },
            },
            Err(payload) => {
                if let Some(s) = segment {
                    s.record_panic(Some(&*payload));
                    s.end();
                }
                resume_unwind(payload)
            }
        }
    }
}

/// `Root=…;Sampled=…` for the response.
fn response_header(root: TraceId, sampled: bool) -> Option<http::HeaderValue> {
    let mut value = [0u8; 5 + TraceId::LEN + 10];
    value[..5].copy_from_slice(b"Root=");
    value[5..5 + TraceId::LEN].copy_from_slice(&root.to_bytes());
    value[5 + TraceId::LEN..].copy_from_slice(if sampled {
        b";Sampled=1"
    } else {
        b";Sampled=0"
    });
    http::HeaderValue::from_bytes(&value).ok()
}

/// Records the response (or the error) on the segment.
#[derive(Clone, Copy, Debug)]
struct RecordResponse;

impl<R, E: Debug + 'static> OnComplete<Result<http::Response<R>, E>> for RecordResponse {
    fn on_complete(&mut self, node: &Node, output: &Result<http::Response<R>, E>) {
        match output {
            Ok(response) => record_response(
                node,
                response.status().as_u16(),
                content_length(response.headers()),
            ),
            Err(e) => node.add_exceptions(exception::from_handler_error(e), ErrorKind::Fault),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of a request served under [`XRayServerLayer`]. Feature `http-server`.
    #[must_use = "futures do nothing unless polled"]
    pub struct ServerFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F> {
        Plain { #[pin] inner: F },
        Traced {
            #[pin]
            scope: Scope<F, RecordResponse>,
            response_header: Option<http::HeaderValue>,
        },
    }
}

impl<F> Debug for ServerFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerFuture")
    }
}

impl<F, R, E> Future for ServerFuture<F>
where
    F: Future<Output = Result<http::Response<R>, E>>,
    E: Debug + 'static,
{
    type Output = Result<http::Response<R>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Plain { inner } => inner.poll(cx),
            StateProj::Traced {
                scope,
                response_header,
            } => {
                let mut output = std::task::ready!(scope.poll(cx));
                if let (Ok(response), Some(value)) = (&mut output, response_header.take()) {
                    response.headers_mut().insert(TRACE_HEADER, value);
                }
                Poll::Ready(output)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::test_support::{by_name, Daemon};
    use lambda_runtime::tower::{service_fn, ServiceExt};
    use serde_json::json;

    const ROOT: &str = "1-5759e988-bd862e3fe1be46a994272793";
    const CALLER: &str = "53995c3f42cd8ad8";

    fn rules(rate: f64) -> SamplingRules {
        SamplingRules::from_json(&format!(
            r#"{{"version": 2, "default": {{"fixed_target": 0, "rate": {rate}}}}}"#
        ))
        .unwrap()
    }

    fn layer(d: &Daemon, rate: f64) -> XRayServerLayer {
        XRayServerLayer::new("orders")
            .centralized_sampling(false)
            .daemon_address(&d.address())
            .sampling_rules(rules(rate))
    }

    fn request(header: Option<&str>) -> http::Request<()> {
        let mut b = http::Request::builder()
            .method("POST")
            .uri("/orders?token=secret")
            .header("host", "shop.test:8080")
            .header("user-agent", "test-agent");
        if let Some(h) = header {
            b = b.header("x-amzn-trace-id", h);
        }
        b.body(()).unwrap()
    }

    /// Serves one request with a handler answering `status`, which records a
    /// subsegment and notes the header it would send downstream.
    async fn serve(
        layer: &XRayServerLayer,
        req: http::Request<()>,
        status: u16,
    ) -> (http::Response<String>, Option<TraceHeader>) {
        let seen = Arc::new(std::sync::Mutex::new(None));
        let noted = seen.clone();
        let svc = layer.layer(service_fn(move |_req: http::Request<()>| {
            let noted = noted.clone();
            async move {
                let _s = crate::begin_subsegment("work");
                *noted.lock().unwrap() = crate::current_trace_header();
                Ok::<_, std::convert::Infallible>(
                    http::Response::builder()
                        .status(status)
                        .header("content-length", "2")
                        .body("ok".to_owned())
                        .unwrap(),
                )
            }
        }));
        let response = svc.oneshot(req).await.unwrap();
        let header = seen.lock().unwrap().clone();
        (response, header)
    }

    fn response_header(r: &http::Response<String>) -> &str {
        r.headers()["x-amzn-trace-id"].to_str().unwrap()
    }

    #[tokio::test]
    async fn a_sampled_caller_is_continued_with_its_parent() {
        let d = Daemon::new();
        let layer = layer(&d, 0.0);
        let header = format!("Root={ROOT};Parent={CALLER};Sampled=1;Lineage=a87bd80c:0");
        let (response, downstream) = serve(&layer, request(Some(&header)), 201).await;
        assert_eq!(response_header(&response), format!("Root={ROOT};Sampled=1"));
        let datagrams = d.datagrams();
        assert_eq!(datagrams.len(), 1, "one datagram per request");
        let segment = &datagrams[0];
        assert_eq!(segment["name"], "orders");
        assert_eq!(
            (&segment["trace_id"], &segment["parent_id"]),
            (&json!(ROOT), &json!(CALLER))
        );
        assert!(segment.get("type").is_none());
        assert_eq!(
            segment["http"],
            json!({
                "request": {"method": "POST", "url": "http://shop.test:8080/orders",
                            "user_agent": "test-agent"},
                "response": {"status": 201, "content_length": 2}
            })
        );
        assert_eq!(segment["subsegments"][0]["name"], "work");
        let downstream = downstream.unwrap();
        let work = segment["subsegments"][0]["id"].as_str().unwrap();
        assert_eq!(
            downstream.to_string(),
            format!("Root={ROOT};Parent={work};Sampled=1;Lineage=a87bd80c:0")
        );
    }

    #[tokio::test]
    async fn an_unsampled_caller_is_obeyed_and_propagated() {
        let d = Daemon::new();
        let layer = layer(&d, 1.0);
        let header = format!("Root={ROOT};Parent={CALLER};Sampled=0");
        let (response, downstream) = serve(&layer, request(Some(&header)), 200).await;
        assert_eq!(response_header(&response), format!("Root={ROOT};Sampled=0"));
        assert_eq!(
            downstream.unwrap().to_string(),
            format!("Root={ROOT};Parent={CALLER};Sampled=0")
        );
        assert!(d.datagrams().is_empty());
    }

    #[tokio::test]
    async fn without_a_decision_the_rules_decide() {
        let d = Daemon::new();
        for (header, rate, sampled) in [
            (None, 1.0, true),
            (None, 0.0, false),
            (Some(format!("Root={ROOT};Sampled=?")), 1.0, true),
            (Some(format!("Root={ROOT}")), 0.0, false),
            (Some("garbage".to_owned()), 1.0, true),
        ] {
            let (response, _) = serve(&layer(&d, rate), request(header.as_deref()), 200).await;
            let value = response_header(&response);
            assert!(
                value.ends_with(if sampled { ";Sampled=1" } else { ";Sampled=0" }),
                "{value}"
            );
            let continued = header.as_deref().is_some_and(|h| h.starts_with("Root="));
            assert_eq!(value.contains(ROOT), continued, "{value}");
            let docs = d.datagrams();
            assert_eq!(docs.len(), usize::from(sampled), "{header:?} at {rate}");
            if let Some(segment) = docs.first() {
                assert!(segment.get("parent_id").is_none());
                assert_eq!(
                    format!("Root={};Sampled=1", segment["trace_id"].as_str().unwrap()),
                    value
                );
            }
        }
    }

    #[tokio::test]
    async fn statuses_errors_and_panics_set_the_flags() {
        let d = Daemon::new();
        let layer = layer(&d, 1.0);
        for (status, flag) in [(404, "error"), (429, "throttle"), (503, "fault"), (200, "")] {
            serve(&layer, request(None), status).await;
            let segment = &d.datagrams()[0];
            for f in ["error", "throttle", "fault"] {
                let want = f == flag || (flag == "throttle" && f == "error");
                assert_eq!(segment.get(f) == Some(&json!(true)), want, "{status} {f}");
            }
        }

        let failing = layer.layer(service_fn(|_req: http::Request<()>| async {
            Err::<http::Response<String>, _>(std::io::Error::other("database gone"))
        }));
        let e = failing.oneshot(request(None)).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "database gone",
            "the error reaches the server unchanged"
        );
        let segment = &d.datagrams()[0];
        assert_eq!(segment["fault"], true);
        assert_eq!(
            segment["cause"]["exceptions"][0]["message"],
            "database gone"
        );

        let panicking = layer.layer(service_fn(|_req: http::Request<()>| async {
            if true {
                panic!("handler bug");
            }
            Ok::<http::Response<String>, std::convert::Infallible>(http::Response::default())
        }));
        let joined = tokio::spawn(panicking.oneshot(request(None))).await;
        assert!(joined.unwrap_err().is_panic(), "the panic keeps unwinding");
        let segment = by_name(&d.documents(), "orders").clone();
        assert_eq!(segment["fault"], true);
        assert!(segment["cause"]["exceptions"][0]["message"]
            .as_str()
            .unwrap()
            .contains("handler bug"));
    }

    #[tokio::test]
    async fn the_peer_address_is_the_client_when_nothing_was_forwarded() {
        let d = Daemon::new();
        let layer = layer(&d, 1.0).peer_ip(|ext| ext.get::<std::net::IpAddr>().copied());
        let mut req = request(None);
        req.extensions_mut()
            .insert("192.0.2.4".parse::<std::net::IpAddr>().unwrap());
        serve(&layer, req, 200).await;
        let request_doc = &d.datagrams()[0]["http"]["request"];
        assert_eq!(request_doc["client_ip"], "192.0.2.4");
        assert!(request_doc.get("x_forwarded_for").is_none());
    }

    #[test]
    fn layers_and_futures_can_go_anywhere() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<XRayServerLayer>();
        send_sync::<XRayServerService<()>>();
        fn send<T: Send>() {}
        send::<ServerFuture<std::future::Ready<Result<http::Response<()>, ()>>>>();
    }
}
