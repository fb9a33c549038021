//! Integration tests of the compact key store (`Compact`): keys packed into
//! up to four atomic words, compared word by word, never with `Eq`.
//!
//! A 4-word struct key (`compact_key!`), keys one bit or one field apart,
//! tuples and arrays, capacity 1 and full queues, leases (ack, nack, drop,
//! dirty requeue), `is_pending`, the G6 hooks, threads offering overlapping
//! keys, and keys that all hash alike (they spill across buckets).

mod common;

use coalescing_queue::{
    compact_key, Builder, CoalescingQueue, Compact, CompactQueue, Entry, InFlightPolicy, Offered,
    TryOfferError, TryTakeError,
};
use common::Watchdog;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Barrier;
use std::thread;
use std::time::Duration;

/// A "done" answer: 128 + 64 + 1 + 1 = 194 bits, four words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Done {
    id: u128,
    ts: u64,
    ok: bool,
    last: bool,
}
compact_key! { Done { id: u128, ts: u64, ok: bool, last: bool } }

type Q = CoalescingQueue<Done, u32, Compact>;

/// The key numbered `n`, with bits set in every word.
fn done(n: u64) -> Done {
    Done {
        id: (u128::from(n) << 64) | u128::from(!n),
        ts: n.rotate_left(17) ^ 0xa5a5_a5a5_a5a5_a5a5,
        ok: n % 2 == 1,
        last: n % 3 == 0,
    }
}

/// Takes everything queued now, without blocking.
fn drain<K, V>(q: &CoalescingQueue<K, V, Compact>) -> Vec<Entry<K, V>>
where
    K: coalescing_queue::CompactKey,
{
    let mut out = Vec::new();
    while let Ok(entry) = q.try_take() {
        out.push(entry);
    }
    out
}

/// G6: nothing queued, in flight, pending or claimed.
fn assert_idle<K, V, S>(q: &CoalescingQueue<K, V, S>)
where
    S: coalescing_queue::KeyStore<K>,
{
    assert_eq!(q.len(), 0, "queued");
    assert_eq!(q.in_flight(), 0, "in flight");
    assert_eq!(q.pending_keys(), 0, "G6: keys left");
    assert_eq!(q.claimed_slots(), 0, "G6: claims left");
    assert_eq!(q.stats().oldest_lease_age, None);
}

// ----- keys -----

#[test]
fn a_four_word_key_round_trips_and_coalesces() {
    let q = Q::new(4);
    let extreme = Done {
        id: u128::MAX - 1,
        ts: u64::MAX,
        ok: true,
        last: true,
    };
    let zero = Done {
        id: 0,
        ts: 0,
        ok: false,
        last: false,
    };
    // A key of all-zero words is not mistaken for an empty entry.
    assert!(!q.is_pending(&zero));
    assert_eq!(q.try_offer_key(extreme), Ok(Offered::Enqueued));
    assert!(!q.is_pending(&zero));
    assert_eq!(q.try_offer_key(zero), Ok(Offered::Enqueued));
    assert_eq!(q.try_offer_key(extreme), Ok(Offered::Coalesced));
    assert_eq!(q.try_offer_key(zero), Ok(Offered::Coalesced));
    assert_eq!(q.pending_keys(), 2);
    assert_eq!(drain(&q), [Entry::Key(extreme), Entry::Key(zero)]);
    assert!(!q.is_pending(&zero) && !q.is_pending(&extreme));
    let stats = q.stats();
    assert_eq!((stats.enqueued, stats.coalesced_queued), (2, 2));
    assert_idle(&q);
}

