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

use std::cell::Cell;
use std::sync::Arc;

use super::node::Node;

/// What code running now works under.
#[derive(Clone, Debug)]
pub(crate) enum Context {
    /// Inside an invocation that neither records nor propagates anything (it came
    /// without a trace header, or with a malformed one), or under a trace that ended.
    Untraced,
    /// Under this node of a trace.
    Node(Arc<Node>),
}

impl Context {
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
    static CURRENT: Cell<Option<Entry>> = const { Cell::new(None) };
}

/// Runs `f` on the slot's entry, if this code may see it. `f` must not touch the slot.
fn peek<R>(f: impl FnOnce(&Context) -> Option<R>) -> Option<R> {
    CURRENT
        .try_with(|c| {
            let entry = c.take();
            let out = entry
                .as_ref()
                .filter(|e| e.owner.sees())
                .and_then(|e| f(&e.context));
            c.set(entry);
            out
        })
        .ok()
        .flatten()
}

/// The context code running now works under, if any.
pub(crate) fn current() -> Option<Context> {
    peek(|c| Some(c.clone().settled()))
}

/// The node to record under, if code running now is in a trace that records. Checks
/// in place, so the unrecorded path costs no reference-count traffic.
pub(crate) fn current_recording() -> Option<Arc<Node>> {
    peek(|c| match c {
        Context::Node(n) if n.trace().is_recording() => n.nearest_open(),
        _ => None,
    })
}

/// Whether code running now is inside any context (traced or not).
pub(crate) fn has_context() -> bool {
    peek(|_| Some(())).is_some()
}

fn replace(entry: Option<Entry>) -> Option<Entry> {
    CURRENT.try_with(|c| c.replace(entry)).ok().flatten()
}

/// Swaps a future's context in as the current one, and back out when dropped (also
/// when the poll panics).
pub(crate) struct Entered<'a> {
    slot: &'a mut Option<Context>,
    previous: Option<Entry>,
}

impl<'a> Entered<'a> {
    pub(crate) fn new(slot: &'a mut Option<Context>) -> Self {
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
#[derive(Debug, Default)]
pub(crate) struct Previous(Option<Entry>);

/// Makes a guard's node current, for the task that makes it.
pub(crate) fn enter_guard(node: Arc<Node>) -> Previous {
    Previous(replace(Some(Entry {
        context: Context::Node(node),
        owner: Owner::Task(tokio::task::try_id()),
    })))
}

/// Ends a guard's turn as the current node: if `node` is current, what was current
/// before the guard is current again (or its nearest open ancestor). Gives false, and
/// leaves the slot alone, when `node` is not current: guards ended out of order, or on
/// another thread than the one that began them.
pub(crate) fn exit_guard(node: &Arc<Node>, previous: Previous) -> bool {
    CURRENT
        .try_with(|c| {
            let now = c.take();
            let mine = matches!(&now, Some(Entry { context: Context::Node(n), .. }) if Arc::ptr_eq(n, node));
            if mine {
                c.set(previous.0.map(|e| Entry {
                    context: e.context.settled(),
                    owner: e.owner,
                }));
            } else {
                c.set(now);
            }
            mine
        })
        // The thread is being torn down: nothing is current on it any more.
        .unwrap_or(true)
}
