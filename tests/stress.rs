//! Stress tests: producers and consumers on more threads than cores, for
//! `STRESS_SECS` seconds each (default 3). Every offer is stamped from a
//! shared clock just before it starts, every delivery just after the take
//! returned. After close, join and drain:
//!
//! * G1: for every key, its last delivery (for leases: its last *acked*
//!   delivery) was taken after its last accepted offer began;
//! * G2: deliveries of a key equal its `Enqueued` offers (plain takes; with
//!   leases, acked deliveries, plus the dirty requeues under `Requeue`);
//! * G3: the high-water mark never passed the capacity;
//! * G6: no key and no claim is left.
//!
//! Pass-through items ride along and must each be delivered (acked) exactly
//! once, in producer order for each consumer (plain takes).
//!
//! The leased test also runs with retries (`*_with_backoff_*`): one failed
//! batch in two is nacked with a delay or the backoff, and the checks are
//! the same (a delayed key is still pending, so G1 and G2 hold as for a
//! nack; delays end at close, so the drain ends).
//!
//! Every test runs on both key stores: it is instantiated once per store,
//! in the modules `general` and `compact` (see `for_each_store!`). The
//! valued test (`stress_valued`: `(key, stamp)` keys merged by max, a
//! flaky leasing sender; the newest stamp of every key is acked last, and
//! no key's acked stamps go back) runs on both valued stores, in
//! `valued_general` and `valued_compact` (see `for_each_valued_store!`).

mod common;

use coalescing_queue::{
    Backoff, Builder, CoalescingQueue, Compact, DefaultHashBuilder, Entry, InFlightPolicy,
    KeyStore, OfferTimeoutError, Offered, TryOfferError, TryTakeError, Valued,
};
use common::Watchdog;
use futures_lite::future::block_on;
use std::any::type_name;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

type K = u16;
/// (producer, sequence number)
type V = (u8, u64);
/// The queue on key store `S`: a `BuildHasher` (the general store) or
/// `Compact` (the compact store); `K` is a key of both.
type Q<S> = CoalescingQueue<K, V, S>;

/// What the tests need of a key store (the threaded ones also need
/// `Q<S>: Sync`, which a trait bound cannot imply).
trait Store: KeyStore<K> + Default {}

impl<S: KeyStore<K> + Default> Store for S {}

fn build<S: Store>(capacity: usize, policy: InFlightPolicy) -> Q<S> {
    Builder::new()
        .capacity(capacity)
        .in_flight_policy(policy)
        .build()
}

/// As `build`, with retries: failed sends come back after a short backoff
/// (50 µs doubling to 2 ms, half of it jitter), on the real clock.
fn build_retrying<S: Store>(capacity: usize, policy: InFlightPolicy) -> Q<S> {
    Builder::new()
        .capacity(capacity)
        .in_flight_policy(policy)
        .retries(
            Backoff::exponential(Duration::from_micros(50), Duration::from_millis(2))
                .with_jitter(0.5),
        )
        .build()
}

const KEYS: usize = 64;
const PRODUCERS: usize = 3;
/// One offer in `ITEM_EVERY` is a pass-through item.
const ITEM_EVERY: u64 = 16;

