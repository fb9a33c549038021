//! The reference model of the queue: what every single-thread operation
//! returns and does, in plain data (a `VecDeque` for the ring, a `HashMap`
//! key -> state for the pending keys, counters named as in `Stats`). One
//! model for the proptest (`tests/model.rs`) and the fuzz targets
//! (`fuzz/src/lib.rs`, which includes this file), so that a change to the
//! semantics is made here once.
//!
//! The model is generic over what a key carries ([`Carry`]): [`Plain`]
//! keys are their own identity; [`WithValue`] keys are `(identity, value)`
//! pairs (the `Valued` stores), whose value is merged on coalesce by the
//! model's own merge function (kept apart from the crate's `Merge`), held
//! aside while the key is leased and merged with the leased one on a nack.
#![allow(dead_code)]

use coalescing_queue::{Entry, InFlightPolicy, Offered, Stats, TryOfferError, TryTakeError};
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// What a queue's key `K` carries besides its identity, and how the value
/// of a duplicate is folded into the pending one.
pub trait Carry<K> {
    /// What coalesces: the whole key ([`Plain`]) or its first half.
    type Id: Copy + Eq + Hash + core::fmt::Debug;
    /// What is merged: `()` ([`Plain`]) or the key's second half.
    type Value: Clone + core::fmt::Debug;
    fn split(key: K) -> (Self::Id, Self::Value);
    fn join(id: Self::Id, value: Self::Value) -> K;
    /// `merge(pending, newer)`, as `coalescing_queue::Merge`.
    fn merge(&self, pending: &mut Self::Value, newer: Self::Value);
}

/// Keys without a value: the plain key stores.
#[derive(Clone, Copy, Debug, Default)]
pub struct Plain;

impl<K: Copy + Eq + Hash + core::fmt::Debug> Carry<K> for Plain {
    type Id = K;
    type Value = ();
    fn split(key: K) -> (K, ()) {
        (key, ())
    }
    fn join(id: K, (): ()) -> K {
        id
    }
    fn merge(&self, (): &mut (), (): ()) {}
}

/// Keys `(K, P)` whose value `P` is merged by `self.0`: the `Valued` stores.
#[derive(Clone, Copy, Debug)]
pub struct WithValue<P>(pub fn(&mut P, P));

impl<P> WithValue<P> {
    /// The newer value replaces the pending one (`Latest`).
    pub fn latest() -> Self {
        WithValue(|pending, newer| *pending = newer)
    }
}

impl<K, P> Carry<(K, P)> for WithValue<P>
where
    K: Copy + Eq + Hash + core::fmt::Debug,
    P: Clone + core::fmt::Debug,
{
    type Id = K;
    type Value = P;
    fn split(key: (K, P)) -> (K, P) {
        key
    }
    fn join(id: K, value: P) -> (K, P) {
        (id, value)
    }
    fn merge(&self, pending: &mut P, newer: P) {
        (self.0)(pending, newer)
    }
}

/// The key types of the model runs (the proptest's and the fuzz
/// targets'): `u8` identities, plain or with a `u32` value; `make(id, n)`
/// is the key of a run's n-th key offer (its value `n`: every value
/// offered differs, so a merge lost, doubled or misplaced shows).
pub trait RunKey: Copy + Eq + Hash + core::fmt::Debug {
    type Carry: Carry<Self, Id = u8>;
    fn make(id: u8, n: u32) -> Self;
}

impl RunKey for u8 {
    type Carry = Plain;
    fn make(id: u8, _: u32) -> Self {
        id
    }
}

impl RunKey for (u8, u32) {
    type Carry = WithValue<u32>;
    fn make(id: u8, n: u32) -> Self {
        (id, n)
    }
}

/// The additive merge of the valued runs (besides `Latest`): with every
/// value distinct, a lost or doubled merge changes the sum.
pub fn wrapping_add(pending: &mut u32, newer: u32) {
    *pending = pending.wrapping_add(newer);
}

/// Where a pending key is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    Queued,
    InFlight,
    /// In flight and offered again meanwhile (under `Requeue`): queued once
    /// more at the ack.
    Dirty,
}

/// The counters of `Stats`, as the model keeps them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub enqueued: u64,
    pub coalesced_queued: u64,
    pub coalesced_in_flight: u64,
    pub full_rejections: u64,
    pub closed_rejections: u64,
    pub taken: u64,
    pub acked: u64,
    pub nacked: u64,
    pub requeued_dirty: u64,
    pub high_water_mark: usize,
}

