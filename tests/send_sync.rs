//! Every public type is `Send` and `Sync` (checked at compile time), for
//! the key and item types of the main use: `[u8; 32]` keys, `String` items.

use coalescing_queue::{
    BuildError, Builder, CoalescingQueue, Entry, InFlightPolicy, Lease, LeaseBatch, OfferError,
    OfferTimeoutError, Offered, Stats, TakeError, TakeTimeoutError, TryOfferError, TryTakeError,
};
use std::sync::Arc;
use std::time::Duration;

type K = [u8; 32];
type V = String;

fn is_send<T: Send>() {}
fn is_sync<T: Sync>() {}
fn is_send_sync<T: Send + Sync>() {}

fn assert_value_send_sync<T: Send + Sync>(_: &T) {}

#[test]
fn public_types_are_send_and_sync() {
    is_send_sync::<CoalescingQueue<K, V>>();
    is_send_sync::<Arc<CoalescingQueue<K, V>>>();
    is_send_sync::<Lease<'static, K, V>>();
    is_send_sync::<LeaseBatch<'static, K, V>>();
    is_send_sync::<Builder<K, V>>();
    is_send_sync::<Entry<K, V>>();
    is_send_sync::<Offered>();
    is_send_sync::<Stats>();
    is_send_sync::<InFlightPolicy>();
    is_send_sync::<TryOfferError<K>>();
    is_send_sync::<TryOfferError<V>>();
    is_send_sync::<OfferError<K>>();
    is_send_sync::<OfferError<V>>();
    is_send_sync::<OfferTimeoutError<K>>();
    is_send_sync::<OfferTimeoutError<V>>();
    is_send_sync::<TryTakeError>();
    is_send_sync::<TakeError>();
    is_send_sync::<TakeTimeoutError>();
    is_send_sync::<BuildError>();
    is_send::<CoalescingQueue<K, V>>();
    is_sync::<CoalescingQueue<K, V>>();
}

#[test]
fn futures_are_send() {
    // The async forms can be spawned on a multi-threaded executor.
    fn is_send_value<T: Send>(_: &T) {}
    let q = CoalescingQueue::<K, V>::new(4);
    let key = [0u8; 32];
    is_send_value(&q.offer_key_async(key));
    is_send_value(&q.offer_async(String::new()));
    is_send_value(&q.take_async());
    is_send_value(&q.take_leased_async());
    assert_value_send_sync(&q);
    let batch = q.take_batch_leased_timeout(1, Duration::ZERO, Duration::ZERO);
    assert_value_send_sync(&batch);
    assert!(batch.is_empty());
}

#[test]
fn queue_and_leases_cross_threads() {
    let q = Arc::new(CoalescingQueue::<K, V>::new(4));
    let key = [7u8; 32];
    let offerer = {
        let q = q.clone();
        std::thread::spawn(move || q.offer_key(key))
    };
    assert_eq!(offerer.join().unwrap(), Ok(Offered::Enqueued));
    std::thread::scope(|s| {
        let lease = q.try_take_leased().unwrap();
        // A lease moves to another thread and ends there.
        s.spawn(move || {
            assert_eq!(*lease, Entry::Key(key));
            lease.ack();
        });
    });
    assert_eq!(q.pending_keys(), 0);
    assert_eq!(q.claimed_slots(), 0);
}
