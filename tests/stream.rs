//! The `stream` feature's streams (`cargo test --features stream --test
//! stream`): what they yield, when they end, that they are cancel-safe as
//! the take futures are, and that they can be spawned.

use coalescing_queue::{
    CoalescingQueue, Compact, Entry, LeaseStream, LeasedBatchStream, TakeStream,
};
use futures_core::stream::FusedStream;
use futures_lite::StreamExt;
use std::sync::Arc;
use std::time::Duration;

type Q = CoalescingQueue<u64, String>;

fn assert_send_static<T: Send + 'static>(_: &T) {}

/// Runs `f` on a two-thread tokio runtime, failing if it takes too long.
fn tokio_run<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(10), f)
                .await
                .expect("the stream hung")
        })
}

#[test]
fn take_stream_yields_in_fifo_order_and_ends_when_drained() {
    let q = Arc::new(Q::new(8));
    q.offer_key(1).unwrap();
    q.offer("item".to_string()).unwrap();
    q.offer_key(1).unwrap(); // coalesced
    q.offer_key(2).unwrap();
    let mut stream = q.take_stream();
    assert!(!stream.is_terminated());
    let (taken, after) = tokio_run(async {
        let mut taken = Vec::new();
        for _ in 0..3 {
            taken.push(stream.next().await.unwrap());
        }
        q.close();
        let after = stream.next().await;
        (taken, after)
    });
    assert_eq!(
        taken,
        [
            Entry::Key(1),
            Entry::Item("item".to_string()),
            Entry::Key(2)
        ]
    );
    assert_eq!(after, None);
    assert!(stream.is_terminated());
    assert_eq!(futures_lite::future::block_on(stream.next()), None, "fused");
}

#[test]
fn take_stream_waits_for_an_offer() {
    let q = Arc::new(CoalescingQueue::<u64, String, Compact>::new(4));
    let offerer = {
        let q = q.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            q.offer_key(7).unwrap();
        })
    };
    let first = tokio_run(q.take_stream().next());
    offerer.join().unwrap();
    assert_eq!(first, Some(Entry::Key(7)));
}

#[test]
fn a_dropped_next_loses_no_entry() {
    let q = Arc::new(Q::new(4));
    let mut stream = q.take_stream();
    // A `next` that times out while waiting, dropped: nothing was taken.
    let timed_out =
        tokio_run(async { tokio::time::timeout(Duration::from_millis(10), stream.next()).await });
    assert!(timed_out.is_err());
    drop(stream);
    q.offer_key(3).unwrap();
    assert_eq!(q.len(), 1);
    let mut stream = q.take_stream();
    assert_eq!(tokio_run(stream.next()), Some(Entry::Key(3)));
}

#[test]
fn lease_stream_waits_for_a_lease_out_after_close() {
    let q = Arc::new(Q::new(4));
    q.offer_key(1).unwrap();
    q.close();
    let mut leases = q.lease_stream();
    let (first, again, end) = tokio_run(async {
        let first = leases.next().await.unwrap();
        let key = *first.key().unwrap();
        let nack = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            first.nack();
        });
        // Waits for the nack (Closed is final), then gets the key again.
        let again = leases.next().await.unwrap();
        nack.await.unwrap();
        let again_key = *again.key().unwrap();
        again.ack();
        (key, again_key, leases.next().await.is_none())
    });
    assert_eq!((first, again), (1, 1));
    assert!(end);
    assert_eq!((q.len(), q.in_flight()), (0, 0));
}

#[test]
fn leased_batch_stream_yields_batches_and_spawns() {
    let q = Arc::new(Q::new(16));
    for key in 0..5 {
        q.offer_key(key).unwrap();
    }
    q.close();
    let batches = q.leased_batch_stream(2, Duration::from_millis(1));
    assert_send_static(&batches);
    let sizes = tokio_run(async move {
        tokio::spawn(async move {
            let mut batches = batches;
            let mut sizes = Vec::new();
            while let Some(batch) = batches.next().await {
                sizes.push(batch.len());
                batch.ack();
            }
            sizes
        })
        .await
        .unwrap()
    });
    assert_eq!(sizes, [2, 2, 1]);
    assert_eq!((q.len(), q.in_flight()), (0, 0));
}

#[test]
fn a_dropped_batch_stream_nacks_what_it_held() {
    let q = Arc::new(Q::new(8));
    q.offer_key(1).unwrap();
    let mut batches = q.leased_batch_stream(4, Duration::from_secs(60));
    // The batch took key 1 and lingers for more; dropped by the timeout.
    let timed_out =
        tokio_run(async { tokio::time::timeout(Duration::from_millis(20), batches.next()).await });
    assert!(timed_out.is_err());
    drop(batches);
    assert_eq!((q.len(), q.in_flight()), (1, 0), "the held entry came back");
    assert_eq!(q.try_take(), Ok(Entry::Key(1)));
}

