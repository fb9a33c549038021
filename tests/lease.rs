//! Leases: in-flight keys stay deduplicated until ack; nack and drop requeue;
//! `InFlightPolicy`; slots held by leases; close with leases out;
//! `close_and_wait`; lease stats; G6 after everything is acked.

use coalescing_queue::{
    CoalescingQueue, Entry, InFlightPolicy, Lease, OfferTimeoutError, Offered, TakeError,
    TakeTimeoutError, TryOfferError, TryTakeError,
};
use crossbeam_channel::{bounded, Receiver};
use futures_lite::future::{block_on, poll_once};
use std::pin::pin;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

type Q = CoalescingQueue<u32, String>;

const SETTLE: Duration = Duration::from_millis(50);
const PATIENCE: Duration = Duration::from_secs(10);

fn spawn_result<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Receiver<T> {
    let (tx, rx) = bounded(1);
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

fn assert_blocked<T>(rx: &Receiver<T>) {
    thread::sleep(SETTLE);
    assert!(
        rx.try_recv().is_err(),
        "the call returned although it should block"
    );
}

fn key(k: u32) -> Entry<u32, String> {
    Entry::Key(k)
}

fn item(s: &str) -> Entry<u32, String> {
    Entry::Item(s.to_string())
}

fn drain(q: &Q) -> Vec<Entry<u32, String>> {
    let mut out = Vec::new();
    while let Ok(entry) = q.try_take() {
        out.push(entry);
    }
    out
}

fn with_policy(capacity: usize, policy: InFlightPolicy) -> Q {
    Q::builder()
        .capacity(capacity)
        .in_flight_policy(policy)
        .build()
}

fn assert_no_leak(q: &Q) {
    assert_eq!(q.pending_keys(), 0, "a key is still in the map (G6)");
    assert_eq!(q.claimed_slots(), 0, "a slot is still claimed (G6)");
    assert_eq!(q.in_flight(), 0);
}

// ----- basics -----

#[test]
fn lease_derefs_to_entry() {
    let q = Q::new(4);
    q.try_offer_key(5).unwrap();
    q.try_offer("x".to_string()).unwrap();
    let lease = q.try_take_leased().unwrap();
    assert_eq!(*lease, key(5));
    assert_eq!(lease.entry(), &key(5));
    assert_eq!(lease.key(), Some(&5)); // Entry's methods through Deref
    assert!(lease.is_key());
    assert!(lease.age() < Duration::from_secs(60));
    let text = format!("{lease:?}");
    assert!(text.contains("Lease") && text.contains("Key(5)"), "{text}");
    let lease2 = q.try_take_leased().unwrap();
    assert_eq!(lease2.item().map(String::as_str), Some("x"));
    lease.ack();
    lease2.ack();
    assert_no_leak(&q);
}

#[test]
fn ack_removes_the_key() {
    let q = Q::new(4);
    q.try_offer_key(1).unwrap();
    let lease = q.try_take_leased().unwrap();
    assert!(q.is_pending(&1), "a leased key stays pending");
    assert_eq!((q.len(), q.in_flight()), (0, 1));
    assert_eq!(q.claimed_slots(), 1);
    lease.ack();
    assert!(!q.is_pending(&1));
    assert_eq!(q.try_take(), Err(TryTakeError::Empty));
    assert_no_leak(&q);
    // A later offer is a new copy.
    assert_eq!(q.try_offer_key(1), Ok(Offered::Enqueued));
}

#[test]
fn nack_requeues_at_the_tail() {
    let q = Q::new(4);
    for k in [1, 2, 3] {
        q.try_offer_key(k).unwrap();
    }
    let lease = q.try_take_leased().unwrap();
    assert_eq!(*lease, key(1));
    lease.nack();
    assert_eq!(q.in_flight(), 0);
    assert!(q.is_pending(&1));
    // Still one copy: a re-offer is coalesced into the requeued one.
    assert_eq!(q.try_offer_key(1), Ok(Offered::Coalesced));
    assert_eq!(drain(&q), [key(2), key(3), key(1)]);
    assert_no_leak(&q);
}

#[test]
fn dropping_a_lease_is_a_nack() {
    let q = Q::new(4);
    q.try_offer_key(1).unwrap();
    q.try_offer_key(2).unwrap();
    drop(q.try_take_leased().unwrap());
    assert_eq!(q.in_flight(), 0);
    assert_eq!(q.stats().nacked, 1);
    assert_eq!(drain(&q), [key(2), key(1)]);
    assert_no_leak(&q);
}

#[test]
fn items_can_be_leased_nacked_and_acked() {
    let q = Q::new(3);
    q.try_offer("a".to_string()).unwrap();
    q.try_offer_key(1).unwrap();
    let lease = q.try_take_leased().unwrap();
    assert_eq!(*lease, item("a"));
    assert_eq!(q.claimed_slots(), 2, "a leased item keeps its slot");
    lease.nack();
    assert_eq!(q.len(), 2);
    assert_eq!(q.try_take(), Ok(key(1)));
    let lease = q.try_take_leased().unwrap();
    assert_eq!(*lease, item("a"));
    drop(lease); // nack
    let lease = q.try_take_leased().unwrap();
    assert_eq!(*lease, item("a"));
    lease.ack();
    assert_eq!(q.try_take(), Err(TryTakeError::Empty));
    assert_no_leak(&q);
}

// ----- batches -----

#[test]
fn lease_batch_len_iter_entries_ack() {
    let q = Q::new(8);
    for k in 1..=3 {
        q.try_offer_key(k).unwrap();
    }
    q.try_offer("i".to_string()).unwrap();
    let batch = q.take_batch_leased(3, Duration::ZERO);
    assert_eq!(batch.len(), 3, "max is respected");
    assert!(!batch.is_empty());
    assert_eq!(batch.entries(), [key(1), key(2), key(3)]);
    assert_eq!(batch.iter().filter_map(Entry::key).sum::<u32>(), 6);
    assert_eq!((&batch).into_iter().count(), 3);
    assert!(format!("{batch:?}").contains("LeaseBatch"));
    assert_eq!((q.len(), q.in_flight()), (1, 3));
    for k in 1..=3 {
        assert!(q.is_pending(&k));
    }
    batch.ack();
    assert_eq!((q.len(), q.in_flight()), (1, 0));
    assert_eq!(q.pending_keys(), 0);
    assert_eq!(q.stats().acked, 3);
    assert_eq!(drain(&q), [item("i")]);
    assert_no_leak(&q);
}

#[test]
fn lease_batch_nack_and_drop_requeue_in_order() {
    let q = Q::new(8);
    for k in 1..=4 {
        q.try_offer_key(k).unwrap();
    }
    let batch = q.take_batch_leased(2, Duration::ZERO);
    assert_eq!(batch.entries(), [key(1), key(2)]);
    batch.nack();
    let batch = q.take_batch_leased(2, Duration::ZERO);
    assert_eq!(batch.entries(), [key(3), key(4)]);
    drop(batch);
    assert_eq!(q.in_flight(), 0);
    assert_eq!(q.stats().nacked, 4);
    assert_eq!(drain(&q), [key(1), key(2), key(3), key(4)]);
    assert_no_leak(&q);
}

#[test]
fn lease_batch_into_leases_ends_one_by_one() {
    let q = Q::new(8);
    for k in 1..=3 {
        q.try_offer_key(k).unwrap();
    }
    let mut leases = q.take_batch_leased(8, Duration::ZERO).into_leases();
    assert_eq!(leases.len(), 3);
    assert_eq!(q.in_flight(), 3);
    let third = leases.pop().unwrap();
    let second = leases.pop().unwrap();
    let first = leases.pop().unwrap();
    assert_eq!((*first).clone(), key(1));
    third.nack();
    first.ack();
    assert_eq!((q.len(), q.in_flight()), (1, 1));
    assert!(
        q.stats().oldest_lease_age.is_some(),
        "one lease is still out"
    );
    drop(second); // nack
    assert_eq!(q.stats().oldest_lease_age, None);
    assert_eq!(drain(&q), [key(3), key(2)]);
    assert_no_leak(&q);
}

#[test]
fn take_batch_leased_max_zero_and_close() {
    let q = Q::new(4);
    q.try_offer_key(1).unwrap();
    // max 0 is refused, and takes nothing.
    let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        drop(q.take_batch_leased(0, Duration::from_secs(60)));
    }));
    assert!(refused.is_err());
    assert_eq!((q.len(), q.in_flight()), (1, 0));
    q.close();
    let batch = q.take_batch_leased(4, Duration::from_secs(60));
    assert_eq!(batch.entries(), [key(1)]);
    batch.ack();
    let batch = q.take_batch_leased(4, Duration::from_secs(60));
    assert!(batch.is_empty(), "closed and drained");
    assert_eq!(batch.len(), 0);
    batch.ack();
    assert_no_leak(&q);
}

