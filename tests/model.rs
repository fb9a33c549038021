//! A proptest model test: random single-thread op sequences run against the
//! queue and against a plain model (`VecDeque` + `HashMap`), comparing every
//! return value, the observable state after every op, and the stats, the
//! depth and the G6 counters at the end. Both in-flight policies,
//! capacities 1 to 4, and both key stores: each test is instantiated once
//! per store (modules `general` and `compact`, see `for_each_store!`).
//!
//! The same ops run on the valued stores (`Valued<S>`, keys `(K, P)`):
//! the n-th key offer of a run carries the value `n`, merged by `Latest`
//! or by a wrapping add (so that a merge lost, doubled or applied to the
//! wrong copy shows in a delivered value); modules `valued_general` and
//! `valued_compact`, see `for_each_valued_store!`.
//!
//! `MODEL_CASES` sets the number of cases per store and merge (default
//! 512). The model is `tests/reference/mod.rs`, shared with the fuzz
//! targets.

mod reference;

use coalescing_queue::{
    Builder, CoalescingQueue, Compact, DefaultHashBuilder, Entry, InFlightPolicy, KeyStore, Lease,
    OfferError, OfferTimeoutError, TryOfferError, TryTakeError, Valued,
};
use proptest::collection::vec;
use proptest::prelude::*;
use reference::{wrapping_add as add, Counts, RunKey, WithValue};
use std::time::Duration;

/// The identity of a key (the whole key of the plain stores).
type K = u8;
/// The value of a valued key.
type P = u32;
type V = u16;
/// The queue of keys `Key` on key store `S`: for `K`, a `BuildHasher` (the
/// general store) or `Compact` (the compact store); for `(K, P)`, `Valued`
/// of either.
type Q<Key, S> = CoalescingQueue<Key, V, S>;

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
type Model<Key> = reference::Model<Key, V, <Key as RunKey>::Carry>;

fn timeout_error<T>(error: TryOfferError<T>) -> OfferTimeoutError<T> {
    match error {
        TryOfferError::Full(value) => OfferTimeoutError::Timeout(value),
        TryOfferError::Closed(value) => OfferTimeoutError::Closed(value),
    }
}

/// Compares everything observable without changing anything.
fn check_state<Key: RunKey, S: KeyStore<Key>>(
    q: &Q<Key, S>,
    m: &Model<Key>,
    leases: &[Lease<'_, Key, V, S>],
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
        // A valued key's `is_pending` looks at the identity alone.
        prop_assert_eq!(
            q.is_pending(&Key::make(key, 0)),
            m.keys.contains_key(&key),
            "is_pending"
        );
    }
    // At most one queued copy of a key (G2).
    for key in 0..KEYS {
        let copies = m.ring.iter().filter(|e| **e == Entry::Key(key)).count();
        prop_assert!(copies <= 1, "model: two queued copies of {}", key);
    }
    Ok(())
}

fn check_counts<Key: RunKey, S: KeyStore<Key>>(
    q: &Q<Key, S>,
    m: &Model<Key>,
) -> Result<(), TestCaseError> {
    let s = q.stats();
    let real = Counts::of(&s);
    prop_assert_eq!(&real, &m.counts);
    prop_assert_eq!(s.offered, m.counts.offered());
    prop_assert_eq!(s.queued, m.ring.len());
    prop_assert_eq!(s.in_flight, m.in_flight);
    prop_assert_eq!(s.oldest_lease_age.is_some(), m.in_flight > 0);
    Ok(())
}

/// Replays `ops` on a queue with plain key store `S` and on the model.
fn run<S: KeyStore<K> + Default>(
    capacity: usize,
    policy: InFlightPolicy,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let q: Q<K, S> = Builder::new()
        .capacity(capacity)
        .in_flight_policy(policy)
        .build();
    replay(&q, Model::new(capacity, policy), ops)
}

