//! The queue: `CoalescingQueue`, its state and invariants (I1-I6), how it
//! is built, and what it tells about itself. Its fields are private to this
//! module: the protocol's steps (`steps.rs`), closing (`close.rs`) and the
//! public offer and take forms (`offer.rs`, `take.rs`, `take_leased.rs`),
//! thin loops around those steps, are its submodules.

pub(crate) mod builder;
mod close;
mod delays;
pub(crate) mod occupancy;
mod offer;
pub(crate) mod producer;
pub(crate) mod slot;
mod steps;
pub(crate) mod take;
mod take_leased;
pub(crate) mod unwind;

pub(crate) use slot::Ticket;
pub(crate) use steps::{Attempt, Ending, LeaseEnd, LeaseStart};

use crate::backoff::Backoff;
use crate::keys::table::KeyTable;
use crate::keys::{Compact, KeyStore};
use crate::policy::InFlightPolicy;
use crate::queue::delays::Delays;
use crate::queue::occupancy::Occupancy;
use crate::queue::slot::Slot;
use crate::stats::{Counter, Counters, Stats};
use crate::sync::{AtomicU8, AtomicUsize, Ordering, Ring};
use crate::wait::Signal;
use core::fmt;
use crossbeam_utils::CachePadded;

/// The hash builder (a [`BuildHasher`](core::hash::BuildHasher)) used when
/// none is given: fast and randomly seeded.
pub type DefaultHashBuilder = foldhash::fast::RandomState;

/// The old name of [`DefaultHashBuilder`] (it is a `BuildHasher`, not a
/// `Hasher` like `std`'s `DefaultHasher`).
#[deprecated(since = "0.2.0", note = "renamed to `DefaultHashBuilder`")]
pub type DefaultHasher = DefaultHashBuilder;