/// Every key one bit (or one field) away from a base key is a key of its
/// own: enqueued once, coalesced on a re-offer, delivered once, in order.
#[test]
fn keys_one_bit_apart_coalesce_separately() {
    let base = done(0x0123_4567_89ab_cdef);
    let mut keys = vec![base];
    keys.extend((0..128).map(|bit| Done {
        id: base.id ^ (1 << bit),
        ..base
    }));
    keys.extend((0..64).map(|bit| Done {
        ts: base.ts ^ (1 << bit),
        ..base
    }));
    keys.push(Done {
        ok: !base.ok,
        ..base
    });
    keys.push(Done {
        last: !base.last,
        ..base
    });
    assert_eq!(keys.len(), 195);
    assert_eq!(keys.iter().collect::<HashSet<_>>().len(), 195);

    let q = CoalescingQueue::<Done, u32, Compact>::new(keys.len());
    for key in &keys[1..] {
        assert!(!q.is_pending(key), "{key:?} pending before any offer");
    }
    assert_eq!(q.try_offer_key(base), Ok(Offered::Enqueued));
    for key in &keys[1..] {
        assert!(!q.is_pending(key), "{key:?} taken for the base key");
    }
    for key in &keys[1..] {
        assert_eq!(q.try_offer_key(*key), Ok(Offered::Enqueued), "{key:?}");
    }
    assert!(q.is_full());
    for key in keys.iter().rev() {
        assert_eq!(q.try_offer_key(*key), Ok(Offered::Coalesced), "{key:?}");
        assert!(q.is_pending(key));
    }
    assert_eq!(q.pending_keys(), keys.len());
    let expected: Vec<_> = keys.iter().copied().map(Entry::Key).collect();
    assert_eq!(drain(&q), expected);
    for key in &keys {
        assert!(!q.is_pending(key));
    }
    assert_idle(&q);
}

#[test]
fn tuples_arrays_and_signed_keys() {
    let q = CompactQueue::<(u64, u32, bool), ()>::new(4);
    for key in [(1, 2, true), (1, 2, false), (u64::MAX, u32::MAX, true)] {
        assert_eq!(q.try_offer_key(key), Ok(Offered::Enqueued), "{key:?}");
    }
    assert_eq!(q.try_offer_key((1, 2, false)), Ok(Offered::Coalesced));
    assert!(!q.is_pending(&(2, 1, false)));
    assert_eq!(
        drain(&q),
        [
            Entry::Key((1, 2, true)),
            Entry::Key((1, 2, false)),
            Entry::Key((u64::MAX, u32::MAX, true))
        ]
    );
    assert_idle(&q);

    // 256 bits exactly: four full words.
    let q = CompactQueue::<[u64; 4], ()>::new(8);
    let keys = [
        [0; 4],
        [0, 0, 0, 1],
        [1, 0, 0, 0],
        [u64::MAX; 4],
        [5, 6, 7, 8],
    ];
    for key in keys {
        assert_eq!(q.try_offer_key(key), Ok(Offered::Enqueued), "{key:?}");
    }
    for key in keys {
        assert_eq!(q.try_offer_key(key), Ok(Offered::Coalesced), "{key:?}");
    }
    assert!(!q.is_pending(&[8, 7, 6, 5]));
    assert_eq!(drain(&q), keys.map(Entry::Key));
    assert_idle(&q);

    // Nested arrays and tuples, fields straddling word boundaries.
    type Nested = ([[u8; 3]; 2], i32, (u16, char), i128);
    let q = CompactQueue::<Nested, ()>::new(8);
    let a: Nested = ([[1, 2, 3], [4, 5, 6]], -1, (7, 'é'), i128::MIN);
    let b: Nested = ([[1, 2, 3], [4, 5, 7]], -1, (7, 'é'), i128::MIN);
    let c: Nested = ([[1, 2, 3], [4, 5, 6]], -1, (7, 'e'), i128::MIN);
    let d: Nested = ([[1, 2, 3], [4, 5, 6]], -1, (7, 'é'), i128::MIN + 1);
    for key in [a, b, c, d] {
        assert_eq!(q.try_offer_key(key), Ok(Offered::Enqueued), "{key:?}");
    }
    assert_eq!(q.try_offer_key(c), Ok(Offered::Coalesced));
    assert_eq!(drain(&q), [a, b, c, d].map(Entry::Key));
    assert_idle(&q);

    // A key of no bits: one key only.
    let q = CompactQueue::<(), u8>::new(2);
    assert_eq!(q.try_offer_key(()), Ok(Offered::Enqueued));
    assert_eq!(q.try_offer_key(()), Ok(Offered::Coalesced));
    q.try_offer(9).unwrap();
    assert_eq!(drain(&q), [Entry::Key(()), Entry::Item(9)]);
    assert_idle(&q);
}

