//! `XRayTracingLayer` end to end: the built test function, whose subscriber has the
//! layer beside a filtered log output, under the Lambda Runtime API emulator (or a stub,
//! for an unsampled header); `#[instrument]`ed functions nested with `#[capture]`,
//! guards and an AWS call to a real `moto_server`; sqlx on a real in-memory SQLite.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use serde_json::{json, Value};
use xray_lambda_e2e::harness::{root_and_parent, Daemon, Emulator, Moto, Process, RuntimeStub};

const HANDLER: &str = "## e2e-function";

fn start_function(runtime_api: &str, daemon: &Daemon, env: &[(&str, &str)]) -> Process {
    let binary = Path::new(env!("CARGO_BIN_EXE_e2e-function"));
    xray_lambda_e2e::harness::start_function(binary, runtime_api, daemon.addr, env)
}

/// The documents of one invocation's trace, and a lookup by name that insists on one.
struct Tree<'a> {
    docs: Vec<&'a Value>,
}

impl<'a> Tree<'a> {
    fn of(docs: &'a [Value], root: &str) -> Self {
        Tree {
            docs: docs.iter().filter(|d| d["trace_id"] == root).collect(),
        }
    }

    fn all(&self, name: &str) -> Vec<&'a Value> {
        self.docs
            .iter()
            .copied()
            .filter(|d| d["name"] == name)
            .collect()
    }

    fn one(&self, name: &str) -> &'a Value {
        let found = self.all(name);
        assert_eq!(found.len(), 1, "one {name} in {:#?}", self.docs);
        found[0]
    }

    fn children(&self, parent: &Value) -> Vec<&'a Value> {
        self.docs
            .iter()
            .copied()
            .filter(|d| d["parent_id"] == parent["id"])
            .collect()
    }
}

/// Checks the whole tree of the `instrumented` scenario for one invocation.
fn assert_instrumented_tree(docs: &[Value], response: &Value) {
    let (root, facade) = root_and_parent(response["trace_header"].as_str().unwrap());
    let request_id = response["request_id"].as_str().unwrap();
    let t = Tree::of(docs, &root);
    assert_eq!(t.docs.len(), 13, "{:#?}", t.docs);

    let handler = t.one(HANDLER);
    assert_eq!(handler["parent_id"], facade.as_str());
    assert!(handler.get("fault").is_none());

    let process = t.one("process");
    assert_eq!(process["parent_id"], handler["id"]);
    assert_eq!(process["annotations"], json!({"request_id": request_id}));
    assert_eq!(
        process["metadata"]["tracing"],
        json!({"request_id": request_id, "items": 2}),
        "the arguments #[instrument] records, and a field recorded later"
    );
    assert!(process.get("fault").is_none(), "the error was handled");
    let mut under_process: Vec<&str> = t
        .children(process)
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    under_process.sort_unstable();
    assert_eq!(
        under_process,
        ["branch", "branch", "checksum", "refuse", "store"]
    );

    // A sync #[instrument] with `ret`, and a #[capture] inside it.
    let checksum = t.one("checksum");
    assert_eq!(
        checksum["metadata"]["tracing"],
        json!({"id": "42", "return": 6})
    );
    assert_eq!(t.one("digits")["parent_id"], checksum["id"]);

    // Two #[instrument]ed futures under join!, each with a guard inside.
    for branch in t.all("branch") {
        let which = branch["metadata"]["tracing"]["which"].as_str().unwrap();
        assert_eq!(t.one(&format!("{which}_guard"))["parent_id"], branch["id"]);
    }

    // A #[capture] function in the span: an AWS call and a span inside it are its; an
    // AWS call inside that span is the span's.
    let store = t.one("store");
    let write_row = t.one("write_row");
    assert_eq!(write_row["parent_id"], store["id"]);
    for call in t.all("DynamoDB") {
        let parent = match call["aws"]["operation"].as_str().unwrap() {
            "GetItem" => store,
            "PutItem" => write_row,
            other => panic!("unexpected {other}"),
        };
        assert_eq!(call["parent_id"], parent["id"]);
    }
    assert_eq!(t.all("DynamoDB").len(), 2);

    // #[instrument(err)]: a fault with the error as the cause.
    let refuse = t.one("refuse");
    assert_eq!(refuse["fault"], true);
    let exception = &refuse["cause"]["exceptions"][0];
    assert_eq!(exception["message"], "user id is not a number");
}