/// Replays `ops` on a queue with valued store `Valued<S>`, merging with
/// `Latest` (`merge` `None`, the default) or with `merge`, and on the model
/// merging the same way.
fn run_valued<S>(
    capacity: usize,
    policy: InFlightPolicy,
    merge: Option<fn(&mut P, P)>,
    ops: &[Op],
) -> Result<(), TestCaseError>
where
    S: Default,
    Valued<S>: KeyStore<(K, P)>,
    Valued<S, fn(&mut P, P)>: KeyStore<(K, P)>,
{
    let builder = Builder::<(K, P), V, Valued<S>>::new()
        .capacity(capacity)
        .in_flight_policy(policy);
    match merge {
        None => {
            let m = Model::with_carry(capacity, policy, WithValue::latest());
            replay(&builder.build(), m, ops)
        }
        Some(merge) => {
            let m = Model::with_carry(capacity, policy, WithValue(merge));
            replay(&builder.merge(merge).build(), m, ops)
        }
    }
}

/// Replays `ops` on `q` and on `m`, a model of it; the n-th key offer
/// offers `Key::make(key, n)`.
fn replay<Key: RunKey, S: KeyStore<Key>>(
    q: &Q<Key, S>,
    mut m: Model<Key>,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    // The real leases, and in the model the entry each of them holds.
    let mut leases: Vec<Lease<'_, Key, V, S>> = Vec::new();
    let mut leased: Vec<Entry<Key, V>> = Vec::new();
    let mut offers: P = 0;
    let mut next_key = |id: K| {
        offers = offers.wrapping_add(1);
        Key::make(id, offers)
    };

    for op in ops {
        match *op {
            Op::TryOfferKey(key) => {
                let key = next_key(key);
                prop_assert_eq!(q.try_offer_key(key), m.offer_key(key));
            }
            Op::OfferKey(key) => {
                let key = next_key(key);
                if !m.offer_key_ready(key) {
                    continue;
                }
                let expected = m.offer_key(key).map_err(|e| OfferError(e.into_inner()));
                prop_assert_eq!(q.offer_key(key), expected);
            }
            Op::OfferKeyTimeoutZero(key) => {
                let key = next_key(key);
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
        check_state(q, &m, &leases)?;
    }
    check_counts(q, &m)?;

    // Wind down: close, end every lease with a nack (drop), drain.
    let expected = m.close();
    prop_assert_eq!(q.close(), expected);
    for (lease, entry) in leases.drain(..).zip(leased.drain(..)) {
        drop(lease);
        m.end_lease(entry, false);
    }
    check_state(q, &m, &leases)?;
    loop {
        let expected = m.take(false);
        prop_assert_eq!(q.try_take(), expected);
        if expected.is_err() {
            break;
        }
    }
    prop_assert_eq!(q.try_take(), Err(TryTakeError::Closed));
    check_state(q, &m, &leases)?;
    check_counts(q, &m)?;
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
                fixed_sequences(run::<S>);
            }
        }
    )+};
}

for_each_store!(general: DefaultHashBuilder, compact: Compact);

/// Instantiates the valued model tests once per store of the identities
/// (`Valued<S>`), each with `Latest` and with the additive merge.
macro_rules! for_each_valued_store {
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
                fn matches_the_model_latest(
                    capacity in 1usize..=4,
                    drop_policy in any::<bool>(),
                    ops in vec(op(), 1..80),
                ) {
                    run_valued::<S>(capacity, policy_of(drop_policy), None, &ops)?;
                }

                #[test]
                fn matches_the_model_add(
                    capacity in 1usize..=4,
                    drop_policy in any::<bool>(),
                    ops in vec(op(), 1..80),
                ) {
                    run_valued::<S>(capacity, policy_of(drop_policy), Some(add), &ops)?;
                }
            }

            #[test]
            fn fixed_sequences_match_the_model() {
                for merge in [None, Some(add as fn(&mut P, P))] {
                    fixed_sequences(|capacity, policy, ops| {
                        run_valued::<S>(capacity, policy, merge, ops)
                    });
                }
            }
        }
    )+};
}

