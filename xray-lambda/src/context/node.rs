//! A segment or subsegment of a trace: its document while it is open, how it records
//! errors and panics, and how it ends.

use std::any::Any;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::document::{
    AnnotationValue, Cause, Children, ErrorKind, Exception, Key, Kind, MetadataValue, Name, Record,
};
use crate::header::TraceHeader;
use crate::id::SegmentId;
use crate::{panic, sanitize};

use super::nodes::Opening;
use super::trace::Trace;

/// Why a subsegment was ended by something other than its own code.
pub(crate) const ENDED_AT_INVOCATION_END: &str = "still open when the handler returned";
pub(crate) const ENDED_BY_CANCELLATION: &str = "cancelled: future dropped before completion";
pub(crate) const ENDED_BY_DROP: &str = "abandoned: dropped without being ended";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NodeKind {
    /// Lambda's function segment, known only by id: never sent, never annotated. It
    /// lasts as long as its trace is open.
    Facade,
    /// The node that stands for the whole trace (the handler's subsegment, a segment
    /// begun here): its end ends everything still open and closes the trace.
    Root,
    /// Any other subsegment.
    Child,
}

/// A segment or subsegment in a trace.
#[derive(Debug)]
pub(crate) struct Node {
    pub(super) trace: Arc<Trace>,
    id: SegmentId,
    pub(super) parent: Option<Arc<Node>>,
    depth: u32,
    pub(super) kind: NodeKind,
    ended: AtomicBool,
    /// Where the trace holds its state while it is open.
    slot: u32,
    /// The exception id of a panic that unwound through a child of this node (0: none),
    /// so that this node, unwinding next, refers to it instead of recording it again.
    child_panic: AtomicU64,
}

/// What the trace holds for a node while it is open.
#[derive(Debug)]
pub(super) struct State {
    /// The document being built.
    pub(super) record: Record,
    /// The children that ended, encoded, waiting to be nested in this node's document.
    pub(super) children: Children,
    /// Errors the children recorded: when the same error reaches this node, it refers
    /// to the child's exception instead of repeating it.
    child_errors: ErrorOrigins,
}

impl State {
    pub(super) fn new(record: Record) -> Self {
        State {
            record,
            children: Children::default(),
            child_errors: ErrorOrigins::default(),
        }
    }

