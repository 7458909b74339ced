//! Segments begun by this process, outside Lambda: [`begin_segment`] and
//! [`FutureExt::in_segment`](crate::FutureExt::in_segment).

use std::borrow::Cow;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, MutexGuard, OnceLock};

use crate::config;
use crate::context::{Node, Opened, Trace};
use crate::document::Name;
use crate::emitter::Emitter;
use crate::id::TraceId;
use crate::subsegment::Subsegment;

/// A top-level segment, for code that runs outside Lambda (tests, local tools, other
/// hosts). Inside Lambda, Lambda owns the segment and this handle is inert.
///
/// It derefs to [`Subsegment`] for annotations, metadata and errors.
///
/// A segment guard is `!Send`: it cannot be held across an `.await` in a spawned task,
/// where the task may resume on another thread while other tasks run on this one. For
/// async code, use [`FutureExt::in_segment`](crate::FutureExt::in_segment):
///
/// ```compile_fail
/// # async fn other() {}
/// tokio::spawn(async {
///     let segment = xray_lambda::begin_segment("job");
///     other().await; // error: `Segment` cannot be sent between threads
///     drop(segment);
/// });
/// ```
#[must_use = "the segment ends when this guard is dropped"]
#[derive(Debug)]
pub struct Segment {
    guard: Subsegment,
    // `!Send` (but `Sync`), as tracing's `EnteredSpan`: the guard is current on the
    // thread it began on.
    _not_send: PhantomData<MutexGuard<'static, ()>>,
}

impl Segment {
    /// The trace this segment started, when it is being recorded.
    pub fn trace_id(&self) -> Option<crate::TraceId> {
        self.guard.trace_header().map(|h| h.root())
    }

    /// Ends the segment (and anything still open under it) and sends it.
    pub fn end(self) {}
}

impl Deref for Segment {
    type Target = Subsegment;
    fn deref(&self) -> &Subsegment {
        &self.guard
    }
}

/// Starts a new trace with a segment named `name` and makes it current, so subsegments
/// begun under it are its children. Sent when it ends; anything still open under it is
/// ended then, and nothing begun after it ended is recorded in its trace.
///
/// Inside Lambda (where `AWS_LAMBDA_FUNCTION_NAME` or `LAMBDA_TASK_ROOT` is set) this is
/// refused: Lambda owns the segment. It logs `Cannot create segments inside Lambda
/// function. Discarded.` once per process and returns an inert handle.
pub fn begin_segment(name: impl Into<Cow<'static, str>>) -> Segment {
    let guard = match open_node(name.into()) {
        Some(node) => Subsegment::enter(node),
        None => Subsegment::inert(),
    };
    Segment {
        guard,
        _not_send: PhantomData,
    }
}

/// Opens a segment for [`FutureExt::in_segment`](crate::FutureExt::in_segment).
pub(crate) fn open(name: Name) -> Opened {
    Opened::node_or_current(open_node(name))
}

fn open_node(name: Name) -> Option<Arc<Node>> {
    if config::in_lambda() {
        static WARNED: AtomicBool = AtomicBool::new(false);
        if !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!("Cannot create segments inside Lambda function. Discarded.");
        }
        return None;
    }
    static ENABLED: OnceLock<bool> = OnceLock::new();
    if !*ENABLED.get_or_init(config::tracing_enabled) {
        return None;
    }
    let trace = Trace::new(
        TraceId::new(),
        "",
        true,
        Some(Emitter::from_env()?),
        config::streaming_threshold(),
    );
    Node::segment(trace, name, None)
}
