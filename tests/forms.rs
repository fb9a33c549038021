//! The newest public forms: deadline offers and takes, batch takes with a
//! timeout, async batch takes (and their cancel safety), owned leases and
//! batches, shutdown (`close_and_wait`, its async form, `Producer`), and the
//! deprecated old names. Most tests are generic over the key store and run
//! on both (`general::*` and `compact::*`).

use coalescing_queue::{
    Builder, CoalescingQueue, Compact, DefaultHashBuilder, Entry, InFlightPolicy, KeyStore,
    OfferTimeoutError, Offered, OwnedLease, OwnedLeaseBatch, TakeTimeoutError, TryTakeError,
};
use crossbeam_channel::{bounded, Receiver};
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

type Q<S> = CoalescingQueue<u64, String, S>;
type E = Entry<u64, String>;

/// What the generic tests need of a key store (for `u64` keys).
trait Store: KeyStore<u64> + Default + Send + Sync + 'static {}
impl<S: KeyStore<u64> + Default + Send + Sync + 'static> Store for S {}

/// Long enough for a waiter to block (only ever checked one way).
const SETTLE: Duration = Duration::from_millis(50);
/// A timeout or linger that the tests wait out.
const SHORT: Duration = Duration::from_millis(50);
/// A timeout or linger that must never be waited out.
const LONG: Duration = Duration::from_secs(10);
/// The most a call that should return "at once" or "promptly" may take.
const QUICK: Duration = Duration::from_secs(2);
/// How long to wait for a result that should come (else the test fails).
const PATIENCE: Duration = Duration::from_secs(5);

// ----- helpers -----

/// Runs `f` on a new thread; its result arrives on the receiver.
fn spawn_result<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Receiver<T> {
    let (tx, rx) = bounded(1);
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

/// The result of a `spawn_result` thread, or a failure if it hangs.
fn within<T>(rx: &Receiver<T>, what: &str) -> T {
    rx.recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("{what} did not return within {PATIENCE:?}"))
}

/// Fails if the thread behind `rx` returned (it should be blocked).
fn assert_blocked<T>(rx: &Receiver<T>, what: &str) {
    thread::sleep(SETTLE);
    assert!(rx.try_recv().is_err(), "{what} returned but should block");
}

/// Fails unless `started.elapsed()` is at least `at_least`, and not absurdly more.
fn assert_waited(started: Instant, at_least: Duration) {
    let elapsed = started.elapsed();
    assert!(
        elapsed >= at_least,
        "returned after {elapsed:?} < {at_least:?}"
    );
    assert!(elapsed < at_least + QUICK, "returned after {elapsed:?}");
}

/// Fails unless `started` was less than `QUICK` ago.
fn assert_quick(started: Instant) {
    let elapsed = started.elapsed();
    assert!(elapsed < QUICK, "took {elapsed:?}, expected at once");
}

/// Waits (spinning politely) until `q` is closed: a `close_and_wait` closes
/// it after reading the close count, so it is then certainly under way.
fn until_closed<S: Store>(q: &Q<S>) {
    let started = Instant::now();
    while !q.is_closed() {
        assert!(started.elapsed() < PATIENCE, "the queue was never closed");
        thread::sleep(Duration::from_millis(1));
    }
}

/// The keys of `entries`, in order (fails on an item).
fn keys(entries: &[E]) -> Vec<u64> {
    entries
        .iter()
        .map(|entry| *entry.key().expect("a key, not an item"))
        .collect()
}

fn item(s: &str) -> E {
    Entry::Item(s.to_string())
}

/// Everything queued now, in order.
fn drain<S: Store>(q: &Q<S>) -> Vec<E> {
    let mut out = Vec::new();
    while let Ok(entry) = q.try_take() {
        out.push(entry);
    }
    out
}

/// Nothing queued, in flight, pending or claimed (G6).
fn assert_clean<S: Store>(q: &Q<S>) {
    assert_eq!(
        (q.len(), q.in_flight(), q.pending_keys(), q.claimed_slots()),
        (0, 0, 0, 0),
        "queued, in flight, pending keys, claimed slots"
    );
}

/// Runs a future on a two-thread tokio runtime, failing if it hangs.
fn tokio_run<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
        .block_on(async { tokio::time::timeout(PATIENCE, f).await })
        .expect("the async test did not finish in time")
}

/// Compile-time: `T` can move into another thread or a spawned task.
fn assert_send_static<T: Send + 'static>() {}

/// As `assert_send_static`, for a value whose type cannot be named.
fn assert_send_static_value<T: Send + 'static>(_: &T) {}

/// Makes a `general` and a `compact` test of each generic test function.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod general {
            $(#[test]
            fn $name() {
                super::$name::<coalescing_queue::DefaultHashBuilder>();
            })*
        }
        mod compact {
            $(#[test]
            fn $name() {
                super::$name::<coalescing_queue::Compact>();
            })*
        }
    };
}

on_both_stores!(
    offer_deadline_past_is_a_try,
    offer_deadline_times_out_with_the_value_back,
    offer_deadline_is_woken_by_a_take_or_close,
    take_deadline_past_is_a_try,
    take_deadline_times_out,
    take_deadline_is_woken_by_an_offer_or_close,
    take_leased_deadline_is_woken_by_an_offer,
    take_batch_timeout_gives_up_after_the_timeout,
    take_batch_timeout_lingers_after_the_first_entry,
    take_batch_timeout_returns_at_once_when_closed,
    take_batch_timeout_takes_entries_offered_while_waiting,
    take_batch_async_waits_for_one_then_fills_to_max,
    take_batch_async_lingers_and_ends_when_closed,
    take_batch_leased_async_leases_and_acks,
    take_batch_async_dropped_by_timeout_keeps_what_it_took,
    take_batch_async_dropped_by_select_loses_nothing,
    take_batch_async_cancelled_repeatedly_loses_nothing,
    take_batch_leased_async_dropped_while_lingering_gives_back,
    owned_batch_future_dropped_while_lingering_gives_back,
    owned_lease_ends_in_another_thread,
    owned_lease_keeps_the_queue_alive,
    owned_lease_absorbs_dirty_reoffers_then_requeues,
    take_leased_owned_async_is_spawnable,
    owned_batch_splits_into_owned_leases_across_tasks,
    owned_batch_acks_and_nacks_in_another_thread,
    take_leased_owned_blocks_until_an_offer_or_close,
    take_leased_owned_timeout_and_deadline,
    take_batch_leased_owned_blocks_then_moves_to_a_thread,
    close_from_another_thread_abandons_close_and_wait,
    close_and_wait_returns_true_once_drained,
    close_and_wait_async_is_true_when_the_last_lease_is_acked,
    close_and_wait_async_is_false_when_close_is_called,
    last_producer_drop_ends_a_blocked_take_after_the_drain,
    last_producer_drop_ends_a_take_async_after_the_drain,
    dropping_one_of_two_producers_does_not_close,
    producer_drop_does_not_abandon_close_and_wait,
);

