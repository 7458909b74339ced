//! The demo behind the README's first command: runs the test function under the Lambda
//! Runtime API emulator with a UDP listener as the X-Ray daemon, invokes it, and prints
//! the response and every document the function sent (each validated against the schema).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use serde_json::{json, Value};
use xray_lambda_e2e::harness::{start_function, Daemon, Emulator};

fn main() {
    let function = std::env::current_exe()
        .expect("own path")
        .with_file_name(format!("e2e-function{}", std::env::consts::EXE_SUFFIX));
    let daemon = Daemon::start();
    let emulator = Emulator::start();
    let _function = start_function(&function, &emulator.runtime_api(), daemon.addr, &[]);

    for (scenario, expected) in [("nested", 5), ("error_chain", 2)] {
        daemon.clear();
        let (status, body) = emulator.invoke(&json!({ "scenario": scenario }));
        println!("=== invoke {{\"scenario\": \"{scenario}\"}} -> HTTP {status}");
        println!("{}", serde_json::to_string_pretty(&body).unwrap());
        let docs = daemon.wait_for(expected);
        println!(
            "--- {} documents sent to the daemon (all valid against the schema):",
            docs.len()
        );
        for d in &docs {
            println!("{d}");
        }
        println!("--- as a tree:");
        print_tree(&docs);
        println!();
    }
}

fn print_tree(docs: &[Value]) {
    let ids: HashMap<&str, &Value> = docs
        .iter()
        .map(|d| (d["id"].as_str().unwrap_or(""), d))
        .collect();
    let roots: Vec<&Value> = docs
        .iter()
        .filter(|d| !ids.contains_key(d["parent_id"].as_str().unwrap_or("")))
        .collect();
    for root in roots {
        println!(
            "(function segment {})",
            root["parent_id"].as_str().unwrap_or("-")
        );
        print_node(root, docs, 1);
    }
}

fn print_node(doc: &Value, docs: &[Value], depth: usize) {
    let ms = (doc["end_time"].as_f64().unwrap_or(0.0) - doc["start_time"].as_f64().unwrap_or(0.0))
        * 1000.0;
    let flags: Vec<&str> = ["error", "throttle", "fault"]
        .into_iter()
        .filter(|f| doc[*f] == true)
        .collect();
    let annotations = doc
        .get("annotations")
        .map(|a| a.to_string())
        .unwrap_or_default();
    println!(
        "{}{} {:.3} ms {} {}",
        "  ".repeat(depth),
        doc["name"].as_str().unwrap_or("?"),
        ms,
        flags.join(","),
        annotations
    );
    for child in docs.iter().filter(|c| c["parent_id"] == doc["id"]) {
        print_node(child, docs, depth + 1);
    }
}
