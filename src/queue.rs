//! `CoalescingQueue`: its state, its invariants and the protocol's steps.
//!
//! The public offer and take forms live in `offer.rs` and `take.rs`; they
//! are thin loops around the single attempts defined here.

use crate::entry::{Entry, Offered};
use crate::key_state::KeyState;
use crate::key_table::{Handle, KeyTable, Lookup};
use crate::lease_clock::LeaseClock;
use crate::occupancy::{ClaimError, Occupancy, Snapshot};
use crate::policy::InFlightPolicy;
use crate::stats::{Counter, Counters, Stats};
use crate::sync::Ring;
use crate::wait::{self, Signal, Step};
use crate::TryTakeError;
use core::fmt;
use core::hash::{BuildHasher, Hash};
use crossbeam_utils::CachePadded;
use std::time::{Duration, Instant};

/// The hasher used when none is given: fast and randomly seeded.
pub type DefaultHasher = foldhash::fast::RandomState;

/// A bounded, lock-free FIFO of compact keys and pass-through items, in
/// which an offer of a key that is already pending is coalesced into the
/// pending copy.
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
// * `ring`: entries in FIFO order (a queued key as the handle of its
//   `keys` entry); linearizable on its own.
// * `keys`: one entry per key queued or in flight, the key's only copy;
//   each key's entry is changed only under its shard's lock (`key_table.rs`).
// * `occupancy`: claimed slots, in-flight count and the closed bit, in one
//   atomic word (see `occupancy.rs`).
//
// Invariants, cited in the code as "keeps In":
// * I1 (G3) claimed <= capacity, and a claim is made only while open.
// * I2 Every entry in the ring holds a claim, so a push made with a claim
//   in hand always finds room.
// * I3 ring length <= claimed - in_flight: a lease is counted in flight only
//   after its pop, and leaves the count before its entry is pushed again.
//   So "closed and claimed == in_flight" means nothing is queued or coming.
// * I4 (G2) A key is in `keys` exactly while its handle is queued, being
//   pushed, being taken, or while it is leased; a key has at most one
//   entry, and at most one handle of it is in the ring.
// * I5 (G1) A key leaves `keys` only after its copy has left the ring (plain
//   take: after the pop; lease: at the ack), so an offer absorbed by a copy
//   is absorbed by one that has not yet been handed to a caller, or (dirty)
//   by a lease whose ack queues the key again.
// * I6 A reservation is never rolled back: the slot is claimed under the
//   key's lock before the key is inserted, so an offer coalesced into a
//   reservation can rely on the push that follows.
pub struct CoalescingQueue<K, V, S = DefaultHasher> {
    pub(crate) ring: Ring<Entry<Handle, V>>,
    pub(crate) keys: KeyTable<K, S>,
    /// Written by every claim and release: on a cache line of its own, so
    /// that those writes do not evict the read-mostly fields beside it
    /// (the key table's shard list, the waiter counts) from other cores.
    pub(crate) occupancy: CachePadded<Occupancy>,
    /// Takers wait here: notified once per push, and all at once when the
    /// queue closes or becomes drained after close.
    pub(crate) not_empty: Signal,
    /// Blocked offerers wait here: notified once per freed slot, all at close.
    pub(crate) not_full: Signal,
    /// `close_and_wait` waits here: notified when closed with no claim left.
    pub(crate) finished: Signal,
    pub(crate) policy: InFlightPolicy,
    pub(crate) counters: Counters,
    pub(crate) lease_clock: LeaseClock,
    capacity: usize,
    /// MUTANT: deliver_before_remove: keys whose removal a take deferred.
    #[cfg(coalescing_mutant = "deliver_before_remove")]
    deferred: std::sync::Mutex<Vec<Handle>>,
}

/// Entries a batch take pops before it updates their keys (one lock per
/// shard for the lot); at most 64 (`KeyTable::take_many`).
const CHUNK: usize = 32;

/// One attempt to offer, before any waiting.
pub(crate) enum Attempt<T, R> {
    Done(R),
    Full(T),
    Closed(T),
}

/// How a lease ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeaseEnd {
    Ack,
    Nack,
}

impl<K, V> CoalescingQueue<K, V, DefaultHasher>
where
    K: Hash + Eq + Clone,
{
    /// A queue holding at most `capacity` entries (queued plus in flight),
    /// with the default hasher and `InFlightPolicy::Requeue`.
    ///
    /// The ring and the key table are allocated here, at full size, so
    /// offers never allocate (G7).
    ///
    /// # Panics
    ///
    /// If `capacity` is 0 or above `2^31 - 1`. Use
    /// [`builder`](Self::builder) and [`try_build`](crate::Builder::try_build)
    /// to get an error instead.
    ///
    /// ```
    /// use coalescing_queue::CoalescingQueue;
    ///
    /// let q = CoalescingQueue::<u64, String>::new(1024);
    /// assert_eq!(q.capacity(), 1024);
    /// assert!(q.is_empty());
    /// ```
    pub fn new(capacity: usize) -> Self {
        Self::builder().capacity(capacity).build()
    }
}