/// A bounded FIFO of compact keys and pass-through items, in which an offer
/// of a key that is already pending is coalesced into the pending copy. The
/// third type parameter picks the key store: a hasher (the general store)
/// or [`Compact`] (the lock-free store for [`CompactKey`](crate::CompactKey)
/// keys); see [the two key stores](crate#the-two-key-stores).
///
/// See the [crate documentation](crate) for a guide and the guarantees.
///
/// ```
/// use coalescing_queue::{CoalescingQueue, Entry, Offered};
///
/// let q = CoalescingQueue::<u64, String>::new(2);
/// assert_eq!(q.try_offer_key(7), Ok(Offered::Enqueued));
/// assert_eq!(q.try_offer_key(7), Ok(Offered::Coalesced)); // still one copy
/// q.try_offer("hello".to_string()).unwrap();
/// assert!(q.try_offer_key(8).unwrap_err().is_full());
/// assert_eq!(q.try_offer_key(7), Ok(Offered::Coalesced)); // even when full
///
/// assert_eq!(q.try_take(), Ok(Entry::Key(7)));
/// assert_eq!(q.try_take(), Ok(Entry::Item("hello".to_string())));
/// q.close();
/// assert!(q.try_take().unwrap_err().is_closed());
/// ```
//
// State and what protects it:
// * `ring`: entries in FIFO order (a queued key as the index of its `keys`
//   entry); linearizable on its own.
// * `keys`: one entry per key queued or in flight, the key's only copy,
//   changed by the transitions E1-E7 of `keys/table.rs`.
// * `occupancy`: claimed slots, in-flight count and the closed bit, in one
//   atomic word (see `occupancy.rs`).
// * `closed`: a read-mostly copy of the closed bit, for the duplicate path.
//
// Invariants, cited in the code as "keeps In":
// * I1 (G3) claimed <= capacity, and a claim is made only while open.
// * I2 Every entry in the ring holds a claim, so a push made with a claim
//   in hand always finds room.
// * I3 ring length <= claimed - in_flight: a lease is counted in flight only
//   after its pop, and leaves the count before its entry is pushed again.
//   So "closed and claimed == in_flight" means nothing is queued or coming.
// * I4 (G2) A key is in `keys` exactly while its index is queued, being
//   pushed, being taken, or while it is leased; a key has at most one
//   entry (T1), and at most one index of it is in the ring.
// * I5 (G1) A key leaves `keys` only after its copy has left the ring (plain
//   take: after the pop; lease: at the ack), so an offer absorbed by a copy
//   is absorbed by one that has not yet been handed to a caller, or (dirty)
//   by a lease whose ack queues the key again.
// * I6 A reservation is never rolled back: the slot is claimed under the
//   key's home insert bit before the key is inserted, so an offer
//   coalesced into a reservation can rely on the push that follows.
pub struct CoalescingQueue<K, V, S = DefaultHashBuilder>
where
    S: KeyStore<K>,
{
    ring: Ring<Slot<V>>,
    keys: KeyTable<K, S::Cells>,
    /// Written by every claim and release: on a cache line of its own, so
    /// that those writes do not evict the read-mostly fields beside it
    /// (the key table's pointers, the waiter counts) from other cores.
    occupancy: CachePadded<Occupancy>,
    /// 1 once closed: what a duplicate offer reads (step 0) instead of the
    /// occupancy word, whose line every claim writes. Set before the
    /// occupancy bit, so a claim that fails as closed implies it is set.
    closed: AtomicU8,
    /// Calls of `close` so far: a `close_and_wait` returns when it changes
    /// (another `close` interrupts the drain, as client-go's `ShutDown`
    /// does during `ShutDownWithDrain`).
    closes: AtomicUsize,
    /// Live [`Producer`](crate::Producer) handles; the last one to go closes.
    producers: AtomicUsize,
    /// Takers wait here: notified once per push, and all at once when the
    /// queue closes or becomes drained after close.
    not_empty: Signal,
    /// Blocked offerers wait here: notified once per freed slot, all at close.
    not_full: Signal,
    /// `close_and_wait` waits here: notified when closed with no claim left.
    finished: Signal,
    /// Entries nacked with a delay, until due; `None` unless built with
    /// `Builder::retries` (`delays.rs`).
    delays: Option<Delays<V>>,
    policy: InFlightPolicy,
    counters: Counters,
    capacity: usize,
}

/// The queue with the compact key store: `CompactQueue<K, V>` is
/// `CoalescingQueue<K, V, Compact>`, for [`CompactKey`](crate::CompactKey) keys.
///
/// ```
/// use coalescing_queue::{CompactQueue, Offered};
///
/// let q = CompactQueue::<(u64, u32), String>::new(8);
/// assert_eq!(q.try_offer_key((1, 2)), Ok(Offered::Enqueued));
/// assert_eq!(q.try_offer_key((1, 2)), Ok(Offered::Coalesced));
/// ```
///
/// # Its builder
///
/// `CompactQueue::<K, V>::builder()` does not exist (error E0599: the
/// `builder` function is the general store's, [`CoalescingQueue::builder`],
/// whose keys must be `Hash`). A builder for the compact store is
/// [`Builder::<K, V, Compact>::new()`](crate::Builder::new), or
/// `Builder::<K, V, Compact<S>>::new()` for a hasher `S` of the packed
/// words (or `.hasher(Compact(s))` on either):
///
/// ```
/// use coalescing_queue::{Builder, Compact, CompactQueue, InFlightPolicy};
///
/// let q: CompactQueue<u64, String> = Builder::<u64, String, Compact>::new()
///     .capacity(1024)
///     .in_flight_policy(InFlightPolicy::Absorb)
///     .build();
/// assert_eq!(q.capacity(), 1024);
/// ```
pub type CompactQueue<K, V, S = DefaultHashBuilder> = CoalescingQueue<K, V, Compact<S>>;