fn duration() -> Duration {
    let secs = std::env::var("STRESS_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(3.0);
    Duration::from_secs_f64(secs.max(0.01))
}

/// xorshift64*: deterministic per thread, no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn counters(n: usize) -> Vec<AtomicU64> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

/// What the producers saw, and the clock.
struct Offers {
    clock: AtomicU64,
    /// Per key: the largest stamp of an offer that returned `Ok` (0: none).
    last_ok: Vec<AtomicU64>,
    /// Per key: offers that returned `Enqueued`.
    enqueued: Vec<AtomicU64>,
    /// Per producer: sequence numbers of the items accepted.
    items: Vec<Mutex<Vec<u64>>>,
}

impl Offers {
    fn new() -> Self {
        Self {
            clock: AtomicU64::new(1),
            last_ok: counters(KEYS),
            enqueued: counters(KEYS),
            items: (0..PRODUCERS).map(|_| Mutex::new(Vec::new())).collect(),
        }
    }

    fn stamp(&self) -> u64 {
        self.clock.fetch_add(1, SeqCst)
    }

    fn accepted(&self, key: K, stamp: u64, offered: Offered) {
        self.last_ok[key as usize].fetch_max(stamp, SeqCst);
        if offered == Offered::Enqueued {
            self.enqueued[key as usize].fetch_add(1, SeqCst);
        }
    }
}

/// Offers keys and items until `deadline`. Producer 0 blocks (`offer_key`,
/// `offer`), producer 1 never waits (`try_*`), producer 2 waits with a
/// timeout or asynchronously.
fn produce<S: Store>(q: &Q<S>, offers: &Offers, id: usize, deadline: Instant) {
    let mut rng = Rng::new(id as u64 + 17);
    let mut seq = 0u64;
    let mut accepted_items = Vec::new();
    while Instant::now() < deadline {
        if rng.below(ITEM_EVERY) == 0 {
            let item = (id as u8, seq);
            let ok = match id {
                0 => q.offer(item).is_ok(),
                1 => q.try_offer(item).is_ok(),
                _ => q.offer_timeout(item, Duration::from_millis(1)).is_ok(),
            };
            if ok {
                accepted_items.push(seq);
            }
            seq += 1;
            continue;
        }
        let key = rng.below(KEYS as u64) as K;
        let stamp = offers.stamp();
        let result = match id {
            0 => q.offer_key(key).map_err(|e| e.into_inner()),
            1 => match q.try_offer_key(key) {
                Err(TryOfferError::Full(_)) => {
                    thread::yield_now();
                    continue;
                }
                other => other.map_err(TryOfferError::into_inner),
            },
            _ if rng.below(2) == 0 => match q.offer_key_timeout(key, Duration::from_millis(1)) {
                Err(OfferTimeoutError::Timeout(_)) => continue,
                other => other.map_err(OfferTimeoutError::into_inner),
            },
            _ => block_on(q.offer_key_async(key)).map_err(|e| e.into_inner()),
        };
        let offered = result.expect("the queue is not closed while producers run");
        offers.accepted(key, stamp, offered);
    }
    offers.items[id].lock().unwrap().extend(accepted_items);
}

/// Joins the producers, closes the queue and returns; the consumers then
/// drain it.
fn run_producers<'s, S: Store>(
    s: &'s thread::Scope<'s, '_>,
    q: &'s Q<S>,
    offers: &'s Offers,
    deadline: Instant,
) -> Vec<thread::ScopedJoinHandle<'s, ()>>
where
    Q<S>: Sync,
{
    (0..PRODUCERS)
        .map(|id| s.spawn(move || produce(q, offers, id, deadline)))
        .collect()
}

fn check_items(expected: &Offers, delivered: Vec<V>) {
    let mut per_producer: Vec<Vec<u64>> = vec![Vec::new(); PRODUCERS];
    for (p, seq) in delivered {
        per_producer[p as usize].push(seq);
    }
    for (p, mut got) in per_producer.into_iter().enumerate() {
        got.sort_unstable();
        let want = expected.items[p].lock().unwrap().clone();
        assert_eq!(
            got.len(),
            want.len(),
            "producer {p}: items delivered vs accepted"
        );
        assert_eq!(got, want, "producer {p}: each item exactly once");
    }
}

fn check_g3_g6<Key: PartialEq + Debug, S: KeyStore<Key>>(
    q: &CoalescingQueue<Key, V, S>,
    capacity: usize,
) {
    assert_eq!(q.try_take(), Err(TryTakeError::Closed));
    assert_eq!(q.len(), 0);
    assert_eq!(q.in_flight(), 0);
    let stats = q.stats();
    assert!(
        stats.high_water_mark <= capacity,
        "G3: high-water mark {} above capacity {capacity}",
        stats.high_water_mark
    );
    assert_eq!(stats.oldest_lease_age, None);
    assert_eq!(q.pending_keys(), 0, "G6: keys left in the map");
    assert_eq!(q.claimed_slots(), 0, "G6: claims left");
    assert!(q.close_and_wait(Duration::ZERO));
}