#[test]
fn take_batch_leased_linger_gathers_late_entries() {
    let q = Arc::new(Q::new(8));
    q.try_offer_key(0).unwrap();
    let offerer = {
        let q = q.clone();
        thread::spawn(move || {
            for k in 1..3 {
                thread::sleep(Duration::from_millis(10));
                q.offer_key(k).unwrap();
            }
        })
    };
    let start = Instant::now();
    let batch = q.take_batch_leased(3, Duration::from_secs(30));
    assert!(start.elapsed() < Duration::from_secs(30));
    assert_eq!(batch.entries(), [key(0), key(1), key(2)]);
    batch.ack();
    offerer.join().unwrap();
    assert_no_leak(&q);
}

#[test]
fn take_batch_leased_waits_for_the_first_entry() {
    let q = Arc::new(Q::new(8));
    let rx = spawn_result({
        let q = q.clone();
        move || {
            let batch = q.take_batch_leased(4, Duration::ZERO);
            let entries = batch.entries().to_vec();
            batch.ack();
            entries
        }
    });
    assert_blocked(&rx);
    q.try_offer_key(9).unwrap();
    assert_eq!(rx.recv_timeout(PATIENCE), Ok(vec![key(9)]));
    assert_no_leak(&q);
}

// ----- blocking, timeout and async leased takes -----