impl<K, V, S> CoalescingQueue<K, V, S>
where
    S: KeyStore<K> + Default,
{
    /// A queue holding at most `capacity` entries (queued plus in flight),
    /// with `InFlightPolicy::Requeue` and the store's default hasher: the
    /// general store (`CoalescingQueue<K, V>`) or the compact one
    /// (`CoalescingQueue<K, V, Compact>`).
    ///
    /// The ring and the key table are allocated here, at full size, and
    /// never grow, shrink or rehash (G7).
    ///
    /// # Panics
    ///
    /// If `capacity` is 0 or above `2^31 - 1`, or if the memory for it
    /// cannot be allocated (the message names the bytes asked for). Use
    /// [`builder`](Self::builder) and [`try_build`](crate::Builder::try_build)
    /// to get an error instead.
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, Compact};
    ///
    /// let q = CoalescingQueue::<u64, String>::new(1024);
    /// assert_eq!(q.capacity(), 1024);
    /// assert!(q.is_empty());
    /// let compact = CoalescingQueue::<u64, String, Compact>::new(1024);
    /// assert_eq!(compact.capacity(), 1024);
    /// ```
    #[track_caller]
    pub fn new(capacity: usize) -> Self {
        crate::Builder::new().capacity(capacity).build()
    }
}

