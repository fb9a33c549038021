//! Integration tests of the core queue, in the shape of crossbeam-queue's
//! `tests/array_queue.rs`: smoke, capacity, len/empty/full, FIFO,
//! coalescing, close, blocking, timeouts, batches, async, drop counting,
//! stats, Debug, spsc, mpmc and a linearizability check.

mod common;

use coalescing_queue::{
    BuildError, CoalescingQueue, Entry, InFlightPolicy, OfferError, OfferTimeoutError, Offered,
    TakeError, TakeTimeoutError, TryOfferError, TryTakeError,
};
use common::Watchdog;
use crossbeam_channel::{bounded, Receiver};
use futures_lite::future::{block_on, poll_once};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

type Q = CoalescingQueue<u32, String>;

/// Long enough for a spawned thread to reach its blocking call.
const SETTLE: Duration = Duration::from_millis(50);
/// How long a test waits for a wake-up before declaring it lost.
const PATIENCE: Duration = Duration::from_secs(10);

/// Runs `f` on a new thread; its result arrives on the returned channel.
fn spawn_result<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Receiver<T> {
    let (tx, rx) = bounded(1);
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

/// Asserts that the thread behind `rx` is still blocked, then returns `rx`.
fn assert_blocked<T: std::fmt::Debug>(rx: &Receiver<T>) {
    thread::sleep(SETTLE);
    assert!(
        rx.try_recv().is_err(),
        "the call returned although it should block"
    );
}

/// Scales a loop count down with `COALESCING_TEST_SCALE` (a divisor), never
/// below 1; the assertions stay the same.
fn scaled(count: usize) -> usize {
    let divisor = std::env::var("COALESCING_TEST_SCALE")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    (count / divisor).max(1)
}

fn drain(q: &Q) -> Vec<Entry<u32, String>> {
    let mut out = Vec::new();
    while let Ok(entry) = q.try_take() {
        out.push(entry);
    }
    out
}

fn key(k: u32) -> Entry<u32, String> {
    Entry::Key(k)
}

fn item(s: &str) -> Entry<u32, String> {
    Entry::Item(s.to_string())
}

// ----- basics -----

#[test]
fn smoke() {
    let q = Q::new(1);
    assert_eq!(q.try_offer_key(7), Ok(Offered::Enqueued));
    assert_eq!(q.try_take(), Ok(key(7)));
    assert_eq!(q.try_take(), Err(TryTakeError::Empty));

    q.try_offer("x".to_string()).unwrap();
    assert_eq!(q.try_take(), Ok(item("x")));
    assert_eq!(q.try_take(), Err(TryTakeError::Empty));
}

#[test]
fn capacity() {
    for cap in 1..10 {
        let q = Q::new(cap);
        assert_eq!(q.capacity(), cap);
        for k in 0..cap as u32 {
            if k % 2 == 0 {
                assert_eq!(q.try_offer_key(k), Ok(Offered::Enqueued));
            } else {
                assert_eq!(q.try_offer(k.to_string()), Ok(()));
            }
        }
        assert_eq!(q.try_offer_key(1000), Err(TryOfferError::Full(1000)));
        assert_eq!(
            q.try_offer("y".to_string()),
            Err(TryOfferError::Full("y".to_string()))
        );
        assert_eq!(q.len(), cap);
        assert_eq!(q.claimed_slots(), cap);
    }
    let q = CoalescingQueue::<u32, String>::builder()
        .capacity(3)
        .build();
    assert_eq!(q.capacity(), 3);
    assert_eq!(q.in_flight_policy(), InFlightPolicy::Requeue);
    let q = CoalescingQueue::<u32, String>::builder()
        .capacity(5)
        .in_flight_policy(InFlightPolicy::Absorb)
        .hasher(std::collections::hash_map::RandomState::new())
        .build();
    assert_eq!(q.capacity(), 5);
    assert_eq!(q.in_flight_policy(), InFlightPolicy::Absorb);
    assert_eq!(q.try_offer_key(1), Ok(Offered::Enqueued));
    assert_eq!(q.try_offer_key(1), Ok(Offered::Coalesced));
}

#[test]
#[should_panic]
fn zero_capacity_panics() {
    let _ = Q::new(0);
}

#[test]
#[should_panic]
fn build_without_capacity_panics() {
    let _ = Q::builder().build();
}

#[test]
fn try_build_errors() {
    assert_eq!(
        Q::builder().capacity(0).try_build().unwrap_err(),
        BuildError::ZeroCapacity
    );
    assert_eq!(
        Q::builder().try_build().unwrap_err(),
        BuildError::MissingCapacity
    );
    assert_eq!(
        Q::builder().capacity(1 << 31).try_build().unwrap_err(),
        BuildError::CapacityTooLarge
    );
    assert_eq!(
        Q::builder().capacity(usize::MAX).try_build().unwrap_err(),
        BuildError::CapacityTooLarge
    );
    let q = Q::builder().capacity(1).try_build().unwrap();
    assert_eq!(q.capacity(), 1);
    // Errors are std errors with a message.
    let err: Box<dyn std::error::Error> = Box::new(BuildError::ZeroCapacity);
    assert!(!err.to_string().is_empty());
}

#[test]
fn len_empty_full() {
    let q = Q::new(3);
    let check = |len: usize, full: bool| {
        assert_eq!(q.len(), len);
        assert_eq!(q.is_empty(), len == 0);
        assert_eq!(q.is_full(), full);
        assert_eq!(q.in_flight(), 0);
        assert_eq!(q.stats().queued, len);
    };
    check(0, false);
    q.try_offer_key(1).unwrap();
    check(1, false);
    q.try_offer_key(1).unwrap(); // coalesced: no new entry
    check(1, false);
    q.try_offer("a".to_string()).unwrap();
    check(2, false);
    q.try_offer_key(2).unwrap();
    check(3, true);
    assert!(q.try_offer_key(3).is_err());
    check(3, true);
    q.try_take().unwrap();
    check(2, false);
    q.try_take().unwrap();
    q.try_take().unwrap();
    check(0, false);

    // crossbeam-style: many rounds of filling and emptying.
    let q = Q::new(10);
    for _ in 0..scaled(100) {
        for i in 0..10u32 {
            assert_eq!(q.len(), i as usize);
            q.try_offer_key(i).unwrap();
            assert_eq!(q.len(), i as usize + 1);
        }
        assert!(q.is_full());
        for i in 0..10u32 {
            assert_eq!(q.len(), 10 - i as usize);
            assert_eq!(q.try_take(), Ok(key(i)));
        }
        assert!(q.is_empty());
    }
    assert_eq!(q.pending_keys(), 0);
    assert_eq!(q.claimed_slots(), 0);
}

#[test]
fn in_flight_is_counted_apart_from_len() {
    let q = Q::new(3);
    q.try_offer_key(1).unwrap();
    q.try_offer_key(2).unwrap();
    let lease = q.try_take_leased().unwrap();
    assert_eq!((q.len(), q.in_flight()), (1, 1));
    assert!(!q.is_empty());
    q.try_take().unwrap();
    assert_eq!((q.len(), q.in_flight()), (0, 1));
    assert!(q.is_empty());
    q.try_offer_key(3).unwrap();
    q.try_offer_key(4).unwrap();
    assert!(q.is_full(), "2 queued + 1 in flight fill a capacity of 3");
    lease.ack();
    assert_eq!((q.len(), q.in_flight()), (2, 0));
    assert!(!q.is_full());
}

// ----- FIFO and coalescing -----

#[test]
fn fifo_across_keys_and_items() {
    let q = Q::new(16);
    let mut expected = Vec::new();
    for i in 0..8u32 {
        if i % 3 == 0 {
            let s = format!("item{i}");
            q.try_offer(s.clone()).unwrap();
            expected.push(Entry::Item(s));
        } else {
            q.try_offer_key(i).unwrap();
            expected.push(Entry::Key(i));
        }
    }
    // Two equal items are not coalesced.
    q.try_offer("same".to_string()).unwrap();
    q.try_offer("same".to_string()).unwrap();
    expected.push(item("same"));
    expected.push(item("same"));
    assert_eq!(drain(&q), expected);
}

#[test]
fn duplicate_is_coalesced_and_delivered_once() {
    let q = Q::new(4);
    assert_eq!(q.try_offer_key(5), Ok(Offered::Enqueued));
    for _ in 0..10 {
        assert_eq!(q.try_offer_key(5), Ok(Offered::Coalesced));
        assert_eq!(q.offer_key(5), Ok(Offered::Coalesced));
        assert_eq!(
            q.offer_key_timeout(5, Duration::from_millis(1)),
            Ok(Offered::Coalesced)
        );
        assert_eq!(block_on(q.offer_key_async(5)), Ok(Offered::Coalesced));
    }
    assert!(q.is_pending(&5));
    assert_eq!(q.len(), 1);
    assert_eq!(drain(&q), [key(5)]);
    assert!(!q.is_pending(&5));
    assert_eq!(q.pending_keys(), 0);
}

#[test]
fn coalesced_offer_keeps_the_pending_place() {
    let q = Q::new(8);
    for k in [1, 2, 3] {
        q.try_offer_key(k).unwrap();
    }
    q.try_offer("i".to_string()).unwrap();
    assert_eq!(q.try_offer_key(1), Ok(Offered::Coalesced));
    assert_eq!(q.try_offer_key(3), Ok(Offered::Coalesced));
    assert_eq!(q.try_offer_key(4), Ok(Offered::Enqueued));
    assert_eq!(drain(&q), [key(1), key(2), key(3), item("i"), key(4)]);
}

#[test]
fn duplicate_is_coalesced_when_full() {
    let q = Q::new(2);
    q.try_offer_key(1).unwrap();
    q.try_offer("a".to_string()).unwrap();
    assert!(q.is_full());
    assert_eq!(q.try_offer_key(1), Ok(Offered::Coalesced));
    assert_eq!(q.offer_key(1), Ok(Offered::Coalesced)); // must not block
    assert_eq!(
        q.offer_key_timeout(1, Duration::ZERO),
        Ok(Offered::Coalesced)
    );
    assert_eq!(block_on(q.offer_key_async(1)), Ok(Offered::Coalesced));
    assert_eq!(q.try_offer_key(2), Err(TryOfferError::Full(2)));
    assert_eq!(drain(&q), [key(1), item("a")]);
}

#[test]
fn key_taken_then_reoffered_is_enqueued_again() {
    let q = Q::new(4);
    assert_eq!(q.try_offer_key(1), Ok(Offered::Enqueued));
    q.try_offer_key(2).unwrap();
    assert_eq!(q.try_take(), Ok(key(1)));
    assert_eq!(q.try_offer_key(1), Ok(Offered::Enqueued));
    // The new copy goes to the tail.
    assert_eq!(drain(&q), [key(2), key(1)]);
    assert_eq!(q.try_offer_key(1), Ok(Offered::Enqueued));
    assert_eq!(q.try_take(), Ok(key(1)));
}

// ----- close -----

#[test]
fn close_returns_true_once() {
    let q = Q::new(2);
    assert!(!q.is_closed());
    assert!(q.close());
    assert!(q.is_closed());
    assert!(!q.close());
    assert!(!q.close());
    assert!(q.is_closed());
}

#[test]
fn close_refuses_every_offer_and_drains() {
    let q = Q::new(4);
    q.try_offer_key(1).unwrap();
    q.try_offer("a".to_string()).unwrap();
    q.try_offer_key(2).unwrap();
    assert!(q.close());

    // Duplicates of queued keys are refused too, the value handed back.
    assert_eq!(q.try_offer_key(1), Err(TryOfferError::Closed(1)));
    assert_eq!(q.try_offer_key(9), Err(TryOfferError::Closed(9)));
    assert_eq!(q.offer_key(1), Err(OfferError(1)));
    assert_eq!(q.offer_key(9).unwrap_err().into_inner(), 9);
    assert_eq!(
        q.offer_key_timeout(2, Duration::from_millis(1)),
        Err(OfferTimeoutError::Closed(2))
    );
    assert_eq!(block_on(q.offer_key_async(2)), Err(OfferError(2)));
    assert_eq!(
        q.try_offer("b".to_string()).unwrap_err().into_inner(),
        "b".to_string()
    );
    assert!(q.try_offer("b".to_string()).unwrap_err().is_closed());
    assert_eq!(q.offer("c".to_string()), Err(OfferError("c".to_string())));
    assert_eq!(
        q.offer_timeout("d".to_string(), Duration::from_millis(1)),
        Err(OfferTimeoutError::Closed("d".to_string()))
    );
    assert_eq!(
        block_on(q.offer_async("e".to_string())),
        Err(OfferError("e".to_string()))
    );
    assert_eq!(q.len(), 3);

    // Takes drain what is left, in order, then report Closed.
    assert_eq!(q.take(), Ok(key(1)));
    assert_eq!(q.try_take(), Ok(item("a")));
    assert_eq!(q.take_timeout(Duration::from_millis(1)), Ok(key(2)));
    assert_eq!(q.try_take(), Err(TryTakeError::Closed));
    assert_eq!(q.take(), Err(TakeError));
    assert_eq!(
        q.take_timeout(Duration::from_millis(1)),
        Err(TakeTimeoutError::Closed)
    );
    assert_eq!(block_on(q.take_async()), Err(TakeError));
    let mut out = Vec::new();
    assert_eq!(q.take_batch(&mut out, 8, Duration::from_millis(1)), 0);
    assert!(out.is_empty());
    assert_eq!(q.pending_keys(), 0);
    assert_eq!(q.claimed_slots(), 0);
    assert_eq!(q.stats().closed_rejections, 11);
}

#[test]
fn close_on_full_queue_refuses_duplicates() {
    let q = Q::new(1);
    q.try_offer_key(1).unwrap();
    q.close();
    assert_eq!(q.try_offer_key(1), Err(TryOfferError::Closed(1)));
    assert_eq!(q.try_offer_key(2), Err(TryOfferError::Closed(2)));
    assert_eq!(q.try_take(), Ok(key(1)));
    assert_eq!(q.try_take(), Err(TryTakeError::Closed));
}

// ----- blocking wake-ups -----

#[test]
fn blocked_offer_key_wakes_when_a_take_frees_a_slot() {
    let q = Arc::new(Q::new(1));
    q.offer_key(1).unwrap();
    let rx = spawn_result({
        let q = q.clone();
        move || q.offer_key(2)
    });
    assert_blocked(&rx);
    assert_eq!(q.len(), 1);
    assert_eq!(q.try_take(), Ok(key(1)));
    assert_eq!(rx.recv_timeout(PATIENCE), Ok(Ok(Offered::Enqueued)));
    assert_eq!(q.try_take(), Ok(key(2)));
}

#[test]
fn blocked_offer_item_wakes_when_a_take_frees_a_slot() {
    let q = Arc::new(Q::new(1));
    q.offer("a".to_string()).unwrap();
    let rx = spawn_result({
        let q = q.clone();
        move || q.offer("b".to_string())
    });
    assert_blocked(&rx);
    assert_eq!(q.take(), Ok(item("a")));
    assert_eq!(rx.recv_timeout(PATIENCE), Ok(Ok(())));
    assert_eq!(q.take(), Ok(item("b")));
}

#[test]
fn blocked_take_wakes_on_offer() {
    let q = Arc::new(Q::new(2));
    let rx = spawn_result({
        let q = q.clone();
        move || q.take()
    });
    assert_blocked(&rx);
    q.try_offer_key(3).unwrap();
    assert_eq!(rx.recv_timeout(PATIENCE), Ok(Ok(key(3))));

    let rx = spawn_result({
        let q = q.clone();
        move || q.take()
    });
    assert_blocked(&rx);
    q.try_offer("x".to_string()).unwrap();
    assert_eq!(rx.recv_timeout(PATIENCE), Ok(Ok(item("x"))));
}

#[test]
fn many_blocked_takers_each_get_one() {
    const N: usize = 4;
    let q = Arc::new(Q::new(N));
    let rxs: Vec<_> = (0..N)
        .map(|_| {
            let q = q.clone();
            spawn_result(move || q.take())
        })
        .collect();
    thread::sleep(SETTLE);
    for k in 0..N as u32 {
        q.try_offer_key(k).unwrap();
    }
    let mut got: Vec<u32> = rxs
        .iter()
        .map(|rx| match rx.recv_timeout(PATIENCE) {
            Ok(Ok(Entry::Key(k))) => k,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    got.sort_unstable();
    assert_eq!(got, [0, 1, 2, 3]);
}

/// A blocked offerer woken for a freed slot may find its key already
/// pending (another waiter enqueued it) and return `Coalesced` without
/// using the slot. The wake-up must then reach another blocked offerer:
/// here `D` must get the free slot without waiting for one more take.
#[test]
fn woken_offerer_that_coalesces_passes_the_wake_up_on() {
    let q = Arc::new(Q::new(2));
    q.try_offer_key(1).unwrap();
    q.try_offer_key(3).unwrap();
    let b1 = spawn_result({
        let q = q.clone();
        move || q.offer_key(2)
    });
    assert_blocked(&b1);
    let b2 = spawn_result({
        let q = q.clone();
        move || q.offer_key(2)
    });
    assert_blocked(&b2);
    let d = spawn_result({
        let q = q.clone();
        move || q.offer_key(4)
    });
    assert_blocked(&d);
    // Two slots freed: two wake-ups, both for the offerers of key 2.
    assert_eq!(q.try_take(), Ok(key(1)));
    assert_eq!(q.try_take(), Ok(key(3)));
    let mut results = [
        b1.recv_timeout(PATIENCE).unwrap(),
        b2.recv_timeout(PATIENCE).unwrap(),
    ];
    results.sort_by_key(|r| *r != Ok(Offered::Enqueued));
    assert_eq!(results, [Ok(Offered::Enqueued), Ok(Offered::Coalesced)]);
    // One slot is free and nothing else will free another; D may already
    // have taken it, so only D's result is checked.
    let got = d.recv_timeout(Duration::from_secs(5));
    // Unblock the offerer before failing, so no thread is left behind.
    let _ = q.try_take();
    assert_eq!(
        got,
        Ok(Ok(Offered::Enqueued)),
        "lost wake-up: a blocked offerer sleeps while a slot is free"
    );
}

#[test]
fn close_wakes_blocked_offerers_with_their_value() {
    let q = Arc::new(Q::new(1));
    q.offer_key(1).unwrap();
    let key_rx = spawn_result({
        let q = q.clone();
        move || q.offer_key(2)
    });
    let item_rx = spawn_result({
        let q = q.clone();
        move || q.offer("v".to_string())
    });
    let timeout_rx = spawn_result({
        let q = q.clone();
        move || q.offer_key_timeout(3, Duration::from_secs(60))
    });
    assert_blocked(&key_rx);
    assert_blocked(&item_rx);
    assert_blocked(&timeout_rx);
    assert!(q.close());
    assert_eq!(key_rx.recv_timeout(PATIENCE), Ok(Err(OfferError(2))));
    assert_eq!(
        item_rx.recv_timeout(PATIENCE),
        Ok(Err(OfferError("v".to_string())))
    );
    assert_eq!(
        timeout_rx.recv_timeout(PATIENCE),
        Ok(Err(OfferTimeoutError::Closed(3)))
    );
    // The blocked offerers hold nothing: only the first key is there.
    assert_eq!(q.try_take(), Ok(key(1)));
    assert_eq!(q.try_take(), Err(TryTakeError::Closed));
    assert_eq!(q.claimed_slots(), 0);
}

#[test]
fn close_wakes_blocked_takers() {
    let q = Arc::new(Q::new(1));
    let take_rx = spawn_result({
        let q = q.clone();
        move || q.take()
    });
    let timeout_rx = spawn_result({
        let q = q.clone();
        move || q.take_timeout(Duration::from_secs(60))
    });
    let batch_rx = spawn_result({
        let q = q.clone();
        move || {
            let mut out = Vec::new();
            let n = q.take_batch(&mut out, 4, Duration::from_secs(60));
            (n, out)
        }
    });
    assert_blocked(&take_rx);
    assert_blocked(&timeout_rx);
    assert_blocked(&batch_rx);
    assert!(q.close());
    assert_eq!(take_rx.recv_timeout(PATIENCE), Ok(Err(TakeError)));
    assert_eq!(
        timeout_rx.recv_timeout(PATIENCE),
        Ok(Err(TakeTimeoutError::Closed))
    );
    assert_eq!(batch_rx.recv_timeout(PATIENCE), Ok((0, Vec::new())));
}

// ----- timeouts -----

#[test]
fn offer_timeouts_hand_the_value_back() {
    let q = Q::new(1);
    q.try_offer_key(1).unwrap();
    let t = Duration::from_millis(30);

    let start = Instant::now();
    let err = q.offer_key_timeout(2, t).unwrap_err();
    assert!(start.elapsed() >= t);
    assert_eq!(err, OfferTimeoutError::Timeout(2));
    assert!(err.is_timeout() && !err.is_closed());
    assert_eq!(err.into_inner(), 2);

    let start = Instant::now();
    let err = q.offer_timeout("x".to_string(), t).unwrap_err();
    assert!(start.elapsed() >= t);
    assert_eq!(err, OfferTimeoutError::Timeout("x".to_string()));
    assert_eq!(err.into_inner(), "x");

    // Nothing was added by the timed-out offers.
    assert_eq!(q.len(), 1);
    assert!(!q.is_pending(&2));
    assert_eq!(q.pending_keys(), 1);
    assert_eq!(q.claimed_slots(), 1);
}

#[test]
fn offer_timeouts_succeed_when_room_appears() {
    let q = Arc::new(Q::new(1));
    q.try_offer_key(1).unwrap();
    let taker = {
        let q = q.clone();
        thread::spawn(move || {
            thread::sleep(SETTLE);
            q.take().unwrap()
        })
    };
    let start = Instant::now();
    assert_eq!(
        q.offer_key_timeout(2, Duration::from_secs(30)),
        Ok(Offered::Enqueued)
    );
    assert!(start.elapsed() < Duration::from_secs(30));
    assert_eq!(taker.join().unwrap(), key(1));

    let taker = {
        let q = q.clone();
        thread::spawn(move || {
            thread::sleep(SETTLE);
            q.take().unwrap()
        })
    };
    assert_eq!(
        q.offer_timeout("late".to_string(), Duration::from_secs(30)),
        Ok(())
    );
    assert_eq!(taker.join().unwrap(), key(2));
    assert_eq!(q.try_take(), Ok(item("late")));
}

#[test]
fn take_timeout_times_out_then_succeeds() {
    let q = Arc::new(Q::new(2));
    let t = Duration::from_millis(30);
    let start = Instant::now();
    let err = q.take_timeout(t).unwrap_err();
    assert!(start.elapsed() >= t);
    assert_eq!(err, TakeTimeoutError::Timeout);
    assert!(err.is_timeout() && !err.is_closed());

    let offerer = {
        let q = q.clone();
        thread::spawn(move || {
            thread::sleep(SETTLE);
            q.offer_key(4).unwrap()
        })
    };
    assert_eq!(q.take_timeout(Duration::from_secs(30)), Ok(key(4)));
    assert_eq!(offerer.join().unwrap(), Offered::Enqueued);
}

// ----- batches -----

#[test]
fn take_batch_respects_max_and_appends() {
    let q = Q::new(8);
    for k in 0..5 {
        q.try_offer_key(k).unwrap();
    }
    let mut out = vec![key(100)];
    assert_eq!(q.take_batch(&mut out, 2, Duration::ZERO), 2);
    assert_eq!(out, [key(100), key(0), key(1)]);
    assert_eq!(q.take_batch(&mut out, 2, Duration::from_millis(1)), 2);
    assert_eq!(out, [key(100), key(0), key(1), key(2), key(3)]);
    // Fewer queued than max, linger zero: returns at once with what is there.
    assert_eq!(q.take_batch(&mut out, 10, Duration::ZERO), 1);
    assert_eq!(out.last(), Some(&key(4)));
    assert_eq!(out.len(), 6);
    // max 0 is refused (its 0 would read as closed and drained), takes
    // nothing and does not block.
    q.try_offer_key(9).unwrap();
    let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        q.take_batch(&mut out, 0, Duration::from_secs(60))
    }));
    assert!(refused.is_err());
    assert_eq!(out.len(), 6);
    assert_eq!(q.len(), 1);
    // A huge max is fine.
    assert_eq!(q.take_batch(&mut out, usize::MAX, Duration::ZERO), 1);
    assert_eq!(out.last(), Some(&key(9)));
}

