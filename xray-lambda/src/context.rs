//! The trace context: one [`Trace`] per invocation (or local segment), a tree of
//! [`Node`]s in it, and the "current node" that code running right now works under.
//!
//! The current node lives in a thread-local slot, but it is owned by futures: every
//! traced future keeps its own slot and swaps it in for the duration of each `poll`
//! (see [`Scope`]), the way tokio's `task_local!` and tracing's `Instrumented` do. A poll
//! of one invocation therefore never sees another's node, whatever thread it runs on.

use std::any::Any;
use std::borrow::Cow;
use std::cell::Cell;
use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Instant;

use serde_json::value::RawValue;

use crate::document::{
    AnnotationValue, Cause, Exception, Kind, Record, INCOMPLETE_KEY, SDK_NAMESPACE,
};
use crate::emitter::Emitter;
use crate::exception;
use crate::header::{Sampling, TraceHeader};
use crate::id::{SegmentId, TraceId};
use crate::sanitize;

/// Why a subsegment was ended by something other than its own code.
pub(crate) const ENDED_AT_INVOCATION_END: &str = "still open when the handler returned";
pub(crate) const ENDED_BY_CANCELLATION: &str = "cancelled: future dropped before completion";
pub(crate) const ENDED_BY_DROP: &str = "abandoned: dropped without being ended";

/// Locks, recovering from poisoning: a panic elsewhere must not stop tracing here.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One trace as this process sees it: an invocation's, or a local segment's.
#[derive(Debug)]
pub(crate) struct Trace {
    root: TraceId,
    extra: String,
    /// `Some` exactly when the trace is sampled: unsampled traces send nothing.
    emitter: Option<Arc<Emitter>>,
    /// Nodes begun and not yet ended, so the end of an invocation can end them.
    open: Mutex<Vec<Weak<Node>>>,
}

