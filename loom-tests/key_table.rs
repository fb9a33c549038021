//! The key table's own races (DESIGN.md section 3, "The key table's entry
//! word"), on its real atomics: the compact store's optimistic read and the
//! insert bit. Each model asserts after the join what the rule guarantees.

use crate::common::{model, model_at, SameHash};
use coalescing_queue::{Builder, CoalescingQueue, Compact, Offered};
use loom::sync::Arc;
use loom::thread;

/// Two offers of one new key at once (T1): exactly one inserts it and the
/// other is coalesced, both `Ok`; one copy is queued and delivered.
/// Guards the insert bit (mutant `insert_no_bit`).
#[test]
fn same_new_key_twice() {
    model("key_table::same_new_key_twice", |capacity| {
        let q = Arc::new(
            Builder::<u32, u32, Compact<crate::common::Hasher>>::new()
                .capacity(capacity)
                .hasher(Compact(crate::common::Hasher::with_seed(0x5eed)))
                .build(),
        );
        let offerers: Vec<_> = (0..2)
            .map(|_| {
                let q = q.clone();
                thread::spawn(move || q.try_offer_key(1).expect("room for key 1"))
            })
            .collect();
        let outcomes: Vec<Offered> = offerers.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(
            outcomes.iter().filter(|o| **o == Offered::Enqueued).count(),
            1,
            "T1 violated: outcomes {outcomes:?}"
        );
        assert_eq!(q.len(), 1, "G2 violated: two copies queued");
        assert_eq!(q.pending_keys(), 1, "T1 violated: two entries hold key 1");
        assert!(q.try_take().is_ok());
        assert!(q.try_take().is_err());
        assert_eq!((q.pending_keys(), q.claimed_slots()), (0, 0));
    });
}

/// A duplicate's optimistic read races the removal of the key it reads and
/// the entry's reuse by another key: keys of two words, all with one hash,
/// so the thread that takes (1, 2) and offers (3, 4) reuses the very entry
/// the reader is reading. An offer of (1, 4), a key nobody else offers,
/// must never be `Coalesced` (a torn read of (1, 2) then (3, 4) would say it
/// is pending: G1 lost). Guards the seqlock's version re-check (mutant
/// `seqlock_no_recheck`) and the new version on reuse (`reuse_same_version`).
#[test]
fn torn_read_vs_reuse() {
    type Queue = CoalescingQueue<(u64, u64), u32, Compact<SameHash>>;
    model("key_table::torn_read_vs_reuse", |capacity| {
        let q: Arc<Queue> = Arc::new(Builder::new().capacity(capacity).build());
        assert_eq!(q.try_offer_key((1, 2)), Ok(Offered::Enqueued));
        let churn = {
            let q = q.clone();
            thread::spawn(move || {
                assert_eq!(q.try_take().unwrap().key(), Some(&(1, 2)));
                // Full only if the reader's offer took the one slot.
                let _ = q.try_offer_key((3, 4));
            })
        };
        let reader = {
            let q = q.clone();
            thread::spawn(move || q.try_offer_key((1, 4)))
        };
        churn.join().unwrap();
        let read = reader.join().unwrap();
        assert_ne!(
            read,
            Ok(Offered::Coalesced),
            "G1 violated: (1, 4) was never pending, yet its offer was coalesced"
        );
        let mut delivered = Vec::new();
        while let Ok(entry) = q.try_take() {
            delivered.push(*entry.key().unwrap());
        }
        if read == Ok(Offered::Enqueued) {
            assert!(delivered.contains(&(1, 4)), "G1 violated: {delivered:?}");
        }
        assert_eq!((q.pending_keys(), q.claimed_slots()), (0, 0), "G6 violated");
    });
}

/// As `torn_read_vs_reuse`, with the take and the reuse in two threads: the
/// thread that writes (3, 4) into the emptied entry has made no fence of its
/// own before it (in `torn_read_vs_reuse` the taker's wake-up fence comes
/// first, and it orders the words after the emptying for free). So only the
/// writer's Release fence before the words (E2) makes a reader that sees
/// its word 4 see the entry's new version on the second look. At capacity
/// 2 (one home bucket of two entries) the writer reuses the emptied entry
/// or takes the other one; loom explores both. Guards `publish_no_fence`.
#[test]
fn torn_read_vs_reuse_by_another_thread() {
    type Queue = CoalescingQueue<(u64, u64), u32, Compact<SameHash>>;
    model_at(
        "key_table::torn_read_vs_reuse_by_another_thread",
        &[2],
        |capacity| {
            let q: Arc<Queue> = Arc::new(Builder::new().capacity(capacity).build());
            assert_eq!(q.try_offer_key((1, 2)), Ok(Offered::Enqueued));
            let taker = {
                let q = q.clone();
                thread::spawn(move || assert_eq!(q.try_take().unwrap().key(), Some(&(1, 2))))
            };
            let writer = {
                let q = q.clone();
                // Full only if the reader's offer took the free slot.
                thread::spawn(move || q.try_offer_key((3, 4)))
            };
            let reader = {
                let q = q.clone();
                thread::spawn(move || q.try_offer_key((1, 4)))
            };
            taker.join().unwrap();
            let written = writer.join().unwrap();
            let read = reader.join().unwrap();
            assert_ne!(
                read,
                Ok(Offered::Coalesced),
                "G1 violated: (1, 4) was never pending, yet its offer was coalesced"
            );
            let mut delivered = Vec::new();
            while let Ok(entry) = q.try_take() {
                delivered.push(*entry.key().unwrap());
            }
            if read == Ok(Offered::Enqueued) {
                assert!(delivered.contains(&(1, 4)), "G1 violated: {delivered:?}");
            }
            if written.is_ok() {
                assert!(delivered.contains(&(3, 4)), "G1 violated: {delivered:?}");
            }
            assert_eq!((q.pending_keys(), q.claimed_slots()), (0, 0), "G6 violated");
        },
    );
}
