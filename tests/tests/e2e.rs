//! End to end: the built test function under the Lambda Runtime API emulator (or, for
//! headers the emulator cannot send, a runtime-API stub), documents received over UDP
//! and validated against AWS's schema.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use serde_json::{json, Value};
use xray_lambda_e2e::harness::{
    by_name, fixture, root_and_parent, Daemon, Emulator, Process, RuntimeStub,
};

const HANDLER: &str = "## e2e-function";

fn start_function(
    runtime_api: &str,
    daemon: std::net::SocketAddr,
    env: &[(&str, &str)],
) -> Process {
    let binary = Path::new(env!("CARGO_BIN_EXE_e2e-function"));
    xray_lambda_e2e::harness::start_function(binary, runtime_api, daemon, env)
}

fn names(docs: &[Value]) -> Vec<&str> {
    docs.iter().map(|d| d["name"].as_str().unwrap()).collect()
}

#[test]
fn nested_manual_subsegments_form_the_reference_tree() {
    let daemon = Daemon::start();
    let emulator = Emulator::start();
    let function = start_function(&emulator.runtime_api(), daemon.addr, &[]);

    let (status, body) = emulator.invoke(&json!({"scenario": "nested"}));
    assert_eq!(status, 200, "{body}");
    let (root, facade) = root_and_parent(body["trace_header"].as_str().unwrap());
    let docs = daemon.wait_for(5);

    // Children are sent before parents, each as it ends; the refused segment sends nothing.
    assert_eq!(
        names(&docs),
        [
            "subsegment_1",
            "subsegment_3-1",
            "subsegment_3-2",
            "subsegment_2",
            HANDLER
        ]
    );
    for d in &docs {
        assert_eq!(d["trace_id"], root.as_str());
        assert_eq!(d["type"], "subsegment");
        assert!(d["end_time"].as_f64().unwrap() >= d["start_time"].as_f64().unwrap());
    }
    let handler = by_name(&docs, HANDLER);
    assert_eq!(handler["parent_id"], facade.as_str());
    assert_eq!(
        handler["annotations"],
        json!({"ColdStart": true, "Service": "e2e"})
    );
    assert_eq!(
        handler["metadata"]["e2e"]["e2e-function response"],
        json!({"trace_header": body["trace_header"], "request_id": body["request_id"]})
    );

    // Field by field against what the Python SDK sent for the same work (01–04). The
    // Python SDK has no handler subsegment, so its top-level subsegments hang off the
    // function segment where ours hang off `## e2e-function`; it also sends
    // `"namespace": "local"` and `"in_progress": false`, which carry nothing.
    let reference: Vec<Value> = ["01.json", "02.json", "03.json", "04.json"]
        .map(fixture)
        .into();
    let ref_facade = "53995c3f42cd8ad8";
    for r in &reference {
        let ours = by_name(&docs, r["name"].as_str().unwrap());
        assert_eq!(ours["annotations"], r["annotations"], "{}", r["name"]);
        assert_eq!(ours["metadata"], r["metadata"], "{}", r["name"]);
        assert_eq!(ours["type"], r["type"]);
        let ref_parent = reference.iter().find(|p| p["id"] == r["parent_id"]);
        match ref_parent {
            Some(p) => assert_eq!(
                ours["parent_id"],
                by_name(&docs, p["name"].as_str().unwrap())["id"]
            ),
            None => {
                assert_eq!(r["parent_id"], ref_facade);
                assert_eq!(ours["parent_id"], handler["id"]);
            }
        }
    }

    // A second invocation: a new trace, no longer a cold start.
    daemon.clear();
    let (_, body2) = emulator.invoke(&json!({"scenario": "nested"}));
    let (root2, _) = root_and_parent(body2["trace_header"].as_str().unwrap());
    assert_ne!(root2, root);
    let docs2 = daemon.wait_for(5);
    assert_eq!(docs2.len(), 5);
    assert!(docs2.iter().all(|d| d["trace_id"] == root2.as_str()));
    assert_eq!(by_name(&docs2, HANDLER)["annotations"]["ColdStart"], false);

    let refused = function.log_lines("Cannot create segments inside Lambda function. Discarded.");
    assert_eq!(refused.len(), 1, "logged once per process, not per call");
}

