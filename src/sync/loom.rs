//! The loom backend (`--cfg loom`): loom's atomics and `Mutex` (so the key
//! table's words, bits and counts, and the general store's cell locks, are
//! model-checked as they are), `event_listener` built with its `loom`
//! feature, and a ring loom can see.
//!
//! Loom cannot see inside `ArrayQueue` (it uses core atomics); the ring is
//! linearizable, so a `loom::sync::Mutex` around a `VecDeque` models each of
//! its operations exactly (`mutex_ring.rs`). With `--cfg
//! coalescing_loom_ring="concurrent_queue"` the ring is instead
//! `concurrent-queue`'s lock-free bounded queue on loom's atomics.

pub(crate) use event_listener::{Event, EventListener, Listener};
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
pub(crate) use loom::sync::{Mutex, MutexGuard};
pub(crate) use loom::thread::yield_now;

#[cfg(not(coalescing_loom_ring = "concurrent_queue"))]
pub(crate) use super::mutex_ring::Ring;
#[cfg(coalescing_loom_ring = "concurrent_queue")]
pub(crate) use lock_free::Ring;

/// `--cfg coalescing_loom_ring="concurrent_queue"`: the ring is smol-rs
/// `concurrent-queue`'s bounded queue, the same Vyukov ring as `ArrayQueue`
/// but built on loom's atomics and cells, so loom explores the ring's own
/// steps (slot stamps, head and tail) against the protocol's, not just one
/// step per push or pop. Slower; `scripts/loom --ring` runs all models but
/// three with it.
#[cfg(coalescing_loom_ring = "concurrent_queue")]
mod lock_free {
    use concurrent_queue::ConcurrentQueue;

    /// Bounded FIFO with the `ArrayQueue` methods the crate calls.
    pub(crate) struct Ring<T>(ConcurrentQueue<T>);

    impl<T> Ring<T> {
        pub(crate) fn new(capacity: usize) -> Self {
            Self(ConcurrentQueue::bounded(capacity))
        }

        pub(crate) fn push(&self, value: T) -> Result<(), T> {
            self.0.push(value).map_err(|error| error.into_inner())
        }

        pub(crate) fn pop(&self) -> Option<T> {
            self.0.pop().ok()
        }

        pub(crate) fn len(&self) -> usize {
            self.0.len()
        }

        pub(crate) fn is_empty(&self) -> bool {
            self.0.is_empty()
        }
    }
}
