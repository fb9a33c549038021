//! Delayed nacks (DESIGN.md section 3, "Delays"; rules D1-D5 of
//! `src/queue/delays.rs`), on a manual clock that a model thread moves (a
//! loom step like any other): a delayed key falling due races a re-offer,
//! a take, close, and another delayed nack.

use crate::common::{check_no_leak, delayed_queue, model, model_at, Event, History, Outcome};
use loom::thread;
use std::time::Duration;

const DELAY: Duration = Duration::from_millis(10);

/// Key 1 is leased and nacked with a delay. One thread moves the clock
/// past the due time while another offers key 1: the key is pending all
/// along (delayed, then queued by whoever finds it due), so the offer is
/// coalesced into that copy, and the copy is delivered once after it (G1,
/// G2): a re-offer during a delay never makes a second copy, and the due
/// entry is queued once (mutant `due_pushed_twice`: a due entry left in
/// the schedule is queued again by the next take).
#[test]
fn due_vs_reoffer() {
    model("delays::due_vs_reoffer", |capacity| {
        let q = delayed_queue(capacity);
        let log = History::new();
        log.offer(1, |k| q.try_offer_key(k));
        let lease = q.try_take_leased().expect("key 1 is queued");
        log.delivered(&lease);
        lease.nack_after(DELAY);
        let clock = {
            let q = q.clone();
            thread::spawn(move || q.advance_clock(DELAY))
        };
        let reoffer = {
            let (q, log) = (q.clone(), log.clone());
            thread::spawn(move || log.offer(1, |k| q.try_offer_key(k)))
        };
        clock.join().unwrap();
        let reoffered = reoffer.join().unwrap();
        assert_eq!(
            reoffered,
            Outcome::Coalesced,
            "a delayed key is pending: its re-offer must coalesce"
        );
        log.drain(&q);
        log.drain(&q);
        log.check_no_lost_offer();
        // The nack queues the copy again: one delivery more than enqueued.
        log.check_one_delivery_per_copy(1, 1);
        check_no_leak(&q);
    });
}

/// Key 1 is nacked with a delay; a taker blocks in `take_leased` while
/// another thread moves the clock past the due time. The taker gets the
/// key, as its second attempt, and only after the clock moved: no take returns a delayed key before it is
/// due (mutant `taken_before_due`), and the take that finds it due queues
/// it (the delayed bit set with the first delayed entry, D1: mutant
/// `delayed_bit_unset`, whose taker sleeps for ever).
#[test]
fn due_vs_take() {
    model("delays::due_vs_take", |capacity| {
        let q = delayed_queue(capacity);
        let log = History::new();
        log.offer(1, |k| q.try_offer_key(k));
        let lease = q.try_take_leased().expect("key 1 is queued");
        log.delivered(&lease);
        lease.nack_after(DELAY);
        let taker = {
            let (q, log) = (q.clone(), log.clone());
            thread::spawn(move || {
                let lease = q.take_leased().expect("the queue stays open");
                log.delivered(&lease);
                // The nack's count, written beside the entry and read by
                // this take after the schedule moved the entry to the ring.
                assert_eq!(
                    lease.attempt(),
                    2,
                    "a delayed key's next lease is attempt 2"
                );
                lease.ack();
            })
        };
        let advanced = log.now();
        q.advance_clock(DELAY);
        taker.join().unwrap();
        let taken_at = log
            .events()
            .iter()
            .filter_map(|e| match *e {
                Event::Delivered { key: 1, at } => Some(at),
                _ => None,
            })
            .last()
            .expect("delivered");
        assert!(
            taken_at > advanced,
            "the delayed key was taken before the clock reached its due time: {:?}",
            log.events()
        );
        log.check_one_delivery_per_copy(1, 1);
        check_no_leak(&q);
    });
}

