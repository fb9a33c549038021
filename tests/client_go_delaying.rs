//! client-go's workqueue tests of delays and rate limiting, ported:
//! `delaying_queue_test.go` (TestSimpleQueue, TestDeduping,
//! TestAddTwoFireEarly, TestCopyShifting), `rate_limiting_queue_test.go`
//! (TestRateLimitingQueue) and `default_rate_limiters_test.go`
//! (TestItemExponentialFailureRateLimiter and its OverFlow test).
//!
//! The mapping:
//! * client-go's fake clock is the queue's manual clock: `Step(d)` is
//!   `advance_clock(d)`. Every call here is synchronous, so
//!   `waitForWaitingQueueToFill` has nothing to wait for, and
//!   `waitForAdded(q, n)` is `len() == n` (`len` queues what is due).
//! * `Get` is a leased take, `Done` its ack, `Len` is `len`.
//! * `AddAfter(item, d)` is run two ways, each test once per way:
//!   [`AddAfter::Offer`], `try_offer_key_after(item, d)` (the queue's own
//!   `AddAfter`); and [`AddAfter::Nack`], offering the key, taking it
//!   leased and nacking it with `nack_after(d)`, so that its first delivery
//!   counts as attempt 1. For a key already pending, both are a plain
//!   coalesced offer: a pending key's delay is never changed.
//! * `AddRateLimited(item)` is `nack_backoff` on the item's lease,
//!   `NumRequeues(item)` is the next lease's `attempt() - 1`, and
//!   `Forget(item)` is an ack (a new offer then counts from attempt 1).
//!
//! What does not map (each said where it arises): client-go's second
//! `AddAfter` of a waiting item with an earlier time moves it earlier,
//! while here a pending key's delay is never shortened; and an `AddAfter`
//! of an item being processed queues it after its delay, while here the
//! offer marks the in-flight key and its `Done` (ack) queues it at once.

use coalescing_queue::{Backoff, CoalescingQueue, Lease, Offered, TryTakeError};
use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant};

type Q = CoalescingQueue<String, ()>;
type Leased<'q> = Lease<'q, String, ()>;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `NewDelayingQueueWithCustomClock(fakeClock, "")`.
fn delaying_queue() -> Q {
    Q::builder().capacity(64).manual_clock().build()
}

/// The two ways `AddAfter` is ported (see the module docs).
#[derive(Clone, Copy, Debug)]
enum AddAfter {
    Offer,
    Nack,
}

const BOTH: [AddAfter; 2] = [AddAfter::Offer, AddAfter::Nack];

fn add_after(q: &Q, how: AddAfter, item: &str, delay: Duration) -> Offered {
    let key = item.to_string();
    match how {
        AddAfter::Offer => q.try_offer_key_after(key, delay).unwrap(),
        AddAfter::Nack if q.is_pending(&key) => q.try_offer_key(key).unwrap(),
        AddAfter::Nack => {
            assert_eq!(q.try_offer_key(key), Ok(Offered::Enqueued));
            // What the offer queued is the only queued entry here.
            let lease = q.try_take_leased().expect("just offered");
            assert_eq!(lease.key().map(String::as_str), Some(item));
            assert_eq!(lease.attempt(), 1);
            lease.nack_after(delay);
            Offered::Enqueued
        }
    }
}

/// `q.Get()`, for an item that is queued.
fn get(q: &Q) -> Leased<'_> {
    q.try_take_leased().expect("an item is queued")
}

fn item_of(lease: &Leased<'_>) -> String {
    lease.key().expect("a key").clone()
}

/// `wait.Poll(1ms, 30ms, ...)` that fails if anything is added meanwhile.
fn assert_nothing_added_for_30ms(q: &Q) {
    let until = Instant::now() + ms(30);
    while Instant::now() < until {
        assert_eq!(q.len(), 0, "added to queue");
        thread::sleep(ms(1));
    }
}

