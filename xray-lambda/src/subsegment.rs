//! The user API: subsegment guards, annotations, metadata, errors, and futures that
//! carry the trace.

use std::borrow::Cow;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::panic::Location;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use crate::config;
use crate::context::{self, JustEnd, Node, Scope, Trace};
use crate::document::{AnnotationValue, Record, DEFAULT_NAMESPACE};
use crate::emitter::Emitter;
use crate::exception;
use crate::header::TraceHeader;
use crate::id::{SegmentId, TraceId};

/// How an error counts in X-Ray's statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A server-side failure (`fault`, like an HTTP 5xx). The default.
    #[default]
    Fault,
    /// A client error (`error`, like an HTTP 4xx).
    Error,
    /// A throttled request (`throttle` and `error`, like an HTTP 429).
    Throttle,
}

impl ErrorKind {
    pub(crate) fn set_flags(self, r: &mut Record) {
        match self {
            ErrorKind::Fault => r.fault = true,
            ErrorKind::Error => r.error = true,
            ErrorKind::Throttle => {
                r.error = true;
                r.throttle = true;
            }
        }
    }
}

/// An open subsegment. It is the current subsegment (the parent of subsegments begun
/// after it) until it ends, which happens when it is dropped or [`end`](Self::end)ed.
///
/// When nothing is being traced (no invocation, `Sampled=0`, tracing disabled) the
/// guard is inert: every method is a cheap no-op.
#[must_use = "the subsegment ends when this guard is dropped"]
pub struct Subsegment {
    node: Option<Arc<Node>>,
    /// What was current when this guard was made; current again when it ends.
    previous: Option<Arc<Node>>,
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
/// characters.
///
/// In async code a guard stays current across `.await` within the same traced future;
/// to give an `async` block its own subsegment use [`FutureExt::in_subsegment`].
pub fn begin_subsegment(name: &str) -> Subsegment {
    let Some(parent) = context::current_if_sampled() else {
        if !context::has_current() {
            warn_no_context();
        }
        return Subsegment::inert();
    };
    match Node::child(&parent, name, false) {
        Some(node) => Subsegment::enter(node),
        None => Subsegment::inert(),
    }
}

impl Subsegment {
    fn inert() -> Self {
        Subsegment {
            node: None,
            previous: None,
        }
    }

    fn enter(node: Arc<Node>) -> Self {
        let previous = context::replace_current(Some(node.clone()));
        Subsegment {
            node: Some(node),
            previous,
        }
    }

    /// The subsegment's id, when it is being recorded.
    pub fn id(&self) -> Option<SegmentId> {
        self.node.as_ref().map(|n| n.id())
    }

    /// Whether this subsegment is being recorded (sampled and not yet ended).
    pub fn is_recording(&self) -> bool {
        self.node.as_ref().is_some_and(|n| n.is_recording())
    }

