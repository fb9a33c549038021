//! The delay schedule: entries nacked with a delay wait here, ordered by
//! due time, until a take finds them due and queues them at the tail.
//! Allocated at build, and only for a queue built with
//! [`Builder::retries`](crate::Builder::retries).
//!
//! Rules (cited as "keeps Dn"):
//! * D1 The occupancy word's delayed bit is set exactly while the schedule
//!   holds an entry; both change only under the schedule's lock. A take
//!   reads the bit in the word its own update returns (`account_taken`),
//!   or in the word it reads when the ring is empty, so where nothing is
//!   delayed the take pays a bit test and nothing else.
//! * D2 A delayed entry holds its claim and is not in flight (its lease
//!   ended, `unlease_delayed`). A delayed key's table entry is `Queued`
//!   (the nack's E6), so offers coalesce into it, and merge into its value,
//!   as into any queued key; no take finds it, since its index is not in
//!   the ring. I3 holds: the delayed are among the claims not in the ring.
//! * D3 An entry leaves the schedule only into the ring, pushed under the
//!   lock in order of (due time, order of delaying): when due, or at close.
//!   Nothing else removes one, so none is lost or queued twice.
//! * D4 Close moves every delayed entry into the ring (they fall due at
//!   close), under the lock, after setting the closed flag; a delayed nack
//!   reads that flag under the lock and, once closed, queues its entry at
//!   once. So no entry waits in the schedule after close has emptied it,
//!   and a drain never waits out a backoff.
//! * D5 A delayed nack that makes its due time the earliest stores it in
//!   `next_due`, then wakes every waiting taker (the event's notify fences,
//!   as F2): a taker that registered before its re-check reads the new
//!   `next_due` there or is woken, and sleeps at most until then (no lost
//!   wake-up, G5). Every one: a taker whose own timeout comes first may
//!   leave with the news, while one without a timeout sleeps on.
//!
//! A lock, not a lock-free structure: delays are the slow path of a failed
//! delivery, and the lock is held for a heap step and a few ring pushes,
//! never for user code.

use super::slot::Slot;
use super::CoalescingQueue;
use crate::backoff::Backoff;
use crate::keys::KeyStore;
use crate::sync::{AtomicU64, Mutex, MutexGuard, Ordering};
use std::collections::TryReserveError;
use std::time::{Duration, Instant};

/// `next_due` when nothing is delayed (also the due time of a delay of
/// `Duration::MAX`: such an entry falls due at close only, since the real
/// clock never gets there: 584 years after build).
const NONE_DUE: u64 = u64::MAX;

/// The time delays are measured in: nanoseconds since the queue was built,
/// on the monotonic clock, or on a clock moved by hand (the crate's tests
/// and models: `CoalescingQueue::advance_clock`).
pub(crate) enum Clock {
    Real(Instant),
    Manual(AtomicU64),
}

impl Clock {
    pub(crate) fn now(&self) -> u64 {
        match self {
            Clock::Real(epoch) => saturating_nanos(epoch.elapsed()),
            Clock::Manual(now) => now.load(Ordering::Acquire),
        }
    }

    /// When `due` is, as an `Instant` a taker can sleep until; `None` on
    /// the manual clock, whose advance wakes every taker instead.
    fn instant(&self, due: u64) -> Option<Instant> {
        match self {
            Clock::Real(epoch) => epoch.checked_add(Duration::from_nanos(due)),
            Clock::Manual(_) => None,
        }
    }
}

fn saturating_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// One delayed entry: what goes into the ring when it falls due.
struct Timer<V> {
    due: u64,
    /// The order of delaying, among entries with one due time (a batch
    /// nacked with one delay falls due in its order). Counted from 0 again
    /// whenever the schedule empties.
    order: u32,
    slot: Slot<V>,
}

impl<V> Timer<V> {
    fn before(&self, other: &Self) -> bool {
        (self.due, self.order) < (other.due, other.order)
    }
}

/// A binary min-heap of timers, in a `Vec` reserved at build for every
/// slot of the queue: an entry is delayed only with its claim (D2), so it
/// never grows (G7).
struct Schedule<V> {
    heap: Vec<Timer<V>>,
    next_order: u32,
}

impl<V> Schedule<V> {
    fn insert(&mut self, due: u64, slot: Slot<V>) {
        debug_assert!(self.heap.len() < self.heap.capacity(), "breaks D2");
        let order = self.next_order;
        self.next_order = order.wrapping_add(1);
        self.heap.push(Timer { due, order, slot });
        let mut child = self.heap.len() - 1;
        while child > 0 {
            let parent = (child - 1) / 2;
            if !self.heap[child].before(&self.heap[parent]) {
                break;
            }
            self.heap.swap(child, parent);
            child = parent;
        }
    }

