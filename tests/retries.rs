//! Retries: attempt counts, delayed nacks (`nack_after`, `nack_backoff`,
//! their batch forms), delayed offers (`try_offer_key_after`), the
//! `Backoff` schedule and its jitter, waking takers when a delayed entry
//! falls due (blocking, timeout, batch linger, async), close ending every
//! delay, `Valued` merges into a delayed value, the slot a delayed entry
//! holds, the stats, and no leak once everything is acked.
//!
//! Most tests run on the manual clock (`Builder::manual_clock`, moved by
//! `advance_clock`), so due times are exact and nothing depends on the
//! machine's speed; the real-clock tests only assert that a take never
//! returns a delayed entry before its delay has passed, and that a waiting
//! taker wakes by itself (a hang is caught by a watchdog or a generous
//! receive timeout, never by a tight time bound). The generic tests run on
//! both key stores (`compact::…` and `general::…`).

mod common;

use coalescing_queue::{
    Backoff, Builder, CoalescingQueue, DefaultHashBuilder, Entry, KeyStore, Lease,
    OfferTimeoutError, Offered, TakeTimeoutError, TryOfferError, TryTakeError, Valued,
};
use common::Watchdog;
use crossbeam_channel::bounded;
use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

type Q<S> = CoalescingQueue<u32, String, S>;

/// Long enough for a blocked thread to have gone to sleep.
const SETTLE: Duration = Duration::from_millis(50);
/// How long a wake-up that should come may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(10);
/// The real-clock delay.
const DELAY: Duration = Duration::from_millis(30);
/// A delay no test waits out.
const FOREVER: Duration = Duration::from_secs(1000);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A queue on store `S` with `backoff`, on the manual clock.
fn manual<S: KeyStore<u32> + Default>(capacity: usize, backoff: Backoff) -> Q<S> {
    Builder::<u32, String, S>::new()
        .capacity(capacity)
        .retries(backoff)
        .manual_clock()
        .build()
}

/// A queue on store `S` with `backoff`, on the real clock.
fn real<S: KeyStore<u32> + Default>(capacity: usize, backoff: Backoff) -> Q<S> {
    Builder::<u32, String, S>::new()
        .capacity(capacity)
        .retries(backoff)
        .build()
}

/// A queue on store `S` built without `retries`.
fn without_retries<S: KeyStore<u32> + Default>(capacity: usize) -> Q<S> {
    Builder::<u32, String, S>::new().capacity(capacity).build()
}

/// 1 ms doubling up to 1 s.
fn millis() -> Backoff {
    Backoff::exponential(ms(1), Duration::from_secs(1))
}

/// The head, leased; panics if nothing is queued (or due).
fn head<S: KeyStore<u32>>(q: &Q<S>) -> Lease<'_, u32, String, S> {
    q.try_take_leased().expect("an entry is queued")
}

/// A leased key and its attempt.
fn key_attempt<S: KeyStore<u32>>(lease: &Lease<'_, u32, String, S>) -> (u32, u32) {
    (*lease.key().expect("a key, not an item"), lease.attempt())
}

/// Every queued key, in order, by plain takes.
fn drain<S: KeyStore<u32>>(q: &Q<S>) -> Vec<u32> {
    let mut keys = Vec::new();
    while let Ok(entry) = q.try_take() {
        keys.push(*entry.key().expect("only keys are queued"));
    }
    keys
}

/// Every queued key and its attempt, by leased takes, each acked.
fn drain_acked<S: KeyStore<u32>>(q: &Q<S>) -> Vec<(u32, u32)> {
    let mut taken = Vec::new();
    while let Ok(lease) = q.try_take_leased() {
        taken.push(key_attempt(&lease));
        lease.ack();
    }
    taken
}

/// G6: nothing pending, no slot claimed, nothing delayed or in flight.
fn assert_no_leak<S: KeyStore<u32>>(q: &Q<S>) {
    let stats = q.stats();
    assert_eq!(q.pending_keys(), 0, "a key is still pending");
    assert_eq!(q.claimed_slots(), 0, "a slot is still claimed");
    assert_eq!(q.in_flight(), 0);
    assert_eq!((stats.delayed, stats.next_due), (0, None));
    assert_eq!(stats.queued, 0);
}

fn panic_message(result: Result<(), Box<dyn Any + Send>>) -> String {
    let payload = result.expect_err("the call should have panicked");
    if let Some(message) = payload.downcast_ref::<&str>() {
        message.to_string()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        panic!("a panic payload that is not a string")
    }
}

#[path = "common/both_stores.rs"]
#[macro_use]
mod both_stores;

both_stores!(
    attempts_count_nacks_drops_and_delays,
    a_dirty_ack_restarts_the_count_and_a_dirty_nack_keeps_it,
    a_plain_take_ends_the_count,
    items_always_say_attempt_one,
    batch_attempts_and_into_leases_keep_the_counts,
    a_delayed_key_is_not_taken_before_due,
    a_reoffer_during_the_delay_coalesces_and_is_delivered_once,
    delayed_keys_fall_due_by_due_time_ties_in_nack_order,
    a_due_key_queues_behind_keys_queued_before_the_take_that_finds_it,
    len_is_empty_and_stats_queue_what_is_due,
    nack_after_zero_is_due_at_once,
    nack_backoff_doubles_and_caps,
    a_zero_base_backoff_queues_at_once,
    batch_nack_after_falls_due_together_in_batch_order,
    batch_nack_backoff_delays_each_by_its_own_attempt,
    jitter_stays_within_its_band,
    a_delay_of_duration_max_waits_for_close_and_blocks_nothing_else,
    close_releases_delayed_keys_at_once,
    a_taker_waiting_for_a_delayed_key_wakes_at_close,
    a_delayed_nack_after_close_queues_at_once,
    close_and_wait_drains_delayed_keys_without_waiting_out_the_delay,
    a_delayed_key_holds_its_slot,
    delayed_nacks_without_retries_panic_and_requeue,
    stats_count_delayed_nacks_and_tell_the_next_due_time,
    a_blocked_taker_wakes_when_the_clock_is_advanced,
    a_lingering_batch_takes_a_key_that_falls_due,
    real_clock_take_wakes_when_due_and_not_before,
    real_clock_timeouts_shorter_than_the_delay_time_out,
    real_clock_lingering_batch_wakes_when_due,
    every_waiting_taker_learns_the_due_time,
    an_owned_lease_nacked_with_a_delay_in_another_thread,
    delayed_items_are_delivered_and_dropped_once,
    offer_key_after_delays_a_new_key,
    offer_key_after_coalesces_into_a_pending_copy_and_keeps_its_place,
    offer_key_after_is_refused_when_full_or_closed,
    no_leak_after_a_mixed_run,
    valued_offers_during_a_delay_merge_into_the_value,
);

// ----- attempt counting -----

fn attempts_count_nacks_drops_and_delays<S: KeyStore<u32> + Default>() {
    let q = manual::<S>(4, millis());
    q.offer_key(1).unwrap();
    let first = head(&q);
    assert_eq!(key_attempt(&first), (1, 1));
    first.nack();
    let second = head(&q);
    assert_eq!(second.attempt(), 2, "a nack counts");
    drop(second);
    let third = head(&q);
    assert_eq!(third.attempt(), 3, "a dropped lease counts");
    third.nack_after(ms(3));
    q.advance_clock(ms(3));
    let fourth = head(&q);
    assert_eq!(fourth.attempt(), 4, "a delayed nack counts");
    assert_eq!(fourth.nack_backoff(), ms(8), "delay(4) = 1 ms × 2^3");
    q.advance_clock(ms(8));
    let fifth = head(&q);
    assert_eq!(key_attempt(&fifth), (1, 5));
    fifth.ack();
    assert!(!q.is_pending(&1));
    q.offer_key(1).unwrap();
    let fresh = head(&q);
    assert_eq!(fresh.attempt(), 1, "an ack and a new offer start again");
    fresh.ack();
    assert_no_leak(&q);
}

