//! The designs the crate is measured against (DESIGN.md section 6),
//! behind one small trait so that every workload runs the same code on each.
//!
//! All of them use the crate's key type and the crate's default hasher
//! (`coalescing_queue::DefaultHashBuilder`, i.e. `foldhash::fast::RandomState`):
//!
//! * `crate`   - `CoalescingQueue<Key, Box<Message>, Compact>` (try forms,
//!   `take_batch`, and the leased forms through `Leased`): the compact key
//!   store, which the targets are for;
//! * `general` - `CoalescingQueue<Key, Box<Message>>`, the general key store
//!   (`Hash + Eq + Clone` keys), the same code as `crate` around it;
//! * `raw`     - `crossbeam_queue::ArrayQueue<Key>`, no dedupe: the limit;
//! * `mutex`   - `Mutex<(VecDeque<Key>, HashSet<Key>)>` with coalescing: what a
//!   user writes by hand;
//! * `ported`  - the seed's design: `crossbeam_channel::bounded<Key>` plus
//!   `Mutex<HashSet<Key>>`, reserve in the set, then `try_send`, and on
//!   `Full` remove the reservation again; take = recv, then remove;
//! * `dashmap` - the original design card: `crossbeam_queue::ArrayQueue<Key>`
//!   plus a `DashMap<Key, ()>` reservation set and an `AtomicUsize` slot
//!   count; claim a slot, then reserve in the map (coalesce if present);
//!   take = pop, then remove, then release the slot;
//! * `eager`   - a boxed 120-byte message built from the key at every offer,
//!   no dedupe, in a `crossbeam_channel::bounded<Box<Message>>`.
//!
//! Keys with values (the `*value*` workloads) have their own small trait,
//! [`ValueDesign`]: a key is offered with a `u64` value, a pending key's
//! value is replaced by a newer one (latest wins) and a take delivers the
//! key with its value. Four designs, in the columns of the same names:
//!
//! * `crate`   - `CoalescingQueue<(Key, u64), Box<Message>, Valued<Compact>>`,
//!   the compact valued store (the value in atomic words beside the key's);
//! * `general` - `CoalescingQueue<(Key, u64), Box<Message>, Valued>`, the
//!   general valued store (the value under the entry's lock);
//! * `mutex`   - `Mutex<(VecDeque<Key>, HashMap<Key, u64>)>`: the `mutex`
//!   design with a map of values for its set;
//! * `dashmap` - `ArrayQueue<Key>` plus a `DashMap<Key, u64>` and `Dash`'s
//!   slot count: the `dashmap` design with values; an offer of a pending
//!   key replaces its value in place, a take pops a key and removes its
//!   entry, which hands over the value.
//!
//! Deduping designs deliver keys; materializing a key into a message is the
//! consumer's own code and the same for all of them, so it is not part of
//! the queue's cost. The eager design pays it (and an allocation) per offer:
//! that is what it is.
//!
//! This file is shared by `benches/queues.rs` and `examples/memory.rs`.
#![allow(dead_code)]

use coalescing_queue::{CoalescingQueue, DefaultHashBuilder, Entry, Offered, Valued};
use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use crossbeam_queue::ArrayQueue;
use dashmap::mapref::entry::Entry as MapEntry;
use dashmap::DashMap;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The benchmark key: 32 bytes (u128 id, u64 ts, two flags), 16-byte aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub id: u128,
    pub ts: u64,
    pub a: bool,
    pub b: bool,
}

const _: () = assert!(core::mem::size_of::<Key>() == 32);

// The one line the compact store asks of a key type.
coalescing_queue::compact_key!(Key {
    id: u128,
    ts: u64,
    a: bool,
    b: bool
});

