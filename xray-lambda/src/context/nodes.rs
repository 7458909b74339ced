//! The nodes a trace holds open: a slab of their documents and finished children,
//! which the trace keeps under its one lock.

use std::time::Instant;

use crate::document::{Children, Kind, Name, Record, Shrunk, Subtree, Timestamp};
use crate::emitter::MAX_SUBTREE;
use crate::id::{SegmentId, TraceId};
use crate::spare;

use super::node::State;

/// The open nodes of a trace, by slot, and the size of the finished subtrees they
/// hold. A slot freed is reused in place, its document rewritten field by field, so
/// opening a node moves no document around and reuses what its allocations can.
#[derive(Debug)]
pub(super) struct Nodes {
    slots: Vec<Slot>,
    free: Vec<u32>,
    pub(super) pending: Pending,
}

/// Slots a trace starts with room for: nodes open at once in a usual invocation.
const INITIAL_SLOTS: usize = 4;

impl Default for Nodes {
    /// Empty: a trace that records nothing never takes a slab.
    fn default() -> Self {
        Nodes {
            slots: Vec::new(),
            free: Vec::new(),
            pending: Pending::default(),
        }
    }
}

/// The slab goes to the thread's spares for the next trace: a slot is a few hundred
/// bytes, so even a small slab is a large allocation.
impl Drop for Nodes {
    fn drop(&mut self) {
        let mut slots = std::mem::take(&mut self.slots);
        for slot in &mut slots {
            slot.state.children.recycle();
        }
        spare::give(slots);
    }
}

thread_local! {
    static SLABS: spare::Pool<Slot> = const { std::cell::RefCell::new(Vec::new()) };
}

impl spare::Kept for Slot {
    fn pool() -> &'static std::thread::LocalKey<spare::Pool<Self>> {
        &SLABS
    }
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

/// An open node as it is now, which the deadline's flush sends.
pub(super) struct Snapshot {
    pub(super) id: SegmentId,
    /// Its parent's id, when the parent is open too.
    pub(super) open_parent: Option<SegmentId>,
    pub(super) depth: u32,
    pub(super) started: Instant,
    pub(super) record: Record,
    pub(super) children: Children,
}

impl Nodes {
    pub(super) fn insert(&mut self, o: Opening, trace_id: TraceId) -> u32 {
        if let Some(i) = self.free.pop() {
            if let Some(s) = self.slots.get_mut(i as usize) {
                s.live = true;
                s.id = o.id;
                s.parent = o.parent;
                s.depth = o.depth;
                s.started = o.started;
                s.state
                    .clear()
                    .reset(o.name, o.id, trace_id, o.parent_id, o.kind, o.start_time);
                return i;
            }
        }
        if self.slots.capacity() == 0 {
            self.slots = spare::take(INITIAL_SLOTS);
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
            // Its buffers go to the thread's spares, for whatever children come next
            // (this trace's or the next invocation's).
            s.state.children.recycle();
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
        let record = &mut self.slots[i].state.record;
        record.end_time = Some(end);
        if let Some(reason) = incomplete {
            record.note_incomplete(reason);
        }
        let parent = self.slots[i].parent.and_then(|(p, pid)| self.index(p, pid));
        let Some(p) = parent else {
            // Taken out to be encoded after the lock; the slot's next node rewrites
            // what is left in its place.
            let state = &mut self.slots[i].state;
            let placeholder = Record::new(
                Name::Borrowed(""),
                id,
                state.record.trace_id,
                None,
                Kind::Subsegment,
                end,
            );
            let record = std::mem::replace(&mut state.record, placeholder);
            let children = std::mem::take(&mut state.children);
            self.release(i);
            self.pending = self.pending.minus(Pending::of(&children));
            return Some(Ending::Alone(Box::new((record, children))));
        };
        let [mine, theirs] = self.slots.get_disjoint_mut([i, p]).ok()?;
        let (mine, theirs) = (&mut mine.state, &mut theirs.state);
        let before = Pending::of(&theirs.children).plus(Pending::of(&mine.children));
        let (overflow, shrunk) = theirs
            .children
            .add(&mut mine.record, &mine.children, MAX_SUBTREE);
        let after = Pending::of(&theirs.children);
        self.release(i);
        self.pending = self.pending.plus(after.minus(before));
        Some(Ending::Nested {
            overflow,
            shrunk,
            over: self.pending.exceeds(bound),
        })
    }

    /// Forgets node `id` of `slot` without encoding it anywhere: it stood for nothing
    /// (an AWS request that was presigned, not sent). `false`, with nothing done, when
    /// it holds finished children, which must not be lost with it.
    #[cfg(feature = "aws-sdk")]
    pub(super) fn discard(&mut self, slot: u32, id: SegmentId) -> bool {
        let Some(i) = self.index(slot, id) else {
            return true;
        };
        if self.slots[i].state.children.count() > 0 {
            return false;
        }
        self.release(i);
        true
    }

    /// Ends every node but `root`, deepest first (so children are nested in their
    /// parents), at `end`, noting `incomplete`; gives what ending them left to send.
    pub(super) fn end_all_but(
        &mut self,
        root: SegmentId,
        end: Timestamp,
        incomplete: &str,
        bound: Pending,
    ) -> Vec<Ending> {
        let mut open: Vec<(u32, u32, SegmentId)> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.live && s.id != root)
            .map(|(i, s)| (s.depth, i as u32, s.id))
            .collect();
        open.sort_unstable_by_key(|&(depth, ..)| std::cmp::Reverse(depth));
        open.into_iter()
            .filter_map(|(_, slot, id)| self.end(slot, id, end, Some(incomplete), bound))
            .collect()
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
    pub(super) fn snapshots(&self) -> Vec<Snapshot> {
        let mut copies: Vec<Snapshot> = self
            .slots
            .iter()
            .filter(|s| s.live)
            .map(|s| Snapshot {
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
/// Signed, as a change may take away more than it adds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Pending {
    pub(super) bytes: isize,
    pub(super) count: isize,
}

impl Pending {
    /// What `children` hold.
    pub(super) fn of(children: &Children) -> Self {
        Pending::new(children.bytes(), children.count())
    }

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
    use crate::document::Clock;

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

    #[test]
    fn a_dropped_trace_leaves_its_slab_to_the_next_one_on_the_thread() {
        spare::drain::<Slot>();
        drop(Nodes::default());
        assert_eq!(
            spare::kept::<Slot>(),
            0,
            "a trace with no nodes has no slab"
        );
        let mut nodes = Nodes::default();
        for _ in 0..6 {
            nodes.insert(opening(SegmentId::random()), TraceId::new());
        }
        let (slab, capacity) = (nodes.slots.as_ptr(), nodes.slots.capacity());
        drop(nodes);
        assert_eq!(spare::kept::<Slot>(), 1);
        let mut next = Nodes::default();
        next.insert(opening(SegmentId::random()), TraceId::new());
        assert_eq!(next.slots.as_ptr(), slab);
        assert_eq!(next.slots.capacity(), capacity);
        assert_eq!(next.len(), 1, "with none of the last trace's nodes");
    }
}
