//! The side-by-side comparison behind `bench/compare.sh`: per-call cost of this crate,
//! xray-lite and the official Python SDK (measured by `python/sdk_bench.py`, passed in
//! as JSON), and cold start of minimal functions with and without tracing, all on this
//! machine in one run. Prints a table with each figure's ratio to ours.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use std::net::UdpSocket;

use aws_smithy_runtime_api::client::interceptors::SharedInterceptor;
use serde_json::{json, Value};
use xray_bench::{
    bare_service, captured, dynamodb_client, dynamodb_client_with, dynamodb_stub, header,
    http_client, http_get, in_invocation, instrumented, invoke, put_item, put_large_item,
    seed_services, seed_work, subscriber, thread_cpu_time, traced_service, Clients,
    FloorInterceptor, PerCall, PutItemCall, Sink,
};
use xray_lambda::aws::XRayInterceptor;
use xray_lambda::FutureExt;
use xray_lambda_e2e::harness::{start_function, Daemon, RuntimeStub};
use xray_lite::{DaemonClient, SubsegmentContext};
use xray_lite_aws_sdk::ContextExt as _;

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

/// A sampled subsegment's begin and end, in invocations of 100: `(recorded for
/// sending, with its share of the invocation's one datagram)`. The first is the median,
/// over 3,000 invocations, of each invocation's time per subsegment (one subsegment is
/// too short to time alone); the second the median of 15 rounds of 200 invocations,
/// each timed whole.
fn sampled_subsegment(sink: &str) -> (Duration, Duration) {
    let (mut svc, spent) = timed_calls(sink, |_| {
        black_box(xray_lambda::begin_subsegment("noop")).end();
    });
    let mut rounds: Vec<Duration> = (0..16)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..200 {
                invoke(&mut svc, &header(true));
            }
            t.elapsed() / 20_000
        })
        .skip(1)
        .collect();
    rounds.sort();
    (median_after_warm_up(&spent), rounds[rounds.len() / 2])
}

/// Each invocation's time per call, as [`timed_calls`] notes them.
type Times = std::rc::Rc<std::cell::RefCell<Vec<Duration>>>;

/// A traced service whose handler makes 100 calls of `call` (given `0..100`) and notes
/// their time per call: one call is too short to time alone.
fn timed_calls(
    sink: &str,
    mut call: impl FnMut(u64) + 'static,
) -> (
    impl lambda_runtime::tower::Service<
        lambda_runtime::LambdaEvent<()>,
        Response = (),
        Error = lambda_runtime::Error,
    >,
    Times,
) {
    let times = Times::default();
    let noted = times.clone();
    let svc = traced_service(sink, move || {
        let start = Instant::now();
        for i in 0..100 {
            call(black_box(i));
        }
        noted.borrow_mut().push(start.elapsed() / 100);
    });
    (svc, times)
}

/// The median of the times noted, less the first 200 (warming up).
fn median_after_warm_up(times: &Times) -> Duration {
    let mut each: Vec<Duration> = times.borrow().iter().skip(200).copied().collect();
    each.sort();
    each[each.len() / 2]
}

/// The `tracing` comparison, per call of a one-line function in invocations of 100:
/// `#[instrument]` unsampled with `tracing` alone and with `XRayTracingLayer`, then
/// sampled `#[capture]` and `#[instrument]` with the layer. Each is the median over
/// 3,000 invocations of each invocation's time per call, the four taking turns, so that
/// a drift in the machine's speed during the run (by tens of percent on this VM) reaches
/// all four, not the one measured last.
fn tracing_comparison(sink: &str) -> [Duration; 4] {
    let (bare, layered) = (subscriber(false), subscriber(true));
    let variants = [
        (&bare, false, instrumented as fn(u64) -> u64),
        (&layered, false, instrumented),
        (&layered, true, captured),
        (&layered, true, instrumented),
    ];
    let mut runs: Vec<_> = variants
        .into_iter()
        .map(|(dispatch, sampled, call)| {
            let (svc, times) = timed_calls(sink, move |i| {
                black_box(call(i));
            });
            (dispatch, header(sampled), svc, times)
        })
        .collect();
    for _ in 0..3_200 {
        for (dispatch, header, svc, _) in &mut runs {
            tracing::dispatcher::with_default(dispatch, || invoke(svc, header));
        }
    }
    [0, 1, 2, 3].map(|i| median_after_warm_up(&runs[i].3))
}