#[test]
fn take_leased_blocks_until_an_offer() {
    let q = Arc::new(Q::new(2));
    let rx = spawn_result({
        let q = q.clone();
        move || {
            let lease = q.take_leased().unwrap();
            let entry = (*lease).clone();
            lease.ack();
            entry
        }
    });
    assert_blocked(&rx);
    q.try_offer_key(4).unwrap();
    assert_eq!(rx.recv_timeout(PATIENCE), Ok(key(4)));
    assert_no_leak(&q);
}

#[test]
fn blocked_take_wakes_on_nack() {
    let q = Arc::new(Q::new(2));
    q.try_offer_key(1).unwrap();
    let lease = q.try_take_leased().unwrap();
    let rx = spawn_result({
        let q = q.clone();
        move || q.take()
    });
    assert_blocked(&rx);
    lease.nack();
    assert_eq!(rx.recv_timeout(PATIENCE), Ok(Ok(key(1))));
    assert_no_leak(&q);
}

#[test]
fn blocked_offerer_wakes_on_ack() {
    let q = Arc::new(Q::new(1));
    q.try_offer_key(1).unwrap();
    let lease = q.try_take_leased().unwrap();
    let rx = spawn_result({
        let q = q.clone();
        move || q.offer_key(2)
    });
    assert_blocked(&rx);
    lease.ack();
    assert_eq!(rx.recv_timeout(PATIENCE), Ok(Ok(Offered::Enqueued)));
    assert_eq!(q.try_take(), Ok(key(2)));
    assert_no_leak(&q);
}