/// Batches larger than the chunk a take pops at once (32): keys and items
/// in FIFO order across chunks, every key's entry gone after a plain batch
/// and in flight (deduplicating) after a leased one.
#[test]
fn large_batches_keep_order_across_chunks() {
    let q = Q::new(200);
    let mut expected = Vec::new();
    for k in 0..150u32 {
        if k % 7 == 3 {
            q.try_offer(format!("item {k}")).unwrap();
            expected.push(item(&format!("item {k}")));
        } else {
            q.try_offer_key(k).unwrap();
            expected.push(key(k));
        }
    }
    let mut out = Vec::new();
    assert_eq!(q.take_batch(&mut out, 100, Duration::ZERO), 100);
    assert_eq!(out, expected[..100]);
    assert_eq!(
        q.pending_keys(),
        expected[100..].iter().filter(|e| e.is_key()).count()
    );
    // Re-offering a taken key queues it again; one still queued coalesces.
    assert_eq!(q.try_offer_key(0), Ok(Offered::Enqueued));
    assert_eq!(q.try_offer_key(149), Ok(Offered::Coalesced));

    let leased = q.take_batch_leased(usize::MAX, Duration::ZERO);
    let mut rest = expected[100..].to_vec();
    rest.push(key(0));
    assert_eq!(leased.entries(), rest.as_slice());
    assert_eq!(q.len(), 0);
    // In flight: re-offers coalesce, and acking the whole batch drains all.
    assert_eq!(q.try_offer_key(149), Ok(Offered::Coalesced));
    leased.ack();
    assert_eq!(q.try_take(), Ok(key(149)), "the dirty key comes back once");
    assert_eq!(q.pending_keys(), 0);
    assert_eq!(q.claimed_slots(), 0);
}

