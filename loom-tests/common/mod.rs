//! Shared helpers of the loom models: running a model at capacity 1 and 2
//! with its iteration count printed, a history of offers and deliveries
//! stamped in execution order, and the checks of G1, G2 and G6.
//!
//! The history lives in plain `std` types on purpose: loom runs every model
//! thread on one OS thread and switches only at loom points, so a `std`
//! counter read between two loom points gives a total order of the model's
//! events that agrees with the execution loom explored, and the history adds
//! no interleavings of its own.
#![allow(dead_code, unreachable_pub)]

use coalescing_queue::{CoalescingQueue, Entry, InFlightPolicy, KeyStore, Offered};
use core::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc as StdArc, Mutex as StdMutex};
use std::time::Instant;

/// A fixed hasher: loom replays schedules and needs every iteration to run
/// the same program, but the default hasher is seeded at random, which would
/// send a key to a different shard lock (a different loom object) from one
/// iteration to the next.
pub type Hasher = foldhash::fast::FixedState;
/// The key store the models run on: the compact one, or with
/// `--cfg coalescing_loom_store="general"` (`scripts/loom --general`) the
/// general one.
#[cfg(not(coalescing_loom_store = "general"))]
pub type Store = coalescing_queue::Compact<Hasher>;
#[cfg(coalescing_loom_store = "general")]
pub type Store = Hasher;
pub type Queue = CoalescingQueue<u32, u32, Store>;
pub type Shared = loom::sync::Arc<Queue>;
pub type Log = StdArc<History>;

/// A queue of `capacity` with the default policy (`Requeue`), for a model.
pub fn queue(capacity: usize) -> Shared {
    #[cfg(not(coalescing_loom_store = "general"))]
    let store = coalescing_queue::Compact(Hasher::with_seed(0x5eed));
    #[cfg(coalescing_loom_store = "general")]
    let store = Hasher::with_seed(0x5eed);
    shared(capacity, store)
}

/// A queue of `capacity` with retries on a manual clock (`delays` models):
/// the clock moves only when a model calls `advance_clock`, a loom step.
pub fn delayed_queue(capacity: usize) -> Shared {
    #[cfg(not(coalescing_loom_store = "general"))]
    let store = coalescing_queue::Compact(Hasher::with_seed(0x5eed));
    #[cfg(coalescing_loom_store = "general")]
    let store = Hasher::with_seed(0x5eed);
    loom::sync::Arc::new(
        CoalescingQueue::builder()
            .capacity(capacity)
            .hasher(store)
            .retries(coalescing_queue::Backoff::default())
            .manual_clock()
            .build(),
    )
}

/// A shared queue of `capacity` on `store`, with the default policy.
fn shared<S: KeyStore<u32>>(
    capacity: usize,
    store: S,
) -> loom::sync::Arc<CoalescingQueue<u32, u32, S>> {
    loom::sync::Arc::new(
        CoalescingQueue::builder()
            .capacity(capacity)
            .in_flight_policy(InFlightPolicy::Requeue)
            .hasher(store)
            .build(),
    )
}

/// Sends every key to one home bucket with one tag: the table must tell
/// keys apart by their words alone, a new key reuses the entry just
/// emptied, and once the home bucket is full keys spill past it.
#[derive(Clone, Copy, Default)]
pub struct SameHash;

impl BuildHasher for SameHash {
    type Hasher = Zero;
    fn build_hasher(&self) -> Zero {
        Zero
    }
}

pub struct Zero;

impl core::hash::Hasher for Zero {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, _: &[u8]) {}
}

/// The models' store with every key given one home (`SameHash`): the
/// compact one, or the general one under `scripts/loom --general`.
#[cfg(not(coalescing_loom_store = "general"))]
pub type OneHomeStore = coalescing_queue::Compact<SameHash>;
#[cfg(coalescing_loom_store = "general")]
pub type OneHomeStore = SameHash;
pub type OneHomeQueue = CoalescingQueue<u32, u32, OneHomeStore>;