#[test]
fn take_leased_timeout_forms() {
    let q = Arc::new(Q::new(2));
    let t = Duration::from_millis(30);
    let start = Instant::now();
    assert_eq!(
        q.take_leased_timeout(t).unwrap_err(),
        TakeTimeoutError::Timeout
    );
    assert!(start.elapsed() >= t);
    let offerer = {
        let q = q.clone();
        thread::spawn(move || {
            thread::sleep(SETTLE);
            q.offer_key(3).unwrap()
        })
    };
    let lease = q.take_leased_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(*lease, key(3));
    offerer.join().unwrap();
    lease.ack();
    q.close();
    assert_eq!(
        q.take_leased_timeout(t).unwrap_err(),
        TakeTimeoutError::Closed
    );
    assert_eq!(q.take_leased().unwrap_err(), TakeError);
    assert_eq!(q.try_take_leased().unwrap_err(), TryTakeError::Closed);
    assert_no_leak(&q);
}

#[test]
fn take_leased_async_waits_then_succeeds() {
    let q = Q::new(2);
    {
        let mut fut = pin!(q.take_leased_async());
        assert!(block_on(poll_once(&mut fut)).is_none(), "empty: must wait");
        q.try_offer_key(8).unwrap();
        let lease = block_on(fut).unwrap();
        assert_eq!(*lease, key(8));
        lease.ack();
    }
    q.close();
    assert_eq!(block_on(q.take_leased_async()).unwrap_err(), TakeError);
    assert_no_leak(&q);
}

#[test]
fn take_leased_async_is_cancel_safe() {
    let q = Q::new(2);
    {
        let mut fut = pin!(q.take_leased_async());
        assert!(block_on(poll_once(&mut fut)).is_none());
    }
    q.try_offer_key(1).unwrap();
    assert_eq!(q.in_flight(), 0, "a dropped future leases nothing");
    assert_eq!(q.try_take(), Ok(key(1)));
    assert_no_leak(&q);
}

// ----- in-flight policy -----

#[test]
fn requeue_reoffer_while_in_flight_is_delivered_once_more_after_ack() {
    let q = with_policy(4, InFlightPolicy::Requeue);
    assert_eq!(q.in_flight_policy(), InFlightPolicy::Requeue);
    q.try_offer_key(1).unwrap();
    let lease = q.try_take_leased().unwrap();
    for _ in 0..5 {
        assert_eq!(q.try_offer_key(1), Ok(Offered::Coalesced));
        assert_eq!(q.offer_key(1), Ok(Offered::Coalesced));
        assert_eq!(block_on(q.offer_key_async(1)), Ok(Offered::Coalesced));
        assert_eq!(
            q.offer_key_timeout(1, Duration::ZERO),
            Ok(Offered::Coalesced)
        );
    }
    assert_eq!(q.len(), 0, "never a second copy while the first is out");
    assert_eq!(q.try_take(), Err(TryTakeError::Empty));
    assert_eq!(q.claimed_slots(), 1);
    lease.ack();
    assert_eq!(q.len(), 1);
    assert_eq!(q.in_flight(), 0);
    assert!(q.is_pending(&1));
    let s = q.stats();
    assert_eq!(
        (s.acked, s.requeued_dirty, s.coalesced_in_flight),
        (1, 1, 20)
    );
    let again = q.try_take_leased().unwrap();
    assert_eq!(*again, key(1));
    again.ack();
    // Delivered exactly once more: nothing left.
    assert_eq!(q.try_take(), Err(TryTakeError::Empty));
    assert_no_leak(&q);
}

#[test]
fn requeue_is_the_default() {
    let q = Q::new(2);
    assert_eq!(q.in_flight_policy(), InFlightPolicy::Requeue);
    assert_eq!(InFlightPolicy::default(), InFlightPolicy::Requeue);
    q.try_offer_key(1).unwrap();
    let lease = q.try_take_leased().unwrap();
    assert_eq!(q.try_offer_key(1), Ok(Offered::Coalesced));
    lease.ack();
    assert_eq!(q.try_take(), Ok(key(1)));
    assert_no_leak(&q);
}

