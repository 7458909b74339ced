//! The current context: what code running right now works under.
//!
//! It lives in a thread-local slot, but it is owned by futures: every traced future
//! keeps its own context and swaps it in for the duration of each `poll` ([`Entered`]),
//! the way tokio's `task_local!` and tracing's `Instrumented` do. A poll of one
//! invocation therefore never sees another's node, whatever thread it runs on.
//!
//! A guard (`begin_subsegment`, `begin_segment`) puts its node in the slot directly,
//! tagged with the tokio task that made it. Code outside any traced future that a
//! runtime thread polls later, in another task, does not see it: a segment guard held
//! across an `.await` in `block_on` does not adopt the other tasks of a current-thread
//! runtime.
//!
//! An ended node is never current: reading the slot gives the nearest open ancestor.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use super::node::Node;
use super::trace::note_current;
#[cfg(feature = "__http-client")]
use crate::document::Name;
use crate::header::TraceHeader;
use crate::id::TraceId;

/// What code running now works under.
#[derive(Clone, Debug)]
pub(crate) enum Context {
    /// Inside an invocation that neither records nor propagates anything (it came
    /// without a trace header, or with a malformed one), or under a trace that ended.
    Untraced,
    /// Under this node of a trace.
    Node(Arc<Node>),
    /// Inside a trace that is passed on but not recorded here (a request served
    /// outside Lambda that is not sampled): only the header calls made now carry. Kept
    /// inline, so such a request costs no allocation for its context.
    #[cfg_attr(not(feature = "http-server"), allow(dead_code))]
    Passed(TraceHeader),
}

impl Context {
    /// The header a call to another service made now carries; `None` outside a trace.
    pub(crate) fn outgoing_header(&self) -> Option<TraceHeader> {
        match self {
            Context::Node(n) => Some(n.outgoing_header()),
            Context::Passed(h) => Some(h.clone()),
            Context::Untraced => None,
        }
    }

    /// The trace code running now belongs to.
    pub(crate) fn trace_id(&self) -> Option<TraceId> {
        match self {
            Context::Node(n) => Some(n.trace().root()),
            Context::Passed(h) => Some(h.root()),
            Context::Untraced => None,
        }
    }

    /// Starts a call to another service: its subsegment, named by `name`, when the
    /// trace records, and the header to send with it (naming that subsegment as the
    /// parent). `None` outside a trace.
    #[cfg(feature = "__http-client")]
    pub(crate) fn begin_call(
        &self,
        name: impl FnOnce() -> Name,
    ) -> Option<(Option<Arc<Node>>, TraceHeader)> {
        match self {
            Context::Node(at) => {
                let node = at
                    .trace()
                    .is_recording()
                    .then(|| Node::child(at.clone(), name(), false))
                    .flatten();
                let header = node.as_ref().unwrap_or(at).outgoing_header();
                Some((node, header))
            }
            Context::Passed(h) => Some((None, h.clone())),
            Context::Untraced => None,
        }
    }

    /// The context with an ended node replaced by its nearest open ancestor.
    fn settled(self) -> Self {
        match self {
            Context::Node(n) if !n.is_open() => {
                n.nearest_open().map_or(Context::Untraced, Context::Node)
            }
            c => c,
        }
    }
}

/// Who sees an entry of the slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    /// A traced future put it there for its poll: whatever runs in that poll.
    Poll,
    /// A guard put it there: only the tokio task that made the guard (`None`: code
    /// outside any task, such as the future `block_on` runs).
    Task(Option<tokio::task::Id>),
}