// ----- 1. deadline forms -----

/// A deadline already past makes the offer forms a try: accepted if there is room, `Timeout` if full, `Closed` once closed.
fn offer_deadline_past_is_a_try<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Q::<S>::new(1);
    let past = Instant::now();
    assert_eq!(q.offer_key_deadline(1, past), Ok(Offered::Enqueued));
    assert_eq!(q.offer_key_deadline(1, past), Ok(Offered::Coalesced));
    let started = Instant::now();
    assert_eq!(
        q.offer_key_deadline(2, past),
        Err(OfferTimeoutError::Timeout(2))
    );
    assert_eq!(
        q.offer_deadline("a".to_string(), past),
        Err(OfferTimeoutError::Timeout("a".to_string()))
    );
    assert_quick(started);
    assert_eq!(q.try_take(), Ok(Entry::Key(1)));
    assert_eq!(q.offer_deadline("a".to_string(), past), Ok(()));
    assert_eq!(drain(&q), [item("a")]);

    q.close();
    let started = Instant::now();
    assert_eq!(
        q.offer_key_deadline(3, past),
        Err(OfferTimeoutError::Closed(3))
    );
    let err = q
        .offer_deadline("b".to_string(), Instant::now() + LONG)
        .unwrap_err();
    assert!(err.is_closed());
    assert_eq!(err.into_inner(), "b");
    assert_quick(started);
    assert_clean(&q);
}

/// A future deadline on a full queue waits it out and hands the value back; a pending key is still coalesced at once.
fn offer_deadline_times_out_with_the_value_back<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Q::<S>::new(1);
    q.offer_key(1).unwrap();
    let started = Instant::now();
    assert_eq!(
        q.offer_key_deadline(1, started + LONG),
        Ok(Offered::Coalesced)
    );
    assert_quick(started);

    let started = Instant::now();
    let err = q.offer_key_deadline(2, started + SHORT).unwrap_err();
    assert_waited(started, SHORT);
    assert!(err.is_timeout());
    assert_eq!(err.into_inner(), 2);

    let started = Instant::now();
    let err = q
        .offer_deadline("x".to_string(), started + SHORT)
        .unwrap_err();
    assert_waited(started, SHORT);
    assert_eq!(err, OfferTimeoutError::Timeout("x".to_string()));
    assert_eq!(drain(&q), [Entry::Key(1)]);
}

/// A blocked deadline offer is admitted when another thread takes, and refused (value back) when it closes.
fn offer_deadline_is_woken_by_a_take_or_close<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Arc::new(Q::<S>::new(1));
    q.offer_key(1).unwrap();
    let offer = {
        let q = q.clone();
        spawn_result(move || q.offer_key_deadline(2, Instant::now() + LONG))
    };
    assert_blocked(&offer, "offer_key_deadline on a full queue");
    assert_eq!(q.try_take(), Ok(Entry::Key(1)));
    assert_eq!(within(&offer, "offer_key_deadline"), Ok(Offered::Enqueued));

    let offer = {
        let q = q.clone();
        spawn_result(move || q.offer_deadline("x".to_string(), Instant::now() + LONG))
    };
    assert_blocked(&offer, "offer_deadline on a full queue");
    assert_eq!(q.try_take(), Ok(Entry::Key(2)));
    assert_eq!(within(&offer, "offer_deadline"), Ok(()));

    let offer = {
        let q = q.clone();
        spawn_result(move || q.offer_key_deadline(3, Instant::now() + LONG))
    };
    assert_blocked(&offer, "offer_key_deadline on a full queue");
    let started = Instant::now();
    q.close();
    assert_eq!(
        within(&offer, "offer_key_deadline at close"),
        Err(OfferTimeoutError::Closed(3))
    );
    assert_quick(started);
    assert_eq!(drain(&q), [item("x")]);
    assert_clean(&q);
}

/// A deadline already past makes both take forms a try: the head if any, `Timeout` if empty, `Closed` once closed and drained.
fn take_deadline_past_is_a_try<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Q::<S>::new(4);
    let started = Instant::now();
    assert_eq!(q.take_deadline(started), Err(TakeTimeoutError::Timeout));
    assert_eq!(
        q.take_leased_deadline(started).unwrap_err(),
        TakeTimeoutError::Timeout
    );
    assert_quick(started);

    q.offer_key(1).unwrap();
    q.offer("a".to_string()).unwrap();
    assert_eq!(q.take_deadline(Instant::now()), Ok(Entry::Key(1)));
    let lease = q.take_leased_deadline(Instant::now()).unwrap();
    assert_eq!(*lease, item("a"));
    assert_eq!(q.in_flight(), 1);
    lease.ack();

    q.offer_key(2).unwrap();
    q.close();
    let started = Instant::now();
    assert_eq!(q.take_deadline(Instant::now()), Ok(Entry::Key(2)));
    assert_eq!(
        q.take_deadline(Instant::now()),
        Err(TakeTimeoutError::Closed)
    );
    assert_eq!(
        q.take_leased_deadline(Instant::now() + LONG).unwrap_err(),
        TakeTimeoutError::Closed
    );
    assert_quick(started);
    assert_clean(&q);
}

/// A future deadline on an empty queue is waited out by both take forms.
fn take_deadline_times_out<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Q::<S>::new(4);
    let started = Instant::now();
    assert_eq!(
        q.take_deadline(started + SHORT),
        Err(TakeTimeoutError::Timeout)
    );
    assert_waited(started, SHORT);
    let started = Instant::now();
    assert_eq!(
        q.take_leased_deadline(started + SHORT).unwrap_err(),
        TakeTimeoutError::Timeout
    );
    assert_waited(started, SHORT);
    assert_clean(&q);
}

/// A blocked `take_deadline` gets what another thread offers, and `Closed` promptly when it closes.
fn take_deadline_is_woken_by_an_offer_or_close<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Arc::new(Q::<S>::new(4));
    let take = {
        let q = q.clone();
        spawn_result(move || q.take_deadline(Instant::now() + LONG))
    };
    assert_blocked(&take, "take_deadline on an empty queue");
    q.offer_key(7).unwrap();
    assert_eq!(within(&take, "take_deadline"), Ok(Entry::Key(7)));
    assert!(!q.is_pending(&7));

    let take = {
        let q = q.clone();
        spawn_result(move || q.take_deadline(Instant::now() + LONG))
    };
    assert_blocked(&take, "take_deadline on an empty queue");
    let started = Instant::now();
    q.close();
    assert_eq!(
        within(&take, "take_deadline at close"),
        Err(TakeTimeoutError::Closed)
    );
    assert_quick(started);
    assert_clean(&q);
}

