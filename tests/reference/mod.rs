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
//!
//! Retries (a queue built with `Builder::retries(..).manual_clock()`): the
//! model keeps its own clock (`now`, moved only by [`Model::advance_clock`],
//! as the queue's manual clock), a delay schedule ([`Model::delayed`], in
//! order of due time, then of delaying), each pending copy's attempt count
//! ([`Pending::attempt`]), and its own exponential backoff without jitter
//! ([`Model::with_retries`]). When due entries join the ring, exactly as
//! the queue does it (`src/queue/steps.rs`, `src/queue/delays.rs`):
//! * nowhere by themselves: a clock advance, an offer, a nack or an ack
//!   leaves a due entry in the schedule, and whatever is queued meanwhile
//!   comes before it;
//! * a take that pops an entry queues every due entry at the tail after its
//!   pop (`account_taken`); a take that finds the ring empty queues them
//!   and pops again (`attempt_take_after_empty`), so a due entry is taken
//!   by the first take that finds nothing ahead of it; a batch take does
//!   both (its first take, then pops of what is queued then); after the
//!   pop or before it gives the same ring from one thread (the head is
//!   popped either way, and a due entry is never also queued, G2);
//! * `len`, `is_empty` and `stats` queue them first ([`Model::queue_due`]);
//! * `close` queues every delayed entry, due or not, in order, and a delayed
//!   nack after close is a plain nack (queued at once, not counted in
//!   `delayed_nacks`).
//!
//! A new key offered with a delay (`try_offer_key_after`) is pending and
//! holds its slot from the offer on, in the same schedule.
#![allow(dead_code)]

use coalescing_queue::{Entry, InFlightPolicy, Offered, Stats, TryOfferError, TryTakeError};
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

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
    /// Nacks with a delay that went into the schedule (not those after
    /// close, which queue at once); also counted in `nacked`.
    pub delayed_nacks: u64,
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
            delayed_nacks: stats.delayed_nacks,
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
/// value a take delivers while `Queued` (in the ring or delayed), `None`
/// while `InFlight` (the leased value is the lease's), and the values
/// arrived since the lease began, merged among themselves, while `Dirty`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending<P> {
    pub state: KeyState,
    pub value: Option<P>,
    /// The attempt of this pending copy's next lease while `Queued` (1 for
    /// a new copy, one more after each nack), and of its lease while
    /// `InFlight` or `Dirty`.
    pub attempt: u32,
}

impl<P> Pending<P> {
    /// A new pending copy, queued with `value`: attempt 1.
    fn queued(value: P) -> Self {
        Self {
            state: KeyState::Queued,
            value: Some(value),
            attempt: 1,
        }
    }
}

/// An entry nacked with a delay: it holds its claim, its key (if any) is
/// `Queued` in the map, and it joins the ring's tail once due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delayed<E> {
    /// On the model's clock (nanoseconds since build), as the queue's.
    pub due: u64,
    pub entry: E,
}

/// How a lease ends in the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Ack,
    Nack,
    /// A nack with a delay, due at this time on the model's clock.
    NackUntil(u64),
}