#[test]
fn take_batch_linger_gathers_late_entries() {
    let q = Arc::new(Q::new(8));
    q.try_offer_key(0).unwrap();
    let offerer = {
        let q = q.clone();
        thread::spawn(move || {
            for k in 1..4 {
                thread::sleep(Duration::from_millis(10));
                q.offer_key(k).unwrap();
            }
        })
    };
    let mut out = Vec::new();
    let start = Instant::now();
    assert_eq!(q.take_batch(&mut out, 4, Duration::from_secs(30)), 4);
    // Returned as soon as max was reached, not at the end of the linger.
    assert!(start.elapsed() < Duration::from_secs(30));
    assert_eq!(out, [key(0), key(1), key(2), key(3)]);
    offerer.join().unwrap();
}

#[test]
fn take_batch_linger_ends_the_batch() {
    let q = Q::new(8);
    q.try_offer_key(0).unwrap();
    let linger = Duration::from_millis(40);
    let mut out = Vec::new();
    let start = Instant::now();
    assert_eq!(q.take_batch(&mut out, 10, linger), 1);
    assert!(start.elapsed() >= linger);
    assert_eq!(out, [key(0)]);
}

#[test]
fn take_batch_waits_for_the_first_entry() {
    let q = Arc::new(Q::new(8));
    let rx = spawn_result({
        let q = q.clone();
        move || {
            let mut out = Vec::new();
            let n = q.take_batch(&mut out, 3, Duration::ZERO);
            (n, out)
        }
    });
    assert_blocked(&rx);
    q.try_offer_key(5).unwrap();
    assert_eq!(rx.recv_timeout(PATIENCE), Ok((1, vec![key(5)])));
}