fn a_dirty_ack_restarts_the_count_and_a_dirty_nack_keeps_it<S: KeyStore<u32> + Default>() {
    let q = manual::<S>(4, millis());
    q.offer_key(7).unwrap();
    let first = head(&q);
    assert_eq!(q.try_offer_key(7), Ok(Offered::Coalesced)); // dirty
    first.nack();
    assert_eq!(q.len(), 1, "one copy, not two");
    let second = head(&q);
    assert_eq!(second.attempt(), 2, "a dirty nack is the same copy again");
    assert_eq!(q.try_offer_key(7), Ok(Offered::Coalesced)); // dirty again
    second.ack();
    assert_eq!(q.stats().requeued_dirty, 1);
    let requeued = head(&q);
    assert_eq!(
        key_attempt(&requeued),
        (7, 1),
        "what the ack requeues is a new copy"
    );
    // Offered while in flight, then nacked with a delay: still counting.
    assert_eq!(q.try_offer_key(7), Ok(Offered::Coalesced));
    requeued.nack_after(ms(5));
    assert!(q.try_take().is_err());
    q.advance_clock(ms(5));
    assert_eq!(drain_acked(&q), [(7, 2)]);
    assert!(q.try_take().is_err(), "the dirty mark was used by the nack");
    assert_no_leak(&q);
}

fn a_plain_take_ends_the_count<S: KeyStore<u32> + Default>() {
    let q = manual::<S>(4, millis());
    q.offer_key(3).unwrap();
    head(&q).nack();
    head(&q).nack_after(ms(1));
    q.advance_clock(ms(1));
    assert_eq!(q.try_take(), Ok(Entry::Key(3)), "a plain take removes it");
    assert!(!q.is_pending(&3));
    q.offer_key(3).unwrap();
    let fresh = head(&q);
    assert_eq!(key_attempt(&fresh), (3, 1));
    fresh.ack();
    assert_no_leak(&q);
}

fn items_always_say_attempt_one<S: KeyStore<u32> + Default>() {
    let backoff = Backoff::exponential(ms(2), ms(100));
    let q = manual::<S>(4, backoff);
    q.offer("job".to_string()).unwrap();
    for round in 0..5 {
        let lease = head(&q);
        assert_eq!(lease.entry(), &Entry::Item("job".to_string()));
        assert_eq!(lease.attempt(), 1, "round {round}: items are not counted");
        match round {
            0 => lease.nack(),
            1 => drop(lease),
            2 => {
                lease.nack_after(ms(3));
                assert!(q.try_take().is_err(), "a delayed item is not queued");
                assert_eq!(q.stats().delayed, 1);
                q.advance_clock(ms(3));
            }
            3 => {
                // Attempt 1 every time: an item's backoff never grows.
                assert_eq!(lease.nack_backoff(), backoff.delay(1));
                q.advance_clock(ms(2));
            }
            _ => lease.ack(),
        }
    }
    assert_no_leak(&q);
}

fn batch_attempts_and_into_leases_keep_the_counts<S: KeyStore<u32> + Default>() {
    let q = manual::<S>(8, millis());
    for key in 1..=3 {
        q.offer_key(key).unwrap();
    }
    let (one, two, three) = (head(&q), head(&q), head(&q));
    three.nack();
    head(&q).nack(); // key 3 at its second delivery
    one.nack(); // ring: 3 (next attempt 3), 1 (next attempt 2)
    two.ack();
    q.offer_key(2).unwrap(); // a new copy: attempt 1
    let batch = q.take_batch_leased(8, Duration::ZERO);
    assert_eq!(
        batch.entries(),
        [Entry::Key(3), Entry::Key(1), Entry::Key(2)]
    );
    assert_eq!(batch.attempts().len(), 3);
    assert_eq!(batch.attempts().collect::<Vec<_>>(), [3, 2, 1]);
    drop(batch); // every entry nacked, in order
    let batch = q.take_batch_leased(8, Duration::ZERO);
    assert_eq!(batch.attempts().collect::<Vec<_>>(), [4, 3, 2]);
    let leases = batch.into_leases();
    let split: Vec<_> = leases.iter().map(key_attempt).collect();
    assert_eq!(
        split,
        [(3, 4), (1, 3), (2, 2)],
        "into_leases keeps attempts"
    );
    let mut leases = leases.into_iter();
    leases.next().unwrap().ack(); // key 3 delivered
    leases.next().unwrap().nack_after(ms(1)); // key 1 later
    leases.next().unwrap().nack(); // key 2 at once
    assert_eq!(drain_acked(&q), [(2, 3)]);
    q.advance_clock(ms(1));
    assert_eq!(drain_acked(&q), [(1, 4)]);
    assert_no_leak(&q);
}

// ----- nack_after on the manual clock -----

fn a_delayed_key_is_not_taken_before_due<S: KeyStore<u32> + Default>() {
    let q = manual::<S>(4, millis());
    q.offer_key(1).unwrap();
    head(&q).nack_after(ms(10));
    assert!(q.is_pending(&1));
    assert_eq!(q.try_take(), Err(TryTakeError::Empty));
    assert_eq!(q.try_take_leased().err(), Some(TryTakeError::Empty));
    assert!(q
        .take_batch_leased_timeout(4, Duration::ZERO, ms(1))
        .is_empty());
    assert_eq!((q.len(), q.is_empty(), q.in_flight()), (0, true, 0));
    // The manual clock does not move with time: a timeout take times out.
    assert_eq!(q.take_timeout(ms(20)), Err(TakeTimeoutError::Timeout));
    q.advance_clock(ms(9));
    assert_eq!(q.try_take(), Err(TryTakeError::Empty), "1 ms early");
    assert_eq!(q.stats().next_due, Some(ms(1)));
    q.advance_clock(ms(1));
    assert_eq!(q.len(), 1);
    assert_eq!(drain_acked(&q), [(1, 2)]);
    assert_no_leak(&q);
}

fn a_reoffer_during_the_delay_coalesces_and_is_delivered_once<S: KeyStore<u32> + Default>() {
    let q = manual::<S>(4, millis());
    q.offer_key(1).unwrap();
    head(&q).nack_after(ms(10));
    assert_eq!(q.try_offer_key(1), Ok(Offered::Coalesced));
    assert_eq!(q.offer_key(1), Ok(Offered::Coalesced));
    assert_eq!(q.offer_key_timeout(1, ms(1)), Ok(Offered::Coalesced));
    let stats = q.stats();
    assert_eq!((stats.enqueued, stats.coalesced_queued), (1, 3));
    assert_eq!((stats.delayed, stats.queued), (1, 0));
    assert!(q.try_take().is_err(), "a re-offer does not end the delay");
    q.advance_clock(ms(10));
    assert_eq!(drain_acked(&q), [(1, 2)], "delivered once");
    assert!(!q.is_pending(&1));
    assert_no_leak(&q);
}

fn delayed_keys_fall_due_by_due_time_ties_in_nack_order<S: KeyStore<u32> + Default>() {
    let delays = [30, 10, 20, 10, 20]; // for keys 1..=5
    let delay_all = |q: &Q<S>| {
        for key in 1..=5 {
            q.offer_key(key).unwrap();
        }
        let leases = q.take_batch_leased(8, Duration::ZERO).into_leases();
        for (lease, delay) in leases.into_iter().zip(delays) {
            lease.nack_after(ms(delay));
        }
        assert_eq!(q.stats().delayed, 5);
        assert_eq!(q.stats().next_due, Some(ms(10)));
    };
    // Step by step.
    let q = manual::<S>(8, millis());
    delay_all(&q);
    q.advance_clock(ms(10));
    assert_eq!(drain(&q), [2, 4]);
    q.advance_clock(ms(10));
    assert_eq!(drain(&q), [3, 5]);
    q.advance_clock(ms(10));
    assert_eq!(drain(&q), [1]);
    assert_no_leak(&q);
    // All at once: by due time, ties in the order of the nacks.
    let q = manual::<S>(8, millis());
    delay_all(&q);
    q.advance_clock(ms(30));
    assert_eq!(drain(&q), [2, 4, 3, 5, 1]);
    // One delay, nacked in reverse: the nack order decides.
    for key in 1..=5 {
        q.offer_key(key).unwrap();
    }
    let mut leases = q.take_batch_leased(8, Duration::ZERO).into_leases();
    while let Some(lease) = leases.pop() {
        lease.nack_after(ms(5));
    }
    q.advance_clock(ms(5));
    assert_eq!(drain(&q), [5, 4, 3, 2, 1]);
    assert_no_leak(&q);
}

