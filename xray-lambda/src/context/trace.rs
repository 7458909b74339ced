//! One trace as this process sees it: an invocation's, or a segment's begun here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::document::Clock;
use crate::emitter::Emitter;
use crate::header::{Sampling, TraceHeader};
use crate::id::{SegmentId, TraceId};

use super::node::Node;

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
    /// Nodes begun and not yet ended, so the root's end can end them, and what is held
    /// for the trace: kept under one lock, so a node's end takes it once.
    open: Mutex<OpenNodes>,
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
            open: Mutex::new(OpenNodes::default()),
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
    /// back makes [`Self::unregister`] O(1).
    pub(super) fn register(&self, node: Weak<Node>) -> Option<u32> {
        let mut open = lock(&self.open);
        if self.is_closed() {
            return None;
        }
        Some(open.insert(node))
    }

    /// Notes that the node in `slot` (if any) ended, and that what is held for the
    /// trace changed by `change`; gives whether it now holds more than `bound`.
    pub(super) fn settle(&self, slot: Option<u32>, change: Pending, bound: Pending) -> bool {
        let mut open = lock(&self.open);
        if let Some(slot) = slot {
            open.remove(slot);
        }
        open.pending = open.pending.plus(change);
        open.pending.exceeds(bound)
    }

    /// What the trace holds, waiting to be nested.
    pub(super) fn pending(&self) -> Pending {
        lock(&self.open).pending
    }

    /// The nodes open now.
    pub(super) fn open_nodes(&self) -> Vec<Arc<Node>> {
        lock(&self.open).nodes()
    }

    /// Closes the trace and gives the nodes still open, deepest first (so children are
    /// ended, and sent, before their parents).
    pub(super) fn close(&self) -> Vec<Arc<Node>> {
        let drained = {
            let mut open = lock(&self.open);
            self.closed.store(true, Ordering::Release);
            open.drain()
        };
        let mut nodes: Vec<Arc<Node>> = drained.iter().filter_map(Weak::upgrade).collect();
        nodes.sort_by_key(|n| std::cmp::Reverse(n.depth()));
        nodes
    }
}

/// The open nodes of a trace (a slab, so a node leaves it in O(1) by its slot), and the
/// size of the finished subtrees they hold.
#[derive(Debug, Default)]
struct OpenNodes {
    slots: Vec<Option<Weak<Node>>>,
    free: Vec<u32>,
    pending: Pending,
}

/// Finished subtrees held to be nested, or a change to them: bytes and subsegments.
/// Signed, as changes made on different threads may be counted in either order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Pending {
    pub(super) bytes: isize,
    pub(super) count: isize,
}

impl Pending {
    pub(super) fn new(bytes: usize, count: usize) -> Self {
        let signed = |n: usize| isize::try_from(n).unwrap_or(isize::MAX);
        Pending {
            bytes: signed(bytes),
            count: signed(count),
        }
    }

    fn plus(self, other: Pending) -> Pending {
        Pending {
            bytes: self.bytes.saturating_add(other.bytes),
            count: self.count.saturating_add(other.count),
        }
    }

    pub(super) fn minus(self, other: Pending) -> Pending {
        Pending {
            bytes: self.bytes.saturating_sub(other.bytes),
            count: self.count.saturating_sub(other.count),
        }
    }

    /// Over `bound` in bytes or in subsegments.
    pub(super) fn exceeds(self, bound: Pending) -> bool {
        self.bytes > bound.bytes || self.count > bound.count
    }
}

impl OpenNodes {
    fn insert(&mut self, node: Weak<Node>) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(node);
                i
            }
            None => {
                self.slots.push(Some(node));
                (self.slots.len() - 1) as u32
            }
        }
    }

    fn remove(&mut self, slot: u32) {
        if let Some(s) = self.slots.get_mut(slot as usize) {
            if s.take().is_some() {
                self.free.push(slot);
            }
        }
    }

    fn nodes(&self) -> Vec<Arc<Node>> {
        self.slots
            .iter()
            .flatten()
            .filter_map(Weak::upgrade)
            .collect()
    }

    fn drain(&mut self) -> Vec<Weak<Node>> {
        self.free.clear();
        self.slots.drain(..).flatten().collect()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_and_removal_is_by_slot() {
        let mut open = OpenNodes::default();
        let a = open.insert(Weak::new());
        let b = open.insert(Weak::new());
        let c = open.insert(Weak::new());
        open.remove(b);
        open.remove(b); // twice: no effect
        assert_eq!(open.len(), 2);
        assert_eq!(open.insert(Weak::new()), b, "a freed slot is reused");
        open.remove(a);
        open.remove(c);
        assert_eq!(open.len(), 1);
        assert_eq!(open.drain().len(), 1);
        open.remove(c); // after a drain: no effect
        assert_eq!(open.len(), 0);
    }
}