/// The `depth_*` workloads: a queue of capacity 2^20 holding `pending`
/// distinct keys (`key(base)` .. `key(base + pending - 1)`, oldest first),
/// as a fan-out's sender does with one key per dispatcher pending. A round
/// is 10 offers: 9 duplicates of random pending keys, then a take (the
/// oldest key) and an offer of a new key, so the depth stays `pending`.
pub struct Depth {
    base: u64,
    pending: u64,
    rng: u64,
}

/// The capacity of the `depth_*` workloads.
pub const DEPTH_CAPACITY: usize = 1 << 20;

impl Depth {
    /// Fills `q` with `pending` distinct keys.
    pub fn fill<D: Design>(q: &D, pending: u64) -> Depth {
        for i in 0..pending {
            assert!(
                matches!(q.try_offer(D::prepare(key(i))), Ok(true)),
                "fill {i}"
            );
        }
        Depth {
            base: 0,
            pending,
            rng: 0x2545_f491_4f6c_dd1d,
        }
    }

    /// One round of 10 offers (see [`Depth`]).
    #[inline]
    pub fn round<D: Design>(&mut self, q: &D) {
        for _ in 0..9 {
            // xorshift64: a pending key at random, spread over the table.
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let i = self.base + self.rng % self.pending;
            std::hint::black_box(q.try_offer(D::prepare(key(i))).is_ok());
        }
        std::hint::black_box(q.try_take());
        self.base += 1;
        let new = self.base + self.pending - 1;
        std::hint::black_box(q.try_offer(D::prepare(key(new))).is_ok());
    }
}

/// Key number `i`: id `0x9e3779b97f4a7c15 << 64 | i`, ts `i + 1000`.
#[inline]
pub fn key(i: u64) -> Key {
    Key {
        id: (0x9e37_79b9_7f4a_7c15_u128 << 64) | i as u128,
        ts: i + 1000,
        a: i & 1 == 1,
        b: false,
    }
}

/// A fully built message, as the eager design sends per offer.
pub type Message = [u8; 120];

/// Builds the message for `key` (a stand-in for serialization).
#[inline]
pub fn materialize(key: &Key) -> Box<Message> {
    let mut m = Box::new([0u8; 120]);
    m[0..16].copy_from_slice(&key.id.to_le_bytes());
    m[16..24].copy_from_slice(&key.ts.to_le_bytes());
    m[24] = key.a as u8;
    m[25] = key.b as u8;
    m[26..34].copy_from_slice(b"DDL-DONE");
    m
}

/// One design under test, reduced to the operations the workloads use.
/// Everything is a non-blocking try form: the workloads wait the same way
/// (spin, then yield) for every design.
pub trait Design: Send + Sync + Sized {
    /// Benchmark function name, also the column in the report.
    const NAME: &'static str;
    /// Whether duplicate pending keys are coalesced.
    const DEDUPES: bool;
    /// What an offer carries (a key, or a built message for `eager`).
    type Pending: Send;
    /// What a take returns.
    type Out: Send;

    fn with_capacity(capacity: usize) -> Self;
    /// Turns a key into what is offered (done once per offer, not per retry).
    fn prepare(key: Key) -> Self::Pending;
    /// `Ok(true)` new entry, `Ok(false)` coalesced, `Err(back)` full.
    fn try_offer(&self, p: Self::Pending) -> Result<bool, Self::Pending>;
    fn try_take(&self) -> Option<Self::Out>;
    /// Appends up to `max` entries to `out` without blocking; returns how many.
    /// Only ever called by a single consumer.
    fn take_batch(&self, out: &mut Vec<Self::Out>, max: usize) -> usize;
}

/// The crate's leased takes, which the baselines do not have: each lease
/// ends with an ack, as a consumer's does once the entry is delivered.
pub trait Leased: Design {
    /// Takes one entry with a lease without blocking, shows it to `f`, then
    /// acks it. Returns whether there was one.
    fn try_take_ack(&self, f: impl FnOnce(&Self::Out)) -> bool;
    /// Takes up to `max` entries with leases (gathering for at most
    /// `linger`), shows them to `f`, then acks the batch; returns how many.
    /// Returns 0 without blocking when empty. Only ever called by a single
    /// consumer.
    fn take_batch_ack(&self, max: usize, linger: Duration, f: impl FnOnce(&[Self::Out])) -> usize;
}

