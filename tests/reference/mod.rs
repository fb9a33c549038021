//! The reference model of the queue: what every single-thread operation
//! returns and does, in plain data (a `VecDeque` for the ring, a `HashMap`
//! key -> state for the pending keys, counters named as in `Stats`). One
//! model for the proptest (`tests/model.rs`) and the fuzz targets
//! (`fuzz/src/lib.rs`, which includes this file), so that a change to the
//! semantics is made here once.
#![allow(dead_code)]

use coalescing_queue::{Entry, InFlightPolicy, Offered, Stats, TryOfferError, TryTakeError};
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

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

/// The plain model of one queue.
pub struct Model<K, V> {
    pub capacity: usize,
    pub policy: InFlightPolicy,
    pub ring: VecDeque<Entry<K, V>>,
    pub keys: HashMap<K, KeyState>,
    /// Leases not yet ended.
    pub in_flight: usize,
    pub closed: bool,
    pub counts: Counts,
}

impl<K: Copy + Eq + Hash + core::fmt::Debug, V> Model<K, V> {
    pub fn new(capacity: usize, policy: InFlightPolicy) -> Self {
        Self {
            capacity,
            policy,
            ring: VecDeque::new(),
            keys: HashMap::new(),
            in_flight: 0,
            closed: false,
            counts: Counts::default(),
        }
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
        self.closed || self.keys.contains_key(&key) || !self.is_full()
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

    fn push_new(&mut self, entry: Entry<K, V>) {
        self.ring.push_back(entry);
        self.counts.enqueued += 1;
        self.counts.high_water_mark = self.counts.high_water_mark.max(self.claimed());
    }

    /// An offer of `key` that does not wait: what `try_offer_key` returns.
    pub fn offer_key(&mut self, key: K) -> Result<Offered, TryOfferError<K>> {
        if self.closed {
            self.counts.closed_rejections += 1;
            return Err(TryOfferError::Closed(key));
        }
        let full = self.is_full();
        match self.keys.get_mut(&key) {
            Some(KeyState::Queued) => {
                self.counts.coalesced_queued += 1;
                Ok(Offered::Coalesced)
            }
            Some(state) => {
                if self.policy == InFlightPolicy::Requeue {
                    *state = KeyState::Dirty;
                }
                self.counts.coalesced_in_flight += 1;
                Ok(Offered::Coalesced)
            }
            None if full => {
                self.counts.full_rejections += 1;
                Err(TryOfferError::Full(key))
            }
            None => {
                self.keys.insert(key, KeyState::Queued);
                self.push_new(Entry::Key(key));
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

    /// A take that does not wait: `try_take` or `try_take_leased`.
    pub fn take(&mut self, leased: bool) -> Result<Entry<K, V>, TryTakeError> {
        let Some(entry) = self.ring.pop_front() else {
            return Err(if self.drained() {
                TryTakeError::Closed
            } else {
                TryTakeError::Empty
            });
        };
        if let Entry::Key(key) = &entry {
            if leased {
                let state = self.keys.get_mut(key).expect("a queued key is in the map");
                assert_eq!(
                    *state,
                    KeyState::Queued,
                    "model: queued key {key:?} not Queued"
                );
                *state = KeyState::InFlight;
            } else {
                assert_eq!(
                    self.keys.remove(key),
                    Some(KeyState::Queued),
                    "model: {key:?}"
                );
            }
        }
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
    /// more if it is dirty) and drops an item; a nack queues it again.
    pub fn end_lease(&mut self, entry: Entry<K, V>, ack: bool) {
        assert!(self.in_flight > 0, "model: ending a lease with none out");
        self.in_flight -= 1;
        let requeue = match (&entry, ack) {
            (Entry::Key(key), true) => match self.keys.get(key).copied() {
                Some(KeyState::Dirty) => {
                    self.keys.insert(*key, KeyState::Queued);
                    self.counts.requeued_dirty += 1;
                    true
                }
                Some(KeyState::InFlight) => {
                    self.keys.remove(key);
                    false
                }
                other => panic!("model: leased key {key:?} in state {other:?}"),
            },
            (Entry::Key(key), false) => {
                self.keys.insert(*key, KeyState::Queued);
                true
            }
            (Entry::Item(_), ack) => !ack,
        };
        if ack {
            self.counts.acked += 1;
        } else {
            self.counts.nacked += 1;
        }
        if requeue {
            self.ring.push_back(entry);
        }
    }

    /// `close()`: `true` for the call that closed it.
    pub fn close(&mut self) -> bool {
        !std::mem::replace(&mut self.closed, true)
    }
}