impl Counts {
    /// The queue's counters, to compare with the model's.
    pub fn of(stats: &Stats) -> Self {
        Self {
            enqueued: stats.enqueued,
            coalesced_queued: stats.coalesced_queued,
            coalesced_in_flight: stats.coalesced_in_flight,
            full_rejections: stats.full_rejections,
            closed_rejections: stats.closed_rejections,
            taken: stats.taken,
            acked: stats.acked,
            nacked: stats.nacked,
            requeued_dirty: stats.requeued_dirty,
            high_water_mark: stats.high_water_mark,
        }
    }

    /// Every offer, by its outcome (what `Stats::offered` sums).
    pub fn offered(&self) -> u64 {
        self.enqueued
            + self.coalesced_queued
            + self.coalesced_in_flight
            + self.full_rejections
            + self.closed_rejections
    }
}

/// A pending key in the model: where it is, and its value. `value` is the
/// value a take delivers while `Queued`, `None` while `InFlight` (the
/// leased value is the lease's), and the values arrived since the lease
/// began, merged among themselves, while `Dirty`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending<P> {
    pub state: KeyState,
    pub value: Option<P>,
}

/// The plain model of one queue whose keys are `K`; `C` says what a key
/// carries (its identity is what the ring and the map hold).
pub struct Model<K, V, C: Carry<K> = Plain> {
    pub capacity: usize,
    pub policy: InFlightPolicy,
    pub ring: VecDeque<Entry<C::Id, V>>,
    pub keys: HashMap<C::Id, Pending<C::Value>>,
    /// Leases not yet ended.
    pub in_flight: usize,
    pub closed: bool,
    pub counts: Counts,
    pub carry: C,
}

impl<K: Copy + Eq + Hash + core::fmt::Debug, V> Model<K, V> {
    pub fn new(capacity: usize, policy: InFlightPolicy) -> Self {
        Self::with_carry(capacity, policy, Plain)
    }
}

impl<K: Copy, V, C: Carry<K>> Model<K, V, C> {
    /// A model whose keys carry what `carry` says (merged by it).
    pub fn with_carry(capacity: usize, policy: InFlightPolicy, carry: C) -> Self {
        Self {
            capacity,
            policy,
            ring: VecDeque::new(),
            keys: HashMap::new(),
            in_flight: 0,
            closed: false,
            counts: Counts::default(),
            carry,
        }
    }

    /// The state of the key with identity `id`, if pending.
    pub fn state(&self, id: &C::Id) -> Option<KeyState> {
        self.keys.get(id).map(|pending| pending.state)
    }

    /// Slots claimed: queued plus in flight.
    pub fn claimed(&self) -> usize {
        self.ring.len() + self.in_flight
    }

    pub fn is_full(&self) -> bool {
        self.claimed() >= self.capacity
    }

    /// Would an offer of `key` return at once (not wait for room)?
    pub fn offer_key_ready(&self, key: K) -> bool {
        let (id, _) = C::split(key);
        self.closed || self.keys.contains_key(&id) || !self.is_full()
    }

    /// Would an offer of an item return at once?
    pub fn offer_item_ready(&self) -> bool {
        self.closed || !self.is_full()
    }

    /// Would a take return at once (an entry, or closed and drained)? With
    /// leases out the ring may stay empty until a nack, and a take reports
    /// `Closed` only once nothing is queued and no lease is out.
    pub fn take_ready(&self) -> bool {
        !self.ring.is_empty() || self.drained()
    }

    /// Closed, nothing queued and no lease out: `Closed` is final.
    pub fn drained(&self) -> bool {
        self.closed && self.ring.is_empty() && self.in_flight == 0
    }

    fn push_new(&mut self, entry: Entry<C::Id, V>) {
        self.ring.push_back(entry);
        self.counts.enqueued += 1;
        self.counts.high_water_mark = self.counts.high_water_mark.max(self.claimed());
    }

    /// An offer of `key` that does not wait: what `try_offer_key` returns.
    /// Its value is merged into a queued copy's, into what arrived while
    /// the key is leased (the first arrival starts afresh) under `Requeue`,
    /// and dropped under `Absorb`.
    pub fn offer_key(&mut self, key: K) -> Result<Offered, TryOfferError<K>> {
        if self.closed {
            self.counts.closed_rejections += 1;
            return Err(TryOfferError::Closed(key));
        }
        let full = self.is_full();
        let (id, value) = C::split(key);
        match self.keys.get_mut(&id) {
            Some(pending) if pending.state == KeyState::Queued => {
                let queued = pending
                    .value
                    .as_mut()
                    .expect("model: a queued key has a value");
                self.carry.merge(queued, value);
                self.counts.coalesced_queued += 1;
                Ok(Offered::Coalesced)
            }
            Some(pending) => {
                if self.policy == InFlightPolicy::Requeue {
                    pending.state = KeyState::Dirty;
                    match &mut pending.value {
                        Some(arrived) => self.carry.merge(arrived, value),
                        None => pending.value = Some(value),
                    }
                }
                self.counts.coalesced_in_flight += 1;
                Ok(Offered::Coalesced)
            }
            None if full => {
                self.counts.full_rejections += 1;
                Err(TryOfferError::Full(C::join(id, value)))
            }
            None => {
                self.keys.insert(
                    id,
                    Pending {
                        state: KeyState::Queued,
                        value: Some(value),
                    },
                );
                self.push_new(Entry::Key(id));
                Ok(Offered::Enqueued)
            }
        }
    }