/// xray-lite's context for the trace `header(sampled)`, sending to `sink`. It reads both
/// from the environment only.
fn xray_lite_context(sink: &str, sampled: bool) -> SubsegmentContext<DaemonClient> {
    std::env::set_var("AWS_XRAY_DAEMON_ADDRESS", sink);
    std::env::set_var("_X_AMZN_TRACE_ID", header(sampled));
    let client = DaemonClient::from_lambda_env().expect("xray-lite client");
    SubsegmentContext::from_lambda_env(client).expect("xray-lite context")
}

fn xray_lite_subsegment(sink: &str, sampled: bool) -> Duration {
    use xray_lite::{Context, CustomNamespace};
    let context = xray_lite_context(sink, sampled);
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

/// One way of making the PutItem call in the interceptor comparison.
struct Variant {
    label: &'static str,
    client: aws_sdk_dynamodb::Client,
    /// Registers an interceptor on each call, for tracers that work that way.
    per_call: Option<PerCall>,
    /// Also send one datagram of a typical document's size to the daemon stand-in:
    /// what the kernel alone charges the caller for handing a document over.
    bare_datagram: Option<UdpSocket>,
}

/// AWS calls per measured invocation.
const CALLS: u32 = 10;
/// Attributes of the large item (about 15 KB of request body).
const LARGE_ITEM: usize = 400;

/// `(wall, caller CPU)` of each of `runs`, per call of `per`: measured in interleaved
/// rounds so drift in the loopback round trip hits all alike, and as this thread's CPU
/// time, which is the caller's own work without waiting or the stub's and daemon's
/// threads. Medians of 101 rounds of 10 runs each.
fn interleaved(runs: &mut [Box<dyn FnMut() + '_>], per: u32) -> Vec<(Duration, Duration)> {
    let round = |run: &mut Box<dyn FnMut() + '_>| {
        let (t, cpu) = (Instant::now(), thread_cpu_time());
        for _ in 0..10 {
            run();
        }
        (
            t.elapsed() / (10 * per),
            (thread_cpu_time() - cpu) / (10 * per),
        )
    };
    for run in runs.iter_mut() {
        let _warm_up = round(run);
    }
    let mut samples = vec![(Vec::new(), Vec::new()); runs.len()];
    for _ in 0..101 {
        for (run, (wall, cpu)) in runs.iter_mut().zip(&mut samples) {
            let (w, c) = round(run);
            wall.push(w);
            cpu.push(c);
        }
    }
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    samples
        .into_iter()
        .map(|(w, c)| (median(w), median(c)))
        .collect()
}

/// Median per-call cost of each variant's PutItem against a loopback stub, as `(wall,
/// caller CPU)`, in invocations of [`CALLS`] calls (traced by `XRayLayer`, so each
/// call's share of the invocation's datagram counts).
fn put_item_costs(sink: &str, sampled: bool, variants: Vec<Variant>) -> Vec<(Duration, Duration)> {
    let rt = std::rc::Rc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
    );
    let document = [b'x'; 600];
    let mut runs: Vec<Box<dyn FnMut()>> = variants
        .into_iter()
        .map(|v| {
            let rt = rt.clone();
            let mut svc = traced_service(sink, move || {
                for _ in 0..CALLS {
                    let call = put_item(v.client.clone(), v.per_call.as_ref());
                    assert!(rt.block_on(call.in_current_trace()));
                    if let Some(socket) = &v.bare_datagram {
                        let _ = socket.send(&document);
                    }
                }
            });
            let header = header(sampled);
            Box::new(move || invoke(&mut svc, &header)) as Box<dyn FnMut()>
        })
        .collect();
    interleaved(&mut runs, CALLS)
}