/// A design of keys with values (the `*value*` workloads): `Key` is the
/// identity that coalesces, the `u64` its value. An offer of a pending key
/// replaces the pending value with its own (latest wins); a take delivers a
/// key with the value pending at the take. Try forms only, as [`Design`].
pub trait ValueDesign: Send + Sync + Sized {
    /// Benchmark function name, also the column in the report.
    const NAME: &'static str;

    fn with_capacity(capacity: usize) -> Self;
    /// `Ok(true)` new entry, `Ok(false)` the pending key's value replaced,
    /// `Err(back)` full.
    fn try_offer_value(&self, key: Key, value: u64) -> Result<bool, (Key, u64)>;
    fn try_take_value(&self) -> Option<(Key, u64)>;
}

// ----- the crate -----

/// The queue the `crate` column measures: the compact key store.
pub type CrateQueue = CoalescingQueue<Key, Box<Message>, coalescing_queue::Compact>;

/// The queue the `general` column measures: the general key store.
pub type GeneralQueue = CoalescingQueue<Key, Box<Message>>;

/// Implements `Design` and `Leased` for a newtype over one of the crate's
/// queues: `crate` and `general` run the very same code.
macro_rules! crate_design {
    ($design:ident, $queue:ty, $name:literal) => {
        pub struct $design(pub $queue);

        impl Design for $design {
            const NAME: &'static str = $name;
            const DEDUPES: bool = true;
            type Pending = Key;
            type Out = Entry<Key, Box<Message>>;

            fn with_capacity(capacity: usize) -> Self {
                // `new` uses `DefaultHashBuilder` = foldhash::fast::RandomState.
                $design(<$queue>::new(capacity))
            }
            #[inline]
            fn prepare(key: Key) -> Key {
                key
            }
            #[inline]
            fn try_offer(&self, k: Key) -> Result<bool, Key> {
                match self.0.try_offer_key(k) {
                    Ok(Offered::Enqueued) => Ok(true),
                    Ok(Offered::Coalesced) => Ok(false),
                    Err(e) => Err(e.into_inner()),
                }
            }
            #[inline]
            fn try_take(&self) -> Option<Self::Out> {
                self.0.try_take().ok()
            }
            #[inline]
            fn take_batch(&self, out: &mut Vec<Self::Out>, max: usize) -> usize {
                // `take_batch` blocks (parks) for its first entry; check first so the
                // consumer waits the same way as with the other designs. Sound with
                // one consumer: nobody else can empty the ring in between.
                if self.0.is_empty() {
                    return 0;
                }
                self.0.take_batch(out, max, Duration::ZERO)
            }
        }

        impl Leased for $design {
            #[inline]
            fn try_take_ack(&self, f: impl FnOnce(&Self::Out)) -> bool {
                match self.0.try_take_leased() {
                    Ok(lease) => {
                        f(lease.entry());
                        lease.ack();
                        true
                    }
                    Err(_) => false,
                }
            }
            #[inline]
            fn take_batch_ack(
                &self,
                max: usize,
                linger: Duration,
                f: impl FnOnce(&[Self::Out]),
            ) -> usize {
                // As `take_batch`: `take_batch_leased` blocks for its first
                // entry, so check first (sound with one consumer).
                if self.0.is_empty() {
                    return 0;
                }
                let batch = self.0.take_batch_leased(max, linger);
                let n = batch.len();
                f(batch.entries());
                batch.ack();
                n
            }
        }
    };
}

crate_design!(Crate, CrateQueue, "crate");
crate_design!(CrateGeneral, GeneralQueue, "general");