    /// An offer of a pass-through item that does not wait: `try_offer`.
    pub fn offer_item(&mut self, item: V) -> Result<(), TryOfferError<V>> {
        if self.closed {
            self.counts.closed_rejections += 1;
            Err(TryOfferError::Closed(item))
        } else if self.is_full() {
            self.counts.full_rejections += 1;
            Err(TryOfferError::Full(item))
        } else {
            self.push_new(Entry::Item(item));
            Ok(())
        }
    }

    /// A take that does not wait: `try_take` or `try_take_leased`. A key is
    /// delivered with the value pending at the take.
    pub fn take(&mut self, leased: bool) -> Result<Entry<K, V>, TryTakeError> {
        let Some(entry) = self.ring.pop_front() else {
            return Err(if self.drained() {
                TryTakeError::Closed
            } else {
                TryTakeError::Empty
            });
        };
        let entry = match entry {
            Entry::Key(id) => {
                let value = if leased {
                    let pending = self.keys.get_mut(&id).expect("a queued key is in the map");
                    assert_eq!(
                        pending.state,
                        KeyState::Queued,
                        "model: queued key {id:?} not Queued"
                    );
                    pending.state = KeyState::InFlight;
                    pending.value.take()
                } else {
                    let pending = self.keys.remove(&id);
                    assert_eq!(
                        pending.as_ref().map(|p| p.state),
                        Some(KeyState::Queued),
                        "model: {id:?}"
                    );
                    pending.and_then(|p| p.value)
                };
                Entry::Key(C::join(id, value.expect("model: a queued key has a value")))
            }
            Entry::Item(item) => Entry::Item(item),
        };
        if leased {
            self.in_flight += 1;
        }
        self.counts.taken += 1;
        Ok(entry)
    }

    /// `take_batch` / `take_batch_leased` with a zero linger; `None` if it
    /// would wait for ever (nothing queued, not closed).
    pub fn take_batch(&mut self, max: usize, leased: bool) -> Option<Vec<Entry<K, V>>> {
        assert!(max > 0, "the queue refuses a batch of at most 0");
        if !self.take_ready() {
            return None;
        }
        let mut out = Vec::new();
        while out.len() < max {
            match self.take(leased) {
                Ok(entry) => out.push(entry),
                Err(_) => break,
            }
        }
        Some(out)
    }

    /// Ends the lease of `entry`: an ack removes the key (or queues it once
    /// more if it is dirty, with the values arrived) and drops an item; a
    /// nack queues it again, its value `merge(leased, arrived)` (the leased
    /// value if nothing arrived).
    pub fn end_lease(&mut self, entry: Entry<K, V>, ack: bool) {
        assert!(self.in_flight > 0, "model: ending a lease with none out");
        self.in_flight -= 1;
        let requeue = match entry {
            Entry::Key(key) => {
                let (id, leased) = C::split(key);
                let Some(pending) = self.keys.get_mut(&id) else {
                    panic!("model: leased key {id:?} not pending");
                };
                let arrived = match pending.state {
                    KeyState::Dirty => pending.value.take(),
                    KeyState::InFlight => None,
                    KeyState::Queued => panic!("model: leased key {id:?} Queued"),
                };
                let value = match (ack, arrived) {
                    (true, None) => None,
                    (true, Some(arrived)) => {
                        self.counts.requeued_dirty += 1;
                        Some(arrived)
                    }
                    (false, None) => Some(leased),
                    (false, Some(arrived)) => {
                        let mut value = leased;
                        self.carry.merge(&mut value, arrived);
                        Some(value)
                    }
                };
                match value {
                    Some(value) => {
                        *pending = Pending {
                            state: KeyState::Queued,
                            value: Some(value),
                        };
                        Some(Entry::Key(id))
                    }
                    None => {
                        self.keys.remove(&id);
                        None
                    }
                }
            }
            Entry::Item(item) => (!ack).then_some(Entry::Item(item)),
        };
        if ack {
            self.counts.acked += 1;
        } else {
            self.counts.nacked += 1;
        }
        if let Some(entry) = requeue {
            self.ring.push_back(entry);
        }
    }

    /// `close()`: `true` for the call that closed it.
    pub fn close(&mut self) -> bool {
        !std::mem::replace(&mut self.closed, true)
    }
}