for_each_valued_store!(valued_general: DefaultHashBuilder, valued_compact: Compact);

/// The valued model on its own, against values worked out by hand from the
/// documented rules (so that the model and the queue cannot agree on a
/// wrong rule unnoticed).
#[test]
fn the_valued_model_follows_the_documented_rules() {
    type M = reference::Model<(K, P), V, WithValue<P>>;
    let requeue = InFlightPolicy::Requeue;
    for (merge, queued, after_ack, after_nack) in [
        // Offers of 1, 2 queue 1 + 2; the leased copy is 3; arrivals of 3
        // and 4 start afresh: 7 after an ack, 3 + 7 after a nack.
        (WithValue(add as fn(&mut P, P)), 3, 7, 10),
        (WithValue::latest(), 2, 4, 4),
    ] {
        for ack in [true, false] {
            let mut m = M::with_carry(4, requeue, merge);
            m.offer_key((1, 1)).unwrap();
            m.offer_key((1, 2)).unwrap();
            let Ok(leased) = m.take(true) else { panic!() };
            assert_eq!(leased, Entry::Key((1, queued)));
            m.offer_key((1, 3)).unwrap();
            m.offer_key((1, 4)).unwrap();
            m.end_lease(leased, ack);
            let want = if ack { after_ack } else { after_nack };
            assert_eq!(m.take(false), Ok(Entry::Key((1, want))), "ack {ack}");
        }
        // A nack with nothing arrived queues the leased value; an ack
        // removes the key.
        let mut m = M::with_carry(4, requeue, merge);
        m.offer_key((2, 5)).unwrap();
        let Ok(leased) = m.take(true) else { panic!() };
        m.end_lease(leased, false);
        let Ok(leased) = m.take(true) else { panic!() };
        assert_eq!(leased, Entry::Key((2, 5)));
        m.end_lease(leased, true);
        assert!(m.keys.is_empty());
        // Absorb drops a value offered in flight.
        let mut m = M::with_carry(4, InFlightPolicy::Absorb, merge);
        m.offer_key((3, 1)).unwrap();
        let Ok(leased) = m.take(true) else { panic!() };
        m.offer_key((3, 9)).unwrap();
        m.end_lease(leased, false);
        assert_eq!(m.take(false), Ok(Entry::Key((3, 1))));
    }
}

/// Fixed sequences that exercise the lease rules, run through the same
/// checker by `run` (so a model bug shows up even if proptest never draws
/// them).
fn fixed_sequences(run: impl Fn(usize, InFlightPolicy, &[Op]) -> Result<(), TestCaseError>) {
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
        // Values (valued runs): a queued merge, arrivals while leased
        // merged among themselves, then delivered after an ack or merged
        // with the leased value by a nack.
        vec![
            TryOfferKey(1),
            TryOfferKey(1),
            TryTakeLeased,
            TryOfferKey(1),
            OfferKey(1),
            Nack(0),
            TryOfferKey(1),
            TryTakeLeased,
            OfferKeyTimeoutZero(1),
            Ack(0),
            TakeBatch(2),
        ],
        vec![
            TryOfferKey(2),
            TryOfferKey(3),
            TakeBatchLeased(2, 0),
            TryOfferKey(3),
            TryOfferKey(3),
            TryOfferKey(2),
            Ack(1),
            Nack(0),
            TryOfferKey(2),
            TryOfferKey(3),
            TakeBatchLeased(2, 2),
            TakeBatch(2),
        ],
    ];
    for policy in [InFlightPolicy::Requeue, InFlightPolicy::Absorb] {
        for capacity in 1..=4 {
            for ops in &sequences {
                run(capacity, policy, ops).unwrap();
            }
        }
    }
}