#[test]
fn test_simple_queue() {
    for how in BOTH {
        let q = delaying_queue();
        add_after(&q, how, "foo", ms(50));
        assert_eq!(q.len(), 0, "{how:?}: should not have added");

        q.advance_clock(ms(60));
        assert_eq!(q.len(), 1, "{how:?}: should have added");
        let item = get(&q);
        assert_eq!(item_of(&item), "foo");
        item.ack();

        // Step past the next heartbeat.
        q.advance_clock(secs(10));
        assert_nothing_added_for_30ms(&q);
        assert_eq!(q.len(), 0, "{how:?}: should not have added");
        assert_eq!((q.pending_keys(), q.claimed_slots()), (0, 0));
    }
}

#[test]
fn test_deduping() {
    for how in BOTH {
        let q = delaying_queue();
        assert_eq!(add_after(&q, how, "foo", ms(50)), Offered::Enqueued);
        // The later add is deduped into the waiting one.
        assert_eq!(add_after(&q, how, "foo", ms(70)), Offered::Coalesced);
        assert_eq!(q.len(), 0, "{how:?}: should not have added");

        // Step past the first block, we should receive now.
        q.advance_clock(ms(60));
        assert_eq!(q.len(), 1, "{how:?}: should have added");
        let item = get(&q);
        assert_eq!(item_of(&item), "foo");
        item.ack();

        // Step past the second add.
        q.advance_clock(ms(20));
        assert_eq!(q.len(), 0, "{how:?}: should not have added");

        // client-go: "test again, but this time the earlier should
        // override": AddAfter(50 ms) then AddAfter(30 ms) fires at 30 ms.
        // Does not map: a pending key's delay is never shortened, so here
        // it fires at 50 ms, still once.
        add_after(&q, how, "foo", ms(50));
        assert_eq!(add_after(&q, how, "foo", ms(30)), Offered::Coalesced);
        assert_eq!(q.len(), 0, "{how:?}: should not have added");
        q.advance_clock(ms(40));
        assert_eq!(q.len(), 0, "{how:?}: not shortened to 30 ms");
        q.advance_clock(ms(10));
        assert_eq!(q.len(), 1, "{how:?}: should have added");
        let item = get(&q);
        assert_eq!(item_of(&item), "foo");
        item.ack();

        // Step past the second add.
        q.advance_clock(ms(20));
        assert_eq!(q.len(), 0, "{how:?}: should not have added");

        // Newer client-go: "this time item is being processed": Add, Get,
        // AddAfter(5 ms) while processing; the item is found pending, and
        // after Done it comes back. Does not map exactly: here the add
        // marks the in-flight key and the ack queues it at once, with no
        // delay.
        q.try_offer_key("foo".to_string()).unwrap();
        let item = get(&q);
        assert_eq!(item_of(&item), "foo");
        assert_eq!(add_after(&q, how, "foo", ms(5)), Offered::Coalesced);
        assert!(q.is_pending(&"foo".to_string()), "found");
        item.ack();
        assert_eq!(q.len(), 1, "{how:?}: queued again by the ack, at once");
        let again = get(&q);
        assert_eq!((item_of(&again), again.attempt()), ("foo".to_string(), 1));
        again.ack();
        assert_eq!((q.pending_keys(), q.claimed_slots()), (0, 0));
    }
}

#[test]
fn test_add_two_fire_early() {
    for how in BOTH {
        let q = delaying_queue();
        add_after(&q, how, "foo", secs(1));
        add_after(&q, how, "bar", ms(50));
        assert_eq!(q.len(), 0, "{how:?}: should not have added");

        q.advance_clock(ms(60));
        assert_eq!(q.len(), 1, "{how:?}");
        // Got, and not done: kept leased to the end.
        let bar = get(&q);
        assert_eq!(item_of(&bar), "bar");

        add_after(&q, how, "baz", secs(2));

        q.advance_clock(secs(1));
        assert_eq!(q.len(), 1, "{how:?}");
        let foo = get(&q);
        assert_eq!(item_of(&foo), "foo");

        q.advance_clock(secs(2));
        assert_eq!(q.len(), 1, "{how:?}");
        let baz = get(&q);
        assert_eq!(item_of(&baz), "baz");

        for item in [bar, foo, baz] {
            item.ack();
        }
        assert_eq!((q.pending_keys(), q.claimed_slots()), (0, 0));
    }
}

