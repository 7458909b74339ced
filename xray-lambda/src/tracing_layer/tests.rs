use serde_json::{json, Value};
use tracing::{Dispatch, Instrument};
use tracing_subscriber::layer::SubscriberExt;

use super::*;
use crate::context::test_support::{by_name, within, Daemon};
use crate::{begin_subsegment, FutureExt};

fn dispatch(layer: XRayTracingLayer) -> Dispatch {
    Dispatch::new(tracing_subscriber::registry().with(layer))
}

/// Runs `f` under a sampled invocation of `d` with `layer` as the subscriber's only
/// layer; gives the facade's id.
fn traced(d: &Daemon, layer: XRayTracingLayer, f: impl FnOnce()) -> String {
    let facade = d.facade(true);
    tracing::dispatcher::with_default(&dispatch(layer), || within(&facade, f));
    facade.id().to_string()
}

fn names(docs: &[Value]) -> Vec<&str> {
    docs.iter().map(|d| d["name"].as_str().unwrap()).collect()
}

#[test]
fn a_span_is_a_subsegment_with_its_fields() {
    let d = Daemon::new();
    let facade = traced(
        &d,
        XRayTracingLayer::new().annotate_fields(["user_id"]),
        || {
            let span = tracing::info_span!(
                "load_user",
                user_id = "u-1",
                annotation.tenant = 7u64,
                attempt = 2i64,
                ratio = 0.5,
                cached = false,
                request = ?vec![1, 2],
                later = tracing::field::Empty,
                "annotation.bad key" = 1,
            );
            span.record("later", "set after");
            let _entered = span.enter();
        },
    );
    let docs = d.documents();
    assert_eq!(names(&docs), ["load_user"]);
    let doc = &docs[0];
    assert_eq!(doc["parent_id"], facade);
    assert_eq!(doc["annotations"], json!({"user_id": "u-1", "tenant": 7}));
    assert_eq!(
        doc["metadata"]["tracing"],
        json!({"attempt": 2, "ratio": 0.5, "cached": false, "request": "[1, 2]", "later": "set after"})
    );
}

#[test]
fn spans_guards_and_scopes_share_one_context() {
    let d = Daemon::new();
    traced(&d, XRayTracingLayer::new(), || {
        let outer = tracing::info_span!("outer");
        outer.in_scope(|| {
            let guard = begin_subsegment("guard");
            tracing::info_span!("in_guard").in_scope(|| {
                let _leaf = begin_subsegment("leaf");
            });
            drop(guard);
        });
    });
    let docs = d.documents();
    assert_eq!(names(&docs), ["leaf", "in_guard", "guard", "outer"]);
    let id = |n: &str| by_name(&docs, n)["id"].clone();
    assert_eq!(by_name(&docs, "guard")["parent_id"], id("outer"));
    assert_eq!(by_name(&docs, "in_guard")["parent_id"], id("guard"));
    assert_eq!(by_name(&docs, "leaf")["parent_id"], id("in_guard"));
}

#[test]
fn instrumented_futures_keep_the_parent_they_were_created_under() {
    let d = Daemon::new();
    let facade = d.facade(true);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    tracing::dispatcher::with_default(&dispatch(XRayTracingLayer::new()), || {
        within(&facade, || {
            rt.block_on(
                async {
                    let branch = |name: &'static str| {
                        async move {
                            tokio::task::yield_now().await;
                            let _g = begin_subsegment(format!("{name}_work"));
                            tokio::task::yield_now().await;
                        }
                        .instrument(tracing::info_span!("branch", which = name))
                    };
                    tokio::join!(branch("a"), branch("b"));
                }
                .in_subsegment("handler"),
            )
        });
    });
    let docs = d.documents();
    let handler = by_name(&docs, "handler")["id"].clone();
    let branches: Vec<&Value> = docs.iter().filter(|d| d["name"] == "branch").collect();
    assert_eq!(branches.len(), 2);
    for b in branches {
        assert_eq!(b["parent_id"], handler);
        let which = b["metadata"]["tracing"]["which"].as_str().unwrap();
        assert_eq!(
            by_name(&docs, &format!("{which}_work"))["parent_id"],
            b["id"]
        );
    }
}