// ----- capacity -----

#[test]
fn capacity_one() {
    let q = Q::new(1);
    let (a, b) = (done(1), done(2));
    assert_eq!(q.try_offer_key(a), Ok(Offered::Enqueued));
    assert_eq!(q.try_offer_key(a), Ok(Offered::Coalesced));
    assert_eq!(q.try_offer_key(b), Err(TryOfferError::Full(b)));
    assert_eq!(q.try_offer(7), Err(TryOfferError::Full(7)));
    assert!(!q.is_pending(&b));

    // A lease keeps the slot: a new key is still refused, a duplicate is
    // absorbed (and, under Requeue, delivered again after the ack).
    let lease = q.try_take_leased().unwrap();
    assert_eq!(*lease, Entry::Key(a));
    assert_eq!(q.try_offer_key(b), Err(TryOfferError::Full(b)));
    assert_eq!(q.try_offer_key(a), Ok(Offered::Coalesced));
    assert_eq!(q.try_take(), Err(TryTakeError::Empty));
    lease.ack();
    assert_eq!(q.stats().requeued_dirty, 1);
    assert_eq!(q.try_offer_key(b), Err(TryOfferError::Full(b)));
    assert_eq!(q.try_take(), Ok(Entry::Key(a)));

    assert_eq!(q.try_offer_key(b), Ok(Offered::Enqueued));
    assert_eq!(q.try_take(), Ok(Entry::Key(b)));
    q.try_offer(8).unwrap();
    assert_eq!(q.try_take(), Ok(Entry::Item(8)));
    assert_idle(&q);
    assert!(q.close());
    assert_eq!(q.try_offer_key(a), Err(TryOfferError::Closed(a)));
    assert_eq!(q.try_take(), Err(TryTakeError::Closed));
}

#[test]
fn a_full_queue_still_coalesces() {
    let q = Q::new(8);
    for n in 0..8 {
        assert_eq!(q.try_offer_key(done(n)), Ok(Offered::Enqueued));
    }
    assert!(q.is_full());
    for n in 8..16 {
        assert_eq!(q.try_offer_key(done(n)), Err(TryOfferError::Full(done(n))));
    }
    for n in (0..8).rev() {
        assert_eq!(q.try_offer_key(done(n)), Ok(Offered::Coalesced));
    }
    let stats = q.stats();
    assert_eq!(
        (
            stats.enqueued,
            stats.coalesced_queued,
            stats.full_rejections
        ),
        (8, 8, 8)
    );
    // Freeing one slot lets exactly one new key in.
    assert_eq!(q.try_take(), Ok(Entry::Key(done(0))));
    assert_eq!(q.try_offer_key(done(8)), Ok(Offered::Enqueued));
    assert!(q.try_offer_key(done(9)).unwrap_err().is_full());
    let expected: Vec<_> = (1..9).map(|n| Entry::Key(done(n))).collect();
    assert_eq!(drain(&q), expected);
    assert_idle(&q);
}

// ----- leases -----