#[test]
fn test_copy_shifting() {
    for how in BOTH {
        let q = delaying_queue();
        add_after(&q, how, "foo", secs(1));
        add_after(&q, how, "bar", ms(500));
        add_after(&q, how, "baz", ms(250));
        assert_eq!(q.len(), 0, "{how:?}: should not have added");

        q.advance_clock(secs(2));
        assert_eq!(q.len(), 3, "{how:?}");
        let got: Vec<_> = (0..3).map(|_| get(&q)).collect();
        let items: Vec<_> = got.iter().map(item_of).collect();
        assert_eq!(items, ["baz", "bar", "foo"], "{how:?}");
        for item in got {
            item.ack();
        }
        assert_eq!((q.pending_keys(), q.claimed_slots()), (0, 0));
    }
}

/// The rate-limited queue: items nacked with the queue's backoff,
/// 1 ms doubling up to 1 s, on the manual clock.
fn rate_limiting_queue() -> Q {
    Q::builder()
        .capacity(64)
        .retries(Backoff::exponential(ms(1), secs(1)))
        .manual_clock()
        .build()
}

/// Moves the clock on to the next due time, and takes `item` leased.
fn take_when_due<'q>(q: &'q Q, item: &str) -> Leased<'q> {
    if q.is_empty() {
        let next = q.stats().next_due.expect("the item is delayed");
        q.advance_clock(next);
    }
    let lease = get(q);
    assert_eq!(item_of(&lease), item);
    lease
}

/// `AddRateLimited(item)` on its lease: nacked with the backoff for its
/// attempt; returns the delay, checked against how long until it is due
/// (client-go's `waitEntry.readyAt.Sub(fakeClock.Now())`).
fn add_rate_limited(q: &Q, lease: Leased<'_>) -> Duration {
    let delay = lease.nack_backoff();
    assert_eq!(q.stats().next_due, Some(delay), "readyAt - now");
    delay
}

#[test]
fn test_rate_limiting_queue() {
    let q = rate_limiting_queue();
    q.try_offer_key("one".to_string()).unwrap();

    let one = take_when_due(&q, "one");
    assert_eq!(add_rate_limited(&q, one), ms(1));
    let one = take_when_due(&q, "one");
    assert_eq!(add_rate_limited(&q, one), ms(2));
    // NumRequeues("one") is 2: the next lease is its third attempt.
    let one = take_when_due(&q, "one");
    assert_eq!(one.attempt() - 1, 2, "NumRequeues(one)");

    q.try_offer_key("two".to_string()).unwrap();
    let two = take_when_due(&q, "two");
    assert_eq!(add_rate_limited(&q, two), ms(1));
    let two = take_when_due(&q, "two");
    assert_eq!(add_rate_limited(&q, two), ms(2));

    // Forget("one"): NumRequeues is 0 again, and the backoff starts over.
    one.ack();
    q.try_offer_key("one".to_string()).unwrap();
    let one = get(&q);
    assert_eq!((item_of(&one), one.attempt() - 1), ("one".to_string(), 0));
    let delay = one.nack_backoff();
    assert_eq!(delay, ms(1));
    // "two" (2 ms) and "one" (1 ms) wait; the earliest is one's.
    assert_eq!(q.stats().next_due, Some(ms(1)));
    assert_eq!(q.stats().delayed, 2);
}

/// client-go's `ItemExponentialFailureRateLimiter`, on `Backoff::delay`:
/// `When(item)` counts one more failure of `item` and returns the delay
/// for that count, `NumRequeues` is the count, `Forget` clears it.
struct ItemExponentialFailureRateLimiter {
    backoff: Backoff,
    failures: HashMap<&'static str, u32>,
}

impl ItemExponentialFailureRateLimiter {
    fn new(base: Duration, max: Duration) -> Self {
        Self {
            backoff: Backoff::exponential(base, max),
            failures: HashMap::new(),
        }
    }

    fn when(&mut self, item: &'static str) -> Duration {
        let failures = self.failures.entry(item).or_insert(0);
        *failures += 1;
        self.backoff.delay(*failures)
    }

    fn num_requeues(&self, item: &'static str) -> u32 {
        self.failures.get(item).copied().unwrap_or(0)
    }