#[test]
fn take_batch_keeps_what_it_took_when_closed_during_linger() {
    let q = Arc::new(Q::new(8));
    q.try_offer_key(1).unwrap();
    q.try_offer("a".to_string()).unwrap();
    let closer = {
        let q = q.clone();
        thread::spawn(move || {
            thread::sleep(SETTLE);
            q.close()
        })
    };
    let mut out = Vec::new();
    let start = Instant::now();
    assert_eq!(q.take_batch(&mut out, 10, Duration::from_secs(30)), 2);
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "close ends the linger"
    );
    assert_eq!(out, [key(1), item("a")]);
    assert!(closer.join().unwrap());
    assert_eq!(q.take_batch(&mut out, 10, Duration::from_secs(30)), 0);
    assert_eq!(out.len(), 2);
}

#[test]
fn take_batch_returns_zero_only_when_closed_and_drained() {
    let q = Q::new(8);
    for k in 0..3 {
        q.try_offer_key(k).unwrap();
    }
    q.close();
    let mut out = Vec::new();
    assert_eq!(q.take_batch(&mut out, 2, Duration::ZERO), 2);
    assert_eq!(q.take_batch(&mut out, 2, Duration::ZERO), 1);
    assert_eq!(q.take_batch(&mut out, 2, Duration::ZERO), 0);
    assert_eq!(out, [key(0), key(1), key(2)]);
}