/// Key 1 is leased; one thread closes the queue, a taker takes until
/// `Closed`, and the main thread nacks the lease with a delay far longer
/// than the model (the clock never moves). Delays end at close (D4):
/// whether the nack comes before the close (the close queues the delayed
/// key) or after it (the nack queues it at once), the taker gets the key
/// and then reports `Closed`; nothing waits out the delay (mutants
/// `close_keeps_delayed`, `delay_after_close`: the taker sleeps for ever).
#[test]
fn delayed_nack_vs_close() {
    model("delays::delayed_nack_vs_close", |capacity| {
        let q = delayed_queue(capacity);
        let log = History::new();
        log.offer(1, |k| q.try_offer_key(k));
        let lease = q.try_take_leased().expect("key 1 is queued");
        log.delivered(&lease);
        let closer = {
            let q = q.clone();
            thread::spawn(move || assert!(q.close()))
        };
        let taker = {
            let (q, log) = (q.clone(), log.clone());
            thread::spawn(move || {
                while let Ok(entry) = q.take() {
                    log.delivered(&entry);
                }
            })
        };
        lease.nack_after(Duration::from_secs(1000));
        closer.join().unwrap();
        taker.join().unwrap();
        assert_eq!(q.stats().delayed, 0, "a key is still delayed after close");
        log.check_one_delivery_per_copy(1, 1);
        check_no_leak(&q);
    });
}

/// Two leased keys: key 1 nacked due at once, then, while a taker takes
/// one entry, key 2 nacked with a delay. The taker gets key 1 (the only
/// due one) whether the take's queueing of due entries comes before or
/// after key 2 joins the schedule; then the clock moves and a drain gets
/// key 2. The delayed bit is cleared only with the schedule's last entry
/// (D1, mutant `delayed_bit_cleared_early`: key 2 is left in the schedule
/// with no take looking for it).
#[test]
fn delayed_nack_vs_take_of_a_due_key() {
    model_at(
        "delays::delayed_nack_vs_take_of_a_due_key",
        &[2],
        |capacity| {
            let q = delayed_queue(capacity);
            let log = History::new();
            log.offer(1, |k| q.try_offer_key(k));
            log.offer(2, |k| q.try_offer_key(k));
            let first = q.try_take_leased().expect("key 1 is queued");
            let second = q.try_take_leased().expect("key 2 is queued");
            log.delivered(&first);
            log.delivered(&second);
            first.nack_after(Duration::ZERO);
            let taker = {
                let (q, log) = (q.clone(), log.clone());
                thread::spawn(move || {
                    let entry = q.take().expect("the queue stays open");
                    log.delivered(&entry);
                    entry
                })
            };
            second.nack_after(DELAY);
            let taken = taker.join().unwrap();
            assert_eq!(
                taken,
                coalescing_queue::Entry::Key(1),
                "the take returned a key that was not due"
            );
            q.advance_clock(DELAY);
            log.drain(&q);
            log.check_one_delivery_per_copy(1, 1);
            log.check_one_delivery_per_copy(2, 1);
            check_no_leak(&q);
        },
    );
}

/// Key 1 is nacked with a delay and the clock moved past its due time;
/// then two takers `try_take` at once. Each may find the ring empty and
/// queue what is due; one queues key 1, the other finds nothing left to
/// queue, or finds the ring empty again after queueing it (the other took
/// it first). Exactly one of them gets key 1 and the other reports
/// `Empty`: the due entry is queued once (D3), and a take never reports
/// `Empty` while a due entry waits unqueued.
#[test]
fn two_takes_find_a_key_due() {
    model("delays::two_takes_find_a_key_due", |capacity| {
        let q = delayed_queue(capacity);
        let log = History::new();
        log.offer(1, |k| q.try_offer_key(k));
        let lease = q.try_take_leased().expect("key 1 is queued");
        log.delivered(&lease);
        lease.nack_after(DELAY);
        q.advance_clock(DELAY);
        let takers: Vec<_> = (0..2)
            .map(|_| {
                let (q, log) = (q.clone(), log.clone());
                thread::spawn(move || match q.try_take() {
                    Ok(entry) => {
                        log.delivered(&entry);
                        true
                    }
                    Err(error) => {
                        assert!(error.is_empty(), "open: {error:?}");
                        false
                    }
                })
            })
            .collect();
        let got: usize = takers
            .into_iter()
            .map(|taker| usize::from(taker.join().unwrap()))
            .sum();
        assert_eq!(got, 1, "key 1 was due: exactly one take gets it");
        log.check_one_delivery_per_copy(1, 1);
        check_no_leak(&q);
    });
}

