//! Keys with values (`src/keys/valued_cells.rs`, V1-V3): a merge against a
//! take, another merge, a lease's ack and nack, and the reuse of its entry
//! by another key.
//!
//! Every offer adds its value (`Sum`), so a merge lost or applied twice
//! shows in the total delivered; a value is two words whose halves are
//! always equal, so a torn read shows as unequal halves. At the end the
//! queue is drained: for each key the values delivered (plain takes and
//! acked leases) add up to the values of its accepted offers.

use crate::common::{check_no_leak, model, Hasher};
use coalescing_queue::{Builder, CoalescingQueue, Entry, InFlightPolicy, Merge, Valued};
use loom::sync::Arc;
use loom::thread;
use std::sync::{Arc as StdArc, Mutex as StdMutex};

/// A value of two words with equal halves (a torn read shows).
type Value = (u64, u64);
type Key = (u32, Value);

/// Adds the newer value into the pending one.
#[derive(Clone, Copy, Default)]
pub struct Sum;

impl Merge<Value> for Sum {
    fn merge(&self, pending: &mut Value, newer: Value) {
        pending.0 += newer.0;
        pending.1 += newer.1;
    }
}

/// The valued store of the models: compact, or the general one under
/// `scripts/loom --general`.
#[cfg(not(coalescing_loom_store = "general"))]
type Store = coalescing_queue::Compact<Hasher>;
#[cfg(coalescing_loom_store = "general")]
type Store = Hasher;
type Queue = CoalescingQueue<Key, u32, Valued<Store, Sum>>;

fn queue(capacity: usize) -> Arc<Queue> {
    queue_with(capacity, InFlightPolicy::Requeue)
}

fn queue_with(capacity: usize, policy: InFlightPolicy) -> Arc<Queue> {
    #[cfg(not(coalescing_loom_store = "general"))]
    let store = coalescing_queue::Compact(Hasher::with_seed(0x5eed));
    #[cfg(coalescing_loom_store = "general")]
    let store = Hasher::with_seed(0x5eed);
    Arc::new(
        Builder::<Key, u32, Valued<Store>>::default()
            .capacity(capacity)
            .in_flight_policy(policy)
            .hasher(Valued::new(store))
            .merge(Sum)
            .build(),
    )
}

/// The values delivered per key (plain takes and acked leases).
#[derive(Clone, Default)]
struct Delivered(StdArc<StdMutex<Vec<(u32, u64)>>>);

impl Delivered {
    fn record(&self, entry: &Entry<Key, u32>) {
        let Entry::Key((key, (low, high))) = *entry else {
            panic!("the models offer no items")
        };
        assert_eq!(low, high, "a torn value of key {key}: {low} / {high}");
        self.0.lock().unwrap().push((key, low));
    }

    fn drain(&self, q: &Queue) {
        while let Ok(entry) = q.try_take() {
            self.record(&entry);
        }
    }

    /// The values delivered for `key` add up to `offered`.
    fn check_sum(&self, key: u32, offered: u64) {
        let delivered: Vec<u64> = self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(
            delivered.iter().sum::<u64>(),
            offered,
            "key {key}: delivered {delivered:?}, offered {offered} in all"
        );
    }
}

/// Offers `value` for `key`, waiting for a slot if the key is not pending
/// (a merge that found its entry taken offers the key anew, and the take's
/// slot may not be free yet at capacity 1).
fn offer(q: &Queue, key: u32, value: u64) {
    q.offer_key((key, (value, value)))
        .expect("the queue stays open");
}

/// Key 1 is queued with 1; one thread offers 2 while another takes: the
/// merge lands before the take's state change (delivered with it) or finds
/// the entry gone and queues the key anew (V1). Never lost, never twice.
#[test]
fn merge_vs_take() {
    model("values::merge_vs_take", |capacity| {
        let q = queue(capacity);
        let delivered = Delivered::default();
        offer(&q, 1, 1);
        let merger = {
            let q = q.clone();
            thread::spawn(move || offer(&q, 1, 2))
        };
        let taker = {
            let (q, delivered) = (q.clone(), delivered.clone());
            thread::spawn(move || delivered.record(&q.try_take().expect("key 1 is queued")))
        };
        merger.join().unwrap();
        taker.join().unwrap();
        delivered.drain(&q);
        delivered.check_sum(1, 3);
        check_no_leak(&q);
    });
}

