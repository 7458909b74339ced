//! One trace as this process sees it: an invocation's, or a segment's begun here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

use crate::document::{Children, Clock, Kind, Name, Record, Shrunk, Subtree, Timestamp};
use crate::emitter::Emitter;
use crate::emitter::MAX_SUBTREE;
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
    pub(super) fn pending(&self) -> Pending {
        lock(&self.nodes).pending
    }

    /// Closes the trace, ending every node still open but `root` (deepest first, so
    /// children are nested in their parents), noting `incomplete`; gives what ending
    /// them left to send.
    pub(super) fn close(&self, root: SegmentId, incomplete: &'static str) -> Vec<Ending> {
        let mut nodes = lock(&self.nodes);
        self.closed.store(true, Ordering::Release);
        let mut open: Vec<(u32, u32, SegmentId)> = nodes
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.live && s.id != root)
            .map(|(i, s)| (s.depth, i as u32, s.id))
            .collect();
        open.sort_unstable_by_key(|&(depth, ..)| std::cmp::Reverse(depth));
        let end = self.clock.timestamp(Instant::now());
        let bound = self.bounds(1, 1);
        open.into_iter()
            .filter_map(|(_, slot, id)| nodes.end(slot, id, end, Some(incomplete), bound))
            .collect()
    }
}

/// The open nodes of a trace, by slot, and the size of the finished subtrees they
/// hold. A slot freed is reused in place, its document rewritten field by field, so
/// opening a node moves no document around and reuses what its allocations can.
#[derive(Debug, Default)]
pub(super) struct Nodes {
    slots: Vec<Slot>,
    free: Vec<u32>,
    pub(super) pending: Pending,
}

/// A node, as its trace holds it.
#[derive(Debug)]
struct Slot {
    /// Whether a node holds it (else it is free).
    live: bool,
    id: SegmentId,
    /// Its parent's slot and id, when the parent is a node of this trace's too (not a
    /// facade).
    parent: Option<(u32, SegmentId)>,
    depth: u32,
    started: Instant,
    state: State,
}

/// A node being opened: where it hangs, and its document's first fields.
#[derive(Debug)]
pub(super) struct Opening {
    pub(super) id: SegmentId,
    /// Its parent's slot and id, when the parent is a node of this trace's too.
    pub(super) parent: Option<(u32, SegmentId)>,
    pub(super) depth: u32,
    pub(super) started: Instant,
    pub(super) name: Name,
    pub(super) parent_id: Option<SegmentId>,
    pub(super) kind: Kind,
    pub(super) start_time: Timestamp,
}

/// A child's buffer larger than this is let go when its slot is freed, rather than
/// kept for the slot's next node.
const KEPT_BUFFER: usize = 4096;

/// What ending a node left to do once the trace's lock is let go.
#[derive(Debug)]
pub(super) enum Ending {
    /// It was nested in its parent: send what did not fit, and stream when `over`.
    Nested {
        overflow: Vec<Subtree>,
        shrunk: Option<Shrunk>,
        over: bool,
    },
    /// It has no open parent: send it on its own, with its children. (Boxed: this
    /// happens once a trace, and keeps the common case small to pass around.)
    Alone(Box<(Record, Children)>),
}

/// A copy of an open node, as the deadline's flush sends it.
pub(super) struct Copy {
    pub(super) id: SegmentId,
    /// Its parent's id, when the parent is open too.
    pub(super) open_parent: Option<SegmentId>,
    pub(super) depth: u32,
    pub(super) started: Instant,
    pub(super) record: Record,
    pub(super) children: Children,
}

impl Nodes {
    fn insert(&mut self, o: Opening, trace_id: TraceId) -> u32 {
        if let Some(i) = self.free.pop() {
            if let Some(s) = self.slots.get_mut(i as usize) {
                s.live = true;
                s.id = o.id;
                s.parent = o.parent;
                s.depth = o.depth;
                s.started = o.started;
                s.state
                    .reset(o.name, o.id, trace_id, o.parent_id, o.kind, o.start_time);
                return i;
            }
        }
        let record = Record::new(o.name, o.id, trace_id, o.parent_id, o.kind, o.start_time);
        self.slots.push(Slot {
            live: true,
            id: o.id,
            parent: o.parent,
            depth: o.depth,
            started: o.started,
            state: State::new(record),
        });
        (self.slots.len() - 1) as u32
    }

    fn index(&self, slot: u32, id: SegmentId) -> Option<usize> {
        let i = slot as usize;
        self.slots
            .get(i)
            .filter(|s| s.live && s.id == id)
            .map(|_| i)
    }

    /// Frees slot `i`: its node ended.
    fn release(&mut self, i: usize) {
        if let Some(s) = self.slots.get_mut(i) {
            s.live = false;
            s.state.children.clear(KEPT_BUFFER);
            self.free.push(i as u32);
        }
    }

