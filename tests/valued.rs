//! Keys with values (`Valued`): a coalesced offer merges its value into the
//! pending one; a take delivers the value pending at the take; a leased
//! copy never changes, what arrives meanwhile is delivered after the ack,
//! and a nack queues `merge(leased, arrived)`. Each test runs on both
//! valued stores (compact and general).

use coalescing_queue::{
    Builder, CoalescingQueue, Entry, InFlightPolicy, KeyStore, Merge, Offered, Valued,
};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

type Key = (u32, u64);

fn add(pending: &mut u64, newer: u64) {
    *pending += newer;
}

fn max(pending: &mut u64, newer: u64) {
    *pending = (*pending).max(newer);
}

/// A queue on store `S` (`Compact` or a hasher) with merge `m`.
fn queue<S, M>(
    capacity: usize,
    m: M,
    policy: InFlightPolicy,
) -> CoalescingQueue<Key, (), Valued<S, M>>
where
    S: Default,
    Valued<S>: KeyStore<Key>,
    Valued<S, M>: KeyStore<Key>,
{
    Builder::<Key, (), Valued<S>>::new()
        .capacity(capacity)
        .in_flight_policy(policy)
        .merge(m)
        .build()
}

#[path = "common/both_stores.rs"]
#[macro_use]
mod both_stores;

both_stores!(
    latest_wins_by_default,
    a_merge_folds_every_coalesced_offer,
    keys_coalesce_on_identity_alone,
    a_leased_copy_keeps_its_value_and_arrivals_follow_the_ack,
    a_nack_queues_the_leased_value_merged_with_arrivals,
    a_nack_with_nothing_arrived_queues_the_leased_value,
    absorb_drops_a_value_offered_in_flight,
    batch_and_blocking_takes_deliver_values,
    a_merge_that_panics_in_an_offer_changes_nothing,
    a_merge_that_panics_in_a_nack_still_requeues,
    threads_merging_lose_no_value,
    async_and_owned_takes_deliver_values,
    a_lease_dropped_by_a_panic_with_a_panicking_merge_does_not_abort,
);

fn latest_wins_by_default<S>()
where
    S: Default,
    Valued<S>: KeyStore<Key>,
{
    let q = Builder::<Key, (), Valued<S>>::new().capacity(8).build();
    assert_eq!(q.try_offer_key((1, 10)), Ok(Offered::Enqueued));
    assert_eq!(q.try_offer_key((2, 20)), Ok(Offered::Enqueued));
    assert_eq!(q.try_offer_key((1, 11)), Ok(Offered::Coalesced));
    assert_eq!(q.try_offer_key((1, 9)), Ok(Offered::Coalesced));
    assert_eq!(q.len(), 2);
    // FIFO by the first offer; the value is the last one.
    assert_eq!(q.try_take(), Ok(Entry::Key((1, 9))));
    assert_eq!(q.try_take(), Ok(Entry::Key((2, 20))));
    assert!(q.try_take().unwrap_err().is_empty());
}

fn a_merge_folds_every_coalesced_offer<S>()
where
    S: Default,
    Valued<S>: KeyStore<Key>,
    Valued<S, fn(&mut u64, u64)>: KeyStore<Key>,
{
    let q = queue::<S, fn(&mut u64, u64)>(8, max, InFlightPolicy::Requeue);
    for ts in [3, 7, 5, 7, 1] {
        q.try_offer_key((4, ts)).unwrap();
    }
    assert_eq!(q.try_take(), Ok(Entry::Key((4, 7))));
    let q = queue::<S, fn(&mut u64, u64)>(8, add, InFlightPolicy::Requeue);
    for n in 1..=10 {
        q.try_offer_key((4, n)).unwrap();
    }
    assert_eq!(q.try_take(), Ok(Entry::Key((4, 55))));
}

fn keys_coalesce_on_identity_alone<S>()
where
    S: Default,
    Valued<S>: KeyStore<Key>,
{
    let q = Builder::<Key, (), Valued<S>>::new().capacity(2).build();
    q.try_offer_key((1, 1)).unwrap();
    q.try_offer_key((2, 1)).unwrap();
    // Full: a new identity is refused with its value handed back, a pending
    // one coalesces whatever its value.
    assert!(q.try_offer_key((3, 1)).unwrap_err().is_full());
    assert_eq!(q.try_offer_key((1, 99)), Ok(Offered::Coalesced));
    assert!(q.is_pending(&(1, 0)), "is_pending looks at the identity");
    assert!(!q.is_pending(&(3, 1)));
}

