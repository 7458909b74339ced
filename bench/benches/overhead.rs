//! What tracing costs, per operation. `cargo bench -p xray-bench`.

// A benchmark fails loudly when its setup fails.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::cell::Cell;
use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use xray_bench::{
    bare_service, captured, dynamodb_stub, header, http_client, http_get, in_invocation,
    in_invocations, instrumented, invoke, put_item, seed_services, subscriber, traced_service,
    Clients, Sink,
};
use xray_lambda::{begin_subsegment, FutureExt, TraceHeader};

/// Times `work` done in sampled invocations of 100 (each then sent as one datagram,
/// outside the timing): what a recorded subsegment costs the code that makes it.
fn recorded(c: &mut Criterion, sink: &Sink, name: &str, work: fn()) {
    let (todo, spent) = (Rc::new(Cell::new(0u64)), Rc::new(Cell::new(Duration::ZERO)));
    let (t, s) = (todo.clone(), spent.clone());
    let mut svc = traced_service(&sink.address, move || {
        let start = Instant::now();
        for _ in 0..t.get() {
            work();
        }
        s.set(s.get() + start.elapsed());
    });
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            spent.set(Duration::ZERO);
            in_invocations(&mut svc, &todo, iters, 100);
            spent.get()
        })
    });
}

fn subsegments(c: &mut Criterion) {
    let sink = Sink::start().unwrap_or_else(|e| panic!("UDP sink: {e}"));
    in_invocation(&sink.address, &header(false), || {
        // Through an opaque pointer, so each call is a call (see xray-bench).
        let call: fn(u64) -> u64 = black_box(captured);
        c.bench_function("unsampled #[capture] call", |b| {
            b.iter(|| call(black_box(7)))
        });
    });
    recorded(
        c,
        &sink,
        "sampled subsegment, begin+end, recorded for sending",
        || begin_subsegment(black_box("work")).end(),
    );
    recorded(
        c,
        &sink,
        "subsegment with 5 annotations and a metadata object",
        || {
            let s = begin_subsegment("work");
            s.put_annotation("user_id", "u-1");
            s.put_annotation("count", 3);
            s.put_annotation("ratio", 0.5);
            s.put_annotation("vip", true);
            s.put_annotation("region", "eu-west-1");
            s.put_metadata(
                "order",
                &json!({"order": {"id": 7, "items": ["book", "pen"], "total": 12.5}}),
            );
            s.end();
        },
    );
}

fn header_parsing(c: &mut Criterion) {
    let raw = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a87bd80c:0";
    c.bench_function("trace header parse", |b| {
        b.iter(|| TraceHeader::parse(black_box(raw)))
    });
}

fn invocation(c: &mut Criterion) {
    let sink = Sink::start().unwrap_or_else(|e| panic!("UDP sink: {e}"));
    let mut bare = bare_service(|| {});
    c.bench_function("invocation: bare handler", |b| {
        b.iter(|| invoke(&mut bare, &header(true)))
    });
    let mut traced = traced_service(&sink.address, || {});
    c.bench_function(
        "invocation: under XRayLayer, sampled (handler subsegment sent)",
        |b| b.iter(|| invoke(&mut traced, &header(true))),
    );
    // The seed example's invocation: 5 subsegments and 2 AWS calls, one datagram.
    let (mut bare, mut traced) = seed_services(Clients::start().unwrap(), &sink.address);
    c.bench_function("seed invocation, untraced", |b| {
        b.iter(|| invoke(&mut bare, &header(true)))
    });
    c.bench_function("seed invocation, traced (one datagram)", |b| {
        b.iter(|| invoke(&mut traced, &header(true)))
    });
}

/// Times `call`, run `iters` times in sampled invocations of 10, each invocation timed
/// whole: a traced call's datagram, sent when its handler ends, is shared by its
/// invocation's calls, as in a real one.
fn calls_in_invocations(c: &mut Criterion, sink: &Sink, name: &str, call: impl Fn() + 'static) {
    let todo = Rc::new(Cell::new(0u64));
    let t = todo.clone();
    let mut svc = traced_service(&sink.address, move || {
        for _ in 0..t.get() {
            call();
        }
    });
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            in_invocations(&mut svc, &todo, iters, 10);
            start.elapsed()
        })
    });
}