/// A blocked `take_leased_deadline` gets a lease on what another thread offers; its ack there ends it.
fn take_leased_deadline_is_woken_by_an_offer<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Arc::new(Q::<S>::new(4));
    let (taken_tx, taken) = bounded(1);
    let (ack_tx, ack) = bounded::<()>(1);
    let taker = {
        let q = q.clone();
        thread::spawn(move || {
            let lease = q.take_leased_deadline(Instant::now() + LONG).unwrap();
            taken_tx.send(lease.entry().clone()).unwrap();
            ack.recv().unwrap();
            lease.ack();
        })
    };
    assert_blocked(&taken, "take_leased_deadline on an empty queue");
    q.offer_key(7).unwrap();
    assert_eq!(within(&taken, "take_leased_deadline"), Entry::Key(7));
    assert_eq!((q.in_flight(), q.len()), (1, 0));
    assert!(q.is_pending(&7));
    assert_eq!(q.offer_key(7), Ok(Offered::Coalesced));
    ack_tx.send(()).unwrap();
    taker.join().unwrap();
    // Re-offered while leased (Requeue): queued once more after the ack.
    assert_eq!(drain(&q), [Entry::Key(7)]);
    assert_clean(&q);
}

// ----- 2. batch takes with a timeout -----

/// Nothing offered: both batch-timeout forms wait the whole timeout, then return nothing.
fn take_batch_timeout_gives_up_after_the_timeout<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Q::<S>::new(8);
    let mut out = Vec::new();
    let started = Instant::now();
    assert_eq!(
        q.take_batch_timeout(&mut out, 10, Duration::from_millis(1), SHORT),
        0
    );
    assert_waited(started, SHORT);
    assert!(out.is_empty());

    let started = Instant::now();
    let batch = q.take_batch_leased_timeout(10, Duration::from_millis(1), SHORT);
    assert_waited(started, SHORT);
    assert!(batch.is_empty());
    assert_eq!(batch.len(), 0);
    drop(batch);
    assert_clean(&q);
}

/// After the first entry a batch lingers for more until `linger` passes, and returns at once when it reaches `max`.
fn take_batch_timeout_lingers_after_the_first_entry<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Q::<S>::new(8);
    for key in 1..=3 {
        q.offer_key(key).unwrap();
    }
    let mut out = Vec::new();
    let started = Instant::now();
    assert_eq!(q.take_batch_timeout(&mut out, 2, LONG, LONG), 2);
    assert_quick(started);
    assert_eq!(keys(&out), [1, 2]);

    let started = Instant::now();
    assert_eq!(q.take_batch_timeout(&mut out, 10, SHORT, LONG), 1);
    assert_waited(started, SHORT);
    assert_eq!(keys(&out), [1, 2, 3], "appended in order");

    q.offer_key(4).unwrap();
    let started = Instant::now();
    let batch = q.take_batch_leased_timeout(10, SHORT, LONG);
    assert_waited(started, SHORT);
    assert_eq!(batch.entries(), [Entry::Key(4)]);
    assert_eq!((q.in_flight(), q.len()), (1, 0));
    assert!(q.is_pending(&4));
    batch.ack();
    assert_clean(&q);
}

/// Closed: both forms drain what is queued and then return empty, at once whatever the linger and timeout.
fn take_batch_timeout_returns_at_once_when_closed<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Q::<S>::new(8);
    q.offer_key(1).unwrap();
    q.offer_key(2).unwrap();
    q.close();
    let started = Instant::now();
    let mut out = Vec::new();
    assert_eq!(q.take_batch_timeout(&mut out, 1, LONG, LONG), 1);
    let batch = q.take_batch_leased_timeout(10, LONG, LONG);
    assert_eq!(batch.entries(), [Entry::Key(2)]);
    batch.ack();
    assert_eq!(q.take_batch_timeout(&mut out, 10, LONG, LONG), 0);
    assert!(q.take_batch_leased_timeout(10, LONG, LONG).is_empty());
    assert_quick(started);
    assert_eq!(keys(&out), [1]);
    assert_clean(&q);
}

/// Entries offered by another thread while a batch-timeout take waits are taken, in order, up to `max`.
fn take_batch_timeout_takes_entries_offered_while_waiting<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Arc::new(Q::<S>::new(8));
    let take = {
        let q = q.clone();
        spawn_result(move || {
            let mut out = Vec::new();
            let taken = q.take_batch_timeout(&mut out, 10, Duration::ZERO, LONG);
            (taken, out)
        })
    };
    assert_blocked(&take, "take_batch_timeout on an empty queue");
    q.offer_key(9).unwrap();
    assert_eq!(
        within(&take, "take_batch_timeout"),
        (1, vec![Entry::Key(9)])
    );

    // A long linger ends when the batch reaches max.
    let take = {
        let q = q.clone();
        spawn_result(move || {
            let mut out = Vec::new();
            let taken = q.take_batch_timeout(&mut out, 3, LONG, LONG);
            (taken, out)
        })
    };
    q.offer_key(1).unwrap();
    q.offer("a".to_string()).unwrap();
    q.offer_key(2).unwrap();
    assert_eq!(
        within(&take, "take_batch_timeout"),
        (3, vec![Entry::Key(1), item("a"), Entry::Key(2)])
    );

    // The leased form, acked in the taking thread.
    let (taken_tx, taken) = bounded(1);
    let (ack_tx, ack) = bounded::<()>(1);
    let taker = {
        let q = q.clone();
        thread::spawn(move || {
            let batch = q.take_batch_leased_timeout(2, LONG, LONG);
            taken_tx.send(batch.entries().to_vec()).unwrap();
            ack.recv().unwrap();
            batch.ack();
        })
    };
    q.offer_key(5).unwrap();
    q.offer_key(6).unwrap();
    assert_eq!(keys(&within(&taken, "take_batch_leased_timeout")), [5, 6]);
    assert_eq!((q.in_flight(), q.claimed_slots()), (2, 2));
    ack_tx.send(()).unwrap();
    taker.join().unwrap();
    assert_clean(&q);
}

// ----- 3. async batch takes -----

