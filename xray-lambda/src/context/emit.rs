//! How a trace's nodes become documents.
//!
//! A subsegment that ends is encoded once, with the subsegments that ended under it
//! nested inside ([`Subtree`]), and handed to its parent; the top-level one (the
//! handler's, or a segment) is sent with everything under it. Most invocations cost
//! one datagram.
//!
//! What is held for a trace (its pending tree) stays bounded: when it would not fit in
//! one datagram, or holds more subsegments than the trace's streaming threshold, the
//! largest finished subtrees are sent early as documents of their own, so nothing is
//! dropped and memory stays flat however long an invocation runs.
//!
//! Before an invocation's deadline, [`Trace::flush_before_deadline`] sends copies of
//! everything it holds, the subsegments still open marked as about to time out; if the
//! handler then finishes, the true documents follow and replace them (same ids). Every
//! send of a trace goes through one lock, so a copy can never overtake the true one.

use std::collections::HashMap;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use crate::document::{report, Cause, Children, Shrunk, Subtree};
use crate::emitter::MAX_SUBTREE;
use crate::exception;
use crate::id::SegmentId;

use super::node::Node;
use super::nodes::{Ending, Nodes, Pending};
use super::trace::{lock, Trace};

/// The most subtrees sent early at once.
const MAX_BURST: usize = 32;

/// The `type` of the exception a subsegment still open at the deadline is sent with.
pub(crate) const TIMEOUT_TYPE: &str = "Timeout";
/// The incomplete note of a subsegment sent before the deadline while still open.
pub(crate) const ENDED_BY_DEADLINE: &str =
    "about to time out: sent before the deadline while still running";

impl Node {
    /// Ends the node: its document, with its finished children, is nested in its
    /// parent's, or sent when it has no open parent. `nodes` is the trace's lock, taken
    /// by the caller to decide that the node ends.
    pub(super) fn finish(&self, mut nodes: MutexGuard<'_, Nodes>, incomplete: Option<&str>) {
        let end = self.trace.clock().timestamp(Instant::now());
        let ending = nodes.end(
            self.slot(),
            self.id(),
            end,
            incomplete,
            self.trace.bounds(1, 1),
        );
        drop(nodes);
        if let Some(ending) = ending {
            self.trace.deliver(ending);
        }
    }
}

impl Trace {
    /// Does what ending a node left to do: reports what was shrunk, sends what goes on
    /// its own, and streams when the trace holds too much.
    pub(super) fn deliver(&self, ending: Ending) {
        match ending {
            Ending::Nested {
                overflow,
                shrunk,
                over,
            } => {
                report(shrunk);
                self.send(&overflow);
                if over {
                    self.stream();
                }
            }
            Ending::Alone(alone) => {
                let (record, children) = *alone;
                let (subtree, overflow, shrunk) = Subtree::encode(record, children, MAX_SUBTREE);
                report(shrunk);
                self.send(&overflow);
                self.send(std::slice::from_ref(&subtree));
                subtree.recycle();
            }
        }
    }

    /// Sends `subtrees`, each as a document of its own, in order with every other send
    /// of the trace.
    pub(super) fn send(&self, subtrees: &[Subtree]) {
        if subtrees.is_empty() {
            return;
        }
        if let Some(emitter) = self.emitter() {
            let _order = lock(&self.emission);
            for s in subtrees {
                emitter.send(s);
            }
        }
    }

    /// `numerator / denominator` of what a trace may hold: one datagram's bytes, and the
    /// streaming threshold's subsegments.
    pub(super) fn bounds(&self, numerator: usize, denominator: usize) -> Pending {
        Pending::new(
            MAX_SUBTREE / denominator * numerator,
            self.streaming_threshold / denominator * numerator,
        )
    }

