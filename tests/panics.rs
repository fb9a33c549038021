//! Panics in user code (`Hash`, `Eq`, `Clone`, `Drop` of keys) leave the
//! queue whole: no claim leaked, no key pinned, no queued entry lost, and
//! no lock or insert bit left held (the crate docs, "Panics in user code").
//!
//! The key hashes to one constant, so every key shares a home bucket: the
//! ninth key pending spills to the next bucket, and every lookup compares
//! keys with `Eq`. Each behaviour is switched on per thread, just around
//! the call that should panic.

use coalescing_queue::{CoalescingQueue, Offered};
use std::cell::Cell;
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

thread_local! {
    static PANIC_IN_HASH: Cell<bool> = const { Cell::new(false) };
    static PANIC_IN_EQ: Cell<bool> = const { Cell::new(false) };
    static PANIC_IN_CLONE: Cell<bool> = const { Cell::new(false) };
    /// The key whose next drop panics (once).
    static PANIC_IN_DROP_OF: Cell<Option<u32>> = const { Cell::new(None) };
}

#[derive(Debug)]
struct Touchy(u32);

impl Hash for Touchy {
    fn hash<H: Hasher>(&self, state: &mut H) {
        assert!(!PANIC_IN_HASH.get(), "Touchy::hash panics");
        state.write_u32(0);
    }
}

impl PartialEq for Touchy {
    fn eq(&self, other: &Self) -> bool {
        assert!(!PANIC_IN_EQ.get(), "Touchy::eq panics");
        self.0 == other.0
    }
}

impl Eq for Touchy {}

impl Clone for Touchy {
    fn clone(&self) -> Self {
        assert!(!PANIC_IN_CLONE.get(), "Touchy::clone panics");
        Touchy(self.0)
    }
}

impl Drop for Touchy {
    fn drop(&mut self) {
        if PANIC_IN_DROP_OF.get() == Some(self.0) {
            PANIC_IN_DROP_OF.set(None);
            panic!("Touchy::drop panics");
        }
    }
}

type Q = CoalescingQueue<Touchy, String>;

/// Runs `f` with `flag` set, and checks that it panicked.
fn panics_with<R>(flag: &'static std::thread::LocalKey<Cell<bool>>, f: impl FnOnce() -> R) {
    flag.set(true);
    let outcome = catch_unwind(AssertUnwindSafe(f));
    flag.set(false);
    assert!(outcome.is_err(), "the user code did not panic");
}

fn keys(q: &Q) -> Vec<u32> {
    let mut out = Vec::new();
    while let Ok(entry) = q.try_take() {
        out.push(entry.key().expect("keys only").0);
    }
    out
}

fn assert_empty_and_whole(q: &Q) {
    assert_eq!(q.len(), 0, "entries left queued");
    assert_eq!(q.pending_keys(), 0, "a key left pending: {q:?}");
    assert_eq!(q.claimed_slots(), 0, "a claim leaked: {q:?}");
    assert_eq!(q.in_flight(), 0, "a lease left in flight: {q:?}");
}

/// A panicking `Clone` in a leased take: the entry is not lost and its key
/// not pinned; it is queued again at the tail.
#[test]
fn clone_panic_in_a_leased_take_queues_the_entry_again() {
    let q = Q::new(4);
    q.offer_key(Touchy(1)).unwrap();
    q.offer_key(Touchy(2)).unwrap();
    panics_with(&PANIC_IN_CLONE, || q.try_take_leased());
    assert_eq!(q.claimed_slots(), 2);
    assert_eq!(q.in_flight(), 0);
    assert_eq!(keys(&q), [2, 1]);
    assert_empty_and_whole(&q);
}

/// A panicking `Clone` half way through a leased batch: the entries the
/// batch had taken are nacked, the one being taken is queued again.
#[test]
fn clone_panic_in_a_leased_batch_gives_everything_back() {
    let q = Q::new(8);
    for key in 1..=3 {
        q.offer_key(Touchy(key)).unwrap();
    }
    // The first entry is taken before the flag can matter: let the clone
    // of the second one panic.
    let first = q.try_take_leased().unwrap();
    panics_with(&PANIC_IN_CLONE, || q.take_batch_leased(8, Duration::ZERO));
    first.nack();
    assert_eq!(q.in_flight(), 0);
    assert_eq!(q.claimed_slots(), 3);
    let mut taken = keys(&q);
    taken.sort_unstable();
    assert_eq!(taken, [1, 2, 3], "an entry was lost");
    assert_empty_and_whole(&q);
}