impl<K, V, S> CoalescingQueue<K, V, S>
where
    S: KeyStore<K>,
{
    /// Allocates the queue: the key table first, each of its arrays asked
    /// for fallibly (an error if one is refused), then the ring, which
    /// aborts if its memory is refused (`crossbeam_queue::ArrayQueue` has no
    /// fallible constructor; the builder checks its size before).
    pub(crate) fn try_from_parts(
        capacity: usize,
        policy: InFlightPolicy,
        store: S,
        retries: Option<(Backoff, bool)>,
    ) -> Result<Self, std::collections::TryReserveError> {
        let keys = KeyTable::try_new(capacity, store.try_cells(capacity)?)?;
        let delays = match retries {
            Some((backoff, manual_clock)) => {
                Some(Delays::try_new(capacity, backoff, manual_clock)?)
            }
            None => None,
        };
        Ok(Self {
            ring: Ring::new(capacity),
            keys,
            occupancy: CachePadded::new(Occupancy::new(capacity)),
            closed: AtomicU8::new(0),
            closes: AtomicUsize::new(0),
            producers: AtomicUsize::new(0),
            not_empty: Signal::new(),
            not_full: Signal::new(),
            finished: Signal::new(),
            delays,
            policy,
            counters: Counters::new(),
            capacity,
        })
    }

    // ----- introspection -----

    /// `true` once [`close`](Self::close) has been called.
    ///
    /// ```
    /// use coalescing_queue::CoalescingQueue;
    ///
    /// let q = CoalescingQueue::<u32, String>::new(4);
    /// assert!(!q.is_closed());
    /// q.close();
    /// assert!(q.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        // The flag, not the occupancy bit: it is set first, so an offer
        // refused as closed (by either) always finds this `true`.
        self.closed.load(Ordering::Acquire) != 0
    }

    /// The number of entries queued now, not counting those in flight.
    ///
    /// ```
    /// use coalescing_queue::CoalescingQueue;
    ///
    /// let q = CoalescingQueue::<u32, String>::new(4);
    /// q.offer_key(1).unwrap();
    /// q.offer_key(2).unwrap();
    /// let _lease = q.try_take_leased().unwrap();
    /// assert_eq!((q.len(), q.in_flight()), (1, 1));
    /// ```
    ///
    /// Entries nacked with a delay count once due (this call queues those
    /// that are, as a take would); until then they are in
    /// [`Stats::delayed`](crate::Stats::delayed).
    pub fn len(&self) -> usize {
        self.queue_due();
        self.ring.len()
    }

    /// Queues the delayed entries that are due, if any are delayed (D1 of
    /// `delays.rs`): what `len`, `is_empty` and `stats` report then
    /// agrees with what a take finds.
    fn queue_due(&self) {
        if self.occupancy.load().has_delayed() {
            self.promote_due();
        }
    }

    /// `true` if nothing is queued (entries may still be in flight, or
    /// delayed and not yet due).
    ///
    /// ```
    /// use coalescing_queue::CoalescingQueue;
    ///
    /// let q = CoalescingQueue::<u32, String>::new(4);
    /// assert!(q.is_empty());
    /// q.offer_key(1).unwrap();
    /// assert!(!q.is_empty());
    /// let lease = q.try_take_leased().unwrap();
    /// assert!(q.is_empty()); // in flight, not queued
    /// lease.ack();
    /// ```
    pub fn is_empty(&self) -> bool {
        self.queue_due();
        self.ring.is_empty()
    }

    /// `true` if every slot is claimed (queued plus in flight): a new key or
    /// item would be refused, though a pending key is still coalesced.
    ///
    /// ```
    /// use coalescing_queue::CoalescingQueue;
    ///
    /// let q = CoalescingQueue::<u32, String>::new(1);
    /// q.offer_key(1).unwrap();
    /// assert!(q.is_full());
    /// assert!(q.try_offer_key(1).is_ok()); // coalesced
    /// assert!(q.try_offer_key(2).is_err());
    /// ```
    pub fn is_full(&self) -> bool {
        self.occupancy.load().claimed() >= self.capacity
    }

    /// The number of entries leased and not yet acked or nacked.
    ///
    /// ```
    /// use coalescing_queue::CoalescingQueue;
    ///
    /// let q = CoalescingQueue::<u32, String>::new(4);
    /// q.offer_key(1).unwrap();
    /// let lease = q.try_take_leased().unwrap();
    /// assert_eq!(q.in_flight(), 1);
    /// lease.ack();
    /// assert_eq!(q.in_flight(), 0);
    /// ```
    pub fn in_flight(&self) -> usize {
        self.occupancy.load().in_flight()
    }

    /// The most entries (queued plus in flight) the queue holds.
    ///
    /// ```
    /// use coalescing_queue::CoalescingQueue;
    ///
    /// assert_eq!(CoalescingQueue::<u32, String>::new(16).capacity(), 16);
    /// ```
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The policy for keys offered while in flight.
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, InFlightPolicy};
    ///
    /// let q = CoalescingQueue::<u32, String>::new(4);
    /// assert_eq!(q.in_flight_policy(), InFlightPolicy::Requeue);
    /// ```
    pub fn in_flight_policy(&self) -> InFlightPolicy {
        self.policy
    }

    /// `true` if `key` is pending: queued, or in flight.
    ///
    /// ```
    /// use coalescing_queue::CoalescingQueue;
    ///
    /// let q = CoalescingQueue::<u32, String>::new(4);
    /// q.offer_key(1).unwrap();
    /// assert!(q.is_pending(&1));
    /// q.take().unwrap();
    /// assert!(!q.is_pending(&1));
    /// ```
    pub fn is_pending(&self, key: &K) -> bool {
        self.keys.contains(key)
    }

    /// Counters since the queue was built, and the current depth; see
    /// [`Stats`] for each field. Offers and takes count on a cache line of
    /// their thread's own, with a plain store (beyond 32 live threads, the
    /// rest share four lines and add atomically), so counting adds no shared
    /// write to the hot path. `oldest_lease_age` reads every entry of the
    /// key table once (about 1.25 loads per slot of capacity); nothing is
    /// locked or written.
    ///
    /// ```
    /// use coalescing_queue::CoalescingQueue;
    ///
    /// let q = CoalescingQueue::<u32, String>::new(1);
    /// q.try_offer_key(1).unwrap();
    /// q.try_offer_key(1).unwrap();
    /// assert!(q.try_offer_key(2).is_err());
    /// let stats = q.stats();
    /// assert_eq!((stats.offered, stats.enqueued), (3, 1));
    /// assert_eq!((stats.coalesced_queued, stats.full_rejections), (1, 1));
    /// ```
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        self.queue_due();
        let (delayed, next_due) = self.delayed_now();
        let now = self.occupancy.load();
        let enqueued = c.sum(Counter::Enqueued);
        let coalesced_queued = c.sum(Counter::CoalescedQueued);
        let coalesced_in_flight = c.sum(Counter::CoalescedInFlight);
        let full_rejections = c.sum(Counter::FullRejections);
        let closed_rejections = c.sum(Counter::ClosedRejections);
        Stats {
            offered: enqueued
                + coalesced_queued
                + coalesced_in_flight
                + full_rejections
                + closed_rejections,
            enqueued,
            coalesced: coalesced_queued + coalesced_in_flight,
            coalesced_queued,
            coalesced_in_flight,
            full_rejections,
            closed_rejections,
            taken: c.sum(Counter::Taken),
            acked: c.sum(Counter::Acked),
            nacked: c.sum(Counter::Nacked),
            requeued_dirty: c.sum(Counter::RequeuedDirty),
            delayed_nacks: c.sum(Counter::Delayed),
            queued: self.ring.len(),
            in_flight: now.in_flight(),
            delayed,
            next_due,
            high_water_mark: c.high_water_mark(),
            oldest_lease_age: self.keys.oldest_lease_age(),
        }
    }

    /// The number of keys pending (queued or in flight), for tests of G6.
    #[doc(hidden)]
    pub fn pending_keys(&self) -> usize {
        self.keys.len()
    }

    /// The claimed slots, for tests of G3 and G6.
    #[doc(hidden)]
    pub fn claimed_slots(&self) -> usize {
        self.occupancy.load().claimed()
    }

    /// The sum of the key table's overflow counts, for tests of its T2: 0
    /// once no key lives past its home bucket.
    #[doc(hidden)]
    pub fn overflow_counts(&self) -> u64 {
        self.keys.overflow_total()
    }
}