// ----- plain takes -----

/// What the consumers of plain takes saw.
struct Deliveries {
    count: Vec<AtomicU64>,
    /// Per key: the largest stamp taken just after a take returned it.
    last: Vec<AtomicU64>,
}

fn stress_plain<S: Store>(capacity: usize)
where
    Q<S>: Sync,
{
    let _watchdog = Watchdog::new(duration() + Duration::from_secs(120), "stress_plain");
    let q = build::<S>(capacity, InFlightPolicy::Requeue);
    let offers = Offers::new();
    let deliveries = Deliveries {
        count: counters(KEYS),
        last: counters(KEYS),
    };
    let deadline = Instant::now() + duration();
    let mut delivered_items = Vec::new();

    thread::scope(|s| {
        let consumers: Vec<_> = (0..3)
            .map(|kind| {
                let (q, offers, deliveries) = (&q, &offers, &deliveries);
                s.spawn(move || {
                    let mut items = Vec::new();
                    // Items of one producer reach one consumer in order (G4).
                    let mut last_seq = [None::<u64>; PRODUCERS];
                    let mut record = |entry: Entry<K, V>, stamp: u64| match entry {
                        Entry::Key(k) => {
                            deliveries.count[k as usize].fetch_add(1, SeqCst);
                            deliveries.last[k as usize].fetch_max(stamp, SeqCst);
                        }
                        Entry::Item((p, seq)) => {
                            assert!(last_seq[p as usize] < Some(seq), "item order");
                            last_seq[p as usize] = Some(seq);
                            items.push((p, seq));
                        }
                    };
                    let mut batch = Vec::new();
                    let mut round = 0u64;
                    loop {
                        round += 1;
                        match kind {
                            0 => {
                                let n = q.take_batch(&mut batch, 16, Duration::from_millis(1));
                                let stamp = offers.stamp();
                                assert_eq!(n, batch.len());
                                if n == 0 {
                                    break;
                                }
                                for entry in batch.drain(..) {
                                    record(entry, stamp);
                                }
                            }
                            1 => match q.take() {
                                Ok(entry) => {
                                    let stamp = offers.stamp();
                                    record(entry, stamp);
                                }
                                Err(_) => break,
                            },
                            _ => {
                                let taken = if round % 2 == 0 {
                                    block_on(q.take_async()).map_err(|_| true)
                                } else {
                                    q.take_timeout(Duration::from_millis(2))
                                        .map_err(|e| e.is_closed())
                                };
                                match taken {
                                    Ok(entry) => {
                                        let stamp = offers.stamp();
                                        record(entry, stamp);
                                    }
                                    Err(true) => break,
                                    Err(false) => {}
                                }
                            }
                        }
                    }
                    items
                })
            })
            .collect();
        for producer in run_producers(s, &q, &offers, deadline) {
            producer.join().unwrap();
        }
        assert!(q.close());
        for consumer in consumers {
            delivered_items.extend(consumer.join().unwrap());
        }
    });

    let mut accepted_keys = 0;
    let mut enqueued_keys = 0;
    for k in 0..KEYS {
        let last_ok = offers.last_ok[k].load(SeqCst);
        let enqueued = offers.enqueued[k].load(SeqCst);
        let count = deliveries.count[k].load(SeqCst);
        let last = deliveries.last[k].load(SeqCst);
        assert_eq!(
            count, enqueued,
            "G2: key {k} delivered {count} times, enqueued {enqueued}"
        );
        if last_ok > 0 {
            accepted_keys += 1;
            assert!(
                last > last_ok,
                "G1: key {k}: last delivery at {last}, last accepted offer at {last_ok}"
            );
        }
        enqueued_keys += enqueued;
    }
    let stats = q.stats();
    let items = delivered_items.len() as u64;
    assert_eq!(stats.enqueued, enqueued_keys + items);
    assert_eq!(stats.taken, enqueued_keys + items);
    check_items(&offers, delivered_items);
    check_g3_g6(&q, capacity);
    assert!(accepted_keys > 0, "the producers did nothing");
    eprintln!(
        "plain, {}, capacity {capacity}: {stats:?}",
        type_name::<S>()
    );
}