fn interceptor(c: &mut Criterion) {
    let clients = Clients::start().unwrap();
    let sink = Sink::start().unwrap();
    for (name, client) in [
        (
            "DynamoDB PutItem, loopback stub, no interceptor",
            &clients.plain,
        ),
        (
            "DynamoDB PutItem, loopback stub, XRayInterceptor (sampled)",
            &clients.traced,
        ),
    ] {
        let (client, rt) = (client.clone(), clients.rt.clone());
        calls_in_invocations(c, &sink, name, move || {
            assert!(rt.block_on(put_item(client.clone(), None).in_current_trace()));
        });
    }
}

fn http_requests(c: &mut Criterion) {
    let clients = Clients::start().unwrap();
    let sink = Sink::start().unwrap();
    let url = format!("{}/", dynamodb_stub().unwrap());
    for (name, traced) in [
        ("HTTP GET, loopback, reqwest-middleware", false),
        (
            "HTTP GET, loopback, reqwest-middleware + XRayMiddleware (sampled)",
            true,
        ),
    ] {
        let (client, rt, url) = (http_client(traced), clients.rt.clone(), url.clone());
        calls_in_invocations(c, &sink, name, move || {
            assert!(rt.block_on(http_get(client.clone(), url.clone()).in_current_trace()));
        });
    }
}

/// `#[tracing::instrument]` with `XRayTracingLayer`, against `#[capture]` on the same
/// function and against `tracing` alone. Last: once a layer joined a subscriber, every
/// subsegment notes itself for the layer.
fn tracing_layer(c: &mut Criterion) {
    let sink = Sink::start().unwrap_or_else(|e| panic!("UDP sink: {e}"));
    let (bare, layered) = (subscriber(false), subscriber(true));
    let call: fn(u64) -> u64 = black_box(instrumented);
    for (name, dispatch) in [
        (
            "unsampled #[instrument] call, registry + no-op layer",
            &bare,
        ),
        (
            "unsampled #[instrument] call, registry + XRayTracingLayer",
            &layered,
        ),
    ] {
        tracing::dispatcher::with_default(dispatch, || {
            in_invocation(&sink.address, &header(false), || {
                c.bench_function(name, |b| b.iter(|| call(black_box(7))));
            });
        });
    }
    let _layered = tracing::dispatcher::set_default(&layered);
    for (name, work) in [
        (
            "sampled #[instrument] call with XRayTracingLayer (recorded)",
            (|| {
                black_box(instrumented(black_box(7)));
            }) as fn(),
        ),
        (
            "sampled #[capture] call, XRayTracingLayer installed (recorded)",
            || {
                black_box(captured(black_box(7)));
            },
        ),
    ] {
        recorded(c, &sink, name, work);
    }
}

/// Polls a future that never waits.
fn ready<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let waker = std::task::Waker::noop();
    match f.as_mut().poll(&mut std::task::Context::from_waker(waker)) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("the handler never waits"),
    }
}

/// An incoming request outside Lambda: a handler answering at once, bare and under
/// `XRayServerLayer` (the default rule's decision replaced by a fixed rate).
fn server_requests(c: &mut Criterion) {
    use lambda_runtime::tower::{service_fn, Layer, Service};
    use xray_lambda::http::{SamplingRules, XRayServerLayer};

    let sink = Sink::start().unwrap_or_else(|e| panic!("UDP sink: {e}"));
    let handler = || {
        service_fn(|_req: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(()))
        })
    };
    let layer = |rate: f64| {
        let rules =
            format!(r#"{{"version": 2, "default": {{"fixed_target": 0, "rate": {rate}}}}}"#);
        XRayServerLayer::new("bench")
            .centralized_sampling(false)
            .daemon_address(&sink.address)
            .sampling_rules(SamplingRules::from_json(&rules).unwrap())
    };
    let mut bare = handler();
    c.bench_function("incoming request: bare handler", |b| {
        b.iter(|| ready(bare.call(http::Request::new(()))).unwrap())
    });
    for (name, rate) in [
        ("incoming request: XRayServerLayer, unsampled", 0.0),
        (
            "incoming request: XRayServerLayer, sampled (segment sent)",
            1.0,
        ),
    ] {
        let mut svc = layer(rate).layer(handler());
        c.bench_function(name, |b| {
            b.iter(|| ready(svc.call(http::Request::new(()))).unwrap())
        });
    }
}

criterion_group!(
    benches,
    subsegments,
    header_parsing,
    invocation,
    interceptor,
    http_requests,
    tracing_layer,
    server_requests
);
criterion_main!(benches);
