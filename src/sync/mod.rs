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

/// Waiting for an insert bit that someone else holds: spin a little (a
/// holder keeps it for a few dozen instructions), then yield some 60 times
/// (tens of microseconds: a holder that lost its core gets it back), then
/// sleep in steps that double from 8 µs up to a millisecond, so a waiter
/// behind a holder that is slow (a general key's `Eq`, a long-descheduled
/// thread) does not burn its core. Under the model checkers every step is a yield: they need one to
/// schedule the holder, and they have no clock.
#[derive(Debug)]
pub(crate) struct Backoff {
    step: u32,
}

impl Backoff {
    /// Steps that spin (1, 2, 4, 8 hints each: about as long as a holder
    /// keeps the bit), then steps that yield (the holder may have lost its
    /// core: give it back), then sleeps.
    #[cfg(not(any(loom, shuttle)))]
    const SPIN_STEPS: u32 = 4;
    #[cfg(not(any(loom, shuttle)))]
    const YIELD_STEPS: u32 = 64;

    pub(crate) fn new() -> Self {
        Self { step: 0 }
    }

    /// One wait, longer than the one before.
    pub(crate) fn snooze(&mut self) {
        #[cfg(not(any(loom, shuttle)))]
        {
            if self.step < Self::SPIN_STEPS {
                for _ in 0..1u32 << self.step {
                    core::hint::spin_loop();
                }
            } else if self.step < Self::YIELD_STEPS {
                backend::yield_now();
            } else {
                let doublings = (self.step - Self::YIELD_STEPS).min(7);
                std::thread::sleep(std::time::Duration::from_micros(8 << doublings));
            }
            self.step = self.step.saturating_add(1);
        }
        #[cfg(any(loom, shuttle))]
        {
            self.step = self.step.saturating_add(1);
            backend::yield_now();
        }
    }
}