/// The take of a spilled key runs no `Hash` (its home bucket, whose
/// overflow counts it lowers, is recorded in its entry): a `Hash` that
/// panics by then does not stop it, and the counts come back to zero.
#[test]
fn the_take_of_a_spilled_key_runs_no_hash() {
    let q = Q::new(16);
    for key in 0..=8 {
        q.offer_key(Touchy(key)).unwrap();
    }
    assert!(q.overflow_counts() > 0, "key 8 did not spill");
    assert_eq!(keys_up_to(&q, 8), (0..8).collect::<Vec<_>>());
    PANIC_IN_HASH.set(true);
    let taken = catch_unwind(AssertUnwindSafe(|| q.try_take().unwrap().key().unwrap().0));
    PANIC_IN_HASH.set(false);
    assert_eq!(taken.expect("the take hashed the key"), 8);
    assert_eq!(q.overflow_counts(), 0, "the spill was not undone");
    assert_empty_and_whole(&q);
}

fn keys_up_to(q: &Q, count: usize) -> Vec<u32> {
    (0..count)
        .map(|_| q.try_take().unwrap().key().unwrap().0)
        .collect()
}

/// The ack of a spilled key runs no `Hash` either: its slot is freed, its
/// counts lowered, and the key can be offered anew.
#[test]
fn the_ack_of_a_spilled_key_runs_no_hash() {
    let q = Q::new(16);
    for key in 0..=8 {
        q.offer_key(Touchy(key)).unwrap();
    }
    keys_up_to(&q, 8);
    let lease = q.try_take_leased().unwrap();
    assert_eq!(lease.key().unwrap().0, 8);
    PANIC_IN_HASH.set(true);
    let acked = catch_unwind(AssertUnwindSafe(|| lease.ack()));
    PANIC_IN_HASH.set(false);
    assert!(acked.is_ok(), "the ack hashed the key");
    assert_eq!(q.overflow_counts(), 0, "the spill was not undone");
    assert_empty_and_whole(&q);
    assert_eq!(q.offer_key(Touchy(8)), Ok(Offered::Enqueued));
    assert_eq!(keys(&q), [8]);
}

/// A panicking `Hash` or `Eq` in an offer changes nothing, and leaves no
/// insert bit held (the next offer does not hang).
#[test]
fn hash_or_eq_panic_in_an_offer_changes_nothing() {
    let q = Q::new(4);
    q.offer_key(Touchy(1)).unwrap();
    panics_with(&PANIC_IN_HASH, || q.offer_key(Touchy(2)));
    // Every key has the same hash: the lookup of 2 compares it with 1.
    panics_with(&PANIC_IN_EQ, || q.offer_key(Touchy(2)));
    assert_eq!((q.len(), q.claimed_slots(), q.pending_keys()), (1, 1, 1));
    assert_eq!(q.offer_key(Touchy(2)), Ok(Offered::Enqueued));
    assert_eq!(q.offer_key(Touchy(1)), Ok(Offered::Coalesced));
    assert_eq!(keys(&q), [1, 2]);
    assert_empty_and_whole(&q);
}

/// A key's `Drop` that panics while a leased batch is acked: every lease
/// of the batch still ends (the rest are acked during the unwinding).
#[test]
fn drop_panic_in_a_batch_ack_still_ends_every_lease() {
    let q = Q::new(8);
    for key in 1..=3 {
        q.offer_key(Touchy(key)).unwrap();
    }
    let batch = q.take_batch_leased(8, Duration::ZERO);
    assert_eq!(batch.len(), 3);
    PANIC_IN_DROP_OF.set(Some(1));
    let outcome = catch_unwind(AssertUnwindSafe(|| batch.ack()));
    PANIC_IN_DROP_OF.set(None);
    assert!(outcome.is_err(), "the drop did not panic");
    assert_empty_and_whole(&q);
    assert_eq!(q.stats().acked, 3);
}

/// A key's `Drop` that panics in a coalesced offer (the duplicate is
/// dropped after the offer is done): the offer counted, nothing changed.
#[test]
fn drop_panic_of_a_coalesced_duplicate_leaves_the_pending_copy() {
    let q = Q::new(4);
    q.offer_key(Touchy(1)).unwrap();
    PANIC_IN_DROP_OF.set(Some(1));
    let outcome = catch_unwind(AssertUnwindSafe(|| q.offer_key(Touchy(1))));
    PANIC_IN_DROP_OF.set(None);
    assert!(outcome.is_err(), "the drop did not panic");
    assert_eq!(q.try_take().map(|e| e.key().map(|k| k.0)), Ok(Some(1)));
    assert_empty_and_whole(&q);
}