fn a_leased_copy_keeps_its_value_and_arrivals_follow_the_ack<S>()
where
    S: Default,
    Valued<S>: KeyStore<Key>,
    Valued<S, fn(&mut u64, u64)>: KeyStore<Key>,
{
    let q = queue::<S, fn(&mut u64, u64)>(8, add, InFlightPolicy::Requeue);
    q.try_offer_key((1, 5)).unwrap();
    let lease = q.try_take_leased().unwrap();
    assert_eq!(*lease, Entry::Key((1, 5)));
    // Arrivals while in flight start afresh (not 5 + 2 + 3).
    assert_eq!(q.try_offer_key((1, 2)), Ok(Offered::Coalesced));
    assert_eq!(q.try_offer_key((1, 3)), Ok(Offered::Coalesced));
    assert_eq!(*lease, Entry::Key((1, 5)), "the leased copy changed");
    assert!(q.is_empty());
    lease.ack();
    assert_eq!(q.try_take(), Ok(Entry::Key((1, 5))));
    // An ack with nothing arrived removes the key.
    q.try_offer_key((2, 1)).unwrap();
    q.try_take_leased().unwrap().ack();
    assert!(!q.is_pending(&(2, 0)));
    assert!(q.try_take().unwrap_err().is_empty());
}

fn a_nack_queues_the_leased_value_merged_with_arrivals<S>()
where
    S: Default,
    Valued<S>: KeyStore<Key>,
    Valued<S, fn(&mut u64, u64)>: KeyStore<Key>,
{
    // Counts: nothing delivered yet, so the nack keeps the leased count and
    // adds what arrived.
    let q = queue::<S, fn(&mut u64, u64)>(8, add, InFlightPolicy::Requeue);
    q.try_offer_key((1, 1)).unwrap();
    let lease = q.try_take_leased().unwrap();
    q.try_offer_key((1, 2)).unwrap();
    q.try_offer_key((1, 3)).unwrap();
    lease.nack();
    assert_eq!(q.try_take(), Ok(Entry::Key((1, 6))));
    // Latest: what arrived wins over the leased value.
    let q = Builder::<Key, (), Valued<S>>::new().capacity(8).build();
    q.try_offer_key((1, 1)).unwrap();
    let lease = q.try_take_leased().unwrap();
    q.try_offer_key((1, 4)).unwrap();
    drop(lease); // a drop is a nack
    assert_eq!(q.try_take(), Ok(Entry::Key((1, 4))));
}

fn a_nack_with_nothing_arrived_queues_the_leased_value<S>()
where
    S: Default,
    Valued<S>: KeyStore<Key>,
    Valued<S, fn(&mut u64, u64)>: KeyStore<Key>,
{
    let q = queue::<S, fn(&mut u64, u64)>(8, add, InFlightPolicy::Requeue);
    q.try_offer_key((1, 7)).unwrap();
    q.try_take_leased().unwrap().nack();
    let lease = q.try_take_leased().unwrap();
    assert_eq!(*lease, Entry::Key((1, 7)));
    // Offers after the nack's requeue merge as into any queued key.
    lease.nack();
    q.try_offer_key((1, 1)).unwrap();
    assert_eq!(q.try_take(), Ok(Entry::Key((1, 8))));
}

fn absorb_drops_a_value_offered_in_flight<S>()
where
    S: Default,
    Valued<S>: KeyStore<Key>,
    Valued<S, fn(&mut u64, u64)>: KeyStore<Key>,
{
    let q = queue::<S, fn(&mut u64, u64)>(8, add, InFlightPolicy::Absorb);
    q.try_offer_key((1, 1)).unwrap();
    let lease = q.try_take_leased().unwrap();
    assert_eq!(q.try_offer_key((1, 5)), Ok(Offered::Coalesced));
    lease.ack();
    assert!(
        q.try_take().unwrap_err().is_empty(),
        "Absorb delivered again"
    );
    // A nack under Absorb queues the leased value: nothing was merged.
    q.try_offer_key((2, 1)).unwrap();
    let lease = q.try_take_leased().unwrap();
    q.try_offer_key((2, 5)).unwrap();
    lease.nack();
    assert_eq!(q.try_take(), Ok(Entry::Key((2, 1))));
}