/// Nanoseconds of `duration`, at most `u64::MAX` (as the queue's clock).
pub fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
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
    /// The delay schedule, in order of (due time, order of delaying):
    /// entries (key identities or items) nacked with a delay, not yet due
    /// or due and not yet queued by a take.
    pub delayed: VecDeque<Delayed<Entry<C::Id, V>>>,
    /// The manual clock, in nanoseconds since build.
    pub now: u64,
    /// `(base, max)` of the queue's backoff (no jitter), if built with
    /// retries.
    pub retries: Option<(Duration, Duration)>,
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
            delayed: VecDeque::new(),
            now: 0,
            retries: None,
        }
    }

    /// The model of a queue built with `.retries(Backoff::exponential(base,
    /// max)).manual_clock()`.
    pub fn with_retries(mut self, base: Duration, max: Duration) -> Self {
        self.retries = Some((base, max));
        self
    }

    /// The state of the key with identity `id`, if pending.
    pub fn state(&self, id: &C::Id) -> Option<KeyState> {
        self.keys.get(id).map(|pending| pending.state)
    }

    /// Slots claimed: queued, delayed and in flight.
    pub fn claimed(&self) -> usize {
        self.ring.len() + self.delayed.len() + self.in_flight
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
    /// `Closed` only once nothing is queued and no lease is out. A due
    /// entry is taken at once (the take queues it); one not yet due makes
    /// a take wait for ever on the manual clock.
    pub fn take_ready(&self) -> bool {
        !self.ring.is_empty() || self.has_due() || self.drained()
    }

    /// Closed, nothing queued or delayed and no lease out: `Closed` is
    /// final. (Nothing is delayed once closed.)
    pub fn drained(&self) -> bool {
        self.closed && self.ring.is_empty() && self.delayed.is_empty() && self.in_flight == 0
    }

    /// A delayed entry is due and not yet queued: `len`, `is_empty`,
    /// `stats` and any take would queue it (so they are not pure now).
    pub fn has_due(&self) -> bool {
        self.delayed.front().is_some_and(|d| d.due <= self.now)
    }

    /// Queues every due delayed entry at the ring's tail, in order; returns
    /// how many. What a take does after its pop (or, finding the ring
    /// empty, before it pops again), and what `len`, `is_empty` and
    /// `stats` do first.
    pub fn queue_due(&mut self) -> usize {
        let mut moved = 0;
        while self.has_due() {
            let Some(due) = self.delayed.pop_front() else {
                unreachable!()
            };
            self.ring.push_back(due.entry);
            moved += 1;
        }
        moved
    }

    /// Moves the manual clock on by `by` (`advance_clock`): nothing is
    /// queued by it.
    pub fn advance_clock(&mut self, by: Duration) {
        self.now = self.now.saturating_add(nanos(by));
    }

    /// The due time `delay` from now.
    pub fn due_after(&self, delay: Duration) -> u64 {
        self.now.saturating_add(nanos(delay))
    }

    /// How long until the first delayed entry is due (zero if due), as
    /// `Stats::next_due`.
    pub fn next_due(&self) -> Option<Duration> {
        self.delayed
            .front()
            .map(|d| Duration::from_nanos(d.due.saturating_sub(self.now)))
    }

    /// The backoff's delay for `attempt`, worked out here (not by the
    /// crate's `Backoff`): `base × 2^(attempt - 1)`, at most `max`; attempt
    /// 0 counts as 1.
    pub fn backoff_delay(&self, attempt: u32) -> Duration {
        let (base, max) = self
            .retries
            .expect("model: a delayed nack on a queue without retries");
        let mut delay = base;
        for _ in 1..attempt {
            if delay >= max || delay.is_zero() {
                break;
            }
            delay = delay.saturating_mul(2);
        }
        delay.min(max)
    }

    /// The attempt of the lease that holds `entry` (1 for an item).
    pub fn attempt_of(&self, entry: &Entry<K, V>) -> u32 {
        match entry {
            Entry::Key(key) => {
                let (id, _) = C::split(*key);
                let pending = self.keys.get(&id).expect("model: a leased key is pending");
                assert_ne!(pending.state, KeyState::Queued, "model: {id:?}");
                pending.attempt
            }
            Entry::Item(_) => 1,
        }
    }

    fn push_new(&mut self, entry: Entry<C::Id, V>) {
        self.ring.push_back(entry);
        self.count_new();
    }

    /// A new entry has claimed its slot (queued or delayed).
    fn count_new(&mut self) {
        self.counts.enqueued += 1;
        self.counts.high_water_mark = self.counts.high_water_mark.max(self.claimed());
    }

    /// Puts `entry` into the schedule until `due`, after every entry due
    /// no later: in order of (due time, order of delaying).
    fn delay(&mut self, entry: Entry<C::Id, V>, due: u64) {
        let at = self.delayed.partition_point(|d| d.due <= due);
        self.delayed.insert(at, Delayed { due, entry });
    }

    /// An offer of `key` that does not wait: what `try_offer_key` returns.
    /// Its value is merged into a queued copy's, into what arrived while
    /// the key is leased (the first arrival starts afresh) under `Requeue`,
    /// and dropped under `Absorb`.
    pub fn offer_key(&mut self, key: K) -> Result<Offered, TryOfferError<K>> {
        self.offer_key_until(key, None)
    }

    /// `try_offer_key_after(key, delay)`: as [`offer_key`](Self::offer_key),
    /// but a new copy goes into the schedule (counted as enqueued, not as a
    /// delayed nack); a pending key is coalesced where it is, its place
    /// (and any delay) unchanged.
    pub fn offer_key_after(
        &mut self,
        key: K,
        delay: Duration,
    ) -> Result<Offered, TryOfferError<K>> {
        let due = self.due_after(delay);
        self.offer_key_until(key, Some(due))
    }

    /// An offer of `key` whose new copy is queued, or with `due` delayed.
    fn offer_key_until(&mut self, key: K, due: Option<u64>) -> Result<Offered, TryOfferError<K>> {
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
                self.keys.insert(id, Pending::queued(value));
                match due {
                    None => self.push_new(Entry::Key(id)),
                    Some(due) => {
                        self.delay(Entry::Key(id), due);
                        self.count_new();
                    }
                }
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
        self.take_attempt(leased).map(|(entry, _)| entry)
    }

    /// As [`take`](Self::take), with the lease's attempt (1 for an item, or
    /// for a plain take). Pops the head, then queues what is due behind
    /// what is queued; or, the ring empty, queues what is due and pops
    /// again.
    pub fn take_attempt(&mut self, leased: bool) -> Result<(Entry<K, V>, u32), TryTakeError> {
        let popped = match self.ring.pop_front() {
            Some(entry) => Some(entry),
            // `Closed` is never retried (nothing is delayed after close).
            None if !self.drained() && self.queue_due() > 0 => self.ring.pop_front(),
            None => None,
        };
        let Some(entry) = popped else {
            return Err(if self.drained() {
                TryTakeError::Closed
            } else {
                TryTakeError::Empty
            });
        };
        let mut attempt = 1;
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
                    attempt = pending.attempt;
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
        // After the pop: what fell due joins the tail.
        self.queue_due();
        Ok((entry, attempt))
    }

    /// `take_batch` / `take_batch_leased` with a zero linger; `None` if it
    /// would wait for ever (nothing queued, not closed).
    pub fn take_batch(&mut self, max: usize, leased: bool) -> Option<Vec<Entry<K, V>>> {
        let batch = self.take_batch_attempts(max, leased)?;
        Some(batch.into_iter().map(|(entry, _)| entry).collect())
    }

    /// As [`take_batch`](Self::take_batch), with each lease's attempt. The
    /// first take queues what is due (after its pop, or before it if the
    /// ring is empty), and the clock does not move, so the rest are pops.
    pub fn take_batch_attempts(
        &mut self,
        max: usize,
        leased: bool,
    ) -> Option<Vec<(Entry<K, V>, u32)>> {
        assert!(max > 0, "the queue refuses a batch of at most 0");
        if !self.take_ready() {
            return None;
        }
        let mut out = Vec::new();
        while out.len() < max {
            match self.take_attempt(leased) {
                Ok(taken) => out.push(taken),
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
        self.end_lease_as(entry, if ack { End::Ack } else { End::Nack });
    }

    /// `nack_after(delay)` of the lease of `entry`.
    pub fn nack_after(&mut self, entry: Entry<K, V>, delay: Duration) {
        let due = self.due_after(delay);
        self.end_lease_as(entry, End::NackUntil(due));
    }

    /// `nack_backoff()` of the lease of `entry`: the delay its attempt
    /// gives, returned.
    pub fn nack_backoff(&mut self, entry: Entry<K, V>) -> Duration {
        let delay = self.backoff_delay(self.attempt_of(&entry));
        self.nack_after(entry, delay);
        delay
    }

    /// Ends the lease of `entry` as `end` says. A nack (with a delay or
    /// not) keeps the pending copy, whose next attempt is one more; an ack
    /// of a dirty key queues a new copy (attempt 1). A delayed nack puts
    /// the entry into the schedule, after every entry due no later (or,
    /// once closed, queues it at once).
    pub fn end_lease_as(&mut self, entry: Entry<K, V>, end: End) {
        let ack = end == End::Ack;
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
                        let attempt = if ack {
                            // What arrived in flight: a new copy.
                            1
                        } else {
                            pending.attempt.saturating_add(1)
                        };
                        *pending = Pending {
                            state: KeyState::Queued,
                            value: Some(value),
                            attempt,
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
        let Some(entry) = requeue else { return };
        match end {
            End::NackUntil(due) if !self.closed => {
                self.counts.delayed_nacks += 1;
                self.delay(entry, due);
            }
            _ => self.ring.push_back(entry),
        }
    }

    /// `close()`: `true` for the call that closed it. Every delayed entry
    /// falls due: queued at once, in order.
    pub fn close(&mut self) -> bool {
        let closed_now = !std::mem::replace(&mut self.closed, true);
        self.ring.extend(self.delayed.drain(..).map(|d| d.entry));
        closed_now
    }
}