/// `take_batch_async` waits for a first entry (offered by a thread) and returns as soon as it has `max`.
fn take_batch_async_waits_for_one_then_fills_to_max<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Arc::new(Q::<S>::new(8));
    tokio_run(async {
        let task = tokio::spawn({
            let q = q.clone();
            async move {
                let mut out = Vec::new();
                let taken = q.take_batch_async(&mut out, 2, LONG).await;
                (taken, out)
            }
        });
        tokio::time::sleep(SETTLE).await;
        assert!(!task.is_finished(), "returned on an empty queue");
        let offerer = {
            let q = q.clone();
            thread::spawn(move || {
                q.offer_key(1).unwrap();
                q.offer_key(2).unwrap();
                q.offer_key(3).unwrap();
            })
        };
        let (taken, out) = task.await.unwrap();
        offerer.join().unwrap();
        assert_eq!((taken, keys(&out)), (2, vec![1, 2]));
    });
    assert_eq!(drain(&q), [Entry::Key(3)]);
    let mut out = Vec::new();
    q.offer_key(4).unwrap();
    // max 0 is refused (at the first poll) and takes nothing.
    let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        futures_lite::future::block_on(q.take_batch_async(&mut out, 0, LONG))
    }));
    assert!(refused.is_err());
    assert!(out.is_empty());
    assert_eq!(q.len(), 1, "max 0 takes nothing");
}

/// `take_batch_async` lingers up to `linger` after its first entry; closed, it drains at once and then returns 0.
fn take_batch_async_lingers_and_ends_when_closed<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Arc::new(Q::<S>::new(8));
    let mut out = Vec::new();
    q.offer_key(1).unwrap();
    let started = Instant::now();
    assert_eq!(tokio_run(q.take_batch_async(&mut out, 10, SHORT)), 1);
    assert_waited(started, SHORT);
    assert_eq!(keys(&out), [1]);

    q.offer_key(2).unwrap();
    q.offer_key(3).unwrap();
    q.close();
    let started = Instant::now();
    assert_eq!(tokio_run(q.take_batch_async(&mut out, 10, LONG)), 2);
    assert_eq!(tokio_run(q.take_batch_async(&mut out, 10, LONG)), 0);
    assert_quick(started);
    assert_eq!(keys(&out), [1, 2, 3]);

    // A take waiting on an empty queue returns 0 when another thread closes it.
    let q = Arc::new(Q::<S>::new(8));
    tokio_run(async {
        let task = tokio::spawn({
            let q = q.clone();
            async move {
                let mut out = Vec::new();
                let taken = q.take_batch_async(&mut out, 10, LONG).await;
                (taken, out.len())
            }
        });
        tokio::time::sleep(SETTLE).await;
        assert!(!task.is_finished(), "returned on an empty queue");
        let closer = {
            let q = q.clone();
            thread::spawn(move || q.close())
        };
        assert_eq!(task.await.unwrap(), (0, 0));
        assert!(closer.join().unwrap());
    });
    assert_clean(&q);
}

/// `take_batch_leased_async` leases what it takes until the ack; closed and drained, it gives an empty batch.
fn take_batch_leased_async_leases_and_acks<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Q::<S>::new(8);
    q.offer_key(1).unwrap();
    q.offer_key(2).unwrap();
    tokio_run(async {
        let batch = q.take_batch_leased_async(10, Duration::ZERO).await;
        assert_eq!(batch.entries(), [Entry::Key(1), Entry::Key(2)]);
        assert_eq!((q.in_flight(), q.len()), (2, 0));
        assert!(q.is_pending(&1) && q.is_pending(&2));
        batch.ack();
        assert_clean(&q);

        q.offer_key(3).unwrap();
        q.close();
        let started = Instant::now();
        let batch = q.take_batch_leased_async(10, LONG).await;
        assert_eq!(batch.entries(), [Entry::Key(3)]);
        batch.ack();
        assert!(q.take_batch_leased_async(10, LONG).await.is_empty());
        assert_quick(started);
    });
    assert_clean(&q);
}

/// A `take_batch_async` dropped by `tokio::time::timeout` while it lingers leaves what it took in `out`.
fn take_batch_async_dropped_by_timeout_keeps_what_it_took<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Q::<S>::new(8);
    q.offer_key(1).unwrap();
    q.offer_key(2).unwrap();
    let mut out = Vec::new();
    let take = q.take_batch_async(&mut out, 10, LONG);
    let result = tokio_run(async { tokio::time::timeout(SHORT, take).await });
    assert!(result.is_err(), "the batch should still be lingering");
    assert_eq!(keys(&out), [1, 2]);
    assert!(!q.is_pending(&1) && !q.is_pending(&2));
    assert_clean(&q);
}

/// A `take_batch_async` dropped by `select!` while another thread offers: every key is in `out` or still queued, once.
fn take_batch_async_dropped_by_select_loses_nothing<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Arc::new(Q::<S>::new(8));
    q.offer_key(1).unwrap();
    q.offer_key(2).unwrap();
    let mut out = Vec::new();
    tokio_run(async {
        let (done_tx, mut done) = tokio::sync::oneshot::channel();
        let offerer = {
            let q = q.clone();
            thread::spawn(move || {
                q.offer_key(3).unwrap();
                q.offer_key(4).unwrap();
                done_tx.send(()).unwrap();
            })
        };
        tokio::select! {
            biased;
            taken = q.take_batch_async(&mut out, 10, LONG) => panic!("took {taken} and stopped lingering"),
            _ = &mut done => {}
        }
        offerer.join().unwrap();
    });
    let mut seen = keys(&out);
    assert_eq!(seen[..2], [1, 2]);
    seen.extend(keys(&drain(&q)));
    assert_eq!(seen, [1, 2, 3, 4], "each key once, in order");
    assert_clean(&q);
}

/// `take_batch_async` cancelled again and again while a thread offers: every offered key is taken exactly once.
fn take_batch_async_cancelled_repeatedly_loses_nothing<S: Store>()
where
    Q<S>: Send + Sync,
{
    const KEYS: u64 = 300;
    let q = Arc::new(Q::<S>::new(64));
    let offerer = {
        let q = q.clone();
        thread::spawn(move || {
            for key in 0..KEYS {
                assert_eq!(q.offer_key(key), Ok(Offered::Enqueued));
            }
            q.close();
        })
    };
    let mut out = Vec::new();
    tokio_run(async {
        for round in 0u64.. {
            let cancel_after = Duration::from_micros(50 + 37 * (round % 20));
            let take = q.take_batch_async(&mut out, 7, Duration::from_micros(300));
            if matches!(tokio::time::timeout(cancel_after, take).await, Ok(0)) {
                break; // closed and drained
            }
        }
    });
    offerer.join().unwrap();
    let taken = keys(&out);
    assert_eq!(taken, (0..KEYS).collect::<Vec<_>>(), "in order, none lost");
    assert_clean(&q);
}