// ----- leases, with a flaky sender -----

/// What the consumers of leased batches saw.
struct Acks {
    /// Per key: acked deliveries.
    count: Vec<AtomicU64>,
    /// Per key: the largest take stamp of a delivery that was then acked.
    last_taken: Vec<AtomicU64>,
    /// Per key: the largest stamp taken just before an ack of it.
    last_acked: Vec<AtomicU64>,
    /// Per key: leased right now (by whom does not matter).
    out: Mutex<Vec<bool>>,
    acked_entries: AtomicU64,
    nacked_entries: AtomicU64,
}

impl Acks {
    fn lease(&self, entries: &[Entry<K, V>]) {
        let mut out = self.out.lock().unwrap();
        for key in entries.iter().filter_map(Entry::key) {
            assert!(
                !out[*key as usize],
                "key {key} delivered while a lease of it is out"
            );
            out[*key as usize] = true;
        }
    }

    /// Called before the lease of `entry` ends, so that another consumer
    /// may lease the key as soon as it is released.
    fn release(&self, entry: &Entry<K, V>) {
        if let Entry::Key(key) = entry {
            let mut out = self.out.lock().unwrap();
            assert!(out[*key as usize]);
            out[*key as usize] = false;
        }
    }

    fn acking(&self, entry: &Entry<K, V>, taken: u64, stamp: u64, items: &mut Vec<V>) {
        match entry {
            Entry::Key(key) => {
                self.count[*key as usize].fetch_add(1, SeqCst);
                self.last_taken[*key as usize].fetch_max(taken, SeqCst);
                self.last_acked[*key as usize].fetch_max(stamp, SeqCst);
            }
            Entry::Item(item) => items.push(*item),
        }
        self.release(entry);
        self.acked_entries.fetch_add(1, SeqCst);
    }

    fn nacking(&self, entry: &Entry<K, V>) {
        self.release(entry);
        self.nacked_entries.fetch_add(1, SeqCst);
    }
}

/// A sender over a flaky transport: leased batches, forgotten, nacked
/// (with `retries`: nacked with a delay or the backoff, one failure in
/// two), split and ended one by one, or acked.
fn consume_leased<S: Store>(
    q: &Q<S>,
    offers: &Offers,
    acks: &Acks,
    id: u64,
    retries: bool,
) -> Vec<V> {
    let mut rng = Rng::new(id + 1000);
    let mut items = Vec::new();
    loop {
        let batch = q.take_batch_leased(8, Duration::from_millis(1));
        let taken = offers.stamp();
        if batch.is_empty() {
            break;
        }
        assert!(batch.len() <= 8);
        acks.lease(batch.entries());
        match rng.below(10) {
            // The sender forgot the batch: dropped without a call.
            0 => {
                for entry in &batch {
                    acks.nacking(entry);
                }
                drop(batch);
            }
            // The send failed: nack the whole batch (with retries, one
            // time in two later: after a delay, or each key as its backoff
            // says).
            1 | 2 => {
                assert!(batch.attempts().all(|attempt| attempt >= 1));
                for entry in &batch {
                    acks.nacking(entry);
                }
                match (retries, rng.below(4)) {
                    (true, 0) => batch.nack_after(Duration::from_micros(rng.below(300))),
                    (true, 1) => batch.nack_backoff(),
                    _ => batch.nack(),
                }
            }
            // Per-entry results: some went out, some did not.
            3 => {
                for (i, lease) in batch.into_leases().into_iter().enumerate() {
                    if (i as u64 + id) % 2 == 0 {
                        let stamp = offers.stamp();
                        acks.acking(&lease, taken, stamp, &mut items);
                        lease.ack();
                    } else {
                        acks.nacking(&lease);
                        if retries {
                            assert!(lease.nack_backoff() <= Duration::from_millis(2));
                        } else {
                            lease.nack();
                        }
                    }
                }
            }
            _ => {
                let stamp = offers.stamp();
                for entry in &batch {
                    acks.acking(entry, taken, stamp, &mut items);
                }
                batch.ack();
            }
        }
    }
    items
}

