//! The user API: subsegment guards, annotations, metadata and errors on whatever is
//! current, and the header for outgoing calls.

use std::borrow::Cow;
use std::error::Error;
use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::config;
use crate::context::{self, Node, Previous, Recording};
use crate::document::{AnnotationValue, ErrorKind, DEFAULT_NAMESPACE};
use crate::exception;
use crate::header::TraceHeader;
use crate::id::SegmentId;

/// An open subsegment. It is the current subsegment (the parent of subsegments begun
/// after it) until it ends, which happens when it is dropped or [`end`](Self::end)ed.
///
/// Guards nest: end them in the reverse order you began them, in the code (the task)
/// that began them. In async code a guard stays current across `.await` within the
/// traced future that holds it; but two guards held across `.await` in two branches of
/// one `join!` or `select!` share that future's context, so the second becomes the
/// first one's child. Give each branch its own subsegment with
/// [`FutureExt::in_subsegment`](crate::FutureExt::in_subsegment) instead. A guard that
/// ends while another is current logs a warning (once per process) naming it.
///
/// When nothing is being traced (no invocation, `Sampled=0`, tracing disabled) the
/// guard is inert: every method is a cheap no-op.
#[must_use = "the subsegment ends when this guard is dropped"]
pub struct Subsegment {
    /// `None` for an inert guard.
    active: Option<Active>,
}

struct Active {
    node: Arc<Node>,
    /// What was current when this guard began; current again when it ends.
    previous: Previous,
    /// A guard begun while a panic unwinds (in a `Drop`) did not fail because of it.
    began_unwinding: bool,
}

impl fmt::Debug for Subsegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subsegment")
            .field("id", &self.id())
            .finish()
    }
}

/// Begins a subsegment under the current one (or under Lambda's function segment at the
/// top of a handler) and makes it current.
///
/// The name is sanitized: characters X-Ray refuses become `_`, and it is cut to 200
/// characters. A literal name costs no allocation.
pub fn begin_subsegment(name: impl Into<Cow<'static, str>>) -> Subsegment {
    match context::recording() {
        Recording::Node(parent) => match Node::child(parent, name.into(), false) {
            Some(node) => Subsegment::enter(node),
            None => Subsegment::inert(),
        },
        Recording::Quiet => Subsegment::inert(),
        Recording::Outside => {
            warn_no_context();
            Subsegment::inert()
        }
    }
}

impl Subsegment {
    #[inline]
    pub(crate) fn inert() -> Self {
        Subsegment { active: None }
    }

    pub(crate) fn enter(node: Arc<Node>) -> Self {
        let previous = context::enter_guard(node.clone());
        Subsegment {
            active: Some(Active {
                node,
                previous,
                began_unwinding: std::thread::panicking(),
            }),
        }
    }

    #[inline]
    fn live(&self) -> Option<&Arc<Node>> {
        self.active.as_ref().map(|a| &a.node)
    }

    /// The subsegment's id, when it is being recorded.
    pub fn id(&self) -> Option<SegmentId> {
        self.live().map(|n| n.id())
    }

    /// Whether this subsegment is being recorded (sampled and not yet ended).
    #[inline]
    pub fn is_recording(&self) -> bool {
        self.live().is_some_and(|n| n.is_recording())
    }

    /// Adds an annotation: indexed, searchable with filter expressions. Keys must be
    /// 1–500 ASCII letters, digits or underscores (others are dropped with a warning);
    /// strings are cut to 1000 characters; NaN and infinite floats are dropped.
    pub fn put_annotation(&self, key: &str, value: impl Into<AnnotationValue>) {
        if let Some(n) = self.live().filter(|n| n.is_recording()) {
            n.put_annotation(key, value.into());
        }
    }

    /// Adds metadata under the `default` namespace: any `Serialize` value, not indexed.
    pub fn put_metadata<T: serde::Serialize + ?Sized>(&self, key: &str, value: &T) {
        self.put_metadata_in(DEFAULT_NAMESPACE, key, value);
    }