#[test]
fn an_error_with_a_two_level_source_chain() {
    let daemon = Daemon::start();
    let emulator = Emulator::start();
    let _function = start_function(&emulator.runtime_api(), daemon.addr, &[]);

    let (_, body) = emulator.invoke(&json!({"scenario": "error_chain"}));
    assert!(body.to_string().contains("could not load user"), "{body}");
    let docs = daemon.wait_for(2);
    assert_eq!(names(&docs), ["load_user", HANDLER]);

    let check_chain = |doc: &Value| {
        assert_eq!(doc["fault"], true);
        assert!(doc.get("error").is_none());
        let ex = doc["cause"]["exceptions"].as_array().unwrap();
        let got: Vec<(&str, &str)> = ex
            .iter()
            .map(|e| (e["type"].as_str().unwrap(), e["message"].as_str().unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                ("LoadUserError", "could not load user"),
                ("ParseUserError", "user id is not a number"),
                ("ParseIntError", "invalid digit found in string"),
            ]
        );
        assert_eq!(ex[0]["cause"], ex[1]["id"]);
        assert_eq!(ex[1]["cause"], ex[2]["id"]);
        assert!(ex[2].get("cause").is_none());
        ex[0].clone()
    };
    let recorded = check_chain(by_name(&docs, "load_user"));
    assert!(recorded["stack"][0]["path"]
        .as_str()
        .unwrap()
        .ends_with("e2e-function.rs"));
    assert_eq!(recorded["stack"][0]["label"], "record_error");
    // The same error then propagates out of the handler: its subsegment refers to the
    // exception already recorded instead of repeating the chain.
    let handler = by_name(&docs, HANDLER);
    assert_eq!(handler["fault"], true);
    assert_eq!(handler["cause"], recorded["id"]);
    assert_eq!(
        handler["metadata"]["e2e"]["e2e-function error"],
        "could not load user"
    );
}

#[test]
fn a_panic_is_a_fault_and_still_reaches_the_runtime() {
    let daemon = Daemon::start();
    let emulator = Emulator::start();
    let _function = start_function(&emulator.runtime_api(), daemon.addr, &[]);

    let (_, body) = emulator.invoke(&json!({"scenario": "panic"}));
    assert!(
        body.to_string()
            .contains("Lambda panicked: no user in the event"),
        "{body}"
    );
    let docs = daemon.wait_for(2);
    assert_eq!(names(&docs), ["about_to_panic", HANDLER]);
    let inner = by_name(&docs, "about_to_panic");
    let ex = &inner["cause"]["exceptions"][0];
    assert_eq!(inner["fault"], true);
    assert_eq!(
        (ex["type"].as_str(), ex["message"].as_str()),
        (Some("panic"), Some("no user in the event"))
    );
    assert!(ex["stack"][0]["path"]
        .as_str()
        .unwrap()
        .ends_with("e2e-function.rs"));
    assert!(ex["stack"][0]["line"].as_u64().unwrap() > 0);
    let handler = by_name(&docs, HANDLER);
    assert_eq!(handler["fault"], true);
    assert_eq!(
        handler["cause"], ex["id"],
        "the handler refers to the exception it propagated"
    );

    // The process survived the panic and serves the next invocation.
    daemon.clear();
    let (status, _) = emulator.invoke(&json!({"scenario": "nested"}));
    assert_eq!(status, 200);
    assert_eq!(daemon.wait_for(5).len(), 5);
}

#[test]
fn eight_concurrent_invocations_keep_their_own_traces() {
    let daemon = Daemon::start();
    let emulator = Emulator::start();
    let _function = start_function(
        &emulator.runtime_api(),
        daemon.addr,
        &[("E2E_CONCURRENT", "1"), ("AWS_LAMBDA_MAX_CONCURRENCY", "8")],
    );

    let responses: Vec<Value> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..8)
            .map(|_| s.spawn(|| emulator.invoke(&json!({"scenario": "concurrent"})).1))
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let docs = daemon.wait_for(24);
    assert_eq!(docs.len(), 24);
    assert_eq!(daemon.datagrams().len(), 8, "one datagram per invocation");

    let mut handler_spans = Vec::new();
    for r in &responses {
        let (root, facade) = root_and_parent(r["trace_header"].as_str().unwrap());
        let request_id = r["request_id"].as_str().unwrap();
        let mine: Vec<&Value> = docs
            .iter()
            .filter(|d| d["trace_id"] == root.as_str())
            .collect();
        assert_eq!(mine.len(), 3, "invocation {request_id}: {mine:#?}");
        let find = |name: &str| *mine.iter().find(|d| d["name"] == name).unwrap();
        let (handler, outer, inner) = (find(HANDLER), find("outer"), find("inner"));
        assert_eq!(handler["parent_id"], facade.as_str());
        assert_eq!(outer["parent_id"], handler["id"]);
        assert_eq!(inner["parent_id"], outer["id"]);
        for d in &mine {
            assert_eq!(
                d["annotations"]["request_id"], request_id,
                "annotation landed in another invocation"
            );
        }
        handler_spans.push((
            handler["start_time"].as_f64().unwrap(),
            handler["end_time"].as_f64().unwrap(),
        ));
    }
    // They really ran at the same time: some instant lies inside all eight handlers.
    let latest_start = handler_spans.iter().map(|s| s.0).fold(f64::MIN, f64::max);
    let earliest_end = handler_spans.iter().map(|s| s.1).fold(f64::MAX, f64::min);
    assert!(
        latest_start < earliest_end,
        "invocations did not overlap: {handler_spans:?}"
    );
}