fn stress_leased<S: Store>(capacity: usize, policy: InFlightPolicy, retries: bool)
where
    Q<S>: Sync,
{
    let _watchdog = Watchdog::new(duration() + Duration::from_secs(120), "stress_leased");
    let q = if retries {
        build_retrying::<S>(capacity, policy)
    } else {
        build::<S>(capacity, policy)
    };
    let offers = Offers::new();
    let acks = Acks {
        count: counters(KEYS),
        last_taken: counters(KEYS),
        last_acked: counters(KEYS),
        out: Mutex::new(vec![false; KEYS]),
        acked_entries: AtomicU64::new(0),
        nacked_entries: AtomicU64::new(0),
    };
    let deadline = Instant::now() + duration();
    let mut acked_items = Vec::new();

    thread::scope(|s| {
        let consumers: Vec<_> = (0..2u64)
            .map(|id| {
                let (q, offers, acks) = (&q, &offers, &acks);
                s.spawn(move || consume_leased(q, offers, acks, id, retries))
            })
            .collect();
        for producer in run_producers(s, &q, &offers, deadline) {
            producer.join().unwrap();
        }
        assert!(q.close());
        for consumer in consumers {
            acked_items.extend(consumer.join().unwrap());
        }
    });

    let stats = q.stats();
    let mut enqueued_keys = 0;
    let mut acked_keys = 0;
    let mut accepted_keys = 0;
    for k in 0..KEYS {
        let last_ok = offers.last_ok[k].load(SeqCst);
        let enqueued = offers.enqueued[k].load(SeqCst);
        let count = acks.count[k].load(SeqCst);
        if last_ok > 0 {
            accepted_keys += 1;
            if policy == InFlightPolicy::Requeue {
                let taken = acks.last_taken[k].load(SeqCst);
                let acked = acks.last_acked[k].load(SeqCst);
                assert!(
                    taken > last_ok,
                    "G1: key {k}: last acked delivery taken at {taken}, \
                     last accepted offer at {last_ok}"
                );
                assert!(acked > taken);
            }
        }
        if policy == InFlightPolicy::Absorb {
            // Every copy is acked exactly once; nothing else is queued.
            assert_eq!(count, enqueued, "key {k}: acked vs enqueued (Drop)");
        } else {
            assert!(
                count >= enqueued,
                "key {k}: acked {count} < enqueued {enqueued}"
            );
        }
        enqueued_keys += enqueued;
        acked_keys += count;
    }
    // Each acked delivery is a copy that was enqueued or requeued dirty.
    assert_eq!(acked_keys, enqueued_keys + stats.requeued_dirty);
    if policy == InFlightPolicy::Absorb {
        assert_eq!(stats.requeued_dirty, 0);
    }
    assert_eq!(stats.acked, acks.acked_entries.load(SeqCst));
    assert_eq!(stats.nacked, acks.nacked_entries.load(SeqCst));
    assert_eq!(stats.taken, stats.acked + stats.nacked);
    assert!(acks.out.lock().unwrap().iter().all(|out| !out));
    check_items(&offers, acked_items);
    check_g3_g6(&q, capacity);
    assert!(accepted_keys > 0, "the producers did nothing");
    if retries {
        assert!(stats.delayed_nacks > 0, "no nack was delayed");
    }
    assert_eq!(
        (stats.delayed, stats.next_due),
        (0, None),
        "delayed after close"
    );
    eprintln!(
        "leased {policy:?}, retries {retries}, {}, capacity {capacity}: {stats:?}",
        type_name::<S>()
    );
}