#[test]
fn leases_ack_nack_and_drop() {
    let q = Q::new(4);
    let (a, b, c) = (done(10), done(11), done(12));
    for key in [a, b, c] {
        q.try_offer_key(key).unwrap();
    }
    let lease_a = q.try_take_leased().unwrap();
    let lease_b = q.try_take_leased().unwrap();
    let lease_c = q.try_take_leased().unwrap();
    assert_eq!(
        (lease_a.key(), lease_b.key(), lease_c.key()),
        (Some(&a), Some(&b), Some(&c))
    );
    assert!(q.is_pending(&a) && q.is_pending(&b) && q.is_pending(&c));
    assert_eq!((q.len(), q.in_flight(), q.claimed_slots()), (0, 3, 3));
    assert!(q.stats().oldest_lease_age.is_some());

    lease_a.ack();
    assert!(!q.is_pending(&a));
    lease_b.nack();
    drop(lease_c);
    assert!(q.is_pending(&b) && q.is_pending(&c));
    assert_eq!((q.len(), q.in_flight(), q.pending_keys()), (2, 0, 2));
    // The requeued copies are the only ones: re-offers coalesce.
    assert_eq!(q.try_offer_key(c), Ok(Offered::Coalesced));
    assert_eq!(q.try_offer_key(a), Ok(Offered::Enqueued));
    assert_eq!(drain(&q), [Entry::Key(b), Entry::Key(c), Entry::Key(a)]);
    let stats = q.stats();
    assert_eq!((stats.acked, stats.nacked, stats.taken), (1, 2, 6));
    assert_idle(&q);
}

/// Offers absorbed by a leased copy: under `Requeue` the ack queues the
/// key once more, at the tail (once, however many it absorbed); under
/// `Drop` the ack ends it.
#[test]
fn offers_absorbed_in_flight() {
    for policy in [InFlightPolicy::Requeue, InFlightPolicy::Absorb] {
        let q = Builder::<Done, u32, Compact>::new()
            .capacity(4)
            .in_flight_policy(policy)
            .build();
        let requeue = policy == InFlightPolicy::Requeue;
        let (a, b) = (done(20), done(21));
        q.try_offer_key(a).unwrap();
        q.try_offer_key(b).unwrap();
        let lease = q.try_take_leased().unwrap();
        assert_eq!(*lease, Entry::Key(a));
        for _ in 0..3 {
            assert_eq!(q.try_offer_key(a), Ok(Offered::Coalesced));
        }
        assert_eq!(q.stats().coalesced_in_flight, 3);
        assert_eq!(q.len(), 1, "no second copy while the first is out");
        lease.ack();
        assert_eq!(q.is_pending(&a), requeue, "{policy:?}");
        assert_eq!(q.stats().requeued_dirty, u64::from(requeue), "{policy:?}");
        assert_eq!(q.try_take(), Ok(Entry::Key(b)));
        if requeue {
            // Once more, leased; nothing comes in meanwhile: the ack ends it.
            let again = q.try_take_leased().unwrap();
            assert_eq!(*again, Entry::Key(a));
            again.ack();
            assert!(!q.is_pending(&a));
            assert_eq!(q.stats().requeued_dirty, 1);
        }
        assert_eq!(q.try_take(), Err(TryTakeError::Empty), "{policy:?}");
        assert_idle(&q);
    }
}

#[test]
fn a_leased_batch_of_compact_keys() {
    let q = Q::new(8);
    for n in 0..6 {
        q.try_offer_key(done(n)).unwrap();
    }
    q.try_offer(99).unwrap();
    let batch = q.take_batch_leased(4, Duration::ZERO);
    let first: Vec<_> = (0..4).map(|n| Entry::Key(done(n))).collect();
    assert_eq!(batch.entries(), &first[..]);
    assert_eq!(q.try_offer_key(done(1)), Ok(Offered::Coalesced)); // dirty
    batch.nack();
    let batch = q.take_batch_leased(8, Duration::ZERO);
    let mut second: Vec<_> = (4..6).map(|n| Entry::Key(done(n))).collect();
    second.push(Entry::Item(99));
    second.extend(first.iter().copied());
    assert_eq!(batch.entries(), &second[..]);
    let mut leases = batch.into_leases();
    assert_eq!(q.try_offer_key(done(5)), Ok(Offered::Coalesced)); // dirty
    let dirty = leases.remove(1);
    assert_eq!(*dirty, Entry::Key(done(5)));
    drop(leases); // nacks the rest, in order
    dirty.ack(); // requeued at the tail: it was re-offered while out
    assert_eq!(q.stats().requeued_dirty, 1);
    let mut third: Vec<_> = second
        .iter()
        .copied()
        .filter(|e| *e != Entry::Key(done(5)))
        .collect();
    third.push(Entry::Key(done(5)));
    assert_eq!(drain(&q), third);
    assert_idle(&q);
}

