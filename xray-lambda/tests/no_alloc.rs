//! Without a sampled trace, the API allocates nothing: proven with a counting allocator.
//! Its own test binary, because the global allocator is process-wide.

// A counting global allocator is the one place the tests need `unsafe`.
#![allow(clippy::unwrap_used, clippy::panic, unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use lambda_runtime::tower::{Layer, Service};
use lambda_runtime::{service_fn, LambdaEvent};
use xray_lambda::FutureExt;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call unchanged to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[xray_lambda::capture(annotate(user, n), metadata(n), response)]
fn captured_sync(user: &str, n: u32) -> Result<u32, std::fmt::Error> {
    if n > 100 {
        return Err(std::fmt::Error);
    }
    Ok(n + user.len() as u32)
}

#[xray_lambda::capture("named")]
async fn captured_async(fail: bool) -> Result<(), lambda_runtime::Error> {
    if fail {
        return Err("no".into());
    }
    Ok(())
}

/// Every API call a traced function makes, once.
async fn work() {
    let s = xray_lambda::begin_subsegment("work");
    s.put_annotation("user", "u-1");
    s.put_annotation("count", 3);
    s.put_metadata("payload", &[1, 2, 3]);
    s.record_error(&std::fmt::Error);
    xray_lambda::put_annotation("free", true);
    xray_lambda::put_metadata_in("ns", "k", "v");
    xray_lambda::record_error(&std::fmt::Error);
    async {}.in_subsegment("inner").await;
    let _ = captured_sync("u", 1);
    let _ = captured_sync("u", 1000);
    let _ = captured_async(false).await;
    s.end();
}

fn poll_once<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let waker = std::task::Waker::noop();
    match f.as_mut().poll(&mut std::task::Context::from_waker(waker)) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("work never waits"),
    }
}

/// Runs `f` as an invocation's handler under `header`, with a daemon address nobody
/// listens on, and returns what it returned.
fn in_invocation(header: &str, f: impl Fn() -> u64 + Send + Sync + 'static) -> u64 {
    let f = std::sync::Arc::new(f);
    let measured = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
    let m = measured.clone();
    let mut svc = xray_lambda::XRayLayer::new()
        .daemon_address("127.0.0.1:9")
        .enabled(true)
        // Counted without early sends: what a typical invocation, under the threshold, costs.
        .streaming_threshold(10_000)
        .layer(service_fn(move |_: LambdaEvent<()>| {
            let (m, f) = (m.clone(), f.clone());
            async move {
                m.store(f(), std::sync::atomic::Ordering::SeqCst);
                Ok::<(), lambda_runtime::Error>(())
            }
        }));
    let mut ctx = lambda_runtime::Context::default();
    ctx.xray_trace_id = Some(header.into());
    poll_once(svc.call(LambdaEvent::new((), ctx))).unwrap();
    measured.load(std::sync::atomic::Ordering::SeqCst)
}

#[test]
fn no_trace_and_unsampled_calls_do_not_allocate() {
    // No trace at all.
    poll_once(work()); // warm-up: thread-locals and one-time setup
    let before = allocations();
    poll_once(work());
    assert_eq!(allocations() - before, 0, "no trace");

    // Inside an unsampled invocation.
    let unsampled = in_invocation(
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0",
        || {
            poll_once(work());
            let before = allocations();
            poll_once(work());
            allocations() - before
        },
    );
    assert_eq!(unsampled, 0, "unsampled");
}

/// A finished subsegment is encoded straight into its parent's buffer: with a literal
/// name, its node is its only allocation, plus the logarithmic growth of that buffer.
#[test]
fn a_sampled_subsegment_with_a_literal_name_allocates_its_node_only() {
    const N: u64 = 500;
    let for_n = in_invocation(
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        || {
            // Warm-up: the thread's encode buffer and the open-subsegment list.
            for _ in 0..10 {
                xray_lambda::begin_subsegment("noop").end();
            }
            let before = allocations();
            for _ in 0..N {
                xray_lambda::begin_subsegment("noop").end();
            }
            allocations() - before
        },
    );
    assert!(for_n >= N, "{for_n}: one node each");
    assert!(
        for_n <= N + 2 * 16,
        "{for_n}: more than a node each and the buffers' doubling"
    );
}

