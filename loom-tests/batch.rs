//! `take_batch` against offers: a batch waits for its first entry, gathers
//! what else is queued (linger zero: loom cannot model the clock) and never
//! drops what it took (G1); a leased batch keeps its keys pending, so it
//! never holds two copies of one (G2).

use crate::common::{check_no_leak, model, queue, History};
use coalescing_queue::Entry;
use loom::thread;
use std::time::Duration;

/// One thread offers key 1, another offers key 1 again and then key 2 (all
/// `try_*`: at capacity 1 some are refused), while a taker blocks in
/// `take_batch(max 2, linger 0)`. The batch is non-empty (it may hold key 1
/// twice: a copy taken is no longer pending, so a later offer queues a new
/// one); after the drain G1, G2 and G6 hold.
#[test]
fn batch_vs_offers() {
    model("batch::batch_vs_offers", |capacity| {
        let q = queue(capacity);
        let log = History::new();
        let first = {
            let (q, log) = (q.clone(), log.clone());
            thread::spawn(move || {
                log.offer(1, |k| q.try_offer_key(k));
            })
        };
        let second = {
            let (q, log) = (q.clone(), log.clone());
            thread::spawn(move || {
                log.offer(1, |k| q.try_offer_key(k));
                log.offer(2, |k| q.try_offer_key(k));
            })
        };
        let taker = {
            let (q, log) = (q.clone(), log.clone());
            thread::spawn(move || {
                let mut batch = Vec::new();
                let taken = q.take_batch(&mut batch, 2, Duration::ZERO);
                assert!(
                    taken >= 1 && taken == batch.len(),
                    "batch of {taken}: {batch:?}"
                );
                for entry in &batch {
                    log.delivered(entry);
                }
            })
        };
        first.join().unwrap();
        second.join().unwrap();
        taker.join().unwrap();
        log.drain(&q);
        log.check_no_lost_offer();
        for key in [1, 2] {
            log.check_one_delivery_per_copy(key, 0);
        }
        check_no_leak(&q);
    });
}

/// As `batch_vs_offers` with `take_batch_leased`, acked by the taker: keys
/// stay pending while leased, so the batch never holds two copies of one
/// (G2); an offer absorbed by a leased copy is queued again by the ack and
/// drained after the join (G1); one delivery per enqueued copy or dirty
/// requeue; nothing leaks (G6).
#[test]
fn leased_batch_vs_offers() {
    model("batch::leased_batch_vs_offers", |capacity| {
        let q = queue(capacity);
        let log = History::new();
        let first = {
            let (q, log) = (q.clone(), log.clone());
            thread::spawn(move || {
                log.offer(1, |k| q.try_offer_key(k));
            })
        };
        let second = {
            let (q, log) = (q.clone(), log.clone());
            thread::spawn(move || {
                log.offer(1, |k| q.try_offer_key(k));
                log.offer(2, |k| q.try_offer_key(k));
            })
        };
        let taker = {
            let (q, log) = (q.clone(), log.clone());
            thread::spawn(move || {
                let batch = q.take_batch_leased(2, Duration::ZERO);
                assert!(!batch.is_empty(), "an open queue gave an empty batch");
                if let [Entry::Key(a), Entry::Key(b)] = batch.entries() {
                    assert_ne!(a, b, "G2 violated: one leased batch holds two copies");
                }
                for entry in &batch {
                    log.delivered(entry);
                }
                batch.ack();
            })
        };
        first.join().unwrap();
        second.join().unwrap();
        taker.join().unwrap();
        log.drain(&q);
        log.check_no_lost_offer();
        let dirty = q.stats().requeued_dirty as usize;
        assert!(dirty <= 1, "one leased batch, key 1 requeued {dirty} times");
        log.check_one_delivery_per_copy(1, dirty);
        log.check_one_delivery_per_copy(2, 0);
        check_no_leak(&q);
    });
}