    /// Sends the largest finished subtrees, once the pending tree would not fit in one
    /// datagram or holds more subsegments than the threshold, until it is down to three
    /// quarters of both, at most [`MAX_BURST`] at a time: the first send already brings
    /// it back under the bounds (it is over by at most the subtree just added), and a
    /// longer burst of datagrams could overflow the daemon's socket buffer.
    fn stream(&self) {
        let target = self.bounds(3, 4);
        let out = {
            let mut nodes = self.nodes();
            let mut held: Vec<(usize, u32, SegmentId, SegmentId)> = Vec::new();
            for (slot, id, state) in nodes.states_mut() {
                for (child, size) in state.children.sizes() {
                    held.push((size, slot, id, child));
                }
            }
            held.sort_unstable_by_key(|h| std::cmp::Reverse(h.0));
            let mut out = Vec::new();
            for (_, slot, id, child) in held {
                if out.len() == MAX_BURST || !nodes.pending.exceeds(target) {
                    break;
                }
                let Some(state) = nodes.get_mut(slot, id) else {
                    continue;
                };
                let before = Pending::of(&state.children);
                if let Some(s) = state.children.take(child) {
                    let after = Pending::of(&state.children);
                    nodes.pending = nodes.pending.plus(after.minus(before));
                    out.push(s);
                }
            }
            out
        };
        self.send(&out);
    }

    /// Sends a copy of everything the trace holds, as it would be if the function ended
    /// now: every node still open ended at this moment, a fault whose cause says it was
    /// about to time out and how long it had been running, with its finished children
    /// nested. Nothing is sent for a trace that already ended.
    pub(crate) fn flush_before_deadline(&self, deadline: Instant) {
        let Some(emitter) = self.emitter() else {
            return;
        };
        let order = lock(&self.emission);
        if self.is_closed() {
            return;
        }
        let now = Instant::now();
        let left = deadline.saturating_duration_since(now);
        let snapshots = self.nodes().snapshots();
        // Copies of open children, waiting for their (open) parent to be copied.
        let mut open_children: HashMap<SegmentId, Children> = HashMap::new();
        let mut out = Vec::new();
        let mut shrunk = Vec::new();
        for copy in snapshots {
            let (mut record, mut children) = (copy.record, copy.children);
            // Open children go after the finished ones: they began before most of them
            // ended, but X-Ray orders subsegments by time, not by position.
            if let Some(open) = open_children.remove(&copy.id) {
                children.append(open);
            }
            record.end_time = Some(self.clock().timestamp(now));
            record.fault = true;
            let timeout = exception::exception(
                TIMEOUT_TYPE.into(),
                timeout_message(now.saturating_duration_since(copy.started), left),
                None,
            );
            match record.cause.as_deref_mut() {
                Some(Cause::Exceptions { exceptions, .. }) => exceptions.push(timeout),
                _ => record.cause = Some(Box::new(Cause::exceptions(vec![timeout]))),
            }
            record.note_incomplete(ENDED_BY_DEADLINE);
            match copy.open_parent {
                Some(parent) => {
                    let siblings = open_children.entry(parent).or_default();
                    let (overflow, cut) = siblings.add(&mut record, &children, MAX_SUBTREE);
                    out.extend(overflow);
                    shrunk.extend(cut);
                }
                None => {
                    let (subtree, overflow, cut) = Subtree::encode(record, children, MAX_SUBTREE);
                    out.extend(overflow);
                    out.push(subtree);
                    shrunk.extend(cut);
                }
            }
        }
        // Copies whose parent ended meanwhile go on their own.
        for mut orphans in open_children.into_values() {
            out.extend(orphans.take_all());
        }
        for s in &out {
            emitter.send(s);
        }
        drop(order);
        shrunk.into_iter().for_each(Shrunk::report);
    }
}

fn timeout_message(running: Duration, left: Duration) -> String {
    format!(
        "the function was about to time out ({} ms before its deadline); this subsegment had been running for {:.3} s",
        left.as_millis(),
        running.as_secs_f64()
    )
}

#[cfg(test)]
mod tests {
    use crate::context::test_support::Daemon;
    use crate::context::Node;

