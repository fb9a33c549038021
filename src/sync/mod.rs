//! The one place that imports the concurrency primitives: one backend per
//! checker, chosen by one `cfg`.
//!
//! Everything concurrent in the crate (atomics, locks, the ring and the
//! waiter) comes from here, with the same names from each backend:
//!
//! * `std.rs`, the real build;
//! * `loom.rs` (`--cfg loom`): everything on loom's primitives, so the
//!   protocol is model-checked on the code that runs;
//! * `shuttle.rs` (`--cfg shuttle`): the same on shuttle's.
//!
//! `mutex_ring.rs` is the ring both checkers share.

#[cfg(not(any(loom, shuttle)))]
#[path = "std.rs"]
mod backend;

#[cfg(loom)]
#[path = "loom.rs"]
mod backend;

#[cfg(all(shuttle, not(loom)))]
#[path = "shuttle.rs"]
mod backend;

#[cfg(all(
    any(loom, shuttle),
    not(all(loom, coalescing_loom_ring = "concurrent_queue"))
))]
mod mutex_ring;

pub(crate) use backend::{
    fence, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Event, EventListener, Listener, Mutex,
    MutexGuard, Ordering, Ring,
};

/// Statistics counters publish nothing and guard nothing: they are plain
/// `std` atomics even under loom, so that loom explores only the protocol.
pub(crate) use core::sync::atomic::AtomicU64 as StatCell;

/// One turn of a spin-wait loop (waiting for an insert bit, or for a
/// candidate entry to settle): a yield, so that the model checkers schedule
/// the thread being waited for, and the real build gives up its core.
#[inline]
pub(crate) fn spin_wait() {
    backend::yield_now();
}
