//! `Builder`: a queue's capacity, in-flight policy and hasher.

use crate::backoff::Backoff;
use crate::error::BuildError;
use crate::keys::table::entries_for;
use crate::keys::valued::Valued;
use crate::keys::KeyStore;
use crate::policy::InFlightPolicy;
use crate::queue::delays::Delays;
use crate::queue::occupancy::MAX_CAPACITY;
use crate::queue::slot::Slot;
use crate::queue::{CoalescingQueue, DefaultHashBuilder};
use core::fmt;
use core::hash::Hash;
use core::marker::PhantomData;

/// Configures a [`CoalescingQueue`]; made by [`CoalescingQueue::builder`].
///
/// ```
/// use coalescing_queue::{CoalescingQueue, InFlightPolicy};
/// use std::collections::hash_map::RandomState;
///
/// let q = CoalescingQueue::<[u8; 32], String>::builder()
///     .capacity(1 << 16)
///     .in_flight_policy(InFlightPolicy::Requeue)
///     .hasher(RandomState::new())
///     .build();
/// assert_eq!(q.capacity(), 1 << 16);
/// ```
pub struct Builder<K, V, S = DefaultHashBuilder> {
    capacity: Option<usize>,
    policy: InFlightPolicy,
    /// The backoff, and whether the clock is moved by hand; `None`: no
    /// delay schedule.
    retries: Option<(Backoff, bool)>,
    hasher: S,
    _entries: PhantomData<fn() -> (K, V)>,
}

impl<K, V> CoalescingQueue<K, V, DefaultHashBuilder>
where
    K: Hash + Eq + Clone,
{
    /// A builder with no capacity set, `InFlightPolicy::Requeue` and the
    /// default hasher, for the general store. For the compact store (whose
    /// keys need not be `Hash`, so `CompactQueue::<K, V>::builder()` does
    /// not exist), use [`Builder::<K, V, Compact>::new()`](Builder::new), or
    /// `.hasher(Compact(s))` on this one.
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, Compact, DefaultHashBuilder};
    ///
    /// let general = CoalescingQueue::<String, String>::builder().capacity(8).build();
    /// assert_eq!(general.capacity(), 8);
    /// let compact = CoalescingQueue::<u64, String>::builder()
    ///     .hasher(Compact(DefaultHashBuilder::default()))
    ///     .capacity(8)
    ///     .build();
    /// assert!(compact.try_offer_key(7).is_ok());
    /// ```
    pub fn builder() -> Builder<K, V, DefaultHashBuilder> {
        Builder {
            capacity: None,
            policy: InFlightPolicy::default(),
            retries: None,
            hasher: DefaultHashBuilder::default(),
            _entries: PhantomData,
        }
    }
}

impl<K, V, S> Builder<K, V, S>
where
    S: KeyStore<K> + Default,
{
    /// A builder with no capacity set, `InFlightPolicy::Requeue` and the
    /// store's default hasher; for the compact store, whose keys need not
    /// be `Hash` (the general store's builder is also
    /// [`CoalescingQueue::builder`]).
    ///
    /// ```
    /// use coalescing_queue::{Builder, Compact, InFlightPolicy};
    ///
    /// let q = Builder::<u64, String, Compact>::new()
    ///     .capacity(8)
    ///     .in_flight_policy(InFlightPolicy::Requeue)
    ///     .build();
    /// assert_eq!(q.capacity(), 8);
    /// ```
    pub fn new() -> Self {
        Builder {
            capacity: None,
            policy: InFlightPolicy::default(),
            retries: None,
            hasher: S::default(),
            _entries: PhantomData,
        }
    }
}

impl<K, V, S> Default for Builder<K, V, S>
where
    S: KeyStore<K> + Default,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V, S> Builder<K, V, S>