fn a_due_key_queues_behind_keys_queued_before_the_take_that_finds_it<S: KeyStore<u32> + Default>() {
    let q = manual::<S>(8, millis());
    q.offer_key(1).unwrap();
    head(&q).nack_after(ms(5));
    q.offer_key(2).unwrap();
    q.offer_key(3).unwrap();
    q.advance_clock(ms(5)); // key 1 is due; nobody has looked yet
    q.offer_key(4).unwrap(); // queued before the take that finds 1 due
    assert_eq!(q.try_take(), Ok(Entry::Key(2)));
    q.offer_key(5).unwrap(); // queued after it
    assert_eq!(drain(&q), [3, 4, 1, 5]);
    assert_no_leak(&q);
}

/// A name, and a call that looks at the queue (and asserts what it sees).
type Looker<S> = (&'static str, fn(&Q<S>));

fn len_is_empty_and_stats_queue_what_is_due<S: KeyStore<u32> + Default>() {
    let lookers: [Looker<S>; 3] = [
        ("len", |q| assert_eq!(q.len(), 2)),
        ("is_empty", |q| assert!(!q.is_empty())),
        ("stats", |q| {
            let stats = q.stats();
            assert_eq!((stats.queued, stats.delayed, stats.next_due), (2, 0, None));
        }),
    ];
    for (name, look) in lookers {
        let q = manual::<S>(8, millis());
        q.offer_key(1).unwrap();
        head(&q).nack_after(ms(5));
        q.offer_key(2).unwrap();
        q.advance_clock(ms(5));
        look(&q); // queues key 1 behind 2
        q.offer_key(3).unwrap();
        assert_eq!(drain(&q), [2, 1, 3], "{name} queues what is due");
        assert_no_leak(&q);
    }
}

fn nack_after_zero_is_due_at_once<S: KeyStore<u32> + Default>() {
    for q in [manual::<S>(4, millis()), real::<S>(4, millis())] {
        q.offer_key(1).unwrap();
        q.offer_key(2).unwrap();
        head(&q).nack_after(Duration::ZERO);
        // Due now: the next take queues it behind key 2.
        assert_eq!(drain_acked(&q), [(2, 1), (1, 2)]);
        assert_eq!(q.stats().delayed_nacks, 1);
        assert_no_leak(&q);
    }
}

// ----- backoff -----

fn nack_backoff_doubles_and_caps<S: KeyStore<u32> + Default>() {
    let q = manual::<S>(4, Backoff::exponential(ms(1), ms(8)));
    q.offer_key(1).unwrap();
    let nanosecond = Duration::from_nanos(1);
    for (n, delay) in [1, 2, 4, 8, 8, 8].into_iter().map(ms).enumerate() {
        let lease = head(&q);
        assert_eq!(lease.attempt(), n as u32 + 1);
        assert_eq!(lease.nack_backoff(), delay, "attempt {}", n + 1);
        let stats = q.stats();
        assert_eq!((stats.delayed, stats.next_due), (1, Some(delay)));
        q.advance_clock(delay - nanosecond);
        assert!(q.try_take().is_err(), "due 1 ns later");
        assert_eq!(q.stats().next_due, Some(nanosecond));
        q.advance_clock(nanosecond);
    }
    assert_eq!(drain_acked(&q), [(1, 7)]);
    assert_no_leak(&q);

    // `manual_clock` alone: client-go's default, 5 ms doubling.
    let q = Builder::<u32, String, S>::new()
        .capacity(4)
        .manual_clock()
        .build();
    q.offer_key(1).unwrap();
    for delay in [5, 10, 20, 40].map(ms) {
        assert_eq!(head(&q).nack_backoff(), delay);
        q.advance_clock(delay);
    }
    assert_eq!(drain_acked(&q), [(1, 5)]);
}

fn a_zero_base_backoff_queues_at_once<S: KeyStore<u32> + Default>() {
    let q = real::<S>(4, Backoff::exponential(Duration::ZERO, FOREVER));
    q.offer_key(1).unwrap();
    for attempt in 1..=3 {
        let lease = head(&q);
        assert_eq!(lease.attempt(), attempt);
        assert_eq!(lease.nack_backoff(), Duration::ZERO);
    }
    assert_eq!(drain_acked(&q), [(1, 4)]);
    assert_eq!(q.stats().delayed_nacks, 3);
    assert_no_leak(&q);
}

fn batch_nack_after_falls_due_together_in_batch_order<S: KeyStore<u32> + Default>() {
    let q = manual::<S>(8, millis());
    for key in [3, 1, 2] {
        q.offer_key(key).unwrap();
    }
    let batch = q.take_batch_leased(8, Duration::ZERO);
    batch.nack_after(ms(10));
    let stats = q.stats();
    assert_eq!((stats.delayed, stats.next_due), (3, Some(ms(10))));
    assert_eq!(
        (stats.delayed_nacks, stats.nacked, stats.in_flight),
        (3, 3, 0)
    );
    q.advance_clock(ms(9));
    assert!(q
        .take_batch_leased_timeout(8, Duration::ZERO, ms(1))
        .is_empty());
    q.advance_clock(ms(1));
    let batch = q.take_batch_leased(8, Duration::ZERO);
    assert_eq!(
        batch.entries(),
        [Entry::Key(3), Entry::Key(1), Entry::Key(2)]
    );
    assert_eq!(batch.attempts().collect::<Vec<_>>(), [2, 2, 2]);
    batch.ack();
    assert_no_leak(&q);
}

fn batch_nack_backoff_delays_each_by_its_own_attempt<S: KeyStore<u32> + Default>() {
    let q = manual::<S>(8, millis());
    for key in 1..=3 {
        q.offer_key(key).unwrap();
    }
    // Attempts 3 (key 1), 2 (key 2), 1 (key 3) at the next take.
    let batch = q.take_batch_leased(8, Duration::ZERO);
    let mut leases = batch.into_leases().into_iter();
    let (one, two, three) = (
        leases.next().unwrap(),
        leases.next().unwrap(),
        leases.next().unwrap(),
    );
    one.nack();
    head(&q).nack(); // key 1 again
    two.nack();
    three.ack();
    q.offer_key(3).unwrap();
    let batch = q.take_batch_leased(8, Duration::ZERO);
    assert_eq!(
        batch.entries(),
        [Entry::Key(1), Entry::Key(2), Entry::Key(3)]
    );
    assert_eq!(batch.attempts().collect::<Vec<_>>(), [3, 2, 1]);
    batch.nack_backoff(); // 4 ms, 2 ms, 1 ms
    let stats = q.stats();
    assert_eq!((stats.delayed, stats.next_due), (3, Some(ms(1))));
    q.advance_clock(ms(1));
    assert_eq!(q.len(), 1);
    q.advance_clock(ms(1));
    assert_eq!(q.len(), 2);
    q.advance_clock(ms(1));
    assert_eq!(q.len(), 2, "key 1 waits 4 ms");
    q.advance_clock(ms(1));
    assert_eq!(drain_acked(&q), [(3, 2), (2, 3), (1, 4)]);
    assert_no_leak(&q);
}

fn jitter_stays_within_its_band<S: KeyStore<u32> + Default>() {
    for fraction in [0.0, 0.25, 1.0] {
        let backoff = Backoff::exponential(ms(8), ms(100)).with_jitter(fraction);
        let q = manual::<S>(4, backoff);
        q.offer_key(1).unwrap();
        let mut seen = HashSet::new();
        for _ in 0..40 {
            let lease = head(&q);
            let full = backoff.delay(lease.attempt());
            let delay = lease.nack_backoff();
            let shortest = full.mul_f64(1.0 - fraction);
            assert!(
                shortest <= delay && delay <= full,
                "jitter {fraction}: {delay:?} outside [{shortest:?}, {full:?}]"
            );
            assert_eq!(
                q.stats().next_due,
                Some(delay),
                "the delay returned is kept"
            );
            if fraction == 0.0 {
                assert_eq!(delay, full);
            }
            seen.insert(delay);
            q.advance_clock(delay);
        }
        if fraction > 0.0 {
            // 40 uniform draws over a band of nanoseconds: all equal only
            // if the draws do not vary.
            assert!(seen.len() > 10, "jitter {fraction}: {} delays", seen.len());
        }
        assert_eq!(drain_acked(&q), [(1, 41)]);
        assert_no_leak(&q);
    }
}

fn a_delay_of_duration_max_waits_for_close_and_blocks_nothing_else<S: KeyStore<u32> + Default>() {
    let q = manual::<S>(4, millis());
    q.offer_key(1).unwrap();
    head(&q).nack_after(Duration::MAX); // parked until close
    assert_eq!(q.stats().delayed, 1);
    // Other keys come and go through the schedule meanwhile.
    q.offer_key(2).unwrap();
    head(&q).nack_after(ms(1));
    q.advance_clock(ms(1));
    head(&q).nack_after(ms(1)); // key 2 again: the schedule is not empty
    q.advance_clock(ms(1));
    assert_eq!(
        drain_acked(&q),
        [(2, 3)],
        "key 2 is due although key 1 waits"
    );
    q.advance_clock(FOREVER);
    assert_eq!(q.stats().delayed, 1, "key 1 waits on");
    q.close();
    assert_eq!(drain_acked(&q), [(1, 2)]);
    assert_eq!(q.try_take(), Err(TryTakeError::Closed));
    assert_no_leak(&q);
    // The manual clock saturates, never wraps: at its end, a short delay
    // is due at once.
    let q = manual::<S>(4, millis());
    q.advance_clock(Duration::MAX);
    q.advance_clock(Duration::MAX);
    q.offer_key(3).unwrap();
    head(&q).nack_after(ms(1));
    assert_eq!(q.stats().next_due, None);
    assert_eq!(drain_acked(&q), [(3, 2)]);
    assert_no_leak(&q);
}

// ----- close -----

fn close_releases_delayed_keys_at_once<S: KeyStore<u32> + Default>() {
    let q = real::<S>(4, Backoff::exponential(FOREVER, FOREVER));
    q.offer_key(1).unwrap();
    q.offer_key(2).unwrap();
    head(&q).nack_after(FOREVER);
    assert_eq!(head(&q).nack_backoff(), FOREVER);
    assert_eq!(q.stats().delayed, 2);
    assert!(q.try_take().is_err());
    assert!(q.close());
    let stats = q.stats();
    assert_eq!((stats.delayed, stats.next_due, stats.queued), (0, None, 2));
    // A blocking take returns them now, not in 1000 s.
    let first = q.take_leased_timeout(PATIENCE).expect("released at close");
    assert_eq!(key_attempt(&first), (1, 2));
    first.ack();
    assert_eq!(drain_acked(&q), [(2, 2)]);
    assert_eq!(q.try_take(), Err(TryTakeError::Closed));
    assert_no_leak(&q);
}

fn a_taker_waiting_for_a_delayed_key_wakes_at_close<S: KeyStore<u32> + Default>()
where
    Q<S>: Sync,
{
    let _watchdog = Watchdog::new(Duration::from_secs(60), "a taker waiting at close");
    for q in [real::<S>(4, millis()), manual::<S>(4, millis())] {
        q.offer_key(1).unwrap();
        head(&q).nack_after(FOREVER);
        thread::scope(|s| {
            let (tx, rx) = bounded(1);
            let q = &q;
            s.spawn(move || {
                let lease = q.take_leased().unwrap();
                tx.send(key_attempt(&lease)).unwrap();
                lease.ack();
            });
            thread::sleep(SETTLE);
            assert!(rx.try_recv().is_err(), "the taker waits");
            q.close();
            assert_eq!(rx.recv_timeout(PATIENCE), Ok((1, 2)));
        });
        assert_eq!(q.take(), Err(coalescing_queue::TakeError));
        assert_no_leak(&q);
    }
}

fn a_delayed_nack_after_close_queues_at_once<S: KeyStore<u32> + Default>() {
    let q = real::<S>(8, Backoff::exponential(FOREVER, FOREVER));
    for key in 1..=6 {
        q.offer_key(key).unwrap();
    }
    let (one, two) = (head(&q), head(&q));
    let batch = q.take_batch_leased(2, Duration::ZERO); // 3, 4
    let backoff_batch = q.take_batch_leased(2, Duration::ZERO); // 5, 6
    q.close();
    one.nack_after(FOREVER);
    assert_eq!(
        two.nack_backoff(),
        FOREVER,
        "the delay the backoff gave, though none is waited"
    );
    batch.nack_after(FOREVER);
    backoff_batch.nack_backoff();
    let stats = q.stats();
    assert_eq!((stats.delayed, stats.queued, stats.in_flight), (0, 6, 0));
    assert_eq!((stats.delayed_nacks, stats.nacked), (0, 6));
    assert_eq!(
        drain_acked(&q),
        [(1, 2), (2, 2), (3, 2), (4, 2), (5, 2), (6, 2)]
    );
    assert_eq!(q.try_take(), Err(TryTakeError::Closed));
    assert_no_leak(&q);
}

fn close_and_wait_drains_delayed_keys_without_waiting_out_the_delay<S: KeyStore<u32> + Default>()
where
    Q<S>: Sync,
{
    let _watchdog = Watchdog::new(Duration::from_secs(60), "close_and_wait with delays");
    // A taker acks what close releases: the drain completes.
    let q = real::<S>(4, millis());
    q.offer_key(1).unwrap();
    head(&q).nack_after(FOREVER);
    thread::scope(|s| {
        let taker = s.spawn(|| {
            let lease = q.take_leased().unwrap();
            let taken = key_attempt(&lease);
            lease.ack();
            taken
        });
        thread::sleep(SETTLE);
        assert!(q.close_and_wait(Duration::from_secs(30)), "drained");
        assert_eq!(taker.join().unwrap(), (1, 2));
    });
    assert_no_leak(&q);
    // Nobody takes: the key is queued, not drained, until taken and acked.
    let q = real::<S>(4, millis());
    q.offer_key(1).unwrap();
    head(&q).nack_after(FOREVER);
    assert!(!q.close_and_wait(ms(20)));
    assert_eq!(q.stats().delayed, 0, "released by the close");
    assert_eq!(drain_acked(&q), [(1, 2)]);
    assert!(q.close_and_wait(Duration::ZERO));
    assert_no_leak(&q);
}

// ----- capacity, panics, stats -----

fn a_delayed_key_holds_its_slot<S: KeyStore<u32> + Default>() {
    let q = manual::<S>(2, millis());
    q.offer_key(1).unwrap();
    q.offer_key(2).unwrap();
    head(&q).nack_after(ms(10));
    assert!(q.is_full());
    assert_eq!((q.claimed_slots(), q.in_flight(), q.len()), (2, 0, 1));
    assert_eq!(q.try_offer_key(3), Err(TryOfferError::Full(3)));
    assert!(q.try_offer("item".to_string()).unwrap_err().is_full());
    assert_eq!(
        q.offer_key_timeout(3, ms(10)),
        Err(OfferTimeoutError::Timeout(3))
    );
    assert_eq!(
        q.try_offer_key(1),
        Ok(Offered::Coalesced),
        "the delayed key coalesces even when full"
    );
    assert_eq!(q.try_take(), Ok(Entry::Key(2)));
    assert!(!q.is_full(), "only the delayed key holds a slot");
    assert_eq!(q.try_offer_key(3), Ok(Offered::Enqueued));
    assert!(q.is_full());
    assert_eq!(q.stats().full_rejections, 3);
    q.advance_clock(ms(10));
    assert_eq!(drain(&q), [3, 1]);
    assert_no_leak(&q);
}

fn delayed_nacks_without_retries_panic_and_requeue<S: KeyStore<u32> + Default>() {
    let q = without_retries::<S>(4);
    q.offer_key(1).unwrap();
    let expect_retries = |message: String| {
        assert!(message.contains("Builder::retries"), "{message}");
    };
    let first = head(&q);
    expect_retries(panic_message(catch_unwind(AssertUnwindSafe(|| {
        first.nack_after(ms(1))
    }))));
    assert_eq!(q.len(), 1, "the lease was nacked as the panic unwound");
    let second = head(&q);
    assert_eq!(second.attempt(), 2);
    expect_retries(panic_message(catch_unwind(AssertUnwindSafe(|| {
        second.nack_backoff();
    }))));
    let batch = q.take_batch_leased(4, Duration::ZERO);
    assert_eq!(batch.attempts().collect::<Vec<_>>(), [3]);
    expect_retries(panic_message(catch_unwind(AssertUnwindSafe(|| {
        batch.nack_after(ms(1))
    }))));
    let batch = q.take_batch_leased(4, Duration::ZERO);
    assert_eq!(batch.attempts().collect::<Vec<_>>(), [4]);
    expect_retries(panic_message(catch_unwind(AssertUnwindSafe(|| {
        batch.nack_backoff()
    }))));
    expect_retries(panic_message(catch_unwind(AssertUnwindSafe(|| {
        q.advance_clock(ms(1))
    }))));
    expect_retries(panic_message(catch_unwind(AssertUnwindSafe(|| {
        let _ = q.try_offer_key_after(9, ms(1));
    }))));
    assert!(!q.is_pending(&9), "a refused delayed offer leaves nothing");
    let stats = q.stats();
    assert_eq!((stats.nacked, stats.delayed_nacks), (4, 0));
    assert_eq!(drain_acked(&q), [(1, 5)]);
    assert_no_leak(&q);
    // A real clock cannot be advanced by hand.
    let q = real::<S>(4, millis());
    let message = panic_message(catch_unwind(AssertUnwindSafe(|| q.advance_clock(ms(1)))));
    assert!(message.contains("manual_clock"), "{message}");
}

fn stats_count_delayed_nacks_and_tell_the_next_due_time<S: KeyStore<u32> + Default>() {
    let q = manual::<S>(8, Backoff::exponential(ms(4), ms(100)));
    let stats = q.stats();
    assert_eq!(
        (stats.delayed_nacks, stats.delayed, stats.next_due),
        (0, 0, None)
    );
    for key in 1..=5 {
        q.offer_key(key).unwrap();
    }
    head(&q).nack_after(ms(10)); // key 1
    let stats = q.stats();
    assert_eq!(
        (stats.delayed_nacks, stats.nacked, stats.delayed),
        (1, 1, 1)
    );
    assert_eq!(
        (stats.next_due, stats.queued, stats.in_flight),
        (Some(ms(10)), 4, 0)
    );
    assert_eq!(stats.oldest_lease_age, None, "a delayed key is not leased");
    assert_eq!(head(&q).nack_backoff(), ms(4)); // key 2: the earliest now
    let stats = q.stats();
    assert_eq!(
        (stats.delayed_nacks, stats.delayed, stats.next_due),
        (2, 2, Some(ms(4)))
    );
    q.take_batch_leased(2, Duration::ZERO).nack_after(ms(20)); // keys 3, 4
    head(&q).nack(); // key 5: a plain nack
    let stats = q.stats();
    assert_eq!(
        (stats.delayed_nacks, stats.nacked, stats.delayed),
        (4, 5, 4)
    );
    assert_eq!((stats.next_due, stats.queued), (Some(ms(4)), 1));
    q.advance_clock(ms(4));
    let stats = q.stats();
    assert_eq!(
        (stats.delayed, stats.next_due, stats.queued),
        (3, Some(ms(6)), 2)
    );
    q.advance_clock(ms(6));
    let stats = q.stats();
    assert_eq!(
        (stats.delayed, stats.next_due, stats.queued),
        (2, Some(ms(10)), 3)
    );
    q.advance_clock(ms(10));
    let stats = q.stats();
    assert_eq!((stats.delayed, stats.next_due, stats.queued), (0, None, 5));
    assert_eq!(stats.delayed_nacks, 4, "a counter: it does not go down");
    assert_eq!(drain(&q), [5, 2, 1, 3, 4]);
    assert_no_leak(&q);
}

// ----- waking takers -----

fn a_blocked_taker_wakes_when_the_clock_is_advanced<S: KeyStore<u32> + Default>()
where
    Q<S>: Sync,
{
    let _watchdog = Watchdog::new(Duration::from_secs(60), "a taker on the manual clock");
    let q = manual::<S>(4, millis());
    q.offer_key(1).unwrap();
    head(&q).nack_after(ms(10));
    thread::scope(|s| {
        let (tx, rx) = bounded(1);
        let q = &q;
        s.spawn(move || {
            let lease = q.take_leased().unwrap();
            tx.send(key_attempt(&lease)).unwrap();
            lease.ack();
        });
        thread::sleep(SETTLE);
        assert!(rx.try_recv().is_err(), "not due: the taker waits");
        q.advance_clock(ms(9));
        thread::sleep(SETTLE);
        assert!(rx.try_recv().is_err(), "still 1 ms early");
        q.advance_clock(ms(1));
        assert_eq!(rx.recv_timeout(PATIENCE), Ok((1, 2)));
    });
    assert_no_leak(&q);
}

fn a_lingering_batch_takes_a_key_that_falls_due<S: KeyStore<u32> + Default>()
where
    Q<S>: Sync,
{
    let _watchdog = Watchdog::new(Duration::from_secs(60), "a lingering batch, manual clock");
    let q = manual::<S>(4, millis());
    q.offer_key(1).unwrap();
    head(&q).nack_after(ms(10));
    q.offer_key(2).unwrap();
    thread::scope(|s| {
        let (tx, rx) = bounded(1);
        let q = &q;
        s.spawn(move || {
            // Gets key 2 at once, then lingers for up to a minute.
            let batch = q.take_batch_leased(2, Duration::from_secs(60));
            tx.send((
                batch.entries().to_vec(),
                batch.attempts().collect::<Vec<_>>(),
            ))
            .unwrap();
            batch.ack();
        });
        thread::sleep(SETTLE);
        assert!(rx.try_recv().is_err(), "the batch lingers");
        q.advance_clock(ms(10));
        let (entries, attempts) = rx.recv_timeout(PATIENCE).expect("woke when due");
        assert_eq!(entries, [Entry::Key(2), Entry::Key(1)]);
        assert_eq!(attempts, [1, 2]);
    });
    assert_no_leak(&q);
}

fn real_clock_take_wakes_when_due_and_not_before<S: KeyStore<u32> + Default>()
where
    Q<S>: Sync,
{
    let _watchdog = Watchdog::new(Duration::from_secs(60), "real-clock takes");
    let q = real::<S>(4, millis());
    q.offer_key(1).unwrap();
    // Taken in this thread: sleeps until due.
    let nacked = Instant::now();
    head(&q).nack_after(DELAY);
    let lease = q.take_leased().unwrap();
    assert!(nacked.elapsed() >= DELAY, "taken before due");
    assert_eq!(lease.attempt(), 2);
    // Taken by a thread that was waiting before the nack.
    thread::scope(|s| {
        let (tx, rx) = bounded(1);
        let q = &q;
        s.spawn(move || {
            let lease = q.take_leased().unwrap();
            let at = Instant::now();
            tx.send((key_attempt(&lease), at)).unwrap();
            lease.ack();
        });
        thread::sleep(SETTLE);
        let nacked = Instant::now();
        lease.nack_after(DELAY);
        let (taken, at) = rx.recv_timeout(PATIENCE).expect("the waiting taker woke");
        assert_eq!(taken, (1, 3));
        assert!(
            at - nacked >= DELAY,
            "taken {:?} after the nack",
            at - nacked
        );
    });
    // A plain take, and a deadline take, wait as well.
    q.offer_key(1).unwrap();
    let nacked = Instant::now();
    head(&q).nack_after(DELAY);
    assert_eq!(q.take(), Ok(Entry::Key(1)));
    assert!(nacked.elapsed() >= DELAY);
    q.offer_key(1).unwrap();
    let nacked = Instant::now();
    head(&q).nack_after(DELAY);
    assert_eq!(
        q.take_deadline(Instant::now() + PATIENCE),
        Ok(Entry::Key(1))
    );
    assert!(nacked.elapsed() >= DELAY);
    assert_no_leak(&q);
}

fn real_clock_timeouts_shorter_than_the_delay_time_out<S: KeyStore<u32> + Default>() {
    let q = real::<S>(4, millis());
    q.offer_key(1).unwrap();
    head(&q).nack_after(FOREVER);
    assert_eq!(q.take_timeout(ms(20)), Err(TakeTimeoutError::Timeout));
    assert_eq!(
        q.take_leased_timeout(ms(20)).err(),
        Some(TakeTimeoutError::Timeout)
    );
    assert_eq!(
        q.take_deadline(Instant::now() + ms(20)),
        Err(TakeTimeoutError::Timeout)
    );
    assert!(q.take_batch_leased_timeout(4, ms(5), ms(20)).is_empty());
    assert!(q.is_pending(&1) && q.stats().delayed == 1);
    // A timeout longer than the delay gets the key once due.
    q.offer_key(2).unwrap();
    let nacked = Instant::now();
    head(&q).nack_after(DELAY);
    let lease = q
        .take_leased_timeout(PATIENCE)
        .expect("due within the timeout");
    assert!(nacked.elapsed() >= DELAY);
    assert_eq!(key_attempt(&lease), (2, 2));
    lease.ack();
    q.close();
    assert_eq!(drain_acked(&q), [(1, 2)]);
    assert_no_leak(&q);
}

fn real_clock_lingering_batch_wakes_when_due<S: KeyStore<u32> + Default>() {
    let linger = Duration::from_secs(30);
    let q = real::<S>(4, millis());
    q.offer_key(1).unwrap();
    let nacked = Instant::now();
    head(&q).nack_after(DELAY);
    q.offer_key(2).unwrap();
    let batch = q.take_batch_leased(2, linger);
    let elapsed = nacked.elapsed();
    assert_eq!(batch.entries(), [Entry::Key(2), Entry::Key(1)]);
    assert_eq!(batch.attempts().collect::<Vec<_>>(), [1, 2]);
    assert!(elapsed >= DELAY, "key 1 taken before due");
    // Had the linger not woken at the due time, it would have taken key 1
    // only at its end.
    assert!(elapsed < linger / 2, "woke only after {elapsed:?}");
    batch.ack();
    // A batch's first wait also ends when a delayed key falls due.
    let nacked = Instant::now();
    lease_after_offer(&q, 3).nack_after(DELAY);
    let batch = q.take_batch_leased(4, Duration::ZERO);
    assert!(nacked.elapsed() >= DELAY);
    assert_eq!(batch.entries(), [Entry::Key(3)]);
    batch.ack();
    assert_no_leak(&q);
}

fn lease_after_offer<S: KeyStore<u32>>(q: &Q<S>, key: u32) -> Lease<'_, u32, String, S> {
    q.offer_key(key).unwrap();
    head(q)
}

