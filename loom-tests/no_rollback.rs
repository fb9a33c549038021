//! `try_offer_key` on a full queue against a concurrent duplicate and a take:
//! a reservation is never rolled back (I6, DESIGN.md section 3, step 3).
//!
//! The slot is claimed before the key is inserted, both under the key's
//! lock. Inserting first and removing the key again when the claim fails
//! would lose any duplicate offer coalesced into the reservation meanwhile.

use crate::common::{check_no_leak, model, prefill, queue, History};
use loom::thread;

/// The queue is full of other keys. Offers A and B of key 1 (`try_*`, so
/// each may be refused with `Full`) race with one take that frees a slot.
/// After the join the rest is drained: every offer that returned `Ok` is
/// followed by a delivery of key 1 that came after it began (G1), one
/// delivery per enqueued copy (G2), nothing left pending or claimed (G6).
#[test]
fn full_duplicate_vs_take() {
    model("no_rollback::full_duplicate_vs_take", |capacity| {
        let q = queue(capacity);
        let log = History::new();
        prefill(&q, &log, capacity);
        let offerers: Vec<_> = (0..2)
            .map(|_| {
                let (q, log) = (q.clone(), log.clone());
                thread::spawn(move || {
                    log.offer(1, |k| q.try_offer_key(k));
                })
            })
            .collect();
        let taker = {
            let (q, log) = (q.clone(), log.clone());
            thread::spawn(move || {
                let entry = q.try_take().expect("the queue starts full");
                log.delivered(&entry);
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