    /// A document too large for one datagram is shrunk, with one warning naming every
    /// cut, logged once the trace's lock is let go: a subscriber that records into the
    /// trace as it logs (which takes that lock) does not deadlock the node's end.
    #[test]
    fn a_shrunk_document_is_reported_once_after_the_lock() {
        use crate::document::AnnotationValue;
        use std::sync::{mpsc, Arc, Mutex};
        use tracing::field::{Field, Visit};
        use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

        type Warnings = Arc<Mutex<Vec<String>>>;
        struct RecordsIntoTheTrace(Arc<Node>, Warnings);
        struct Text<'a>(&'a mut String);
        impl Visit for Text<'_> {
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={value:?} ", field.name()));
            }
        }
        impl<S: tracing::Subscriber> Layer<S> for RecordsIntoTheTrace {
            fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
                self.0.put_annotation("warned", AnnotationValue::Bool(true));
                let mut text = String::new();
                event.record(&mut Text(&mut text));
                self.1.lock().unwrap().push(text);
            }
        }

        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            let d = Daemon::new();
            let facade = d.facade(true);
            let root = Node::child(facade.clone(), "## handler".into(), true).unwrap();
            let parent = Node::child(root.clone(), "parent".into(), false).unwrap();
            let large = Node::child(parent.clone(), "large".into(), false).unwrap();
            let value = serde_json::value::to_raw_value(&"x".repeat(100_000)).unwrap();
            large.put_raw_metadata("default", "response", value);
            let warnings = Warnings::default();
            let subscriber = tracing_subscriber::registry()
                .with(RecordsIntoTheTrace(parent.clone(), warnings.clone()));
            tracing::subscriber::with_default(subscriber, || large.end());
            parent.end();
            root.end();
            let warnings = warnings.lock().unwrap().clone();
            let _ = done.send((warnings, d.documents()));
        });
        let (warnings, documents) = finished
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the node's end finished (no deadlock)");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("shrunk to fit") && warnings[0].contains("[Metadata]"),
            "{warnings:?}"
        );
        let named = |name: &str| {
            documents
                .iter()
                .find(|d| d["name"] == name)
                .unwrap()
                .clone()
        };
        assert_eq!(named("parent")["annotations"]["warned"], true);
        assert_eq!(
            named("large")["metadata"],
            serde_json::json!({"xray_lambda": {"truncated": ["metadata"]}})
        );
    }

    /// A child that ends after its parent (a task spawned with `in_current_trace` that
    /// outlives it) cannot be nested any more: it goes as a document of its own.
    #[test]
    fn a_child_ending_after_its_parent_is_sent_on_its_own() {
        let d = Daemon::new();
        let facade = d.facade(true);
        let root = Node::child(facade.clone(), "## handler".into(), true).unwrap();
        let parent = Node::child(root.clone(), "parent".into(), false).unwrap();
        let late = Node::child(parent.clone(), "late".into(), false).unwrap();
        parent.end();
        late.end();
        root.end();
        let datagrams = d.datagrams();
        let names: Vec<_> = datagrams.iter().map(|d| d["name"].clone()).collect();
        assert_eq!(names, ["late", "## handler"], "{datagrams:#?}");
        assert_eq!(datagrams[0]["parent_id"], parent.id().to_string());
        assert_eq!(datagrams[0]["type"], "subsegment");
        assert_eq!(datagrams[1]["subsegments"][0]["name"], "parent");
    }

    /// When leaves under an open parent cross the size bound, the largest are sent
    /// early: a burst of at most [`super::MAX_BURST`] (sending down to three quarters of
    /// the bound in one go would be about 70 small ones).
    #[test]
    fn early_sends_come_in_bursts_of_at_most_32() {
        let d = Daemon::new();
        let facade = d.facade(true);
        let root = Node::child(facade.clone(), "## handler".into(), true).unwrap();
        let pending = || root.trace.pending().count;
        let sent = loop {
            let before = pending();
            Node::child(root.clone(), "leaf".into(), false)
                .unwrap()
                .end();
            let after = pending();
            if after <= before {
                break before + 1 - after;
            }
            assert!(before < 5_000, "the bound was never crossed");
        };
        assert_eq!(sent, super::MAX_BURST as isize);
        assert!(root.trace.pending().bytes <= crate::emitter::MAX_SUBTREE as isize);
    }
}
