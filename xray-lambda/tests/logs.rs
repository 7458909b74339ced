//! What the crate logs: one clear line when tracing is off, nothing misleading, and one
//! warning for guards that end out of order. Its own test binary, because it sets
//! `AWS_LAMBDA_FUNCTION_NAME` (inside Lambda) and `AWS_XRAY_DAEMON_ADDRESS` (a host
//! name that does not resolve) for the whole process.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Once;
use std::time::Duration;

use lambda_runtime::tower::{Layer, Service};
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::{json, Value};
use support::{block_on, event, Collector, Logs};
use xray_lambda::{begin_subsegment, current_trace_header, put_annotation, FutureExt, XRayLayer};

/// A sampled header with a `Lineage`, which must be passed on as it came.
const SAMPLED: &str =
    "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a87bd80c:0";
const INIT_WARNING: &str = "outside an invocation";
const OUT_OF_ORDER: &str = "ended while another subsegment was current";

fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var("AWS_LAMBDA_FUNCTION_NAME", "logs-fn");
        std::env::set_var("AWS_XRAY_DAEMON_ADDRESS", "no-such-host.invalid:2000");
        std::env::remove_var("AWS_XRAY_SDK_ENABLED");
        std::env::remove_var("POWERTOOLS_TRACE_DISABLED");
        std::env::remove_var("_X_AMZN_TRACE_ID");
    });
}

/// Uses every part of the API, and answers with the header it would pass on.
async fn handler(_: LambdaEvent<Value>) -> Result<Value, lambda_runtime::Error> {
    let s = begin_subsegment("work");
    s.put_annotation("k", 1);
    drop(s);
    put_annotation("free", true);
    async {}.in_subsegment("inner").await;
    Ok(json!(current_trace_header().map(|h| h.to_string())))
}

#[test]
fn tracing_off_says_so_once_and_nothing_misleading() {
    setup();
    let (logs, _guard) = Logs::capture();

    // The environment's host name is resolved when the service is built, not in an
    // invocation: its error is logged before the first one.
    let mut from_env = XRayLayer::new().layer(service_fn(handler));
    let lines = logs.matching("no-such-host.invalid");
    assert_eq!(lines.len(), 1, "{:#?}", logs.lines());
    assert!(lines[0].contains("X-Ray tracing is off"), "{}", lines[0]);
    let mut bad_port = XRayLayer::new()
        .daemon_address("127.0.0.1:0")
        .layer(service_fn(handler));
    let mut disabled = XRayLayer::new().enabled(false).layer(service_fn(handler));
    for _ in 0..3 {
        for svc in [&mut from_env, &mut bad_port, &mut disabled] {
            // No documents, but the trace goes on to the services the function calls.
            let out = block_on(svc.call(event(json!({}), Some(SAMPLED)))).unwrap();
            assert_eq!(out, SAMPLED);
        }
    }
    assert_eq!(logs.matching("no-such-host.invalid").len(), 1, "once");
    let port_lines = logs.matching("127.0.0.1:0");
    assert_eq!(port_lines.len(), 1, "{:#?}", logs.lines());
    assert!(port_lines[0].contains("port 0"), "{}", port_lines[0]);

    // A malformed header: one warning per invocation, and no trace to pass on.
    let mut svc = XRayLayer::new().layer(service_fn(handler));
    for _ in 0..2 {
        let out = block_on(svc.call(event(
            json!({}),
            Some("Root=1-bad;Parent=53995c3f42cd8ad8;Sampled=1"),
        )))
        .unwrap();
        assert_eq!(out, Value::Null);
    }
    assert_eq!(logs.matching("malformed trace header").len(), 2);
    // No header at all: nothing worth a warning.
    block_on(svc.call(event(json!({}), None))).unwrap();

    let unexpected: Vec<_> = logs
        .lines()
        .into_iter()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .filter(|l| {
            !l.contains("no-such-host.invalid")
                && !l.contains("127.0.0.1:0")
                && !l.contains("malformed trace header")
        })
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:#?}");

    // The control: outside any invocation (during init) the warning is given, once.
    assert!(logs.matching(INIT_WARNING).is_empty());
    drop(begin_subsegment("at init"));
    drop(begin_subsegment("again at init"));
    assert_eq!(logs.matching(INIT_WARNING).len(), 1, "{:#?}", logs.lines());
}

#[test]
fn guards_across_await_in_two_join_branches_are_reported_once() {
    setup();
    let daemon = Collector::start();
    let (logs, _guard) = Logs::capture();
    let mut svc = XRayLayer::new()
        .daemon_address(&daemon.address)
        .layer(service_fn(|_: LambdaEvent<Value>| async {
            let sleep = |ms| tokio::time::sleep(Duration::from_millis(ms));
            for _ in 0..2 {
                let a = async {
                    let g = begin_subsegment("branch_a");
                    sleep(10).await;
                    drop(g);
                };
                let b = async {
                    let g = begin_subsegment("branch_b");
                    sleep(30).await;
                    drop(g);
                };
                tokio::join!(a, b);
            }
            // What the warning recommends: each branch its own subsegment.
            tokio::join!(
                sleep(10).in_subsegment("own_a"),
                sleep(30).in_subsegment("own_b")
            );
            Ok::<_, lambda_runtime::Error>(Value::Null)
        }));
    block_on(svc.call(event(json!({}), Some(SAMPLED)))).unwrap();
    let warnings = logs.matching(OUT_OF_ORDER);
    assert_eq!(warnings.len(), 1, "once per process: {:#?}", logs.lines());
    assert!(
        warnings[0].contains("branch_a") && warnings[0].contains("in_subsegment"),
        "names the guard and the way out: {}",
        warnings[0]
    );
    let docs = daemon.all();
    let handler = docs.iter().find(|d| d["name"] == "## logs-fn").unwrap();
    for own in ["own_a", "own_b"] {
        let d = docs.iter().find(|d| d["name"] == own).unwrap();
        assert_eq!(d["parent_id"], handler["id"], "{own}");
    }
}
