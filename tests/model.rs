//! A proptest model test: random single-thread op sequences run against the
//! queue and against a plain model (`VecDeque` + `HashMap`), comparing every
//! return value, the observable state after every op, and the stats, the
//! depth and the G6 counters at the end. Both in-flight policies,
//! capacities 1 to 4, and both key stores: each test is instantiated once
//! per store (modules `general` and `compact`, see `for_each_store!`).
//!
//! `MODEL_CASES` sets the number of cases per store (default 512). The
//! model is `tests/reference/mod.rs`, shared with the fuzz targets.

mod reference;

use coalescing_queue::{
    Builder, CoalescingQueue, Compact, DefaultHashBuilder, Entry, InFlightPolicy, KeyStore, Lease,
    OfferError, OfferTimeoutError, TryOfferError, TryTakeError,
};
use proptest::collection::vec;
use proptest::prelude::*;
use reference::Counts;
use std::time::Duration;

type K = u8;
type V = u16;
type E = Entry<K, V>;
/// The queue on key store `S`: a `BuildHasher` (the general store) or
/// `Compact` (the compact store); `K` is a key of both.
type Q<S> = CoalescingQueue<K, V, S>;

/// Keys are drawn from `0..KEYS`, so duplicates are common.
const KEYS: K = 4;

#[derive(Clone, Debug)]
enum Op {
    TryOfferKey(K),
    OfferKey(K),
    OfferKeyTimeoutZero(K),
    TryOfferItem(V),
    OfferItemTimeoutZero(V),
    TryTake,
    TryTakeLeased,
    Ack(usize),
    Nack(usize),
    DropLease(usize),
    Close,
    TakeBatch(usize),
    /// Leased batch of at most `max`, then: 0 keep (split into leases),
    /// 1 ack, 2 nack, 3 drop.
    TakeBatchLeased(usize, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..KEYS).prop_map(Op::TryOfferKey),
        2 => (0..KEYS).prop_map(Op::OfferKey),
        1 => (0..KEYS).prop_map(Op::OfferKeyTimeoutZero),
        2 => any::<V>().prop_map(Op::TryOfferItem),
        1 => any::<V>().prop_map(Op::OfferItemTimeoutZero),
        3 => Just(Op::TryTake),
        3 => Just(Op::TryTakeLeased),
        2 => any::<usize>().prop_map(Op::Ack),
        2 => any::<usize>().prop_map(Op::Nack),
        1 => any::<usize>().prop_map(Op::DropLease),
        1 => Just(Op::Close),
        2 => (0usize..=5).prop_map(Op::TakeBatch),
        2 => ((1usize..=5), (0u8..4)).prop_map(|(max, end)| Op::TakeBatchLeased(max, end)),
    ]
}

/// The shared reference model, on this test's key and item types.
type Model = reference::Model<K, V>;

fn timeout_error<T>(error: TryOfferError<T>) -> OfferTimeoutError<T> {
    match error {
        TryOfferError::Full(value) => OfferTimeoutError::Timeout(value),
        TryOfferError::Closed(value) => OfferTimeoutError::Closed(value),
    }
}