/// Two takers wait, the first with a timeout shorter than the delay: the
/// second still takes the key when it falls due (the delayed nack must
/// reach every waiting taker, not only one that then times out).
fn every_waiting_taker_learns_the_due_time<S: KeyStore<u32> + Default>()
where
    Q<S>: Sync,
{
    let _watchdog = Watchdog::new(Duration::from_secs(60), "two waiting takers");
    let q = real::<S>(4, millis());
    let held = lease_after_offer(&q, 1);
    thread::scope(|s| {
        let q = &q;
        let hasty = s.spawn(move || q.take_leased_timeout(ms(200)).map(|lease| lease.attempt()));
        thread::sleep(SETTLE);
        let (tx, rx) = bounded(1);
        s.spawn(move || {
            let lease = q.take_leased().unwrap();
            tx.send(key_attempt(&lease)).unwrap();
            lease.ack();
        });
        thread::sleep(SETTLE);
        held.nack_after(ms(300));
        assert_eq!(hasty.join().unwrap(), Err(TakeTimeoutError::Timeout));
        let taken = rx.recv_timeout(PATIENCE);
        if taken.is_err() {
            q.close(); // let the taker go before the scope joins it
        }
        assert_eq!(
            taken,
            Ok((1, 2)),
            "the patient taker slept past the due time"
        );
    });
    assert_no_leak(&q);
}