/// Key 1 is nacked with a delay and key 2 is queued; a batch take of up to
/// two entries, lingering without end, races the clock moving past key
/// 1's due time. The batch gets key 2 first and then key 1, whether its
/// gathering step finds key 1 due (and queues it) or its linger is woken
/// by the clock: a lingering batch is a waiting taker too.
#[test]
fn due_vs_lingering_batch() {
    model_at("delays::due_vs_lingering_batch", &[2], |capacity| {
        let q = delayed_queue(capacity);
        let log = History::new();
        log.offer(1, |k| q.try_offer_key(k));
        let lease = q.try_take_leased().expect("key 1 is queued");
        log.delivered(&lease);
        lease.nack_after(DELAY);
        log.offer(2, |k| q.try_offer_key(k));
        let batch = {
            let (q, log) = (q.clone(), log.clone());
            thread::spawn(move || {
                let mut out = Vec::new();
                assert_eq!(q.take_batch(&mut out, 2, Duration::MAX), 2);
                for entry in &out {
                    log.delivered(entry);
                }
                out
            })
        };
        q.advance_clock(DELAY);
        let out = batch.join().unwrap();
        assert_eq!(
            out,
            [
                coalescing_queue::Entry::Key(2),
                coalescing_queue::Entry::Key(1)
            ],
            "the batch's order"
        );
        log.check_one_delivery_per_copy(1, 1);
        log.check_one_delivery_per_copy(2, 0);
        check_no_leak(&q);
    });
}

/// A new key offered with a delay (`try_offer_key_after`) while a taker
/// blocks and another thread offers the key plainly; then the clock moves.
/// The plain offer coalesces into the delayed copy (or, if it came first,
/// the delayed offer coalesces into the queued one, which the taker may
/// take at once). Either way the key is delivered once, and a delayed copy
/// only after the clock moved: the offer's copy sets the delayed bit with
/// the first entry (mutant `offered_delay_unmarked`: the taker sleeps for
/// ever).
#[test]
fn delayed_offer_vs_offer_and_take() {
    model("delays::delayed_offer_vs_offer_and_take", |capacity| {
        let q = delayed_queue(capacity);
        let log = History::new();
        let taker = {
            let (q, log) = (q.clone(), log.clone());
            thread::spawn(move || {
                let entry = q.take().expect("the queue stays open");
                log.delivered(&entry);
            })
        };
        let plain = {
            let (q, log) = (q.clone(), log.clone());
            thread::spawn(move || log.offer(1, |k| q.try_offer_key(k)))
        };
        let delayed = log.offer(1, |k| q.try_offer_key_after(k, DELAY));
        let plain = plain.join().unwrap();
        let advanced = log.now();
        q.advance_clock(DELAY);
        taker.join().unwrap();
        if plain == Outcome::Coalesced {
            // The plain offer found the delayed copy: taken after the clock moved.
            assert_eq!(delayed, Outcome::Enqueued);
            let taken_after = log
                .events()
                .iter()
                .any(|e| matches!(*e, Event::Delivered { key: 1, at } if at > advanced));
            assert!(
                taken_after,
                "a delayed copy was taken before it was due: {:?}",
                log.events()
            );
        }
        log.drain(&q);
        log.check_no_lost_offer();
        log.check_one_delivery_per_copy(1, 0);
        check_no_leak(&q);
    });
}
