//! `CoalescingQueue`: its state, its invariants and the protocol's steps.
//!
//! The public offer and take forms live in `offer.rs` and `take.rs`; they
//! are thin loops around the single attempts defined here.

use crate::entry::{Entry, Offered};
use crate::key_store::{Compact, KeyStore};
use crate::key_table::{Ended, KeyTable, Offer};
use crate::occupancy::{ClaimError, Occupancy, Snapshot};
use crate::policy::InFlightPolicy;
use crate::stats::{Counter, Counters, Stats};
use crate::sync::{AtomicU8, AtomicUsize, Ordering, Ring};
use crate::unwind::Undo;
use crate::wait::{self, Signal, Step};
use crate::TryTakeError;
use core::fmt;
use crossbeam_utils::CachePadded;
use std::time::{Duration, Instant};

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
//   changed by the transitions E1-E7 of `key_table.rs`.
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
    pub(crate) ring: Ring<Entry<u32, V>>,
    pub(crate) keys: KeyTable<K, S::Cells>,
    /// Written by every claim and release: on a cache line of its own, so
    /// that those writes do not evict the read-mostly fields beside it
    /// (the key table's pointers, the waiter counts) from other cores.
    pub(crate) occupancy: CachePadded<Occupancy>,
    /// 1 once closed: what a duplicate offer reads (step 0) instead of the
    /// occupancy word, whose line every claim writes. Set before the
    /// occupancy bit, so a claim that fails as closed implies it is set.
    closed: AtomicU8,
    /// Calls of `close` so far: a `close_and_wait` returns when it changes
    /// (another `close` interrupts the drain, as client-go's `ShutDown`
    /// does during `ShutDownWithDrain`).
    closes: AtomicUsize,
    /// Live [`Producer`](crate::Producer) handles; the last one to go closes.
    pub(crate) producers: AtomicUsize,
    /// Takers wait here: notified once per push, and all at once when the
    /// queue closes or becomes drained after close.
    pub(crate) not_empty: Signal,
    /// Blocked offerers wait here: notified once per freed slot, all at close.
    pub(crate) not_full: Signal,
    /// `close_and_wait` waits here: notified when closed with no claim left.
    pub(crate) finished: Signal,
    pub(crate) policy: InFlightPolicy,
    pub(crate) counters: Counters,
    capacity: usize,
    /// MUTANT: deliver_before_remove: keys whose removal a take deferred.
    #[cfg(coalescing_mutant = "deliver_before_remove")]
    deferred: std::sync::Mutex<Vec<u32>>,
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
pub type CompactQueue<K, V, S = DefaultHashBuilder> = CoalescingQueue<K, V, Compact<S>>;

/// One attempt to offer, before any waiting.
pub(crate) enum Attempt<T, R> {
    Done(R),
    Full(T),
    Closed(T),
}

/// The entries one take or batch has popped, not yet in the shared counts:
/// counted when this is dropped (after the last pop, I3), also when user
/// code panics half way through a batch, so that no claim is leaked.
pub(crate) struct Pops<'q, K, V, S: KeyStore<K>> {
    queue: &'q CoalescingQueue<K, V, S>,
    leased: bool,
    count: usize,
}

impl<'q, K, V, S: KeyStore<K>> Pops<'q, K, V, S> {
    fn new(queue: &'q CoalescingQueue<K, V, S>, leased: bool) -> Self {
        Self {
            queue,
            leased,
            count: 0,
        }
    }
}

impl<K, V, S: KeyStore<K>> Drop for Pops<'_, K, V, S> {
    fn drop(&mut self) {
        if self.count > 0 {
            self.queue.account_taken(self.leased, self.count);
        }
    }
}

/// How a lease ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeaseEnd {
    Ack,
    Nack,
}

/// A leased take's start: when, and its tick in the key table.
#[derive(Clone, Copy)]
pub(crate) struct LeaseStart {
    pub(crate) at: Instant,
    tick: u64,
}

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
    /// If `capacity` is 0 or above `2^31 - 1`. Use
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
    pub fn new(capacity: usize) -> Self {
        crate::Builder::new().capacity(capacity).build()
    }
}