fn batch_and_blocking_takes_deliver_values<S>()
where
    S: Default,
    Valued<S>: KeyStore<Key>,
{
    let q = Builder::<Key, (), Valued<S>>::new().capacity(64).build();
    for round in 0..3u64 {
        for key in 0..10u32 {
            q.offer_key((key, round)).unwrap();
        }
    }
    let mut batch = Vec::new();
    assert_eq!(q.take_batch(&mut batch, 4, Duration::ZERO), 4);
    assert_eq!(
        batch,
        (0..4).map(|k| Entry::Key((k, 2))).collect::<Vec<_>>()
    );
    let leased = q.take_batch_leased(16, Duration::ZERO);
    let keys: Vec<_> = leased.iter().cloned().collect();
    assert_eq!(
        keys,
        (4..10).map(|k| Entry::Key((k, 2))).collect::<Vec<_>>()
    );
    q.offer_key((5, 9)).unwrap();
    leased.ack();
    assert_eq!(q.take(), Ok(Entry::Key((5, 9))));
    assert!(q
        .take_timeout(Duration::from_millis(1))
        .unwrap_err()
        .is_timeout());
}

/// A merge that panics while `PANIC` is set.
struct Fragile(Arc<AtomicBool>);

impl Merge<u64> for Fragile {
    fn merge(&self, pending: &mut u64, newer: u64) {
        assert!(!self.0.load(Ordering::Relaxed), "merge panicked");
        *pending += newer;
    }
}

fn a_merge_that_panics_in_an_offer_changes_nothing<S>()
where
    S: Default,
    Valued<S>: KeyStore<Key>,
    Valued<S, Fragile>: KeyStore<Key>,
{
    let panic = Arc::new(AtomicBool::new(false));
    let q = queue::<S, Fragile>(8, Fragile(panic.clone()), InFlightPolicy::Requeue);
    q.try_offer_key((1, 1)).unwrap();
    panic.store(true, Ordering::Relaxed);
    assert!(catch_unwind(AssertUnwindSafe(|| q.try_offer_key((1, 2)))).is_err());
    panic.store(false, Ordering::Relaxed);
    q.try_offer_key((1, 3)).unwrap();
    assert_eq!(q.try_take(), Ok(Entry::Key((1, 4))));
    assert_eq!(q.claimed_slots(), 0);
}

fn a_merge_that_panics_in_a_nack_still_requeues<S>()
where
    S: Default,
    Valued<S>: KeyStore<Key>,
    Valued<S, Fragile>: KeyStore<Key>,
{
    let panic = Arc::new(AtomicBool::new(false));
    let q = queue::<S, Fragile>(8, Fragile(panic.clone()), InFlightPolicy::Requeue);
    q.try_offer_key((1, 1)).unwrap();
    let lease = q.try_take_leased().unwrap();
    q.try_offer_key((1, 2)).unwrap(); // the first arrival: no merge called
    panic.store(true, Ordering::Relaxed);
    assert!(catch_unwind(AssertUnwindSafe(|| lease.nack())).is_err());
    panic.store(false, Ordering::Relaxed);
    // Queued again, not pinned in flight: one of the two values is pending.
    assert_eq!(q.in_flight(), 0);
    let Entry::Key((1, value)) = q.try_take().unwrap() else {
        panic!("not the key")
    };
    assert!(value == 1 || value == 2, "{value}");
    assert_eq!(q.claimed_slots(), 0);
    assert!(!q.is_pending(&(1, 0)));
}

