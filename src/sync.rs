//! The one place that imports the concurrency primitives.
//!
//! Everything concurrent in the crate (atomics, locks, the ring and the
//! waiter) comes from here, so that one `cfg` swaps all of it:
//!
//! * the real build uses `std` atomics and `Mutex`,
//!   `crossbeam_queue::ArrayQueue` and `event_listener::Event`;
//! * `--cfg loom` uses loom's atomics and `Mutex` (so the key table's words,
//!   bits and counts, and the general store's cell locks, are model-checked
//!   as they are), `event_listener` built with its
//!   `loom` feature, and the shim of [`crate::loom_shims`] for the ring.
//!   Loom cannot see inside `ArrayQueue` (it uses core atomics); the ring is
//!   linearizable, so a `loom::sync::Mutex` around a `VecDeque` models each
//!   of its operations exactly. With `--cfg coalescing_loom_ring=
//!   "concurrent_queue"` the ring is instead `concurrent-queue`'s lock-free
//!   bounded queue on loom's atomics.
//! * `--cfg shuttle` uses shuttle's atomics and `Mutex`, the same ring shim
//!   on `shuttle::sync::Mutex`, and the waiter of `src/shuttle_waiter.rs`
//!   (event-listener is not shuttle-aware: its parking would block shuttle's
//!   scheduler).

#[cfg(not(any(loom, shuttle)))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
#[cfg(not(any(loom, shuttle)))]
pub(crate) use std::sync::{Mutex, MutexGuard};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

#[cfg(not(all(shuttle, not(loom))))]
pub(crate) use event_listener::{Event, EventListener, Listener};

#[cfg(not(any(loom, shuttle)))]
pub(crate) use crossbeam_queue::ArrayQueue as Ring;

#[cfg(all(loom, coalescing_loom_ring = "concurrent_queue"))]
pub(crate) use crate::loom_shims::lock_free::Ring;
#[cfg(all(loom, not(coalescing_loom_ring = "concurrent_queue")))]
pub(crate) use crate::loom_shims::Ring;

// The shuttle arm: shuttle's atomics and Mutex, the loom shim of the ring
// (generic over the Mutex: it takes `shuttle::sync::Mutex` here), and a
// Mutex + Condvar waiter with event-listener's interface.
#[cfg(all(shuttle, not(loom)))]
pub(crate) use shuttle::sync::atomic::{
    fence, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
#[cfg(all(shuttle, not(loom)))]
pub(crate) use shuttle::sync::{Mutex, MutexGuard};

#[cfg(all(shuttle, not(loom)))]
#[path = "loom_shims.rs"]
mod shuttle_shims;

#[cfg(all(shuttle, not(loom)))]
pub(crate) use shuttle_shims::Ring;

#[cfg(all(shuttle, not(loom)))]
#[path = "shuttle_waiter.rs"]
mod shuttle_waiter;

#[cfg(all(shuttle, not(loom)))]
pub(crate) use shuttle_waiter::{Event, EventListener, Listener};

/// Statistics counters publish nothing and guard nothing: they are plain
/// `std` atomics even under loom, so that loom explores only the protocol.
pub(crate) use core::sync::atomic::AtomicU64 as StatCell;

/// One turn of a spin-wait loop (waiting for an insert bit, or for a
/// candidate entry to settle). Under the model checkers a yield, so that
/// they schedule the thread being waited for; in the real build a pause.
#[inline]
pub(crate) fn spin_wait() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(all(shuttle, not(loom)))]
    shuttle::thread::yield_now();
    #[cfg(not(any(loom, shuttle)))]
    std::thread::yield_now();
}