/// Compares everything observable without changing anything.
fn check_state<S: KeyStore<K>>(
    q: &Q<S>,
    m: &Model,
    leases: &[Lease<'_, K, V, S>],
) -> Result<(), TestCaseError> {
    prop_assert_eq!(q.len(), m.ring.len(), "len");
    prop_assert_eq!(q.is_empty(), m.ring.is_empty(), "is_empty");
    prop_assert_eq!(q.in_flight(), m.in_flight, "in_flight");
    prop_assert_eq!(leases.len(), m.in_flight, "leases held by the test");
    prop_assert_eq!(q.is_full(), m.is_full(), "is_full");
    prop_assert_eq!(q.is_closed(), m.closed, "is_closed");
    prop_assert_eq!(q.pending_keys(), m.keys.len(), "pending_keys");
    prop_assert_eq!(q.claimed_slots(), m.claimed(), "claimed_slots");
    prop_assert!(q.claimed_slots() <= m.capacity, "G3");
    for key in 0..KEYS {
        prop_assert_eq!(q.is_pending(&key), m.keys.contains_key(&key), "is_pending");
    }
    // At most one queued copy of a key (G2).
    for key in 0..KEYS {
        let copies = m.ring.iter().filter(|e| **e == Entry::Key(key)).count();
        prop_assert!(copies <= 1, "model: two queued copies of {}", key);
    }
    Ok(())
}

fn check_counts<S: KeyStore<K>>(q: &Q<S>, m: &Model) -> Result<(), TestCaseError> {
    let s = q.stats();
    let real = Counts::of(&s);
    prop_assert_eq!(&real, &m.counts);
    prop_assert_eq!(s.offered, m.counts.offered());
    prop_assert_eq!(s.queued, m.ring.len());
    prop_assert_eq!(s.in_flight, m.in_flight);
    prop_assert_eq!(s.oldest_lease_age.is_some(), m.in_flight > 0);
    Ok(())
}

/// Replays `ops` on a queue with key store `S` and on the model.
fn run<S: KeyStore<K> + Default>(
    capacity: usize,
    policy: InFlightPolicy,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let q: Q<S> = Builder::new()
        .capacity(capacity)
        .in_flight_policy(policy)
        .build();
    let mut m = Model::new(capacity, policy);
    // The real leases, and in the model the entry each of them holds.
    let mut leases: Vec<Lease<'_, K, V, S>> = Vec::new();
    let mut leased: Vec<E> = Vec::new();

    for op in ops {
        match *op {
            Op::TryOfferKey(key) => {
                prop_assert_eq!(q.try_offer_key(key), m.offer_key(key));
            }
            Op::OfferKey(key) => {
                if !m.offer_key_ready(key) {
                    continue;
                }
                let expected = m.offer_key(key).map_err(|e| OfferError(e.into_inner()));
                prop_assert_eq!(q.offer_key(key), expected);
            }
            Op::OfferKeyTimeoutZero(key) => {
                let expected = m.offer_key(key).map_err(timeout_error);
                prop_assert_eq!(q.offer_key_timeout(key, Duration::ZERO), expected);
            }
            Op::TryOfferItem(item) => {
                prop_assert_eq!(q.try_offer(item), m.offer_item(item));
            }
            Op::OfferItemTimeoutZero(item) => {
                let expected = m.offer_item(item).map_err(timeout_error);
                prop_assert_eq!(q.offer_timeout(item, Duration::ZERO), expected);
            }
            Op::TryTake => {
                prop_assert_eq!(q.try_take(), m.take(false));
            }
            Op::TryTakeLeased => {
                let real = q.try_take_leased();
                let expected = m.take(true);
                match (real, expected) {
                    (Ok(lease), Ok(entry)) => {
                        prop_assert_eq!(&*lease, &entry);
                        leases.push(lease);
                        leased.push(entry);
                    }
                    (Err(real), Err(expected)) => prop_assert_eq!(real, expected),
                    (real, expected) => {
                        return Err(TestCaseError::fail(format!(
                            "try_take_leased: {:?} vs model {:?}",
                            real.map(|l| *l.entry()),
                            expected
                        )))
                    }
                }
            }
            Op::Ack(i) | Op::Nack(i) | Op::DropLease(i) => {
                if leases.is_empty() {
                    continue;
                }
                let i = i % leases.len();
                let lease = leases.remove(i);
                let entry = leased.remove(i);
                prop_assert_eq!(&*lease, &entry);
                match op {
                    Op::Ack(_) => lease.ack(),
                    Op::Nack(_) => lease.nack(),
                    _ => drop(lease),
                }
                m.end_lease(entry, matches!(op, Op::Ack(_)));
            }
            Op::Close => {
                let expected = m.close();
                prop_assert_eq!(q.close(), expected);
            }
            Op::TakeBatch(0) => {
                // Refused, and nothing taken: the model does not change.
                let mut out = Vec::new();
                let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    q.take_batch(&mut out, 0, Duration::ZERO)
                }));
                prop_assert!(refused.is_err());
                prop_assert!(out.is_empty());
            }
            Op::TakeBatch(max) => {
                let Some(expected) = m.take_batch(max, false) else {
                    continue;
                };
                let mut out = vec![Entry::Item(9999)];
                let n = q.take_batch(&mut out, max, Duration::ZERO);
                prop_assert_eq!(n, expected.len());
                prop_assert_eq!(out.remove(0), Entry::Item(9999));
                prop_assert_eq!(out, expected);
            }
            Op::TakeBatchLeased(max, end) => {
                let Some(expected) = m.take_batch(max, true) else {
                    continue;
                };
                let batch = q.take_batch_leased(max, Duration::ZERO);
                prop_assert_eq!(batch.len(), expected.len());
                prop_assert_eq!(batch.is_empty(), expected.is_empty());
                prop_assert_eq!(batch.entries(), &expected[..]);
                match end {
                    0 => {
                        leases.extend(batch.into_leases());
                        leased.extend(expected);
                    }
                    1 => {
                        batch.ack();
                        for entry in expected {
                            m.end_lease(entry, true);
                        }
                    }
                    2 | 3 => {
                        if end == 2 {
                            batch.nack();
                        } else {
                            drop(batch);
                        }
                        for entry in expected {
                            m.end_lease(entry, false);
                        }
                    }
                    _ => unreachable!(),
                }
            }
        }
        check_state(&q, &m, &leases)?;
    }
    check_counts(&q, &m)?;

    // Wind down: close, end every lease with a nack (drop), drain.
    let expected = m.close();
    prop_assert_eq!(q.close(), expected);
    for (lease, entry) in leases.drain(..).zip(leased.drain(..)) {
        drop(lease);
        m.end_lease(entry, false);
    }
    check_state(&q, &m, &leases)?;
    loop {
        let expected = m.take(false);
        prop_assert_eq!(q.try_take(), expected);
        if expected.is_err() {
            break;
        }
    }
    prop_assert_eq!(q.try_take(), Err(TryTakeError::Closed));
    check_state(&q, &m, &leases)?;
    check_counts(&q, &m)?;
    prop_assert_eq!(q.len(), 0);
    prop_assert_eq!(q.in_flight(), 0);
    prop_assert_eq!(q.pending_keys(), 0, "G6: keys left");
    prop_assert_eq!(q.claimed_slots(), 0, "G6: claims left");
    prop_assert!(q.close_and_wait(Duration::ZERO));
    Ok(())
}