fn an_owned_lease_nacked_with_a_delay_in_another_thread<S>()
where
    S: KeyStore<u32> + Default + Send + Sync + 'static,
    Q<S>: Send + Sync,
{
    let q = Arc::new(manual::<S>(4, millis()));
    q.offer_key(1).unwrap();
    let lease = q.try_take_leased_owned().unwrap();
    thread::spawn(move || {
        assert_eq!(lease.attempt(), 1);
        assert_eq!(lease.nack_backoff(), ms(1));
    })
    .join()
    .unwrap();
    assert!(q.try_take().is_err());
    q.advance_clock(ms(1));
    let lease = q.try_take_leased_owned().unwrap();
    assert_eq!((lease.key(), lease.attempt()), (Some(&1), 2));
    lease.ack();
    assert_no_leak(&q);
}

// ----- items -----

/// An item that counts its drops.
#[derive(Debug)]
struct Tracked(Arc<AtomicUsize>);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn delayed_items_are_delivered_and_dropped_once<S: KeyStore<u32> + Default>() {
    let tracked = |drops: &Arc<AtomicUsize>| {
        let q = Builder::<u32, Tracked, S>::new()
            .capacity(4)
            .retries(millis())
            .manual_clock()
            .build();
        for _ in 0..3 {
            q.offer(Tracked(drops.clone())).unwrap();
        }
        for _ in 0..3 {
            q.try_take_leased().unwrap().nack_after(FOREVER);
        }
        assert_eq!(q.stats().delayed, 3);
        q
    };
    // Dropped with the queue while delayed.
    let drops = Arc::new(AtomicUsize::new(0));
    let q = tracked(&drops);
    assert_eq!(drops.load(Ordering::SeqCst), 0, "delayed, not dropped");
    drop(q);
    assert_eq!(drops.load(Ordering::SeqCst), 3, "each dropped once");
    // Released at close, taken and dropped by the taker.
    let drops = Arc::new(AtomicUsize::new(0));
    let q = tracked(&drops);
    q.close();
    let mut taken = 0;
    while let Ok(entry) = q.try_take() {
        assert!(matches!(entry, Entry::Item(_)));
        taken += 1;
    }
    assert_eq!((taken, drops.load(Ordering::SeqCst)), (3, 3));
    assert_eq!(q.claimed_slots(), 0);
    drop(q);
    assert_eq!(drops.load(Ordering::SeqCst), 3, "not dropped twice");
}

