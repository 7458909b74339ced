//! [`Scope`]: a future that runs under its own context, and ends the node it owns when
//! it completes, panics, or is dropped unfinished.

use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use crate::document::Name;

use super::current::{current, current_recording, Context, Entered};
use super::node::{Node, ENDED_BY_CANCELLATION};

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

/// The context a future runs under, and the node it owns (if any).
#[derive(Debug, Default)]
pub(crate) struct Opened {
    pub context: Option<Context>,
    pub node: Option<Arc<Node>>,
}

impl Opened {
    /// Runs under `node`, and ends it.
    pub(crate) fn node(node: Arc<Node>) -> Self {
        Opened {
            context: Some(Context::Node(node.clone())),
            node: Some(node),
        }
    }

    /// Runs under `node`, and ends it; or, without one, under what is current now.
    pub(crate) fn node_or_current(node: Option<Arc<Node>>) -> Self {
        match node {
            Some(n) => Opened::node(n),
            None => Opened {
                context: current(),
                node: None,
            },
        }
    }
}

/// Opens a future's node when it is first polled.
pub(crate) type Opener = fn(Name) -> Opened;

/// A subsegment under whatever is current.
pub(crate) fn open_subsegment(name: Name) -> Opened {
    Opened::node_or_current(current_recording().and_then(|p| Node::child(p, name, false)))
}

pin_project_lite::pin_project! {
    /// A future that runs under its own context, and (when it owns a node) ends that
    /// node when it completes, panics, or is dropped unfinished.
    #[derive(Debug)]
    pub(crate) struct Scope<F, H> {
        // `Option` so that `drop` can drop the inner future in place while its context
        // is current, before the node ends (children end before their parents).
        #[pin]
        inner: Option<F>,
        // What to open at the first poll, under whatever is current then.
        pending: Option<(Name, Opener)>,
        // Swapped in as the current context while `inner` runs.
        slot: Option<Context>,
        // The node this future owns and ends.
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
    /// Runs `inner` as `opened` says.
    pub(crate) fn new(inner: F, opened: Opened, hook: H) -> Self {
        Scope {
            inner: Some(inner),
            pending: None,
            slot: opened.context,
            node: opened.node,
            hook,
        }
    }

    /// Runs `inner` under what `open` makes of `name` at the first poll.
    pub(crate) fn lazy(inner: F, name: Name, open: Opener, hook: H) -> Self {
        Scope {
            inner: Some(inner),
            pending: Some((name, open)),
            slot: None,
            node: None,
            hook,
        }
    }
}

impl<F: Future, H: OnComplete<F::Output>> Future for Scope<F, H> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        if let Some((name, open)) = this.pending.take() {
            let opened = open(name);
            *this.slot = opened.context;
            *this.node = opened.node;
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