#[test]
fn streams_are_send_and_debug() {
    let q = Arc::new(Q::new(4));
    let takes: TakeStream<u64, String> = q.take_stream();
    let leases: LeaseStream<u64, String> = q.lease_stream();
    let batches: LeasedBatchStream<u64, String> = q.leased_batch_stream(4, Duration::ZERO);
    assert_send_static(&takes);
    assert_send_static(&leases);
    assert_send_static(&batches);
    assert!(format!("{takes:?}").starts_with("TakeStream"));
    assert!(format!("{leases:?}").starts_with("LeaseStream"));
    assert!(format!("{batches:?}").contains("max: 4"));
}

#[test]
#[should_panic(expected = "max must be at least 1")]
fn leased_batch_stream_refuses_max_zero() {
    let q = Arc::new(Q::new(4));
    drop(q.leased_batch_stream(0, Duration::ZERO));
}

/// A stream polled once and then kept, unpolled, holds its place among the
/// waiters: the wake-up of an offer can go to it (it registered first), and
/// a blocked taker then sleeps on. Dropping the stream passes that wake-up
/// on, and the taker gets the key at once.
#[test]
fn a_kept_stream_holds_its_wake_up_until_dropped() {
    let q = Arc::new(Q::new(4));
    let mut stream = q.take_stream();
    // Registered and waiting; the `next()` future is dropped, the stream's
    // take is not.
    let polled = futures_lite::future::block_on(futures_lite::future::poll_once(stream.next()));
    assert!(polled.is_none(), "nothing to take yet");
    let (tx, rx) = std::sync::mpsc::channel();
    let taker = {
        let q = q.clone();
        std::thread::spawn(move || {
            let _ = tx.send(q.take_timeout(Duration::from_secs(30)));
        })
    };
    // The taker waits, behind the stream.
    std::thread::sleep(Duration::from_millis(200));
    q.offer_key(7).unwrap();
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "the offer's wake-up went to the kept stream, not to the taker"
    );
    assert_eq!(q.len(), 1, "queued, waiting for a taker");
    drop(stream);
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)),
        Ok(Ok(Entry::Key(7))),
        "the dropped stream passed its wake-up on"
    );
    taker.join().unwrap();
}

/// A leased batch stream polled once and then kept, unpolled, keeps the
/// batch it is gathering in flight (its linger ends only when it is polled
/// again); dropping it nacks the batch.
#[test]
fn a_kept_batch_stream_holds_its_batch_until_polled_or_dropped() {
    let q = Arc::new(Q::new(8));
    q.offer_key(1).unwrap();
    let mut batches = q.leased_batch_stream(4, Duration::from_millis(50));
    let polled = futures_lite::future::block_on(futures_lite::future::poll_once(batches.next()));
    assert!(polled.is_none(), "the batch lingers");
    // Long past the linger: the batch is still held, unpolled.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!((q.len(), q.in_flight()), (0, 1), "held by the kept stream");
    // Polled again, it returns the batch (its linger is over).
    let batch = tokio_run(batches.next()).unwrap();
    assert_eq!(batch.entries(), [Entry::Key(1)]);
    batch.nack();
    // Polled once more and dropped: the lingering batch is nacked.
    let polled = futures_lite::future::block_on(futures_lite::future::poll_once(batches.next()));
    assert!(polled.is_none(), "the batch lingers");
    assert_eq!((q.len(), q.in_flight()), (0, 1));
    drop(batches);
    assert_eq!((q.len(), q.in_flight()), (1, 0), "the held entry came back");
}

/// A leased batch stream whose batch lingers without end returns that
/// batch when the queue closes meanwhile, then ends once it is acked.
#[test]
fn a_lingering_batch_stream_returns_its_batch_when_closed() {
    let q = Arc::new(Q::new(8));
    q.offer_key(1).unwrap();
    let mut batches = q.leased_batch_stream(10, Duration::MAX);
    let (entries, end) = tokio_run(async {
        let closer = {
            let q = q.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                q.close();
            })
        };
        let batch = batches.next().await.expect("the batch");
        closer.await.unwrap();
        let entries = batch.entries().to_vec();
        batch.ack();
        (entries, batches.next().await.is_none())
    });
    assert_eq!(entries, [Entry::Key(1)]);
    assert!(end, "closed and drained");
}
