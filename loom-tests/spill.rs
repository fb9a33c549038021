//! The key table's spill path (DESIGN.md section 3, "The key table"), on
//! its real atomics: keys that all have one home bucket (`SameHash`), at
//! capacities where that bucket fills while slots are free, so new keys
//! spill past it, raise overflow counts (T2), are found through them, and
//! lower them when they leave; and a leased item's start record racing a
//! spilling insert for the same empty entry (E1, E7).
//!
//! Under loom a bucket is two entries: capacity 3 is two buckets, 4 is
//! three.

use crate::common::{check_no_leak, model_at, one_home_queue};
use coalescing_queue::{Entry, Offered};
use loom::thread;

/// Keys 1 and 2 fill the home bucket; key 3 spills past it (the home's
/// overflow count says so). 1 and 2 are taken, so only the count leads a
/// lookup to key 3. Key 3 is leased; a re-offer of it races the ack: it is
/// absorbed by the copy in flight (marked dirty: the ack queues it again)
/// or, after the ack, queues a new copy. Either way one copy of 3 is queued
/// after the join, found by a further offer (coalesced), delivered once,
/// and every count is back to zero (G1, G2, G6, T2).
/// Guards `unspill_before_removal` and `spill_uncounted`.
#[test]
fn spilled_key_lease_vs_reoffer() {
    model_at("spill::spilled_key_lease_vs_reoffer", &[3], |capacity| {
        let q = one_home_queue(capacity);
        for key in 1..=3 {
            assert_eq!(q.try_offer_key(key), Ok(Offered::Enqueued));
        }
        assert_eq!(
            q.try_offer_key(3),
            Ok(Offered::Coalesced),
            "G2 violated: the spilled key 3 was not found"
        );
        assert!(q.overflow_counts() > 0, "key 3 did not spill");
        for key in 1..=2 {
            assert_eq!(q.try_take().unwrap().key(), Some(&key));
        }
        let lease = q.try_take_leased().expect("key 3 is queued");
        assert_eq!(lease.key(), Some(&3));
        let reoffer = {
            let q = q.clone();
            thread::spawn(move || q.try_offer_key(3).expect("room for key 3"))
        };
        lease.ack();
        let reoffered = reoffer.join().unwrap();
        assert!(matches!(reoffered, Offered::Coalesced | Offered::Enqueued));
        assert_eq!(q.len(), 1, "G1/G2 violated: key 3 queued {} times", q.len());
        assert_eq!(
            q.try_offer_key(3),
            Ok(Offered::Coalesced),
            "G2 violated: the queued copy of key 3 was not found (a count lowered too early?)"
        );
        assert_eq!(q.try_take().unwrap().key(), Some(&3));
        assert!(q.try_take().is_err());
        check_no_leak(&*q);
    });
}

/// A leased pass-through item records its start in an empty entry (E7),
/// reserved as an insert reserves one (E1). Keys 1 and 2 fill the home
/// bucket (the item lease's first bucket under the checkers too), so the
/// spilling insert of key 3 and the item lease race for the entries of the
/// next bucket: each must get its own (E1 is a CAS). After the join, 1, 2
/// and 3 are each pending once and delivered once; the item's lease ends
/// cleanly (G1, G2, G6, T2). Guards `reserve_by_store`.
#[test]
fn item_lease_vs_spilling_insert() {
    model_at("spill::item_lease_vs_spilling_insert", &[4], |capacity| {
        let q = one_home_queue(capacity);
        q.try_offer(50).expect("room for the item");
        for key in 1..=2 {
            assert_eq!(q.try_offer_key(key), Ok(Offered::Enqueued));
        }
        let inserter = {
            let q = q.clone();
            thread::spawn(move || q.try_offer_key(3))
        };
        let leaser = {
            let q = q.clone();
            thread::spawn(move || {
                let lease = q.try_take_leased().expect("the item is queued");
                assert_eq!(*lease.entry(), Entry::Item(50));
                lease.ack();
            })
        };
        assert_eq!(inserter.join().unwrap(), Ok(Offered::Enqueued));
        leaser.join().unwrap();
        assert_eq!(q.pending_keys(), 3, "T1/G1 violated: {q:?}");
        for key in 1..=3 {
            assert_eq!(
                q.try_offer_key(key),
                Ok(Offered::Coalesced),
                "key {key} is no longer found: {q:?}"
            );
        }
        let mut delivered = Vec::new();
        while let Ok(entry) = q.try_take() {
            delivered.push(*entry.key().expect("keys only are left"));
        }
        assert_eq!(delivered, [1, 2, 3], "G1/G2 violated");
        check_no_leak(&*q);
    });
}

/// Keys 1 and 2 fill the home bucket. Two new keys, 3 and 4, are offered at
/// once (one home: they take its insert bit in turn) while key 1 is taken,
/// freeing an entry of the home bucket at any point of their inserts. Each
/// insert reserves the first empty entry it finds from home on, waiting for
/// no one (E1 is a CAS: no bucket but the home is locked), and counts
/// itself in the buckets it passed (T2). After the join 2, 3 and 4 are
/// each found (coalesced), each delivered once, and every count is back to
/// zero (G1, G2, G6, T2).
#[test]
fn spilling_inserts_vs_take() {
    model_at("spill::spilling_inserts_vs_take", &[4], |capacity| {
        let q = one_home_queue(capacity);
        for key in 1..=2 {
            assert_eq!(q.try_offer_key(key), Ok(Offered::Enqueued));
        }
        let offerers: Vec<_> = [3, 4]
            .into_iter()
            .map(|key| {
                let q = q.clone();
                thread::spawn(move || q.try_offer_key(key))
            })
            .collect();
        let taker = {
            let q = q.clone();
            thread::spawn(move || *q.try_take().expect("key 1 is queued").key().unwrap())
        };
        for offerer in offerers {
            assert_eq!(offerer.join().unwrap(), Ok(Offered::Enqueued));
        }
        assert_eq!(taker.join().unwrap(), 1);
        for key in 2..=4 {
            assert_eq!(
                q.try_offer_key(key),
                Ok(Offered::Coalesced),
                "key {key} is no longer found: {q:?}"
            );
        }
        let mut delivered = Vec::new();
        while let Ok(entry) = q.try_take() {
            delivered.push(*entry.key().unwrap());
        }
        delivered.sort_unstable();
        assert_eq!(delivered, [2, 3, 4], "G1/G2 violated");
        check_no_leak(&*q);
    });
}
