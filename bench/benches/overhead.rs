//! What tracing costs, per operation. `cargo bench -p xray-bench`.

// A benchmark fails loudly when its setup fails.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use lambda_runtime::tower::{Layer, Service};
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::json;
use xray_bench::{dynamodb_client, dynamodb_stub, header, in_invocation, put_item, Sink};
use xray_lambda::{begin_subsegment, FutureExt, TraceHeader, XRayLayer};

#[xray_lambda::capture]
fn captured(x: u64) -> u64 {
    x.wrapping_mul(31)
}

fn subsegments(c: &mut Criterion) {
    let sink = Sink::start().unwrap_or_else(|e| panic!("UDP sink: {e}"));
    in_invocation(&sink.address, &header(false), || {
        c.bench_function("unsampled #[capture] call", |b| {
            b.iter(|| captured(black_box(7)))
        });
    });
    in_invocation(&sink.address, &header(true), || {
        c.bench_function("sampled subsegment, begin+end, encoded and sent", |b| {
            b.iter(|| begin_subsegment(black_box("work")).end())
        });
        let metadata = json!({"order": {"id": 7, "items": ["book", "pen"], "total": 12.5}});
        c.bench_function("subsegment with 5 annotations and a metadata object", |b| {
            b.iter(|| {
                let s = begin_subsegment("work");
                s.put_annotation("user_id", "u-1");
                s.put_annotation("count", 3);
                s.put_annotation("ratio", 0.5);
                s.put_annotation("vip", true);
                s.put_annotation("region", "eu-west-1");
                s.put_metadata("order", &metadata);
                s.end();
            })
        });
    });
}

fn header_parsing(c: &mut Criterion) {
    let raw = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a87bd80c:0";
    c.bench_function("trace header parse", |b| {
        b.iter(|| TraceHeader::parse(black_box(raw)))
    });
}

fn poll_ready<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("the handler never waits"),
    }
}

fn invocation(c: &mut Criterion) {
    let sink = Sink::start().unwrap_or_else(|e| panic!("UDP sink: {e}"));
    let handler = |e: LambdaEvent<serde_json::Value>| async move {
        Ok::<_, lambda_runtime::Error>(e.payload)
    };
    let event = || {
        let mut ctx = lambda_runtime::Context::default();
        ctx.xray_trace_id = Some(header(true));
        LambdaEvent::new(json!({"userId": "u-1"}), ctx)
    };
    let mut bare = service_fn(handler);
    c.bench_function("invocation: bare handler", |b| {
        b.iter(|| poll_ready(bare.call(event())))
    });
    let mut traced = XRayLayer::new()
        .daemon_address(&sink.address)
        .enabled(true)
        .layer(service_fn(handler));
    c.bench_function(
        "invocation: under XRayLayer, sampled (handler subsegment sent)",
        |b| b.iter(|| poll_ready(traced.call(event()))),
    );
}

fn interceptor(c: &mut Criterion) {
    let endpoint = dynamodb_stub().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sink = Sink::start().unwrap();
    let (plain, traced) = (
        dynamodb_client(&endpoint, false),
        dynamodb_client(&endpoint, true),
    );
    in_invocation(&sink.address, &header(true), || {
        c.bench_function("DynamoDB PutItem, loopback stub, no interceptor", |b| {
            b.iter(|| rt.block_on(put_item(plain.clone(), None).in_current_trace()))
        });
        c.bench_function(
            "DynamoDB PutItem, loopback stub, XRayInterceptor (sampled)",
            |b| b.iter(|| rt.block_on(put_item(traced.clone(), None).in_current_trace())),
        );
    });
}

criterion_group!(
    benches,
    subsegments,
    header_parsing,
    invocation,
    interceptor
);
criterion_main!(benches);