// ----- threads -----

/// Four threads offer overlapping compact keys, each many times; a plain
/// taker and a leased one (ack three in four, nack the rest) drain them.
/// At the end every key's last accepted offer began before a delivery of
/// it (for the leased taker: an acked one, stamped when taken), each copy
/// enqueued (or requeued dirty) was delivered exactly once, and nothing is
/// left pending or claimed.
#[test]
fn threads_offer_overlapping_keys() {
    const KEYS: u64 = 48;
    const ROUNDS: u64 = 200;
    let _watchdog = Watchdog::new(Duration::from_secs(120), "threads_offer_overlapping_keys");
    let q = Q::new(16);
    let clock = AtomicU64::new(1);
    let stamps = || (0..KEYS).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
    let (last_offer, last_delivery) = (stamps(), stamps());
    let (enqueued, delivered) = (AtomicU64::new(0), AtomicU64::new(0));
    let deliver = |key: &Done, stamp: u64| {
        let n = (0..KEYS)
            .position(|n| done(n) == *key)
            .expect("an offered key");
        last_delivery[n].fetch_max(stamp, SeqCst);
        delivered.fetch_add(1, SeqCst);
    };

    thread::scope(|s| {
        let producers: Vec<_> = (0..4u64)
            .map(|t| {
                let (q, clock, last_offer, enqueued) = (&q, &clock, &last_offer, &enqueued);
                s.spawn(move || {
                    // Thread t offers keys 12t .. 12t + 24 (mod 48): each
                    // key by two threads, in every round, with duplicates.
                    for round in 0..ROUNDS {
                        for i in 0..36u64 {
                            let n = (t * 12 + (i * 7 + round) % 24) % KEYS;
                            let stamp = clock.fetch_add(1, SeqCst);
                            let offered = q.offer_key(done(n)).expect("open while offering");
                            last_offer[n as usize].fetch_max(stamp, SeqCst);
                            if offered == Offered::Enqueued {
                                enqueued.fetch_add(1, SeqCst);
                            }
                        }
                    }
                })
            })
            .collect();
        let plain = s.spawn(|| {
            let mut batch = Vec::new();
            while q.take_batch(&mut batch, 5, Duration::from_millis(1)) > 0 {
                let stamp = clock.fetch_add(1, SeqCst);
                for entry in batch.drain(..) {
                    deliver(entry.key().expect("no items are offered"), stamp);
                }
            }
        });
        let leased = s.spawn(|| {
            let mut turn = 0u64;
            while let Ok(lease) = q.take_leased() {
                let taken = clock.fetch_add(1, SeqCst);
                turn += 1;
                thread::yield_now();
                if turn % 4 == 0 {
                    lease.nack();
                } else {
                    deliver(lease.key().expect("no items are offered"), taken);
                    lease.ack();
                }
            }
            turn
        });
        for producer in producers {
            producer.join().unwrap();
        }
        assert!(q.close());
        plain.join().unwrap();
        assert!(leased.join().unwrap() > 0, "the leased taker took nothing");
    });

    for n in 0..KEYS as usize {
        let offered = last_offer[n].load(SeqCst);
        let delivered = last_delivery[n].load(SeqCst);
        assert!(offered > 0, "key {n} was offered");
        assert!(
            delivered > offered,
            "G1: key {n} last offered at {offered}, last delivered at {delivered}"
        );
    }
    let stats = q.stats();
    assert_eq!(stats.offered, 4 * ROUNDS * 36);
    assert_eq!(stats.enqueued, enqueued.load(SeqCst));
    assert!(stats.coalesced > 0, "no duplicate was coalesced");
    assert_eq!(
        delivered.load(SeqCst),
        stats.enqueued + stats.requeued_dirty,
        "G2: deliveries vs copies"
    );
    assert_eq!(q.try_take(), Err(TryTakeError::Closed));
    assert_idle(&q);
}