impl Owner {
    fn sees(self) -> bool {
        match self {
            Owner::Poll => true,
            Owner::Task(t) => t == tokio::task::try_id(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Entry {
    context: Context,
    owner: Owner,
}

thread_local! {
    static CURRENT: RefCell<Option<Entry>> = const { RefCell::new(None) };
    /// What the slot holds, in one byte, kept with it: so that code without a recorded
    /// trace (the unsampled, the untraced) learns it from one read, not a borrow.
    static SUMMARY: Cell<Summary> = const { Cell::new(Summary::Outside) };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Summary {
    /// The slot is empty.
    Outside,
    /// A context that records nothing (tracing off, unsampled, untraced), visible to all
    /// code on the thread: only traced futures' polls put one there.
    Quiet,
    /// Anything else: look at the entry.
    Look,
}

impl Summary {
    fn of(entry: Option<&Entry>) -> Self {
        match entry {
            None => Summary::Outside,
            Some(Entry {
                context: Context::Node(n),
                ..
            }) if n.trace().is_recording() => Summary::Look,
            Some(Entry {
                owner: Owner::Poll, ..
            }) => Summary::Quiet,
            Some(_) => Summary::Look,
        }
    }
}

/// What code running now records under.
pub(crate) enum Recording {
    /// This node, of a trace that records.
    Node(Arc<Node>),
    /// Nothing, inside a context that records nothing (unsampled, tracing off).
    Quiet,
    /// Nothing: there is no context here at all.
    Outside,
}

/// Runs `f` on the context code running now may see, in place. `f` must not touch the
/// slot.
fn visible<R>(f: impl FnOnce(&Context) -> R) -> Option<R> {
    CURRENT
        .try_with(|c| {
            let entry = c.try_borrow().ok()?;
            entry
                .as_ref()
                .filter(|e| e.owner.sees())
                .map(|e| f(&e.context))
        })
        .ok()
        .flatten()
}

/// The context code running now works under, if any.
pub(crate) fn current() -> Option<Context> {
    visible(|c| c.clone().settled())
}

/// What code running now records under. Checks in place, so the unrecorded path costs
/// no reference-count traffic, and without a recorded trace it costs one read.
#[inline]
pub(crate) fn recording() -> Recording {
    match SUMMARY.try_with(Cell::get) {
        Ok(Summary::Outside) => Recording::Outside,
        Ok(Summary::Quiet) => Recording::Quiet,
        Ok(Summary::Look) | Err(_) => recording_slow(),
    }
}

fn recording_slow() -> Recording {
    visible(|c| match c {
        Context::Node(n) if n.trace().is_recording() => {
            n.nearest_open().map_or(Recording::Quiet, Recording::Node)
        }
        _ => Recording::Quiet,
    })
    .unwrap_or(Recording::Outside)
}

/// The node to record under, if code running now is in a trace that records.
pub(crate) fn current_recording() -> Option<Arc<Node>> {
    match recording() {
        Recording::Node(n) => Some(n),
        Recording::Quiet | Recording::Outside => None,
    }
}

/// Puts `entry` in the slot; gives back what was there. The old entry is dropped by the
/// caller, outside the slot's borrow.
fn replace(entry: Option<Entry>) -> Option<Entry> {
    CURRENT
        .try_with(|c| {
            c.try_borrow_mut()
                .map(|mut slot| swap(&mut slot, entry))
                .ok()
                .flatten()
        })
        .ok()
        .flatten()
}

/// Puts `entry` in the slot, keeping the summary in step; gives back the old one.
fn swap(slot: &mut Option<Entry>, entry: Option<Entry>) -> Option<Entry> {
    let summary = Summary::of(entry.as_ref());
    let _ = SUMMARY.try_with(|s| s.set(summary));
    std::mem::replace(slot, entry)
}

/// Swaps a future's context in as the current one, and back out when dropped (also
/// when the poll panics).
pub(crate) struct Entered<'a> {
    slot: &'a mut Option<Context>,
    previous: Option<Entry>,
}

impl<'a> Entered<'a> {
    pub(crate) fn new(slot: &'a mut Option<Context>) -> Self {
        if let Some(Context::Node(n)) = slot {
            note_current(n);
        }
        let entry = slot.take().map(|context| Entry {
            context,
            owner: Owner::Poll,
        });
        let previous = replace(entry);
        Entered { slot, previous }
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        *self.slot = replace(self.previous.take()).map(|e| e.context);
    }
}

/// What was current before a guard began, restored when it ends.
#[derive(Debug)]
pub(crate) struct Previous(Option<Entry>);

/// Makes a guard's node current, for the task that makes it.
pub(crate) fn enter_guard(node: Arc<Node>) -> Previous {
    note_current(&node);
    Previous(replace(Some(Entry {
        context: Context::Node(node),
        owner: Owner::Task(tokio::task::try_id()),
    })))
}

/// Makes `node` current for all code on this thread, as a traced future's poll does,
/// until [`exit_guard`]: what a `tracing` span being entered does.
#[cfg(feature = "tracing-layer")]
pub(crate) fn enter_span(node: Arc<Node>) -> Previous {
    // Not noted as `last_current`: a thread handed work inside this span finds the
    // span's own node through the span.
    Previous(replace(Some(Entry {
        context: Context::Node(node),
        owner: Owner::Poll,
    })))
}

/// Ends a guard's turn as the current node: if `node` is current, what was current
/// before the guard is current again (or its nearest open ancestor). Gives false, and
/// leaves the slot alone, when `node` is not current: guards ended out of order, or on
/// another thread than the one that began them.
pub(crate) fn exit_guard(node: &Arc<Node>, previous: Previous) -> bool {
    let swapped = CURRENT.try_with(|c| {
        let Ok(mut slot) = c.try_borrow_mut() else {
            return (false, None);
        };
        let mine =
            matches!(&*slot, Some(Entry { context: Context::Node(n), .. }) if Arc::ptr_eq(n, node));
        if !mine {
            return (false, None);
        }
        let restored = previous.0.map(|e| Entry {
            context: e.context.settled(),
            owner: e.owner,
        });
        (true, swap(&mut slot, restored))
    });
    match swapped {
        // Dropped here, outside the slot's borrow.
        Ok((mine, _old)) => mine,
        // The thread is being torn down: nothing is current on it any more.
        Err(_) => true,
    }
}