impl<K, V, S> CoalescingQueue<K, V, S>
where
    S: KeyStore<K>,
{
    pub(crate) fn from_parts(capacity: usize, policy: InFlightPolicy, store: S) -> Self {
        Self {
            ring: Ring::new(capacity),
            keys: KeyTable::new(capacity, store.cells(capacity)),
            occupancy: CachePadded::new(Occupancy::new(capacity)),
            closed: AtomicU8::new(0),
            closes: AtomicUsize::new(0),
            producers: AtomicUsize::new(0),
            not_empty: Signal::new(),
            not_full: Signal::new(),
            finished: Signal::new(),
            policy,
            counters: Counters::new(),
            capacity,
            #[cfg(coalescing_mutant = "deliver_before_remove")]
            deferred: std::sync::Mutex::new(Vec::new()),
        }
    }

    // ----- the protocol's single steps -----

    /// One attempt to offer `key` (DESIGN.md section 3, steps 0-5).
    #[inline(always)]
    pub(crate) fn attempt_offer_key(&self, key: K) -> Attempt<K, Offered> {
        // Steps 0-3 (`KeyTable::offer`).
        let offered = self.keys.offer(
            key,
            self.policy == InFlightPolicy::Requeue,
            // Acquire: nothing is read through it; it orders this offer
            // after a close that a racing take may already have reported.
            || self.closed.load(Ordering::Acquire) != 0,
            // The claim, under the key's home insert bit: keeps I6.
            || {
                let after = self.occupancy.try_claim()?;
                self.counters.note_claimed(after.claimed());
                Ok(())
            },
        );
        match offered {
            Offer::Inserted(index) => {
                // Steps 4-5.
                self.push(Entry::Key(index));
                self.counters.add(Counter::Enqueued);
                Attempt::Done(Offered::Enqueued)
            }
            Offer::Coalesced { in_flight } => {
                self.counters.add(if in_flight {
                    Counter::CoalescedInFlight
                } else {
                    Counter::CoalescedQueued
                });
                Attempt::Done(Offered::Coalesced)
            }
            Offer::Refused(key, ClaimError::Full) => Attempt::Full(key),
            Offer::Refused(key, ClaimError::Closed) => Attempt::Closed(key),
        }
    }

    /// One attempt to offer a pass-through item: claim, push, notify.
    pub(crate) fn attempt_offer_item(&self, item: V) -> Attempt<V, ()> {
        match self.occupancy.try_claim() {
            Ok(after) => {
                self.counters.note_claimed(after.claimed());
                self.push(Entry::Item(item));
                self.counters.add(Counter::Enqueued);
                Attempt::Done(())
            }
            Err(ClaimError::Full) => Attempt::Full(item),
            Err(ClaimError::Closed) => Attempt::Closed(item),
        }
    }

    /// Pushes an entry whose claim is held, then wakes one taker.
    fn push(&self, entry: Entry<u32, V>) {
        if self.ring.push(entry).is_err() {
            unreachable!("the ring had no room for a claimed slot (breaks I2)");
        }
        self.not_empty.notify_one();
    }

    /// A leased take's start time, read once per take or batch.
    pub(crate) fn lease_start(&self) -> LeaseStart {
        let at = Instant::now();
        LeaseStart {
            at,
            tick: self.keys.tick(at),
        }
    }

    /// One attempt to take (DESIGN.md section 3, "Take"). A leased take keeps
    /// the claim and marks the key in flight; a plain take releases both.
    /// Returns the entry and, for a lease, the index it ends by.
    pub(crate) fn attempt_take(
        &self,
        lease: Option<LeaseStart>,
    ) -> Result<(Entry<K, V>, u32), TryTakeError> {
        let mut pops = Pops::new(self, lease.is_some());
        let taken = self.pop_one(lease, &mut pops);
        drop(pops);
        taken.ok_or_else(|| self.why_empty())
    }

    /// Takes up to `limit` entries at once into `out` (and, for a lease,
    /// their indexes into `indexes`), with one update of the shared counts
    /// for all of them (a batch frees its slots, counts its leases and wakes
    /// offerers in one step each). Returns how many.
    pub(crate) fn attempt_take_many(
        &self,
        lease: Option<LeaseStart>,
        limit: usize,
        out: &mut Vec<Entry<K, V>>,
        mut indexes: Option<&mut Vec<u32>>,
    ) -> Result<usize, TryTakeError> {
        let mut pops = Pops::new(self, lease.is_some());
        while pops.count < limit {
            let Some((entry, index)) = self.pop_one(lease, &mut pops) else {
                break;
            };
            out.push(entry);
            if let Some(indexes) = indexes.as_deref_mut() {
                indexes.push(index);
            }
        }
        let taken = pops.count;
        drop(pops);
        if taken == 0 {
            return Err(self.why_empty());
        }
        Ok(taken)
    }

    /// The ring was empty: closed and drained, or just empty for now.
    fn why_empty(&self) -> TryTakeError {
        if self.occupancy.load().is_drained() {
            TryTakeError::Closed
        } else {
            TryTakeError::Empty
        }
    }

    /// After `count` pops: a leased take counts them in flight (keeping
    /// their claims); a plain take releases their claims and wakes as many
    /// blocked offerers. Always after the pops: keeps I3.
    fn account_taken(&self, leased: bool, count: usize) {
        let after = if leased {
            self.occupancy.lease_many(count)
        } else {
            let after = self.occupancy.release_many(count);
            // The release was a SeqCst RMW: no fence needed.
            self.not_full.notify_after_seqcst_change(count);
            after
        };
        self.counters.add_many(Counter::Taken, count);
        self.after_decrease(after);
    }

    /// Pops the head and updates its key's entry: the pop and the key
    /// change of a take, counted in `pops` for the shared counts. For a
    /// lease, also the index the lease ends by (the key's entry, or the
    /// item's start time).
    fn pop_one(
        &self,
        lease: Option<LeaseStart>,
        pops: &mut Pops<'_, K, V, S>,
    ) -> Option<(Entry<K, V>, u32)> {
        // MUTANT: deliver_before_remove: the removals the last take deferred.
        #[cfg(coalescing_mutant = "deliver_before_remove")]
        {
            // Out of the std lock before the table (a model point).
            let deferred = core::mem::take(&mut *self.deferred.lock().unwrap());
            for earlier in deferred {
                drop(self.keys.take(earlier, None));
            }
        }
        // MUTANT: delete_before_pop: removes the key while its index is
        // still in the ring, so an offer can push a second copy (breaks I4, I5).
        #[cfg(coalescing_mutant = "delete_before_pop")]
        let removed_early = match lease {
            Some(_) => None,
            None => self
                .ring
                .mutant_peek(|head| match head {
                    Some(Entry::Key(index)) => Some(*index),
                    _ => None,
                })
                .map(|index| (index, self.keys.take(index, None))),
        };
        let index = match self.ring.pop()? {
            Entry::Item(item) => {
                let record = lease.map_or(u32::MAX, |lease| self.keys.start_item_lease(lease.tick));
                pops.count += 1;
                return Some((Entry::Item(item), record));
            }
            Entry::Key(index) => index,
        };
        // The key's entry changes only after the pop: keeps I4 and I5.
        #[cfg(not(any(
            coalescing_mutant = "delete_before_pop",
            coalescing_mutant = "deliver_before_remove"
        )))]
        let key = {
            // User code in the take (the key's `Clone`, `Hash` or unpack)
            // runs before the entry changes (key_table.rs, `take`): if it
            // panics, the entry is still queued, so its index goes back
            // into the ring (at the tail; its claim is still held, I2).
            let put_back = Undo::new(|| self.push(Entry::Key(index)));
            let key = self.keys.take(index, lease.map(|lease| lease.tick));
            put_back.disarm();
            key
        };
        #[cfg(coalescing_mutant = "delete_before_pop")]
        let key = match removed_early {
            Some((early, key)) if early == index => key,
            _ => self.keys.take(index, lease.map(|lease| lease.tick)),
        };
        // MUTANT: deliver_before_remove: the key leaves the table only at
        // the next take, after this one has returned it (breaks I5).
        #[cfg(coalescing_mutant = "deliver_before_remove")]
        let key = match lease {
            Some(lease) => self.keys.take(index, Some(lease.tick)),
            None => {
                let key = self.keys.key_of(index);
                self.deferred.lock().unwrap().push(index);
                key
            }
        };
        pops.count += 1;
        Some((Entry::Key(key), index))
    }

    /// Ends one lease: ack removes the key (or queues it again if it is
    /// dirty); nack queues the entry again at the tail. `index` is what the
    /// take returned with the entry: no hash, no `Eq`.
    ///
    /// User values (the lease's key copy, the store's copy, an acked item)
    /// are dropped only after the slot is freed and the table left, so a
    /// `Drop` that offers into this queue finds room and no lock held.
    pub(crate) fn end_lease(&self, entry: Entry<K, V>, index: u32, end: LeaseEnd) {
        // MUTANT: nack_after_close_lost: after close a nack drops the entry
        // (as an ack would) instead of queueing it again (breaks G1).
        #[cfg(coalescing_mutant = "nack_after_close_lost")]
        let end = match end {
            LeaseEnd::Nack if self.occupancy.load().is_closed() => LeaseEnd::Ack,
            end => end,
        };
        // What goes back into the ring, and what is dropped at the end.
        let (requeue, _dropped_last) = match entry {
            Entry::Key(key) => match self.end_key_lease(index, end, &key) {
                Ended::Requeue(index) => {
                    if end == LeaseEnd::Ack {
                        self.counters.add(Counter::RequeuedDirty);
                    }
                    (Some(Entry::Key(index)), (Some(key), None))
                }
                Ended::Removed(stored) => (None, (Some(key), stored)),
            },
            Entry::Item(item) => {
                self.keys.end_item_lease(index);
                match end {
                    LeaseEnd::Nack => (Some(Entry::Item(item)), (None, None)),
                    LeaseEnd::Ack => {
                        // Dropped below, after the slot is freed.
                        let item_last = Some(item);
                        self.counters.add(Counter::Acked);
                        self.finish_lease(None);
                        drop(item_last);
                        return;
                    }
                }
            }
        };
        self.counters.add(match end {
            LeaseEnd::Ack => Counter::Acked,
            LeaseEnd::Nack => Counter::Nacked,
        });
        self.finish_lease(requeue);
    }

    /// The key table's part of a lease's end. The one user code in it (the
    /// key's `Hash`, when an acked key had spilled) runs after the entry is
    /// removed: if it panics, the removal is finished here as an ack, so
    /// the lease's slot is not leaked.
    fn end_key_lease(&self, index: u32, end: LeaseEnd, key: &K) -> Ended<K> {
        let finish = Undo::new(|| {
            self.counters.add(Counter::Acked);
            self.finish_lease(None);
        });
        let ended = self.keys.end_lease(index, end == LeaseEnd::Ack, key);
        finish.disarm();
        ended
    }

    /// The shared counts of a lease's end: out of the in-flight count before
    /// the push of a requeue (keeps I3; the claim stays with the entry, so
    /// the push finds room, I2), or the claim freed for good.
    fn finish_lease(&self, requeue: Option<Entry<u32, V>>) {
        if let Some(entry) = requeue {
            self.occupancy.unlease();
            self.push(entry);
        } else {
            let after = self.occupancy.ack();
            // The ack was a SeqCst RMW: no fence needed.
            self.not_full.notify_after_seqcst_change(1);
            self.after_decrease(after);
        }
    }

    /// After a transition that lowered the claims not in flight: wake the
    /// takers if the queue just became drained after close, and
    /// `close_and_wait` if nothing at all is left.
    fn after_decrease(&self, after: Snapshot) {
        if after.is_drained() {
            self.not_empty.notify_all();
            if after.is_finished() {
                self.finished.notify_all();
            }
        }
    }

    // ----- lifecycle and introspection -----

    /// Closes the queue. Returns `true` for the call that closed it.
    ///
    /// Offers fail from now on with their value handed back (duplicates of
    /// pending keys too); blocked offerers wake and fail the same way. Takes
    /// go on returning what is queued, then report `Closed`. Leases still
    /// ack and nack; a nacked entry is queued again and can be taken. A
    /// [`close_and_wait`](Self::close_and_wait) waiting meanwhile returns at
    /// once (the drain is abandoned).
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, TryOfferError};
    ///
    /// let q = CoalescingQueue::<u32, String>::new(4);
    /// q.offer_key(1).unwrap();
    /// assert!(q.close());
    /// assert!(!q.close());
    /// assert_eq!(q.try_offer_key(1), Err(TryOfferError::Closed(1)));
    /// assert!(q.take().is_ok());
    /// assert!(q.take().is_err());
    /// ```
    pub fn close(&self) -> bool {
        let closed_now = self.close_only();
        // A `close_and_wait` that read the count before this increment
        // returns (its drain abandoned) once it sees the new count.
        self.closes.fetch_add(1, Ordering::SeqCst);
        // After the increment, also when this call closed the queue: the
        // wake-up `close_only` gave came before the count changed, and a
        // `close_and_wait` that checked the count in between sleeps on.
        // MUTANT: close_keeps_drain_waiting: no wake-up for the new count,
        // so such a `close_and_wait` waits on for its drain.
        #[cfg(not(coalescing_mutant = "close_keeps_drain_waiting"))]
        self.finished.notify_all();
        closed_now
    }

    /// `close` without interrupting a `close_and_wait`: what
    /// `close_and_wait` itself and a last [`Producer`](crate::Producer) use.
    pub(crate) fn close_only(&self) -> bool {
        // Release, before the occupancy bit: a claim refused by the bit
        // (Acquire) then sees the flag too, so `is_closed` agrees with
        // every refusal.
        self.closed.store(1, Ordering::Release);
        let closed_now = self.occupancy.close();
        // MUTANT: close_without_wake: close sets the bit but wakes nobody,
        // so blocked offerers and takers sleep on (breaks G5).
        #[cfg(not(coalescing_mutant = "close_without_wake"))]
        if closed_now {
            self.not_full.notify_all();
            self.not_empty.notify_all();
            self.finished.notify_all();
        }
        closed_now
    }

    /// Closes the queue, then waits until every queued entry has been taken
    /// and every lease has ended with an ack (a graceful drain that also
    /// covers work in flight). Returns `true` if that happened within
    /// `timeout`; `false` if the timeout passed first, or if
    /// [`close`](Self::close) was called meanwhile (which abandons the
    /// drain, as client-go's `ShutDown` does during `ShutDownWithDrain`).
    ///
    /// ```
    /// use coalescing_queue::CoalescingQueue;
    /// use std::{sync::Arc, thread, time::Duration};
    ///
    /// let q = Arc::new(CoalescingQueue::<u32, String>::new(4));
    /// q.offer_key(1).unwrap();
    /// let lease = q.try_take_leased().unwrap();
    /// assert!(!q.close_and_wait(Duration::from_millis(1))); // still in flight
    /// lease.ack();
    /// assert!(q.close_and_wait(Duration::from_millis(1)));
    ///
    /// // A close from elsewhere ends a drain that would take too long.
    /// let q = Arc::new(CoalescingQueue::<u32, String>::new(4));
    /// q.offer_key(1).unwrap();
    /// let _stuck = q.try_take_leased_owned().unwrap();
    /// let closer = { let q = q.clone(); thread::spawn(move || {
    ///     thread::sleep(Duration::from_millis(10));
    ///     q.close();
    /// }) };
    /// assert!(!q.close_and_wait(Duration::from_secs(3600))); // returns at the close
    /// closer.join().unwrap();
    /// ```
    pub fn close_and_wait(&self, timeout: Duration) -> bool {
        // Read before closing: any `close` that overlaps this call ends it.
        let closes = self.closes.load(Ordering::SeqCst);
        self.close_only();
        let deadline = Instant::now().checked_add(timeout);
        wait::block_on(&self.finished, deadline, (), |()| self.drain_step(closes)).unwrap_or(false)
    }

    /// The async form of [`close_and_wait`](Self::close_and_wait), without
    /// a timeout (wrap it in your runtime's timeout): `true` once drained,
    /// `false` if [`close`](Self::close) was called meanwhile.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops the waiting only; the queue stays closed.
    ///
    /// ```
    /// use coalescing_queue::CoalescingQueue;
    ///
    /// let q = CoalescingQueue::<u32, String>::new(4);
    /// q.offer_key(1).unwrap();
    /// q.try_take_leased().unwrap().ack();
    /// assert!(futures_lite::future::block_on(q.close_and_wait_async()));
    /// ```
    pub async fn close_and_wait_async(&self) -> bool {
        let closes = self.closes.load(Ordering::SeqCst);
        self.close_only();
        wait::wait_async(&self.finished, (), |()| self.drain_step(closes)).await
    }

    /// One check of a drain: finished (`true`), abandoned by a `close`
    /// since `closes` was read (`false`), or not yet.
    fn drain_step(&self, closes: usize) -> Step<(), bool> {
        if self.occupancy.load().is_finished() {
            Step::Done(true)
        } else if self.closes.load(Ordering::SeqCst) != closes {
            Step::Done(false)
        } else {
            Step::Retry(())
        }
    }

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
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// `true` if nothing is queued (entries may still be in flight).
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
            queued: self.ring.len(),
            in_flight: now.in_flight(),
            high_water_mark: c.high_water_mark(),
            oldest_lease_age: self.keys.oldest_lease_age(Instant::now()),
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