/// The queue the `crate` column of the value workloads measures: the
/// compact valued store (`Key` and `u64` both `CompactKey`).
pub type CrateValuedQueue =
    CoalescingQueue<(Key, u64), Box<Message>, Valued<coalescing_queue::Compact>>;

/// The queue the `general` column of the value workloads measures: the
/// general valued store.
pub type GeneralValuedQueue = CoalescingQueue<(Key, u64), Box<Message>, Valued>;

/// Implements `ValueDesign` for a newtype over one of the crate's valued
/// queues (`Latest`, the default merge): both stores run the same code.
macro_rules! crate_value_design {
    ($design:ident, $queue:ty, $name:literal) => {
        pub struct $design(pub $queue);

        impl ValueDesign for $design {
            const NAME: &'static str = $name;

            fn with_capacity(capacity: usize) -> Self {
                // `new` uses `DefaultHashBuilder` = foldhash::fast::RandomState.
                $design(<$queue>::new(capacity))
            }
            #[inline]
            fn try_offer_value(&self, key: Key, value: u64) -> Result<bool, (Key, u64)> {
                match self.0.try_offer_key((key, value)) {
                    Ok(Offered::Enqueued) => Ok(true),
                    Ok(Offered::Coalesced) => Ok(false),
                    Err(e) => Err(e.into_inner()),
                }
            }
            #[inline]
            fn try_take_value(&self) -> Option<(Key, u64)> {
                match self.0.try_take() {
                    Ok(Entry::Key(pair)) => Some(pair),
                    Ok(Entry::Item(_)) => unreachable!("no items are offered"),
                    Err(_) => None,
                }
            }
        }
    };
}

crate_value_design!(CrateValued, CrateValuedQueue, "crate");
crate_value_design!(CrateGeneralValued, GeneralValuedQueue, "general");

// ----- raw ArrayQueue, no dedupe: the limit -----

pub struct Raw(pub ArrayQueue<Key>);

impl Design for Raw {
    const NAME: &'static str = "raw";
    const DEDUPES: bool = false;
    type Pending = Key;
    type Out = Key;

    fn with_capacity(capacity: usize) -> Self {
        Raw(ArrayQueue::new(capacity))
    }
    #[inline]
    fn prepare(key: Key) -> Key {
        key
    }
    #[inline]
    fn try_offer(&self, k: Key) -> Result<bool, Key> {
        self.0.push(k).map(|()| true)
    }
    #[inline]
    fn try_take(&self) -> Option<Key> {
        self.0.pop()
    }
    #[inline]
    fn take_batch(&self, out: &mut Vec<Key>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            match self.0.pop() {
                Some(k) => out.push(k),
                None => break,
            }
            n += 1;
        }
        n
    }
}

// ----- Mutex<(VecDeque, HashSet)>: what a user writes by hand -----

pub struct MutexQ {
    inner: Mutex<(VecDeque<Key>, HashSet<Key, DefaultHashBuilder>)>,
    capacity: usize,
}

impl Design for MutexQ {
    const NAME: &'static str = "mutex";
    const DEDUPES: bool = true;
    type Pending = Key;
    type Out = Key;