// ----- keys that all hash alike -----

/// A hasher under which every key hashes to the same value: every key has
/// the same home bucket and tag, so keys spill into the buckets after it
/// (wrapping around past the last one) and are told apart by their words
/// alone. Its own `BuildHasher`.
#[derive(Clone, Copy, Debug, Default)]
struct Constant(u64);

impl BuildHasher for Constant {
    type Hasher = Self;

    fn build_hasher(&self) -> Self {
        *self
    }
}

impl Hasher for Constant {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, _: &[u8]) {}
}

/// Hashes whose home buckets differ, so that some spills wrap around.
const HASHES: [u64; 4] = [0, 1, u64::MAX, 0x0123_4567_89ab_cdef];

/// A queue whose keys all hash to `hash`.
fn one_hash(capacity: usize, hash: u64) -> CoalescingQueue<u64, u32, Compact<Constant>> {
    CoalescingQueue::<u64, u32>::builder()
        .capacity(capacity)
        .hasher(Compact(Constant(hash)))
        .build()
}

fn drain_keys(q: &CoalescingQueue<u64, u32, Compact<Constant>>) -> Vec<u64> {
    let mut out = Vec::new();
    while let Ok(entry) = q.try_take() {
        out.push(*entry.key().expect("no items are offered"));
    }
    out
}

#[test]
fn keys_with_one_hash_spill_and_still_coalesce() {
    const CAPACITY: u64 = 100;
    // Keys far apart and close together: words differ anywhere.
    let key = |n: u64| n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for hash in HASHES {
        let q = one_hash(CAPACITY as usize, hash);
        for n in 0..CAPACITY {
            assert_eq!(
                q.try_offer_key(key(n)),
                Ok(Offered::Enqueued),
                "{hash}: {n}"
            );
        }
        for n in 0..CAPACITY {
            assert_eq!(
                q.try_offer_key(key(n)),
                Ok(Offered::Coalesced),
                "{hash}: {n}"
            );
            assert!(q.is_pending(&key(n)));
        }
        assert!(!q.is_pending(&key(CAPACITY)));
        assert!(q.try_offer_key(key(CAPACITY)).unwrap_err().is_full());
        assert_eq!(q.pending_keys(), CAPACITY as usize);

        // Take the first half: holes open up in the first buckets; the
        // rest are still found past them; the taken keys come back as new.
        for n in 0..CAPACITY / 2 {
            assert_eq!(q.try_take(), Ok(Entry::Key(key(n))));
            assert!(!q.is_pending(&key(n)), "{hash}: {n}");
        }
        for n in (0..CAPACITY).rev() {
            let expected = if n < CAPACITY / 2 {
                Offered::Enqueued
            } else {
                Offered::Coalesced
            };
            assert_eq!(q.try_offer_key(key(n)), Ok(expected), "{hash}: {n}");
        }
        assert_eq!(q.pending_keys(), CAPACITY as usize);

        // Lease a few, re-offer them (dirty), ack: each comes back once.
        let batch = q.take_batch_leased(10, Duration::ZERO);
        let leased: Vec<u64> = batch.iter().map(|e| *e.key().unwrap()).collect();
        assert_eq!(leased, (50..60).map(key).collect::<Vec<_>>());
        for k in &leased {
            assert_eq!(q.try_offer_key(*k), Ok(Offered::Coalesced));
        }
        batch.ack();

        let mut expected: Vec<u64> = (60..CAPACITY).map(key).collect();
        expected.extend((0..CAPACITY / 2).rev().map(key));
        expected.extend(&leased);
        assert_eq!(drain_keys(&q), expected, "{hash}");
        assert_idle(&q);
    }
}