    /// Adds metadata under `namespace`. Namespaces starting with `AWS.` are reserved
    /// and refused with a warning.
    pub fn put_metadata_in<T: serde::Serialize + ?Sized>(
        &self,
        namespace: &str,
        key: &str,
        value: &T,
    ) {
        if let Some(n) = self.live() {
            n.put_metadata(namespace, key, value);
        }
    }

    /// Records `err` as a fault: one exception for it and one for each error in its
    /// `source()` chain, linked by `cause`, with the caller's location as the stack.
    #[track_caller]
    pub fn record_error<E: Error + ?Sized>(&self, err: &E) {
        self.record_error_as(err, ErrorKind::Fault);
    }

    /// Records `err`, counting it as `kind`.
    #[track_caller]
    pub fn record_error_as<E: Error + ?Sized>(&self, err: &E, kind: ErrorKind) {
        if let Some(n) = self.live().filter(|n| n.is_recording()) {
            n.add_exceptions(
                exception::from_error(err, Some(exception::caller_frame(Location::caller()))),
                kind,
            );
        }
    }

    /// Sets the flag for `kind` without recording an exception.
    pub fn mark(&self, kind: ErrorKind) {
        if let Some(n) = self.live() {
            n.add_exceptions(Vec::new(), kind);
        }
    }

    pub(crate) fn node(&self) -> Option<&Node> {
        self.live().map(|n| &**n)
    }

    /// The trace header for a call made from inside this subsegment.
    pub fn trace_header(&self) -> Option<TraceHeader> {
        self.live().map(|n| n.outgoing_header())
    }

    /// Ends the subsegment now and sends it.
    pub fn end(self) {}
}

impl Drop for Subsegment {
    #[inline]
    fn drop(&mut self) {
        if let Some(active) = self.active.take() {
            active.end();
        }
    }
}

impl Active {
    fn end(self) {
        let Active {
            node,
            previous,
            began_unwinding,
        } = self;
        if std::thread::panicking() && !began_unwinding {
            node.record_panic(None);
        }
        let was_current = context::exit_guard(&node, previous);
        // A node the end of its trace already ended was not misused.
        if !was_current && node.is_open() {
            warn_out_of_order(&node);
        }
        node.end();
    }
}

/// One warning per process for guards that end while they are not current: the trace
/// is already wrong by then (a later guard became this one's child).
fn warn_out_of_order(node: &Node) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            subsegment = %node.name(),
            "X-Ray subsegment ended while another subsegment was current: guards from \
             begin_subsegment must end in the reverse order they began, in the task that \
             began them. Guards held across .await in branches of one join!/select! share \
             one context; give each branch its own subsegment with \
             .in_subsegment(\"name\") instead. (Logged once.)"
        );
    }
}

/// Subsegments begun outside any context are discarded; inside Lambda that means during
/// init, which deserves one log line (as the official SDKs give).
fn warn_no_context() {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.load(Ordering::Relaxed)
        && config::in_lambda()
        && !WARNED.swap(true, Ordering::Relaxed)
    {
        tracing::warn!("subsegment begun outside an invocation (during init?) is discarded");
    }
}

/// Runs `f` on the current node if it is recording; converts nothing otherwise, so
/// calls without a sampled trace do not allocate.
fn with_current(f: impl FnOnce(&Node)) {
    if let Some(node) = context::current_recording() {
        f(&node);
    }
}

/// Adds an annotation to the current subsegment. See [`Subsegment::put_annotation`].
pub fn put_annotation(key: &str, value: impl Into<AnnotationValue>) {
    with_current(|n| n.put_annotation(key, value.into()));
}

/// Adds metadata under `default` to the current subsegment.
pub fn put_metadata<T: serde::Serialize + ?Sized>(key: &str, value: &T) {
    put_metadata_in(DEFAULT_NAMESPACE, key, value);
}

/// Adds metadata under `namespace` to the current subsegment.
pub fn put_metadata_in<T: serde::Serialize + ?Sized>(namespace: &str, key: &str, value: &T) {
    with_current(|n| n.put_metadata(namespace, key, value));
}

