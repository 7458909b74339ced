//! Buffers let go on a thread, kept for the next work on it: an invocation's documents
//! then go into buffers already grown to what the last one needed, instead of new ones
//! grown step by step. Each of those is a large allocation, for which glibc's allocator
//! first sweeps its lists of small free blocks, which the AWS SDK keeps full.

use std::cell::RefCell;
use std::thread::LocalKey;

/// Buffers of each kind kept per thread: about what one invocation has in use at once
/// (the handler's children, those of the subsegments open under it, the document they
/// all go in).
pub(crate) const KEEP: usize = 8;
/// Larger buffers, in bytes, are let go.
const MAX_KEPT: usize = 128 * 1024;

/// One thread's kept buffers of one item type.
pub(crate) type Pool<T> = RefCell<Vec<Vec<T>>>;

/// What buffers are kept of: each type its own pool.
pub(crate) trait Kept: Sized + 'static {
    fn pool() -> &'static LocalKey<Pool<Self>>;
}

thread_local! {
    static BYTES: Pool<u8> = const { RefCell::new(Vec::new()) };
}

impl Kept for u8 {
    fn pool() -> &'static LocalKey<Pool<Self>> {
        &BYTES
    }
}

/// An empty buffer with room for at least `min` items: the smallest kept one that has
/// it, else the largest, grown (while empty, so nothing is copied).
pub(crate) fn take<T: Kept>(min: usize) -> Vec<T> {
    let kept = T::pool()
        .try_with(|pool| {
            let mut pool = pool.try_borrow_mut().ok()?;
            let fitting = pool
                .iter()
                .enumerate()
                .filter(|(_, b)| b.capacity() >= min)
                .min_by_key(|(_, b)| b.capacity());
            let i = match fitting {
                Some((i, _)) => i,
                None => (0..pool.len()).max_by_key(|&i| pool[i].capacity())?,
            };
            Some(pool.swap_remove(i))
        })
        .ok()
        .flatten();
    let mut buf = kept.unwrap_or_default();
    buf.reserve(min);
    buf
}

/// Keeps `buf`, emptied, unless it is too large or this thread keeps enough already.
pub(crate) fn give<T: Kept>(mut buf: Vec<T>) {
    if buf.capacity() == 0 || buf.capacity() * size_of::<T>() > MAX_KEPT {
        return;
    }
    buf.clear();
    let _ = T::pool().try_with(|pool| {
        if let Ok(mut pool) = pool.try_borrow_mut() {
            if pool.len() < KEEP {
                pool.push(buf);
            }
        }
    });
}

/// How many buffers of `T` this thread keeps.
#[cfg(test)]
pub(crate) fn kept<T: Kept>() -> usize {
    T::pool().with(|pool| pool.borrow().len())
}

/// Lets go of every kept buffer of `T` on this thread.
#[cfg(test)]
pub(crate) fn drain<T: Kept>() {
    T::pool().with(|pool| pool.borrow_mut().clear());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_kept_up_to_a_bound() {
        drain::<u8>();
        give(Vec::<u8>::with_capacity(20_000));
        let kept = take::<u8>(100);
        assert!(kept.capacity() >= 20_000 && kept.is_empty());
        give(Vec::<u8>::with_capacity(1 << 20));
        assert_eq!(super::kept::<u8>(), 0, "too large to keep");
        for _ in 0..KEEP + 2 {
            give(Vec::<u8>::with_capacity(8192));
        }
        assert_eq!(super::kept::<u8>(), KEEP);
        drain::<u8>();
    }

    #[test]
    fn the_smallest_kept_buffer_that_fits_is_taken() {
        drain::<u8>();
        for capacity in [1000, 8000, 3000] {
            give(Vec::<u8>::with_capacity(capacity));
        }
        let fitting = take::<u8>(2000).capacity();
        assert!((3000..8000).contains(&fitting), "{fitting}");
        // None fits: the largest, grown.
        let grown = take::<u8>(20_000).capacity();
        assert!(grown >= 20_000, "{grown}");
        assert!(take::<u8>(1).capacity() >= 1000);
        drain::<u8>();
    }
}