/// Two threads race to offer the same new keys, all with one hash, in
/// the same order from a common start: each key is enqueued exactly once,
/// whichever thread wins (T1 under spills; mutant `insert_no_bit`).
#[test]
fn racing_offers_of_one_hash_insert_each_key_once() {
    const KEYS: u64 = 60;
    let _watchdog = Watchdog::new(Duration::from_secs(60), "racing offers, one hash");
    for round in 0..200u64 {
        let q = one_hash(KEYS as usize, HASHES[round as usize % HASHES.len()]);
        let enqueued: Vec<AtomicU64> = (0..KEYS).map(|_| AtomicU64::new(0)).collect();
        let start = Barrier::new(2);
        thread::scope(|s| {
            for _ in 0..2 {
                let (q, enqueued, start) = (&q, &enqueued, &start);
                s.spawn(move || {
                    start.wait();
                    for n in 0..KEYS {
                        if q.try_offer_key(n) == Ok(Offered::Enqueued) {
                            enqueued[n as usize].fetch_add(1, SeqCst);
                        }
                    }
                });
            }
        });
        for (n, count) in enqueued.iter().enumerate() {
            assert_eq!(count.load(SeqCst), 1, "round {round}: key {n} enqueued");
        }
        assert_eq!(q.pending_keys(), KEYS as usize, "round {round}");
        let mut taken = drain_keys(&q);
        taken.sort_unstable();
        assert_eq!(taken, (0..KEYS).collect::<Vec<_>>(), "round {round}");
        assert_idle(&q);
    }
}

/// One writer cycles two 2-word keys, A = (1, 10) and C = (2, 20), through
/// the same entry (capacity 1, one hash) while readers ask for the keys
/// made of one word of each, (1, 20) and (2, 10), which are never offered:
/// a read torn across the entry's reuse must be rejected by the version
/// check, never taken for a pending key. A torn read needs a reader
/// preempted between two words, so this catches the mutants
/// `seqlock_no_recheck` and `reuse_same_version` only now and then (about
/// one run in two on 2 cores); loom's `key_table` models are the
/// exhaustive check.
#[test]
fn torn_reads_across_a_reused_entry_find_nothing() {
    let _watchdog = Watchdog::new(Duration::from_secs(60), "torn reads");
    let q = CoalescingQueue::<(u64, u64), u32>::builder()
        .capacity(1)
        .hasher(Compact(Constant(7)))
        .build();
    let (a, c) = ((1, 10), (2, 20));
    let never = [(1, 20), (2, 10)];
    let stop = AtomicBool::new(false);
    // More threads than cores, so that readers are preempted between words.
    let cores = thread::available_parallelism().map_or(2, |n| n.get());
    let readers = (2 * cores).clamp(3, 16);
    let (cycles, reads, false_hits) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(SeqCst) {
                for key in [a, c] {
                    assert_eq!(q.try_offer_key(key), Ok(Offered::Enqueued));
                    assert_eq!(q.try_take(), Ok(Entry::Key(key)));
                }
                cycles.fetch_add(1, SeqCst);
            }
        });
        for _ in 0..readers {
            s.spawn(|| {
                while !stop.load(SeqCst) {
                    for key in &never {
                        if q.is_pending(key) {
                            false_hits.fetch_add(1, SeqCst);
                        }
                    }
                    reads.fetch_add(1, SeqCst);
                }
            });
        }
        thread::sleep(Duration::from_secs(2));
        stop.store(true, SeqCst);
    });
    let (cycles, reads) = (cycles.load(SeqCst), reads.load(SeqCst));
    assert!(
        cycles > 1000 && reads > 1000,
        "{cycles} cycles, {reads} reads"
    );
    assert_eq!(
        false_hits.load(SeqCst),
        0,
        "a torn read matched a key never offered ({cycles} cycles, {reads} reads)"
    );
    assert_idle(&q);
}

