//! Leases against re-offers and close (DESIGN.md section 3, "Lease"): a key
//! re-offered while in flight is delivered again after the ack (Requeue
//! policy); a dropped lease is a nack; a nack after close still queues the
//! entry, which is then drained like the rest.

use crate::common::{check_no_leak, model, queue, History, Outcome};
use loom::thread;

/// Key 1 is leased by the main thread. A re-offer of key 1 and a blocking
/// take race with the lease's ack. The re-offer is either absorbed by the
/// copy in flight (marked dirty, so the ack queues it again) or, after the
/// ack, queues a new copy: either way the taker gets key 1 after the
/// re-offer began (G1). One delivery per copy (G2), nothing leaks (G6).
#[test]
fn ack_vs_reoffer() {
    model("leases::ack_vs_reoffer", |capacity| {
        let q = queue(capacity);
        let log = History::new();
        log.offer(1, |k| q.try_offer_key(k));
        let lease = q.try_take_leased().expect("key 1 is queued");
        log.delivered(&lease);
        let reoffer = {
            let (q, log) = (q.clone(), log.clone());
            thread::spawn(move || log.offer(1, |k| q.offer_key(k)))
        };
        let taker = {
            let (q, log) = (q.clone(), log.clone());
            thread::spawn(move || {
                let entry = q.take().expect("the queue stays open");
                log.delivered(&entry);
            })
        };
        lease.ack();
        let reoffered = reoffer.join().unwrap();
        taker.join().unwrap();
        log.drain(&q);
        log.check_no_lost_offer();
        // A coalesced re-offer was absorbed by the copy in flight: the ack
        // queued it again, one delivery more than the enqueued copies.
        let dirty_requeues = usize::from(reoffered == Outcome::Coalesced);
        log.check_one_delivery_per_copy(1, dirty_requeues);
        check_no_leak(&q);
    });
}

/// As `ack_vs_reoffer`, but the lease is dropped: a drop is a nack, so key 1
/// is queued again whatever the re-offer did, and the taker gets it (G1);
/// a forgotten lease pins neither key nor slot (G6).
#[test]
fn drop_vs_reoffer() {
    model("leases::drop_vs_reoffer", |capacity| {
        let q = queue(capacity);
        let log = History::new();
        log.offer(1, |k| q.try_offer_key(k));
        let lease = q.try_take_leased().expect("key 1 is queued");
        log.delivered(&lease);
        let reoffer = {
            let (q, log) = (q.clone(), log.clone());
            thread::spawn(move || log.offer(1, |k| q.offer_key(k)))
        };
        let taker = {
            let (q, log) = (q.clone(), log.clone());
            thread::spawn(move || {
                let entry = q.take().expect("the queue stays open");
                log.delivered(&entry);
            })
        };
        drop(lease);
        reoffer.join().unwrap();
        taker.join().unwrap();
        log.drain(&q);
        log.check_no_lost_offer();
        // The drop queued the copy in flight again: one delivery more.
        log.check_one_delivery_per_copy(1, 1);
        check_no_leak(&q);
    });
}

/// Key 1 is leased by the main thread; one thread closes the queue, another
/// takes until `take` reports `Closed`, and the main thread nacks the lease.
/// Whichever comes first, the nacked key is queued again and taken after
/// the nack, by the taker: `Closed` is final, so the taker cannot report it
/// while the lease is out and leave the nacked key behind (mutant
/// `closed_while_leased`). Nothing leaks.
#[test]
fn nack_vs_close() {
    model("leases::nack_vs_close", |capacity| {
        let q = queue(capacity);
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
        let nacked_at = log.now();
        lease.nack();
        closer.join().unwrap();
        taker.join().unwrap();
        assert!(
            q.is_empty(),
            "take reported Closed while the lease was out, and left its nacked key behind"
        );
        log.drain(&q);
        let after_nack = log
            .events()
            .iter()
            .filter(
                |e| matches!(e, crate::common::Event::Delivered { key: 1, at } if *at > nacked_at),
            )
            .count();
        assert_eq!(
            after_nack,
            1,
            "the nacked key was not taken once after the nack: {:?}",
            log.events()
        );
        log.check_one_delivery_per_copy(1, 1);
        check_no_leak(&q);
    });
}
