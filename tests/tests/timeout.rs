//! Timeout forensics end to end: the built test function under a runtime-API stub that
//! gives each invocation the deadline the test chooses (the emulator cannot), a real
//! UDP daemon, and a real endpoint that never answers an AWS call.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use xray_lambda_e2e::harness::{by_name, silent_endpoint, Daemon, Process, RuntimeStub};
use xray_local::document::flatten;

const HANDLER: &str = "## e2e-function";
const MARGIN: Duration = Duration::from_millis(400);

fn start_function(stub: &RuntimeStub, daemon: &Daemon, env: &[(&str, &str)]) -> Process {
    let binary = Path::new(env!("CARGO_BIN_EXE_e2e-function"));
    let mut env = env.to_vec();
    env.push(("XRAY_LAMBDA_TIMEOUT_MARGIN_MS", "400"));
    xray_lambda_e2e::harness::start_function(binary, &stub.runtime_api(), daemon.addr, &env)
}

/// A header for a fresh sampled trace.
fn sampled() -> String {
    let root = xray_lambda::TraceId::new();
    format!("Root={root};Parent=53995c3f42cd8ad8;Sampled=1")
}

fn secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Checks a subsegment sent while still open: ended when the margin before `deadline`
/// was reached, a fault whose cause says why and how long it had run.
fn assert_sent_at_the_margin(doc: &Value, deadline: SystemTime) {
    let name = &doc["name"];
    assert_eq!(doc["fault"], true, "{name}");
    let flushed_at = secs(deadline - MARGIN);
    let end = doc["end_time"].as_f64().unwrap();
    assert!(
        end >= flushed_at - 0.01 && end < secs(deadline),
        "{name}: ended at {end}, margin reached at {flushed_at}"
    );
    let timeout = doc["cause"]["exceptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "Timeout")
        .unwrap_or_else(|| panic!("{name}: no Timeout exception in {doc}"));
    let message = timeout["message"].as_str().unwrap();
    assert!(
        message.contains("about to time out") && message.contains("had been running for"),
        "{message}"
    );
    assert_eq!(
        doc["metadata"]["xray_lambda"]["incomplete"],
        "about to time out: sent before the deadline while still running"
    );
}

/// A handler stuck in an AWS call inside nested subsegments, that never finishes: what
/// it holds reaches the daemon before the deadline, every open subsegment ended at the
/// margin and marked, nested as it was.
#[test]
fn a_hung_handler_is_sent_before_its_deadline() {
    let (daemon, stub) = (Daemon::start(), RuntimeStub::start());
    let _function = start_function(&stub, &daemon, &[]);
    let id = stub.queue(
        Some(&sampled()),
        &json!({"scenario": "hang", "endpoint": silent_endpoint()}),
        Duration::from_millis(2000),
    );
    assert!(
        stub.answer(&id, Duration::from_millis(2500)).is_none(),
        "it hangs"
    );
    let deadline = stub.deadline_of(&id).unwrap();
    let arrivals = daemon.wait_for_datagrams(1);
    assert_eq!(
        arrivals.len(),
        1,
        "everything in one datagram: {arrivals:#?}"
    );
    let (arrived, doc) = &arrivals[0];
    assert!(*arrived < deadline, "sent before the deadline");
    let docs = flatten(doc);
    let (handler, outer, inner, call) = (
        by_name(&docs, HANDLER),
        by_name(&docs, "outer"),
        by_name(&docs, "inner"),
        by_name(&docs, "DynamoDB"),
    );
    assert_eq!(outer["parent_id"], handler["id"]);
    assert_eq!(inner["parent_id"], outer["id"]);
    assert_eq!(call["parent_id"], inner["id"]);
    assert_eq!(call["aws"]["operation"], "GetItem");
    for d in [handler, outer, inner, call] {
        assert_sent_at_the_margin(d, deadline);
    }
}

/// A handler that finishes after the flush, before the deadline: the complete
/// documents follow with the same ids, so they replace the early ones.
#[test]
fn a_handler_finishing_after_the_flush_sends_its_documents_again_complete() {
    let (daemon, stub) = (Daemon::start(), RuntimeStub::start());
    let _function = start_function(&stub, &daemon, &[]);
    let id = stub.queue(
        Some(&sampled()),
        &json!({"scenario": "slow", "ms": 1800}),
        Duration::from_millis(2000),
    );
    let (kind, _) = stub.answer(&id, Duration::from_secs(10)).unwrap();
    assert_eq!(kind, "response");
    let deadline = stub.deadline_of(&id).unwrap();
    let arrivals = daemon.wait_for_datagrams(2);
    assert_eq!(arrivals.len(), 2, "{arrivals:#?}");
    let early = flatten(&arrivals[0].1);
    let complete = flatten(&arrivals[1].1);
    assert!(arrivals[1].0 > arrivals[0].0);
    for name in [HANDLER, "outer", "inner"] {
        assert_sent_at_the_margin(by_name(&early, name), deadline);
        let done = by_name(&complete, name);
        assert_eq!(
            done["id"],
            by_name(&early, name)["id"],
            "{name}: the same id"
        );
        assert!(
            done.get("fault").is_none() && done.get("cause").is_none(),
            "{done}"
        );
        assert!(done["end_time"].as_f64() > by_name(&early, name)["end_time"].as_f64());
    }
    // What had ended before the flush is the same in both.
    assert_eq!(
        by_name(&early, "done_early"),
        by_name(&complete, "done_early")
    );
}

/// An invocation that ends well before its margin sends one datagram, once.
#[test]
fn nothing_is_sent_twice_when_the_margin_is_never_reached() {
    let (daemon, stub) = (Daemon::start(), RuntimeStub::start());
    let _function = start_function(&stub, &daemon, &[]);
    let id = stub.queue(
        Some(&sampled()),
        &json!({"scenario": "slow", "ms": 10}),
        Duration::from_millis(1000),
    );
    stub.answer(&id, Duration::from_secs(10)).unwrap();
    let deadline = stub.deadline_of(&id).unwrap();
    std::thread::sleep(
        deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            + Duration::from_millis(200),
    );
    let arrivals = daemon.arrivals();
    assert_eq!(arrivals.len(), 1, "{arrivals:#?}");
    let docs = flatten(&arrivals[0].1);
    assert!(docs.iter().all(|d| d.get("fault").is_none()));
}

/// A handler that blocks its runtime thread outright: the flush runs on a thread of
/// its own, so it is sent all the same, under `run_concurrent` on a multi-thread
/// runtime and under `run` on a current-thread runtime (whose only thread it holds).
#[test]
fn a_handler_blocking_its_thread_is_sent_before_its_deadline() {
    for env in [
        &[("E2E_CONCURRENT", "1"), ("AWS_LAMBDA_MAX_CONCURRENCY", "2")][..],
        &[("E2E_CURRENT_THREAD", "1")][..],
    ] {
        let (daemon, stub) = (Daemon::start(), RuntimeStub::start());
        let _function = start_function(&stub, &daemon, env);
        let id = stub.queue(
            Some(&sampled()),
            &json!({"scenario": "block_thread", "ms": 2500}),
            Duration::from_millis(1500),
        );
        stub.answer(&id, Duration::from_secs(10)).unwrap();
        let deadline = stub.deadline_of(&id).unwrap();
        let arrivals = daemon.wait_for_datagrams(2);
        assert_eq!(
            arrivals.len(),
            2,
            "{env:?}: the flush, then the late end: {arrivals:#?}"
        );
        let (arrived, doc) = &arrivals[0];
        assert!(*arrived < deadline, "{env:?}: sent before the deadline");
        let docs = flatten(doc);
        let blocking = by_name(&docs, "blocking");
        assert_eq!(blocking["parent_id"], by_name(&docs, HANDLER)["id"]);
        for d in &docs {
            assert_sent_at_the_margin(d, deadline);
        }
    }
}