#[test]
fn a_spawned_instrumented_task_on_another_thread_keeps_its_parent() {
    let d = Daemon::new();
    let facade = d.facade(true);
    let dispatch = dispatch(XRayTracingLayer::new());
    let on_workers = dispatch.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .on_thread_start(move || {
            // The subscriber is per thread in tests; keep it for the worker's lifetime.
            std::mem::forget(tracing::dispatcher::set_default(&on_workers));
        })
        .build()
        .unwrap();
    tracing::dispatcher::with_default(&dispatch, || {
        within(&facade, || {
            let _handler = begin_subsegment("handler");
            let task = async {
                let _g = begin_subsegment("in_task");
            }
            .instrument(tracing::info_span!("spawned"));
            let handle = rt.spawn(task);
            rt.block_on(handle).unwrap();
            // A thread with no context of its own entering a recorded span works in it.
            let span = tracing::info_span!("crossing");
            std::thread::scope(|s| {
                s.spawn(|| {
                    tracing::dispatcher::with_default(&dispatch, || {
                        span.in_scope(|| drop(begin_subsegment("on_thread")));
                    })
                });
            });
        });
    });
    drop(rt);
    let docs = d.documents();
    let id = |n: &str| by_name(&docs, n)["id"].clone();
    assert_eq!(by_name(&docs, "spawned")["parent_id"], id("handler"));
    assert_eq!(by_name(&docs, "in_task")["parent_id"], id("spawned"));
    assert_eq!(by_name(&docs, "crossing")["parent_id"], id("handler"));
    assert_eq!(by_name(&docs, "on_thread")["parent_id"], id("crossing"));
}

#[test]
fn a_span_closed_on_another_thread_leaves_the_thread_that_made_it_right() {
    let d = Daemon::new();
    let facade = traced(&d, XRayTracingLayer::new(), || {
        let moved = tracing::info_span!("moved");
        std::thread::scope(|s| {
            s.spawn(move || {
                let entered = moved.enter();
                drop(begin_subsegment("inside"));
                drop(entered);
                drop(moved);
            });
        });
        let next = tracing::info_span!("next");
        next.in_scope(|| drop(begin_subsegment("after")));
        drop(next);
        drop(begin_subsegment("last"));
    });
    let docs = d.documents();
    let mut sorted = names(&docs);
    sorted.sort_unstable();
    assert_eq!(sorted, ["after", "inside", "last", "moved", "next"]);
    let id = |n: &str| by_name(&docs, n)["id"].clone();
    assert_eq!(by_name(&docs, "inside")["parent_id"], id("moved"));
    assert_eq!(by_name(&docs, "after")["parent_id"], id("next"));
    for ended_by_their_span in ["moved", "next"] {
        let doc = by_name(&docs, ended_by_their_span);
        assert!(doc.get("metadata").is_none(), "{doc}");
    }
    assert_eq!(by_name(&docs, "last")["parent_id"], facade);
}