#[test]
fn requeue_dirty_then_nack_gives_one_copy() {
    let q = with_policy(4, InFlightPolicy::Requeue);
    q.try_offer_key(1).unwrap();
    let lease = q.try_take_leased().unwrap();
    assert_eq!(q.try_offer_key(1), Ok(Offered::Coalesced));
    lease.nack();
    assert_eq!(q.len(), 1, "nack of a dirty key queues one copy");
    let lease = q.try_take_leased().unwrap();
    assert_eq!(*lease, key(1));
    lease.ack();
    assert_eq!(q.try_take(), Err(TryTakeError::Empty));
    assert_no_leak(&q);
}

#[test]
fn requeue_with_plain_take_after_dirty_ack() {
    // The requeued copy can be taken with a plain take too.
    let q = with_policy(2, InFlightPolicy::Requeue);
    q.try_offer_key(1).unwrap();
    let lease = q.try_take_leased().unwrap();
    q.try_offer_key(1).unwrap();
    lease.ack();
    assert_eq!(q.try_take(), Ok(key(1)));
    assert_eq!(q.try_offer_key(1), Ok(Offered::Enqueued));
    assert_eq!(q.try_take(), Ok(key(1)));
    assert_no_leak(&q);
}

#[test]
fn drop_policy_absorbs_reoffers_while_in_flight() {
    let q = with_policy(4, InFlightPolicy::Absorb);
    q.try_offer_key(1).unwrap();
    let lease = q.try_take_leased().unwrap();
    for _ in 0..3 {
        assert_eq!(q.try_offer_key(1), Ok(Offered::Coalesced));
    }
    assert_eq!(q.len(), 0);
    lease.ack();
    assert_eq!(
        q.try_take(),
        Err(TryTakeError::Empty),
        "not delivered again"
    );
    assert!(!q.is_pending(&1));
    let s = q.stats();
    assert_eq!((s.coalesced_in_flight, s.requeued_dirty), (3, 0));
    assert_no_leak(&q);
    // A nacked key under Drop is still requeued.
    q.try_offer_key(2).unwrap();
    let lease = q.try_take_leased().unwrap();
    assert_eq!(q.try_offer_key(2), Ok(Offered::Coalesced));
    lease.nack();
    assert_eq!(drain(&q), [key(2)]);
    assert_no_leak(&q);
}

// ----- slots -----

#[test]
fn in_flight_keys_keep_their_slot() {
    let q = Q::new(1);
    q.try_offer_key(1).unwrap();
    let lease = q.try_take_leased().unwrap();
    assert!(q.is_empty());
    assert!(q.is_full());
    assert_eq!(q.try_offer_key(2), Err(TryOfferError::Full(2)));
    assert_eq!(
        q.try_offer("x".to_string()),
        Err(TryOfferError::Full("x".to_string()))
    );
    assert_eq!(
        q.offer_key_timeout(2, Duration::from_millis(1)),
        Err(OfferTimeoutError::Timeout(2))
    );
    // A re-offer of the in-flight key needs no slot.
    assert_eq!(q.try_offer_key(1), Ok(Offered::Coalesced));
    assert_eq!(q.offer_key(1), Ok(Offered::Coalesced));
    lease.ack(); // dirty: requeued into its own slot
    assert_eq!(q.len(), 1);
    assert!(q.is_full());
    assert_eq!(q.try_offer_key(2), Err(TryOfferError::Full(2)));
    assert_eq!(q.try_take(), Ok(key(1)));
    assert_eq!(q.try_offer_key(2), Ok(Offered::Enqueued));
    assert_eq!(q.try_take(), Ok(key(2)));
    assert_no_leak(&q);
}

#[test]
fn queued_plus_in_flight_never_exceed_capacity() {
    let q = Q::new(3);
    for k in 0..3 {
        q.try_offer_key(k).unwrap();
    }
    let a = q.try_take_leased().unwrap();
    let b = q.try_take_leased().unwrap();
    assert_eq!(q.len() + q.in_flight(), 3);
    assert!(q.try_offer_key(10).unwrap_err().is_full());
    q.try_take().unwrap();
    assert_eq!(q.try_offer_key(10), Ok(Offered::Enqueued));
    assert!(q.try_offer_key(11).unwrap_err().is_full());
    assert_eq!(q.len() + q.in_flight(), 3);
    assert_eq!(q.stats().high_water_mark, 3);
    a.ack();
    b.nack();
    assert_eq!(q.len() + q.in_flight(), 2);
    drain(&q);
    assert_no_leak(&q);
}