impl<K, V, S> CoalescingQueue<K, V, S>
where
    K: Hash + Eq + Clone,
    S: BuildHasher + Clone,
{
    pub(crate) fn from_parts(capacity: usize, policy: InFlightPolicy, hasher: S) -> Self {
        Self {
            ring: Ring::new(capacity),
            keys: KeyTable::with_capacity_and_hasher(capacity, hasher),
            occupancy: CachePadded::new(Occupancy::new(capacity)),
            not_empty: Signal::new(),
            not_full: Signal::new(),
            finished: Signal::new(),
            policy,
            counters: Counters::new(),
            lease_clock: LeaseClock::default(),
            capacity,
            #[cfg(coalescing_mutant = "deliver_before_remove")]
            deferred: std::sync::Mutex::new(Vec::new()),
        }
    }

    // ----- the protocol's single steps -----

    /// One attempt to offer `key` (DESIGN.md section 3, steps 0-5).
    #[inline(always)]
    pub(crate) fn attempt_offer_key(&self, key: K) -> Attempt<K, Offered> {
        #[cfg(coalescing_mutant = "reserve_before_claim")]
        return self.mutant_reserve_before_claim(key);
        // Steps 0-3, under the key's lock.
        let reserved = self.keys.entry(
            key,
            #[inline(always)]
            |lookup| match lookup {
                // Step 0 for a pending key: after close no offer is absorbed,
                // duplicates included. (A new key's claim checks it: step 2.)
                // Checked here rather than before the lock so that a new key's
                // offer reads the occupancy word's cache line once, not twice.
                Lookup::Pending(_, key) if self.occupancy.load().is_closed() => {
                    Attempt::Closed(key)
                }
                Lookup::Pending(state, _) => Attempt::Done(self.absorb(state)),
                // Claim before insert, both under the key's lock: keeps I6.
                Lookup::Absent(vacancy) => match self.occupancy.try_claim() {
                    Ok(after) => {
                        self.counters.note_claimed(after.claimed());
                        Attempt::Done(Ok(vacancy.insert(KeyState::Queued)))
                    }
                    Err(ClaimError::Full) => Attempt::Full(vacancy.into_key()),
                    Err(ClaimError::Closed) => Attempt::Closed(vacancy.into_key()),
                },
            },
        );
        match reserved {
            Attempt::Done(Ok(handle)) => {
                // Steps 4-5.
                self.push(Entry::Key(handle));
                self.counters.add(Counter::Enqueued);
                Attempt::Done(Offered::Enqueued)
            }
            Attempt::Done(Err(coalesced)) => Attempt::Done(coalesced),
            Attempt::Full(key) => Attempt::Full(key),
            Attempt::Closed(key) => Attempt::Closed(key),
        }
    }

    /// MUTANT: reserve_before_claim: inserts the key, lets go of its lock,
    /// then claims, and on `Full` removes the key again: a rollback that
    /// loses any offer coalesced into the reservation meanwhile (breaks I6).
    #[cfg(coalescing_mutant = "reserve_before_claim")]
    fn mutant_reserve_before_claim(&self, key: K) -> Attempt<K, Offered> {
        if self.occupancy.load().is_closed() {
            return Attempt::Closed(key);
        }
        let handle = match self.keys.entry(key, |lookup| match lookup {
            Lookup::Pending(state, _) => self.absorb(state).map_err(Ok),
            Lookup::Absent(vacancy) => Ok(vacancy.insert(KeyState::Queued)),
        }) {
            Ok(handle) => handle,
            Err(Ok(coalesced)) | Err(Err(coalesced)) => return Attempt::Done(coalesced),
        };
        match self.occupancy.try_claim() {
            Ok(_) => {
                self.push(Entry::Key(handle));
                self.counters.add(Counter::Enqueued);
                Attempt::Done(Offered::Enqueued)
            }
            Err(error) => {
                let key = self
                    .keys
                    .take(handle, false)
                    .expect("the reservation is gone");
                match error {
                    ClaimError::Full => Attempt::Full(key),
                    ClaimError::Closed => Attempt::Closed(key),
                }
            }
        }
    }

    /// An offer found its key pending: absorb it into that copy (step 1/3).
    /// Returns `Err` so the caller can tell it apart from a reservation.
    fn absorb(&self, state: &mut KeyState) -> Result<Handle, Offered> {
        match *state {
            KeyState::Queued => self.counters.add(Counter::CoalescedQueued),
            KeyState::InFlight => {
                if self.policy == InFlightPolicy::Requeue {
                    *state = KeyState::InFlightDirty;
                }
                self.counters.add(Counter::CoalescedInFlight);
            }
            KeyState::InFlightDirty => self.counters.add(Counter::CoalescedInFlight),
        }
        Err(Offered::Coalesced)
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
    fn push(&self, entry: Entry<Handle, V>) {
        if self.ring.push(entry).is_err() {
            unreachable!("the ring had no room for a claimed slot (breaks I2)");
        }
        self.not_empty.notify_one();
    }

    /// One attempt to take (DESIGN.md section 3, "Take"). A leased take keeps
    /// the claim and marks the key in flight; a plain take releases both.
    pub(crate) fn attempt_take(&self, leased: bool) -> Result<Entry<K, V>, TryTakeError> {
        let Some(entry) = self.pop_one(leased) else {
            return Err(self.why_empty());
        };
        self.account_taken(leased, 1);
        Ok(entry)
    }

    /// Takes up to `limit` entries at once into `out`, with one update of
    /// the shared counts for all of them (a batch frees its slots, counts its
    /// leases and wakes offerers in one step each). Returns how many.
    pub(crate) fn attempt_take_many(
        &self,
        leased: bool,
        limit: usize,
        out: &mut Vec<Entry<K, V>>,
    ) -> Result<usize, TryTakeError> {
        let mut taken = 0;
        while taken < limit {
            let want = (limit - taken).min(CHUNK);
            let popped = self.pop_chunk(leased, want, out);
            taken += popped;
            if popped < want {
                break;
            }
        }
        if taken == 0 {
            return Err(self.why_empty());
        }
        self.account_taken(leased, taken);
        Ok(taken)
    }

    /// Pops up to `want` (at most `CHUNK`) entries into `out` in ring order,
    /// then updates their keys' entries with one lock per shard: each entry
    /// still changes only after its pop and before it is handed out (I4, I5).
    /// Returns how many were popped.
    #[cfg(not(any(
        coalescing_mutant = "delete_before_pop",
        coalescing_mutant = "deliver_before_remove"
    )))]
    fn pop_chunk(&self, leased: bool, want: usize, out: &mut Vec<Entry<K, V>>) -> usize {
        let mut popped: [Option<Entry<Handle, V>>; CHUNK] = core::array::from_fn(|_| None);
        let mut count = 0;
        while count < want {
            let Some(entry) = self.ring.pop() else { break };
            popped[count] = Some(entry);
            count += 1;
        }
        let handles: [Option<Handle>; CHUNK] = core::array::from_fn(|i| match &popped[i] {
            Some(Entry::Key(handle)) => Some(*handle),
            _ => None,
        });
        let mut keys: [Option<K>; CHUNK] = core::array::from_fn(|_| None);
        self.keys
            .take_many(&handles[..count], leased, &mut keys[..count]);
        for (entry, key) in popped.iter_mut().zip(keys.iter_mut()).take(count) {
            out.push(match entry.take() {
                Some(Entry::Item(item)) => Entry::Item(item),
                // I4: a queued handle's entry stays until this take.
                _ => Entry::Key(
                    key.take()
                        .expect("a queued key had no entry in the key table (breaks I4)"),
                ),
            });
        }
        count
    }

    /// The mutants of the take live in `pop_one`: batches go through it.
    #[cfg(any(
        coalescing_mutant = "delete_before_pop",
        coalescing_mutant = "deliver_before_remove"
    ))]
    fn pop_chunk(&self, leased: bool, want: usize, out: &mut Vec<Entry<K, V>>) -> usize {
        let mut count = 0;
        while count < want {
            let Some(entry) = self.pop_one(leased) else {
                break;
            };
            out.push(entry);
            count += 1;
        }
        count
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
    /// change of a take, without the shared counts.
    fn pop_one(&self, leased: bool) -> Option<Entry<K, V>> {
        // MUTANT: deliver_before_remove: the removals the last take deferred.
        #[cfg(coalescing_mutant = "deliver_before_remove")]
        {
            // Out of the std lock before the table's (a model point).
            let deferred = core::mem::take(&mut *self.deferred.lock().unwrap());
            for earlier in deferred {
                self.keys.take(earlier, false);
            }
        }
        // MUTANT: delete_before_pop: removes the key while its handle is
        // still in the ring, so an offer can push a second copy (breaks I4, I5).
        #[cfg(coalescing_mutant = "delete_before_pop")]
        let removed_early = match leased {
            true => None,
            false => self
                .ring
                .mutant_peek(|head| match head {
                    Some(Entry::Key(handle)) => Some(*handle),
                    _ => None,
                })
                .and_then(|handle| Some((handle, self.keys.take(handle, false)?))),
        };
        let handle = match self.ring.pop()? {
            Entry::Item(item) => return Some(Entry::Item(item)),
            Entry::Key(handle) => handle,
        };
        // The key's entry changes only after the pop: keeps I4 and I5.
        let key = if leased {
            self.keys.take(handle, true)
        } else {
            #[cfg(not(any(
                coalescing_mutant = "delete_before_pop",
                coalescing_mutant = "deliver_before_remove"
            )))]
            let key = self.keys.take(handle, false);
            #[cfg(coalescing_mutant = "delete_before_pop")]
            let key = match removed_early {
                Some((early, key)) if early == handle => Some(key),
                _ => self.keys.take(handle, false),
            };
            // MUTANT: deliver_before_remove: the key leaves the table only
            // at the next take, after this one has returned it (breaks I5).
            #[cfg(coalescing_mutant = "deliver_before_remove")]
            let key = {
                self.deferred.lock().unwrap().push(handle);
                self.keys.key_of(handle)
            };
            key
        };
        // I4: a queued handle's entry stays until this take.
        Some(Entry::Key(key.expect(
            "a queued key had no entry in the key table (breaks I4)",
        )))
    }

    /// Ends one lease: ack removes the key (or queues it again if it is
    /// dirty); nack queues the entry again at the tail.
    pub(crate) fn end_lease(&self, entry: Entry<K, V>, end: LeaseEnd) {
        // MUTANT: nack_after_close_lost: after close a nack drops the entry
        // (as an ack would) instead of queueing it again (breaks G1).
        #[cfg(coalescing_mutant = "nack_after_close_lost")]
        let end = match end {
            LeaseEnd::Nack if self.occupancy.load().is_closed() => LeaseEnd::Ack,
            end => end,
        };
        // What goes back into the ring, if anything. A leased key's entry
        // stays in the table until the lease ends (I4), so `update` finds it
        // (were it gone, the lease would end as an ack: nothing to requeue).
        let requeue = match (entry, end) {
            (Entry::Key(key), LeaseEnd::Ack) => {
                let ended = self.keys.update(&key, |state| {
                    let dirty = *state == KeyState::InFlightDirty;
                    // MUTANT: ack_ignores_dirty: ack removes a dirty key, losing
                    // the offer absorbed while it was in flight (breaks G1).
                    #[cfg(coalescing_mutant = "ack_ignores_dirty")]
                    let dirty = false;
                    *state = KeyState::Queued;
                    (dirty, !dirty)
                });
                match ended {
                    Some((true, handle)) => {
                        self.counters.add(Counter::RequeuedDirty);
                        Some(Entry::Key(handle))
                    }
                    _ => None,
                }
            }
            (Entry::Key(key), LeaseEnd::Nack) => self
                .keys
                .update(&key, |state| {
                    *state = KeyState::Queued;
                    ((), false)
                })
                .map(|((), handle)| Entry::Key(handle)),
            (Entry::Item(_), LeaseEnd::Ack) => None,
            (Entry::Item(item), LeaseEnd::Nack) => Some(Entry::Item(item)),
        };
        self.counters.add(match end {
            LeaseEnd::Ack => Counter::Acked,
            LeaseEnd::Nack => Counter::Nacked,
        });
        if let Some(entry) = requeue {
            // Out of the in-flight count before the push: keeps I3. The claim
            // stays with the entry, so the push finds room (I2).
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
    /// ack and nack; a nacked entry is queued again and can be taken.
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
    /// `timeout`, `false` if the timeout passed first.
    ///
    /// ```
    /// use coalescing_queue::CoalescingQueue;
    /// use std::time::Duration;
    ///
    /// let q = CoalescingQueue::<u32, String>::new(4);
    /// q.offer_key(1).unwrap();
    /// let lease = q.try_take_leased().unwrap();
    /// assert!(!q.close_and_wait(Duration::from_millis(1))); // still in flight
    /// lease.ack();
    /// assert!(q.close_and_wait(Duration::from_millis(1)));
    /// ```
    pub fn close_and_wait(&self, timeout: Duration) -> bool {
        self.close();
        let deadline = Instant::now().checked_add(timeout);
        wait::block_on(&self.finished, deadline, (), |()| {
            if self.occupancy.load().is_finished() {
                Step::Done(())
            } else {
                Step::Retry(())
            }
        })
        .is_ok()
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
        self.occupancy.load().is_closed()
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
        self.keys.get(key).is_some()
    }

    /// Counters since the queue was built, and the current depth; see
    /// [`Stats`] for each field. Offers and takes count on a cache line of
    /// their thread's own, with a plain store (beyond 32 live threads, the
    /// rest share four lines and add atomically), so counting adds no shared
    /// write to the hot path.
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
            oldest_lease_age: self.lease_clock.oldest_age(),
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

impl<K, V, S> fmt::Debug for CoalescingQueue<K, V, S> {
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