/// A hasher that gives a key one of three hashes by its value mod 3, so
/// that three runs of spilled keys start close together and overlap.
#[derive(Clone, Copy, Debug, Default)]
struct Crowded;

impl BuildHasher for Crowded {
    type Hasher = CrowdedHasher;

    fn build_hasher(&self) -> CrowdedHasher {
        CrowdedHasher(0)
    }
}

/// `Crowded`'s state: the last word written (a `u64` key is one word).
struct CrowdedHasher(u64);

impl Hasher for CrowdedHasher {
    fn finish(&self) -> u64 {
        HASHES[(self.0 % 3) as usize]
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0 = bytes.iter().fold(self.0, |h, b| h << 8 | u64::from(*b));
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = word;
    }
}

/// Random churn on a table whose keys crowd three homes (offers, plain
/// and leased takes, acks, nacks), checked against a plain model after
/// every step: spilled keys stay found while their neighbours come and go,
/// and the overflow counts return to rest (the table empties at the end).
#[test]
fn churn_with_crowded_homes_matches_a_model() {
    let _watchdog = Watchdog::new(Duration::from_secs(60), "churn, three homes");
    let q = CoalescingQueue::<u64, u32>::builder()
        .capacity(40)
        .hasher(Compact(Crowded))
        .build();
    let mut ring = std::collections::VecDeque::new();
    // Pending keys: false when queued, true when leased (dirty: in `dirty`).
    let mut pending = std::collections::HashMap::new();
    let mut dirty = HashSet::new();
    let mut held = Vec::new();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for step in 0..20_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let key = seed % 120;
        match seed >> 60 {
            0..=6 => {
                let got = q.try_offer_key(key);
                let want = match pending.get(&key) {
                    Some(&leased) => {
                        if leased {
                            dirty.insert(key);
                        }
                        Ok(Offered::Coalesced)
                    }
                    None if ring.len() + held.len() == q.capacity() => {
                        Err(TryOfferError::Full(key))
                    }
                    None => {
                        pending.insert(key, false);
                        ring.push_back(key);
                        Ok(Offered::Enqueued)
                    }
                };
                assert_eq!(got, want, "step {step}: offer {key}");
            }
            7..=9 => {
                let want = ring.pop_front();
                assert_eq!(q.try_take().ok(), want.map(Entry::Key), "step {step}");
                if let Some(k) = want {
                    pending.remove(&k);
                }
            }
            10..=12 => {
                let want = ring.pop_front();
                let got = q.try_take_leased().ok();
                assert_eq!(got.as_deref(), want.map(Entry::Key).as_ref(), "step {step}");
                if let (Some(lease), Some(k)) = (got, want) {
                    pending.insert(k, true);
                    held.push((lease, k));
                }
            }
            end => {
                if held.is_empty() {
                    continue;
                }
                let (lease, k) = held.swap_remove(key as usize % held.len());
                if end == 15 {
                    lease.nack();
                    dirty.remove(&k);
                    pending.insert(k, false);
                    ring.push_back(k);
                } else {
                    lease.ack();
                    if dirty.remove(&k) {
                        pending.insert(k, false);
                        ring.push_back(k);
                    } else {
                        pending.remove(&k);
                    }
                }
            }
        }
        assert_eq!(q.pending_keys(), pending.len(), "step {step}");
        assert_eq!(q.claimed_slots(), ring.len() + held.len(), "step {step}");
        for probe in [key, (key + 1) % 120, (key + 60) % 120] {
            let want = pending.contains_key(&probe);
            assert_eq!(
                q.is_pending(&probe),
                want,
                "step {step}: is_pending({probe})"
            );
        }
    }
    for (lease, _) in held {
        lease.nack();
    }
    while q.try_take().is_ok() {}
    for key in 0..120 {
        assert!(!q.is_pending(&key));
    }
    assert_idle(&q);
}