/// A `take_batch_leased_async` dropped while it lingers nacks what it holds: all queued again, in order, nothing in flight.
fn take_batch_leased_async_dropped_while_lingering_gives_back<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Q::<S>::new(8);
    q.offer_key(1).unwrap();
    q.offer_key(2).unwrap();
    let take = q.take_batch_leased_async(10, LONG);
    let result = tokio_run(async { tokio::time::timeout(SHORT, take).await });
    assert!(result.is_err(), "the batch should still be lingering");
    assert_eq!(q.in_flight(), 0);
    assert_eq!(q.len(), 2);
    assert_eq!(q.claimed_slots(), 2);
    assert_eq!(q.pending_keys(), 2);
    assert_eq!(keys(&drain(&q)), [1, 2]);
    assert_clean(&q);
}

/// The owned batch future, dropped while it lingers, gives back what it holds too.
fn owned_batch_future_dropped_while_lingering_gives_back<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Arc::new(Q::<S>::new(8));
    q.offer_key(1).unwrap();
    q.offer_key(2).unwrap();
    let take = q.take_batch_leased_owned_async(10, LONG);
    let result = tokio_run(async { tokio::time::timeout(SHORT, take).await });
    assert!(result.is_err(), "the batch should still be lingering");
    assert_eq!((q.in_flight(), q.len(), q.claimed_slots()), (0, 2, 2));
    assert_eq!(keys(&drain(&q)), [1, 2]);
    assert_clean(&q);
    assert_eq!(
        Arc::strong_count(&q),
        1,
        "the dropped future let go of the queue"
    );
}

// ----- 4. owned leases -----

/// Compile-time: the owned lease, the owned batch and the owned futures can move into threads and tasks.
#[test]
fn owned_forms_are_send_and_static() {
    assert_send_static::<OwnedLease<u64, String>>();
    assert_send_static::<OwnedLeaseBatch<u64, String>>();
    assert_send_static::<OwnedLease<u64, String, Compact>>();
    assert_send_static::<OwnedLeaseBatch<u64, String, Compact>>();
    let q = Arc::new(CoalescingQueue::<u64, String>::new(4));
    let one = q.take_leased_owned_async();
    let batch = q.take_batch_leased_owned_async(4, Duration::ZERO);
    assert_send_static_value(&one);
    assert_send_static_value(&batch);
    drop((one, batch));
    assert_eq!(Arc::strong_count(&q), 1);
}

/// Owned leases moved into other threads: ack ends the key, nack and drop queue it again.
fn owned_lease_ends_in_another_thread<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Arc::new(Q::<S>::new(4));
    assert_eq!(q.try_take_leased_owned().unwrap_err(), TryTakeError::Empty);
    q.offer_key(1).unwrap();
    q.offer_key(2).unwrap();

    let lease = q.try_take_leased_owned().unwrap();
    assert_eq!((q.in_flight(), q.len()), (1, 1));
    assert!(q.is_pending(&1));
    thread::spawn(move || {
        assert_eq!(*lease, Entry::Key(1));
        assert_eq!(lease.entry(), &Entry::Key(1));
        lease.ack();
    })
    .join()
    .unwrap();
    assert_eq!((q.in_flight(), q.len()), (0, 1));
    assert!(!q.is_pending(&1));

    let lease = q.try_take_leased_owned().unwrap();
    thread::spawn(move || {
        assert_eq!(lease.key(), Some(&2));
        lease.nack();
    })
    .join()
    .unwrap();
    assert_eq!((q.in_flight(), q.len()), (0, 1));
    assert!(q.is_pending(&2));

    let lease = q.try_take_leased_owned().unwrap();
    assert_eq!(*lease, Entry::Key(2));
    thread::spawn(move || drop(lease)).join().unwrap();
    assert_eq!((q.in_flight(), q.len()), (0, 1));
    assert!(q.is_pending(&2));

    assert_eq!(drain(&q), [Entry::Key(2)]);
    q.close();
    assert_eq!(q.try_take_leased_owned().unwrap_err(), TryTakeError::Closed);
    assert_clean(&q);
}

/// The taker drops its `Arc` of the queue; the owned lease keeps the queue alive until it ends.
fn owned_lease_keeps_the_queue_alive<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Arc::new(Q::<S>::new(4));
    let weak = Arc::downgrade(&q);
    q.offer_key(1).unwrap();
    q.offer_key(2).unwrap();
    let lease = q.try_take_leased_owned().unwrap();
    drop(q);
    {
        let q = weak.upgrade().expect("the lease keeps the queue alive");
        assert_eq!((q.in_flight(), q.len()), (1, 1));
    }
    thread::spawn(move || lease.nack()).join().unwrap();
    assert!(weak.upgrade().is_none(), "the last owner was the lease");

    // The async form: the spawned take outlives the caller's `Arc`.
    let q = Arc::new(Q::<S>::new(4));
    let weak = Arc::downgrade(&q);
    let (lease_key, strong_while_leased, freed) = tokio_run(async move {
        let task = tokio::spawn(q.take_leased_owned_async());
        let offerer = weak.upgrade().unwrap();
        drop(q);
        offerer.offer_key(5).unwrap();
        drop(offerer);
        let lease = task.await.unwrap().unwrap();
        let strong = weak.strong_count();
        let key = *lease.key().unwrap();
        tokio::spawn(async move { lease.ack() }).await.unwrap();
        (key, strong, weak.upgrade().is_none())
    });
    assert_eq!((lease_key, strong_while_leased), (5, 1));
    assert!(freed, "the ack dropped the last owner");
}

/// Re-offers of a key whose owned lease is out are coalesced; after the ack (Requeue) it is queued once more.
fn owned_lease_absorbs_dirty_reoffers_then_requeues<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Arc::new(Q::<S>::new(4));
    q.offer_key(1).unwrap();
    let lease = q.try_take_leased_owned().unwrap();
    let offerers: Vec<_> = (0..2)
        .map(|_| {
            let q = q.clone();
            thread::spawn(move || [q.offer_key(1), q.offer_key(1)])
        })
        .collect();
    for offerer in offerers {
        assert_eq!(
            offerer.join().unwrap(),
            [Ok(Offered::Coalesced), Ok(Offered::Coalesced)]
        );
    }
    assert_eq!((q.len(), q.in_flight()), (0, 1), "no second copy while out");
    thread::spawn(move || lease.ack()).join().unwrap();
    assert_eq!((q.len(), q.in_flight()), (1, 0), "queued once more");
    assert!(q.is_pending(&1));
    let again = q.try_take_leased_owned().unwrap();
    assert_eq!(*again, Entry::Key(1));
    again.ack();
    assert_clean(&q);
    assert_eq!(q.stats().requeued_dirty, 1);
}