// ----- offers with a delay -----

fn offer_key_after_delays_a_new_key<S: KeyStore<u32> + Default>() {
    let q = manual::<S>(4, millis());
    assert_eq!(q.try_offer_key_after(1, ms(10)), Ok(Offered::Enqueued));
    assert_eq!(q.offer_key_after(2, ms(5)), Ok(Offered::Enqueued));
    assert!(q.is_pending(&1) && q.is_pending(&2));
    assert_eq!((q.claimed_slots(), q.len()), (2, 0));
    let stats = q.stats();
    assert_eq!(
        (stats.enqueued, stats.delayed, stats.delayed_nacks),
        (2, 2, 0)
    );
    assert_eq!(stats.next_due, Some(ms(5)));
    assert!(q.try_take().is_err());
    q.advance_clock(ms(5));
    assert_eq!(
        drain_acked(&q),
        [(2, 1)],
        "a delayed offer is a first delivery"
    );
    q.advance_clock(ms(5));
    assert_eq!(drain_acked(&q), [(1, 1)]);
    assert_no_leak(&q);
}

fn offer_key_after_coalesces_into_a_pending_copy_and_keeps_its_place<S: KeyStore<u32> + Default>() {
    let q = manual::<S>(4, millis());
    // Queued: stays queued, no delay added.
    q.offer_key(1).unwrap();
    assert_eq!(q.try_offer_key_after(1, FOREVER), Ok(Offered::Coalesced));
    assert_eq!(drain(&q), [1]);
    // Delayed: a later delay does not lengthen it, an earlier one does not
    // shorten it.
    q.try_offer_key_after(1, ms(10)).unwrap();
    assert_eq!(q.try_offer_key_after(1, ms(20)), Ok(Offered::Coalesced));
    assert_eq!(q.try_offer_key_after(1, ms(1)), Ok(Offered::Coalesced));
    q.advance_clock(ms(9));
    assert!(q.try_take().is_err(), "not shortened");
    q.advance_clock(ms(1));
    assert_eq!(drain(&q), [1], "not lengthened");
    // In flight: the offer marks it dirty, and the ack queues it at once.
    q.offer_key(1).unwrap();
    let leased = head(&q);
    assert_eq!(q.try_offer_key_after(1, FOREVER), Ok(Offered::Coalesced));
    leased.ack();
    assert_eq!(drain_acked(&q), [(1, 1)]);
    assert_no_leak(&q);
}