#[test]
fn unsampled_missing_and_malformed_headers_send_nothing() {
    let daemon = Daemon::start();
    let stub = RuntimeStub::start();
    let function = start_function(&stub.runtime_api(), daemon.addr, &[]);
    let nested = json!({"scenario": "nested"});
    let root = "1-5759e988-bd862e3fe1be46a994272793";

    for header in [
        Some(format!(
            "Root={root};Parent=53995c3f42cd8ad8;Sampled=0;Lineage=a87bd80c:0"
        )),
        Some(format!("Root={root};Parent=53995c3f42cd8ad8;Sampled=?")),
        None,
        Some("Root=1-nothex;Parent=53995c3f42cd8ad8;Sampled=1".to_owned()),
        Some(format!("Root={root};Parent=xyz;Sampled=1")),
    ] {
        let (kind, body) = stub.invoke(header.as_deref(), &nested);
        assert_eq!(kind, "response", "{header:?}: {body}");
        assert_eq!(
            body["trace_header"].as_str(),
            header.as_deref(),
            "the handler's result is unchanged"
        );
    }
    assert!(
        daemon.settle().is_empty(),
        "nothing is sent without a sampled, valid header"
    );
    assert_eq!(
        function.log_lines("malformed trace header").len(),
        2,
        "one warning per malformed header"
    );

    // The control: the same stub and function do send for a sampled header, with a
    // tolerant spelling (spaces, trailing `;`) and Lineage kept.
    let (kind, _) = stub.invoke(
        Some(&format!(
            " Root = {root} ; Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a87bd80c:0;"
        )),
        &nested,
    );
    assert_eq!(kind, "response");
    let docs = daemon.wait_for(5);
    assert_eq!(docs.len(), 5);
    assert_eq!(by_name(&docs, HANDLER)["parent_id"], "53995c3f42cd8ad8");
}

#[test]
fn disabled_tracing_and_a_bad_daemon_address_leave_the_handler_alone() {
    let daemon = Daemon::start();
    let header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    for env in [
        vec![("AWS_XRAY_SDK_ENABLED", "false")],
        vec![("POWERTOOLS_TRACE_DISABLED", "true")],
    ] {
        let stub = RuntimeStub::start();
        let _function = start_function(&stub.runtime_api(), daemon.addr, &env);
        let (kind, body) = stub.invoke(Some(header), &json!({"scenario": "nested"}));
        assert_eq!(
            (kind.as_str(), body["trace_header"].as_str()),
            ("response", Some(header)),
            "{env:?}"
        );
    }
    assert!(daemon.settle().is_empty());

    // Response capture switched off by the Powertools variable: traced, no response.
    let stub = RuntimeStub::start();
    let _function = start_function(
        &stub.runtime_api(),
        daemon.addr,
        &[("POWERTOOLS_TRACER_CAPTURE_RESPONSE", "false")],
    );
    stub.invoke(Some(header), &json!({"scenario": "nested"}));
    let docs = daemon.wait_for(5);
    assert_eq!(docs.len(), 5);
    assert!(by_name(&docs, HANDLER).get("metadata").is_none());
    daemon.clear();

    let stub = RuntimeStub::start();
    let function = start_function(
        &stub.runtime_api(),
        daemon.addr,
        &[("AWS_XRAY_DAEMON_ADDRESS", "udp:nowhere")],
    );
    for _ in 0..2 {
        let (kind, _) = stub.invoke(Some(header), &json!({"scenario": "nested"}));
        assert_eq!(kind, "response");
    }
    assert_eq!(
        function.log_lines("is not usable").len(),
        1,
        "one clear error, once"
    );
}