#[test]
fn nack_and_dirty_ack_never_fail_for_lack_of_room() {
    let q = Q::new(2);
    q.try_offer_key(1).unwrap();
    q.try_offer_key(2).unwrap();
    let one = q.try_take_leased().unwrap();
    let two = q.try_take_leased().unwrap();
    q.try_offer_key(3).unwrap_err(); // full: both slots are leased
    q.try_offer_key(2).unwrap(); // dirty
    one.nack();
    two.ack(); // dirty: requeued
    assert_eq!(q.len(), 2);
    assert!(q.is_full());
    assert_eq!(drain(&q), [key(1), key(2)]);
    assert_no_leak(&q);

    // And when the slots freed by the leases were given to nobody else:
    // fill with a queued entry and a lease, then nack.
    let q = Q::new(2);
    q.try_offer("a".to_string()).unwrap();
    let lease = q.try_take_leased().unwrap();
    q.try_offer_key(5).unwrap();
    assert!(q.is_full());
    lease.nack();
    assert_eq!(drain(&q), [key(5), item("a")]);
    assert_no_leak(&q);
}

// ----- close -----

#[test]
fn leases_ack_and_nack_after_close() {
    let q = Q::new(4);
    for k in 1..=3 {
        q.try_offer_key(k).unwrap();
    }
    let one = q.try_take_leased().unwrap();
    let two = q.try_take_leased().unwrap();
    let three = q.try_take_leased().unwrap();
    assert!(q.close());
    // Re-offers are refused after close, even of in-flight keys.
    assert_eq!(q.try_offer_key(2), Err(TryOfferError::Closed(2)));
    // Nothing queued, but leases are out and a nack may bring an entry
    // back: not Closed yet (Closed is final).
    assert_eq!(q.try_take().unwrap_err(), TryTakeError::Empty);
    assert_eq!(
        q.take_timeout(Duration::from_millis(1)),
        Err(TakeTimeoutError::Timeout)
    );
    one.ack();
    two.nack();
    drop(three);
    // Nacked entries are queued again and drained like the rest.
    assert_eq!(q.len(), 2);
    let again = q.try_take_leased().unwrap();
    assert_eq!(*again, key(2));
    again.ack();
    assert_eq!(q.take(), Ok(key(3)));
    assert_eq!(q.take(), Err(TakeError));
    assert_no_leak(&q);
}

#[test]
fn dirty_ack_after_close_is_still_delivered() {
    let q = Q::new(2);
    q.try_offer_key(1).unwrap();
    let lease = q.try_take_leased().unwrap();
    q.try_offer_key(1).unwrap(); // dirty, accepted before close
    q.close();
    lease.ack();
    assert_eq!(q.try_take(), Ok(key(1)), "an accepted offer is not lost");
    assert_eq!(q.try_take(), Err(TryTakeError::Closed));
    assert_no_leak(&q);
}

#[test]
fn close_and_wait_waits_for_leases() {
    let q = Arc::new(Q::new(4));
    q.try_offer_key(1).unwrap();
    let lease = q.try_take_leased().unwrap();
    assert!(
        !q.close_and_wait(Duration::from_millis(20)),
        "a lease is out"
    );
    assert!(q.is_closed());
    drop(lease); // nack: queued again, still not finished
    assert!(
        !q.close_and_wait(Duration::from_millis(20)),
        "an entry is queued"
    );

    let (started_tx, started_rx) = bounded(1);
    let acker = {
        let q = q.clone();
        thread::spawn(move || {
            let lease = q.try_take_leased().unwrap();
            started_tx.send(()).unwrap();
            thread::sleep(Duration::from_millis(100));
            lease.ack();
        })
    };
    started_rx.recv().unwrap();
    let start = Instant::now();
    assert!(q.close_and_wait(Duration::from_secs(30)));
    let waited = start.elapsed();
    assert!(waited < Duration::from_secs(30));
    acker.join().unwrap();
    assert_no_leak(&q);
    assert!(q.close_and_wait(Duration::ZERO));
}

