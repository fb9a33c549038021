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
//! Retries: the `matches_the_model_with_delays` properties (one per store,
//! the valued ones drawing their merge per case) run the same ops and more
//! (`try_offer_key_after`, `nack_after`, `nack_backoff`, their batch forms,
//! clock advances, and `len` / `is_empty` / `stats` as ops of their own;
//! delays of 0 to 8 ms and `Duration::MAX`) on queues built with
//! `.retries(Backoff::exponential(1 ms, 64 ms)).manual_clock()`, comparing
//! also every lease's `attempt()`, each `nack_backoff` delay, and the
//! stats' `delayed`, `next_due` and `delayed_nacks`. `len`, `is_empty`
//! and `stats` queue what is due (as a take does), so after a delay op, and
//! while the model has a due entry not yet queued, the state check leaves
//! them out (it reads only what changes nothing), and the next ops show
//! where the entry joins the ring.
//!
//! `MODEL_CASES` sets the number of cases per store and merge (default
//! 512); `MODEL_DELAY_CASES` that of the delay properties (default 96).
//! The model is `tests/reference/mod.rs`, shared with the fuzz targets.

mod reference;

use coalescing_queue::{
    Backoff, Builder, CoalescingQueue, Compact, DefaultHashBuilder, Entry, InFlightPolicy,
    KeyStore, Lease, OfferError, OfferTimeoutError, Stats, TryOfferError, TryTakeError, Valued,
};
use proptest::collection::vec;
use proptest::prelude::*;
use reference::{wrapping_add as add, Counts, Plain, RunKey, WithValue};
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

/// The backoff of the queues built with retries: 1 ms, doubling up to
/// 64 ms (the model works the delays out itself from these two).
const BASE: Duration = Duration::from_millis(1);
const MAX: Duration = Duration::from_millis(64);

/// How long a batch take that the model says returns at once may wait
/// when the state check could not confirm it (a due entry not yet queued:
/// `len` would have queued it): the timeout form then, so that a queue
/// that disagrees fails the case instead of hanging it. It returns at once
/// when it agrees.
const HANG: Duration = Duration::from_millis(200);

/// A delay code of the ops: milliseconds, except `FOREVER`.
const FOREVER: u8 = u8::MAX;

/// The delay a code stands for: `FOREVER` is `Duration::MAX` (due at the
/// end of the clock: only close queues it).
fn delay_of(code: u8) -> Duration {
    if code == FOREVER {
        Duration::MAX
    } else {
        Duration::from_millis(code.into())
    }
}

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
    // Retries (queues built with them only; skipped on the others).
    /// `try_offer_key_after(key, delay_of(code))`.
    TryOfferKeyAfter(K, u8),
    /// `nack_after(delay_of(code))` of a held lease.
    NackAfter(usize, u8),
    /// `nack_backoff()` of a held lease.
    NackBackoff(usize),
    /// `advance_clock` by this many milliseconds.
    AdvanceClock(u8),
    /// `len()` (queues what is due).
    Len,
    /// `is_empty()` (queues what is due).
    IsEmpty,
    /// `stats()` (queues what is due), every field compared.
    Stats,
    /// Leased batch of at most `max`, then `nack_after(delay_of(code))`.
    TakeBatchNackAfter(usize, u8),
    /// Leased batch of at most `max`, then `nack_backoff()`.
    TakeBatchNackBackoff(usize),
}