/// The seed example's invocation (5 subsegments, 2 AWS calls) untraced and traced:
/// `(untraced CPU, traced CPU, datagrams per traced invocation)`.
fn seed_invocation(sink: &Sink) -> (Duration, Duration, f64) {
    let (mut bare, mut traced) = seed_services(Clients::start().unwrap(), &sink.address);
    let invocations = std::cell::Cell::new(0u64);
    // Datagrams are counted once all have landed, not after each invocation: waiting for
    // each would put the wait on the calling thread's CPU time.
    let before = sink.settled();
    let costs = {
        let mut runs: Vec<Box<dyn FnMut() + '_>> = vec![
            Box::new(|| invoke(&mut bare, &header(true))),
            Box::new(|| {
                invoke(&mut traced, &header(true));
                invocations.set(invocations.get() + 1);
            }),
        ];
        interleaved(&mut runs, 1)
    };
    let datagrams = sink.settled() - before;
    (
        costs[0].1,
        costs[1].1,
        datagrams as f64 / invocations.get() as f64,
    )
}

/// The label of the variant the others are compared with.
const OURS: &str = "XRayInterceptor on the client";
const PLAIN: &str = "plain";
/// What the kernel alone charges the caller for handing one document to the daemon.
const BARE_DATAGRAM: &str = "plain + one bare 600-byte datagram to the daemon";

/// One variant's median cost per call.
struct Row {
    label: &'static str,
    wall: Duration,
    cpu: Duration,
}

/// The variants measured under one trace, plain first.
struct Comparison {
    sampled: bool,
    rows: Vec<Row>,
}