fn offer_key_after_is_refused_when_full_or_closed<S: KeyStore<u32> + Default>() {
    let q = manual::<S>(1, millis());
    q.try_offer_key_after(1, ms(10)).unwrap();
    assert!(q.is_full(), "a delayed offer holds its slot");
    assert_eq!(q.try_offer_key_after(2, ms(1)), Err(TryOfferError::Full(2)));
    assert_eq!(q.try_offer_key(2), Err(TryOfferError::Full(2)));
    q.close();
    assert_eq!(
        q.try_offer_key_after(3, ms(1)),
        Err(TryOfferError::Closed(3))
    );
    assert_eq!(q.offer_key_after(3, ms(1)).unwrap_err().0, 3);
    assert_eq!(drain_acked(&q), [(1, 1)], "released at close");
    assert_no_leak(&q);
}

// ----- everything together -----

/// A deterministic run of offers, batches and every kind of lease end on
/// the manual clock, checked against a model of which keys are pending
/// and at which attempt; then close, drain, and nothing left.
fn no_leak_after_a_mixed_run<S: KeyStore<u32> + Default>() {
    const KEYS: u32 = 48;
    let q = manual::<S>(64, Backoff::exponential(ms(1), ms(16)));
    // Pending keys and the attempts of their copy so far.
    let mut pending: HashMap<u32, u32> = HashMap::new();
    for key in 0..KEYS {
        assert_eq!(q.try_offer_key(key), Ok(Offered::Enqueued));
        pending.insert(key, 0);
    }
    let mut acks = 0;
    for round in 0..40u32 {
        for lease in q.take_batch_leased(16, Duration::ZERO).into_leases() {
            let (key, attempt) = key_attempt(&lease);
            let before = pending.get_mut(&key).expect("only pending keys are taken");
            assert_eq!(attempt, *before + 1, "key {key} in round {round}");
            *before = attempt;
            match (key + round) % 5 {
                0 => {
                    lease.ack();
                    pending.remove(&key);
                    acks += 1;
                }
                1 => {
                    lease.nack_backoff();
                }
                2 => lease.nack_after(ms(u64::from(key % 7))),
                3 => lease.nack(),
                _ => drop(lease),
            }
        }
        for key in [round % KEYS, (round * 7 + 3) % KEYS] {
            let offered = q.try_offer_key(key).unwrap();
            if let std::collections::hash_map::Entry::Vacant(new) = pending.entry(key) {
                assert_eq!(offered, Offered::Enqueued, "key {key}");
                new.insert(0);
            } else {
                assert_eq!(offered, Offered::Coalesced, "key {key}");
            }
        }
        assert_eq!(q.pending_keys(), pending.len());
        assert_eq!(q.claimed_slots(), pending.len());
        q.advance_clock(ms(3));
    }
    assert!(acks > 0 && q.stats().delayed_nacks > 0);
    q.close();
    while let Ok(lease) = q.try_take_leased() {
        let (key, attempt) = key_attempt(&lease);
        assert_eq!(Some(attempt), pending.remove(&key).map(|a| a + 1));
        lease.ack();
    }
    assert!(pending.is_empty(), "never delivered: {pending:?}");
    assert_eq!(q.try_take(), Err(TryTakeError::Closed));
    assert_no_leak(&q);
}

// ----- keys with values -----

type ValuedKey = (u32, u64);

fn add(pending: &mut u64, newer: u64) {
    *pending += newer;
}

fn valued_offers_during_a_delay_merge_into_the_value<S>()
where
    S: Default,
    Valued<S>: KeyStore<ValuedKey>,
    Valued<S, fn(&mut u64, u64)>: KeyStore<ValuedKey>,
{
    // Latest: the last value offered wins, also over the leased one.
    let q = Builder::<ValuedKey, (), Valued<S>>::new()
        .capacity(4)
        .retries(millis())
        .manual_clock()
        .build();
    q.offer_key((1, 10)).unwrap();
    let leased = q.try_take_leased().unwrap();
    assert_eq!(leased.entry(), &Entry::Key((1, 10)));
    assert_eq!(q.try_offer_key((1, 20)), Ok(Offered::Coalesced)); // in flight
    leased.nack_after(ms(5));
    assert_eq!(q.try_offer_key((1, 30)), Ok(Offered::Coalesced)); // delayed
    assert_eq!(q.try_offer_key((1, 40)), Ok(Offered::Coalesced));
    assert!(q.try_take().is_err());
    q.advance_clock(ms(5));
    let due = q.try_take_leased().unwrap();
    assert_eq!((due.entry(), due.attempt()), (&Entry::Key((1, 40)), 2));
    due.ack();
    assert!(!q.is_pending(&(1, 0)));
    assert!(
        q.try_take().is_err(),
        "the in-flight arrival was merged, not requeued"
    );

    // An adding merge: the leased value, what arrived in flight, and every
    // offer during the delay add up.
    let q = Builder::<ValuedKey, (), Valued<S>>::new()
        .capacity(4)
        .retries(millis())
        .manual_clock()
        .merge(add as fn(&mut u64, u64))
        .build();
    q.offer_key((1, 10)).unwrap();
    q.offer_key((2, 100)).unwrap();
    let leased = q.try_take_leased().unwrap();
    q.try_offer_key((1, 1)).unwrap(); // in flight
    assert_eq!(leased.nack_backoff(), ms(1)); // queued value 11, delayed
    q.try_offer_key((1, 2)).unwrap();
    q.try_offer_key((1, 3)).unwrap();
    q.try_offer_key((2, 5)).unwrap(); // a queued key merges as before
    assert_eq!(q.stats().delayed, 1);
    assert_eq!(q.try_take(), Ok(Entry::Key((2, 105))));
    q.advance_clock(ms(1));
    let due = q.try_take_leased().unwrap();
    assert_eq!((due.entry(), due.attempt()), (&Entry::Key((1, 16)), 2));
    // Nacked with a delay again: the value goes on adding up.
    due.nack_after(ms(2));
    q.try_offer_key((1, 4)).unwrap();
    q.advance_clock(ms(2));
    assert_eq!(q.try_take(), Ok(Entry::Key((1, 20))));
    // A new key offered with a delay merges what is offered meanwhile.
    assert_eq!(q.try_offer_key_after((3, 1), ms(4)), Ok(Offered::Enqueued));
    q.try_offer_key((3, 2)).unwrap();
    assert_eq!(
        q.try_offer_key_after((3, 3), ms(100)),
        Ok(Offered::Coalesced)
    );
    assert!(q.try_take().is_err());
    q.advance_clock(ms(4));
    assert_eq!(q.try_take(), Ok(Entry::Key((3, 6))));
    assert_eq!((q.pending_keys(), q.claimed_slots()), (0, 0));
}