/// Records `err` on the current subsegment. See [`Subsegment::record_error`].
#[track_caller]
pub fn record_error<E: Error + ?Sized>(err: &E) {
    let at = Location::caller();
    with_current(|n| {
        n.add_exceptions(
            exception::from_error(err, Some(exception::caller_frame(at))),
            ErrorKind::Fault,
        )
    });
}

/// The trace header for an outgoing call made now: `Root` of the current trace,
/// `Parent` the current subsegment, and the incoming header's extra fields (`Lineage`).
/// Unsampled invocations, and sampled ones whose documents cannot be sent (tracing
/// disabled, no usable daemon), give `Parent` = the function segment with Lambda's
/// sampling decision. `None` outside any trace.
pub fn current_trace_header() -> Option<TraceHeader> {
    context::current()?.outgoing_header()
}

/// The id of the trace code running now belongs to (`1-5759e988-bd862e3fe1be46a994272793`),
/// for correlating logs with traces: also when the invocation is not sampled, since its
/// logs are still worth finding from the trace's id. `None` outside any trace.
///
/// ```
/// // With tracing_subscriber's JSON formatter, as Powertools' Logger does:
/// if let Some(trace_id) = xray_lambda::current_trace_id() {
///     tracing::info!(xray_trace_id = %trace_id, "user saved");
/// }
/// ```
pub fn current_trace_id() -> Option<crate::TraceId> {
    context::current()?.trace_id()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::test_support::{by_name, within, Daemon};
    use crate::context::Trace;
    use crate::id::TraceId;
    use serde_json::json;

    #[test]
    fn nested_guards_form_a_tree() {
        let d = Daemon::new();
        let facade = d.facade(true);
        within(&facade, || {
            let s1 = begin_subsegment("subsegment_1");
            s1.put_annotation("annotation1", "annotation test");
            s1.put_metadata_in("subsegment_1_metadata", "data", &json!({"key1": "value1"}));
            s1.end();
            let s2 = begin_subsegment("subsegment_2");
            {
                let _a = begin_subsegment("subsegment_3-1");
            }
            let b = begin_subsegment("subsegment_3-2");
            put_annotation("free", 1);
            drop(b);
            drop(s2);
        });
        let docs = d.documents();
        let names: Vec<_> = docs.iter().map(|d| d["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "subsegment_1",
                "subsegment_3-1",
                "subsegment_3-2",
                "subsegment_2"
            ]
        );
        let fid = facade.id().to_string();
        let s1 = by_name(&docs, "subsegment_1");
        let s2 = by_name(&docs, "subsegment_2");
        assert_eq!(s1["parent_id"], fid);
        assert_eq!(s2["parent_id"], fid);
        assert_eq!(by_name(&docs, "subsegment_3-1")["parent_id"], s2["id"]);
        assert_eq!(by_name(&docs, "subsegment_3-2")["parent_id"], s2["id"]);
        assert_eq!(
            by_name(&docs, "subsegment_3-2")["annotations"],
            json!({"free": 1})
        );
        assert_eq!(s1["annotations"], json!({"annotation1": "annotation test"}));
        assert_eq!(
            s1["metadata"],
            json!({"subsegment_1_metadata": {"data": {"key1": "value1"}}})
        );
        for doc in &docs {
            assert_eq!(doc["trace_id"], facade.outgoing_header().root().to_string());
            assert_eq!(doc["type"], "subsegment");
            assert!(doc["end_time"].as_f64().unwrap() >= doc["start_time"].as_f64().unwrap());
        }
    }

    #[test]
    fn unsampled_and_missing_context_record_nothing() {
        let d = Daemon::new();
        let facade = d.facade(false);
        let header = within(&facade, || {
            let s = begin_subsegment("x");
            assert!(!s.is_recording());
            s.put_annotation("k", 1);
            current_trace_header().unwrap()
        });
        assert_eq!(header.sampling(), crate::Sampling::NotSampled);
        assert_eq!(header.parent(), Some(facade.id()));
        assert_eq!(header.lineage(), Some("a87bd80c:0"));
        let s = begin_subsegment("no context");
        assert!(!s.is_recording());
        assert_eq!(current_trace_header(), None);
        drop(s);
        assert!(d.documents().is_empty());
    }

    #[test]
    fn bad_annotations_and_metadata_are_dropped_not_fatal() {
        let d = Daemon::new();
        let facade = d.facade(true);
        within(&facade, || {
            let s = begin_subsegment("s");
            s.put_annotation("bad-key", 1);
            s.put_annotation("nan", f64::NAN);
            s.put_annotation("inf", f64::INFINITY);
            s.put_annotation("long", "é".repeat(1500));
            s.put_annotation("ok", 2.5);
            s.put_metadata_in("AWS.reserved", "k", &1);
            s.put_metadata("nan_inside", &vec![f64::NAN]);
        });
        let doc = &d.documents()[0];
        let ann = doc["annotations"].as_object().unwrap();
        assert_eq!(ann.keys().collect::<Vec<_>>(), ["long", "ok"]);
        assert_eq!(ann["long"].as_str().unwrap().chars().count(), 1000);
        assert_eq!(doc["metadata"], json!({"default": {"nan_inside": [null]}}));
    }

    #[test]
    fn errors_record_fault_and_linked_causes() {
        let d = Daemon::new();
        let facade = d.facade(true);
        within(&facade, || {
            let s = begin_subsegment("parse");
            let err = "x".parse::<i32>().unwrap_err();
            s.record_error(&err);
            let s2 = begin_subsegment("client");
            s2.record_error_as(&std::io::Error::other("nope"), ErrorKind::Throttle);
        });
        let docs = d.documents();
        let parse = by_name(&docs, "parse");
        assert_eq!(parse["fault"], true);
        assert!(parse.get("error").is_none());
        let ex = &parse["cause"]["exceptions"][0];
        assert_eq!(ex["type"], "ParseIntError");
        assert_eq!(ex["message"], "invalid digit found in string");
        assert_eq!(ex["stack"][0]["path"], file!());
        let client = by_name(&docs, "client");
        assert_eq!(
            (client["error"].clone(), client["throttle"].clone()),
            (json!(true), json!(true))
        );
        assert!(client.get("fault").is_none());
    }

    #[test]
    fn a_panic_unwinding_through_guards_is_recorded_once_and_referenced() {
        let d = Daemon::new();
        let facade = d.facade(true);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            within(&facade, || {
                let _outer = begin_subsegment("outer");
                let _inner = begin_subsegment("inner");
                panic!("kaboom");
            })
        }));
        assert!(caught.is_err());
        let docs = d.documents();
        let inner = by_name(&docs, "inner");
        let outer = by_name(&docs, "outer");
        let ex = &inner["cause"]["exceptions"][0];
        assert_eq!(ex["message"], "kaboom");
        assert_eq!(ex["type"], "panic");
        assert_eq!(ex["stack"][0]["path"], file!());
        assert_eq!(outer["cause"], ex["id"]);
        assert_eq!(outer["fault"], true);
        assert!(
            context::current().is_none(),
            "context restored after unwinding"
        );
    }

    #[test]
    fn a_later_unwind_never_takes_an_earlier_panics_record() {
        let d = Daemon::new();
        let facade = d.facade(true);
        within(&facade, || {
            // A panic recorded through a subsegment, caught.
            let _ = std::panic::catch_unwind(|| {
                let _g = begin_subsegment("first");
                panic!("first panic");
            });
            // A panic caught without passing through any subsegment: its record stays.
            let _ = std::panic::catch_unwind(|| panic!("unrecorded panic"));
            // A new unwind the panic hook never saw.
            let _ = std::panic::catch_unwind(|| {
                let _g = begin_subsegment("second");
                std::panic::resume_unwind(Box::new("second payload"));
            });
        });
        let docs = d.documents();
        let first = &by_name(&docs, "first")["cause"]["exceptions"][0];
        assert_eq!(first["message"], "first panic");
        let second = by_name(&docs, "second");
        assert_eq!(second["fault"], true);
        let ex = &second["cause"]["exceptions"][0];
        assert_eq!(ex["message"], crate::panic::UNSEEN_MESSAGE, "{second}");
        assert_ne!(ex["id"], first["id"]);
        assert!(ex.get("stack").is_none(), "no location from another panic");
    }

    #[test]
    fn a_subsegment_begun_while_another_panic_unwinds_is_not_marked() {
        struct Cleanup;
        impl Drop for Cleanup {
            fn drop(&mut self) {
                let s = begin_subsegment("cleanup");
                s.put_annotation("ran", true);
            }
        }
        let d = Daemon::new();
        let facade = d.facade(true);
        within(&facade, || {
            let _ = std::panic::catch_unwind(|| {
                let _outer = begin_subsegment("failing");
                let _cleanup = Cleanup;
                panic!("the real failure");
            });
        });
        let docs = d.documents();
        let cleanup = by_name(&docs, "cleanup");
        assert_eq!(cleanup["annotations"]["ran"], true);
        assert!(
            cleanup.get("fault").is_none() && cleanup.get("cause").is_none(),
            "{cleanup}"
        );
        let failing = by_name(&docs, "failing");
        assert_eq!(
            failing["cause"]["exceptions"][0]["message"],
            "the real failure"
        );
    }

    #[test]
    fn nothing_is_recorded_under_a_segment_after_it_ended() {
        let d = Daemon::new();
        let trace = Trace::new(TraceId::new(), "", true, Some(d.emitter.clone()), 100);
        let segment = Subsegment::enter(Node::segment(trace, "segment".into(), None).unwrap());
        let inner = begin_subsegment("inner");
        // Outermost first: the segment ends what is open under it.
        drop(segment);
        assert!(!inner.is_recording());
        assert!(
            context::current_recording().is_none(),
            "an ended node is never current"
        );
        drop(inner);
        let later = begin_subsegment("later");
        assert!(!later.is_recording());
        drop(later);
        assert!(context::current_recording().is_none());
        let docs = d.documents();
        let names: Vec<_> = docs.iter().map(|d| d["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["inner", "segment"]);
        assert_eq!(
            docs[0]["metadata"]["xray_lambda"]["incomplete"],
            "still open when the handler returned"
        );
    }

    /// Nested guards dropped outermost first leave a chain of ended nodes, each held by
    /// its child; releasing it must not take one stack frame per level.
    #[test]
    fn a_deep_chain_of_ended_guards_is_released_without_deep_recursion() {
        let d = Daemon::new();
        let facade = d.facade(true);
        let depth = 50_000;
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                within(&facade, || {
                    let guards: Vec<Subsegment> =
                        (0..depth).map(|_| begin_subsegment("level")).collect();
                    let innermost = guards.last().and_then(Subsegment::id);
                    for g in guards {
                        drop(g);
                    }
                    innermost
                })
            })
            .unwrap()
            .join()
            .expect("no stack overflow");
        drop(d);
    }

    /// A guard kept in a thread-local ends during the thread's teardown, possibly after
    /// this crate's own thread-locals are gone.
    #[test]
    fn a_guard_dropped_during_thread_local_teardown_is_sent() {
        thread_local! {
            static KEPT: std::cell::RefCell<Option<Subsegment>> = const { std::cell::RefCell::new(None) };
        }
        let d = Daemon::new();
        let facade = d.facade(true);
        std::thread::spawn(move || {
            // Registered before this crate's own thread-locals (the encode buffer, the
            // id generator, the current slot), so destroyed after them.
            KEPT.with(|_| {});
            within(&facade, || {
                begin_subsegment("warm_up").end();
                let kept = begin_subsegment("kept_in_a_thread_local");
                KEPT.with(|k| *k.borrow_mut() = Some(kept));
            });
        })
        .join()
        .expect("the thread exits cleanly");
        let docs = d.documents();
        by_name(&docs, "kept_in_a_thread_local");
    }
}