    fn with_capacity(capacity: usize) -> Self {
        MutexQ {
            inner: Mutex::new((
                VecDeque::with_capacity(capacity),
                HashSet::with_capacity_and_hasher(capacity, DefaultHashBuilder::default()),
            )),
            capacity,
        }
    }
    #[inline]
    fn prepare(key: Key) -> Key {
        key
    }
    /// If pending -> coalesced; else if full -> Full; else insert + push_back.
    /// (Written with one hash per offer: `insert` reports a present key.)
    #[inline]
    fn try_offer(&self, k: Key) -> Result<bool, Key> {
        let mut g = self.inner.lock().unwrap();
        let (deque, set) = &mut *g;
        if deque.len() >= self.capacity {
            return if set.contains(&k) { Ok(false) } else { Err(k) };
        }
        if set.insert(k) {
            deque.push_back(k);
            Ok(true)
        } else {
            Ok(false)
        }
    }
    #[inline]
    fn try_take(&self) -> Option<Key> {
        let mut g = self.inner.lock().unwrap();
        let (deque, set) = &mut *g;
        let k = deque.pop_front()?;
        set.remove(&k);
        Some(k)
    }
    /// One lock per batch.
    #[inline]
    fn take_batch(&self, out: &mut Vec<Key>, max: usize) -> usize {
        let mut g = self.inner.lock().unwrap();
        let (deque, set) = &mut *g;
        let mut n = 0;
        while n < max {
            let Some(k) = deque.pop_front() else { break };
            set.remove(&k);
            out.push(k);
            n += 1;
        }
        n
    }
}

// ----- Mutex<(VecDeque, HashMap<Key, u64>)>: the same with values -----

/// `mutex` with values: the deque of pending keys in order and a map from
/// each to its value, under one lock. (Its own code, not a generic shared
/// with `MutexQ`: that changed `MutexQ`'s code and instruction counts.)
pub struct MutexValues {
    inner: Mutex<(VecDeque<Key>, HashMap<Key, u64, DefaultHashBuilder>)>,
    capacity: usize,
}

impl ValueDesign for MutexValues {
    const NAME: &'static str = "mutex";

    fn with_capacity(capacity: usize) -> Self {
        MutexValues {
            inner: Mutex::new((
                VecDeque::with_capacity(capacity),
                HashMap::with_capacity_and_hasher(capacity, DefaultHashBuilder::default()),
            )),
            capacity,
        }
    }
    /// As `MutexQ`: if pending -> its value replaced, coalesced; else if
    /// full -> Full; else insert + push_back. One hash per offer: `insert`
    /// reports a present key, and replaces its value.
    #[inline]
    fn try_offer_value(&self, k: Key, value: u64) -> Result<bool, (Key, u64)> {
        let mut g = self.inner.lock().unwrap();
        let (deque, map) = &mut *g;
        if deque.len() >= self.capacity {
            return match map.get_mut(&k) {
                Some(pending) => {
                    *pending = value;
                    Ok(false)
                }
                None => Err((k, value)),
            };
        }
        if map.insert(k, value).is_none() {
            deque.push_back(k);
            Ok(true)
        } else {
            Ok(false)
        }
    }
    /// Pops the oldest key and removes its entry, which hands over its value.
    #[inline]
    fn try_take_value(&self) -> Option<(Key, u64)> {
        let mut g = self.inner.lock().unwrap();
        let (deque, map) = &mut *g;
        let k = deque.pop_front()?;
        let value = map.remove(&k).expect("a queued key is in the map");
        Some((k, value))
    }
}

// ----- the seed's design, ported: channel + Mutex<HashSet>, reserve then send -----

pub struct Ported {
    tx: Sender<Key>,
    rx: Receiver<Key>,
    set: Mutex<HashSet<Key, DefaultHashBuilder>>,
}

impl Design for Ported {
    const NAME: &'static str = "ported";
    const DEDUPES: bool = true;
    type Pending = Key;
    type Out = Key;