// ----- async -----

#[test]
fn offer_key_async_waits_on_full_then_succeeds() {
    let q = Q::new(1);
    q.try_offer_key(1).unwrap();
    let mut fut = pin!(q.offer_key_async(2));
    assert_eq!(block_on(poll_once(&mut fut)), None, "full: must wait");
    assert_eq!(q.try_take(), Ok(key(1)));
    assert_eq!(block_on(fut), Ok(Offered::Enqueued));
    assert_eq!(q.try_take(), Ok(key(2)));
}

#[test]
fn offer_async_waits_on_full_then_succeeds() {
    let q = Q::new(1);
    q.try_offer("a".to_string()).unwrap();
    let mut fut = pin!(q.offer_async("b".to_string()));
    assert_eq!(block_on(poll_once(&mut fut)), None, "full: must wait");
    assert_eq!(q.try_take(), Ok(item("a")));
    assert_eq!(block_on(fut), Ok(()));
    assert_eq!(q.try_take(), Ok(item("b")));
}

#[test]
fn offer_async_wakes_on_close_with_value() {
    let q = Q::new(1);
    q.try_offer_key(1).unwrap();
    let (key_flag, key_waker) = flag_waker();
    let (item_flag, item_waker) = flag_waker();
    let mut key_fut = Box::pin(q.offer_key_async(2));
    let mut item_fut = Box::pin(q.offer_async("b".to_string()));
    assert!(key_fut
        .as_mut()
        .poll(&mut Context::from_waker(&key_waker))
        .is_pending());
    assert!(item_fut
        .as_mut()
        .poll(&mut Context::from_waker(&item_waker))
        .is_pending());
    q.close();
    assert!(key_flag.0.load(SeqCst), "close did not wake the key offer");
    assert!(
        item_flag.0.load(SeqCst),
        "close did not wake the item offer"
    );
    assert_eq!(
        key_fut.as_mut().poll(&mut Context::from_waker(&key_waker)),
        Poll::Ready(Err(OfferError(2)))
    );
    assert_eq!(
        item_fut
            .as_mut()
            .poll(&mut Context::from_waker(&item_waker)),
        Poll::Ready(Err(OfferError("b".to_string())))
    );
}

#[test]
fn offer_async_from_another_thread() {
    let q = Arc::new(Q::new(1));
    q.try_offer_key(1).unwrap();
    let rx = spawn_result({
        let q = q.clone();
        move || block_on(q.offer_key_async(2))
    });
    assert_blocked(&rx);
    assert_eq!(q.take(), Ok(key(1)));
    assert_eq!(rx.recv_timeout(PATIENCE), Ok(Ok(Offered::Enqueued)));
}

#[test]
fn take_async_waits_then_succeeds() {
    let q = Q::new(2);
    let mut fut = pin!(q.take_async());
    assert_eq!(block_on(poll_once(&mut fut)), None, "empty: must wait");
    q.try_offer_key(6).unwrap();
    assert_eq!(block_on(fut), Ok(key(6)));

    let q = Arc::new(Q::new(2));
    let rx = spawn_result({
        let q = q.clone();
        move || block_on(q.take_async())
    });
    assert_blocked(&rx);
    q.offer_key(7).unwrap();
    assert_eq!(rx.recv_timeout(PATIENCE), Ok(Ok(key(7))));
}

#[test]
fn take_async_is_cancel_safe() {
    let q = Q::new(2);
    {
        let mut fut = pin!(q.take_async());
        assert_eq!(block_on(poll_once(&mut fut)), None);
        // Dropped here, registered but unresolved.
    }
    q.try_offer_key(1).unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q.try_take(), Ok(key(1)));

    // Dropped after the offer that woke it: still nothing lost.
    {
        let mut fut = pin!(q.take_async());
        assert_eq!(block_on(poll_once(&mut fut)), None);
        q.try_offer_key(2).unwrap();
    }
    assert_eq!(q.try_take(), Ok(key(2)));
}

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, SeqCst);
    }
}

fn flag_waker() -> (Arc<Flag>, Waker) {
    let flag = Arc::new(Flag(AtomicBool::new(false)));
    (flag.clone(), Waker::from(flag))
}

#[test]
fn dropped_take_async_passes_its_wake_up_on() {
    let q = Q::new(2);
    let (flag1, waker1) = flag_waker();
    let (flag2, waker2) = flag_waker();
    let mut first = Box::pin(q.take_async());
    let mut second = Box::pin(q.take_async());
    assert!(first
        .as_mut()
        .poll(&mut Context::from_waker(&waker1))
        .is_pending());
    assert!(second
        .as_mut()
        .poll(&mut Context::from_waker(&waker2))
        .is_pending());
    q.try_offer_key(1).unwrap();
    // One offer wakes one waiter.
    let woken_first = flag1.0.load(SeqCst);
    let woken_second = flag2.0.load(SeqCst);
    assert!(woken_first || woken_second, "nobody was woken by the offer");
    if woken_first {
        // The woken future is cancelled: its wake-up must reach the other.
        drop(first);
        assert!(flag2.0.load(SeqCst), "the wake-up was lost with the future");
        assert_eq!(
            second.as_mut().poll(&mut Context::from_waker(&waker2)),
            Poll::Ready(Ok(key(1)))
        );
    } else {
        drop(second);
        assert!(flag1.0.load(SeqCst), "the wake-up was lost with the future");
        assert_eq!(
            first.as_mut().poll(&mut Context::from_waker(&waker1)),
            Poll::Ready(Ok(key(1)))
        );
    }
}

/// The async form of `woken_offerer_that_coalesces_passes_the_wake_up_on`,
/// with no timing involved: the third future must be woken once the second
/// has coalesced without using the slot it was woken for.
#[test]
fn woken_async_offerer_that_coalesces_passes_the_wake_up_on() {
    let q = Q::new(2);
    q.try_offer_key(1).unwrap();
    q.try_offer_key(3).unwrap();
    let (flag_b1, waker_b1) = flag_waker();
    let (flag_b2, waker_b2) = flag_waker();
    let (flag_d, waker_d) = flag_waker();
    let mut b1 = Box::pin(q.offer_key_async(2));
    let mut b2 = Box::pin(q.offer_key_async(2));
    let mut d = Box::pin(q.offer_key_async(4));
    assert!(b1
        .as_mut()
        .poll(&mut Context::from_waker(&waker_b1))
        .is_pending());
    assert!(b2
        .as_mut()
        .poll(&mut Context::from_waker(&waker_b2))
        .is_pending());
    assert!(d
        .as_mut()
        .poll(&mut Context::from_waker(&waker_d))
        .is_pending());
    assert_eq!(q.try_take(), Ok(key(1)));
    assert_eq!(q.try_take(), Ok(key(3)));
    assert!(flag_b1.0.load(SeqCst) && flag_b2.0.load(SeqCst));
    assert_eq!(
        b1.as_mut().poll(&mut Context::from_waker(&waker_b1)),
        Poll::Ready(Ok(Offered::Enqueued))
    );
    assert_eq!(
        b2.as_mut().poll(&mut Context::from_waker(&waker_b2)),
        Poll::Ready(Ok(Offered::Coalesced))
    );
    assert!(!q.is_full(), "one slot is free");
    assert!(
        flag_d.0.load(SeqCst),
        "lost wake-up: the offerer of key 4 is not woken although a slot is free"
    );
    assert_eq!(
        d.as_mut().poll(&mut Context::from_waker(&waker_d)),
        Poll::Ready(Ok(Offered::Enqueued))
    );
}