    /// The state of node `id`, registered in `slot`.
    pub(super) fn get_mut(&mut self, slot: u32, id: SegmentId) -> Option<&mut State> {
        let i = self.index(slot, id)?;
        Some(&mut self.slots[i].state)
    }

    /// Ends node `id` of `slot` at `end`, noting `incomplete`: encodes it, in place,
    /// into its parent's children when the parent is open, and frees the slot. `bound`
    /// is what the trace may hold before it streams.
    pub(super) fn end(
        &mut self,
        slot: u32,
        id: SegmentId,
        end: Timestamp,
        incomplete: Option<&str>,
        bound: Pending,
    ) -> Option<Ending> {
        let i = self.index(slot, id)?;
        let parent = self.slots[i].parent.and_then(|(p, pid)| self.index(p, pid));
        let Some(p) = parent else {
            let state = &mut self.slots[i].state;
            let placeholder = Record::new(
                Name::Borrowed(""),
                id,
                state.record.trace_id,
                None,
                Kind::Subsegment,
                end,
            );
            let mut record = std::mem::replace(&mut state.record, placeholder);
            let children = std::mem::take(&mut state.children);
            self.release(i);
            self.pending = self
                .pending
                .minus(Pending::new(children.bytes(), children.count()));
            record.end_time = Some(end);
            if let Some(reason) = incomplete {
                record.note_incomplete(reason);
            }
            return Some(Ending::Alone(Box::new((record, children))));
        };
        let [mine, theirs] = self.slots.get_disjoint_mut([i, p]).ok()?;
        let (mine, theirs) = (&mut mine.state, &mut theirs.state);
        mine.record.end_time = Some(end);
        if let Some(reason) = incomplete {
            mine.record.note_incomplete(reason);
        }
        let released = Pending::new(mine.children.bytes(), mine.children.count());
        let before = Pending::new(theirs.children.bytes(), theirs.children.count());
        let (overflow, shrunk) = theirs
            .children
            .add(&mut mine.record, &mine.children, MAX_SUBTREE);
        let after = Pending::new(theirs.children.bytes(), theirs.children.count());
        self.release(i);
        self.pending = self.pending.plus(after.minus(before).minus(released));
        Some(Ending::Nested {
            overflow,
            shrunk,
            over: self.pending.exceeds(bound),
        })
    }

    /// Every registered node's state, by slot and id.
    pub(super) fn states_mut(&mut self) -> impl Iterator<Item = (u32, SegmentId, &mut State)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter(|(_, s)| s.live)
            .map(|(i, s)| (i as u32, s.id, &mut s.state))
    }

    /// Copies of the open nodes, deepest first.
    pub(super) fn copies(&self) -> Vec<Copy> {
        let mut copies: Vec<Copy> = self
            .slots
            .iter()
            .filter(|s| s.live)
            .map(|s| Copy {
                id: s.id,
                open_parent: s
                    .parent
                    .filter(|&(p, pid)| self.index(p, pid).is_some())
                    .map(|(_, pid)| pid),
                depth: s.depth,
                started: s.started,
                record: s.state.record.clone(),
                children: s.state.children.clone(),
            })
            .collect();
        copies.sort_by_key(|c| std::cmp::Reverse(c.depth));
        copies
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.live).count()
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

    fn opening(id: SegmentId) -> Opening {
        let now = std::time::Instant::now();
        Opening {
            id,
            parent: None,
            depth: 1,
            started: now,
            name: "n".into(),
            parent_id: None,
            kind: Kind::Subsegment,
            start_time: Clock::new().timestamp(now),
        }
    }

    #[test]
    fn slots_are_reused_and_found_only_by_their_node() {
        let mut nodes = Nodes::default();
        let ids: Vec<SegmentId> = (0..3).map(|_| SegmentId::random()).collect();
        let [a, b, c] = [0, 1, 2].map(|i| nodes.insert(opening(ids[i]), TraceId::new()));
        let end = Clock::new().timestamp(std::time::Instant::now());
        let end_node = |nodes: &mut Nodes, slot, id| {
            nodes.end(slot, id, end, None, Pending::new(usize::MAX, usize::MAX))
        };
        assert!(end_node(&mut nodes, b, ids[1]).is_some());
        assert!(
            end_node(&mut nodes, b, ids[1]).is_none(),
            "twice: no effect"
        );
        assert_eq!(nodes.len(), 2);
        let later = SegmentId::random();
        assert_eq!(
            nodes.insert(opening(later), TraceId::new()),
            b,
            "a freed slot is reused"
        );
        assert!(nodes.get_mut(b, ids[1]).is_none(), "by its new node only");
        assert!(nodes.get_mut(b, later).is_some());
        assert!(end_node(&mut nodes, a, ids[0]).is_some());
        assert!(end_node(&mut nodes, c, ids[2]).is_some());
        assert_eq!(nodes.len(), 1);
        assert!(nodes.get_mut(7, later).is_none());
    }
}