    fn with_capacity(capacity: usize) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        Ported {
            tx,
            rx,
            set: Mutex::new(HashSet::with_capacity_and_hasher(
                capacity,
                DefaultHashBuilder::default(),
            )),
        }
    }
    #[inline]
    fn prepare(key: Key) -> Key {
        key
    }
    #[inline]
    fn try_offer(&self, k: Key) -> Result<bool, Key> {
        // Reserve: lock the set, coalesce if present, else insert, unlock.
        if !self.set.lock().unwrap().insert(k) {
            return Ok(false);
        }
        // Then send; on Full roll the reservation back (the seed's bug: an
        // offer coalesced into the reservation meanwhile is lost).
        match self.tx.try_send(k) {
            Ok(()) => Ok(true),
            Err(TrySendError::Full(k)) => {
                self.set.lock().unwrap().remove(&k);
                Err(k)
            }
            Err(TrySendError::Disconnected(_)) => unreachable!(),
        }
    }
    #[inline]
    fn try_take(&self) -> Option<Key> {
        match self.rx.try_recv() {
            Ok(k) => {
                self.set.lock().unwrap().remove(&k);
                Some(k)
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => unreachable!(),
        }
    }
    /// Receives up to `max`, then removes them all under one lock.
    #[inline]
    fn take_batch(&self, out: &mut Vec<Key>, max: usize) -> usize {
        let start = out.len();
        while out.len() - start < max {
            match self.rx.try_recv() {
                Ok(k) => out.push(k),
                Err(_) => break,
            }
        }
        let n = out.len() - start;
        if n > 0 {
            let mut set = self.set.lock().unwrap();
            for k in &out[start..] {
                set.remove(k);
            }
        }
        n
    }
}

// ----- the original design card: ArrayQueue + DashMap reservations, slot count -----

pub struct Dash {
    ring: ArrayQueue<Key>,
    map: DashMap<Key, (), DefaultHashBuilder>,
    /// Claimed slots: queued, being pushed, or popped and not yet removed.
    slots: AtomicUsize,
    capacity: usize,
}

impl Dash {
    /// Claims a slot if fewer than `capacity` are claimed.
    #[inline]
    fn claim(&self) -> bool {
        let mut n = self.slots.load(Ordering::Relaxed);
        while n < self.capacity {
            match self
                .slots
                .compare_exchange_weak(n, n + 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => n = now,
            }
        }
        false
    }
    #[inline]
    fn release(&self, n: usize) {
        self.slots.fetch_sub(n, Ordering::Release);
    }
}

impl Design for Dash {
    const NAME: &'static str = "dashmap";
    const DEDUPES: bool = true;
    type Pending = Key;
    type Out = Key;

    fn with_capacity(capacity: usize) -> Self {
        Dash {
            ring: ArrayQueue::new(capacity),
            map: DashMap::with_capacity_and_hasher(capacity, DefaultHashBuilder::default()),
            slots: AtomicUsize::new(0),
            capacity,
        }
    }
    #[inline]
    fn prepare(key: Key) -> Key {
        key
    }
    /// Claim before reserve: claim a slot, then reserve the key in the map
    /// (one hash: `entry`); present -> give the slot back, coalesced; absent
    /// -> insert, unlock, push. The push cannot fail: the claim made room.
    /// No slot -> coalesced if pending (as `mutex` and the crate), else Full.
    #[inline]
    fn try_offer(&self, k: Key) -> Result<bool, Key> {
        if !self.claim() {
            return if self.map.contains_key(&k) {
                Ok(false)
            } else {
                Err(k)
            };
        }
        // The entry guard (the shard's write lock) ends with the match.
        let new = match self.map.entry(k) {
            MapEntry::Occupied(_) => false,
            MapEntry::Vacant(v) => {
                v.insert(());
                true
            }
        };
        if new {
            if self.ring.push(k).is_err() {
                unreachable!("a claimed slot has room in the ring");
            }
        } else {
            self.release(1);
        }
        Ok(new)
    }
    /// Remove after pop: pop, then remove the reservation, then release.
    #[inline]
    fn try_take(&self) -> Option<Key> {
        let k = self.ring.pop()?;
        self.map.remove(&k);
        self.release(1);
        Some(k)
    }
    /// Pops up to `max`, removes each, then releases their slots at once.
    #[inline]
    fn take_batch(&self, out: &mut Vec<Key>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Some(k) = self.ring.pop() else { break };
            self.map.remove(&k);
            out.push(k);
            n += 1;
        }
        if n > 0 {
            self.release(n);
        }
        n
    }
}