/// A queue of `capacity` whose keys all have one home bucket.
pub fn one_home_queue(capacity: usize) -> loom::sync::Arc<OneHomeQueue> {
    #[cfg(not(coalescing_loom_store = "general"))]
    let store = coalescing_queue::Compact(SameHash);
    #[cfg(coalescing_loom_store = "general")]
    let store = SameHash;
    shared(capacity, store)
}

/// Runs `body` under loom at capacity 1 and 2, printing one line per run:
/// `loom-model <name> capacity=<c> iterations=<n> seconds=<s> bound=<b>`.
pub fn model<F>(name: &str, body: F)
where
    F: Fn(usize) + Sync + Send + Clone + 'static,
{
    model_bounded(name, usize::MAX, body);
}

/// As [`model`], at the given capacities (the spill models need a home
/// bucket that can fill while a slot is free: 3 and more, under loom's
/// 2-entry buckets).
pub fn model_at<F>(name: &str, capacities: &[usize], body: F)
where
    F: Fn(usize) + Sync + Send + Clone + 'static,
{
    run_models(name, capacities, usize::MAX, body);
}

/// As [`model`], with the preemption bound lowered to `max_preemptions` if
/// `LOOM_MAX_PREEMPTIONS` is higher (for a model whose threads make the
/// higher bound too slow; say why where it is used).
pub fn model_bounded<F>(name: &str, max_preemptions: usize, body: F)
where
    F: Fn(usize) + Sync + Send + Clone + 'static,
{
    run_models(name, &[1, 2], max_preemptions, body);
}

