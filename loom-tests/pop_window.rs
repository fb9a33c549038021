//! Two offers of one key against a take: the window between the take's pop
//! and its removal of the key from the map (DESIGN.md section 3, "Take").
//!
//! Guards I4 and I5: removing the key before the pop lets a second copy into
//! the ring (G2); removing it after the take returned lets a later offer be
//! coalesced into a copy already delivered (G1).

use crate::common::{check_no_leak, model, probe_one_copy, queue, History};
use loom::thread;

/// Offers A and B of key 1 (blocking, so both return `Ok`) race with one
/// blocking take; the ring is probed after each step for a second copy.
/// After the join the rest is drained: G1 (each offer followed by a delivery
/// that came after it began), G2 (one delivery per enqueued copy, never two
/// copies queued) and G6 (nothing left pending or claimed).
#[test]
fn two_offers_vs_take() {
    model("pop_window::two_offers_vs_take", |capacity| {
        let q = queue(capacity);
        let log = History::new();
        let offerers: Vec<_> = (0..2)
            .map(|_| {
                let (q, log) = (q.clone(), log.clone());
                thread::spawn(move || {
                    log.offer(1, |k| q.offer_key(k));
                    probe_one_copy(&q, 1);
                })
            })
            .collect();
        let taker = {
            let (q, log) = (q.clone(), log.clone());
            thread::spawn(move || {
                let entry = q.take().expect("an offer is coming, the queue is open");
                log.delivered(&entry);
                probe_one_copy(&q, 1);
            })
        };
        for offerer in offerers {
            offerer.join().unwrap();
        }
        taker.join().unwrap();
        log.drain(&q);
        log.check_no_lost_offer();
        log.check_one_delivery_per_copy(1, 0);
        check_no_leak(&q);
    });
}