#[test]
fn close_and_wait_waits_for_queued_entries() {
    let q = Arc::new(Q::new(4));
    q.try_offer_key(1).unwrap();
    q.try_offer("a".to_string()).unwrap();
    let taker = {
        let q = q.clone();
        thread::spawn(move || {
            thread::sleep(SETTLE);
            let mut got = Vec::new();
            while let Ok(entry) = q.take() {
                got.push(entry);
            }
            got
        })
    };
    assert!(q.close_and_wait(Duration::from_secs(30)));
    assert_eq!(taker.join().unwrap(), [key(1), item("a")]);
    assert_no_leak(&q);
}

#[test]
fn close_and_wait_on_an_empty_queue_returns_true() {
    let q = Q::new(4);
    assert!(q.close_and_wait(Duration::ZERO));
    assert!(q.is_closed());
}

// ----- stats -----

#[test]
fn lease_stats() {
    let q = Q::new(4);
    assert_eq!(q.stats().oldest_lease_age, None);
    q.try_offer_key(1).unwrap();
    q.try_offer_key(2).unwrap();
    let lease = q.try_take_leased().unwrap();
    thread::sleep(Duration::from_millis(20));
    let s = q.stats();
    assert_eq!(s.in_flight, 1);
    let age = s.oldest_lease_age.expect("a lease is out");
    assert!(age >= Duration::from_millis(20), "{age:?}");
    assert!(lease.age() >= Duration::from_millis(20));

    let batch = q.take_batch_leased(4, Duration::ZERO);
    assert_eq!(q.stats().in_flight, 2);
    // The oldest is still the first lease.
    assert!(q.stats().oldest_lease_age.unwrap() >= Duration::from_millis(20));
    lease.ack();
    let s = q.stats();
    assert_eq!((s.acked, s.in_flight), (1, 1));
    assert!(s.oldest_lease_age.is_some());
    batch.nack();
    let s = q.stats();
    assert_eq!((s.nacked, s.in_flight), (1, 0));
    assert_eq!(s.oldest_lease_age, None);

    let lease = q.try_take_leased().unwrap();
    q.try_offer_key(2).unwrap();
    lease.ack();
    let s = q.stats();
    assert_eq!((s.acked, s.requeued_dirty), (2, 1));
    assert_eq!(s.taken, 3);
    assert_eq!(s.queued, 1);
    assert_eq!(s.oldest_lease_age, None);
    drain(&q);
    assert_no_leak(&q);
}

// ----- G6 -----

#[test]
fn nothing_is_leaked_after_everything_is_acked() {
    for policy in [InFlightPolicy::Requeue, InFlightPolicy::Absorb] {
        let q = with_policy(8, policy);
        let mut round = 0u32;
        for k in 0..6 {
            q.try_offer_key(k).unwrap();
        }
        q.try_offer("a".to_string()).unwrap();
        loop {
            round += 1;
            // Single thread: close before a take that would block for ever.
            if round == 4 || q.is_empty() {
                q.close();
            }
            let batch = q.take_batch_leased(3, Duration::ZERO);
            if batch.is_empty() {
                break;
            }
            for entry in &batch {
                if let Entry::Key(k) = entry {
                    // Re-offer while in flight now and then.
                    if (k + round) % 3 == 0 {
                        let _ = q.try_offer_key(*k);
                    }
                }
            }
            match round % 3 {
                0 => batch.nack(),
                1 => batch.ack(),
                _ => {
                    let leases: Vec<Lease<'_, u32, String>> = batch.into_leases();
                    for (i, lease) in leases.into_iter().enumerate() {
                        if i % 2 == 0 {
                            lease.ack();
                        }
                    }
                }
            }
            if round > 200 {
                panic!("never drained");
            }
        }
        assert!(q.is_closed());
        assert_no_leak(&q);
        assert!(q.close_and_wait(Duration::ZERO));
    }
}
