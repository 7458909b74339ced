//! The spans entered on a thread, innermost last, each with what entering it made
//! current, so that its exit restores exactly what it replaced.

use tracing::span::Id;

/// Spans entered, innermost last. Every enter of a span the layer knows is kept, also
/// one that changed nothing (`None`), so that the exits of a span entered several times,
/// nested, pair up with the right enters.
#[derive(Debug)]
pub(super) struct EnteredSpans<T>(Vec<(Id, Option<T>)>);

impl<T> EnteredSpans<T> {
    pub(super) const fn new() -> Self {
        EnteredSpans(Vec::new())
    }

    pub(super) fn push(&mut self, id: Id, swapped: Option<T>) {
        self.0.push((id, swapped));
    }

    /// The exit of `id`: what its latest enter swapped, to be swapped back. A span
    /// exited before spans entered after it (guards dropped out of order) swapped
    /// nothing that is still current: what it would restore passes to the next of those
    /// that swapped something, which restores it in its place.
    pub(super) fn pop(&mut self, id: &Id) -> Option<T> {
        if self.0.last().is_some_and(|(last, _)| last == id) {
            // The usual exit, of the span entered last.
            return self.0.pop().and_then(|(_, swapped)| swapped);
        }
        let at = self.0.iter().rposition(|(entered, _)| entered == id)?;
        let (_, swapped) = self.0.remove(at);
        if at == self.0.len() {
            return swapped;
        }
        if let Some(swapped) = swapped {
            match self.0[at..].iter_mut().find_map(|(_, s)| s.as_mut()) {
                Some(later) => *later = swapped,
                // Only enters that swapped nothing came after it: restore now.
                None => return Some(swapped),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> Id {
        Id::from_u64(n)
    }

    #[test]
    fn nested_enters_of_one_span_pair_with_their_exits() {
        let mut s = EnteredSpans::new();
        s.push(id(1), Some("outer"));
        s.push(id(1), None);
        assert_eq!(s.pop(&id(1)), None, "the inner enter swapped nothing");
        assert_eq!(s.pop(&id(1)), Some("outer"));
        assert_eq!(s.pop(&id(1)), None, "an exit without an enter");
    }

    #[test]
    fn an_exit_out_of_order_hands_its_restore_to_the_next_enter() {
        let mut s = EnteredSpans::new();
        s.push(id(1), Some("before 1"));
        s.push(id(2), None);
        s.push(id(3), Some("before 3"));
        assert_eq!(s.pop(&id(1)), None);
        assert_eq!(
            s.pop(&id(3)),
            Some("before 1"),
            "3 restores what 1 replaced"
        );
        assert_eq!(s.pop(&id(2)), None);

        s.push(id(1), Some("before 1"));
        s.push(id(2), None);
        assert_eq!(s.pop(&id(1)), Some("before 1"), "nothing later swapped");
    }
}