/// Two merges into queued key 1 (value 1) at once: each copies the value
/// and writes only if no write came since its copy (V3), so neither is
/// lost.
#[test]
fn merge_vs_merge() {
    model("values::merge_vs_merge", |capacity| {
        let q = queue(capacity);
        let delivered = Delivered::default();
        offer(&q, 1, 1);
        let mergers: Vec<_> = [2, 4]
            .into_iter()
            .map(|value| {
                let q = q.clone();
                thread::spawn(move || offer(&q, 1, value))
            })
            .collect();
        for merger in mergers {
            merger.join().unwrap();
        }
        // A merge that leaves the value as it is writes nothing.
        offer(&q, 1, 0);
        delivered.drain(&q);
        delivered.check_sum(1, 7);
        check_no_leak(&q);
    });
}

/// Key 1 (value 1) is leased; a merge of 2 races with the ack: it is the
/// first arrival of the lease (marked dirty, queued by the ack with 2
/// alone, V2), or comes after the ack and queues the key anew.
#[test]
fn merge_vs_ack() {
    model("values::merge_vs_ack", |capacity| {
        let q = queue(capacity);
        let delivered = Delivered::default();
        offer(&q, 1, 1);
        let lease = q.try_take_leased().expect("key 1 is queued");
        delivered.record(&lease);
        let merger = {
            let q = q.clone();
            thread::spawn(move || offer(&q, 1, 2))
        };
        lease.ack();
        merger.join().unwrap();
        delivered.drain(&q);
        delivered.check_sum(1, 3);
        check_no_leak(&q);
    });
}

/// Key 1 (value 1) is leased; a merge of 2 races with the nack: whichever
/// comes first, what is queued adds up to 3 (the nack's `merge(leased,
/// arrived)` under the value bit, V2, or the nack's 1 merged with a later
/// 2). The nacked copy counts as not delivered.
#[test]
fn merge_vs_nack() {
    model("values::merge_vs_nack", |capacity| {
        let q = queue(capacity);
        let delivered = Delivered::default();
        offer(&q, 1, 1);
        let lease = q.try_take_leased().expect("key 1 is queued");
        let merger = {
            let q = q.clone();
            thread::spawn(move || offer(&q, 1, 2))
        };
        lease.nack();
        merger.join().unwrap();
        delivered.drain(&q);
        delivered.check_sum(1, 3);
        check_no_leak(&q);
    });
}

/// Key 1 (value 1) is queued; one thread merges 2 into it while another
/// takes it and offers key 2 (value 8), which reuses the emptied entry: the
/// merge must not land in key 2's value (the value word moved on with the
/// take), and key 1's 2 is delivered on its own copy.
#[test]
fn merge_vs_entry_reuse() {
    model("values::merge_vs_entry_reuse", |capacity| {
        let q = queue(capacity);
        let delivered = Delivered::default();
        offer(&q, 1, 1);
        let merger = {
            let q = q.clone();
            // At capacity 1 the slot may be taken by key 2 by then.
            thread::spawn(move || q.try_offer_key((1, (2, 2))).is_ok())
        };
        let reuser = {
            let (q, delivered) = (q.clone(), delivered.clone());
            thread::spawn(move || {
                delivered.record(&q.try_take().expect("key 1 is queued"));
                q.try_offer_key((2, (8, 8))).is_ok()
            })
        };
        let merged = merger.join().unwrap();
        let reused = reuser.join().unwrap();
        delivered.drain(&q);
        delivered.check_sum(1, 1 + 2 * u64::from(merged));
        // A merge of key 1 landing in key 2's entry shows here.
        delivered.check_sum(2, 8 * u64::from(reused));
        check_no_leak(&q);
    });
}

