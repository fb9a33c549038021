//! `close` against a blocked offerer and a blocked taker (G5): close wakes
//! everyone; the offerer either got in before the close (and its key is
//! drained like the rest) or gets its value back; the taker drains what is
//! queued and then reports `Closed`, only once no lease is out either.

use crate::common::{check_no_leak, model, prefill, queue, History, Outcome};
use coalescing_queue::Entry;
use loom::thread;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc as StdArc;
use std::time::Duration;

/// The queue is full of other keys. An offerer of key 1 blocks in
/// `offer_key`; a taker takes until `take` reports `Closed` (so it ends up
/// blocked on an empty queue unless the close came first); the main thread
/// closes. Every thread completes (G5); a refused offer hands key 1 back;
/// an accepted one was delivered after it began (G1); the taker left nothing
/// queued; nothing leaks (G6).
#[test]
fn close_vs_blocked_offerer_and_taker() {
    model("close::close_vs_blocked_offerer_and_taker", |capacity| {
        let q = queue(capacity);
        let log = History::new();
        prefill(&q, &log, capacity);
        let offerer = {
            let (q, log) = (q.clone(), log.clone());
            thread::spawn(move || {
                let outcome = log.offer(1, |k| {
                    q.offer_key(k).inspect_err(|refused| {
                        assert_eq!(refused.0, 1, "the refused key is handed back")
                    })
                });
                if outcome == Outcome::Refused {
                    assert!(q.is_closed(), "offer_key fails only when closed");
                }
            })
        };
        let taker = {
            let (q, log) = (q.clone(), log.clone());
            thread::spawn(move || {
                while let Ok(entry) = q.take() {
                    log.delivered(&entry);
                }
            })
        };
        assert!(q.close());
        offerer.join().unwrap();
        taker.join().unwrap();
        assert!(q.is_empty(), "take reported Closed with entries queued");
        log.drain(&q);
        log.check_no_lost_offer();
        log.check_one_delivery_per_copy(1, 0);
        check_no_leak(&q);
    });
}

/// A lease stays out, so the drain cannot finish; one thread waits in
/// `close_and_wait` without a timeout, and once it has closed the queue
/// (so its wait has begun) the main thread calls `close`. The wait must
/// return `false`, not sleep on: the second close abandons the drain
/// (mutant close_keeps_drain_waiting). Then the lease is acked and nothing
/// leaks (G6).
#[test]
fn close_abandons_close_and_wait() {
    model("close::close_abandons_close_and_wait", |capacity| {
        let q = queue(capacity);
        q.try_offer_key(1).unwrap();
        let lease = q.try_take_leased().unwrap();
        let waiter = {
            let q = q.clone();
            thread::spawn(move || q.close_and_wait(Duration::MAX))
        };
        while !q.is_closed() {
            thread::yield_now();
        }
        // Seen closed by the flag, which comes first: either call may be
        // the one that sets the occupancy bit.
        q.close();
        assert!(!waiter.join().unwrap(), "a drain with a lease out finished");
        lease.ack();
        check_no_leak(&q);
    });
}

/// `close_and_wait` without a timeout against the ack of the last lease
/// from another thread (taken there, before or after the close): the wait
/// ends, with `true` (G5 for the drain).
#[test]
fn close_and_wait_vs_last_ack() {
    model("close::close_and_wait_vs_last_ack", |capacity| {
        let q = queue(capacity);
        q.try_offer_key(1).unwrap();
        let acker = {
            let q = q.clone();
            thread::spawn(move || q.try_take_leased().unwrap().ack())
        };
        assert!(q.close_and_wait(Duration::MAX), "the drain did not finish");
        acker.join().unwrap();
        check_no_leak(&q);
    });
}

/// Key 1 is leased when the queue closes; a taker thread blocks in `take`
/// (before or after the close), and the main thread acks the lease. The
/// taker reports `Closed` only after the ack (`Closed` is final while a
/// lease could still queue its entry again: mutant `closed_while_leased`),
/// and the ack wakes it (G5: a lost wake-up is a deadlock loom reports).
#[test]
fn take_after_close_vs_last_ack() {
    model("close::take_after_close_vs_last_ack", |capacity| {
        let q = queue(capacity);
        q.try_offer_key(1).unwrap();
        let lease = q.try_take_leased().unwrap();
        // Outside loom's view: a record of the order, not a sync point.
        let acked = StdArc::new(AtomicBool::new(false));
        let taker = {
            let (q, acked) = (q.clone(), acked.clone());
            thread::spawn(move || {
                assert!(q.take().is_err(), "nothing was queued after the lease");
                assert!(
                    acked.load(SeqCst),
                    "take reported Closed while a lease was out"
                );
            })
        };
        assert!(q.close());
        acked.store(true, SeqCst);
        lease.ack();
        taker.join().unwrap();
        check_no_leak(&q);
    });
}

/// Key 1 is queued; a thread takes a leased batch of up to 2 with no end to
/// its linger (`Duration::MAX`), and the main thread closes the queue
/// (before the batch, during its first take, or while it lingers). The
/// batch returns with key 1: after close its linger ends, although the
/// ring stays empty and, its own lease being out, no take can read
/// `Closed` (mutant `linger_ignores_close`: a lost end is a deadlock loom
/// reports). Then the batch is acked and nothing leaks (G6).
#[test]
fn close_vs_lingering_batch() {
    model("close::close_vs_lingering_batch", |capacity| {
        let q = queue(capacity);
        q.try_offer_key(1).unwrap();
        let batcher = {
            let q = q.clone();
            thread::spawn(move || {
                let batch = q.take_batch_leased(2, Duration::MAX);
                let entries = batch.entries().to_vec();
                batch.ack();
                entries
            })
        };
        assert!(q.close());
        assert_eq!(batcher.join().unwrap(), [Entry::Key(1)]);
        assert!(q.try_take().is_err(), "closed and drained");
        check_no_leak(&q);
    });
}
