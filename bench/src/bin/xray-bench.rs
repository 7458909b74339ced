//! The side-by-side comparison behind `bench/compare.sh`: per-call cost of this crate,
//! xray-lite and the official Python SDK (measured by `python/sdk_bench.py`, passed in
//! as JSON), and cold start of minimal functions with and without tracing, all on this
//! machine in one run. Prints a table with each figure's ratio to ours.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use xray_bench::{
    dynamodb_client, dynamodb_stub, header, in_invocation, put_item, thread_cpu_time, Sink,
};
use xray_lambda::FutureExt;
use xray_lambda_e2e::harness::{start_function, Daemon, RuntimeStub};

#[xray_lambda::capture]
fn captured(x: u64) -> u64 {
    x.wrapping_mul(31)
}

/// Median time per call over `rounds` rounds of `n` calls.
fn per_call(rounds: usize, n: u32, mut f: impl FnMut()) -> Duration {
    for _ in 0..n {
        f();
    }
    let mut samples: Vec<Duration> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed() / n
        })
        .collect();
    samples.sort();
    samples[rounds / 2]
}

fn xray_lite_subsegment(sink: &str, sampled: bool) -> Duration {
    use xray_lite::{Context, CustomNamespace, DaemonClient, SubsegmentContext};
    std::env::set_var("AWS_XRAY_DAEMON_ADDRESS", sink);
    std::env::set_var("_X_AMZN_TRACE_ID", header(sampled));
    let client = DaemonClient::from_lambda_env().expect("xray-lite client");
    let context = SubsegmentContext::from_lambda_env(client).expect("xray-lite context");
    per_call(15, 20_000, || {
        let s = context.enter_subsegment(CustomNamespace::new("noop"));
        drop(black_box(s));
    })
}

/// Median milliseconds from process start to the first invocation answered.
fn cold_start(
    command: &mut dyn FnMut(&str) -> xray_lambda_e2e::harness::Process,
    runs: usize,
) -> f64 {
    let mut samples: Vec<f64> = (0..runs)
        .map(|_| {
            let stub = RuntimeStub::start();
            let t = Instant::now();
            let _process = command(&stub.runtime_api());
            let (kind, _) = stub.invoke(Some(&header(true)), &json!({"ping": 1}));
            assert_eq!(kind, "response");
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[runs / 2]
}

/// Median per-call cost of PutItem without and with the interceptor, as
/// `(wall plain, wall traced, cpu plain, cpu traced)`: measured in alternating rounds so
/// drift in the loopback round trip hits both alike, and as this thread's CPU time,
/// which is the caller's own work without waiting or the stub's and daemon's threads.
fn interceptor_overhead(sink: &str, sampled: bool) -> [Duration; 4] {
    let endpoint = dynamodb_stub().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (plain, traced) = (
        dynamodb_client(&endpoint, false),
        dynamodb_client(&endpoint, true),
    );
    in_invocation(sink, &header(sampled), || {
        let round = |client: &aws_sdk_dynamodb::Client| {
            let (t, cpu) = (Instant::now(), thread_cpu_time());
            for _ in 0..100 {
                assert!(rt.block_on(put_item(client.clone()).in_current_trace()));
            }
            (t.elapsed() / 100, (thread_cpu_time() - cpu) / 100)
        };
        round(&plain);
        round(&traced);
        let mut samples: [Vec<Duration>; 4] = Default::default();
        for _ in 0..31 {
            let (w, c) = round(&plain);
            samples[0].push(w);
            samples[2].push(c);
            let (w, c) = round(&traced);
            samples[1].push(w);
            samples[3].push(c);
        }
        samples.map(|mut v| {
            v.sort();
            v[v.len() / 2]
        })
    })
}

/// Resident set size of this process, from /proc (0 where there is none).
fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4)
}

fn sibling(name: &str) -> PathBuf {
    std::env::current_exe().unwrap().with_file_name(name)
}