#[test]
fn take_async_wakes_on_close() {
    let q = Q::new(2);
    let (flag, waker) = flag_waker();
    let mut fut = Box::pin(q.take_async());
    assert!(fut
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    q.close();
    assert!(flag.0.load(SeqCst), "close did not wake the take");
    assert_eq!(
        fut.as_mut().poll(&mut Context::from_waker(&waker)),
        Poll::Ready(Err(TakeError))
    );
}

// ----- drop counting -----

/// A pass-through item that counts its drops.
struct Counted {
    drops: Arc<AtomicUsize>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
    }
}

/// A key that counts the live copies of itself (clones included).
#[derive(Debug)]
struct LiveKey {
    id: u32,
    live: Arc<AtomicUsize>,
}

impl LiveKey {
    fn new(id: u32, live: &Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, SeqCst);
        Self {
            id,
            live: live.clone(),
        }
    }
}

impl Clone for LiveKey {
    fn clone(&self) -> Self {
        Self::new(self.id, &self.live)
    }
}

impl Drop for LiveKey {
    fn drop(&mut self) {
        self.live.fetch_sub(1, SeqCst);
    }
}

impl PartialEq for LiveKey {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for LiveKey {}

impl std::hash::Hash for LiveKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

#[test]
fn drops_items_left_in_the_queue() {
    let drops = Arc::new(AtomicUsize::new(0));
    let new = || Counted {
        drops: drops.clone(),
    };
    let q = CoalescingQueue::<u32, Counted>::new(8);
    for _ in 0..5 {
        assert!(q.try_offer(new()).is_ok());
    }
    q.try_offer_key(1).unwrap();
    drop(q.try_take().unwrap());
    drop(q.try_take().unwrap());
    assert_eq!(drops.load(SeqCst), 2);
    drop(q);
    assert_eq!(drops.load(SeqCst), 5);
}

#[test]
fn refused_items_are_handed_back_and_dropped_once() {
    let drops = Arc::new(AtomicUsize::new(0));
    let new = || Counted {
        drops: drops.clone(),
    };
    let q = CoalescingQueue::<u32, Counted>::new(1);
    assert!(q.try_offer(new()).is_ok());

    let full = q.try_offer(new()).unwrap_err();
    assert!(full.is_full());
    assert_eq!(drops.load(SeqCst), 0, "the refused value is handed back");
    drop(full);
    assert_eq!(drops.load(SeqCst), 1);

    let timeout = q
        .offer_timeout(new(), Duration::from_millis(1))
        .unwrap_err();
    assert!(timeout.is_timeout());
    assert_eq!(drops.load(SeqCst), 1);
    let value = timeout.into_inner();
    assert_eq!(drops.load(SeqCst), 1);
    drop(value);
    assert_eq!(drops.load(SeqCst), 2);

    q.close();
    let closed = q.try_offer(new()).unwrap_err();
    assert!(closed.is_closed());
    drop(closed);
    drop(q.offer(new()).unwrap_err());
    drop(block_on(q.offer_async(new())).unwrap_err());
    drop(q.offer_timeout(new(), Duration::ZERO).unwrap_err());
    assert_eq!(drops.load(SeqCst), 6);

    // The one accepted item is still inside; dropping the queue drops it.
    drop(q);
    assert_eq!(drops.load(SeqCst), 7);
}

#[test]
fn blocked_offerer_gets_its_item_back_on_close() {
    let drops = Arc::new(AtomicUsize::new(0));
    let q = Arc::new(CoalescingQueue::<u32, Counted>::new(1));
    assert!(q
        .try_offer(Counted {
            drops: drops.clone()
        })
        .is_ok());
    let rx = spawn_result({
        let q = q.clone();
        let drops = drops.clone();
        move || {
            let err = q.offer(Counted { drops }).unwrap_err();
            let value = err.into_inner();
            // Still alive here: handed back, not dropped inside.
            value.drops.load(SeqCst)
        }
    });
    assert_blocked(&rx);
    q.close();
    assert_eq!(rx.recv_timeout(PATIENCE), Ok(0));
    assert_eq!(drops.load(SeqCst), 1);
    drop(q);
    assert_eq!(drops.load(SeqCst), 2);
}

#[test]
fn async_offer_dropped_while_waiting_drops_its_item_once() {
    let drops = Arc::new(AtomicUsize::new(0));
    let q = CoalescingQueue::<u32, Counted>::new(1);
    assert!(q
        .try_offer(Counted {
            drops: drops.clone()
        })
        .is_ok());
    {
        let mut fut = pin!(q.offer_async(Counted {
            drops: drops.clone()
        }));
        assert!(block_on(poll_once(&mut fut)).is_none());
    }
    assert_eq!(drops.load(SeqCst), 1);
    assert_eq!(q.len(), 1);
    assert_eq!(q.claimed_slots(), 1);
    drop(q);
    assert_eq!(drops.load(SeqCst), 2);
}

#[test]
fn keys_are_not_leaked_or_double_dropped() {
    let live = Arc::new(AtomicUsize::new(0));
    {
        let q = CoalescingQueue::<LiveKey, String>::new(4);
        for id in 0..4 {
            q.try_offer_key(LiveKey::new(id, &live)).unwrap();
            q.try_offer_key(LiveKey::new(id, &live)).unwrap(); // coalesced
        }
        let refused = q.try_offer_key(LiveKey::new(9, &live)).unwrap_err();
        assert_eq!(refused.into_inner().id, 9);
        let taken = q.try_take().unwrap();
        assert_eq!(taken.key().map(|k| k.id), Some(0));
        drop(taken);
        let lease = q.try_take_leased().unwrap();
        lease.nack();
        q.close();
        drop(q.try_offer_key(LiveKey::new(1, &live)));
        assert!(live.load(SeqCst) > 0, "keys are still queued");
    }
    assert_eq!(
        live.load(SeqCst),
        0,
        "a key copy leaked or was dropped twice"
    );
}

// ----- stats -----

#[test]
fn stats_count_every_outcome() {
    let q = Q::new(2);
    assert_eq!(q.stats().offered, 0);
    assert_eq!(q.stats().high_water_mark, 0);
    assert_eq!(q.try_offer_key(1), Ok(Offered::Enqueued));
    assert_eq!(q.try_offer_key(1), Ok(Offered::Coalesced));
    q.try_offer("a".to_string()).unwrap();
    assert!(q.try_offer_key(2).unwrap_err().is_full());
    assert!(q
        .offer_timeout("b".to_string(), Duration::from_millis(1))
        .unwrap_err()
        .is_timeout());
    assert_eq!(q.try_take(), Ok(key(1)));
    let item_lease = q.try_take_leased().unwrap();
    assert_eq!(q.try_offer_key(1), Ok(Offered::Enqueued));
    let key_lease = q.try_take_leased().unwrap();
    assert_eq!(q.try_offer_key(1), Ok(Offered::Coalesced)); // in flight
    assert_eq!(q.try_offer_key(1), Ok(Offered::Coalesced)); // in flight, dirty
    q.close();
    assert!(q.try_offer_key(1).is_err());
    assert!(q.offer("c".to_string()).is_err());

    let s = q.stats();
    assert_eq!(s.enqueued, 3);
    assert_eq!(s.coalesced_queued, 1);
    assert_eq!(s.coalesced_in_flight, 2);
    assert_eq!(s.coalesced, 3);
    assert_eq!(s.full_rejections, 2);
    assert_eq!(s.closed_rejections, 2);
    assert_eq!(s.offered, 3 + 3 + 2 + 2);
    assert_eq!(s.taken, 3);
    assert_eq!(s.queued, 0);
    assert_eq!(s.in_flight, 2);
    assert_eq!(s.high_water_mark, 2);
    assert_eq!((s.acked, s.nacked, s.requeued_dirty), (0, 0, 0));

    key_lease.ack(); // dirty: queued again
    item_lease.nack();
    let s = q.stats();
    assert_eq!((s.acked, s.nacked, s.requeued_dirty), (1, 1, 1));
    assert_eq!((s.queued, s.in_flight), (2, 0));
    assert_eq!(drain(&q), [key(1), item("a")]);
    let s = q.stats();
    assert_eq!(s.taken, 5);
    assert_eq!(s.enqueued, 3, "requeues are not offers");
    assert_eq!(s.high_water_mark, 2);
}

/// More threads than the counters have stripes of their own (32), all
/// counting at once: those without one share stripes, and not one add may
/// be lost on either kind.
#[test]
fn stats_are_exact_with_more_threads_than_stripes() {
    const THREADS: u32 = 48;
    const ROUNDS: u32 = 10_000;
    // Room for every offer: a second offer enqueues again if another
    // thread took the first copy in between.
    let q = Q::new(2 * (THREADS * ROUNDS) as usize);
    let barrier = Barrier::new(THREADS as usize);
    let (enqueued, coalesced) = thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (q, barrier) = (&q, &barrier);
                s.spawn(move || {
                    let (mut enqueued, mut coalesced) = (0u64, 0u64);
                    barrier.wait();
                    for round in 0..ROUNDS {
                        let k = t * ROUNDS + round;
                        // Twice: coalesced, unless someone took it between.
                        for _ in 0..2 {
                            match q.try_offer_key(k) {
                                Ok(Offered::Enqueued) => enqueued += 1,
                                Ok(Offered::Coalesced) => coalesced += 1,
                                Err(e) => panic!("offer refused: {e:?}"),
                            }
                        }
                        // This thread's offers came first: never empty.
                        q.try_take().unwrap();
                    }
                    (enqueued, coalesced)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0), |(e, c), (te, tc)| (e + te, c + tc))
    });
    let s = q.stats();
    let takes = u64::from(THREADS * ROUNDS);
    assert_eq!(
        (s.enqueued, s.coalesced_queued, s.taken),
        (enqueued, coalesced, takes),
        "counts were lost"
    );
    assert_eq!(s.offered, 2 * takes);
}

