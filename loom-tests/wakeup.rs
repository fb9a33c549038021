//! Blocked offerers and blocked takers against the operation that unblocks
//! them: no lost wake-up (G5). The wait loop tries, registers a listener,
//! tries again and only then sleeps (`src/wait.rs`); without the second try a
//! change made between the first try and the registration notifies nobody,
//! and loom reports the sleeper as a deadlock.

use crate::common::{check_no_leak, model, model_bounded, prefill, queue, History};
use loom::thread;

/// The queue is full of other keys; one thread offers keys 1 and 2, blocking
/// in `offer_key`, while one taker takes twice (at capacity 1 its second take
/// waits for key 1, and the offer of key 2 for that take). Every thread completes (G5); after the drain each
/// offer was delivered after it began (G1), once (G2), nothing leaks (G6).
#[test]
fn blocked_offerers_vs_taker() {
    model("wakeup::blocked_offerers_vs_taker", |capacity| {
        let q = queue(capacity);
        let log = History::new();
        prefill(&q, &log, capacity);
        let offerer = {
            let (q, log) = (q.clone(), log.clone());
            thread::spawn(move || {
                for key in [1, 2] {
                    log.offer(key, |k| q.offer_key(k));
                }
            })
        };
        let taker = {
            let (q, log) = (q.clone(), log.clone());
            thread::spawn(move || {
                for _ in 0..2 {
                    let entry = q.take().expect("the queue stays open");
                    log.delivered(&entry);
                }
            })
        };
        offerer.join().unwrap();
        taker.join().unwrap();
        log.drain(&q);
        log.check_no_lost_offer();
        for key in [1, 2] {
            log.check_one_delivery_per_copy(key, 0);
        }
        check_no_leak(&q);
    });
}

/// Two takers block in `take` on an empty queue while one thread offers keys
/// 1 and 2 (at capacity 1 the second offer waits for a take). Both takers
/// wake, each with one key (G5: a notification reaches a sleeper, one per
/// push); G1, G2 and G6 hold after the join.
#[test]
fn blocked_takers_vs_offers() {
    model("wakeup::blocked_takers_vs_offers", |capacity| {
        let q = queue(capacity);
        let log = History::new();
        let takers: Vec<_> = (0..2)
            .map(|_| {
                let (q, log) = (q.clone(), log.clone());
                thread::spawn(move || {
                    let entry = q.take().expect("the queue stays open");
                    log.delivered(&entry);
                })
            })
            .collect();
        let offerer = {
            let (q, log) = (q.clone(), log.clone());
            thread::spawn(move || {
                for key in [1, 2] {
                    log.offer(key, |k| q.offer_key(k));
                }
            })
        };
        offerer.join().unwrap();
        for taker in takers {
            taker.join().unwrap();
        }
        log.drain(&q);
        log.check_no_lost_offer();
        for key in [1, 2] {
            log.check_one_delivery_per_copy(key, 0);
        }
        check_no_leak(&q);
    });
}

/// The queue is full of other keys; offerers block: two of key 1 and (from
/// capacity 2 on) one of key 2. A taker takes `capacity` entries (the other
/// keys, FIFO), which frees room for one copy of key 1 and one of key 2. An
/// offerer of key 1 woken for a slot may find key 1 pending (the other
/// offerer of it got in first) and be coalesced without using the slot: it
/// must pass the wake-up on, or the offerer of key 2 sleeps next to a free
/// slot (G5; loom reports the join as a deadlock).
///
/// An offerer of key 1 that was never woken may sleep on, though: a blocked
/// offer waits for room, and it does not notice that its key became pending
/// while the queue stayed full. So the main thread joins the taker and the
/// offerer of key 2 first, then closes the queue, which wakes the rest
/// (they are coalesced or refused). After the join G1, G2 and G6 hold.
///
/// Five threads: at preemption bound 1 this model runs for over ten minutes
/// on the key table's atomics, so it is bounded at 0. The main thread blocks
/// in `join` right after the spawns, so the losing schedule (every offerer
/// registered, both wake-ups go to the offerers of key 1) needs no
/// preemption at all: mutant `no_pass_on` is caught at bound 0.
#[test]
fn unused_wakeup_is_passed_on() {
    model_bounded("wakeup::unused_wakeup_is_passed_on", 0, |capacity| {
        let q = queue(capacity);
        let log = History::new();
        prefill(&q, &log, capacity);
        let spawn_offerer = |key: u32| {
            let (q, log) = (q.clone(), log.clone());
            thread::spawn(move || {
                log.offer(key, |k| q.offer_key(k));
            })
        };
        let duplicates = [spawn_offerer(1), spawn_offerer(1)];
        let other = (capacity >= 2).then(|| spawn_offerer(2));
        let taker = {
            let (q, log) = (q.clone(), log.clone());
            thread::spawn(move || {
                for _ in 0..capacity {
                    let entry = q.take().expect("the queue stays open");
                    log.delivered(&entry);
                }
            })
        };
        taker.join().unwrap();
        if let Some(other) = other {
            other.join().unwrap();
        }
        q.close();
        for offerer in duplicates {
            offerer.join().unwrap();
        }
        log.drain(&q);
        log.check_no_lost_offer();
        for key in [1, 2] {
            log.check_one_delivery_per_copy(key, 0);
        }
        check_no_leak(&q);
    });
}