fn run_models<F>(name: &str, capacities: &[usize], max_preemptions: usize, body: F)
where
    F: Fn(usize) + Sync + Send + Clone + 'static,
{
    for &capacity in capacities {
        let iterations = StdArc::new(AtomicUsize::new(0));
        let counted = iterations.clone();
        let body = body.clone();
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = match builder.preemption_bound {
            Some(bound) => Some(bound.min(max_preemptions)),
            None if max_preemptions < usize::MAX => Some(max_preemptions),
            None => None,
        };
        let bound = builder
            .preemption_bound
            .map_or("none".to_string(), |b| b.to_string());
        println!("loom-model {name} capacity={capacity} start (preemption bound {bound})");
        let started = Instant::now();
        builder.check(move || {
            counted.fetch_add(1, SeqCst);
            body(capacity);
        });
        println!(
            "loom-model {name} capacity={capacity} iterations={} seconds={:.2} bound={bound}",
            iterations.load(SeqCst),
            started.elapsed().as_secs_f64()
        );
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Enqueued,
    Coalesced,
    Refused,
}

#[derive(Clone, Copy, Debug)]
pub enum Event {
    /// An offer of `key` that began at `start` and ended with `outcome`.
    Offer {
        key: u32,
        start: usize,
        outcome: Outcome,
    },
    /// A take returned `key` (stamped after it returned).
    Delivered { key: u32, at: usize },
}

/// What happened in one execution, in execution order.
#[derive(Debug, Default)]
pub struct History {
    /// A loom atomic: a stamp that reads another's value synchronizes with
    /// it, so "the take returned before the offer began" is a
    /// happens-before, as a user's own synchronization would make it.
    /// (Without it, loom may let the offer read the key table as it was
    /// before a take that the history shows as earlier: an order no program
    /// can observe without such synchronization.)
    clock: loom::sync::atomic::AtomicUsize,
    events: StdMutex<Vec<Event>>,
}

impl History {
    pub fn new() -> Log {
        StdArc::new(Self::default())
    }

    pub fn now(&self) -> usize {
        self.clock.fetch_add(1, SeqCst)
    }

    fn push(&self, event: Event) {
        self.events.lock().unwrap().push(event);
    }

    /// Runs one offer of `key`, stamping its start and recording its outcome.
    pub fn offer<E>(&self, key: u32, offer: impl FnOnce(u32) -> Result<Offered, E>) -> Outcome {
        let start = self.now();
        let outcome = match offer(key) {
            Ok(Offered::Enqueued) => Outcome::Enqueued,
            Ok(Offered::Coalesced) => Outcome::Coalesced,
            Err(_) => Outcome::Refused,
        };
        self.push(Event::Offer {
            key,
            start,
            outcome,
        });
        outcome
    }

    /// Records that a take returned `entry` (call right after it returned).
    pub fn delivered(&self, entry: &Entry<u32, u32>) {
        let at = self.now();
        match entry {
            Entry::Key(key) => self.push(Event::Delivered { key: *key, at }),
            Entry::Item(item) => panic!("the models offer no items, got item {item}"),
        }
    }

    /// Takes what is left with `try_take`, recording each delivery.
    pub fn drain<S: KeyStore<u32>>(&self, q: &CoalescingQueue<u32, u32, S>) {
        while let Ok(entry) = q.try_take() {
            self.delivered(&entry);
        }
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    pub fn deliveries(&self, key: u32) -> usize {
        self.events()
            .iter()
            .filter(|e| matches!(e, Event::Delivered { key: k, .. } if *k == key))
            .count()
    }

    pub fn enqueued(&self, key: u32) -> usize {
        self.events()
            .iter()
            .filter(|e| {
                matches!(e, Event::Offer { key: k, outcome: Outcome::Enqueued, .. } if *k == key)
            })
            .count()
    }

    /// G1: every offer that returned `Enqueued` or `Coalesced` is followed by
    /// a delivery of its key that came after the offer began.
    pub fn check_no_lost_offer(&self) {
        let events = self.events();
        for event in &events {
            if let Event::Offer {
                key,
                start,
                outcome,
            } = *event
            {
                if outcome == Outcome::Refused {
                    continue;
                }
                let delivered_after = events.iter().any(
                    |e| matches!(*e, Event::Delivered { key: k, at } if k == key && at > start),
                );
                assert!(
                    delivered_after,
                    "G1 violated: offer of key {key} (began at {start}) returned {outcome:?} \
                     but no delivery of it came after; history: {events:?}"
                );
            }
        }
    }

    /// G2: each queued copy is delivered once: deliveries of `key` equal the
    /// offers of it that returned `Enqueued`, plus `requeues` (dirty acks,
    /// nacks) the model knows of.
    pub fn check_one_delivery_per_copy(&self, key: u32, requeues: usize) {
        let (delivered, enqueued) = (self.deliveries(key), self.enqueued(key));
        assert_eq!(
            delivered,
            enqueued + requeues,
            "G2 violated: key {key} delivered {delivered} times for {enqueued} enqueued copies \
             and {requeues} requeues; history: {:?}",
            self.events()
        );
    }
}

/// G2 probe: with `distinct` keys in play, the ring never holds more entries
/// than that (at most one queued copy per key).
pub fn probe_one_copy(q: &Queue, distinct: usize) {
    let queued = q.len();
    assert!(
        queued <= distinct,
        "G2 violated: {queued} entries queued with only {distinct} distinct keys"
    );
}

/// G6: with everything taken and every lease ended, no key is pending and no
/// slot is claimed.
pub fn check_no_leak<K, S: KeyStore<K>>(q: &CoalescingQueue<K, u32, S>) {
    assert_eq!(q.pending_keys(), 0, "G6 violated: keys left pending: {q:?}");
    assert_eq!(
        q.claimed_slots(),
        0,
        "G6 violated: slots left claimed: {q:?}"
    );
    assert_eq!(
        q.in_flight(),
        0,
        "G6 violated: leases left in flight: {q:?}"
    );
    assert_eq!(
        q.overflow_counts(),
        0,
        "T2 violated: overflow counts left raised with no key spilled: {q:?}"
    );
}

/// Fills the queue with `count` keys from 100 on, as the models' background.
pub fn prefill(q: &Queue, log: &History, count: usize) {
    for key in 100..100 + count as u32 {
        assert_eq!(log.offer(key, |k| q.try_offer_key(k)), Outcome::Enqueued);
    }
}