#[test]
fn instrumented_functions_nest_with_captures_guards_and_aws_calls() {
    let (daemon, emulator, moto) = (Daemon::start(), Emulator::start(), Moto::start());
    let _function = start_function(&emulator.runtime_api(), &daemon, &[]);
    let (status, response) =
        emulator.invoke(&json!({"scenario": "instrumented", "endpoint": moto.endpoint}));
    assert_eq!(status, 200, "{response}");
    let docs = daemon.wait_for(13);
    assert_instrumented_tree(&docs, &response);
    assert_eq!(daemon.datagrams().len(), 1, "one datagram");
}

#[test]
fn eight_concurrent_instrumented_invocations_keep_their_own_trees() {
    let (daemon, emulator, moto) = (Daemon::start(), Emulator::start(), Moto::start());
    let _function = start_function(
        &emulator.runtime_api(),
        &daemon,
        &[("E2E_CONCURRENT", "1"), ("AWS_LAMBDA_MAX_CONCURRENCY", "8")],
    );
    let payload = json!({"scenario": "instrumented", "endpoint": moto.endpoint});
    let responses: Vec<Value> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..8)
            .map(|_| s.spawn(|| emulator.invoke(&payload).1))
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let docs = daemon.wait_for(8 * 13);
    assert_eq!(docs.len(), 8 * 13);
    for response in &responses {
        assert_instrumented_tree(&docs, response);
    }
}

#[test]
fn an_unsampled_invocation_sends_nothing() {
    let (daemon, stub, moto) = (Daemon::start(), RuntimeStub::start(), Moto::start());
    let _function = start_function(&stub.runtime_api(), &daemon, &[]);
    let header = format!(
        "Root={};Parent=53995c3f42cd8ad8;Sampled=0",
        xray_lambda::TraceId::new()
    );
    for scenario in ["instrumented", "sql"] {
        let (kind, body) = stub.invoke(
            Some(&header),
            &json!({"scenario": scenario, "endpoint": moto.endpoint}),
        );
        assert_eq!(kind, "response", "{body}");
    }
    assert_eq!(daemon.settle(), Vec::<Value>::new());
}

#[test]
fn sqlx_queries_become_sql_subsegments_where_they_ran() {
    let (daemon, emulator) = (Daemon::start(), Emulator::start());
    let _function = start_function(&emulator.runtime_api(), &daemon, &[]);
    let (status, response) = emulator.invoke(&json!({"scenario": "sql"}));
    assert_eq!(status, 200, "{response}");
    let (root, _) = root_and_parent(response["trace_header"].as_str().unwrap());
    let docs = daemon.wait_for(8);
    let t = Tree::of(&docs, &root);
    let query_of = |d: &Value| d["sql"]["sanitized_query"].as_str().unwrap().to_owned();
    for sql in t.all("SQL") {
        assert_eq!(sql["namespace"], "remote");
        assert_eq!(sql["sql"]["database_type"], "SQLite");
        assert!(sql["end_time"].as_f64() >= sql["start_time"].as_f64());
    }

    // In the handler itself (sqlx's SQLite worker knows only the runtime's span).
    let handler = t.one(HANDLER);
    let in_handler: Vec<String> = t
        .children(handler)
        .into_iter()
        .filter(|d| d["name"] == "SQL")
        .map(query_of)
        .collect();
    assert!(
        in_handler.contains(&"CREATE TABLE users (id TEXT PRIMARY KEY, name TEXT NOT NULL)".into()),
        "{in_handler:?}"
    );

    // In an #[instrument]ed function, twice; the second insert is refused.
    let saves = t.all("save_user");
    assert_eq!(saves.len(), 2);
    for save in &saves {
        let queries = t.children(save);
        assert_eq!(queries.len(), 1, "{queries:#?}");
        assert_eq!(
            query_of(queries[0]),
            "INSERT INTO users (id, name) VALUES (?, ?)",
            "placeholders, never the bound values"
        );
    }
    assert_eq!(saves[0]["metadata"]["tracing"]["id"], "u-1");
    assert_eq!(
        t.children(saves[0])[0]["metadata"]["sql"]["rows_affected"],
        1
    );
    let refused = saves[1];
    assert_eq!(refused["fault"], true);
    let message = refused["cause"]["exceptions"][0]["message"]
        .as_str()
        .unwrap();
    assert!(message.contains("UNIQUE constraint failed"), "{message}");

    // In a #[capture]d function: the query is its child.
    let count = t.one("count_users");
    let queries = t.children(count);
    assert_eq!(queries.len(), 1, "{:#?}", t.docs);
    assert_eq!(query_of(queries[0]), "SELECT COUNT(*) FROM users");
    assert_eq!(queries[0]["metadata"]["sql"]["rows_returned"], 1);
}