// ----- ArrayQueue + DashMap<Key, u64>: the design card with values -----

/// `dashmap` with values: a ring of the pending keys, a `DashMap` from each
/// to its value, and `Dash`'s slot count. Offers and takes follow `Dash`'s
/// order; an offer of a pending key replaces its value in place, a take
/// pops a key and removes its entry, which hands over the value pending at
/// the removal. The ring and slot count are a `Dash`'s, not a copy.
pub struct DashValues {
    /// `Dash`'s ring, slot count and `claim` / `release`; its own map (of
    /// reservations) stays empty: the values are in `map`.
    base: Dash,
    map: DashMap<Key, u64, DefaultHashBuilder>,
}

impl ValueDesign for DashValues {
    const NAME: &'static str = "dashmap";

    fn with_capacity(capacity: usize) -> Self {
        DashValues {
            // Only its ring and slot count are used; its map stays empty
            // (capacity 0: its shards hold no buckets).
            base: Dash {
                ring: ArrayQueue::new(capacity),
                map: DashMap::with_hasher(DefaultHashBuilder::default()),
                slots: AtomicUsize::new(0),
                capacity,
            },
            map: DashMap::with_capacity_and_hasher(capacity, DefaultHashBuilder::default()),
        }
    }
    /// As `Dash::try_offer`, the value replaced where `Dash` coalesces.
    #[inline]
    fn try_offer_value(&self, k: Key, value: u64) -> Result<bool, (Key, u64)> {
        if !self.base.claim() {
            return match self.map.get_mut(&k) {
                Some(mut pending) => {
                    *pending = value;
                    Ok(false)
                }
                None => Err((k, value)),
            };
        }
        // The entry guard (the shard's write lock) ends with the match.
        let new = match self.map.entry(k) {
            MapEntry::Occupied(mut pending) => {
                *pending.get_mut() = value;
                false
            }
            MapEntry::Vacant(v) => {
                v.insert(value);
                true
            }
        };
        if new {
            if self.base.ring.push(k).is_err() {
                unreachable!("a claimed slot has room in the ring");
            }
        } else {
            self.base.release(1);
        }
        Ok(new)
    }
    /// As `Dash::try_take`: pop, remove (taking the value), release.
    #[inline]
    fn try_take_value(&self) -> Option<(Key, u64)> {
        let k = self.base.ring.pop()?;
        let (_, value) = self.map.remove(&k).expect("a queued key is in the map");
        self.base.release(1);
        Some((k, value))
    }
}

// ----- eager materialization: a boxed message per offer, no dedupe -----

pub struct Eager {
    tx: Sender<Box<Message>>,
    rx: Receiver<Box<Message>>,
}

impl Design for Eager {
    const NAME: &'static str = "eager";
    const DEDUPES: bool = false;
    type Pending = Box<Message>;
    type Out = Box<Message>;

    fn with_capacity(capacity: usize) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        Eager { tx, rx }
    }
    #[inline]
    fn prepare(key: Key) -> Box<Message> {
        materialize(&key)
    }
    #[inline]
    fn try_offer(&self, m: Box<Message>) -> Result<bool, Box<Message>> {
        match self.tx.try_send(m) {
            Ok(()) => Ok(true),
            Err(TrySendError::Full(m)) => Err(m),
            Err(TrySendError::Disconnected(_)) => unreachable!(),
        }
    }
    #[inline]
    fn try_take(&self) -> Option<Box<Message>> {
        self.rx.try_recv().ok()
    }
    #[inline]
    fn take_batch(&self, out: &mut Vec<Box<Message>>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            match self.rx.try_recv() {
                Ok(m) => out.push(m),
                Err(_) => break,
            }
            n += 1;
        }
        n
    }
}

// ----- waiting: the same for every design -----

/// Spin a little (exponentially), then yield the core.
pub struct Backoff(u32);