impl Op {
    /// Needs a queue built with retries.
    fn delays(&self) -> bool {
        matches!(
            self,
            Op::TryOfferKeyAfter(..)
                | Op::NackAfter(..)
                | Op::NackBackoff(_)
                | Op::AdvanceClock(_)
                | Op::TakeBatchNackAfter(..)
                | Op::TakeBatchNackBackoff(_)
        )
    }
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

/// A delay code: mostly 0 to 8 ms (0 is due at once, but still waits for
/// a take to queue it), sometimes for ever.
fn delay_code() -> impl Strategy<Value = u8> {
    prop_oneof![12 => 0u8..=8, 1 => Just(FOREVER)]
}

/// The ops of the delay properties: those of `op()`, the delayed nacks
/// (as often as the plain ones), clock advances and the queuing looks.
fn delay_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => op(),
        2 => ((0..KEYS), delay_code())
            .prop_map(|(key, code)| Op::TryOfferKeyAfter(key, code)),
        3 => (any::<usize>(), delay_code()).prop_map(|(i, code)| Op::NackAfter(i, code)),
        3 => any::<usize>().prop_map(Op::NackBackoff),
        4 => (0u8..=10).prop_map(Op::AdvanceClock),
        1 => Just(Op::Len),
        1 => Just(Op::IsEmpty),
        1 => Just(Op::Stats),
        1 => ((1usize..=5), delay_code())
            .prop_map(|(max, code)| Op::TakeBatchNackAfter(max, code)),
        1 => (1usize..=5).prop_map(Op::TakeBatchNackBackoff),
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

/// Compares everything observable without changing anything: `len`,
/// `is_empty` (and, with retries, `stats`) only if `look` and nothing is
/// due, since they would queue it. Not after a delay op (`look` false),
/// whatever the model says: a model that queued a due entry too early
/// would agree with a `len` that queues it there and then, so only the
/// next ops show where a due entry joins the ring.
fn check_state<Key: RunKey, S: KeyStore<Key>>(
    q: &Q<Key, S>,
    m: &Model<Key>,
    leases: &[Lease<'_, Key, V, S>],
    look: bool,
) -> Result<(), TestCaseError> {
    if look && !m.has_due() {
        prop_assert_eq!(q.len(), m.ring.len(), "len");
        prop_assert_eq!(q.is_empty(), m.ring.is_empty(), "is_empty");
        if m.retries.is_some() {
            check_stats(&q.stats(), m)?;
        }
    }
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
    // At most one queued copy of a key (G2), delayed ones included.
    for key in 0..KEYS {
        let queued = m.ring.iter().filter(|e| **e == Entry::Key(key)).count();
        let delayed = m.delayed.iter().filter(|d| d.entry == Entry::Key(key));
        let copies = queued + delayed.count();
        prop_assert!(copies <= 1, "model: two queued copies of {}", key);
    }
    Ok(())
}

/// Compares a `stats()` snapshot with the model (which has queued what is
/// due, as `stats` does).
fn check_stats<Key: RunKey>(s: &Stats, m: &Model<Key>) -> Result<(), TestCaseError> {
    let real = Counts::of(s);
    prop_assert_eq!(&real, &m.counts);
    prop_assert_eq!(s.offered, m.counts.offered());
    prop_assert_eq!(s.queued, m.ring.len(), "stats.queued");
    prop_assert_eq!(s.in_flight, m.in_flight, "stats.in_flight");
    prop_assert_eq!(s.delayed, m.delayed.len(), "stats.delayed");
    prop_assert_eq!(s.next_due, m.next_due(), "stats.next_due");
    prop_assert_eq!(s.oldest_lease_age.is_some(), m.in_flight > 0);
    Ok(())
}

/// `stats()`, which queues what is due first, against the model.
fn check_counts<Key: RunKey, S: KeyStore<Key>>(
    q: &Q<Key, S>,
    m: &mut Model<Key>,
) -> Result<(), TestCaseError> {
    m.queue_due();
    check_stats(&q.stats(), m)
}

/// The builder of the queues under test: with `retries`, the backoff
/// `BASE`..`MAX` on the manual clock.
fn builder<Key, S: KeyStore<Key> + Default>(
    capacity: usize,
    policy: InFlightPolicy,
    retries: bool,
) -> Builder<Key, V, S> {
    let builder = Builder::new().capacity(capacity).in_flight_policy(policy);
    if retries {
        builder
            .retries(Backoff::exponential(BASE, MAX))
            .manual_clock()
    } else {
        builder
    }
}

/// The model of a queue of `builder(capacity, policy, retries)`.
fn model<Key: RunKey>(
    capacity: usize,
    policy: InFlightPolicy,
    retries: bool,
    carry: Key::Carry,
) -> Model<Key> {
    let m = Model::with_carry(capacity, policy, carry);
    if retries {
        m.with_retries(BASE, MAX)
    } else {
        m
    }
}

/// Replays `ops` on a queue with plain key store `S` (built with retries
/// if `retries`) and on the model.
fn run<S: KeyStore<K> + Default>(
    capacity: usize,
    policy: InFlightPolicy,
    retries: bool,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let q: Q<K, S> = builder(capacity, policy, retries).build();
    replay(&q, model(capacity, policy, retries, Plain), ops)
}

/// Replays `ops` on a queue with valued store `Valued<S>`, merging with
/// `Latest` (`merge` `None`, the default) or with `merge`, and on the model
/// merging the same way.
fn run_valued<S>(
    capacity: usize,
    policy: InFlightPolicy,
    retries: bool,
    merge: Option<fn(&mut P, P)>,
    ops: &[Op],
) -> Result<(), TestCaseError>
where
    S: Default,
    Valued<S>: KeyStore<(K, P)> + Default,
    Valued<S, fn(&mut P, P)>: KeyStore<(K, P)>,
{
    let builder = builder::<(K, P), Valued<S>>(capacity, policy, retries);
    match merge {
        None => {
            let m = model(capacity, policy, retries, WithValue::latest());
            replay(&builder.build(), m, ops)
        }
        Some(merge) => {
            let m = model(capacity, policy, retries, WithValue(merge));
            replay(&builder.merge(merge).build(), m, ops)
        }
    }
}

/// Replays `ops` on `q` and on `m`, a model of it; the n-th key offer
/// offers `Key::make(key, n)`. The delay ops are skipped unless `q` was
/// built with retries (`m.retries`).
fn replay<Key: RunKey, S: KeyStore<Key>>(
    q: &Q<Key, S>,
    mut m: Model<Key>,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let retries = m.retries.is_some();
    // The real leases, and in the model the entry each of them holds.
    let mut leases: Vec<Lease<'_, Key, V, S>> = Vec::new();
    let mut leased: Vec<Entry<Key, V>> = Vec::new();
    let mut offers: P = 0;
    let mut next_key = |id: K| {
        offers = offers.wrapping_add(1);
        Key::make(id, offers)
    };

    for op in ops {
        if op.delays() && !retries {
            continue;
        }
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
            Op::TryOfferKeyAfter(key, code) => {
                let key = next_key(key);
                let delay = delay_of(code);
                prop_assert_eq!(
                    q.try_offer_key_after(key, delay),
                    m.offer_key_after(key, delay)
                );
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
                let expected = m.take_attempt(true);
                match (real, expected) {
                    (Ok(lease), Ok((entry, attempt))) => {
                        prop_assert_eq!(&*lease, &entry);
                        prop_assert_eq!(lease.attempt(), attempt, "attempt of {:?}", entry);
                        leases.push(lease);
                        leased.push(entry);
                    }
                    (Err(real), Err(expected)) => prop_assert_eq!(real, expected),
                    (real, expected) => {
                        return Err(TestCaseError::fail(format!(
                            "try_take_leased: {:?} vs model {:?}",
                            real.map(|l| *l.entry()),
                            expected.map(|(entry, _)| entry)
                        )))
                    }
                }
            }
            Op::Ack(i)
            | Op::Nack(i)
            | Op::DropLease(i)
            | Op::NackAfter(i, _)
            | Op::NackBackoff(i) => {
                if leases.is_empty() {
                    continue;
                }
                let i = i % leases.len();
                let lease = leases.remove(i);
                let entry = leased.remove(i);
                prop_assert_eq!(&*lease, &entry);
                prop_assert_eq!(lease.attempt(), m.attempt_of(&entry), "attempt");
                match *op {
                    Op::Ack(_) => lease.ack(),
                    Op::Nack(_) => lease.nack(),
                    Op::NackAfter(_, code) => {
                        lease.nack_after(delay_of(code));
                        m.nack_after(entry, delay_of(code));
                    }
                    Op::NackBackoff(_) => {
                        let delay = lease.nack_backoff();
                        prop_assert_eq!(delay, m.nack_backoff(entry), "nack_backoff's delay");
                    }
                    _ => drop(lease),
                }
                if matches!(op, Op::Ack(_) | Op::Nack(_) | Op::DropLease(_)) {
                    m.end_lease(entry, matches!(op, Op::Ack(_)));
                }
            }
            Op::AdvanceClock(ms) => {
                let by = Duration::from_millis(ms.into());
                q.advance_clock(by);
                m.advance_clock(by);
            }
            Op::Len => {
                m.queue_due();
                prop_assert_eq!(q.len(), m.ring.len(), "len");
            }
            Op::IsEmpty => {
                m.queue_due();
                prop_assert_eq!(q.is_empty(), m.ring.is_empty(), "is_empty");
            }
            Op::Stats => check_counts(q, &mut m)?,
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
                let unchecked = m.has_due();
                let Some(expected) = m.take_batch(max, false) else {
                    continue;
                };
                let mut out = vec![Entry::Item(9999)];
                let n = if unchecked {
                    q.take_batch_timeout(&mut out, max, Duration::ZERO, HANG)
                } else {
                    q.take_batch(&mut out, max, Duration::ZERO)
                };
                prop_assert_eq!(n, expected.len());
                prop_assert_eq!(out.remove(0), Entry::Item(9999));
                prop_assert_eq!(out, expected);
            }
            Op::TakeBatchLeased(max, _)
            | Op::TakeBatchNackAfter(max, _)
            | Op::TakeBatchNackBackoff(max) => {
                let unchecked = m.has_due();
                let Some(taken) = m.take_batch_attempts(max, true) else {
                    continue;
                };
                let (expected, attempts): (Vec<_>, Vec<_>) = taken.into_iter().unzip();
                let batch = if unchecked {
                    q.take_batch_leased_timeout(max, Duration::ZERO, HANG)
                } else {
                    q.take_batch_leased(max, Duration::ZERO)
                };
                prop_assert_eq!(batch.len(), expected.len());
                prop_assert_eq!(batch.is_empty(), expected.is_empty());
                prop_assert_eq!(batch.entries(), &expected[..]);
                prop_assert_eq!(batch.attempts().collect::<Vec<_>>(), attempts.clone());
                // 0 keep (split), 1 ack, 2 nack, 3 drop, 4 nack_after,
                // 5 nack_backoff.
                let end = match *op {
                    Op::TakeBatchLeased(_, end) => end,
                    Op::TakeBatchNackAfter(..) => 4,
                    _ => 5,
                };
                match end {
                    0 => {
                        let split = batch.into_leases();
                        let split_attempts: Vec<u32> = split.iter().map(Lease::attempt).collect();
                        prop_assert_eq!(split_attempts, attempts, "into_leases' attempts");
                        leases.extend(split);
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
                    4 => {
                        let Op::TakeBatchNackAfter(_, code) = *op else {
                            unreachable!()
                        };
                        // One due time for all, in the batch's order.
                        batch.nack_after(delay_of(code));
                        for entry in expected {
                            m.nack_after(entry, delay_of(code));
                        }
                    }
                    5 => {
                        // Each by its own attempt.
                        batch.nack_backoff();
                        for entry in expected {
                            m.nack_backoff(entry);
                        }
                    }
                    _ => unreachable!(),
                }
            }
        }
        check_state(q, &m, &leases, !op.delays())?;
    }
    check_counts(q, &mut m)?;

    // Wind down: close, end every lease with a nack (drop), drain.
    let expected = m.close();
    prop_assert_eq!(q.close(), expected);
    for (lease, entry) in leases.drain(..).zip(leased.drain(..)) {
        drop(lease);
        m.end_lease(entry, false);
    }
    check_state(q, &m, &leases, true)?;
    loop {
        let expected = m.take(false);
        prop_assert_eq!(q.try_take(), expected);
        if expected.is_err() {
            break;
        }
    }
    prop_assert_eq!(q.try_take(), Err(TryTakeError::Closed));
    check_state(q, &m, &leases, true)?;
    check_counts(q, &mut m)?;
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

/// The cases of each delay property: fewer, to keep the run short.
fn delay_cases() -> u32 {
    std::env::var("MODEL_DELAY_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(96)
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
                    run::<S>(capacity, policy_of(drop_policy), false, &ops)?;
                }
            }

            proptest! {
                #![proptest_config(ProptestConfig {
                    cases: delay_cases(),
                    ..ProptestConfig::default()
                })]

                #[test]
                fn matches_the_model_with_delays(
                    capacity in 1usize..=4,
                    drop_policy in any::<bool>(),
                    ops in vec(delay_op(), 1..80),
                ) {
                    run::<S>(capacity, policy_of(drop_policy), true, &ops)?;
                }
            }

            #[test]
            fn fixed_sequences_match_the_model() {
                for retries in [false, true] {
                    fixed_sequences(|capacity, policy, ops| {
                        run::<S>(capacity, policy, retries, ops)
                    });
                }
                fixed_delay_sequences(|capacity, policy, ops| {
                    run::<S>(capacity, policy, true, ops)
                });
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
                    run_valued::<S>(capacity, policy_of(drop_policy), false, None, &ops)?;
                }

                #[test]
                fn matches_the_model_add(
                    capacity in 1usize..=4,
                    drop_policy in any::<bool>(),
                    ops in vec(op(), 1..80),
                ) {
                    run_valued::<S>(capacity, policy_of(drop_policy), false, Some(add), &ops)?;
                }
            }

            proptest! {
                #![proptest_config(ProptestConfig {
                    cases: delay_cases(),
                    ..ProptestConfig::default()
                })]

                /// `Latest` or the additive merge, drawn per case.
                #[test]
                fn matches_the_model_with_delays(
                    capacity in 1usize..=4,
                    drop_policy in any::<bool>(),
                    adding in any::<bool>(),
                    ops in vec(delay_op(), 1..80),
                ) {
                    let merge = adding.then_some(add as fn(&mut P, P));
                    run_valued::<S>(capacity, policy_of(drop_policy), true, merge, &ops)?;
                }
            }

            #[test]
            fn fixed_sequences_match_the_model() {
                for merge in [None, Some(add as fn(&mut P, P))] {
                    for retries in [false, true] {
                        fixed_sequences(|capacity, policy, ops| {
                            run_valued::<S>(capacity, policy, retries, merge, ops)
                        });
                    }
                    fixed_delay_sequences(|capacity, policy, ops| {
                        run_valued::<S>(capacity, policy, true, merge, ops)
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

/// Fixed sequences of the delay rules, run by the delay runners (queues
/// built with retries) through the same checker.
fn fixed_delay_sequences(run: impl Fn(usize, InFlightPolicy, &[Op]) -> Result<(), TestCaseError>) {
    use Op::*;
    let sequences: Vec<Vec<Op>> = vec![
        // Due, but queued only by a take: behind what came meanwhile.
        vec![
            TryOfferKey(1),
            TryTakeLeased,
            NackAfter(0, 2),
            TryOfferKey(2),
            AdvanceClock(2),
            TryOfferKey(3),
            TryTake,
            TryTake,
            TryTake,
        ],
        // Due at once (0 ms), still not a plain nack: an item offered
        // after it comes first.
        vec![
            TryOfferKey(1),
            TryTakeLeased,
            NackAfter(0, 0),
            TryOfferItem(7),
            TryTakeLeased,
            Len,
            TryTakeLeased,
            Ack(0),
            Ack(0),
        ],
        // Backoff by attempt: 1, 2 ms; an ack, then a fresh copy at 1.
        vec![
            TryOfferKey(1),
            TryTakeLeased,
            NackBackoff(0),
            TryTake,
            AdvanceClock(1),
            TryTakeLeased,
            NackBackoff(0),
            AdvanceClock(1),
            Stats,
            TryTakeLeased,
            AdvanceClock(1),
            TryTakeLeased,
            TryOfferKey(1),
            Ack(0),
            TryTakeLeased,
            Ack(0),
        ],
        // Offers of a delayed key coalesce (and merge): dirty, nacked with
        // a delay, offered again, then due.
        vec![
            TryOfferKey(2),
            TryTakeLeased,
            TryOfferKey(2),
            NackAfter(0, 3),
            TryOfferKey(2),
            OfferKey(2),
            Stats,
            AdvanceClock(3),
            IsEmpty,
            TakeBatchLeased(2, 1),
        ],
        // Due order: by due time, then by order of the nacks.
        vec![
            TryOfferKey(1),
            TryOfferKey(2),
            TryOfferKey(3),
            TakeBatchLeased(3, 0),
            NackAfter(2, 3),
            NackAfter(0, 1),
            NackAfter(0, 3),
            AdvanceClock(3),
            TakeBatch(5),
        ],
        // Close queues every delayed entry, in order; a delayed nack after
        // close is a plain nack.
        vec![
            TryOfferKey(1),
            TryOfferKey(2),
            TryOfferItem(3),
            TakeBatchLeased(2, 0),
            NackAfter(1, FOREVER),
            Stats,
            TakeBatchNackAfter(1, 5),
            Close,
            NackBackoff(0),
            TakeBatch(5),
        ],
        // Batches: one due time for all, in order; backoff each by its
        // attempt (after a plain nack of part of them).
        vec![
            TryOfferKey(1),
            TryOfferKey(2),
            TryOfferKey(3),
            TryTakeLeased,
            Nack(0),
            TakeBatchNackBackoff(5),
            AdvanceClock(1),
            Len,
            AdvanceClock(1),
            TakeBatchNackAfter(5, 4),
            AdvanceClock(4),
            TakeBatchLeased(5, 0),
            NackBackoff(0),
            DropLease(0),
            NackAfter(0, 0),
            TakeBatch(5),
        ],
        // A new key offered with a delay: pending and holding its slot from
        // the offer; an offer of a pending key keeps its place and delay.
        vec![
            TryOfferKeyAfter(1, 3),
            TryOfferKey(1),
            TryOfferKeyAfter(2, 1),
            TryOfferKeyAfter(1, 0),
            TryTake,
            AdvanceClock(1),
            TryOfferKey(3),
            TryTake,
            AdvanceClock(2),
            TryTakeLeased,
            TryOfferKeyAfter(3, 0),
            NackAfter(0, 0),
            Stats,
            Ack(0),
            TakeBatchLeased(4, 2),
        ],
        // A delay of `Duration::MAX` (due at u64::MAX, the schedule's
        // "nothing due" value) stays while others fall due around it: the
        // queue must still look for them (at 160ce8c it cleared its
        // delayed bit here, and the second nack of key 1 was never queued
        // before close).
        vec![
            TryOfferKey(1),
            TryOfferKey(2),
            TakeBatchLeased(2, 0),
            NackAfter(0, 1),
            NackAfter(0, FOREVER),
            AdvanceClock(1),
            TryTakeLeased,
            NackAfter(0, 1),
            AdvanceClock(1),
            TryTake,
            Stats,
        ],
        // Capacity: a delayed entry holds its slot.
        vec![
            TryOfferKey(1),
            TryTakeLeased,
            NackAfter(0, 2),
            TryOfferKey(2),
            TryOfferItem(4),
            AdvanceClock(1),
            TryTake,
            AdvanceClock(1),
            TryOfferKey(3),
            TryTake,
            TryTake,
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

/// The delay model on its own, against results worked out by hand from the
/// documented rules (`LeaseIn::nack_after`, `nack_backoff`, `attempt`, and
/// where due entries join the ring), so that the model and the queue
/// cannot agree on a wrong rule unnoticed.
#[test]
fn the_delay_model_follows_the_documented_rules() {
    type M = reference::Model<K, V>;
    let ms = Duration::from_millis;
    let new = |policy| M::new(4, policy).with_retries(BASE, MAX);
    let key = |k: K| Ok(Entry::<K, V>::Key(k));
    let requeue = InFlightPolicy::Requeue;

    // The attempt counts the nacks of one pending copy; the backoff
    // doubles from 1 ms up to 64 ms; not due, not taken.
    let mut m = new(requeue);
    m.offer_key(1).unwrap();
    let mut delays = Vec::new();
    for attempt in 1..=8 {
        let (entry, got) = m.take_attempt(true).unwrap();
        assert_eq!((entry, got), (Entry::Key(1), attempt));
        let delay = m.nack_backoff(entry);
        delays.push(delay);
        m.advance_clock(delay - Duration::from_nanos(1));
        assert_eq!(m.take(false), Err(TryTakeError::Empty), "not yet due");
        assert_eq!(m.offer_key(1), Ok(coalescing_queue::Offered::Coalesced));
        m.advance_clock(Duration::from_nanos(1));
    }
    assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 64].map(ms));
    assert_eq!((m.counts.nacked, m.counts.delayed_nacks), (8, 8));
    assert_eq!(m.counts.coalesced_queued, 8);
    // A plain nack and a drop count too; an ack of a key offered in
    // flight queues a new copy: attempt 1.
    let (entry, _) = m.take_attempt(true).unwrap();
    m.end_lease(entry, false);
    let (entry, attempt) = m.take_attempt(true).unwrap();
    assert_eq!(attempt, 10);
    m.offer_key(1).unwrap();
    m.end_lease(entry, true);
    assert_eq!(m.take_attempt(true), Ok((Entry::Key(1), 1)));
    // Items always say 1, and back off 1 ms.
    let mut m = new(requeue);
    m.offer_item(5).unwrap();
    let (item, attempt) = m.take_attempt(true).unwrap();
    assert_eq!((m.nack_backoff(item), attempt), (ms(1), 1));
    m.advance_clock(ms(1));
    assert_eq!(m.take_attempt(true), Ok((Entry::Item(5), 1)));

    // A due entry joins the tail when a take (or len, is_empty, stats)
    // runs: behind what was queued meanwhile, and after the take's pop.
    let mut m = new(requeue);
    m.offer_key(1).unwrap();
    let lease = m.take(true).unwrap();
    m.nack_after(lease, ms(2));
    m.offer_key(2).unwrap();
    m.advance_clock(ms(2));
    m.offer_key(3).unwrap();
    assert!(m.has_due());
    assert_eq!(m.take(false), key(2));
    assert_eq!(m.ring, [Entry::Key(3), Entry::Key(1)]);
    // With the ring empty, the take queues it and takes it; 0 ms is due
    // at once but not queued at once.
    let mut m = new(requeue);
    m.offer_key(1).unwrap();
    let lease = m.take(true).unwrap();
    m.nack_after(lease, Duration::ZERO);
    assert!(m.ring.is_empty() && m.has_due());
    assert_eq!(m.next_due(), Some(Duration::ZERO));
    assert_eq!(m.take(false), key(1));
    // Among due entries: by due time, then by order of the nacks.
    let mut m = new(requeue);
    for k in 1..=3 {
        m.offer_key(k).unwrap();
    }
    let batch = m.take_batch(3, true).unwrap();
    m.nack_after(batch[2], ms(3));
    m.nack_after(batch[0], ms(1));
    m.nack_after(batch[1], ms(3));
    assert_eq!(m.next_due(), Some(ms(1)));
    m.advance_clock(ms(3));
    assert_eq!(
        m.take_batch(5, false),
        Some(vec![Entry::Key(1), Entry::Key(3), Entry::Key(2)])
    );
    // Close queues every delayed entry at once (due or not, in order); a
    // delayed nack after close is a plain one.
    let mut m = new(requeue);
    for k in 1..=3 {
        m.offer_key(k).unwrap();
    }
    let batch = m.take_batch(3, true).unwrap();
    m.nack_after(batch[0], Duration::MAX);
    m.nack_after(batch[1], ms(5));
    assert_eq!(m.next_due(), Some(ms(5)));
    assert_eq!(m.claimed(), 3);
    assert!(m.close());
    assert_eq!(m.ring, [Entry::Key(2), Entry::Key(1)]);
    m.nack_after(batch[2], ms(5));
    assert_eq!(m.ring, [Entry::Key(2), Entry::Key(1), Entry::Key(3)]);
    assert_eq!((m.counts.nacked, m.counts.delayed_nacks), (3, 2));
    assert_eq!(m.next_due(), None);

    // A delayed key is pending and queued in the map: offers coalesce
    // into it and merge into its value (here a dirty one, merged by the
    // nack first), under either policy.
    type MV = reference::Model<(K, P), V, WithValue<P>>;
    for policy in [requeue, InFlightPolicy::Absorb] {
        let mut m = MV::with_carry(4, policy, WithValue(add)).with_retries(BASE, MAX);
        m.offer_key((1, 1)).unwrap();
        let lease = m.take(true).unwrap();
        m.offer_key((1, 2)).unwrap();
        m.nack_after(lease, ms(1));
        m.offer_key((1, 4)).unwrap();
        assert_eq!(m.counts.coalesced_queued, 1);
        m.advance_clock(ms(1));
        let want = if policy == requeue { 7 } else { 5 };
        assert_eq!(m.take_attempt(true), Ok((Entry::Key((1, want)), 2)));
    }
}