where
    S: KeyStore<K>,
{
    /// The most entries the queue holds, queued plus in flight.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// What an offer of an in-flight key does; `Requeue` by default.
    pub fn in_flight_policy(mut self, policy: InFlightPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The old name of [`in_flight_policy`](Self::in_flight_policy) (it read
    /// like the queue's `in_flight()` count).
    #[deprecated(since = "0.2.0", note = "renamed to `in_flight_policy`")]
    pub fn in_flight(self, policy: InFlightPolicy) -> Self {
        self.in_flight_policy(policy)
    }

    /// Lets leases be nacked with a delay: [`nack_after`] and
    /// [`nack_backoff`] (which waits as `backoff` says for the lease's
    /// attempt). A delayed entry keeps its slot and its key stays pending
    /// (offers coalesce into it) until it is due; then it is queued at the
    /// tail. The delay schedule is allocated here, at build, with room for
    /// every slot (`16 + size_of::<Entry<u32, V>>()` bytes a slot, rounded
    /// up to 8: 24 for items of up to 4 bytes, 32 for a `Box`): a queue
    /// built without this allocates nothing for delays. See [retries](crate#retries-and-backoff).
    ///
    /// ```
    /// use coalescing_queue::{Backoff, CoalescingQueue};
    /// use std::time::Duration;
    ///
    /// let q = CoalescingQueue::<u32, String>::builder()
    ///     .capacity(64)
    ///     .retries(Backoff::exponential(Duration::from_millis(5), Duration::from_secs(60)))
    ///     .build();
    /// q.offer_key(1).unwrap();
    /// let lease = q.try_take_leased().unwrap();
    /// assert_eq!(lease.nack_backoff(), Duration::from_millis(5)); // first failure
    /// assert!(q.is_pending(&1) && q.try_take().is_err()); // pending, not yet due
    /// ```
    ///
    /// [`nack_after`]: crate::LeaseIn::nack_after
    /// [`nack_backoff`]: crate::LeaseIn::nack_backoff
    pub fn retries(mut self, backoff: Backoff) -> Self {
        let manual_clock = self.retries.is_some_and(|(_, manual)| manual);
        self.retries = Some((backoff, manual_clock));
        self
    }

    /// Retries (with the default backoff unless `retries` set one) on a
    /// clock that only `CoalescingQueue::advance_clock` moves: for tests
    /// of delays that must not depend on time.
    #[doc(hidden)]
    pub fn manual_clock(mut self) -> Self {
        let backoff = self
            .retries
            .map_or_else(Backoff::default, |(backoff, _)| backoff);
        self.retries = Some((backoff, true));
        self
    }

    /// The hasher for the key table: a `BuildHasher` for the general store,
    /// or `Compact(hasher)` for the compact store.
    ///
    /// A key's hash picks its home bucket and tag. A hasher that gives many
    /// keys one value (a constant, or one that hashes only part of the key)
    /// sends them all to one bucket: they spill past it one after another
    /// and every lookup walks the buckets they fill, so filling and
    /// draining cost time quadratic in the number of such keys (16,384
    /// keys with a constant hash took about 500 ms to offer, against
    /// 0.6 ms with the default hasher). Correctness does not depend on it;
    /// speed does: keep the default (foldhash) or a hasher that mixes every
    /// bit of the key.
    pub fn hasher<S2: KeyStore<K>>(self, hasher: S2) -> Builder<K, V, S2> {
        Builder {
            capacity: self.capacity,
            policy: self.policy,
            retries: self.retries,
            hasher,
            _entries: PhantomData,
        }
    }

    /// Builds the queue, allocating the ring and the key table at full size.
    ///
    /// # Panics
    ///
    /// If no capacity was set, or it is 0 or above `2^31 - 1`, or the
    /// memory for it cannot be allocated (the message names the bytes); see
    /// [`try_build`](Self::try_build).
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, InFlightPolicy};
    ///
    /// let q = CoalescingQueue::<u32, String>::builder()
    ///     .capacity(8)
    ///     .in_flight_policy(InFlightPolicy::Absorb)
    ///     .build();
    /// assert_eq!(q.in_flight_policy(), InFlightPolicy::Absorb);
    /// ```
    #[track_caller]
    pub fn build(self) -> CoalescingQueue<K, V, S> {
        let capacity = self.capacity;
        match self.try_build() {
            Ok(queue) => queue,
            Err(error @ BuildError::OutOfMemory { .. }) => {
                let capacity = capacity.unwrap_or_default();
                panic!("CoalescingQueue: {error} for capacity {capacity}")
            }
            Err(error) => panic!("CoalescingQueue: {error}"),
        }
    }

    /// Builds the queue.
    ///
    /// First it asks the allocator for the queue's whole size in one piece
    /// (`Vec::try_reserve_exact`: the ring's slots plus the key table's
    /// entries) and gives it back at once, so that a queue that cannot fit
    /// is refused before any of it is written. Then it allocates the key
    /// table, each of its arrays asked for fallibly and filled in place: a
    /// refusal there is [`BuildError::OutOfMemory`] too. The ring
    /// (`crossbeam_queue::ArrayQueue`) has no fallible constructor: its
    /// size is covered by the first check only, so if memory runs out
    /// between that check and the ring's allocation (taken by another
    /// thread), the process still aborts. And where the system overcommits
    /// memory, an allocation it granted can fail later, as it is first
    /// written (the table and the ring are written when built). The
    /// waiters' and counters' few small allocations are not fallible either.
    ///
    /// # Errors
    ///
    /// If no capacity was set, or it is 0 or above `2^31 - 1`, or the
    /// allocator refuses the memory for it.
    ///
    /// ```
    /// use coalescing_queue::{BuildError, CoalescingQueue};
    ///
    /// let missing = CoalescingQueue::<u32, ()>::builder().try_build();
    /// assert_eq!(missing.unwrap_err(), BuildError::MissingCapacity);
    /// assert!(CoalescingQueue::<u32, ()>::builder().capacity(8).try_build().is_ok());
    ///
    /// // 2^31 - 1 slots of an 8 GiB item: more than any address space.
    /// let huge = CoalescingQueue::<u32, [u8; 1 << 33]>::builder()
    ///     .capacity((1 << 31) - 1)
    ///     .try_build();
    /// assert!(matches!(huge.unwrap_err(), BuildError::OutOfMemory { .. }));
    /// ```
    pub fn try_build(self) -> Result<CoalescingQueue<K, V, S>, BuildError> {
        let capacity = match self.capacity {
            None => return Err(BuildError::MissingCapacity),
            Some(0) => return Err(BuildError::ZeroCapacity),
            Some(capacity) if capacity > MAX_CAPACITY => return Err(BuildError::CapacityTooLarge),
            Some(capacity) => capacity,
        };
        let bytes = bytes_for::<V>(capacity, self.retries.is_some());
        let mut probe: Vec<u8> = Vec::new();
        if probe.try_reserve_exact(bytes).is_err() {
            return Err(BuildError::OutOfMemory { bytes });
        }
        drop(probe);
        CoalescingQueue::try_from_parts(capacity, self.policy, self.hasher, self.retries)
            .map_err(|_| BuildError::OutOfMemory { bytes })
    }
}

impl<K, P, V, S, M> Builder<(K, P), V, Valued<S, M>>
where
    Valued<S, M>: KeyStore<(K, P)>,
{
    /// How a coalesced offer's value is folded into the pending one, for a
    /// queue of keys with values ([`Valued`]): `merge(pending, newer)`.
    /// [`Latest`](crate::Latest) (the newer replaces the pending) unless set.
    ///
    /// ```
    /// use coalescing_queue::{Builder, Compact, Entry, Valued};
    ///
    /// // Counts per key: offers add up until the key is taken.
    /// let q = Builder::<(u32, u64), (), Valued<Compact>>::new()
    ///     .capacity(64)
    ///     .merge(|pending: &mut u64, newer: u64| *pending += newer)
    ///     .build();
    /// for _ in 0..3 {
    ///     q.try_offer_key((9, 1)).unwrap();
    /// }
    /// assert_eq!(q.try_take(), Ok(Entry::Key((9, 3))));
    /// ```
    pub fn merge<M2>(self, merge: M2) -> Builder<(K, P), V, Valued<S, M2>>
    where
        Valued<S, M2>: KeyStore<(K, P)>,
    {
        Builder {
            capacity: self.capacity,
            policy: self.policy,
            retries: self.retries,
            hasher: self.hasher.with_merge(merge),
            _entries: PhantomData,
        }
    }
}

/// The bytes a queue of `capacity` allocates at build, at least: a ring
/// slot per unit of capacity (a `Slot<V>` and the ring's stamp word, as
/// `crossbeam_queue::ArrayQueue` lays them out), per key table entry its
/// control word and at least one word of key (a packed word, or a
/// `Mutex<Option<K>>`), and with retries the delay schedule. Saturates
/// instead of overflowing.
fn bytes_for<V>(capacity: usize, retries: bool) -> usize {
    let slot = core::mem::size_of::<(usize, Slot<V>)>()
        + if retries {
            Delays::<V>::BYTES_PER_SLOT
        } else {
            0
        };
    let entry = 2 * core::mem::size_of::<u64>();
    capacity
        .saturating_mul(slot)
        .saturating_add(entries_for(capacity).saturating_mul(entry))
}

impl<K, V, S> fmt::Debug for Builder<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("capacity", &self.capacity)
            .field("policy", &self.policy)
            .field("retries", &self.retries.map(|(backoff, _)| backoff))
            .finish_non_exhaustive()
    }
}