impl Backoff {
    #[inline]
    pub fn new() -> Self {
        Backoff(0)
    }
    #[inline]
    pub fn snooze(&mut self) {
        if self.0 < 6 {
            for _ in 0..1u32 << self.0 {
                std::hint::spin_loop();
            }
            self.0 += 1;
        } else {
            std::thread::yield_now();
        }
    }
}

/// Offers `key`, waiting (spin, then yield) while the design is full.
/// Returns whether it became a new entry.
#[inline]
pub fn offer_wait<D: Design>(q: &D, key: Key) -> bool {
    let mut p = D::prepare(key);
    let mut backoff = Backoff::new();
    loop {
        match q.try_offer(p) {
            Ok(new) => return new,
            Err(back) => {
                p = back;
                backoff.snooze();
            }
        }
    }
}

/// Takes one entry, waiting (spin, then yield) while the design is empty.
#[inline]
pub fn take_wait<D: Design>(q: &D) -> D::Out {
    let mut backoff = Backoff::new();
    loop {
        if let Some(out) = q.try_take() {
            return out;
        }
        backoff.snooze();
    }
}

/// Offers `key` with `value`, waiting (spin, then yield) while the design
/// is full. Returns whether it became a new entry.
#[inline]
pub fn offer_value_wait<D: ValueDesign>(q: &D, key: Key, value: u64) -> bool {
    let mut pair = (key, value);
    let mut backoff = Backoff::new();
    loop {
        match q.try_offer_value(pair.0, pair.1) {
            Ok(new) => return new,
            Err(back) => {
                pair = back;
                backoff.snooze();
            }
        }
    }
}

/// Takes one key with its value, waiting (spin, then yield) while the
/// design is empty.
#[inline]
pub fn take_value_wait<D: ValueDesign>(q: &D) -> (Key, u64) {
    let mut backoff = Backoff::new();
    loop {
        if let Some(pair) = q.try_take_value() {
            return pair;
        }
        backoff.snooze();
    }
}

// ----- the value workloads' shared parts -----

/// The value of offer `j` (0..10) of iteration `i` of `st_value90`: distinct
/// per offer.
#[inline]
pub fn value90(i: u64, j: u64) -> u64 {
    i.wrapping_mul(10).wrapping_add(j)
}

/// One iteration `i` of `st_value90`: 10 offers of `key(i)`, each with its
/// own value (`value90(i, 0..10)`), the first new, the other 9 replacing
/// the pending value; then the takes that drain what was enqueued (one).
/// The delivered value (the last offered) goes through `black_box`, and is
/// checked in debug builds.
#[inline]
pub fn value90_round<D: ValueDesign>(q: &D, i: u64) {
    let mut enqueued = 0;
    for j in 0..10 {
        let (k, v) = std::hint::black_box((key(i), value90(i, j)));
        if let Ok(true) = q.try_offer_value(k, v) {
            enqueued += 1;
        }
    }
    for _ in 0..enqueued {
        let taken = std::hint::black_box(q.try_take_value());
        debug_assert_eq!(taken, Some((key(i), value90(i, 9))), "{}", D::NAME);
    }
}

/// Checks, once and outside any measurement, that `q` (empty) delivers a
/// key with its last offered value after `value90_round`'s offers: a design
/// that lost or mixed up values would otherwise be timed as if it worked.
pub fn check_values<D: ValueDesign>(q: &D) {
    let i = u64::MAX / 20;
    for j in 0..10 {
        assert_eq!(
            q.try_offer_value(key(i), value90(i, j)).ok(),
            Some(j == 0),
            "{} offer {j}",
            D::NAME
        );
    }
    assert_eq!(
        q.try_take_value(),
        Some((key(i), value90(i, 9))),
        "{}",
        D::NAME
    );
    assert_eq!(q.try_take_value(), None, "{}", D::NAME);
}