    fn forget(&mut self, item: &'static str) {
        self.failures.remove(item);
    }
}

#[test]
fn test_item_exponential_failure_rate_limiter() {
    let mut limiter = ItemExponentialFailureRateLimiter::new(ms(1), secs(1));
    for expected in [1, 2, 4, 8, 16] {
        assert_eq!(limiter.when("one"), ms(expected));
    }
    assert_eq!(limiter.num_requeues("one"), 5);
    assert_eq!(limiter.when("two"), ms(1));
    assert_eq!(limiter.when("two"), ms(2));
    assert_eq!(limiter.num_requeues("two"), 2);
    limiter.forget("one");
    assert_eq!(limiter.num_requeues("one"), 0);
    assert_eq!(limiter.when("one"), ms(1));
}

/// The same test on the queue itself: `When` is a lease's `nack_backoff`,
/// `NumRequeues` the next lease's `attempt() - 1`, `Forget` an ack.
#[test]
fn test_item_exponential_failure_rate_limiter_on_the_queue() {
    let q = rate_limiting_queue();
    q.try_offer_key("one".to_string()).unwrap();
    for expected in [1, 2, 4, 8, 16] {
        let one = take_when_due(&q, "one");
        assert_eq!(one.nack_backoff(), ms(expected));
    }
    let one = take_when_due(&q, "one");
    assert_eq!(one.attempt() - 1, 5, "NumRequeues(one)");

    q.try_offer_key("two".to_string()).unwrap();
    for expected in [1, 2] {
        let two = take_when_due(&q, "two");
        assert_eq!(two.nack_backoff(), ms(expected));
    }
    let two = take_when_due(&q, "two");
    assert_eq!(two.attempt() - 1, 2, "NumRequeues(two)");
    two.ack();

    one.ack(); // Forget("one")
    q.try_offer_key("one".to_string()).unwrap();
    let one = get(&q);
    assert_eq!(one.attempt() - 1, 0, "NumRequeues(one) after Forget");
    assert_eq!(one.nack_backoff(), ms(1));
    q.close();
    get(&q).ack();
    assert_eq!((q.pending_keys(), q.claimed_slots()), (0, 0));
}

#[test]
fn test_item_exponential_failure_rate_limiter_over_flow() {
    let mut limiter = ItemExponentialFailureRateLimiter::new(ms(1), secs(1000));
    for _ in 0..5 {
        limiter.when("one");
    }
    assert_eq!(limiter.when("one"), ms(32));
    for _ in 0..1000 {
        limiter.when("overflow1");
    }
    assert_eq!(limiter.when("overflow1"), secs(1000));

    let mut limiter = ItemExponentialFailureRateLimiter::new(secs(60), secs(1000 * 3600));
    for _ in 0..2 {
        limiter.when("two");
    }
    assert_eq!(limiter.when("two"), secs(4 * 60));
    for _ in 0..1000 {
        limiter.when("overflow2");
    }
    assert_eq!(limiter.when("overflow2"), secs(1000 * 3600));

    // Far past any count a queue reaches: still the cap.
    assert_eq!(limiter.backoff.delay(u32::MAX), secs(1000 * 3600));
}

/// The overflow test through a queue's leases: a key nacked with the
/// backoff 1,000 times waits the cap, 1,000 s, and never more.
#[test]
fn test_item_exponential_failure_rate_limiter_over_flow_on_the_queue() {
    let q = Q::builder()
        .capacity(4)
        .retries(Backoff::exponential(ms(1), secs(1000)))
        .manual_clock()
        .build();
    q.try_offer_key("overflow1".to_string()).unwrap();
    let mut last = Duration::ZERO;
    for _ in 0..1001 {
        let lease = take_when_due(&q, "overflow1");
        last = lease.nack_backoff();
    }
    assert_eq!(last, secs(1000));
    let lease = take_when_due(&q, "overflow1");
    assert_eq!(lease.attempt(), 1002);
    lease.ack();
    assert_eq!(q.try_take(), Err(TryTakeError::Empty));
    assert_eq!(q.stats().delayed_nacks, 1001);
}
