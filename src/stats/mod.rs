//! Operation counters and the public `Stats` snapshot.
//!
//! Counters are striped so that counting never makes threads write a shared
//! cache line, and mostly without a read-modify-write:
//! * I1 An owned stripe (index < `thread_slot::SLOTS`) is written only by the
//!   thread holding that slot, with a plain load and store: one writer, so
//!   no add is lost (hand-over between holders: `thread_slot`).
//! * I2 A shared stripe (the rest) is used by threads without a slot, and
//!   only with `fetch_add`.
//!
//! A snapshot sums the stripes; counts taken while operations run are each
//! exact at some instant, not all at the same one.

mod thread_slot;

use crate::sync::StatCell;
use core::sync::atomic::Ordering::Relaxed;
use core::time::Duration;
use crossbeam_utils::CachePadded;
use thread_slot::SLOTS;

/// What happened to a queue since it was built, and where it stands now.
///
/// ```
/// use coalescing_queue::CoalescingQueue;
///
/// let q = CoalescingQueue::<u32, String>::new(4);
/// q.try_offer_key(1).unwrap();
/// q.try_offer_key(1).unwrap();
/// q.try_offer("item".to_string()).unwrap();
/// q.try_take().unwrap();
///
/// let stats = q.stats();
/// assert_eq!(stats.offered, 3);
/// assert_eq!(stats.enqueued, 2); // one key copy, one item
/// assert_eq!(stats.coalesced, 1);
/// assert_eq!(stats.taken, 1);
/// assert_eq!(stats.queued, 1);
/// assert_eq!(stats.high_water_mark, 2);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Offers of keys and items, accepted or not.
    pub offered: u64,
    /// Offers that put a new entry (a key copy or an item) into the queue.
    pub enqueued: u64,
    /// Key offers absorbed by a pending copy: `coalesced_queued +
    /// coalesced_in_flight` .
    pub coalesced: u64,
    /// Key offers absorbed by a queued copy of the same key.
    pub coalesced_queued: u64,
    /// Key offers absorbed by an in-flight copy (marked for requeue under
    /// `InFlightPolicy::Requeue`, dropped under `InFlightPolicy::Absorb`).
    pub coalesced_in_flight: u64,
    /// Offers refused because the queue was full (`Full` or `Timeout`).
    pub full_rejections: u64,
    /// Offers refused because the queue was closed.
    pub closed_rejections: u64,
    /// Entries taken, plain or leased.
    pub taken: u64,
    /// Leases acknowledged.
    pub acked: u64,
    /// Leases nacked or dropped (their entry queued again).
    pub nacked: u64,
    /// Keys queued again because they were offered while in flight.
    pub requeued_dirty: u64,
    /// Leases nacked with a delay ([`nack_after`], [`nack_backoff`]) that
    /// went into the delay schedule; also counted in `nacked`.
    ///
    /// [`nack_after`]: crate::LeaseIn::nack_after
    /// [`nack_backoff`]: crate::LeaseIn::nack_backoff
    pub delayed_nacks: u64,
    /// Entries queued right now (not counting those in flight).
    pub queued: usize,
    /// Entries leased and not yet acked or nacked.
    pub in_flight: usize,
    /// Entries nacked with a delay that are not yet due (not counted in
    /// `queued` or `in_flight`; they hold their slots).
    pub delayed: usize,
    /// How long until the first delayed entry falls due (zero if it is
    /// due and no take has queued it yet); `None` if nothing is delayed.
    pub next_due: Option<Duration>,
    /// The most slots ever claimed at once (queued + in flight).
    pub high_water_mark: usize,
    /// How long the oldest lease still out has been out, to the
    /// millisecond. Lease start times are kept in 32 bits of milliseconds
    /// since the queue was built, so an age is exact up to 49.7 days less
    /// an hour and wraps after that; a lease that begins while `stats()`
    /// reads counts as 0 ms old.
    pub oldest_lease_age: Option<Duration>,
}

impl Stats {
    /// All coalesced key offers, into queued and in-flight copies: the
    /// `coalesced` field, which this method was kept beside by mistake.
    #[deprecated(since = "0.2.0", note = "read the `coalesced` field")]
    pub fn coalesced(&self) -> u64 {
        self.coalesced_queued + self.coalesced_in_flight
    }
}

/// One counter of `Counters`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Counter {
    Enqueued,
    CoalescedQueued,
    CoalescedInFlight,
    FullRejections,
    ClosedRejections,
    Taken,
    Acked,
    Nacked,
    RequeuedDirty,
    Delayed,
}

const COUNTERS: usize = Counter::Delayed as usize + 1;

type Stripe = CachePadded<[StatCell; COUNTERS]>;

/// Stripes shared by threads without a slot (I2), picked round-robin.
const SHARED: usize = 4;

pub(crate) struct Counters {
    /// `SLOTS` owned stripes (I1), then `SHARED` shared ones (I2).
    stripes: Box<[Stripe]>,
    high_water_mark: CachePadded<StatCell>,
}

impl Counters {
    pub(crate) fn new() -> Self {
        Self {
            stripes: (0..SLOTS + SHARED)
                .map(|_| CachePadded::new(core::array::from_fn(|_| StatCell::new(0))))
                .collect(),
            high_water_mark: CachePadded::new(StatCell::new(0)),
        }
    }

    #[inline]
    pub(crate) fn add(&self, counter: Counter) {
        self.add_many(counter, 1);
    }

    /// Relaxed throughout: a counter is only ever summed for a report; it
    /// orders nothing.
    #[inline]
    pub(crate) fn add_many(&self, counter: Counter, count: usize) {
        let count = count as u64;
        match thread_slot::current() {
            None => {
                self.stripes[SLOTS + shared_stripe()][counter as usize].fetch_add(count, Relaxed);
            }
            Some(slot) => {
                // One writer (I1): the load cannot miss an add.
                let cell = &self.stripes[slot][counter as usize];
                cell.store(cell.load(Relaxed) + count, Relaxed);
            }
        }
    }

    /// Raises the high-water mark to `claimed` if it is higher. Reads first so
    /// that the common case (no new mark) writes nothing shared.
    #[inline]
    pub(crate) fn note_claimed(&self, claimed: usize) {
        let claimed = claimed as u64;
        if claimed > self.high_water_mark.load(Relaxed) {
            self.high_water_mark.fetch_max(claimed, Relaxed);
        }
    }

    pub(crate) fn high_water_mark(&self) -> usize {
        self.high_water_mark.load(Relaxed) as usize
    }

    pub(crate) fn sum(&self, counter: Counter) -> u64 {
        self.stripes
            .iter()
            .map(|stripe| stripe[counter as usize].load(Relaxed))
            .sum()
    }
}

/// A shared stripe for this thread (one without a slot), round-robin.
fn shared_stripe() -> usize {
    use core::cell::Cell;
    use core::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::thread_local! {
        static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    STRIPE
        .try_with(|stripe| {
            if stripe.get() == usize::MAX {
                stripe.set(NEXT.fetch_add(1, Relaxed) % SHARED);
            }
            stripe.get()
        })
        // A thread being torn down counts on shared stripe 0.
        .unwrap_or(0)
}