    /// Empties it for a new node, keeping what it can reuse; gives the record, to be
    /// [`Record::reset`].
    pub(super) fn clear(&mut self) -> &mut Record {
        self.children.recycle();
        self.child_errors.clear();
        &mut self.record
    }
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
            slot: u32::MAX,
            child_panic: AtomicU64::new(0),
        })
    }

    /// A top-level segment, the root of its own trace, continuing the caller's segment
    /// `caller` when there is one. `None` when the trace does not record.
    pub(crate) fn segment(
        trace: Arc<Trace>,
        name: Name,
        caller: Option<SegmentId>,
    ) -> Option<Arc<Self>> {
        if !trace.is_recording() {
            return None;
        }
        let node = Self::create(
            trace,
            None,
            name,
            Kind::Segment,
            NodeKind::Root,
            Instant::now(),
        )?;
        if caller.is_some() {
            node.with_record(|r| r.parent_id = caller);
        }
        Some(node)
    }

    /// A subsegment under `parent`, or under its nearest ancestor still open (a guard
    /// moved elsewhere may have ended while still some future's current node). `None`
    /// when the trace does not record, or has ended. `root` marks the subsegment that
    /// stands for the whole invocation (the handler's).
    pub(crate) fn child(parent: Arc<Node>, name: Name, root: bool) -> Option<Arc<Self>> {
        Self::child_since(parent, name, root, Instant::now())
    }

    /// [`Self::child`] for work that began at `started` (reported once it is over, like
    /// a database query).
    pub(crate) fn child_since(
        parent: Arc<Node>,
        name: Name,
        root: bool,
        started: Instant,
    ) -> Option<Arc<Self>> {
        if !parent.trace.is_recording() {
            return None;
        }
        let parent = if parent.is_open() {
            parent
        } else {
            parent.nearest_open()?
        };
        if !std::thread::panicking() {
            // Code runs normally inside `parent` again: a panic that unwound through
            // one of its children earlier was caught, and is over.
            panic::forget_finished();
            if parent.child_panic.load(Ordering::Relaxed) != 0 {
                parent.child_panic.store(0, Ordering::Relaxed);
            }
        }
        let kind = if root {
            NodeKind::Root
        } else {
            NodeKind::Child
        };
        Self::create(
            parent.trace.clone(),
            Some(parent),
            name,
            Kind::Subsegment,
            kind,
            started,
        )
    }

    fn create(
        trace: Arc<Trace>,
        parent: Option<Arc<Node>>,
        name: Name,
        document_kind: Kind,
        kind: NodeKind,
        started: Instant,
    ) -> Option<Arc<Self>> {
        let id = SegmentId::random();
        let depth = parent.as_ref().map_or(0, |p| p.depth + 1);
        // A closed trace takes no new node.
        let slot = trace.register(Opening {
            id,
            parent: parent
                .as_ref()
                .filter(|p| p.kind != NodeKind::Facade)
                .map(|p| (p.slot, p.id)),
            depth,
            started,
            name: sanitize::sanitize_name(name),
            parent_id: parent.as_ref().map(|p| p.id),
            kind: document_kind,
            start_time: trace.clock().timestamp(started),
        })?;
        Some(Arc::new(Node {
            depth,
            trace,
            id,
            parent,
            kind,
            ended: AtomicBool::new(false),
            slot,
            child_panic: AtomicU64::new(0),
        }))
    }

    /// This node if it is open, else its closest ancestor that is; `None` when the
    /// whole trace has ended.
    pub(crate) fn nearest_open(self: &Arc<Self>) -> Option<Arc<Node>> {
        let mut n = self;
        loop {
            if n.is_open() {
                return Some(n.clone());
            }
            n = n.parent.as_ref()?;
        }
    }

    /// Where the trace holds its state while it is open.
    pub(super) fn slot(&self) -> u32 {
        self.slot
    }

    pub(crate) fn id(&self) -> SegmentId {
        self.id
    }

    pub(crate) fn trace(&self) -> &Arc<Trace> {
        &self.trace
    }

    /// Whether code may still work under this node. The end of its trace ends every
    /// node in it.
    pub(crate) fn is_open(&self) -> bool {
        match self.kind {
            NodeKind::Facade => !self.trace.is_closed(),
            NodeKind::Root | NodeKind::Child => {
                !self.ended.load(Ordering::Acquire) && !self.trace.is_closed()
            }
        }
    }

    /// Whether calls on this node record anything.
    pub(crate) fn is_recording(&self) -> bool {
        self.kind != NodeKind::Facade && self.is_open()
    }

    /// The node's name, for messages about it.
    pub(crate) fn name(&self) -> String {
        self.with_state(|s| s.record.name.to_string())
            .unwrap_or_default()
    }

    /// The header for a call made from code running under this node: `Parent` is the
    /// nearest open subsegment when the trace records, else the function segment.
    pub(crate) fn outgoing_header(self: &Arc<Self>) -> TraceHeader {
        let parent = if self.trace.is_recording() {
            self.nearest_open().map_or(self.id, |n| n.id)
        } else {
            self.id
        };
        self.trace.header(parent)
    }

    /// Runs `f` on the document if the node is still recording.
    pub(crate) fn with_record(&self, f: impl FnOnce(&mut Record)) {
        self.with_state(|s| f(&mut s.record));
    }

    /// Runs `f` on what the trace holds for the node, while it is open.
    fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> Option<R> {
        if self.kind == NodeKind::Facade {
            return None;
        }
        self.trace.nodes().get_mut(self.slot, self.id).map(f)
    }

    pub(crate) fn put_annotation(&self, key: impl Key, value: AnnotationValue) {
        if !self.is_recording() {
            return;
        }
        if !sanitize::is_valid_annotation_key(key.as_str()) {
            tracing::warn!(
                key = key.as_str(),
                "annotation key must be 1-500 ASCII letters, digits or underscores; dropped"
            );
            return;
        }
        let value = match value {
            AnnotationValue::Float(f) if !f.is_finite() => {
                tracing::warn!(
                    key = key.as_str(),
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

    pub(crate) fn put_raw_metadata(
        &self,
        namespace: impl Key,
        key: impl Key,
        value: impl Into<MetadataValue>,
    ) {
        self.with_record(|r| r.metadata.insert(namespace, key, value));
    }

    /// Records an error given as its exceptions (outermost first) and sets the flag for
    /// `kind`. If a child already recorded the same error (same type and message), this
    /// node's cause is a reference to the child's exception, as the official SDKs do for
    /// an error that propagates; either way the parent learns of it in turn.
    pub(crate) fn add_exceptions(&self, exceptions: Vec<Exception>, kind: ErrorKind) {
        if !self.is_recording() {
            return;
        }
        let Some(top) = exceptions.first() else {
            self.with_record(|r| kind.set_flags(r));
            return;
        };
        let key = ErrorOrigins::key(&top.kind, &top.message);
        let origin = top.id;
        let mut nodes = self.trace.nodes();
        let Some(state) = nodes.get_mut(self.slot, self.id) else {
            return;
        };
        let from_child = state.child_errors.get(key);
        let r = &mut state.record;
        kind.set_flags(r);
        match from_child {
            Some(id) if r.cause.is_none() => r.cause = Some(Box::new(Cause::Ref(id))),
            Some(_) => {}
            None => r.add_exceptions(exceptions),
        }
        if let Some(parent) = self.parent.as_ref() {
            if let Some(state) = nodes.get_mut(parent.slot, parent.id) {
                state.child_errors.insert(key, from_child.unwrap_or(origin));
            }
        }
    }

    /// Records the panic unwinding through this node as a fault. The first node a panic
    /// unwinds through records its exception; each node it unwinds through next refers
    /// to that exception by id, as the X-Ray console expects for an error that
    /// propagates. `payload` is the panic's, when the caller caught it.
    pub(crate) fn record_panic(&self, payload: Option<&(dyn Any + Send)>) {
        if !self.is_recording() {
            return;
        }
        let from_child = SegmentId::from_u64(self.child_panic.swap(0, Ordering::Relaxed));
        let (cause, id) = match from_child {
            Some(id) => (Cause::Ref(id), id),
            None => {
                let e = panic::exception(payload);
                let id = e.id;
                (Cause::exceptions(vec![e]), id)
            }
        };
        self.with_record(|r| {
            r.fault = true;
            if r.cause.is_none() {
                r.cause = Some(Box::new(cause));
            }
        });
        if let Some(parent) = &self.parent {
            parent.child_panic.store(id.get(), Ordering::Relaxed);
        }
    }

    /// Ends and sends the node (once; later calls do nothing).
    pub(crate) fn end(&self) {
        self.end_with(None);
    }

    /// Ends the node, noting `incomplete` when something other than its own code ended
    /// it. A root ends everything still open in its trace first.
    pub(crate) fn end_with(&self, incomplete: Option<&'static str>) {
        match self.kind {
            NodeKind::Facade => {}
            NodeKind::Root => {
                if self.ended.swap(true, Ordering::AcqRel) {
                    return;
                }
                for ending in self.trace.close(self.id, ENDED_AT_INVOCATION_END) {
                    self.trace.deliver(ending);
                }
                self.finish(self.trace.nodes(), incomplete);
            }
            NodeKind::Child => {
                // Marked ended under the lock its end takes anyway.
                let nodes = self.trace.nodes();
                if self.ended.load(Ordering::Acquire) {
                    return;
                }
                self.ended.store(true, Ordering::Release);
                self.finish(nodes, incomplete);
            }
        }
    }

    /// Ends the node without sending it: it turned out to stand for nothing (an AWS
    /// request that was presigned, not sent). A node that already holds finished
    /// children is ended and sent as usual instead, so that they are not lost.
    #[cfg(feature = "aws-sdk")]
    pub(crate) fn discard(&self) {
        if self.kind != NodeKind::Child {
            return;
        }
        let mut nodes = self.trace.nodes();
        if self.ended.swap(true, Ordering::AcqRel) {
            return;
        }
        if !nodes.discard(self.slot(), self.id()) {
            self.finish(nodes, None);
        }
    }

    /// Sends the node marked abandoned if nobody ended it.
    fn end_abandoned(&mut self) {
        if self.kind != NodeKind::Facade && !*self.ended.get_mut() {
            self.end_with(Some(ENDED_BY_DROP));
        }
    }
}

impl Drop for Node {
    /// A node nobody ended (the state of an AWS call whose future was dropped, say) is
    /// sent now, marked, rather than lost.
    fn drop(&mut self) {
        self.end_abandoned();
        // Release the ancestors one by one: a chain of ended nodes held only by this one
        // (guards dropped outermost first) would otherwise be dropped recursively, one
        // stack frame per level.
        let mut next = self.parent.take();
        while let Some(p) = next {
            next = Arc::into_inner(p).and_then(|mut n| {
                n.end_abandoned();
                n.parent.take()
            });
        }
    }
}

/// Where the errors children recorded came from: `(type, message)` → the exception id,
/// found in O(1). Bounded, since a long-lived parent can see any number of them.
#[derive(Debug, Default)]
struct ErrorOrigins(HashMap<u64, SegmentId, BuildHasherDefault<PreHashed>>);

impl ErrorOrigins {
    /// More distinct errors than this from one node's children are not remembered: a
    /// later propagation of one of them is then recorded in full again.
    const MAX: usize = 1024;

    fn key(kind: &str, message: &str) -> u64 {
        let mut h = DefaultHasher::new();
        kind.hash(&mut h);
        message.hash(&mut h);
        h.finish()
    }

    fn get(&self, key: u64) -> Option<SegmentId> {
        self.0.get(&key).copied()
    }

    fn clear(&mut self) {
        if !self.0.is_empty() {
            self.0.clear();
        }
    }

    fn insert(&mut self, key: u64, id: SegmentId) {
        if self.0.len() < Self::MAX || self.0.contains_key(&key) {
            self.0.insert(key, id);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// The keys of [`ErrorOrigins`] are hashes already.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::test_support::{within, Daemon};
    use crate::exception;

    #[test]
    fn child_errors_are_remembered_in_bounded_space() {
        let d = Daemon::new();
        let facade = d.facade(true);
        let parent = |name: &'static str| {
            let parent = Node::child(facade.clone(), name.into(), false).unwrap();
            for i in 0..(ErrorOrigins::MAX + 500) {
                let child = Node::child(parent.clone(), "child".into(), false).unwrap();
                child.add_exceptions(
                    exception::from_text("E", format!("error {i}"), None),
                    ErrorKind::Fault,
                );
            }
            let errors = parent.with_state(|s| s.child_errors.len());
            assert_eq!(errors, Some(ErrorOrigins::MAX));
            parent
        };
        let cause_of = |n: &Node, message: String| {
            n.add_exceptions(exception::from_text("E", message, None), ErrorKind::Fault);
            n.with_state(|s| s.record.cause.clone())
                .flatten()
                .map(|c| *c)
                .unwrap()
        };
        // The first errors are referred to by id; those past the bound are recorded again.
        let early = parent("early");
        assert!(matches!(cause_of(&early, "error 3".into()), Cause::Ref(_)));
        let late = parent("late");
        let late_cause = cause_of(&late, format!("error {}", ErrorOrigins::MAX + 100));
        assert!(matches!(late_cause, Cause::Exceptions { .. }));
    }

    /// A node opened in the slot an ended one left starts from nothing of it.
    #[test]
    fn a_reused_slot_keeps_nothing_of_its_last_node() {
        let d = Daemon::new();
        let facade = d.facade(true);
        let root = Node::child(facade.clone(), "## handler".into(), true).unwrap();
        let first = Node::child(root.clone(), "first".into(), false).unwrap();
        let grandchild = Node::child(first.clone(), "grandchild".into(), false).unwrap();
        grandchild.add_exceptions(
            exception::from_text("E", "m".into(), None),
            ErrorKind::Fault,
        );
        grandchild.end();
        first.put_annotation("k", AnnotationValue::Bool(true));
        first.put_raw_metadata("ns", "key", AnnotationValue::Int(1));
        first.add_exceptions(
            exception::from_text("E", "m".into(), None),
            ErrorKind::Error,
        );
        first.with_record(|r| r.namespace = Some("remote"));
        first.end();
        let second = Node::child(root.clone(), "second".into(), false).unwrap();
        assert_eq!(second.slot, first.slot, "the slot is reused");
        second.add_exceptions(
            exception::from_text("E", "m".into(), None),
            ErrorKind::Fault,
        );
        second.end();
        root.end();
        let docs = d.documents();
        let second = docs.iter().find(|d| d["name"] == "second").unwrap();
        let fields: Vec<&str> = second
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            fields,
            [
                "cause",
                "end_time",
                "fault",
                "id",
                "name",
                "parent_id",
                "start_time",
                "trace_id",
                "type"
            ],
            "{second:#}"
        );
        assert!(
            second["cause"]["exceptions"][0]["message"] == "m",
            "its own error, recorded in full: no child of its had it"
        );
    }

    #[test]
    fn a_closed_trace_takes_no_new_nodes() {
        let d = Daemon::new();
        let facade = d.facade(true);
        let root = Node::child(facade.clone(), "## handler".into(), true).unwrap();
        let open = Node::child(root.clone(), "open".into(), false).unwrap();
        root.end();
        assert!(!open.is_open(), "the root's end ends what is open");
        assert!(!facade.is_open(), "and closes the trace");
        assert!(Node::child(open.clone(), "late".into(), false).is_none());
        assert!(Node::child(facade.clone(), "late".into(), false).is_none());
        within(&facade, || {
            assert!(!crate::begin_subsegment("late").is_recording());
        });
        let names: Vec<_> = d.documents().iter().map(|d| d["name"].clone()).collect();
        assert_eq!(names, ["open", "## handler"]);
    }

    /// A discarded node is never sent and frees its slot; one that already holds
    /// finished children is ended as usual rather than lose them.
    #[cfg(feature = "aws-sdk")]
    #[test]
    fn a_discarded_node_is_not_sent_unless_it_holds_children() {
        let d = Daemon::new();
        let facade = d.facade(true);
        let root = Node::child(facade.clone(), "## handler".into(), true).unwrap();
        let presigned = Node::child(root.clone(), "presigned".into(), false).unwrap();
        presigned.discard();
        assert!(!presigned.is_open());
        presigned.end();
        let next = Node::child(root.clone(), "next".into(), false).unwrap();
        assert_eq!(next.slot, presigned.slot, "the slot is free again");
        next.end();
        let parent = Node::child(root.clone(), "parent".into(), false).unwrap();
        Node::child(parent.clone(), "child".into(), false)
            .unwrap()
            .end();
        parent.discard();
        root.end();
        let names: Vec<_> = d.documents().iter().map(|d| d["name"].clone()).collect();
        assert_eq!(names, ["next", "child", "parent", "## handler"]);
    }
}
