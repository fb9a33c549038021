//! Small per-thread numbers held exclusively: while a thread holds slot `i`,
//! no other thread does, so data indexed by `i` has one writer and can be
//! updated with a plain load and store instead of a read-modify-write.
//!
//! A thread takes the lowest free slot on first use and gives it back when
//! it exits (its thread-local is destroyed). When all are held, or while the
//! thread is being torn down, it has none and must use shared data.
//!
//! Hand-over: the exiting holder's last writes are ordered before its
//! `Release` store of "free", and the next holder's `Acquire` CAS reads that
//! store, so the next holder's plain load sees every earlier write (I1 of
//! the `stats` module rests on this).

use core::sync::atomic::AtomicBool;
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};

/// How many threads hold a slot at once; later ones share.
pub(crate) const SLOTS: usize = 32;

/// `HELD[i]`: slot `i` is held by a live thread. Plain `std` atomics even
/// under loom and shuttle: they only hand out counter stripes.
static HELD: [AtomicBool; SLOTS] = [const { AtomicBool::new(false) }; SLOTS];

/// This thread's slot, released when the thread exits.
struct Holder(Option<usize>);

impl Holder {
    fn take_free() -> Self {
        Holder((0..SLOTS).find(|&i| {
            // Read first so that a full table costs no writes.
            !HELD[i].load(Relaxed)
                && HELD[i]
                    .compare_exchange(false, true, Acquire, Relaxed)
                    .is_ok()
        }))
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        if let Some(slot) = self.0 {
            HELD[slot].store(false, Release);
        }
    }
}

std::thread_local! {
    static HOLDER: Holder = Holder::take_free();
}

/// The slot this thread holds, if any. `None` when all are held by other
/// threads or this thread's thread-locals are being destroyed.
#[inline]
pub(crate) fn current() -> Option<usize> {
    HOLDER.try_with(|holder| holder.0).ok().flatten()
}

#[cfg(all(test, not(loom), not(shuttle)))]
mod tests {
    use super::*;
    use std::sync::Barrier;

    #[test]
    fn live_threads_hold_distinct_slots() {
        const THREADS: usize = 8;
        let barrier = Barrier::new(THREADS);
        let mut slots: Vec<usize> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|_| {
                    s.spawn(|| {
                        let slot = current();
                        assert_eq!(current(), slot, "stable within a thread");
                        // All alive at once while the slots are compared.
                        barrier.wait();
                        slot
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        })
        .into_iter()
        .map(|slot| slot.expect("fewer live threads than slots"))
        .collect();
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(slots.len(), THREADS, "two live threads shared a slot");
    }

    #[test]
    fn exited_threads_give_their_slots_back() {
        // Without the hand-back, the threads after the first SLOTS get none.
        for _ in 0..2 * SLOTS {
            let slot = std::thread::spawn(current).join().unwrap();
            assert!(slot.is_some(), "slots of exited threads were not freed");
        }
    }
}
