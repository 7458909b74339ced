//! Shared by the benches and the comparison driver: running code inside a Lambda
//! invocation's trace context, and a UDP sink standing in for the daemon.

use std::future::Future;
use std::io::{BufReader, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use std::net::{TcpListener, TcpStream, UdpSocket};
use xray_lambda_e2e::harness::HttpRequest;

use std::hint::black_box;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextMut,
    FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::{Intercept, SharedInterceptor};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use lambda_runtime::tower::{Layer, Service};
use lambda_runtime::{service_fn, LambdaEvent};
use xray_lambda::XRayLayer;

/// A loopback UDP socket drained by a thread, so sends never back up; it counts the
/// datagrams.
#[derive(Debug)]
pub struct Sink {
    pub address: String,
    received: Arc<AtomicU64>,
}

impl Sink {
    pub fn start() -> std::io::Result<Sink> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        let address = socket.local_addr()?.to_string();
        let received = Arc::new(AtomicU64::new(0));
        let count = received.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 70_000];
            while socket.recv(&mut buf).is_ok() {
                count.fetch_add(1, Ordering::Relaxed);
            }
        });
        Ok(Sink { address, received })
    }

    /// Datagrams received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Datagrams received, once none has arrived for 100 ms (or after 5 s): what was
    /// sent before has landed.
    pub fn settled(&self) -> u64 {
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut last = self.received();
        loop {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let now = self.received();
            if now == last || std::time::Instant::now() > give_up {
                return now;
            }
            last = now;
        }
    }
}

/// A service whose handler runs `work` synchronously (so an invocation completes in
/// one poll): traced with `XRayLayer` sending to `daemon`, responses not recorded.
pub fn traced_service(
    daemon: &str,
    mut work: impl FnMut(),
) -> impl Service<LambdaEvent<()>, Response = (), Error = lambda_runtime::Error> {
    XRayLayer::new()
        .daemon_address(daemon)
        .enabled(true)
        .capture_response(false)
        .layer(service_fn(move |_: LambdaEvent<()>| {
            work();
            async { Ok::<(), lambda_runtime::Error>(()) }
        }))
}

/// The same without tracing: what the function costs on its own.
pub fn bare_service(
    mut work: impl FnMut(),
) -> impl Service<LambdaEvent<()>, Response = (), Error = lambda_runtime::Error> {
    service_fn(move |_: LambdaEvent<()>| {
        work();
        async { Ok::<(), lambda_runtime::Error>(()) }
    })
}

/// One invocation of `svc` under `header`, run to completion (its handler must not
/// wait).
pub fn invoke<S: Service<LambdaEvent<()>>>(svc: &mut S, header: &str) {
    let mut ctx = lambda_runtime::Context::default();
    ctx.xray_trace_id = Some(header.to_owned());
    // Lambda's default timeout ahead, as every real invocation has one: the wrapper
    // arranges to send what it holds before it.
    ctx.deadline = now_ms() + 3_000;
    let fut = svc.call(LambdaEvent::new((), ctx));
    let mut fut = std::pin::pin!(fut);
    let waker = std::task::Waker::noop();
    let ready = fut
        .as_mut()
        .poll(&mut std::task::Context::from_waker(waker))
        .is_ready();
    if !ready {
        unreachable_invocation();
    }
}

/// Milliseconds since the epoch, as Lambda gives a deadline.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// CPU time this thread has used: the caller's own work, without waiting and without
/// what other threads (a server, the daemon) do meanwhile.
#[allow(unsafe_code)] // clock_gettime on a stack value: no other way to read it.
pub fn thread_cpu_time() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// `Root=…;Parent=…;Sampled=<sampled>` for a fixed trace.
pub fn header(sampled: bool) -> String {
    format!(
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled={}",
        u8::from(sampled)
    )
}

/// Runs `f` as the body of an invocation traced under `header`, with documents going
/// to `daemon`, and returns what it returned.
pub fn in_invocation<R>(daemon: &str, header: &str, f: impl FnOnce() -> R) -> R {
    let mut f = Some(f);
    let mut out = None;
    // The handler's synchronous part runs inside the invocation's context.
    invoke(
        &mut traced_service(daemon, || out = f.take().map(|f| f())),
        header,
    );
    match out {
        Some(r) => r,
        None => unreachable_invocation(),
    }
}

/// Runs `iters` units of work as invocations of `svc` of at most `per` each, telling
/// the handler through `todo` how many to do this time: what the benches time.
pub fn in_invocations<S: Service<LambdaEvent<()>>>(
    svc: &mut S,
    todo: &std::cell::Cell<u64>,
    iters: u64,
    per: u64,
) {
    let mut left = iters;
    while left > 0 {
        todo.set(left.min(per));
        left -= todo.get();
        invoke(svc, &header(true));
    }
}