impl Trace {
    pub(crate) fn new(root: TraceId, extra: &str, emitter: Option<Arc<Emitter>>) -> Arc<Self> {
        exception::install_panic_hook();
        Arc::new(Trace {
            root,
            extra: extra.to_owned(),
            emitter,
            open: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn is_sampled(&self) -> bool {
        self.emitter.is_some()
    }

    /// Ends every node still open except `keep`, deepest first, so children are sent
    /// before their parents.
    fn end_open_nodes(&self, keep: &Node, reason: &'static str) {
        let mut nodes: Vec<Arc<Node>> = std::mem::take(&mut *lock(&self.open))
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|n| !std::ptr::eq(&**n, keep))
            .collect();
        nodes.sort_by_key(|n| std::cmp::Reverse(n.depth));
        for n in nodes {
            n.end_with(Some(reason));
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NodeKind {
    /// Lambda's function segment, known only by id: never sent, never annotated.
    Facade,
    /// Sent when it ends. A root ends everything still open in its trace first.
    Sent { root: bool },
}

/// A segment or subsegment in a trace.
#[derive(Debug)]
pub(crate) struct Node {
    trace: Arc<Trace>,
    id: SegmentId,
    parent: Option<Arc<Node>>,
    depth: u32,
    kind: NodeKind,
    ended: AtomicBool,
    started: Instant,
    /// The document being built; taken when the node ends. `None` for a facade.
    record: Mutex<Option<Record>>,
    /// Errors the children recorded, as `(type, message, exception id)`: when the same
    /// error reaches this node, it refers to the child's exception instead of repeating it.
    from_children: Mutex<Vec<(String, String, SegmentId)>>,
}

impl Node {
    /// The facade for Lambda's function segment `id`.
    pub(crate) fn facade(trace: Arc<Trace>, id: SegmentId) -> Arc<Self> {
        Arc::new(Node {
            trace,
            id,
            parent: None,
            depth: 0,
            kind: NodeKind::Facade,
            ended: AtomicBool::new(false),
            started: Instant::now(),
            record: Mutex::new(None),
            from_children: Mutex::new(Vec::new()),
        })
    }

    /// A top-level segment (outside Lambda), the root of its own trace.
    pub(crate) fn segment(trace: Arc<Trace>, name: &str) -> Option<Arc<Self>> {
        Self::create(trace, None, name, Kind::Segment, true)
    }

    /// A subsegment under `parent` (or its nearest ancestor still open). `None` when the
    /// trace is not sampled. `root` marks the subsegment that stands for the whole
    /// invocation (the handler's).
    pub(crate) fn child(parent: &Arc<Node>, name: &str, root: bool) -> Option<Arc<Self>> {
        if !parent.trace.is_sampled() {
            return None;
        }
        let parent = parent.nearest_open();
        Self::create(
            parent.trace.clone(),
            Some(parent),
            name,
            Kind::Subsegment,
            root,
        )
    }

    fn create(
        trace: Arc<Trace>,
        parent: Option<Arc<Node>>,
        name: &str,
        kind: Kind,
        root: bool,
    ) -> Option<Arc<Self>> {
        trace.emitter.as_ref()?;
        let id = SegmentId::random();
        let record = Record::new(
            sanitize::sanitize_name(name).into_owned(),
            id,
            trace.root,
            parent.as_ref().map(|p| p.id),
            kind,
        );
        let node = Arc::new(Node {
            depth: parent.as_ref().map_or(0, |p| p.depth + 1),
            trace,
            id,
            parent,
            kind: NodeKind::Sent { root },
            ended: AtomicBool::new(false),
            started: Instant::now(),
            record: Mutex::new(Some(record)),
            from_children: Mutex::new(Vec::new()),
        });
        lock(&node.trace.open).push(Arc::downgrade(&node));
        Some(node)
    }

    /// This node, or the closest ancestor that has not ended (a guard moved elsewhere may
    /// have ended while still being some future's current node).
    fn nearest_open(self: &Arc<Self>) -> Arc<Node> {
        let mut n = self;
        while n.ended.load(Ordering::Acquire) {
            match &n.parent {
                Some(p) => n = p,
                None => break,
            }
        }
        n.clone()
    }

    pub(crate) fn id(&self) -> SegmentId {
        self.id
    }

    /// Whether calls on this node record anything.
    pub(crate) fn is_recording(&self) -> bool {
        matches!(self.kind, NodeKind::Sent { .. }) && !self.ended.load(Ordering::Acquire)
    }

    /// The header for a call made from code running under this node.
    pub(crate) fn outgoing_header(self: &Arc<Self>) -> TraceHeader {
        let (parent, sampling) = if self.trace.is_sampled() {
            (self.nearest_open().id, Sampling::Sampled)
        } else {
            (self.id, Sampling::NotSampled)
        };
        TraceHeader::from_parts(self.trace.root, Some(parent), sampling, &self.trace.extra)
    }

    /// Runs `f` on the document if the node is still recording.
    pub(crate) fn with_record(&self, f: impl FnOnce(&mut Record)) {
        if let Some(r) = lock(&self.record).as_mut() {
            f(r);
        }
    }

    pub(crate) fn put_annotation(&self, key: &str, value: AnnotationValue) {
        if !self.is_recording() {
            return;
        }
        if !sanitize::is_valid_annotation_key(key) {
            tracing::warn!(
                key,
                "annotation key must be 1-500 ASCII letters, digits or underscores; dropped"
            );
            return;
        }
        let value = match value {
            AnnotationValue::Float(f) if !f.is_finite() => {
                tracing::warn!(
                    key,
                    value = f,
                    "annotation value is not a finite number; dropped"
                );
                return;
            }
            AnnotationValue::String(s)
                if s.len() > sanitize::MAX_ANNOTATION_VALUE_CHARS
                    && s.chars().count() > sanitize::MAX_ANNOTATION_VALUE_CHARS =>
            {
                AnnotationValue::String(
                    sanitize::truncate_chars(&s, sanitize::MAX_ANNOTATION_VALUE_CHARS).to_owned(),
                )
            }
            v => v,
        };
        self.with_record(|r| r.annotations.insert(key, value));
    }

    pub(crate) fn put_metadata<T: serde::Serialize + ?Sized>(
        &self,
        namespace: &str,
        key: &str,
        value: &T,
    ) {
        if !self.is_recording() {
            return;
        }
        if sanitize::is_reserved_namespace(namespace) {
            tracing::warn!(
                namespace,
                key,
                "metadata namespaces starting with `AWS.` are reserved for AWS; dropped"
            );
            return;
        }
        match serde_json::value::to_raw_value(value) {
            Ok(raw) => self.put_raw_metadata(namespace, key, raw),
            Err(e) => {
                tracing::warn!(namespace, key, error = %e, "metadata value could not be serialized; dropped")
            }
        }
    }

    pub(crate) fn put_raw_metadata(&self, namespace: &str, key: &str, raw: Box<RawValue>) {
        self.with_record(|r| r.metadata.insert(namespace, key, raw));
    }

    /// Records an error given as its exceptions (outermost first) and sets the flag for
    /// `kind`. If a child already recorded the same error (same type and message), this
    /// node's cause is a reference to the child's exception, as the official SDKs do for
    /// an error that propagates; either way the parent learns of it in turn.
    pub(crate) fn add_exceptions(&self, exceptions: Vec<Exception>, kind: crate::ErrorKind) {
        if !self.is_recording() {
            return;
        }
        let Some(top) = exceptions.first() else {
            self.with_record(|r| kind.set_flags(r));
            return;
        };
        let same = |(t, m, _): &&(String, String, SegmentId)| *t == top.kind && *m == top.message;
        let from_child = lock(&self.from_children).iter().find(same).map(|c| c.2);
        let origin = (
            top.kind.clone(),
            top.message.clone(),
            from_child.unwrap_or(top.id),
        );
        self.with_record(|r| {
            kind.set_flags(r);
            match from_child {
                Some(id) if r.cause.is_none() => r.cause = Some(Cause::Ref(id)),
                Some(_) => {}
                None => r.add_exceptions(exceptions),
            }
        });
        if let Some(parent) = self.parent.as_ref().filter(|p| p.is_recording()) {
            lock(&parent.from_children).push(origin);
        }
    }

    /// Records the panic unwinding through this node as a fault. The first node to record
    /// a panic owns its exception; the nodes it then unwinds through refer to it by id,
    /// as the X-Ray console expects for an error that propagates.
    pub(crate) fn record_panic(&self, payload: Option<&(dyn Any + Send)>) {
        if !self.is_recording() {
            return;
        }
        let cause = match exception::recorded_panic_exception() {
            Some(id) => Cause::Ref(id),
            None => {
                let e = exception::from_panic(payload);
                exception::set_recorded_panic_exception(e.id);
                Cause::exceptions(vec![e])
            }
        };
        self.with_record(|r| {
            r.fault = true;
            if r.cause.is_none() {
                r.cause = Some(cause);
            }
        });
    }

    /// Ends and sends the node (once; later calls do nothing).
    pub(crate) fn end(&self) {
        self.end_with(None);
    }

    /// Ends the node, noting `incomplete` when something other than its own code ended it.
    pub(crate) fn end_with(&self, incomplete: Option<&'static str>) {
        let NodeKind::Sent { root } = self.kind else {
            return;
        };
        if self.ended.swap(true, Ordering::AcqRel) {
            return;
        }
        if root {
            self.trace.end_open_nodes(self, ENDED_AT_INVOCATION_END);
        } else {
            let mut open = lock(&self.trace.open);
            if let Some(i) = open.iter().position(|w| std::ptr::eq(w.as_ptr(), self)) {
                open.swap_remove(i);
            }
        }
        let Some(mut record) = lock(&self.record).take() else {
            return;
        };
        record.end_time = Some(record.start_time.after(self.started));
        if let Some(reason) = incomplete {
            if let Ok(v) = serde_json::value::to_raw_value(reason) {
                record.metadata.insert(SDK_NAMESPACE, INCOMPLETE_KEY, v);
            }
        }
        if let Some(emitter) = &self.trace.emitter {
            emitter.send(record);
        }
    }
}

impl Drop for Node {
    /// A node nobody ended (the state of an AWS call whose future was dropped, say) is
    /// sent now, marked, rather than lost.
    fn drop(&mut self) {
        if matches!(self.kind, NodeKind::Sent { .. }) && !*self.ended.get_mut() {
            self.end_with(Some(ENDED_BY_DROP));
        }
    }
}

thread_local! {
    static CURRENT: Cell<Option<Arc<Node>>> = const { Cell::new(None) };
}

/// The node code running now works under, if any.
pub(crate) fn current() -> Option<Arc<Node>> {
    CURRENT
        .try_with(|c| {
            let v = c.take();
            let out = v.clone();
            c.set(v);
            out
        })
        .ok()
        .flatten()
}

/// The current node if its trace is sampled. Checks in place, so the unsampled path
/// costs no reference-count traffic.
pub(crate) fn current_if_sampled() -> Option<Arc<Node>> {
    CURRENT
        .try_with(|c| {
            let v = c.take();
            let out = v.as_ref().filter(|n| n.trace.is_sampled()).cloned();
            c.set(v);
            out
        })
        .ok()
        .flatten()
}

/// Whether any trace context is active here; cheaper than [`current`] (no refcount).
pub(crate) fn has_current() -> bool {
    CURRENT
        .try_with(|c| {
            let v = c.take();
            let some = v.is_some();
            c.set(v);
            some
        })
        .unwrap_or(false)
}

/// Replaces the current node, returning the previous one.
pub(crate) fn replace_current(node: Option<Arc<Node>>) -> Option<Arc<Node>> {
    CURRENT.try_with(|c| c.replace(node)).ok().flatten()
}

/// Makes `node` current again only if `expected` is what is current now: a guard
/// dropped out of order, or on another thread, must not clobber someone else's node.
pub(crate) fn restore_current_if(expected: &Arc<Node>, node: Option<Arc<Node>>) {
    let _ = CURRENT.try_with(|c| {
        let now = c.take();
        match now {
            Some(n) if Arc::ptr_eq(&n, expected) => c.set(node),
            other => c.set(other),
        }
    });
}

/// Swaps a future's slot in as the current node, and back out when dropped (also when
/// the poll panics).
pub(crate) struct Entered<'a> {
    slot: &'a mut Option<Arc<Node>>,
    previous: Option<Arc<Node>>,
}

impl<'a> Entered<'a> {
    pub(crate) fn new(slot: &'a mut Option<Arc<Node>>) -> Self {
        let previous = replace_current(slot.take());
        Entered { slot, previous }
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        *self.slot = replace_current(self.previous.take());
    }
}

/// What a [`Scope`] does with its node when its future completes, before the node ends.
pub(crate) trait OnComplete<T> {
    fn on_complete(&mut self, node: &Node, output: &T);
}

/// Nothing: the node just ends.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct JustEnd;

impl<T> OnComplete<T> for JustEnd {
    fn on_complete(&mut self, _: &Node, _: &T) {}
}

pin_project_lite::pin_project! {
    /// A future that runs under its own current node, and (when it owns a subsegment)
    /// ends that subsegment when it completes, panics, or is dropped unfinished.
    #[derive(Debug)]
    pub(crate) struct Scope<F, H> {
        // `Option` so that `drop` can drop the inner future in place while its context
        // is current, before the subsegment ends (children are sent before parents).
        #[pin]
        inner: Option<F>,
        // Name of the subsegment to open at the first poll, under whatever is current then.
        pending_name: Option<Cow<'static, str>>,
        // Swapped in as the current node while `inner` runs.
        slot: Option<Arc<Node>>,
        // The subsegment this future owns and ends.
        node: Option<Arc<Node>>,
        hook: H,
    }

    impl<F, H> PinnedDrop for Scope<F, H> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            let entered = Entered::new(this.slot);
            this.inner.set(None);
            drop(entered);
            if let Some(node) = this.node.take() {
                node.end_with(Some(ENDED_BY_CANCELLATION));
            }
        }
    }
}

impl<F, H> Scope<F, H> {
    /// Runs `inner` under `context`, ending `node` (if any) when it completes.
    pub(crate) fn new(
        inner: F,
        context: Option<Arc<Node>>,
        node: Option<Arc<Node>>,
        hook: H,
    ) -> Self {
        Scope {
            inner: Some(inner),
            pending_name: None,
            slot: context,
            node,
            hook,
        }
    }

    /// Runs `inner` in a subsegment named `name`, opened at the first poll.
    pub(crate) fn lazy(inner: F, name: Cow<'static, str>, hook: H) -> Self {
        Scope {
            inner: Some(inner),
            pending_name: Some(name),
            slot: None,
            node: None,
            hook,
        }
    }
}

impl<F: Future, H: OnComplete<F::Output>> Future for Scope<F, H> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        if let Some(name) = this.pending_name.take() {
            *this.node = current_if_sampled().and_then(|p| Node::child(&p, &name, false));
            *this.slot = match this.node {
                Some(n) => Some(n.clone()),
                None => current(),
            };
        }
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            // Polled after completion: a caller bug, but not one to panic over here.
            return Poll::Pending;
        };
        let entered = Entered::new(this.slot);
        let polled = catch_unwind(AssertUnwindSafe(|| inner.poll(cx)));
        drop(entered);
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => {
                if let Some(node) = this.node.take() {
                    this.hook.on_complete(&node, &output);
                    node.end();
                }
                Poll::Ready(output)
            }
            Err(payload) => {
                if let Some(node) = this.node.take() {
                    node.record_panic(Some(&*payload));
                    node.end();
                }
                resume_unwind(payload)
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! A sampled trace whose documents go to a real UDP socket the test reads.
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    pub(crate) struct Daemon {
        socket: UdpSocket,
        pub emitter: Arc<Emitter>,
    }

    impl Daemon {
        pub(crate) fn new() -> Self {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            socket
                .set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let emitter = Arc::new(Emitter::connect(socket.local_addr().unwrap()).unwrap());
            Daemon { socket, emitter }
        }

        /// A facade for a sampled (or not) invocation, like Lambda's function segment.
        pub(crate) fn facade(&self, sampled: bool) -> Arc<Node> {
            let emitter = sampled.then(|| self.emitter.clone());
            let trace = Trace::new(TraceId::new(), "Lineage=a87bd80c:0", emitter);
            Node::facade(trace, SegmentId::random())
        }

        pub(crate) fn address(&self) -> String {
            self.socket.local_addr().unwrap().to_string()
        }

        /// Every document received until the socket stays quiet, each checked against
        /// the schema.
        pub(crate) fn documents(&self) -> Vec<serde_json::Value> {
            let mut out = Vec::new();
            let mut buf = vec![0u8; 70_000];
            while let Ok(n) = self.socket.recv(&mut buf) {
                out.push(parse_datagram(&buf[..n]));
            }
            out
        }
    }

    /// The document in a datagram, after checking the header line and the schema.
    pub(crate) fn parse_datagram(datagram: &[u8]) -> serde_json::Value {
        let text = std::str::from_utf8(datagram).unwrap();
        let (header, body) = text.split_once('\n').unwrap();
        assert_eq!(header, r#"{"format":"json","version":1}"#);
        let doc: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_valid(&doc);
        doc
    }

    /// Panics unless `doc` is valid against AWS's segment-document schema.
    pub(crate) fn assert_valid(doc: &serde_json::Value) {
        static VALIDATOR: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
        let v = VALIDATOR.get_or_init(|| {
            let schema = serde_json::from_str(include_str!(
                "../../schema/xray-segmentdocument-schema-v1.0.0.json"
            ))
            .unwrap();
            jsonschema::draft4::new(&schema).unwrap()
        });
        let errors: Vec<String> = v
            .iter_errors(doc)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "invalid document {doc}: {errors:?}");
    }

    /// Runs `f` with `node` current, as a traced future's poll would.
    pub(crate) fn within<R>(node: &Arc<Node>, f: impl FnOnce() -> R) -> R {
        let mut slot = Some(node.clone());
        let _entered = Entered::new(&mut slot);
        f()
    }

    pub(crate) fn by_name<'a>(docs: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
        docs.iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("no document named {name} in {docs:#?}"))
    }
}
