//! One trace as this process sees it: an invocation's, or a segment's begun here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::document::{Children, Clock, Record};
use crate::emitter::Emitter;
use crate::header::{Sampling, TraceHeader};
use crate::id::{SegmentId, TraceId};

use super::node::{Node, State};

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

    /// Registers a node being created, with its document, unless the trace is closed.
    /// The slot it gives back finds it again in O(1).
    pub(super) fn register(&self, node: Weak<Node>, id: SegmentId, record: Record) -> Option<u32> {
        let mut nodes = lock(&self.nodes);
        if self.is_closed() {
            return None;
        }
        Some(nodes.insert(Slot {
            node,
            id,
            state: State::new(record),
        }))
    }

    /// The open nodes' documents and finished children. Nothing that could end or drop
    /// a node may run while this is held: ending one takes it.
    pub(super) fn nodes(&self) -> MutexGuard<'_, Nodes> {
        lock(&self.nodes)
    }

    /// What the trace holds, waiting to be nested.
    #[cfg(test)]
    pub(super) fn pending(&self) -> Pending {
        lock(&self.nodes).pending
    }

    /// Closes the trace and gives the nodes still open, deepest first (so children are
    /// ended, and sent, before their parents). They stay registered until each ends.
    pub(super) fn close(&self) -> Vec<Arc<Node>> {
        let mut open = {
            let nodes = lock(&self.nodes);
            self.closed.store(true, Ordering::Release);
            nodes.open()
        };
        open.sort_by_key(|n| std::cmp::Reverse(n.depth()));
        open
    }
}

/// The open nodes of a trace, by slot (freed slots are reused), and the size of the
/// finished subtrees they hold.
#[derive(Debug, Default)]
pub(super) struct Nodes {
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    pub(super) pending: Pending,
}

#[derive(Debug)]
struct Slot {
    node: Weak<Node>,
    id: SegmentId,
    state: State,
}

impl Nodes {
    fn insert(&mut self, slot: Slot) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        }
    }

    /// The state of node `id`, registered in `slot`.
    pub(super) fn get_mut(&mut self, slot: u32, id: SegmentId) -> Option<&mut State> {
        match self.slots.get_mut(slot as usize) {
            Some(Some(s)) if s.id == id => Some(&mut s.state),
            _ => None,
        }
    }

    /// Takes node `id` out of `slot`, giving its state.
    pub(super) fn remove(&mut self, slot: u32, id: SegmentId) -> Option<State> {
        let s = self.slots.get_mut(slot as usize)?;
        if s.as_ref().is_none_or(|s| s.id != id) {
            return None;
        }
        let taken = s.take()?;
        self.free.push(slot);
        Some(taken.state)
    }

    /// The state of node `id` in `slot`, and that of its parent (when registered).
    pub(super) fn with_parent_mut(
        &mut self,
        (slot, id): (u32, SegmentId),
        parent: Option<(u32, SegmentId)>,
    ) -> Option<(&mut State, Option<&mut State>)> {
        let (i, p) = (slot as usize, parent.map(|(s, id)| (s as usize, id)));
        let matches = |s: &Option<Slot>, id| s.as_ref().is_some_and(|s| s.id == id);
        if !self.slots.get(i).is_some_and(|s| matches(s, id)) {
            return None;
        }
        match p.filter(|&(p, pid)| p != i && self.slots.get(p).is_some_and(|s| matches(s, pid))) {
            Some((p, _)) => {
                let [mine, theirs] = self.slots.get_disjoint_mut([i, p]).ok()?;
                Some((&mut mine.as_mut()?.state, Some(&mut theirs.as_mut()?.state)))
            }
            None => Some((&mut self.slots.get_mut(i)?.as_mut()?.state, None)),
        }
    }

    /// Frees `slot`, dropping what it held in place.
    pub(super) fn free(&mut self, slot: u32) {
        if let Some(s) = self.slots.get_mut(slot as usize).filter(|s| s.is_some()) {
            *s = None;
            self.free.push(slot);
        }
    }

    /// Every registered node's state, by slot and id.
    pub(super) fn states_mut(&mut self) -> impl Iterator<Item = (u32, SegmentId, &mut State)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| s.as_mut().map(|s| (i as u32, s.id, &mut s.state)))
    }

    /// The registered nodes still alive, for the caller to drop after the lock.
    fn open(&self) -> Vec<Arc<Node>> {
        self.slots
            .iter()
            .flatten()
            .filter_map(|s| s.node.upgrade())
            .collect()
    }

    /// Copies of the registered nodes' documents and children, with the nodes (for the
    /// caller to drop after the lock).
    pub(super) fn copies(&self) -> Vec<(Arc<Node>, Record, Children)> {
        self.slots
            .iter()
            .flatten()
            .filter_map(|s| {
                let node = s.node.upgrade()?;
                Some((node, s.state.record.clone(), s.state.children.clone()))
            })
            .collect()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }
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

    pub(super) fn plus(self, other: Pending) -> Pending {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Kind;
    use crate::id::TraceId;

    fn slot(id: SegmentId) -> Slot {
        let record = Record::new(
            "n".into(),
            id,
            TraceId::new(),
            None,
            Kind::Subsegment,
            Clock::new().timestamp(std::time::Instant::now()),
        );
        Slot {
            node: Weak::new(),
            id,
            state: State::new(record),
        }
    }

    #[test]
    fn slots_are_reused_and_found_only_by_their_node() {
        let mut nodes = Nodes::default();
        let ids: Vec<SegmentId> = (0..3).map(|_| SegmentId::random()).collect();
        let [a, b, c] = [0, 1, 2].map(|i| nodes.insert(slot(ids[i])));
        assert!(nodes.remove(b, ids[1]).is_some());
        assert!(nodes.remove(b, ids[1]).is_none(), "twice: no effect");
        assert_eq!(nodes.len(), 2);
        let later = SegmentId::random();
        assert_eq!(nodes.insert(slot(later)), b, "a freed slot is reused");
        assert!(nodes.get_mut(b, ids[1]).is_none(), "by its new node only");
        assert!(nodes.get_mut(b, later).is_some());
        assert!(nodes.remove(a, ids[0]).is_some());
        assert!(nodes.remove(c, ids[2]).is_some());
        assert_eq!(nodes.len(), 1);
        assert!(nodes.get_mut(7, later).is_none());
    }
}
