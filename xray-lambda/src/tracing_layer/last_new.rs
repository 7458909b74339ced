//! The span this thread gave a node to last: what `#[instrument]` enters and closes next
//! on the same thread, found without a registry lookup (which takes the span's slot and
//! its extensions' lock, each a pair of atomic operations, on every enter and close).

use std::cell::RefCell;
use std::sync::{Arc, Weak};

use tracing::span::Id;

use crate::context::Node;

thread_local! {
    static LAST_NEW: RefCell<Option<(Id, Weak<Node>)>> = const { RefCell::new(None) };
}

/// Remembers that span `id`, created on this thread, records `node`.
pub(super) fn remember(id: &Id, node: Weak<Node>) {
    let entry = Some((id.clone(), node));
    let _ = LAST_NEW.try_with(|last| {
        if let Ok(mut last) = last.try_borrow_mut() {
            *last = entry;
        }
    });
}

/// The node of span `id`, if it is the one remembered and its node is open. A span
/// closed on another thread leaves its entry here behind; closing a span ends its node,
/// so an entry whose node ended (and an id the registry has since given to another span)
/// is never taken for the span's.
pub(super) fn recall(id: &Id) -> Option<Arc<Node>> {
    find(id, false)
}

/// [`recall`], forgetting the entry: span `id` is closing.
pub(super) fn forget(id: &Id) -> Option<Arc<Node>> {
    find(id, true)
}

fn find(id: &Id, closing: bool) -> Option<Arc<Node>> {
    LAST_NEW
        .try_with(|last| {
            let mut last = last.try_borrow_mut().ok()?;
            let (remembered, node) = last.as_ref()?;
            if remembered != id {
                return None;
            }
            let node = node.upgrade().filter(|n| n.is_open());
            if closing {
                *last = None;
            }
            node
        })
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::test_support::Daemon;

    #[test]
    fn only_the_span_remembered_with_its_node_open_is_recalled() {
        let d = Daemon::new();
        let facade = d.facade(true);
        let node = Node::child(facade.clone(), "span".into(), false).unwrap();
        let (id, other) = (Id::from_u64(7), Id::from_u64(8));
        remember(&id, Arc::downgrade(&node));
        assert!(recall(&other).is_none(), "another span");
        assert!(Arc::ptr_eq(&recall(&id).unwrap(), &node));
        assert!(Arc::ptr_eq(&recall(&id).unwrap(), &node), "recall keeps it");
        assert!(Arc::ptr_eq(&forget(&id).unwrap(), &node));
        assert!(recall(&id).is_none(), "forgotten");

        // The span closed elsewhere (its node ended) and its id came back for another.
        remember(&id, Arc::downgrade(&node));
        node.end();
        assert!(recall(&id).is_none());
        assert!(forget(&id).is_none());

        // Its node gone altogether.
        let gone = Node::child(facade, "gone".into(), false).unwrap();
        remember(&id, Arc::downgrade(&gone));
        drop(gone);
        assert!(recall(&id).is_none());
    }
}