/// New keys only, at a capacity of two buckets (9 to 16 slots), so home
/// buckets fill and keys spill into each other's buckets all the time,
/// while takes free entries anywhere: six producers `try_offer_key` random
/// keys, two consumers `try_take`. No single `try_offer_key` may take more
/// than two seconds (a reserver that waits for another bucket's bit while
/// holding its own can spin for ever); at the end nothing is left pending,
/// claimed or counted as overflow (G6, T2).
fn stress_spill<S: Store>(capacity: usize)
where
    Q<S>: Sync,
{
    const PRODUCERS: usize = 6;
    const IDLE: u64 = u64::MAX;
    let q: Q<S> = build(capacity, InFlightPolicy::Requeue);
    let epoch = Instant::now();
    let deadline = epoch + duration();
    // Per producer: when its current call began (ms since `epoch`), or IDLE.
    let calls: Vec<AtomicU64> = (0..PRODUCERS).map(|_| AtomicU64::new(IDLE)).collect();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (offered, taken) = (AtomicU64::new(0), AtomicU64::new(0));
    thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(SeqCst) {
                let now = epoch.elapsed().as_millis() as u64;
                for (id, call) in calls.iter().enumerate() {
                    let began = call.load(SeqCst);
                    if began != IDLE && now.saturating_sub(began) > 2_000 {
                        eprintln!(
                            "producer {id}: one try_offer_key has run for {} ms at capacity \
                             {capacity} on {} (a reserver spins for ever): {q:?}",
                            now - began,
                            type_name::<S>()
                        );
                        std::process::abort();
                    }
                }
                thread::sleep(Duration::from_millis(20));
            }
        });
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|id| {
                let (q, call, offered) = (&q, &calls[id], &offered);
                scope.spawn(move || {
                    let mut rng = 0x9e37_79b9_7f4a_7c15_u64 ^ id as u64;
                    while Instant::now() < deadline {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        call.store(epoch.elapsed().as_millis() as u64, SeqCst);
                        let outcome = q.try_offer_key(rng as K);
                        call.store(IDLE, SeqCst);
                        if matches!(outcome, Ok(Offered::Enqueued)) {
                            offered.fetch_add(1, SeqCst);
                        }
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let (q, taken) = (&q, &taken);
                scope.spawn(move || {
                    while Instant::now() < deadline {
                        match q.try_take() {
                            Ok(_) => {
                                taken.fetch_add(1, SeqCst);
                            }
                            Err(TryTakeError::Empty) => thread::yield_now(),
                            Err(TryTakeError::Closed) => unreachable!("never closed"),
                        }
                    }
                })
            })
            .collect();
        for thread in producers.into_iter().chain(consumers) {
            thread.join().unwrap();
        }
        stop.store(true, SeqCst);
    });
    while q.try_take().is_ok() {
        taken.fetch_add(1, SeqCst);
    }
    assert_eq!(
        offered.load(SeqCst),
        taken.load(SeqCst),
        "G1/G2: enqueued vs taken"
    );
    assert!(
        taken.load(SeqCst) > 1000,
        "too little work to mean anything"
    );
    assert_eq!(q.pending_keys(), 0, "G6: keys left pending: {q:?}");
    assert_eq!(q.claimed_slots(), 0, "G6: claims left: {q:?}");
    assert_eq!(
        q.overflow_counts(),
        0,
        "T2: overflow counts left raised: {q:?}"
    );
    eprintln!(
        "spill, {}, capacity {capacity}: {} new keys through",
        type_name::<S>(),
        taken.load(SeqCst)
    );
}

// ----- values: the newest stamp wins -----

/// A valued key: (key, stamp).
type Stamped = (K, u64);
/// The valued tests' merge: the newest stamp wins.
type Newest = fn(&mut u64, u64);
/// The queue of stamped keys on valued store `Valued<S>`.
type VQ<S> = CoalescingQueue<Stamped, V, Valued<S, Newest>>;

fn newest(pending: &mut u64, newer: u64) {
    *pending = (*pending).max(newer);
}

/// Few keys, so that offers coalesce into queued and into leased copies.
const VALUED_KEYS: usize = 16;

/// One key's stamps, under its lock: the last one handed out, and the
/// last one whose offer returned `Ok` (0: none).
#[derive(Default)]
struct KeyStamps {
    last: u64,
    accepted: u64,
}