/// `take_leased_owned_async` spawned on tokio waits for an offer; the lease is acked in another task.
fn take_leased_owned_async_is_spawnable<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Arc::new(Q::<S>::new(4));
    tokio_run(async {
        let task = tokio::spawn(q.take_leased_owned_async());
        tokio::time::sleep(SETTLE).await;
        assert!(!task.is_finished(), "returned on an empty queue");
        q.offer_key(3).unwrap();
        let lease = task.await.unwrap().unwrap();
        assert_eq!(*lease, Entry::Key(3));
        assert_eq!(q.in_flight(), 1);
        tokio::spawn(async move { lease.ack() }).await.unwrap();
        assert_eq!(q.in_flight(), 0);
        assert!(!q.is_pending(&3));

        q.offer_key(4).unwrap();
        let lease = tokio::spawn(q.take_leased_owned_async())
            .await
            .unwrap()
            .unwrap();
        tokio::spawn(async move { drop(lease) }).await.unwrap();
        assert_eq!(
            (q.in_flight(), q.len()),
            (0, 1),
            "a dropped lease is a nack"
        );
        assert_eq!(drain(&q), [Entry::Key(4)]);

        let task = tokio::spawn(q.take_leased_owned_async());
        q.close();
        assert!(task.await.unwrap().is_err(), "closed and drained");
    });
    assert_clean(&q);
}

/// An owned batch from a spawned take is split into owned leases, each ended in its own task or thread.
fn owned_batch_splits_into_owned_leases_across_tasks<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Arc::new(Q::<S>::new(8));
    for key in 1..=3 {
        q.offer_key(key).unwrap();
    }
    tokio_run(async {
        let batch = tokio::spawn(q.take_batch_leased_owned_async(10, Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(batch.len(), 3);
        assert_eq!(keys(batch.entries()), [1, 2, 3]);
        assert_eq!(q.in_flight(), 3);
        let mut leases = batch.into_leases().into_iter();
        let (one, two, three) = (
            leases.next().unwrap(),
            leases.next().unwrap(),
            leases.next().unwrap(),
        );
        assert!(leases.next().is_none());
        assert_eq!(q.in_flight(), 3, "splitting ends nothing");
        tokio::spawn(async move { one.ack() }).await.unwrap();
        tokio::spawn(async move { two.nack() }).await.unwrap();
        thread::spawn(move || drop(three)).join().unwrap();
    });
    assert_eq!(q.in_flight(), 0);
    assert!(!q.is_pending(&1));
    assert!(q.is_pending(&2) && q.is_pending(&3));
    assert_eq!(drain(&q), [Entry::Key(2), Entry::Key(3)]);
    assert_clean(&q);
}

/// Owned batches moved into threads: `ack` ends every entry, `nack` and drop queue all again in order.
fn owned_batch_acks_and_nacks_in_another_thread<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Arc::new(Q::<S>::new(8));
    q.offer_key(1).unwrap();
    q.offer("a".to_string()).unwrap();
    let take = || tokio_run(q.take_batch_leased_owned_async(10, Duration::ZERO));

    let batch = take();
    assert_eq!(batch.entries(), [Entry::Key(1), item("a")]);
    thread::spawn(move || batch.nack()).join().unwrap();
    assert_eq!((q.in_flight(), q.len()), (0, 2));

    let batch = take();
    thread::spawn(move || drop(batch)).join().unwrap();
    assert_eq!((q.in_flight(), q.len()), (0, 2));

    let batch = take();
    assert_eq!(batch.entries(), [Entry::Key(1), item("a")], "order kept");
    assert_eq!(q.claimed_slots(), 2);
    thread::spawn(move || batch.ack()).join().unwrap();
    assert_clean(&q);
}

/// The blocking owned take waits for an offer, gives a lease that moves to
/// another thread, and ends with `TakeError` once closed and drained.
fn take_leased_owned_blocks_until_an_offer_or_close<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Arc::new(Q::<S>::new(4));
    let taker = {
        let q = q.clone();
        spawn_result(move || q.take_leased_owned())
    };
    assert_blocked(&taker, "take_leased_owned on an empty queue");
    q.offer_key(5).unwrap();
    let lease = within(&taker, "take_leased_owned after an offer").unwrap();
    assert_eq!(*lease, Entry::Key(5));
    assert_eq!(q.in_flight(), 1);
    thread::spawn(move || lease.ack()).join().unwrap();
    assert_eq!(q.in_flight(), 0);

    let taker = {
        let q = q.clone();
        spawn_result(move || q.take_leased_owned())
    };
    assert_blocked(&taker, "take_leased_owned on an empty queue");
    q.close();
    assert!(within(&taker, "take_leased_owned after close").is_err());
    assert_clean(&q);
}

/// The owned timeout and deadline takes: `Timeout` after waiting, a lease
/// when something is queued, `Closed` when closed and drained.
fn take_leased_owned_timeout_and_deadline<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Arc::new(Q::<S>::new(4));
    let started = Instant::now();
    let err = q.take_leased_owned_timeout(SHORT).unwrap_err();
    assert_eq!(err, TakeTimeoutError::Timeout);
    assert_waited(started, SHORT);
    let started = Instant::now();
    let err = q.take_leased_owned_deadline(started).unwrap_err();
    assert_eq!(err, TakeTimeoutError::Timeout);
    assert_quick(started);

    q.offer_key(1).unwrap();
    q.offer_key(2).unwrap();
    let one = q.take_leased_owned_timeout(LONG).unwrap();
    let two = q.take_leased_owned_deadline(Instant::now()).unwrap();
    assert_eq!((one.key(), two.key()), (Some(&1), Some(&2)));
    one.ack();
    two.nack();
    assert_eq!(q.len(), 1);
    q.close();
    q.take_leased_owned_timeout(LONG).unwrap().ack();
    let started = Instant::now();
    assert_eq!(
        q.take_leased_owned_timeout(LONG).unwrap_err(),
        TakeTimeoutError::Closed
    );
    assert_eq!(
        q.take_leased_owned_deadline(Instant::now() + LONG)
            .unwrap_err(),
        TakeTimeoutError::Closed
    );
    assert_quick(started);
    assert_clean(&q);
}