#[allow(clippy::panic)]
fn unreachable_invocation() -> ! {
    panic!("the handler did not run")
}

/// A DynamoDB stand-in on loopback: answers every request with `{}`, keeping
/// connections alive, so the bench measures the client, not a server.
pub fn dynamodb_stub() -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!(
        "http://{}",
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    );
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || serve(stream));
        }
    });
    Ok(url)
}

fn serve(stream: TcpStream) {
    let Ok(clone) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(clone);
    let mut out = stream;
    while let Ok(Some(_request)) = HttpRequest::read(&mut reader) {
        let reply = "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\nx-amzn-RequestId: bench\r\nContent-Length: 2\r\n\r\n{}";
        if out.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// A DynamoDB client for `endpoint`, with or without the X-Ray interceptor.
pub fn dynamodb_client(endpoint: &str, traced: bool) -> aws_sdk_dynamodb::Client {
    let interceptor =
        traced.then(|| SharedInterceptor::new(xray_lambda::aws::XRayInterceptor::new()));
    dynamodb_client_with(endpoint, interceptor)
}

/// A DynamoDB client for `endpoint` with `interceptor` on every call.
pub fn dynamodb_client_with(
    endpoint: &str,
    interceptor: Option<SharedInterceptor>,
) -> aws_sdk_dynamodb::Client {
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
    let mut b = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(endpoint)
        .http_client(aws_smithy_http_client::Builder::new().build_http());
    if let Some(interceptor) = interceptor {
        // As it is: `.interceptor()` would wrap it in another `SharedInterceptor`, which
        // does not pass on the list of hooks it implements.
        b.push_interceptor(interceptor);
    }
    aws_sdk_dynamodb::Client::from_conf(b.build())
}

/// What the SDK charges any interceptor before it does anything: one with the three
/// hooks `XRayInterceptor` implements, doing nothing; with `keeps_state`, keeping a
/// small value in the call's config bag from the first hook to the last, as an
/// interceptor recording the call must.
#[derive(Debug)]
pub struct FloorInterceptor {
    pub keeps_state: bool,
}

/// [`FloorInterceptor`]'s value in the config bag.
#[derive(Debug)]
struct FloorState(u32);

impl aws_smithy_types::config_bag::Storable for FloorState {
    type Storer = aws_smithy_types::config_bag::StoreReplace<Self>;
}

#[aws_smithy_runtime_api::client::interceptors::dyn_dispatch_hint]
impl Intercept for FloorInterceptor {
    fn name(&self) -> &'static str {
        "FloorInterceptor"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.keeps_state {
            cfg.interceptor_state().store_put(FloorState(0));
        }
        Ok(())
    }

    fn modify_before_transmit(
        &self,
        _context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(state) = cfg.get_mut_from_interceptor_state::<FloorState>() {
            state.0 += 1;
        }
        Ok(())
    }

    fn read_after_execution(
        &self,
        _context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        black_box(cfg.get_mut_from_interceptor_state::<FloorState>());
        Ok(())
    }
}

/// A `PutItem` of an item with `attributes` string attributes (about 37 bytes of JSON
/// each), as much of the request body as a user's data takes; whether it succeeded.
pub async fn put_large_item(client: aws_sdk_dynamodb::Client, attributes: usize) -> bool {
    use aws_sdk_dynamodb::types::AttributeValue;
    let item = (0..attributes)
        .map(|i| {
            (
                format!("attribute_{i}"),
                AttributeValue::S(format!("value number {i}")),
            )
        })
        .collect();
    let request = client
        .put_item()
        .table_name("users-table")
        .set_item(Some(item));
    request.send().await.is_ok()
}

/// A `PutItem` about to be sent, open to customizing.
pub type PutItemCall = aws_sdk_dynamodb::client::customize::CustomizableOperation<
    aws_sdk_dynamodb::operation::put_item::PutItemOutput,
    aws_sdk_dynamodb::operation::put_item::PutItemError,
    aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder,
>;

/// What a variant does to each call: registers its interceptor on it, given as itself
/// (as users do). A `SharedInterceptor` given to `.interceptor()` would be wrapped in
/// another, which does not pass on the list of hooks the inner one implements: the SDK
/// would call all of them.
pub type PerCall = Box<dyn Fn(PutItemCall) -> PutItemCall>;

/// One `PutItem`, with `per_call`'s interceptor registered on this call only (as
/// xray-lite requires); whether it succeeded.
pub async fn put_item(client: aws_sdk_dynamodb::Client, per_call: Option<&PerCall>) -> bool {
    let request = client.put_item().table_name("users-table").item(
        "userId",
        aws_sdk_dynamodb::types::AttributeValue::S("u-1".into()),
    );
    let sent = match per_call {
        Some(register) => register(request.customize()).send().await,
        None => request.send().await,
    };
    sent.is_ok()
}

/// A `reqwest-middleware` client, with or without `XRayMiddleware`.
pub fn http_client(traced: bool) -> reqwest_middleware::ClientWithMiddleware {
    let mut b = reqwest_middleware::ClientBuilder::new(reqwest::Client::new());
    if traced {
        b = b.with(xray_lambda::http::XRayMiddleware::new());
    }
    b.build()
}

/// One GET of `url`; whether it was answered.
pub async fn http_get(client: reqwest_middleware::ClientWithMiddleware, url: String) -> bool {
    match client.get(url).send().await {
        Ok(response) => response.bytes().await.is_ok(),
        Err(_) => false,
    }
}

/// What the AWS-call measurements share: a DynamoDB stub on loopback, a client for it
/// with and one without `XRayInterceptor`, and a current-thread runtime to call them on.
#[derive(Debug)]
pub struct Clients {
    pub rt: std::rc::Rc<tokio::runtime::Runtime>,
    /// The stub's address, for more clients.
    pub endpoint: String,
    pub plain: aws_sdk_dynamodb::Client,
    pub traced: aws_sdk_dynamodb::Client,
}

impl Clients {
    pub fn start() -> std::io::Result<Self> {
        let endpoint = dynamodb_stub()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Clients {
            rt: std::rc::Rc::new(rt),
            plain: dynamodb_client(&endpoint, false),
            traced: dynamodb_client(&endpoint, true),
            endpoint,
        })
    }
}