/// Offers stamped keys until `deadline`, each stamp larger than the last
/// of its key, stamped and offered under the key's lock. Several producers
/// offer each key, but one at a time: an offer whose stamp was taken
/// earlier may not land after a newer one (that would be a stale value by
/// the test's own doing: the queue merges what is still pending, and a
/// value offered while a newer one is out is delivered after it). Producer
/// 0 blocks, producer 1 never waits, producer 2 waits with a timeout or
/// asynchronously.
fn produce_valued<S>(q: &VQ<S>, stamps: &[Mutex<KeyStamps>], id: usize, deadline: Instant)
where
    Valued<S, Newest>: KeyStore<Stamped>,
{
    let mut rng = Rng::new(id as u64 + 71);
    while Instant::now() < deadline {
        let key = rng.below(VALUED_KEYS as u64) as K;
        let mut stamps = stamps[key as usize].lock().unwrap();
        stamps.last += 1;
        let offer = (key, stamps.last);
        let accepted = match id {
            0 => q.offer_key(offer).map_err(|e| e.into_inner()),
            1 => match q.try_offer_key(offer) {
                Err(TryOfferError::Full(_)) => {
                    drop(stamps);
                    thread::yield_now();
                    continue;
                }
                other => other.map_err(TryOfferError::into_inner),
            },
            _ if rng.below(2) == 0 => match q.offer_key_timeout(offer, Duration::from_millis(1)) {
                Err(OfferTimeoutError::Timeout(_)) => continue,
                other => other.map_err(OfferTimeoutError::into_inner),
            },
            _ => block_on(q.offer_key_async(offer)).map_err(|e| e.into_inner()),
        };
        accepted.expect("the queue is not closed while producers run");
        stamps.accepted = offer.1;
    }
}

/// What the one consumer of `stress_valued` saw.
#[derive(Default)]
struct Sent {
    /// Per key: the stamp of its last acked delivery (0: none yet).
    acked: Vec<u64>,
    acked_entries: u64,
    nacked_entries: u64,
}

impl Sent {
    /// A delivery: none may be older than what was acked for its key.
    fn leased(&self, entry: &Entry<Stamped, V>) {
        let Entry::Key((key, stamp)) = *entry else {
            unreachable!("no items are offered")
        };
        let acked = self.acked[key as usize];
        assert!(
            stamp > acked,
            "key {key}: stamp {stamp} delivered after {acked} was acked (a stale value)"
        );
    }

    /// Called before the ack of `entry`: acked stamps only go up.
    fn acking(&mut self, entry: &Entry<Stamped, V>) {
        self.leased(entry);
        if let Entry::Key((key, stamp)) = *entry {
            self.acked[key as usize] = stamp;
        }
        self.acked_entries += 1;
    }
}