// ----- Backoff and the builder -----

#[test]
fn backoff_doubles_caps_and_never_overflows() {
    let default = Backoff::default();
    assert_eq!(default, Backoff::exponential(ms(5), FOREVER));
    assert_eq!(
        (default.base(), default.max(), default.jitter()),
        (ms(5), FOREVER, 0.0)
    );
    assert_eq!(default.delay(0), ms(5), "attempt 0 counts as 1");
    assert_eq!(default.delay(2), ms(10));
    assert_eq!(default.delay(u32::MAX), FOREVER);
    let backoff = millis();
    assert_eq!(backoff.delay(10), ms(512));
    assert_eq!(backoff.delay(11), Duration::from_secs(1), "1.024 s, capped");
    // Past 64 bits of nanoseconds: exact, then capped at Duration::MAX.
    let unbounded = Backoff::exponential(Duration::from_nanos(1), Duration::MAX);
    let two_to = |n: u32| {
        let nanos = 1u128 << n;
        Duration::new(
            (nanos / 1_000_000_000) as u64,
            (nanos % 1_000_000_000) as u32,
        )
    };
    assert_eq!(unbounded.delay(65), two_to(64));
    assert_eq!(unbounded.delay(94), two_to(93));
    assert_eq!(
        unbounded.delay(95),
        Duration::MAX,
        "2^94 ns > Duration::MAX"
    );
    assert_eq!(unbounded.delay(u32::MAX), Duration::MAX);
    let huge = Backoff::exponential(Duration::MAX, Duration::MAX);
    assert_eq!(huge.delay(2), Duration::MAX);
    let zero = Backoff::exponential(Duration::ZERO, FOREVER);
    assert_eq!(zero.delay(u32::MAX), Duration::ZERO);
    let above = Backoff::exponential(Duration::from_secs(5), Duration::from_secs(1));
    assert_eq!(
        above.delay(1),
        Duration::from_secs(1),
        "a base above max is max"
    );
    // Jitter: clamped, NaN is none, `delay` never jittered.
    assert_eq!(default.with_jitter(f64::NAN).jitter(), 0.0);
    assert_eq!(default.with_jitter(-1.0).jitter(), 0.0);
    assert_eq!(default.with_jitter(7.0).jitter(), 1.0);
    assert_eq!(default.with_jitter(0.5).delay(3), ms(20));
    assert_ne!(default.with_jitter(0.5), default);
}

#[test]
fn jitter_near_duration_max_stays_below_the_cap() {
    for jitter in [1e-30, 1e-3, 0.5] {
        let q = CoalescingQueue::<u32, String>::builder()
            .capacity(4)
            .retries(Backoff::exponential(Duration::MAX, Duration::MAX).with_jitter(jitter))
            .manual_clock()
            .build();
        q.offer_key(1).unwrap();
        let batch = q.take_batch_leased(4, Duration::ZERO);
        batch.nack_backoff();
        let lease = lease_after_offer(&q, 2);
        let delay = lease.nack_backoff();
        assert!(delay <= Duration::MAX && delay >= Duration::MAX.mul_f64(0.49));
        assert_eq!(q.stats().delayed, 2);
        q.close();
        assert_eq!(drain(&q), [1, 2]);
        assert_eq!(q.claimed_slots(), 0);
    }
}

#[test]
fn manual_clock_and_retries_combine_in_either_order() {
    let backoff = Backoff::exponential(ms(3), ms(30));
    let orders = [
        CoalescingQueue::<u32, String>::builder()
            .capacity(4)
            .retries(backoff)
            .manual_clock()
            .build(),
        CoalescingQueue::<u32, String>::builder()
            .capacity(4)
            .manual_clock()
            .retries(backoff)
            .build(),
    ];
    for q in orders {
        q.offer_key(1).unwrap();
        assert_eq!(head(&q).nack_backoff(), ms(3), "the backoff given");
        q.advance_clock(ms(3)); // a manual clock: does not panic
        assert_eq!(drain_acked(&q), [(1, 2)]);
    }
    let debug = format!(
        "{:?}",
        CoalescingQueue::<u32, String>::builder().retries(backoff)
    );
    assert!(
        debug.contains("Backoff") && debug.contains("3ms"),
        "{debug}"
    );
}

// ----- async -----

#[tokio::test]
async fn async_takes_wake_when_due() {
    let q = real::<DefaultHashBuilder>(4, millis());
    q.offer_key(1).unwrap();
    let nacked = Instant::now();
    head(&q).nack_after(DELAY);
    let lease = tokio::time::timeout(PATIENCE, q.take_leased_async())
        .await
        .expect("woke when due")
        .unwrap();
    assert!(nacked.elapsed() >= DELAY, "taken before due");
    assert_eq!(key_attempt(&lease), (1, 2));
    let nacked = Instant::now();
    lease.nack_after(DELAY);
    let entry = tokio::time::timeout(PATIENCE, q.take_async())
        .await
        .expect("woke when due")
        .unwrap();
    assert!(nacked.elapsed() >= DELAY, "taken before due");
    assert_eq!(entry, Entry::Key(1));
    // A lingering async batch takes a key that falls due meanwhile.
    q.offer_key(1).unwrap();
    let nacked = Instant::now();
    head(&q).nack_after(DELAY);
    q.offer_key(2).unwrap();
    let linger = Duration::from_secs(30);
    let batch = tokio::time::timeout(linger / 2, q.take_batch_leased_async(2, linger))
        .await
        .expect("the linger woke when key 1 fell due");
    assert!(nacked.elapsed() >= DELAY);
    assert_eq!(batch.entries(), [Entry::Key(2), Entry::Key(1)]);
    assert_eq!(batch.attempts().collect::<Vec<_>>(), [1, 2]);
    batch.ack();
    assert_no_leak(&q);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_taker_waiting_before_the_nack_wakes_when_due() {
    let q = Arc::new(real::<coalescing_queue::Compact>(4, millis()));
    q.offer_key(1).unwrap();
    let held = q.try_take_leased_owned().unwrap();
    let taker = tokio::spawn({
        let q = q.clone();
        async move {
            let lease = q.take_leased_owned_async().await.unwrap();
            (Instant::now(), lease)
        }
    });
    tokio::time::sleep(SETTLE).await;
    assert!(!taker.is_finished(), "nothing is queued yet");
    let nacked = Instant::now();
    held.nack_after(DELAY);
    let (at, lease) = tokio::time::timeout(PATIENCE, taker)
        .await
        .expect("the waiting task woke")
        .unwrap();
    assert!(
        at - nacked >= DELAY,
        "taken {:?} after the nack",
        at - nacked
    );
    assert_eq!((lease.key(), lease.attempt()), (Some(&1), 2));
    lease.ack();
    assert_no_leak(&q);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_taker_wakes_when_the_clock_is_advanced() {
    let q = Arc::new(manual::<DefaultHashBuilder>(4, millis()));
    q.offer_key(1).unwrap();
    head(&q).nack_after(ms(10));
    let taker = tokio::spawn({
        let q = q.clone();
        async move { q.take_async().await }
    });
    tokio::time::sleep(SETTLE).await;
    assert!(!taker.is_finished(), "the manual clock has not moved");
    q.advance_clock(ms(10));
    let taken = tokio::time::timeout(PATIENCE, taker)
        .await
        .expect("woke at the advance")
        .unwrap();
    assert_eq!(taken, Ok(Entry::Key(1)));
    assert_no_leak(&q);
}