#[test]
fn stats_high_water_mark_tracks_the_peak() {
    let q = Q::new(8);
    for k in 0..5 {
        q.try_offer_key(k).unwrap();
    }
    for _ in 0..5 {
        q.try_take().unwrap();
    }
    q.try_offer_key(1).unwrap();
    assert_eq!(q.stats().high_water_mark, 5);
    assert_eq!(q.stats().taken, 5);
}

// ----- Debug, Display, Entry -----

struct NoDebug;

#[test]
fn debug_output() {
    let q = Q::new(4);
    q.try_offer_key(1).unwrap();
    let text = format!("{q:?}");
    assert!(text.starts_with("CoalescingQueue"), "{text}");
    assert!(text.contains("capacity: 4"), "{text}");
    assert!(text.contains("claimed: 1"), "{text}");
    assert!(text.contains("closed: false"), "{text}");
    q.close();
    assert!(format!("{q:?}").contains("closed: true"));

    let builder = Q::builder().capacity(3);
    assert!(format!("{builder:?}").contains("Builder"));

    // Errors print without the payload being Debug.
    assert_eq!(format!("{:?}", TryOfferError::Full(NoDebug)), "Full(..)");
    assert_eq!(
        format!("{:?}", TryOfferError::Closed(NoDebug)),
        "Closed(..)"
    );
    assert_eq!(format!("{:?}", OfferError(NoDebug)), "Closed(..)");
    assert_eq!(
        format!("{:?}", OfferTimeoutError::Timeout(NoDebug)),
        "Timeout(..)"
    );
    assert_eq!(
        format!("{:?}", OfferTimeoutError::Closed(NoDebug)),
        "Closed(..)"
    );
    assert_eq!(format!("{:?}", TryTakeError::Empty), "Empty");
    assert_eq!(format!("{:?}", TryTakeError::Closed), "Closed");
    assert_eq!(format!("{:?}", TakeError), "Closed");
    assert_eq!(format!("{:?}", TakeTimeoutError::Timeout), "Timeout");

    // unwrap() on a non-Debug payload compiles and its message says Full.
    let q = CoalescingQueue::<u32, NoDebug>::new(1);
    assert!(q.try_offer(NoDebug).is_ok());
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        q.try_offer(NoDebug).unwrap();
    }))
    .unwrap_err();
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("Full(..)"), "{message}");

    // Display and std::error::Error for every error.
    let errors: Vec<Box<dyn std::error::Error>> = vec![
        Box::new(TryOfferError::Full(NoDebug)),
        Box::new(TryOfferError::Closed(NoDebug)),
        Box::new(OfferError(NoDebug)),
        Box::new(OfferTimeoutError::Timeout(NoDebug)),
        Box::new(OfferTimeoutError::Closed(NoDebug)),
        Box::new(TryTakeError::Empty),
        Box::new(TryTakeError::Closed),
        Box::new(TakeError),
        Box::new(TakeTimeoutError::Timeout),
        Box::new(TakeTimeoutError::Closed),
        Box::new(BuildError::MissingCapacity),
    ];
    for error in errors {
        assert!(!error.to_string().is_empty());
    }
    assert_ne!(
        TryOfferError::Full(()).to_string(),
        TryOfferError::Closed(()).to_string()
    );
    assert_ne!(
        TryTakeError::Empty.to_string(),
        TryTakeError::Closed.to_string()
    );
}

#[test]
fn error_predicates() {
    assert!(TryOfferError::Full(1).is_full());
    assert!(!TryOfferError::Full(1).is_closed());
    assert!(TryOfferError::Closed(1).is_closed());
    assert_eq!(TryOfferError::Closed(4).into_inner(), 4);
    assert!(TryTakeError::Empty.is_empty());
    assert!(!TryTakeError::Empty.is_closed());
    assert!(TryTakeError::Closed.is_closed());
    assert!(TakeTimeoutError::Closed.is_closed());
    assert!(!TakeTimeoutError::Closed.is_timeout());
    assert!(OfferTimeoutError::Closed(1).is_closed());
    assert_eq!(OfferError(3).into_inner(), 3);
}

