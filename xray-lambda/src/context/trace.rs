//! One trace as this process sees it: an invocation's, or a segment's begun here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

use crate::document::Clock;
use crate::emitter::Emitter;
use crate::header::{Sampling, TraceHeader};
use crate::id::{SegmentId, TraceId};

use super::node::Node;
use super::nodes::{Ending, Nodes, Opening};

/// Locks, recovering from poisoning: a panic elsewhere must not stop tracing here.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A trace: its id, what its header passes on, and whether (and where) its documents
/// are sent.
#[derive(Debug)]
pub(crate) struct Trace {
    root: TraceId,
    extra: String,
    /// The sampling decision this trace propagates. A sampled trace whose documents
    /// cannot be sent (tracing disabled, no usable daemon) still propagates it, so
    /// the services it calls stay in the trace.
    sampled: bool,
    /// `Some` exactly when documents are recorded and sent.
    emitter: Option<Arc<Emitter>>,
    /// Where the times of its documents come from.
    clock: Clock,
    /// Set when the trace's root node ended: nothing begun after that is recorded in it.
    closed: AtomicBool,
    /// Its nodes begun and not yet ended, with their documents and finished children:
    /// under one lock, so that beginning a subsegment takes it once, and so does
    /// ending one (taking its document, nesting it in its parent's).
    nodes: Mutex<Nodes>,
    /// Past this many pending subsegments, the largest subtrees are sent early.
    pub(super) streaming_threshold: usize,
    /// Held for every send, so sends of one trace happen in order.
    pub(super) emission: Mutex<()>,
    /// The node made current last, on any thread, while [`FOLLOW_CURRENT`] is set.
    last_current: Mutex<Weak<Node>>,
}

/// Set when something needs to know what a trace's code works under from another
/// thread, which only [`Trace::last_current`] can tell: the `tracing` layer, for threads
/// that run work on behalf of an invocation (sqlx's SQLite worker) and know nothing but
/// the span current when the work was handed to them.
static FOLLOW_CURRENT: AtomicBool = AtomicBool::new(false);

/// Starts keeping [`Trace::last_current`] up to date.
#[cfg(feature = "tracing-layer")]
pub(crate) fn follow_current() {
    FOLLOW_CURRENT.store(true, Ordering::Relaxed);
}

/// Notes that `node` is current now, when someone follows that.
#[inline]
pub(super) fn note_current(node: &Arc<Node>) {
    if FOLLOW_CURRENT.load(Ordering::Relaxed) && node.trace().is_recording() {
        *lock(&node.trace().last_current) = Arc::downgrade(node);
    }
}

impl Trace {
    /// A trace under `root`, propagating `extra` (the incoming header's other fields).
    /// `emitter` is used only when the trace is sampled; finished subtrees are sent
    /// early past `streaming_threshold` pending subsegments.
    pub(crate) fn new(
        root: TraceId,
        extra: &str,
        sampled: bool,
        emitter: Option<Arc<Emitter>>,
        streaming_threshold: usize,
    ) -> Arc<Self> {
        crate::panic::install_hook();
        Arc::new(Trace {
            root,
            extra: extra.to_owned(),
            sampled,
            emitter: emitter.filter(|_| sampled),
            clock: Clock::new(),
            closed: AtomicBool::new(false),
            nodes: Mutex::new(Nodes::default()),
            streaming_threshold,
            emission: Mutex::new(()),
            last_current: Mutex::new(Weak::new()),
        })
    }

    pub(super) fn emitter(&self) -> Option<&Emitter> {
        self.emitter.as_deref()
    }

    pub(super) fn clock(&self) -> &Clock {
        &self.clock
    }

    pub(crate) fn root(&self) -> TraceId {
        self.root
    }

    /// Whether documents are recorded and sent.
    pub(crate) fn is_recording(&self) -> bool {
        self.emitter.is_some()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The node most recently made current in this trace, on any thread (or its nearest
    /// open ancestor); `None` unless [`follow_current`] was called before.
    #[cfg(feature = "tracing-layer")]
    pub(crate) fn last_current(&self) -> Option<Arc<Node>> {
        lock(&self.last_current).upgrade()?.nearest_open()
    }

    /// The header for a call made under `parent`.
    pub(crate) fn header(&self, parent: SegmentId) -> TraceHeader {
        let sampling = if self.sampled {
            Sampling::Sampled
        } else {
            Sampling::NotSampled
        };
        TraceHeader::from_parts(self.root, Some(parent), sampling, &self.extra)
    }

    /// Registers a node being created, unless the trace is closed. The slot it gives
    /// back finds it again in O(1).
    #[inline]
    pub(super) fn register(&self, opening: Opening) -> Option<u32> {
        let mut nodes = lock(&self.nodes);
        if self.is_closed() {
            return None;
        }
        Some(nodes.insert(opening, self.root))
    }

    /// The open nodes' documents and finished children. Nothing that could end or drop
    /// a node may run while this is held: ending one takes it.
    pub(super) fn nodes(&self) -> MutexGuard<'_, Nodes> {
        lock(&self.nodes)
    }

    /// What the trace holds, waiting to be nested.
    #[cfg(test)]
    pub(super) fn pending(&self) -> super::nodes::Pending {
        lock(&self.nodes).pending
    }

    /// Closes the trace, ending every node still open but `root` (deepest first, so
    /// children are nested in their parents), noting `incomplete`; gives what ending
    /// them left to send.
    pub(super) fn close(&self, root: SegmentId, incomplete: &'static str) -> Vec<Ending> {
        let mut nodes = lock(&self.nodes);
        self.closed.store(true, Ordering::Release);
        let end = self.clock.timestamp(Instant::now());
        nodes.end_all_but(root, end, incomplete, self.bounds(1, 1))
    }
}