/// The blocking owned batch waits for its first entry, lingers for more,
/// and its batch is acked in another thread; the timeout form gives up.
fn take_batch_leased_owned_blocks_then_moves_to_a_thread<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Arc::new(Q::<S>::new(8));
    let started = Instant::now();
    assert!(q.take_batch_leased_owned_timeout(4, LONG, SHORT).is_empty());
    assert_waited(started, SHORT);

    let taker = {
        let q = q.clone();
        spawn_result(move || q.take_batch_leased_owned(3, LONG))
    };
    assert_blocked(&taker, "take_batch_leased_owned on an empty queue");
    for key in [1, 2, 3] {
        q.offer_key(key).unwrap();
    }
    let batch = within(&taker, "take_batch_leased_owned after three offers");
    assert_eq!(keys(batch.entries()), [1, 2, 3]);
    assert_eq!(q.in_flight(), 3);
    thread::spawn(move || batch.ack()).join().unwrap();
    assert_eq!(q.in_flight(), 0);

    q.offer_key(4).unwrap();
    q.close();
    let batch = q.take_batch_leased_owned_timeout(4, LONG, LONG);
    assert_eq!(keys(batch.entries()), [4]);
    batch.ack();
    assert!(q.take_batch_leased_owned(4, LONG).is_empty());
    assert_clean(&q);
}

// ----- 5. shutdown -----

/// `close()` from another thread makes a long `close_and_wait` (a lease out) return `false` promptly.
fn close_from_another_thread_abandons_close_and_wait<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Arc::new(Q::<S>::new(4));
    q.offer_key(1).unwrap();
    let lease = q.try_take_leased_owned().unwrap();
    let wait = {
        let q = q.clone();
        spawn_result(move || {
            let started = Instant::now();
            (
                q.close_and_wait(Duration::from_secs(3600)),
                started.elapsed(),
            )
        })
    };
    until_closed(&q);
    assert_blocked(&wait, "close_and_wait with a lease out");
    let closer = {
        let q = q.clone();
        thread::spawn(move || q.close())
    };
    let (drained, elapsed) = within(&wait, "close_and_wait after close()");
    assert!(!drained, "the drain was abandoned");
    assert!(elapsed < QUICK, "returned after {elapsed:?}");
    assert!(
        !closer.join().unwrap(),
        "close_and_wait had closed it already"
    );
    assert_eq!(q.in_flight(), 1, "the lease is still out");
    lease.ack();
    assert!(q.close_and_wait(Duration::ZERO), "drained now");
    assert_clean(&q);
}

/// `close_and_wait` returns `false` after its timeout with a lease out, and `true` once the queue is taken and the last lease acked.
fn close_and_wait_returns_true_once_drained<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Arc::new(Q::<S>::new(4));
    q.offer_key(1).unwrap();
    let lease = q.try_take_leased_owned().unwrap();
    let started = Instant::now();
    assert!(!q.close_and_wait(SHORT), "a lease is out");
    assert_waited(started, SHORT);
    lease.ack();
    assert!(q.close_and_wait(Duration::ZERO));

    let q = Arc::new(Q::<S>::new(4));
    q.offer_key(1).unwrap();
    q.offer_key(2).unwrap();
    let lease = q.try_take_leased_owned().unwrap();
    let wait = {
        let q = q.clone();
        spawn_result(move || q.close_and_wait(LONG))
    };
    until_closed(&q);
    assert_blocked(&wait, "close_and_wait with a key queued");
    assert_eq!(q.take(), Ok(Entry::Key(2)), "takes drain after close");
    assert_blocked(&wait, "close_and_wait with a lease out");
    thread::spawn(move || lease.ack()).join().unwrap();
    assert!(within(&wait, "close_and_wait"), "drained");
    assert_clean(&q);
}

/// `close_and_wait_async` returns `true` when another task acks the last lease.
fn close_and_wait_async_is_true_when_the_last_lease_is_acked<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Arc::new(Q::<S>::new(4));
    q.offer_key(1).unwrap();
    let lease = q.try_take_leased_owned().unwrap();
    tokio_run(async {
        let acker = tokio::spawn({
            let q = q.clone();
            async move {
                while !q.is_closed() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                tokio::time::sleep(SETTLE).await;
                assert_eq!(q.in_flight(), 1);
                lease.ack();
            }
        });
        assert!(q.close_and_wait_async().await, "drained");
        acker.await.unwrap();
    });
    assert_clean(&q);
}

/// `close_and_wait_async` returns `false` when `close()` is called meanwhile; the lease is still out.
fn close_and_wait_async_is_false_when_close_is_called<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Arc::new(Q::<S>::new(4));
    q.offer_key(1).unwrap();
    let lease = q.try_take_leased_owned().unwrap();
    tokio_run(async {
        let closer = tokio::spawn({
            let q = q.clone();
            async move {
                while !q.is_closed() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                q.close()
            }
        });
        let started = Instant::now();
        assert!(!q.close_and_wait_async().await, "abandoned by close()");
        assert_quick(started);
        assert!(!closer.await.unwrap());
    });
    assert_eq!(q.in_flight(), 1);
    lease.ack();
    assert_clean(&q);
}

/// When the last of several producers (in other threads) is dropped, a taker blocked in `take` gets everything, then `Err`.
fn last_producer_drop_ends_a_blocked_take_after_the_drain<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Arc::new(Q::<S>::new(64));
    let taker = {
        let q = q.clone();
        spawn_result(move || {
            let mut taken = Vec::new();
            while let Ok(entry) = q.take() {
                taken.push(entry);
            }
            taken
        })
    };
    let producer = q.producer();
    assert_blocked(&taker, "take on an open queue");
    let workers: Vec<_> = (0..3u64)
        .map(|w| {
            let producer = producer.clone();
            thread::spawn(move || {
                for key in 0..10 {
                    producer.offer_key(w * 100 + key).unwrap();
                }
                producer.offer(format!("worker {w} done")).unwrap();
            })
        })
        .collect();
    drop(producer);
    for worker in workers {
        worker.join().unwrap();
    }
    let taken = within(&taker, "take after the last producer dropped");
    assert!(q.is_closed());
    let mut keys_taken = BTreeSet::new();
    let mut items = 0;
    for entry in &taken {
        match entry {
            Entry::Key(key) => assert!(keys_taken.insert(*key), "key {key} twice"),
            Entry::Item(_) => items += 1,
        }
    }
    let offered: BTreeSet<u64> = (0..3)
        .flat_map(|w| (0..10).map(move |k| w * 100 + k))
        .collect();
    assert_eq!((keys_taken, items), (offered, 3));
    assert_clean(&q);
}