#[test]
fn entry_into_item_materializes_keys_lazily() {
    let calls = AtomicUsize::new(0);
    let materialize = |k: u32| {
        calls.fetch_add(1, SeqCst);
        format!("done {k}")
    };
    let q = Q::new(4);
    q.try_offer("ready".to_string()).unwrap();
    q.try_offer_key(7).unwrap();
    q.try_offer_key(7).unwrap();
    let first = q.try_take().unwrap();
    assert!(first.is_item() && !first.is_key());
    assert_eq!(first.item().map(String::as_str), Some("ready"));
    assert_eq!(first.key(), None);
    assert_eq!(first.into_item(materialize), "ready");
    assert_eq!(calls.load(SeqCst), 0, "an item needs no materialization");
    let second = q.try_take().unwrap();
    assert!(second.is_key());
    assert_eq!(second.key(), Some(&7));
    assert_eq!(second.item(), None);
    assert_eq!(calls.load(SeqCst), 0, "nothing is built before into_item");
    assert_eq!(second.into_item(materialize), "done 7");
    assert_eq!(calls.load(SeqCst), 1);
}

// ----- threads -----

#[test]
fn spsc() {
    let _watchdog = Watchdog::new(Duration::from_secs(120), "spsc");
    let count = scaled(20_000) as u32;
    let q = Q::new(3);
    thread::scope(|s| {
        s.spawn(|| {
            for i in 0..count {
                let entry = q.take().unwrap();
                if i % 5 == 0 {
                    assert_eq!(entry, Entry::Item(i.to_string()));
                } else {
                    assert_eq!(entry, Entry::Key(i));
                }
            }
            assert_eq!(q.take(), Err(TakeError));
        });
        s.spawn(|| {
            for i in 0..count {
                if i % 5 == 0 {
                    q.offer(i.to_string()).unwrap();
                } else {
                    assert_eq!(q.offer_key(i), Ok(Offered::Enqueued));
                }
            }
            q.close();
        });
    });
    assert_eq!(q.pending_keys(), 0);
    assert_eq!(q.claimed_slots(), 0);
    assert!(q.stats().high_water_mark <= 3);
}

#[test]
fn mpmc() {
    let _watchdog = Watchdog::new(Duration::from_secs(120), "mpmc");
    const PRODUCERS: u32 = 4;
    const CONSUMERS: usize = 2;
    let per = scaled(5_000) as u32;
    let total = (PRODUCERS * per) as usize;
    let q = Q::new(8);
    let seen: Vec<AtomicUsize> = (0..total).map(|_| AtomicUsize::new(0)).collect();
    let producers_done = Barrier::new(PRODUCERS as usize + 1);

    thread::scope(|s| {
        for _ in 0..CONSUMERS {
            s.spawn(|| {
                // Each producer's keys reach one consumer in increasing order.
                let mut last = [None::<u32>; PRODUCERS as usize];
                while let Ok(entry) = q.take() {
                    let Entry::Key(k) = entry else {
                        panic!("no items were offered")
                    };
                    let p = (k / per) as usize;
                    assert!(last[p] < Some(k), "per-producer FIFO broken");
                    last[p] = Some(k);
                    seen[k as usize].fetch_add(1, SeqCst);
                }
            });
        }
        for p in 0..PRODUCERS {
            let q = &q;
            let producers_done = &producers_done;
            s.spawn(move || {
                for i in 0..per {
                    let k = p * per + i;
                    let offered = if i % 2 == 0 {
                        q.offer_key(k)
                    } else {
                        loop {
                            match q.try_offer_key(k) {
                                Ok(offered) => break Ok(offered),
                                Err(TryOfferError::Full(_)) => thread::yield_now(),
                                Err(TryOfferError::Closed(k)) => break Err(OfferError(k)),
                            }
                        }
                    };
                    assert_eq!(offered, Ok(Offered::Enqueued));
                }
                producers_done.wait();
            });
        }
        producers_done.wait();
        q.close();
    });
    for (k, n) in seen.iter().enumerate() {
        assert_eq!(
            n.load(SeqCst),
            1,
            "key {k} delivered a wrong number of times"
        );
    }
    assert_eq!(q.pending_keys(), 0);
    assert_eq!(q.claimed_slots(), 0);
    let stats = q.stats();
    assert_eq!(stats.taken, total as u64);
    assert_eq!(stats.enqueued, total as u64);
    assert!(stats.high_water_mark <= 8);
}

#[test]
fn mpmc_coalescing_delivers_each_key_at_least_once_after_its_offers() {
    let _watchdog = Watchdog::new(
        Duration::from_secs(120),
        "mpmc_coalescing_delivers_each_key_at_least_once_after_its_offers",
    );
    // Many producers hammer a few keys; a key's deliveries equal the offers
    // that returned Enqueued.
    const KEYS: u32 = 4;
    let rounds = scaled(5_000);
    let q = Q::new(2);
    let enqueued: Vec<AtomicUsize> = (0..KEYS).map(|_| AtomicUsize::new(0)).collect();
    let delivered: Vec<AtomicUsize> = (0..KEYS).map(|_| AtomicUsize::new(0)).collect();
    let done = Barrier::new(4);
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while let Ok(Entry::Key(k)) = q.take() {
                    delivered[k as usize].fetch_add(1, SeqCst);
                }
            });
        }
        for p in 0..3u32 {
            let (q, enqueued, done) = (&q, &enqueued, &done);
            s.spawn(move || {
                for i in 0..rounds as u32 {
                    let k = (i + p) % KEYS;
                    if q.offer_key(k) == Ok(Offered::Enqueued) {
                        enqueued[k as usize].fetch_add(1, SeqCst);
                    }
                }
                done.wait();
            });
        }
        done.wait();
        q.close();
    });
    for k in 0..KEYS as usize {
        assert_eq!(
            delivered[k].load(SeqCst),
            enqueued[k].load(SeqCst),
            "key {k}"
        );
        assert!(delivered[k].load(SeqCst) > 0);
    }
    assert_eq!(q.pending_keys(), 0);
    assert_eq!(q.claimed_slots(), 0);
}

#[test]
fn linearizable() {
    let _watchdog = Watchdog::new(Duration::from_secs(120), "linearizable");
    // Like crossbeam's: THREADS threads each offer one new key then take one;
    // with capacity THREADS the offer always finds room and the take always
    // finds an entry (there is at least the taker's own).
    const THREADS: usize = 4;
    let count = scaled(5_000) as u32;
    let q = Q::new(THREADS);
    thread::scope(|s| {
        for t in 0..THREADS as u32 {
            let q = &q;
            s.spawn(move || {
                for i in 0..count {
                    let k = t * count + i;
                    if i % 2 == 0 {
                        assert_eq!(q.try_offer_key(k), Ok(Offered::Enqueued));
                        q.try_take().expect("an entry must be there");
                    } else {
                        assert_eq!(q.try_offer(k.to_string()), Ok(()));
                        let lease = q.try_take_leased().expect("an entry must be there");
                        lease.ack();
                    }
                }
            });
        }
    });
    assert!(q.is_empty());
    assert_eq!(q.pending_keys(), 0);
    assert_eq!(q.claimed_slots(), 0);
    assert!(q.stats().high_water_mark <= THREADS);
    assert_eq!(q.stats().taken, THREADS as u64 * count as u64);
}