#[test]
fn error_events_mark_the_span_and_return_values_are_metadata() {
    #[derive(Debug)]
    struct NotFound;
    impl std::fmt::Display for NotFound {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("user not found")
        }
    }
    impl std::error::Error for NotFound {}

    let d = Daemon::new();
    traced(&d, XRayTracingLayer::new(), || {
        tracing::info_span!("display")
            .in_scope(|| tracing::error!(target: "app", error = %NotFound));
        tracing::info_span!("debug").in_scope(|| tracing::error!(target: "app", error = ?NotFound));
        tracing::info_span!("typed").in_scope(
            || tracing::error!(target: "app", error = %NotFound, error.type = "NotFoundError"),
        );
        tracing::info_span!("dyn_error").in_scope(|| {
            tracing::error!(target: "app", error = &NotFound as &(dyn std::error::Error + 'static))
        });
        tracing::info_span!("warned").in_scope(|| tracing::warn!(target: "app", error = %NotFound));
        tracing::info_span!("logged").in_scope(|| tracing::error!(target: "app", "no error field"));
        tracing::info_span!("returned").in_scope(|| tracing::info!(target: "app", return = 42));
    });
    let docs = d.documents();
    let exception = |n: &str| {
        let doc = by_name(&docs, n);
        assert_eq!(doc["fault"], true, "{n}");
        doc["cause"]["exceptions"][0].clone()
    };
    assert_eq!(exception("display")["message"], "user not found");
    assert_eq!(exception("debug")["message"], "NotFound");
    assert_eq!(exception("debug")["type"], "NotFound");
    assert_eq!(exception("typed")["type"], "NotFoundError");
    assert_eq!(exception("dyn_error")["type"], "NotFound");
    assert_eq!(exception("dyn_error")["message"], "user not found");
    for quiet in ["warned", "logged", "returned"] {
        let doc = by_name(&docs, quiet);
        assert!(
            doc.get("fault").is_none() && doc.get("cause").is_none(),
            "{quiet}"
        );
    }
    assert_eq!(
        by_name(&docs, "returned")["metadata"]["tracing"]["return"],
        42
    );
}

#[test]
fn spans_left_out_are_transparent() {
    let d = Daemon::new();
    traced(
        &d,
        XRayTracingLayer::new().ignore_target("my_app::noisy"),
        || {
            let _outer = tracing::info_span!("outer").entered();
            let _plumbing = tracing::info_span!(target: "hyper::client", "plumbing").entered();
            let _noisy = tracing::info_span!(target: "my_app::noisy::x", "noisy").entered();
            let _inner = tracing::info_span!("inner").entered();
        },
    );
    let docs = d.documents();
    assert_eq!(names(&docs), ["inner", "outer"]);
    assert_eq!(
        by_name(&docs, "inner")["parent_id"],
        by_name(&docs, "outer")["id"]
    );
}

#[test]
fn nothing_is_recorded_without_a_sampled_trace() {
    let d = Daemon::new();
    let unsampled = d.facade(false);
    tracing::dispatcher::with_default(&dispatch(XRayTracingLayer::new()), || {
        within(&unsampled, || {
            let _s = tracing::info_span!("unsampled").entered();
            tracing::error!(target: "app", error = "e");
        });
        let _s = tracing::info_span!("outside").entered();
    });
    assert!(d.documents().is_empty());
}

#[test]
fn sqlx_query_events_become_sql_subsegments() {
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::Layer as _;

    let d = Daemon::new();
    let facade = d.facade(true);
    // The log output wants INFO and up only; the layer still sees sqlx's DEBUG events.
    let subscriber = tracing_subscriber::registry()
        .with(
            XRayTracingLayer::new()
                .sql_name("users-db")
                .sql_database_type("SQLite"),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::sink)
                .with_filter(LevelFilter::INFO),
        );
    tracing::subscriber::with_default(subscriber, || {
        within(&facade, || {
            let _s = tracing::info_span!("save").entered();
            tracing::debug!(
                target: "sqlx::query",
                summary = "INSERT INTO users (id, …",
                db.statement = "\n\nINSERT INTO users (id, name) VALUES (?, ?)\n",
                rows_affected = 1u64,
                rows_returned = 0u64,
                elapsed_secs = 0.25,
            );
        })
    });
    let docs = d.documents();
    assert_eq!(names(&docs), ["users-db", "save"]);
    let q = by_name(&docs, "users-db");
    assert_eq!(q["parent_id"], by_name(&docs, "save")["id"]);
    assert_eq!(q["namespace"], "remote");
    assert_eq!(
        q["sql"],
        json!({"sanitized_query": "INSERT INTO users (id, name) VALUES (?, ?)", "database_type": "SQLite"})
    );
    assert_eq!(
        q["metadata"]["sql"],
        json!({"rows_affected": 1, "rows_returned": 0})
    );
    let took = q["end_time"].as_f64().unwrap() - q["start_time"].as_f64().unwrap();
    assert!(
        (0.25..0.5).contains(&took),
        "started elapsed_secs earlier: {took}"
    );
}

#[test]
fn the_layer_never_records_its_own_logging_and_works_beside_other_layers() {
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::Layer as _;

    let d = Daemon::new();
    let facade = d.facade(true);
    let subscriber = tracing_subscriber::registry()
        .with(XRayTracingLayer::new().with_filter(LevelFilter::DEBUG))
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::sink)
                .with_filter(LevelFilter::WARN),
        );
    tracing::subscriber::with_default(subscriber, || {
        within(&facade, || {
            // An invalid annotation key makes this crate log a warning from inside the
            // layer's callback.
            let _s = tracing::info_span!("span", "annotation.not valid" = 1).entered();
            let _t = tracing::trace_span!("filtered_out").entered();
            tracing::error!(target: "xray_lambda::emitter", error = "own");
        });
    });
    let docs = d.documents();
    assert_eq!(names(&docs), ["span"]);
    assert!(docs[0].get("annotations").is_none() && docs[0].get("fault").is_none());
}