/// One consumer leases batches from a flaky sender (some dropped, some
/// nacked, some split and half acked); at the end every key's last acked
/// stamp is the newest accepted for it, and nothing is left (G6).
fn stress_valued<S>(capacity: usize)
where
    S: Default,
    Valued<S>: KeyStore<Stamped>,
    Valued<S, Newest>: KeyStore<Stamped>,
    VQ<S>: Sync,
{
    let _watchdog = Watchdog::new(duration() + Duration::from_secs(120), "stress_valued");
    let q: VQ<S> = Builder::<Stamped, V, Valued<S>>::new()
        .capacity(capacity)
        .merge(newest as Newest)
        .build();
    let stamps: Vec<Mutex<KeyStamps>> = (0..VALUED_KEYS).map(|_| Mutex::default()).collect();
    let deadline = Instant::now() + duration();

    let sent = thread::scope(|s| {
        let q = &q;
        let consumer = s.spawn(move || {
            let mut rng = Rng::new(4242);
            let mut sent = Sent {
                acked: vec![0; VALUED_KEYS],
                ..Sent::default()
            };
            loop {
                let batch = q.take_batch_leased(8, Duration::from_millis(1));
                if batch.is_empty() {
                    break sent;
                }
                for entry in &batch {
                    sent.leased(entry);
                }
                match rng.below(10) {
                    // The sender forgot the batch: dropped without a call.
                    0 => {
                        sent.nacked_entries += batch.len() as u64;
                        drop(batch);
                    }
                    // The send failed: nack the whole batch.
                    1 | 2 => {
                        sent.nacked_entries += batch.len() as u64;
                        batch.nack();
                    }
                    // Per-entry results: some went out, some did not.
                    3 => {
                        for (i, lease) in batch.into_leases().into_iter().enumerate() {
                            if i % 2 == 0 {
                                sent.acking(&lease);
                                lease.ack();
                            } else {
                                sent.nacked_entries += 1;
                                lease.nack();
                            }
                        }
                    }
                    _ => {
                        for entry in &batch {
                            sent.acking(entry);
                        }
                        batch.ack();
                    }
                }
            }
        });
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|id| {
                let stamps = &stamps;
                s.spawn(move || produce_valued(q, stamps, id, deadline))
            })
            .collect();
        for producer in producers {
            producer.join().unwrap();
        }
        assert!(q.close());
        consumer.join().unwrap()
    });

    let mut accepted_keys = 0;
    for (key, stamps) in stamps.iter().enumerate() {
        let accepted = stamps.lock().unwrap().accepted;
        let acked = sent.acked[key];
        assert_eq!(
            acked, accepted,
            "key {key}: last acked stamp {acked}, newest accepted {accepted} (a newest value lost)"
        );
        accepted_keys += usize::from(accepted > 0);
    }
    let stats = q.stats();
    assert_eq!(stats.acked, sent.acked_entries);
    assert_eq!(stats.nacked, sent.nacked_entries);
    assert_eq!(stats.taken, stats.acked + stats.nacked);
    check_g3_g6(&q, capacity);
    assert!(accepted_keys > 0, "the producers did nothing");
    assert!(
        stats.coalesced_in_flight > 0 && stats.nacked > 0,
        "no value arrived while leased, or nothing was nacked: {stats:?}"
    );
    eprintln!(
        "valued, {}, capacity {capacity}: {stats:?}",
        type_name::<S>()
    );
}

// ----- the tests, once per key store -----

/// Instantiates every stress test once per key store, each in a module
/// named after its store, with `S` the store type.
macro_rules! for_each_store {
    ($($store:ident: $s:ty),+ $(,)?) => {$(
        mod $store {
            use super::*;

            type S = $s;

            #[test]
            fn stress_plain_capacity_8() {
                stress_plain::<S>(8);
            }

            #[test]
            fn stress_plain_capacity_64() {
                stress_plain::<S>(64);
            }

            #[test]
            fn stress_leased_flaky_sender_capacity_8() {
                stress_leased::<S>(8, InFlightPolicy::Requeue, false);
            }

            #[test]
            fn stress_leased_flaky_sender_capacity_64() {
                stress_leased::<S>(64, InFlightPolicy::Requeue, false);
            }

            #[test]
            fn stress_leased_flaky_sender_with_backoff_capacity_8() {
                stress_leased::<S>(8, InFlightPolicy::Requeue, true);
            }

            #[test]
            fn stress_spill_capacity_9_and_12() {
                stress_spill::<S>(9);
                stress_spill::<S>(12);
            }

            #[test]
            fn stress_leased_flaky_sender_drop_policy() {
                stress_leased::<S>(8, InFlightPolicy::Absorb, false);
            }
        }
    )+};
}

for_each_store!(general: DefaultHashBuilder, compact: Compact);

/// Instantiates the valued stress test once per valued store, each in a
/// module named after its store, with `S` the store of the identities.
macro_rules! for_each_valued_store {
    ($($store:ident: $s:ty),+ $(,)?) => {$(
        mod $store {
            use super::*;

            type S = $s;

            #[test]
            fn stress_valued_newest_wins_flaky_sender_capacity_8() {
                stress_valued::<S>(8);
            }
        }
    )+};
}

for_each_valued_store!(valued_general: DefaultHashBuilder, valued_compact: Compact);