    /// Adds an annotation: indexed, searchable with filter expressions. Keys must be
    /// 1–500 ASCII letters, digits or underscores (others are dropped with a warning);
    /// strings are cut to 1000 characters; NaN and infinite floats are dropped.
    pub fn put_annotation(&self, key: &str, value: impl Into<AnnotationValue>) {
        if let Some(n) = self.node.as_ref().filter(|n| n.is_recording()) {
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
        if let Some(n) = &self.node {
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
        if let Some(n) = self.node.as_ref().filter(|n| n.is_recording()) {
            n.add_exceptions(
                exception::from_error(err, Some(exception::caller_frame(Location::caller()))),
                kind,
            );
        }
    }

    /// Sets the flag for `kind` without recording an exception.
    pub fn mark(&self, kind: ErrorKind) {
        if let Some(n) = &self.node {
            n.add_exceptions(Vec::new(), kind);
        }
    }

    pub(crate) fn node(&self) -> Option<&Node> {
        self.node.as_deref()
    }

    /// The trace header for a call made from inside this subsegment.
    pub fn trace_header(&self) -> Option<TraceHeader> {
        self.node.as_ref().map(|n| n.outgoing_header())
    }

    /// Ends the subsegment now and sends it.
    pub fn end(self) {}
}

impl Drop for Subsegment {
    fn drop(&mut self) {
        let Some(node) = self.node.take() else {
            return;
        };
        if std::thread::panicking() {
            node.record_panic(None);
        }
        context::restore_current_if(&node, self.previous.take());
        node.end();
    }
}

/// A top-level segment, for code that runs outside Lambda (tests, local tools, other
/// hosts). Inside Lambda, Lambda owns the segment and this handle is inert.
///
/// It derefs to [`Subsegment`] for annotations, metadata and errors.
#[must_use = "the segment ends when this guard is dropped"]
#[derive(Debug)]
pub struct Segment(Subsegment);

impl Segment {
    /// The trace this segment started, when it is being recorded.
    pub fn trace_id(&self) -> Option<TraceId> {
        self.0.trace_header().map(|h| h.root())
    }

    /// Ends the segment (and anything still open under it) and sends it.
    pub fn end(self) {}
}

impl Deref for Segment {
    type Target = Subsegment;
    fn deref(&self) -> &Subsegment {
        &self.0
    }
}

/// Starts a new trace with a segment named `name` and makes it current, so subsegments
/// begun under it are its children. Sent when it ends.
///
/// Inside Lambda (where `AWS_LAMBDA_FUNCTION_NAME` or `LAMBDA_TASK_ROOT` is set) this is
/// refused: Lambda owns the segment. It logs `Cannot create segments inside Lambda
/// function. Discarded.` once per process and returns an inert handle.
pub fn begin_segment(name: &str) -> Segment {
    if in_lambda() {
        static WARNED: AtomicBool = AtomicBool::new(false);
        if !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!("Cannot create segments inside Lambda function. Discarded.");
        }
        return Segment(Subsegment::inert());
    }
    let Some(emitter) = global_emitter() else {
        return Segment(Subsegment::inert());
    };
    let trace = Trace::new(TraceId::new(), "", Some(emitter));
    match Node::segment(trace, name) {
        Some(node) => Segment(Subsegment::enter(node)),
        None => Segment(Subsegment::inert()),
    }
}

fn in_lambda() -> bool {
    static IN_LAMBDA: OnceLock<bool> = OnceLock::new();
    *IN_LAMBDA.get_or_init(config::in_lambda)
}

/// The process-wide emitter for segments begun outside a Lambda invocation, from
/// `AWS_XRAY_DAEMON_ADDRESS`. `None` when tracing is disabled or the address is bad
/// (logged once).
pub(crate) fn global_emitter() -> Option<Arc<Emitter>> {
    static EMITTER: OnceLock<Option<Arc<Emitter>>> = OnceLock::new();
    EMITTER
        .get_or_init(|| {
            if !config::tracing_enabled() {
                return None;
            }
            crate::lambda::connect_emitter(config::daemon_address_from_env())
        })
        .clone()
}

/// Subsegments begun outside any trace are discarded; inside Lambda that means during
/// init, which deserves one log line (as the official SDKs give).
fn warn_no_context() {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.load(Ordering::Relaxed) && in_lambda() && !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!("subsegment begun outside an invocation (during init?) is discarded");
    }
}

/// Runs `f` on the current node if it is recording; converts nothing otherwise, so
/// calls without a sampled trace do not allocate.
fn with_current(f: impl FnOnce(&Node)) {
    if !context::has_current() {
        return;
    }
    if let Some(node) = context::current().filter(|n| n.is_recording()) {
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
/// Unsampled invocations give `Sampled=0` under the function segment. `None` outside
/// any trace.
pub fn current_trace_header() -> Option<TraceHeader> {
    context::current().map(|n| n.outgoing_header())
}

/// Extension methods that carry the trace through futures.
pub trait FutureExt: Future + Sized {
    /// Runs this future in a subsegment named `name`, opened when it is first polled
    /// (as a child of whatever is current then) and ended when it completes. A panic is
    /// recorded as a fault; dropping it unfinished ends the subsegment marked incomplete.
    fn in_subsegment(self, name: impl Into<Cow<'static, str>>) -> InSubsegment<Self> {
        InSubsegment {
            scope: Scope::lazy(self, name.into(), JustEnd),
        }
    }

    /// Runs this future under the subsegment that is current *now*: use it to carry the
    /// trace into `tokio::spawn`, whose tasks otherwise start with no trace.
    fn in_current_trace(self) -> InCurrentTrace<Self> {
        InCurrentTrace {
            scope: Scope::new(self, context::current(), None, JustEnd),
        }
    }
}

impl<F: Future> FutureExt for F {}

pin_project_lite::pin_project! {
    /// A future running in its own subsegment; see [`FutureExt::in_subsegment`].
    #[must_use = "futures do nothing unless polled"]
    #[derive(Debug)]
    pub struct InSubsegment<F> {
        #[pin]
        scope: Scope<F, JustEnd>,
    }
}

impl<F: Future> Future for InSubsegment<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().scope.poll(cx)
    }
}

pin_project_lite::pin_project! {
    /// A future carrying the trace it was made in; see [`FutureExt::in_current_trace`].
    #[must_use = "futures do nothing unless polled"]
    #[derive(Debug)]
    pub struct InCurrentTrace<F> {
        #[pin]
        scope: Scope<F, JustEnd>,
    }
}

impl<F: Future> Future for InCurrentTrace<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().scope.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::test_support::{by_name, within, Daemon};
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
        assert_eq!(
            context::current().map(|n| n.id()),
            None,
            "context restored after unwinding"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn futures_keep_their_own_context_across_threads() {
        let d = Daemon::new();
        let facade = d.facade(true);
        let work = async {
            let a = async {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                let _g = begin_subsegment("a_child");
                tokio::task::yield_now().await;
            }
            .in_subsegment("a");
            let b = async {
                tokio::task::yield_now().await;
                begin_subsegment("b_child").end();
            }
            .in_subsegment("b");
            tokio::join!(a, b);
            let spawned =
                tokio::spawn(async { begin_subsegment("spawned").end() }.in_current_trace());
            let orphan = tokio::spawn(async { begin_subsegment("orphan").is_recording() });
            spawned.await.unwrap();
            assert!(!orphan.await.unwrap());
        };
        InCurrentTrace {
            scope: Scope::new(work, Some(facade.clone()), None, JustEnd),
        }
        .await;
        let docs = d.documents();
        let fid = facade.id().to_string();
        let a = by_name(&docs, "a");
        let b = by_name(&docs, "b");
        assert_eq!(a["parent_id"], fid);
        assert_eq!(b["parent_id"], fid);
        assert_eq!(by_name(&docs, "a_child")["parent_id"], a["id"]);
        assert_eq!(by_name(&docs, "b_child")["parent_id"], b["id"]);
        assert_eq!(by_name(&docs, "spawned")["parent_id"], fid);
        assert_eq!(docs.len(), 5);
    }

    #[tokio::test]
    async fn dropped_futures_end_their_subsegment_marked() {
        let d = Daemon::new();
        let facade = d.facade(true);
        let mut slow = Box::pin(
            async {
                let _child = begin_subsegment("child");
                std::future::pending::<()>().await
            }
            .in_subsegment("slow"),
        );
        let wrapped = InCurrentTrace {
            scope: Scope::new(
                async {
                    let _ =
                        tokio::time::timeout(std::time::Duration::from_millis(10), &mut slow).await;
                },
                Some(facade.clone()),
                None,
                JustEnd,
            ),
        };
        wrapped.await;
        drop(slow);
        let docs = d.documents();
        let names: Vec<_> = docs.iter().map(|d| d["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["child", "slow"], "children are sent before parents");
        assert_eq!(
            by_name(&docs, "slow")["metadata"]["xray_lambda"]["incomplete"],
            "cancelled: future dropped before completion"
        );
    }
}
