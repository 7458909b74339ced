//! Outside Lambda, `begin_segment` and `in_segment` start real traces, and a segment
//! never adopts work that is not its own. Its own test binary, because the daemon
//! address and "am I in Lambda" are read from the environment once per process.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use support::Collector;
use xray_lambda::{begin_segment, begin_subsegment, current_trace_header, FutureExt};

/// The daemon every test here sends to, set as the process's daemon address before any
/// segment begins.
fn daemon() -> &'static Collector {
    static DAEMON: OnceLock<Collector> = OnceLock::new();
    DAEMON.get_or_init(|| {
        let collector = Collector::start();
        std::env::remove_var("AWS_LAMBDA_FUNCTION_NAME");
        std::env::remove_var("LAMBDA_TASK_ROOT");
        std::env::remove_var("AWS_XRAY_SDK_ENABLED");
        std::env::set_var("AWS_XRAY_DAEMON_ADDRESS", &collector.address);
        collector
    })
}

fn names(docs: &[Value]) -> Vec<&str> {
    docs.iter().map(|d| d["name"].as_str().unwrap()).collect()
}

#[test]
fn begin_segment_outside_lambda_starts_and_sends_a_trace() {
    let daemon = daemon();
    let segment = begin_segment("local-tool");
    segment.put_annotation("run", 1);
    let trace_id = segment.trace_id().expect("a recording segment");
    {
        let child = begin_subsegment("step");
        begin_subsegment("inner step").end();
        let header = current_trace_header().unwrap();
        assert_eq!(header.root(), trace_id);
        assert_eq!(header.parent(), child.id());
    }
    segment.end();
    // No segment current any more: nothing is recorded.
    assert!(!begin_subsegment("after").is_recording());

    let docs = daemon.trace(&trace_id.to_string());
    assert_eq!(names(&docs), ["inner step", "step", "local-tool"]);
    let datagrams: Vec<Value> = daemon
        .datagrams()
        .into_iter()
        .filter(|d| d["trace_id"] == trace_id.to_string())
        .collect();
    assert_eq!(
        datagrams.len(),
        1,
        "the segment with its subsegments nested"
    );
    assert_eq!(
        datagrams[0]["subsegments"][0]["subsegments"][0]["name"],
        "inner step"
    );
    let seg = &docs[2];
    assert!(
        seg.get("type").is_none() && seg.get("parent_id").is_none(),
        "a top-level segment"
    );
    assert_eq!(seg["annotations"]["run"], 1);
    assert_eq!(docs[1]["parent_id"], seg["id"]);
    assert_eq!(docs[0]["parent_id"], docs[1]["id"]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let epoch = u64::from_str_radix(&trace_id.to_string()[2..10], 16).unwrap();
    assert!(
        now.abs_diff(epoch) < 60,
        "a fresh trace id stamped with the time"
    );
}

/// The guards ended outermost first: the segment's end ends what is open under it, and
/// nothing begun afterwards on this thread is recorded in its trace.
#[test]
fn nothing_begun_after_a_segment_ended_is_recorded_under_it() {
    let daemon = daemon();
    let segment = begin_segment("outer-first");
    let trace_id = segment.trace_id().unwrap().to_string();
    let inner = begin_subsegment("inner");
    drop(segment);
    drop(inner);
    let later = begin_subsegment("later");
    assert!(!later.is_recording());
    drop(later);
    assert_eq!(current_trace_header(), None);
    let docs = daemon.trace(&trace_id);
    assert_eq!(names(&docs), ["inner", "outer-first"]);
    assert_eq!(
        docs[0]["metadata"]["xray_lambda"]["incomplete"],
        "still open when the handler returned"
    );
}

/// A segment guard held across `.await` in the future `block_on` runs: the other tasks
/// of a current-thread runtime run on the same thread meanwhile, and must not work
/// under it; the future's own work after the `.await` does.
#[test]
fn a_segment_held_across_await_adopts_no_other_task() {
    let daemon = daemon();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let trace_id = rt.block_on(async {
        let segment = begin_segment("held-across-await");
        let trace_id = segment.trace_id().unwrap().to_string();
        let others: Vec<_> = (0..64)
            .map(|i| {
                tokio::spawn(async move {
                    tokio::task::yield_now().await;
                    let s = begin_subsegment(format!("unrelated-{i}"));
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    s.is_recording()
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        begin_subsegment("own-after-await").end();
        for task in others {
            assert!(
                !task.await.unwrap(),
                "another task worked under the segment"
            );
        }
        drop(segment);
        trace_id
    });
    let docs = daemon.trace(&trace_id);
    assert_eq!(names(&docs), ["own-after-await", "held-across-await"]);
    assert_eq!(docs[0]["parent_id"], docs[1]["id"]);
}

/// `in_segment` on a multi-thread runtime: each job's work, before and after its
/// `.await`s and on whatever worker it resumes, is under its own segment; hundreds of
/// unrelated tasks running meanwhile are under none.
#[test]
fn in_segment_keeps_each_job_and_only_it_under_its_segment() {
    let daemon = daemon();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let (jobs, unrelated) = rt.block_on(async {
        let jobs: Vec<_> = (0..8)
            .map(|i| {
                tokio::spawn(
                    async move {
                        begin_subsegment("before").end();
                        for _ in 0..5 {
                            tokio::time::sleep(Duration::from_millis(2)).await;
                            tokio::task::yield_now().await;
                        }
                        begin_subsegment("after").end();
                        current_trace_header().unwrap().root().to_string()
                    }
                    .in_segment(format!("job-{i}")),
                )
            })
            .collect();
        let unrelated: Vec<_> = (0..640)
            .map(|_| {
                tokio::spawn(async {
                    tokio::task::yield_now().await;
                    begin_subsegment("unrelated").is_recording()
                })
            })
            .collect();
        let mut traces = Vec::new();
        for j in jobs {
            traces.push(j.await.unwrap());
        }
        let mut recorded = 0;
        for u in unrelated {
            recorded += usize::from(u.await.unwrap());
        }
        (traces, recorded)
    });
    assert_eq!(unrelated, 0);
    for (i, trace_id) in jobs.iter().enumerate() {
        let docs = daemon.trace(trace_id);
        assert_eq!(
            names(&docs),
            ["before", "after", format!("job-{i}").as_str()]
        );
        let segment = &docs[2];
        assert!(segment.get("parent_id").is_none());
        for child in &docs[..2] {
            assert_eq!(child["parent_id"], segment["id"]);
            assert!(child["end_time"].as_f64() <= segment["end_time"].as_f64());
        }
    }
    assert!(daemon.all().iter().all(|d| d["name"] != "unrelated"));
}

#[cfg(feature = "tracing-layer")]
#[test]
fn tracing_spans_under_a_segment_are_its_subsegments() {
    use tracing_subscriber::layer::SubscriberExt;

    let daemon = daemon();
    let subscriber = tracing_subscriber::registry().with(xray_lambda::XRayTracingLayer::new());
    let trace_id = tracing::subscriber::with_default(subscriber, || {
        let segment = begin_segment("local-job");
        let trace_id = segment.trace_id().unwrap();
        tracing::info_span!("load", annotation.batch = 3).in_scope(|| {
            begin_subsegment("parse").end();
        });
        segment.end();
        trace_id
    });
    let docs = daemon.trace(&trace_id.to_string());
    assert_eq!(names(&docs), ["parse", "load", "local-job"]);
    assert_eq!(docs[1]["parent_id"], docs[2]["id"]);
    assert_eq!(docs[0]["parent_id"], docs[1]["id"]);
    assert_eq!(docs[1]["annotations"]["batch"], 3);
}