#[test]
fn current_trace_id_is_the_invocations_sampled_or_not() {
    let d = Daemon::new();
    for sampled in [true, false] {
        let facade = d.facade(sampled);
        let expected = facade.outgoing_header().root();
        within(&facade, || {
            assert_eq!(crate::current_trace_id(), Some(expected))
        });
    }
    assert_eq!(crate::current_trace_id(), None);
}

/// A span left out, entered again inside itself where a context is current (as the
/// Lambda runtime's span is, around and inside the wrapper): the inner exit must not
/// undo the outer enter, or the thread keeps the invocation's context afterwards.
#[test]
fn nested_enters_of_a_span_left_out_leave_nothing_behind() {
    let d = Daemon::new();
    let facade = d.facade(true);
    tracing::dispatcher::with_default(&dispatch(XRayTracingLayer::new()), || {
        let span = within(
            &facade,
            || tracing::info_span!(target: "lambda_runtime", "invoke"),
        );
        {
            let _outer = span.enter();
            assert!(
                crate::current_trace_id().is_some(),
                "lent to a thread with none"
            );
            within(&facade, || drop(span.enter()));
        }
        assert_eq!(crate::current_trace_id(), None, "nothing left behind");
    });
}

/// The runtime wrapper finds the layer, filtered or not, and binds the span current
/// when an invocation starts to its handler: another thread entering that span with
/// nothing current of its own works under the invocation.
#[test]
fn the_invocation_span_is_bound_to_the_handler_through_a_filtered_layer() {
    use crate::context::Node;
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::Layer as _;

    let d = Daemon::new();
    let facade = d.facade(true);
    let handler = Node::child(facade.clone(), "handler".into(), true).unwrap();
    let root = facade.outgoing_header().root();
    let dispatch = Dispatch::new(
        tracing_subscriber::registry().with(XRayTracingLayer::new().with_filter(LevelFilter::INFO)),
    );
    tracing::dispatcher::with_default(&dispatch, || {
        let span = tracing::info_span!(target: "lambda_runtime", "Lambda runtime invoke");
        span.in_scope(|| bind_current_span(&handler));
        std::thread::scope(|s| {
            s.spawn(|| {
                tracing::dispatcher::with_default(&dispatch, || {
                    assert_eq!(crate::current_trace_id(), None);
                    span.in_scope(|| assert_eq!(crate::current_trace_id(), Some(root)));
                })
            });
        });
    });
}

#[test]
fn two_instances_of_the_layer_record_each_span_once() {
    let d = Daemon::new();
    let facade = d.facade(true);
    let subscriber = tracing_subscriber::registry()
        .with(XRayTracingLayer::new())
        .with(XRayTracingLayer::new());
    let dispatch = Dispatch::new(subscriber);
    tracing::dispatcher::with_default(&dispatch, || {
        within(&facade, || {
            let outer = tracing::info_span!("outer");
            let _entered = outer.enter();
            // A thread with nothing current of its own finds the span's node through
            // the registry: the layers' count of spans carrying one must still be right.
            std::thread::scope(|s| {
                s.spawn(|| {
                    tracing::dispatcher::with_default(&dispatch, || {
                        let inner = tracing::info_span!(parent: &outer, "inner");
                        inner.in_scope(|| drop(begin_subsegment("on_thread")));
                    })
                });
            });
        });
    });
    let docs = d.documents();
    let mut sorted = names(&docs);
    sorted.sort_unstable();
    assert_eq!(sorted, ["inner", "on_thread", "outer"]);
    let id = |n: &str| by_name(&docs, n)["id"].clone();
    assert_eq!(
        by_name(&docs, "outer")["parent_id"],
        facade.id().to_string()
    );
    assert_eq!(by_name(&docs, "inner")["parent_id"], id("outer"));
    assert_eq!(by_name(&docs, "on_thread")["parent_id"], id("inner"));
}