/// Threads add counts to a few keys while a taker leases and acks, nacking
/// every third lease: the counts delivered add up to the counts offered.
fn threads_merging_lose_no_value<S>()
where
    S: Default,
    Valued<S>: KeyStore<Key>,
    Valued<S, fn(&mut u64, u64)>: KeyStore<Key>,
    CoalescingQueue<Key, (), Valued<S, fn(&mut u64, u64)>>: Sync,
{
    const THREADS: u64 = 4;
    const OFFERS: u64 = 20_000;
    const KEYS: u32 = 5;
    let q = queue::<S, fn(&mut u64, u64)>(4, add, InFlightPolicy::Requeue);
    let mut delivered = [0u64; KEYS as usize];
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let q = &q;
            s.spawn(move || {
                for i in 0..OFFERS {
                    q.offer_key(((t + i) as u32 % KEYS, 1)).unwrap();
                }
            });
        }
        let mut taken = 0u64;
        let mut leases = 0u64;
        // Until every offer is delivered: each offer adds 1.
        while delivered.iter().sum::<u64>() < THREADS * OFFERS {
            let Ok(lease) = q.try_take_leased() else {
                std::thread::yield_now();
                continue;
            };
            leases += 1;
            if leases % 3 == 0 {
                lease.nack();
                continue;
            }
            let Entry::Key((key, count)) = *lease else {
                unreachable!()
            };
            delivered[key as usize] += count;
            taken += 1;
            lease.ack();
        }
        assert!(taken > 0);
    });
    assert_eq!(delivered.iter().sum::<u64>(), THREADS * OFFERS);
    assert!(q.try_take().unwrap_err().is_empty());
    assert_eq!(q.claimed_slots(), 0);
}

/// The async and owned forms deliver the pair as every other form: an
/// async leased take, an owned lease acked on another thread, an async
/// offer that waited for a slot.
fn async_and_owned_takes_deliver_values<S>()
where
    S: Default + Send + Sync + 'static,
    Valued<S>: KeyStore<Key>,
    Valued<S, fn(&mut u64, u64)>: KeyStore<Key>,
    CoalescingQueue<Key, (), Valued<S, fn(&mut u64, u64)>>: Send + Sync,
    <Valued<S, fn(&mut u64, u64)> as KeyStore<Key>>::Cells: Send + Sync,
{
    let q = Arc::new(queue::<S, fn(&mut u64, u64)>(
        1,
        add,
        InFlightPolicy::Requeue,
    ));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        q.offer_key_async((1, 1)).await.unwrap();
        q.offer_key_async((1, 2)).await.unwrap(); // coalesced, even full
        let lease = q.take_leased_async().await.unwrap();
        assert_eq!(*lease, Entry::Key((1, 3)));
        q.offer_key_async((1, 4)).await.unwrap(); // in flight: arrives
        lease.ack();
        assert_eq!(q.take_async().await, Ok(Entry::Key((1, 4))));
    });
    q.try_offer_key((2, 5)).unwrap();
    let owned = q.try_take_leased_owned().unwrap();
    std::thread::spawn(move || {
        assert_eq!(*owned, Entry::Key((2, 5)));
        owned.nack();
    })
    .join()
    .unwrap();
    assert_eq!(q.try_take(), Ok(Entry::Key((2, 5))));
}

/// A worker panics while it holds a lease on a key that had a value
/// arrive (dirty): the lease's drop nacks, and the nack's merge panics too.
/// That second panic is caught and not resumed during the unwinding (which
/// would abort): the worker's panic goes on, and the key is queued again.
fn a_lease_dropped_by_a_panic_with_a_panicking_merge_does_not_abort<S>()
where
    S: Default,
    Valued<S>: KeyStore<Key>,
    Valued<S, Fragile>: KeyStore<Key>,
{
    let panic = Arc::new(AtomicBool::new(false));
    let q = queue::<S, Fragile>(8, Fragile(panic.clone()), InFlightPolicy::Requeue);
    q.try_offer_key((1, 1)).unwrap();
    let worker = catch_unwind(AssertUnwindSafe(|| {
        let _lease = q.try_take_leased().unwrap();
        q.try_offer_key((1, 2)).unwrap(); // the first arrival: no merge
        panic.store(true, Ordering::Relaxed);
        panic!("the worker failed");
    }));
    panic.store(false, Ordering::Relaxed);
    let message = worker.unwrap_err();
    assert_eq!(message.downcast_ref::<&str>(), Some(&"the worker failed"));
    assert_eq!(q.in_flight(), 0, "the dropped lease was not nacked");
    assert!(matches!(q.try_take(), Ok(Entry::Key((1, _)))));
    assert_eq!(q.claimed_slots(), 0);
}