fn policy_of(drop_policy: bool) -> InFlightPolicy {
    if drop_policy {
        InFlightPolicy::Absorb
    } else {
        InFlightPolicy::Requeue
    }
}

fn cases() -> u32 {
    std::env::var("MODEL_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(512)
}

/// Instantiates the model tests once per key store, each in a module named
/// after its store, with `S` the store type.
macro_rules! for_each_store {
    ($($store:ident: $s:ty),+ $(,)?) => {$(
        mod $store {
            use super::*;

            type S = $s;

            proptest! {
                #![proptest_config(ProptestConfig {
                    cases: cases(),
                    ..ProptestConfig::default()
                })]

                #[test]
                fn matches_the_model(
                    capacity in 1usize..=4,
                    drop_policy in any::<bool>(),
                    ops in vec(op(), 1..80),
                ) {
                    run::<S>(capacity, policy_of(drop_policy), &ops)?;
                }
            }

            #[test]
            fn fixed_sequences_match_the_model() {
                fixed_sequences::<S>();
            }
        }
    )+};
}

for_each_store!(general: DefaultHashBuilder, compact: Compact);

/// Fixed sequences that exercise the lease rules, run through the same
/// checker (so a model bug shows up even if proptest never draws them).
fn fixed_sequences<S: KeyStore<K> + Default>() {
    use Op::*;
    let sequences: Vec<Vec<Op>> = vec![
        vec![
            TryOfferKey(1),
            TryTakeLeased,
            TryOfferKey(1),
            Ack(0),
            TryTake,
        ],
        vec![
            TryOfferKey(1),
            TryTakeLeased,
            TryOfferKey(2),
            TryOfferKey(1),
            Nack(0),
        ],
        vec![
            TryOfferKey(1),
            TryOfferItem(5),
            TakeBatchLeased(5, 0),
            Close,
            TryOfferKey(1),
            Ack(1),
            DropLease(0),
            TakeBatch(5),
        ],
        vec![
            TryOfferKey(1),
            TryOfferKey(2),
            TakeBatchLeased(1, 3),
            TakeBatch(0),
            TakeBatch(3),
        ],
    ];
    for policy in [InFlightPolicy::Requeue, InFlightPolicy::Absorb] {
        for capacity in 1..=4 {
            for ops in &sequences {
                run::<S>(capacity, policy, ops).unwrap();
            }
        }
    }
}