fn main() {
    let python: Value = std::env::args()
        .nth(1)
        .filter(|a| !a.starts_with("--"))
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .unwrap_or(Value::Null);
    let python_bin = std::env::args().nth(2);
    let sink = Sink::start().unwrap();
    if std::env::args().any(|a| a == "--interceptor-only") {
        // For profilers (e.g. valgrind --tool=callgrind): only the interceptor rounds.
        let m = interceptor_overhead(&sink.address, true);
        println!(
            "PutItem caller CPU: {:?} plain, {:?} with XRayInterceptor",
            m[2], m[3]
        );
        return;
    }

    let unsampled = in_invocation(&sink.address, &header(false), || {
        per_call(15, 2_000_000, || {
            black_box(captured(black_box(7)));
        })
    });
    let sampled = in_invocation(&sink.address, &header(true), || {
        per_call(15, 20_000, || {
            black_box(xray_lambda::begin_subsegment("noop")).end();
        })
    });
    let (rss_before, rss_after) = in_invocation(&sink.address, &header(true), || {
        for _ in 0..10_000 {
            xray_lambda::begin_subsegment("warm").end();
        }
        let before = resident_kib();
        for _ in 0..1_000_000 {
            xray_lambda::begin_subsegment("noop").end();
        }
        (before, resident_kib())
    });
    let sampled_call = interceptor_overhead(&sink.address, true);
    let unsampled_call = interceptor_overhead(&sink.address, false);
    let lite_sampled = xray_lite_subsegment(&sink.address, true);
    let lite_unsampled = xray_lite_subsegment(&sink.address, false);

    let daemon = Daemon::start();
    let runs = 9;
    let bare = cold_start(
        &mut |api| start_function(&sibling("bare-fn"), api, daemon.addr, &[]),
        runs,
    );
    let traced = cold_start(
        &mut |api| start_function(&sibling("traced-fn"), api, daemon.addr, &[]),
        runs,
    );
    let py_cold = |variant: &str| {
        python_bin.as_ref().map(|py| {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/lambda_fn.py");
            let variant = variant.to_owned();
            let py = py.clone();
            cold_start(
                &mut |api| {
                    xray_lambda_e2e::harness::spawn(
                        Command::new(&py)
                            .arg(&script)
                            .arg(&variant)
                            .env("AWS_LAMBDA_RUNTIME_API", api)
                            .env("AWS_LAMBDA_FUNCTION_NAME", "python-fn")
                            .env("LAMBDA_TASK_ROOT", "/tmp")
                            .env("AWS_XRAY_DAEMON_ADDRESS", daemon.addr.to_string()),
                    )
                },
                runs,
            )
        })
    };
    let (py_plain, py_xray) = (py_cold("plain"), py_cold("xray"));

    let ns = |d: Duration| d.as_secs_f64() * 1e9;
    let ours = [ns(unsampled), ns(sampled)];
    println!("Per call (median), measured together on this machine:");
    println!("{:<58} {:>12} {:>10}", "", "time", "vs ours");
    let row = |label: &str, value_ns: f64, ours_ns: f64| {
        let time = if value_ns < 1000.0 {
            format!("{value_ns:.1} ns")
        } else {
            format!("{:.2} µs", value_ns / 1000.0)
        };
        println!("{label:<58} {time:>12} {:>9.1}x", value_ns / ours_ns);
    };
    row("xray-lambda: unsampled #[capture] call", ours[0], ours[0]);
    row(
        "xray-lite: subsegment, Sampled=0 (it ignores Sampled)",
        ns(lite_unsampled),
        ours[0],
    );
    if let Some(v) = python["unsampled_ns"].as_f64() {
        row("aws-xray-sdk (Python): @capture, Sampled=0", v, ours[0]);
    }
    row(
        "xray-lambda: sampled subsegment, encoded + sent (UDP)",
        ours[1],
        ours[1],
    );
    row(
        "xray-lite: sampled subsegment (two datagrams)",
        ns(lite_sampled),
        ours[1],
    );
    if let Some(v) = python["sampled_ns"].as_f64() {
        row("aws-xray-sdk (Python): @capture, Sampled=1", v, ours[1]);
    }
    println!();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("AWS SDK call, DynamoDB PutItem to a loopback stub (median of alternating rounds):");
    for (label, m) in [
        ("sampled", sampled_call),
        ("unsampled (header only)", unsampled_call),
    ] {
        println!(
            "  {label:<28} caller CPU {:>6.1} µs plain, {:>6.1} µs with XRayInterceptor: {:+5.1} µs   (wall {:+.1} µs)",
            us(m[2]),
            us(m[3]),
            us(m[3]) - us(m[2]),
            us(m[1]) - us(m[0])
        );
    }
    println!(
        "Memory: resident {rss_before} KiB before and {rss_after} KiB after 1,000,000 sampled subsegments in one invocation"
    );
    println!();
    println!("Cold start, process start → first invocation answered (median of {runs}):");
    println!("{:<58} {:>9.1} ms", "Rust, bare lambda_runtime::run", bare);
    println!(
        "{:<58} {:>9.1} ms  ({:+.1} ms)",
        "Rust, xray_lambda::run",
        traced,
        traced - bare
    );
    if let (Some(p), Some(x)) = (py_plain, py_xray) {
        println!("{:<58} {:>9.1} ms", "Python, no SDK", p);
        println!(
            "{:<58} {:>9.1} ms  ({:+.1} ms)",
            "Python, import aws_xray_sdk.core; patch_all()",
            x,
            x - p
        );
    }
}