/// The interceptor comparison, sampled and unsampled.
fn interceptor_comparison(sink: &str) -> Vec<Comparison> {
    let endpoint = dynamodb_stub().unwrap();
    let variant = |label, traced: bool| Variant {
        label,
        client: dynamodb_client(&endpoint, traced),
        per_call: None,
        bare_datagram: None,
    };
    let bare_socket = || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.connect(sink).unwrap();
        s.set_nonblocking(true).unwrap();
        s
    };
    let lite = xray_lite_context(sink, true);
    let sampled = vec![
        variant(PLAIN, false),
        variant(OURS, true),
        Variant {
            per_call: Some(Box::new(|call| call.interceptor(XRayInterceptor::new()))),
            ..variant("XRayInterceptor on the call", false)
        },
        Variant {
            per_call: Some(Box::new(move |call| {
                call.interceptor(lite.intercept_operation("DynamoDB", "PutItem"))
            })),
            ..variant("xray-lite-aws-sdk on the call", false)
        },
        Variant {
            bare_datagram: Some(bare_socket()),
            ..variant(BARE_DATAGRAM, false)
        },
    ];
    let unsampled = vec![variant(PLAIN, false), variant(OURS, true)];
    [(true, sampled), (false, unsampled)]
        .into_iter()
        .map(|(sampled, variants)| {
            let labels: Vec<&'static str> = variants.iter().map(|v| v.label).collect();
            let costs = put_item_costs(sink, sampled, variants);
            let rows = labels
                .into_iter()
                .zip(costs)
                .map(|(label, (wall, cpu))| Row { label, wall, cpu })
                .collect();
            Comparison { sampled, rows }
        })
        .collect()
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
    if let Some(workload) = std::env::args().skip_while(|a| a != "--count").nth(1) {
        count_workload(&workload, &sink);
        return;
    }
    if std::env::args().any(|a| a == "--interceptor-only") {
        // For profilers (e.g. valgrind --tool=callgrind): only the interceptor rounds.
        print_interceptor_comparison(&interceptor_comparison(&sink.address), &python);
        return;
    }

    let unsampled = in_invocation(&sink.address, &header(false), || {
        // Through an opaque pointer: inlined into the loop, its one check would be
        // hoisted out of it, and a call measured as nothing.
        let call: fn(u64) -> u64 = black_box(captured);
        per_call(15, 2_000_000, || {
            black_box(call(black_box(7)));
        })
    });
    let (recorded, with_send) = sampled_subsegment(&sink.address);
    // A million sampled subsegments, in 10,000 invocations of 100.
    let mut hundred = traced_service(&sink.address, || {
        for _ in 0..100 {
            xray_lambda::begin_subsegment("noop").end();
        }
    });
    for _ in 0..100 {
        invoke(&mut hundred, &header(true));
    }
    let rss_before = resident_kib();
    for _ in 0..10_000 {
        invoke(&mut hundred, &header(true));
    }
    let rss_after = resident_kib();
    let seed = seed_invocation(&sink);
    let interceptors = interceptor_comparison(&sink.address);
    let tracing_times = tracing_comparison(&sink.address);
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
    let ours = [ns(unsampled), ns(with_send)];
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
        "xray-lambda: sampled subsegment, recorded for sending",
        ns(recorded),
        ours[1],
    );
    row(
        "xray-lambda: the same, with its share of the one datagram",
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
    print_interceptor_comparison(&interceptors, &python);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let (seed_untraced, seed_traced, seed_datagrams) = seed;
    println!("The seed example's invocation (5 subsegments, 2 AWS calls to a loopback stub):");
    println!(
        "    caller CPU {:.1} µs untraced, {:.1} µs traced ({:+.1} µs); {seed_datagrams:.2} datagrams per invocation",
        us(seed_untraced),
        us(seed_traced),
        us(seed_traced) - us(seed_untraced)
    );
    println!();
    let [alone, layer, capture, instrument] = tracing_times.map(ns);
    println!(
        "Per call of a one-line function (median over 3,000 invocations of 100, the four in turn):"
    );
    println!(
        "  Sampled=0: #[instrument], tracing alone {alone:.1} ns; with XRayTracingLayer {layer:.1} ns ({:+.0}%)",
        (layer / alone - 1.0) * 100.0
    );
    println!(
        "  Sampled=1: #[capture] {capture:.1} ns; #[instrument] with XRayTracingLayer {instrument:.1} ns ({:.2}x #[capture])",
        instrument / capture
    );
    println!();
    println!(
        "Memory: resident {rss_before} KiB before and {rss_after} KiB after 1,000,000 sampled subsegments (10,000 invocations of 100)"
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

/// Runs one workload a fixed number of times and exits, for `valgrind --tool=callgrind`
/// to count its instructions (`bench/compare.sh` takes the differences): user-space
/// work only, and the same count however busy the machine is.
///
/// `put-item-{plain,ours,lite}[-unsampled]`: 1,000 PutItem calls in invocations of 10;
/// `http-{plain,ours}[-unsampled]`: 1,000 GETs through reqwest-middleware, without or
/// with `XRayMiddleware`, in invocations of 10;
/// `seed-{untraced,traced}`: 100 invocations of the seed example; `none`: setup only;
/// `{instrument,capture,empty}{,-noop}[-unsampled]`: 100 invocations of 100
/// `#[instrument]`ed calls, `#[capture]`d calls or none, with `XRayTracingLayer` or
/// (`-noop`) `tracing` alone as the subscriber.
fn count_workload(workload: &str, sink: &Sink) {
    let sampled = !workload.ends_with("-unsampled");
    let calls = workload.trim_end_matches("-unsampled");
    let (calls, xray) = match calls.strip_suffix("-noop") {
        Some(c) => (c, false),
        None => (calls, true),
    };
    let unit: Option<fn(u64) -> u64> = match calls {
        "instrument" => Some(instrumented),
        "capture" => Some(captured),
        "empty" => Some(|x| x),
        _ => None,
    };
    if let Some(unit) = unit {
        let per = if calls == "empty" { 0 } else { 100 };
        let unit = black_box(unit);
        tracing::dispatcher::with_default(&subscriber(xray), || {
            let mut svc = traced_service(&sink.address, || {
                for i in 0..per {
                    black_box(unit(black_box(i)));
                }
            });
            for _ in 0..100 {
                invoke(&mut svc, &header(sampled));
            }
        });
        return;
    }
    count_aws_workload(workload, sink);
}

fn count_aws_workload(workload: &str, sink: &Sink) {
    let Clients {
        rt,
        endpoint,
        plain,
        traced: ours,
    } = Clients::start().unwrap();
    let sampled = !workload.ends_with("-unsampled");
    let floor = |keeps_state| {
        let interceptor = SharedInterceptor::new(FloorInterceptor { keeps_state });
        dynamodb_client_with(&endpoint, Some(interceptor))
    };
    let (floor_hooks, floor_state) = (floor(false), floor(true));
    // Setup common to every workload: one call of each client.
    for client in [&plain, &ours, &floor_hooks, &floor_state] {
        assert!(rt.block_on(put_item(client.clone(), None)));
    }
    let lite = xray_lite_context(&sink.address, sampled);
    // 100 invocations of 10 calls, each call made by `call`.
    let invocations_of = |call: &dyn Fn() -> bool| {
        let mut svc = traced_service(&sink.address, || {
            for _ in 0..10 {
                assert!(call());
            }
        });
        for _ in 0..100 {
            invoke(&mut svc, &header(sampled));
        }
    };
    let put_items = |client: aws_sdk_dynamodb::Client, lite: bool| {
        let per_call: Option<PerCall> = lite.then(|| {
            let context = xray_lite_context(&sink.address, sampled);
            Box::new(move |call: PutItemCall| {
                call.interceptor(context.intercept_operation("DynamoDB", "PutItem"))
            }) as PerCall
        });
        invocations_of(&|| {
            rt.block_on(put_item(client.clone(), per_call.as_ref()).in_current_trace())
        });
    };
    let put_large_items = |client: aws_sdk_dynamodb::Client| {
        invocations_of(&|| {
            rt.block_on(put_large_item(client.clone(), LARGE_ITEM).in_current_trace())
        });
    };
    match workload.trim_end_matches("-unsampled") {
        "put-large-item-plain" => put_large_items(plain),
        "put-large-item-ours" => put_large_items(ours),
        "put-item-plain" => put_items(plain, false),
        "put-item-ours" => put_items(ours, false),
        "put-item-lite" => put_items(plain, true),
        "put-item-floor-hooks" => put_items(floor_hooks, false),
        "put-item-floor-state" => put_items(floor_state, false),
        "seed-untraced" => {
            let mut svc = bare_service(|| seed_work(&rt, &plain));
            for _ in 0..100 {
                invoke(&mut svc, &header(true));
            }
        }
        "seed-traced" => {
            let mut svc = traced_service(&sink.address, || seed_work(&rt, &ours));
            for _ in 0..100 {
                invoke(&mut svc, &header(true));
            }
        }
        "http-plain" | "http-ours" => {
            let url = format!("{}/", dynamodb_stub().unwrap());
            let client = http_client(workload.starts_with("http-ours"));
            let mut svc = traced_service(&sink.address, || {
                for _ in 0..10 {
                    assert!(rt.block_on(http_get(client.clone(), url.clone()).in_current_trace()));
                }
            });
            for _ in 0..100 {
                invoke(&mut svc, &header(sampled));
            }
        }
        _ => {}
    }
    drop(lite);
}

/// Prints the interceptor comparison, with the Python SDK's patched botocore from
/// `python` (as measured by `sdk_bench.py`) where it was measured.
fn print_interceptor_comparison(comparison: &[Comparison], python: &Value) {
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("AWS SDK call, DynamoDB PutItem to a loopback stub (median of interleaved rounds):");
    for Comparison { sampled, rows } in comparison {
        let Some(plain) = rows.first() else {
            continue;
        };
        let added = |r: &Row| us(r.cpu) - us(plain.cpu);
        let ours = rows.iter().find(|r| r.label == OURS).map_or(0.0, added);
        // Against a delta that noise made zero or negative a ratio would mislead.
        let vs_ours = |cost: f64| {
            if ours > 0.0 {
                format!("  {:.1}x ours", cost / ours)
            } else {
                String::new()
            }
        };
        println!("  Sampled={}:", u8::from(*sampled));
        println!("    {PLAIN:<50} caller CPU {:>6.1} µs", us(plain.cpu));
        for r in &rows[1..] {
            print!(
                "    {:<50} caller CPU {:>6.1} µs ({:+5.1} µs; wall {:+6.1} µs)",
                r.label,
                us(r.cpu),
                added(r),
                us(r.wall) - us(plain.wall)
            );
            if r.label != OURS {
                print!("{}", vs_ours(added(r)));
            }
            println!();
        }
        if let Some(bare) = rows.iter().find(|r| r.label == BARE_DATAGRAM) {
            println!(
                "    {:<50} {:+5.1} µs",
                "XRayInterceptor less the kernel's datagram hand-off",
                ours - added(bare)
            );
        }
        if let (true, Some(plain), Some(patched)) = (
            *sampled,
            python["put_item_plain_us"].as_f64(),
            python["put_item_patched_us"].as_f64(),
        ) {
            let added = patched - plain;
            println!(
                "    {:<50} caller CPU {plain:>6.1} µs plain, {patched:.1} µs patched ({added:+5.1} µs){}",
                "aws-xray-sdk (Python): boto3, patch([\"botocore\"])",
                vs_ours(added)
            );
        }
    }
}
