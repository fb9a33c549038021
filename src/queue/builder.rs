//! `Builder`: a queue's capacity, in-flight policy and hasher.

use crate::error::BuildError;
use crate::keys::KeyStore;
use crate::policy::InFlightPolicy;
use crate::queue::occupancy::MAX_CAPACITY;
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
    hasher: S,
    _entries: PhantomData<fn() -> (K, V)>,
}

impl<K, V> CoalescingQueue<K, V, DefaultHashBuilder>
where
    K: Hash + Eq + Clone,
{
    /// A builder with no capacity set, `InFlightPolicy::Requeue` and the
    /// default hasher.
    pub fn builder() -> Builder<K, V, DefaultHashBuilder> {
        Builder {
            capacity: None,
            policy: InFlightPolicy::default(),
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
            hasher,
            _entries: PhantomData,
        }
    }

    /// Builds the queue, allocating the ring and the key table at full size.
    ///
    /// # Panics
    ///
    /// If no capacity was set, or it is 0 or above `2^31 - 1`; see
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
    pub fn build(self) -> CoalescingQueue<K, V, S> {
        match self.try_build() {
            Ok(queue) => queue,
            Err(error) => panic!("CoalescingQueue: {error}"),
        }
    }

    /// Builds the queue.
    ///
    /// # Errors
    ///
    /// If no capacity was set, or it is 0 or above `2^31 - 1`.
    ///
    /// ```
    /// use coalescing_queue::{BuildError, CoalescingQueue};
    ///
    /// let missing = CoalescingQueue::<u32, ()>::builder().try_build();
    /// assert_eq!(missing.unwrap_err(), BuildError::MissingCapacity);
    /// assert!(CoalescingQueue::<u32, ()>::builder().capacity(8).try_build().is_ok());
    /// ```
    pub fn try_build(self) -> Result<CoalescingQueue<K, V, S>, BuildError> {
        match self.capacity {
            None => Err(BuildError::MissingCapacity),
            Some(0) => Err(BuildError::ZeroCapacity),
            Some(capacity) if capacity > MAX_CAPACITY => Err(BuildError::CapacityTooLarge),
            Some(capacity) => Ok(CoalescingQueue::from_parts(
                capacity,
                self.policy,
                self.hasher,
            )),
        }
    }
}

impl<K, V, S> fmt::Debug for Builder<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("capacity", &self.capacity)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}