/// Under `InFlightPolicy::Absorb`, key 1 (value 1) is leased and a merge of
/// 2 races with the ack: absorbed by the copy in flight (its value dropped
/// with it), or, after the ack, queued anew with 2.
#[test]
fn absorb_vs_ack() {
    model("values::absorb_vs_ack", |capacity| {
        let q = queue_with(capacity, InFlightPolicy::Absorb);
        let delivered = Delivered::default();
        offer(&q, 1, 1);
        let lease = q.try_take_leased().expect("key 1 is queued");
        delivered.record(&lease);
        let merger = {
            let q = q.clone();
            thread::spawn(move || q.offer_key((1, (2, 2))).expect("open"))
        };
        lease.ack();
        let offered = merger.join().unwrap();
        delivered.drain(&q);
        let again = u64::from(offered == coalescing_queue::Offered::Enqueued);
        delivered.check_sum(1, 1 + 2 * again);
        check_no_leak(&q);
    });
}

/// Key 1 (value 1) is leased and has had 2 arrive (dirty); a merge of 4
/// races with the nack: the nack's copy of what arrived is current only if
/// no merge wrote since it read it (V3), so the 4 is merged before the
/// nack or after it, never dropped by it.
#[test]
fn merge_vs_nack_of_a_dirty_key() {
    model("values::merge_vs_nack_of_a_dirty_key", |capacity| {
        let q = queue(capacity);
        let delivered = Delivered::default();
        offer(&q, 1, 1);
        let lease = q.try_take_leased().expect("key 1 is queued");
        offer(&q, 1, 2);
        let merger = {
            let q = q.clone();
            thread::spawn(move || offer(&q, 1, 4))
        };
        lease.nack();
        merger.join().unwrap();
        delivered.drain(&q);
        delivered.check_sum(1, 7);
        check_no_leak(&q);
    });
}

/// Key 1 (value 1) is leased; a merge of 2 (the lease's first arrival,
/// validated by E4's CAS alone) races with the clean ack and with key 2
/// (value 8) offered after it, which reuses the emptied entry: the merge
/// lands in key 1's lease (dirty, queued by the ack) or queues key 1 anew,
/// never in key 2's value.
#[test]
fn first_arrival_vs_ack_and_reuse() {
    model("values::first_arrival_vs_ack_and_reuse", |capacity| {
        let q = queue(capacity);
        let delivered = Delivered::default();
        offer(&q, 1, 1);
        let lease = q.try_take_leased().expect("key 1 is queued");
        delivered.record(&lease);
        let merger = {
            let q = q.clone();
            // At capacity 1 the slot may be key 2's by then.
            thread::spawn(move || q.try_offer_key((1, (2, 2))).is_ok())
        };
        lease.ack();
        let reused = q.try_offer_key((2, (8, 8))).is_ok();
        let merged = merger.join().unwrap();
        delivered.drain(&q);
        delivered.check_sum(1, 1 + 2 * u64::from(merged));
        delivered.check_sum(2, 8 * u64::from(reused));
        check_no_leak(&q);
    });
}

/// Two offers of one new key, with values 1 and 2, at once: one inserts;
/// the other found it absent without the insert bit, finds it under the bit
/// (the insert word moved), and merges into it after letting go of the bit
/// (no user code under it). One entry, and both values delivered.
#[test]
fn same_new_key_twice() {
    model("values::same_new_key_twice", |capacity| {
        let q = queue(capacity);
        let delivered = Delivered::default();
        let offers: Vec<_> = [1, 2]
            .into_iter()
            .map(|value| {
                let q = q.clone();
                thread::spawn(move || q.try_offer_key((1, (value, value))).unwrap())
            })
            .collect();
        let outcomes: Vec<_> = offers.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(
            outcomes
                .iter()
                .filter(|o| **o == coalescing_queue::Offered::Enqueued)
                .count(),
            1,
            "key 1 inserted twice: {outcomes:?}"
        );
        delivered.drain(&q);
        delivered.check_sum(1, 3);
        check_no_leak(&q);
    });
}