impl<K, V, S> Drop for CoalescingQueue<K, V, S>
where
    S: KeyStore<K>,
{
    /// Drops every queued item, each in its turn even if one's `Drop`
    /// panics, then resumes the first panic, unless the thread is already
    /// unwinding (the queue dropped during another panic's cleanup): a
    /// panic leaving a `Drop` then would abort the process, so the caught
    /// payload is dropped instead. (`ArrayQueue`'s own drop stops at a
    /// panicking value and leaks the rest. Under loom and shuttle the ring
    /// is the checkers' own, the `Mutex<VecDeque>` shim or, with
    /// `--cfg coalescing_loom_ring="concurrent_queue"`, concurrent-queue's
    /// bounded ring; it is left to its own drop, so that a model's teardown
    /// adds no steps.) Keys are in the key table, whose slices drop every
    /// element even when one panics.
    fn drop(&mut self) {
        #[cfg(not(any(loom, shuttle)))]
        {
            let mut first_panic = None;
            while let Some(entry) = self.ring.pop() {
                let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    drop(entry);
                }));
                if let Err(panic) = dropped {
                    first_panic.get_or_insert(panic);
                }
            }
            if let Some(panic) = first_panic {
                if std::thread::panicking() {
                    // Unwinding already: a second panic out of this drop
                    // would abort. The first panic goes on unwinding.
                    drop(panic);
                } else {
                    std::panic::resume_unwind(panic);
                }
            }
        }
    }
}

impl<K, V, S> fmt::Debug for CoalescingQueue<K, V, S>
where
    S: KeyStore<K>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let now = self.occupancy.load();
        f.debug_struct("CoalescingQueue")
            .field("capacity", &self.capacity)
            .field("claimed", &now.claimed())
            .field("in_flight", &now.in_flight())
            .field("closed", &now.is_closed())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}