/// A unit of work in a subsegment of its own through `#[capture]`.
#[xray_lambda::capture]
pub fn captured(x: u64) -> u64 {
    x.wrapping_mul(31)
}

/// The same unit of work in a `tracing` span (a subsegment under `XRayTracingLayer`).
#[tracing::instrument]
pub fn instrumented(x: u64) -> u64 {
    x.wrapping_mul(31)
}

/// A subscriber with `XRayTracingLayer`, or (`false`) with a layer that does nothing:
/// `tracing` alone. (A registry with no layer at all never frees closed spans:
/// tokio-rs/tracing#900.)
pub fn subscriber(xray: bool) -> tracing::Dispatch {
    use tracing_subscriber::layer::SubscriberExt;
    let registry = tracing_subscriber::registry();
    if xray {
        tracing::Dispatch::new(registry.with(xray_lambda::XRayTracingLayer::new()))
    } else {
        tracing::Dispatch::new(registry.with(tracing_subscriber::layer::Identity::new()))
    }
}

/// What the seed example's invocation does, on a DynamoDB `client` (traced or not):
/// five subsegments (nested, one of them `#[capture]`d, with an annotation and
/// metadata) and two AWS calls, run on `rt`.
pub fn seed_work(rt: &tokio::runtime::Runtime, client: &aws_sdk_dynamodb::Client) {
    use xray_lambda::{begin_subsegment, FutureExt};
    let validate = begin_subsegment("validate_request");
    validate.put_annotation("userId", "u-1");
    validate.put_metadata(
        "user",
        &serde_json::json!({"userId": "u-1", "name": "Ann Lee", "email": "ann@example.com"}),
    );
    begin_subsegment("parse_body").end();
    drop(validate);
    let saved = rt.block_on(save_user(client.clone()).in_current_trace());
    assert!(saved, "the DynamoDB stub answers");
}

/// The seed example's invocation as two services on `clients`: untraced, and traced
/// with `XRayLayer` sending to `daemon`.
pub fn seed_services(
    clients: Clients,
    daemon: &str,
) -> (
    impl Service<LambdaEvent<()>, Response = (), Error = lambda_runtime::Error>,
    impl Service<LambdaEvent<()>, Response = (), Error = lambda_runtime::Error>,
) {
    let Clients {
        rt, plain, traced, ..
    } = clients;
    let r = rt.clone();
    (
        bare_service(move || seed_work(&r, &plain)),
        traced_service(daemon, move || seed_work(&rt, &traced)),
    )
}

#[xray_lambda::capture]
async fn save_user(client: aws_sdk_dynamodb::Client) -> bool {
    use xray_lambda::FutureExt;
    let put = put_item(client.clone(), None).await;
    let again = async { put_item(client, None).await }
        .in_subsegment("write_profile")
        .await;
    xray_lambda::begin_subsegment("audit").end();
    put && again
}