/// When the last producer is dropped, a `take_async` loop drains what was offered and ends.
fn last_producer_drop_ends_a_take_async_after_the_drain<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Arc::new(Q::<S>::new(16));
    let producer = q.producer();
    tokio_run(async {
        let taker = tokio::spawn({
            let q = q.clone();
            async move {
                let mut taken = Vec::new();
                while let Ok(entry) = q.take_async().await {
                    taken.push(entry);
                }
                taken
            }
        });
        tokio::time::sleep(SETTLE).await;
        assert!(!taker.is_finished(), "ended on an open queue");
        thread::spawn(move || {
            for key in 1..=5 {
                producer.offer_key(key).unwrap();
            }
            // `producer` is dropped here, in the offering thread.
        })
        .join()
        .unwrap();
        assert_eq!(keys(&taker.await.unwrap()), [1, 2, 3, 4, 5]);
    });
    assert!(q.is_closed());
    assert_clean(&q);
}

/// Dropping one of two producers leaves the queue open; dropping the other closes it; producers deref to every offer form.
fn dropping_one_of_two_producers_does_not_close<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Arc::new(Q::<S>::new(4));
    let first = q.producer();
    let second = first.clone();
    thread::spawn(move || drop(first)).join().unwrap();
    assert!(!q.is_closed());
    assert_eq!(second.offer_key(1), Ok(Offered::Enqueued));
    assert_eq!(second.try_offer_key(1), Ok(Offered::Coalesced));
    assert_eq!(
        second.offer_key_deadline(2, Instant::now()),
        Ok(Offered::Enqueued)
    );
    second
        .offer_deadline("a".to_string(), Instant::now())
        .unwrap();
    assert_eq!(second.len(), 3, "the producer derefs to the queue");
    drop(second);
    assert!(q.is_closed());
    assert_eq!(
        q.offer_key_deadline(3, Instant::now()),
        Err(OfferTimeoutError::Closed(3))
    );
    assert_eq!(drain(&q), [Entry::Key(1), Entry::Key(2), item("a")]);
    assert_eq!(
        q.take_deadline(Instant::now()),
        Err(TakeTimeoutError::Closed)
    );
    let late = q.producer();
    assert!(
        late.offer_key(4).is_err(),
        "a late producer offers into a closed queue"
    );
    assert_clean(&q);
}

/// Dropping the last producer while `close_and_wait` waits on a lease does not abandon it: it returns `true` at the ack.
fn producer_drop_does_not_abandon_close_and_wait<S: Store>()
where
    Q<S>: Send + Sync,
{
    let q = Arc::new(Q::<S>::new(4));
    let producer = q.producer();
    producer.offer_key(1).unwrap();
    let lease = q.try_take_leased_owned().unwrap();
    let wait = {
        let q = q.clone();
        spawn_result(move || q.close_and_wait(LONG))
    };
    until_closed(&q);
    thread::spawn(move || drop(producer)).join().unwrap();
    assert_blocked(&wait, "close_and_wait after the last producer dropped");
    thread::spawn(move || lease.ack()).join().unwrap();
    assert!(
        within(&wait, "close_and_wait"),
        "the producer drop abandoned the drain"
    );
    assert_clean(&q);
}

// ----- 6. the deprecated names -----

/// `Builder::in_flight` and `InFlightPolicy::Drop` still work, as `in_flight_policy` and `Absorb`, also in a `match`.
#[test]
#[allow(deprecated)]
fn deprecated_builder_in_flight_and_policy_drop() {
    assert_eq!(InFlightPolicy::Drop, InFlightPolicy::Absorb);
    let q = CoalescingQueue::<u64, String>::builder()
        .capacity(4)
        .in_flight(InFlightPolicy::Drop)
        .build();
    assert_eq!(q.in_flight_policy(), InFlightPolicy::Absorb);
    let absorbing = match q.in_flight_policy() {
        InFlightPolicy::Drop => true,
        InFlightPolicy::Requeue => false,
    };
    assert!(absorbing);
    q.offer_key(1).unwrap();
    let lease = q.try_take_leased().unwrap();
    assert_eq!(q.offer_key(1), Ok(Offered::Coalesced));
    lease.ack();
    assert!(q.is_empty(), "absorbed: nothing delivered once more");
    assert!(!q.is_pending(&1));

    let requeue = CoalescingQueue::<u64, String>::builder()
        .capacity(4)
        .in_flight(InFlightPolicy::Requeue)
        .build();
    assert_eq!(requeue.in_flight_policy(), InFlightPolicy::Requeue);

    let compact = Builder::<u64, String, Compact>::new()
        .capacity(4)
        .in_flight(InFlightPolicy::Drop)
        .build();
    assert_eq!(compact.in_flight_policy(), InFlightPolicy::Absorb);
}

/// `DefaultHasher` is still the default hash builder's name.
#[test]
#[allow(deprecated)]
fn deprecated_default_hasher_is_default_hash_builder() {
    use coalescing_queue::DefaultHasher;
    let q: CoalescingQueue<u64, String, DefaultHashBuilder> =
        CoalescingQueue::<u64, String, DefaultHasher>::new(4);
    assert_eq!(q.offer_key(1), Ok(Offered::Enqueued));
    let built = CoalescingQueue::<u64, String>::builder()
        .capacity(4)
        .hasher(DefaultHasher::default())
        .build();
    assert_eq!(built.offer_key(1), Ok(Offered::Enqueued));
    assert_eq!(built.offer_key(1), Ok(Offered::Coalesced));
    let compact = Builder::<u64, String, Compact<DefaultHasher>>::new()
        .capacity(4)
        .build();
    assert_eq!(compact.offer_key(1), Ok(Offered::Enqueued));
}

/// `Stats::coalesced()` equals the `coalesced` field: queued plus in-flight coalesced offers.
#[test]
#[allow(deprecated)]
fn deprecated_stats_coalesced_method_equals_the_field() {
    let q = CoalescingQueue::<u64, String>::new(4);
    assert_eq!(q.stats().coalesced(), 0);
    q.offer_key(1).unwrap();
    q.offer_key(1).unwrap();
    q.offer_key(2).unwrap();
    let lease = q.try_take_leased().unwrap();
    q.offer_key(1).unwrap();
    q.offer_key(1).unwrap();
    let stats = q.stats();
    assert_eq!((stats.coalesced_queued, stats.coalesced_in_flight), (1, 2));
    assert_eq!(stats.coalesced, 3);
    assert_eq!(stats.coalesced(), stats.coalesced);
    lease.ack();
}