    /// The earliest timer, if it is due by `now`, out of the heap.
    fn pop_due(&mut self, now: u64) -> Option<Slot<V>> {
        if self.heap.first()?.due > now {
            return None;
        }
        let last = self.heap.len() - 1;
        self.heap.swap(0, last);
        let earliest = self.heap.pop()?;
        let len = self.heap.len();
        let mut parent = 0;
        loop {
            let (left, right) = (2 * parent + 1, 2 * parent + 2);
            let mut first = parent;
            if left < len && self.heap[left].before(&self.heap[first]) {
                first = left;
            }
            if right < len && self.heap[right].before(&self.heap[first]) {
                first = right;
            }
            if first == parent {
                break;
            }
            self.heap.swap(parent, first);
            parent = first;
        }
        if self.heap.is_empty() {
            self.next_order = 0;
        }
        Some(earliest.slot)
    }

    fn next_due(&self) -> u64 {
        self.heap.first().map_or(NONE_DUE, |timer| timer.due)
    }
}

/// A queue's delayed entries, its backoff and its clock.
pub(crate) struct Delays<V> {
    schedule: Mutex<Schedule<V>>,
    /// The earliest due time, `NONE_DUE` if nothing is delayed: what a
    /// take compares the clock with before it locks, and what a waiting
    /// taker sleeps until (D5). Written under the lock.
    next_due: AtomicU64,
    pub(crate) backoff: Backoff,
    pub(crate) clock: Clock,
}

impl<V> Delays<V> {
    pub(crate) fn try_new(
        capacity: usize,
        backoff: Backoff,
        manual_clock: bool,
    ) -> Result<Self, TryReserveError> {
        let mut heap = Vec::new();
        heap.try_reserve_exact(capacity)?;
        Ok(Self {
            schedule: Mutex::new(Schedule {
                heap,
                next_order: 0,
            }),
            next_due: AtomicU64::new(NONE_DUE),
            backoff,
            clock: if manual_clock {
                Clock::Manual(AtomicU64::new(0))
            } else {
                Clock::Real(Instant::now())
            },
        })
    }

    /// The bytes the schedule allocates per slot of capacity.
    pub(crate) const BYTES_PER_SLOT: usize = core::mem::size_of::<Timer<V>>();

    fn lock(&self) -> MutexGuard<'_, Schedule<V>> {
        // No user code runs under the lock (no key or item is dropped or
        // compared there), so a poisoned lock holds a whole heap.
        self.schedule
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The due time `delay` from now.
    pub(crate) fn due_after(&self, delay: Duration) -> u64 {
        self.clock.now().saturating_add(saturating_nanos(delay))
    }

    /// Publishes the heap's earliest due time (D5).
    fn store_next_due(&self, schedule: &Schedule<V>) {
        // Release: a taker that reads it reads the clock after.
        self.next_due.store(schedule.next_due(), Ordering::Release);
    }
}

