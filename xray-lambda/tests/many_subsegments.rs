//! An invocation of 10,000 subsegments in many shapes: every one arrives exactly once,
//! no datagram is larger than one can be, and the memory the invocation holds stays
//! bounded (a counting allocator on the handler's thread). Its own test binary, because
//! the global allocator is process-wide.

#![allow(clippy::unwrap_used, unsafe_code)]

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;

use lambda_runtime::tower::{Layer, Service};
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use support::{block_on, event, Collector, SAMPLED};
use xray_lambda::{begin_subsegment, XRayLayer};

struct Counting;

thread_local! {
    /// Bytes this thread allocated and has not freed, and the most there were.
    static LIVE: Cell<(i64, i64)> = const { Cell::new((0, 0)) };
}

fn track(delta: i64) {
    let _ = LIVE.try_with(|l| {
        let (live, peak) = l.get();
        let live = live + delta;
        l.set((live, peak.max(live)));
    });
}

// SAFETY: forwards every call unchanged to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        track(layout.size() as i64);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        track(-(layout.size() as i64));
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const GROUPS: usize = 50;
const PER_GROUP: usize = 99;
const CHAIN: usize = 100;
const LEAVES: usize = 10_000 - GROUPS * (PER_GROUP + 1) - CHAIN;

/// 10,000 subsegments: groups of leaves (one leaf in each with 10 KB of metadata), a
/// chain nested 100 deep, and leaves directly under the handler. Pauses now and then
/// so the daemon's socket buffer keeps up. Gives the peak of bytes held meanwhile.
fn ten_thousand() -> i64 {
    let base = LIVE.with(Cell::get).0;
    LIVE.with(|l| l.set((base, base)));
    let pause = || std::thread::sleep(std::time::Duration::from_millis(2));
    for g in 0..GROUPS {
        let group = begin_subsegment(format!("group-{g}"));
        for i in 0..PER_GROUP {
            let leaf = begin_subsegment(format!("g{g}-{i}"));
            if i == 0 {
                leaf.put_metadata("blob", &"b".repeat(10_000));
            }
        }
        drop(group);
        pause();
    }
    let chain: Vec<_> = (0..CHAIN)
        .map(|i| begin_subsegment(format!("chain-{i}")))
        .collect();
    for link in chain.into_iter().rev() {
        drop(link);
    }
    for i in 0..LEAVES {
        begin_subsegment(format!("leaf-{i}")).end();
        if i % 50 == 0 {
            pause();
        }
    }
    LIVE.with(Cell::get).1 - base
}

#[test]
fn ten_thousand_subsegments_arrive_once_each_in_bounded_memory() {
    let daemon = Collector::start();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let p = peak.clone();
    let mut svc = XRayLayer::new()
        .daemon_address(&daemon.address)
        .enabled(true)
        .layer(service_fn(move |_: LambdaEvent<Value>| {
            let p = p.clone();
            async move {
                p.store(ten_thousand(), std::sync::atomic::Ordering::SeqCst);
                Ok::<_, lambda_runtime::Error>(Value::Null)
            }
        }));
    block_on(svc.call(event(Value::Null, Some(SAMPLED)))).unwrap();

    let raw = daemon.raw();
    assert!(
        raw.iter().all(|d| d.len() <= 65_507),
        "a datagram over 65,507 bytes"
    );
    let docs = daemon.all();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for d in &docs {
        *seen.entry(d["id"].as_str().unwrap()).or_default() += 1;
    }
    assert_eq!(docs.len(), 10_001, "10,000 subsegments and the handler's");
    assert!(seen.values().all(|&n| n == 1), "each exactly once");
    let by_name: HashMap<&str, &Value> = docs
        .iter()
        .map(|d| (d["name"].as_str().unwrap(), d))
        .collect();
    for g in 0..GROUPS {
        let group = by_name[format!("group-{g}").as_str()];
        for i in 0..PER_GROUP {
            assert_eq!(
                by_name[format!("g{g}-{i}").as_str()]["parent_id"],
                group["id"]
            );
        }
        assert_eq!(
            by_name[format!("g{g}-0").as_str()]["metadata"]["default"]["blob"]
                .as_str()
                .map(str::len),
            Some(10_000)
        );
    }
    for i in 1..CHAIN {
        let (link, up) = (
            by_name[format!("chain-{i}").as_str()],
            by_name[format!("chain-{}", i - 1).as_str()],
        );
        assert_eq!(link["parent_id"], up["id"]);
    }
    // Held all at once, the encoded documents alone would be well over 1.5 MB.
    let peak = peak.load(std::sync::atomic::Ordering::SeqCst);
    assert!(peak < 512 * 1024, "held {peak} bytes at the peak");
    // Leaves directly under the long-running handler outgrow its document: past the
    // bound, each goes as a document of its own.
    let alone = daemon
        .datagrams()
        .iter()
        .filter(|d| d["name"].as_str().unwrap().starts_with("leaf-"))
        .count();
    assert!(
        alone > LEAVES / 2,
        "{alone} of {LEAVES} leaves sent on their own"
    );
    // Whole subtrees go together: each group arrives in one document with its leaves.
    for doc in daemon.datagrams() {
        let flat = xray_local::document::flatten(&doc);
        for group in flat
            .iter()
            .filter(|d| d["name"].as_str().unwrap().starts_with("group-"))
        {
            let leaves = flat
                .iter()
                .filter(|d| d["parent_id"] == group["id"])
                .count();
            assert_eq!(leaves, PER_GROUP, "{} arrived split", group["name"]);
        }
    }
}
