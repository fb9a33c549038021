//! A batch take that is lingering for more entries when the queue closes
//! stops gathering and returns what it took, with any linger (60 s and
//! `Duration::MAX` here): blocking and async, leased and plain (a plain
//! batch while another lease is out, so the take never reads `Closed`).

use coalescing_queue::{CoalescingQueue, Entry};
use futures_lite::future::block_on;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

type Queue = CoalescingQueue<u32, String>;

/// How long after the batch started the queue is closed.
const CLOSE_AFTER: Duration = Duration::from_millis(100);
/// Well below any linger of these tests: a batch that returns later lingered on.
const PATIENCE: Duration = Duration::from_secs(5);
/// The lingers: one a timer can hold, one it cannot.
const LINGERS: [Duration; 2] = [Duration::from_secs(60), Duration::MAX];

/// Runs `batch` on its own thread, closes `q` [`CLOSE_AFTER`] later, and
/// returns what the batch returned (the entries it took) and how long it
/// took to return. Fails if it has not returned within [`PATIENCE`] of the
/// close (the stuck thread is leaked).
fn close_mid_linger(
    what: &str,
    q: &Arc<Queue>,
    batch: impl FnOnce(Arc<Queue>) -> Vec<Entry<u32, String>> + Send + 'static,
) -> Vec<Entry<u32, String>> {
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    {
        let q = q.clone();
        thread::spawn(move || {
            let _ = tx.send(batch(q));
        });
    }
    thread::sleep(CLOSE_AFTER);
    assert!(q.close());
    match rx.recv_timeout(PATIENCE) {
        Ok(taken) => {
            eprintln!("{what}: returned {:?} after close", start.elapsed());
            taken
        }
        Err(_) => panic!("{what}: still lingering {PATIENCE:?} after close"),
    }
}

#[test]
fn blocking_leased_batch_returns_when_closed_mid_linger() {
    for linger in LINGERS {
        let q = Arc::new(Queue::new(8));
        q.offer_key(1).unwrap();
        let taken = close_mid_linger("take_batch_leased", &q, move |q| {
            let batch = q.take_batch_leased(10, linger);
            let entries = batch.entries().to_vec();
            batch.ack();
            entries
        });
        assert_eq!(taken, [Entry::Key(1)], "linger {linger:?}");
        assert!(q.take().is_err(), "drained after the ack");
    }
}

#[test]
fn blocking_owned_leased_batch_returns_when_closed_mid_linger() {
    for linger in LINGERS {
        let q = Arc::new(Queue::new(8));
        q.offer_key(1).unwrap();
        let taken = close_mid_linger("take_batch_leased_owned", &q, move |q| {
            let batch = q.take_batch_leased_owned(10, linger);
            let entries = batch.entries().to_vec();
            batch.ack();
            entries
        });
        assert_eq!(taken, [Entry::Key(1)], "linger {linger:?}");
    }
}

#[test]
fn blocking_plain_batch_returns_when_closed_mid_linger_with_a_lease_out() {
    for linger in LINGERS {
        let q = Arc::new(Queue::new(8));
        q.offer_key(1).unwrap();
        q.offer_key(2).unwrap();
        let lease = q.try_take_leased_owned().unwrap();
        let taken = close_mid_linger("take_batch", &q, move |q| {
            let mut out = Vec::new();
            assert_eq!(q.take_batch(&mut out, 10, linger), 1);
            out
        });
        assert_eq!(taken, [Entry::Key(2)], "linger {linger:?}");
        assert_eq!(*lease, Entry::Key(1));
        lease.ack();
        assert!(q.take().is_err(), "drained after the ack");
    }
}

#[test]
fn async_leased_batch_returns_when_closed_mid_linger() {
    for linger in LINGERS {
        let q = Arc::new(Queue::new(8));
        q.offer_key(1).unwrap();
        let taken = close_mid_linger("take_batch_leased_async", &q, move |q| {
            let batch = block_on(q.take_batch_leased_async(10, linger));
            let entries = batch.entries().to_vec();
            batch.ack();
            entries
        });
        assert_eq!(taken, [Entry::Key(1)], "linger {linger:?}");
    }
}

#[test]
fn async_owned_leased_batch_returns_when_closed_mid_linger() {
    for linger in LINGERS {
        let q = Arc::new(Queue::new(8));
        q.offer_key(1).unwrap();
        let taken = close_mid_linger("take_batch_leased_owned_async", &q, move |q| {
            let batch = block_on(q.take_batch_leased_owned_async(10, linger));
            let entries = batch.entries().to_vec();
            batch.ack();
            entries
        });
        assert_eq!(taken, [Entry::Key(1)], "linger {linger:?}");
    }
}

#[test]
fn async_plain_batch_returns_when_closed_mid_linger_with_a_lease_out() {
    for linger in LINGERS {
        let q = Arc::new(Queue::new(8));
        q.offer_key(1).unwrap();
        q.offer_key(2).unwrap();
        let lease = q.try_take_leased_owned().unwrap();
        let taken = close_mid_linger("take_batch_async", &q, move |q| {
            let mut out = Vec::new();
            assert_eq!(block_on(q.take_batch_async(&mut out, 10, linger)), 1);
            out
        });
        assert_eq!(taken, [Entry::Key(2)], "linger {linger:?}");
        lease.ack();
        assert!(q.take().is_err(), "drained after the ack");
    }
}