impl<K, V, S> CoalescingQueue<K, V, S>
where
    S: KeyStore<K>,
{
    /// The delay schedule; a queue built without `Builder::retries` has
    /// none, and its leases cannot be nacked with a delay.
    #[track_caller]
    pub(crate) fn delays(&self) -> &Delays<V> {
        match &self.delays {
            Some(delays) => delays,
            None => panic!(
                "a delay (nack_after, nack_backoff, offer_key_after) on a queue built \
                 without `Builder::retries`: build it with `.retries(Backoff::default())` \
                 (or another Backoff)"
            ),
        }
    }

    /// The delay `nack_backoff` gives a lease's `attempt`, jittered as the
    /// backoff says.
    #[track_caller]
    pub(crate) fn backoff_delay(&self, attempt: u32) -> Duration {
        let backoff = &self.delays().backoff;
        let unit = if backoff.jitter() == 0.0 {
            0.0
        } else {
            crate::backoff::unit_draw()
        };
        backoff.jittered(attempt, unit)
    }

    /// Puts an entry into the schedule until `due` (D2): one whose lease
    /// ended (`leased`: counted in flight until here), or a new key's copy
    /// offered with a delay. Once closed, queues it at once (D4). `slot`'s
    /// claim is held.
    pub(super) fn delay(&self, slot: Slot<V>, due: u64, leased: bool) {
        let delays = self.delays();
        let mut schedule = delays.lock();
        // Acquire: after a close whose drain of the schedule came before
        // this lock (D4).
        if self.closed.load(Ordering::Acquire) != 0 {
            drop(schedule);
            if leased {
                self.occupancy.unlease();
            }
            self.push(slot);
            return;
        }
        if leased {
            self.counters.add(crate::stats::Counter::Delayed);
        }
        let first = schedule.heap.is_empty();
        schedule.insert(due, slot);
        let earliest = due < delays.next_due.load(Ordering::Relaxed);
        if earliest {
            delays.store_next_due(&schedule);
        }
        // After `next_due`: a take that sees the bit in the word its update
        // returns (AcqRel) also sees the due time. Keeps D1 (the bit set
        // with the first entry) and D2.
        if leased {
            self.occupancy.unlease_delayed(first);
        } else if first {
            self.occupancy.mark_delayed();
        }
        drop(schedule);
        if earliest {
            // D5: every waiting taker looks again and sleeps until the new
            // earliest due time at most. All of them, not one: a taker
            // woken for it may be one whose own deadline comes first, and
            // it would time out with the news while another slept on.
            self.not_empty.notify_all();
        }
    }

    /// Queues every delayed entry that is due, in order (D3); returns how
    /// many. What a take calls when the delayed bit is set (D1): looks at
    /// the clock, and locks only if something is due.
    #[cold]
    #[inline(never)]
    pub(super) fn promote_due(&self) -> usize {
        let Some(delays) = &self.delays else {
            return 0;
        };
        let now = delays.clock.now();
        // Acquire: pairs with `store_next_due`.
        if delays.next_due.load(Ordering::Acquire) > now {
            return 0;
        }
        self.move_to_ring(delays, now)
    }

    /// Moves every entry due by `now` from the schedule into the ring, in
    /// order, under the lock (D3); keeps D1 and D5.
    fn move_to_ring(&self, delays: &Delays<V>, now: u64) -> usize {
        let mut schedule = delays.lock();
        let mut moved = 0;
        while let Some(slot) = schedule.pop_due(now) {
            // Its claim is held (D2): the push finds room (I2).
            self.push(slot);
            moved += 1;
        }
        if moved > 0 {
            delays.store_next_due(&schedule);
            // By the heap, not by `NONE_DUE`: an entry delayed for ever
            // (`Duration::MAX`) is due at that very value.
            if schedule.heap.is_empty() {
                self.occupancy.clear_delayed();
            }
        }
        moved
    }

    /// At close: every delayed entry falls due (D4).
    pub(super) fn release_delayed(&self) {
        if let Some(delays) = &self.delays {
            self.move_to_ring(delays, u64::MAX);
        }
    }

    /// When a waiting taker must look again: the earliest due time, on the
    /// real clock (the manual clock's advance wakes every taker instead).
    pub(super) fn next_due_instant(&self) -> Option<Instant> {
        let delays = self.delays.as_ref()?;
        match delays.next_due.load(Ordering::Acquire) {
            NONE_DUE => None,
            due => delays.clock.instant(due),
        }
    }

    /// How many entries are delayed, and how long until the first is due
    /// (zero if it is due already); for `stats`.
    pub(super) fn delayed_now(&self) -> (usize, Option<Duration>) {
        let Some(delays) = &self.delays else {
            return (0, None);
        };
        let schedule = delays.lock();
        let count = schedule.heap.len();
        let next = schedule
            .heap
            .first()
            .map(|timer| Duration::from_nanos(timer.due.saturating_sub(delays.clock.now())));
        (count, next)
    }

    /// Moves the manual clock on by `by` and wakes every taker, which
    /// queue what fell due. For tests of delays: a queue built
    /// with the hidden `Builder::manual_clock`.
    ///
    /// # Panics
    ///
    /// If the queue was not built with a manual clock.
    #[doc(hidden)]
    pub fn advance_clock(&self, by: Duration) {
        let delays = self.delays();
        let Clock::Manual(now) = &delays.clock else {
            panic!("advance_clock: the queue was not built with `Builder::manual_clock`");
        };
        let by = saturating_nanos(by);
        // Saturating: the clock never goes back.
        let _ = now.fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
            Some(now.saturating_add(by))
        });
        // The takers queue what fell due (D1): they look at the clock.
        self.not_empty.notify_all();
    }
}

#[cfg(all(test, not(loom), not(shuttle)))]
mod tests {
    use super::*;

    /// What `Builder::retries` and the crate docs say a slot costs.
    #[test]
    fn a_timer_is_sixteen_bytes_more_than_a_ring_slot() {
        fn said<V>() -> usize {
            (16 + core::mem::size_of::<crate::Entry<u32, V>>()).next_multiple_of(8)
        }
        assert_eq!(Delays::<()>::BYTES_PER_SLOT, 24);
        assert_eq!(Delays::<u32>::BYTES_PER_SLOT, said::<u32>());
        assert_eq!(Delays::<Box<[u8; 64]>>::BYTES_PER_SLOT, 32);
        assert_eq!(Delays::<String>::BYTES_PER_SLOT, said::<String>());
    }

    #[test]
    fn the_heap_pops_by_due_time_then_by_order_of_delaying() {
        let mut schedule = Schedule::<()> {
            heap: Vec::with_capacity(8),
            next_order: 0,
        };
        for (due, index) in [(5, 0), (1, 1), (5, 2), (3, 3), (1, 4), (9, 5)] {
            schedule.insert(due, Slot::Again(index));
        }
        assert_eq!(schedule.next_due(), 1);
        let mut popped = Vec::new();
        while let Some(slot) = schedule.pop_due(5) {
            match slot {
                Slot::Again(index) => popped.push(index),
                _ => unreachable!(),
            }
        }
        assert_eq!(popped, [1, 4, 3, 0, 2]);
        assert_eq!(schedule.next_due(), 9);
        assert!(schedule.pop_due(8).is_none());
        assert!(schedule.pop_due(9).is_some());
        assert_eq!(schedule.next_due(), NONE_DUE);
        assert_eq!(schedule.next_order, 0, "counted from 0 again once empty");
    }
}