/// What instrumented code does with `tracing`: spans with fields, entered, recorded
/// later, an error event.
#[cfg(feature = "tracing-layer")]
fn spans() {
    let span = tracing::info_span!(
        "load_user",
        annotation.user_id = "u-1",
        n = 3,
        later = tracing::field::Empty
    );
    let entered = span.enter();
    span.record("later", true);
    tracing::info_span!("inner").in_scope(|| tracing::error!(error = "refused"));
    drop(entered);
}

/// Allocations of [`spans`] under `dispatch`, after a warm-up.
#[cfg(feature = "tracing-layer")]
fn allocations_of_spans(dispatch: &tracing::Dispatch) -> u64 {
    tracing::dispatcher::with_default(dispatch, || {
        spans();
        let before = allocations();
        spans();
        allocations() - before
    })
}

#[cfg(feature = "tracing-layer")]
#[test]
fn without_a_sampled_trace_spans_cost_the_layer_no_allocation() {
    use tracing_subscriber::layer::SubscriberExt;

    let registry = || tracing::Dispatch::new(tracing_subscriber::registry());
    let with_layer = || {
        tracing::Dispatch::new(
            tracing_subscriber::registry().with(xray_lambda::XRayTracingLayer::new()),
        )
    };
    let alone = allocations_of_spans(&registry());
    assert_eq!(allocations_of_spans(&with_layer()), alone, "no trace");

    let unsampled = in_invocation(
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0",
        move || allocations_of_spans(&with_layer()),
    );
    assert_eq!(unsampled, alone, "unsampled");
}

/// Allocations of serving `request()` through `svc`, after a warm-up.
#[cfg(feature = "http-server")]
fn allocations_of_serving<S>(mut svc: S, request: impl Fn() -> http::Request<()>) -> u64
where
    S: Service<http::Request<()>, Response = http::Response<()>>,
    S::Error: std::fmt::Debug,
{
    poll_once(svc.call(request())).unwrap();
    let req = request();
    let before = allocations();
    let response = poll_once(svc.call(req)).unwrap();
    let n = allocations() - before;
    drop(response);
    n
}

/// An unsampled request through `XRayServerLayer` allocates nothing for its trace: only
/// the `X-Amzn-Trace-Id` value of its response (and the response's header map, which
/// here had none before).
#[cfg(feature = "http-server")]
#[test]
fn an_unsampled_request_allocates_only_its_response_header() {
    let handler = || {
        service_fn(|_req: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(()))
        })
    };
    let never = xray_lambda::http::SamplingRules::from_json(
        r#"{"version": 2, "default": {"fixed_target": 0, "rate": 0}}"#,
    )
    .unwrap();
    let layer = xray_lambda::http::XRayServerLayer::new("orders")
        .centralized_sampling(false)
        .daemon_address("127.0.0.1:9")
        .sampling_rules(never);
    let work = |req: http::Request<()>| async move {
        // What a handler under an unsampled trace does: still no allocation.
        poll_once(work());
        let header = xray_lambda::current_trace_header();
        assert!(header.is_some_and(|h| h.sampling() == xray_lambda::Sampling::NotSampled));
        drop(req);
        Ok::<_, std::convert::Infallible>(http::Response::new(()))
    };
    let plain = allocations_of_serving(handler(), http::Request::default);
    let without_header =
        allocations_of_serving(layer.layer(service_fn(work)), http::Request::default);
    let caller = || {
        http::Request::builder()
            .header(
                "x-amzn-trace-id",
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0",
            )
            .body(())
            .unwrap()
    };
    let from_caller = allocations_of_serving(layer.layer(service_fn(work)), caller);
    // The header value, and the empty header map's first insert (its index and entries).
    let response_header = 3;
    assert_eq!(without_header, plain + response_header, "decided here");
    assert_eq!(
        from_caller,
        plain + response_header,
        "decided by the caller"
    );
}
