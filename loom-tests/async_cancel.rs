//! The async take's cancellation against an offer: a `take_async` future
//! polled once (so it registered a listener) and then dropped must neither
//! lose an entry nor swallow the wake-up meant for another taker (G1, G5).

use crate::common::{check_no_leak, model, queue, History};
use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use loom::thread;

/// One thread offers keys 1 and 2 (blocking); another blocks in `take`;
/// the main thread polls a `take_async` future once with a no-op waker and
/// drops it. The blocked taker completes (a notification the dropped future
/// had received is passed on); after the drain G1, G2 and G6 hold.
#[test]
fn cancelled_take_async_vs_offer() {
    model("async_cancel::cancelled_take_async_vs_offer", |capacity| {
        let q = queue(capacity);
        let log = History::new();
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
                let entry = q.take().expect("the queue stays open");
                log.delivered(&entry);
            })
        };
        {
            let mut take = pin!(q.take_async());
            let mut cx = Context::from_waker(Waker::noop());
            if let Poll::Ready(taken) = take.as_mut().poll(&mut cx) {
                log.delivered(&taken.expect("the queue stays open"));
            }
        }
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
