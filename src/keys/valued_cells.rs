//! The cells of the valued stores (`valued.rs`): a key `(K, P)` whose
//! identity `K` sits in an entry as in the plain stores and whose value `P`
//! is merged into by duplicates.
//!
//! What every transition of a valued entry keeps (cited as V1-V3):
//! * V1 The value pending at a take is what the take delivers: a merge into
//!   a pending entry and the take's state change (E3, E5) exclude each
//!   other, so a merge either lands before the take reads the value or sees
//!   the entry gone (and its offer inserts the key anew).
//! * V2 While a key is in flight the slot holds the values offered since
//!   the lease began (none while `InFlight`; merged among themselves once
//!   `Dirty`); the lease's copy is never written. An ack of a dirty entry
//!   queues them; a nack queues `merge(leased, arrived)` (E6 under the
//!   entry's value guard, so no merge slips between).
//! * V3 No user code (`Merge`, `pack`, `unpack`, `Clone`) runs while a
//!   compact entry's value bit is held: a merge is computed on a copy and
//!   written only if nothing changed the value since the copy was read.
//!
//! * [`ValuedPackedCells`], `Valued<Compact>`: the value packed into atomic
//!   words beside the key's, and a per-entry value word: bit 0 held by the
//!   one writer of the value (a merge's write, a take's or a nack's state
//!   change), the rest counting those writes. A writer takes the bit with a
//!   CAS from the count it read before copying the value, so its copy is
//!   current exactly when the CAS succeeds (a seqlock whose readers are
//!   writers too); it holds the bit for a few stores. A duplicate whose
//!   merge leaves the value as it is writes nothing.
//! * [`ValuedLockedCells`], `Valued<S>` for a hasher `S`: a
//!   `Mutex<Option<(K, P)>>` per entry, as the general store; a merge and
//!   a take's state change run with it held.

use crate::keys::cells::{Cells, Merged, PackedCells, Panic};
use crate::keys::compact_key::{self, words_for, CompactKey, MAX_WORDS};
use crate::keys::control::State;
use crate::keys::table::EntryWord;
use crate::keys::try_filled;
use crate::keys::valued::Merge;
use crate::sync::{fence, spin_wait, AtomicU64, Mutex, MutexGuard, Ordering};
use core::hash::{BuildHasher, Hash};
use core::marker::PhantomData;
use std::collections::TryReserveError;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::PoisonError;

/// The value word's held bit; the count of writes is the rest.
const HELD: u64 = 1;

/// The compact valued store's cells: the identity in `PackedCells`, the
/// value in `W` more words per entry, and a value word per entry.
pub struct ValuedPackedCells<K, P, S, M> {
    keys: PackedCells<K, S>,
    values: Box<[AtomicU64]>,
    /// Per entry: bit 0 held by the value's one writer, the rest counts
    /// writes (see the file's head).
    guards: Box<[AtomicU64]>,
    merge: M,
    _value: PhantomData<fn(P) -> P>,
}

impl<K: CompactKey, P: CompactKey, S, M> ValuedPackedCells<K, P, S, M> {
    /// Words per value.
    const W: usize = words_for(P::BITS);

    /// Cells for `entries` keys; an error if the allocator refuses them.
    pub(crate) fn try_new(entries: usize, hasher: S, merge: M) -> Result<Self, TryReserveError> {
        Ok(Self {
            keys: PackedCells::try_new(entries, hasher)?,
            values: try_filled(entries.saturating_mul(Self::W), || AtomicU64::new(0))?,
            guards: try_filled(entries, || AtomicU64::new(0))?,
            merge,
            _value: PhantomData,
        })
    }

    /// The value words of entry `index`: a copy that is current only if the
    /// value word is unchanged since it was read (the caller checks).
    #[inline(always)]
    fn value_words(&self, index: usize) -> [u64; MAX_WORDS] {
        let mut words = [0; MAX_WORDS];
        let stored = &self.values[index * Self::W..][..Self::W];
        for (word, stored) in words.iter_mut().zip(stored) {
            // Relaxed: validated by the value word (a CAS from the count
            // read before, or the seqlock check of `unchanged`).
            *word = stored.load(Ordering::Relaxed);
        }
        words
    }

    #[inline(always)]
    fn store_value(&self, index: usize, words: &[u64; MAX_WORDS]) {
        let stored = &self.values[index * Self::W..][..Self::W];
        for (stored, word) in stored.iter().zip(words) {
            // Relaxed: under the held bit; published by its Release.
            stored.store(*word, Ordering::Relaxed);
        }
    }

    /// The value word of `index` when not held: the count a writer will CAS
    /// from. Acquire: pairs with the last writer's Release, so the value
    /// (and the entry state that writer stored) read next are its own or
    /// newer.
    #[inline(always)]
    fn unheld(&self, index: usize) -> u64 {
        loop {
            let seen = self.guards[index].load(Ordering::Acquire);
            if seen & HELD == 0 {
                return seen;
            }
            // A holder keeps the bit for a few stores (V3).
            spin_wait();
        }
    }

    /// Whether no write came since `seen` was read (a seqlock check): the
    /// value copied in between is current. Acquire fence: if a word read
    /// came from a later writer, the load below sees that writer's bit.
    #[inline(always)]
    fn unchanged(&self, index: usize, seen: u64) -> bool {
        fence(Ordering::Acquire);
        self.guards[index].load(Ordering::Relaxed) == seen
    }

    /// Takes the value bit if no write came since `seen` (V3). Acquire:
    /// what the last writer did is seen; the Release fence orders the bit
    /// before the value stores that follow, for seqlock readers.
    #[inline(always)]
    fn hold(&self, index: usize, seen: u64) -> bool {
        let held = self.guards[index]
            .compare_exchange(seen, seen | HELD, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        if held {
            fence(Ordering::Release);
        }
        held
    }

    /// Lets go of the bit taken at `seen`, one write more. Release: the
    /// value and the state stored under it are seen by the next holder and
    /// by readers that see the new count.
    #[inline(always)]
    fn release(&self, index: usize, seen: u64) {
        self.guards[index].store(seen + 2, Ordering::Release);
    }
}

impl<K, P, S, M> Cells<(K, P)> for ValuedPackedCells<K, P, S, M>
where
    K: CompactKey,
    P: CompactKey,
    S: BuildHasher,
    M: Merge<P>,
{
    /// The identity's probe and the packed value.
    type Probe = ([u64; MAX_WORDS], [u64; MAX_WORDS]);
    const CLEARS: bool = false;
    const VALUED: bool = true;

    #[inline(always)]
    fn probe(&self, key: &(K, P)) -> (u64, Self::Probe) {
        let (hash, words) = self.keys.probe(&key.0);
        // Packed now, before the offer changes anything: a `pack` that
        // panics (an understated BITS) leaves the queue as it was.
        (hash, (words, compact_key::pack(&key.1)))
    }

    #[inline(always)]
    fn matches(&self, index: usize, key: &(K, P), probe: &Self::Probe) -> bool {
        self.keys.matches(index, &key.0, &probe.0)
    }

    #[inline(always)]
    fn write(&self, index: usize, key: (K, P), probe: &Self::Probe) {
        // A reserved entry: no one else reads or writes its value until it
        // is published (E2, whose Release store follows).
        self.keys.write(index, key.0, &probe.0);
        self.store_value(index, &probe.1);
    }

    #[inline(always)]
    fn read(&self, index: usize) -> (K, P) {
        (
            self.keys.read(index),
            compact_key::unpack(&self.value_words(index)),
        )
    }

    #[inline(always)]
    fn take(&self, index: usize) -> (K, P) {
        self.read(index)
    }

    #[inline(always)]
    fn clear(&self, _: usize) -> Option<(K, P)> {
        None
    }

    /// V1: the value is copied and unpacked (user code) before the bit is
    /// taken; the bit is taken only if no merge wrote since, and `commit`
    /// runs under it.
    #[inline(always)]
    fn take_then(&self, index: usize, _leased: bool, commit: impl FnOnce()) -> (K, P) {
        loop {
            let seen = self.unheld(index);
            let words = self.value_words(index);
            if !self.unchanged(index, seen) {
                continue;
            }
            let key = (self.keys.read(index), compact_key::unpack(&words));
            if self.hold(index, seen) {
                commit();
                self.release(index, seen);
                return key;
            }
        }
    }

    fn merge(
        &self,
        index: usize,
        key: (K, P),
        probe: &Self::Probe,
        entry: EntryWord<'_>,
        requeue: bool,
    ) -> Merged<(K, P)> {
        loop {
            let seen = self.unheld(index);
            let now = entry.load();
            if !entry.holds_found(now) {
                return Merged::Moved(key);
            }
            let in_flight = now.is_leased();
            let first_arrival = now.is(State::InFlight);
            if first_arrival && !requeue {
                // InFlightPolicy::Absorb: the value goes with the offer.
                return Merged::Coalesced { in_flight };
            }
            let merged = if first_arrival {
                // V2: nothing arrived yet; the slot holds the leased copy,
                // which this value replaces, not joins.
                probe.1
            } else {
                let old = self.value_words(index);
                if !self.unchanged(index, seen) {
                    continue;
                }
                let mut pending: P = compact_key::unpack(&old);
                self.merge.merge(&mut pending, key.1);
                let merged = compact_key::pack(&pending);
                if merged[..Self::W] == old[..Self::W] {
                    // Nothing to write: the pending value already reflects
                    // this offer (it was current when `unchanged` looked).
                    return Merged::Coalesced { in_flight };
                }
                merged
            };
            if !self.hold(index, seen) {
                continue;
            }
            // E4 under the bit (V2): an ack that won the word first took the
            // key out of the table; the offer then inserts it anew.
            if first_arrival && !entry.mark_dirty(now) {
                self.release(index, seen);
                return Merged::Moved(key);
            }
            self.store_value(index, &merged);
            self.release(index, seen);
            return Merged::Coalesced { in_flight };
        }
    }

    /// V2: `merge(leased, arrived)` is computed on copies, then written with
    /// the E6 swap under the bit. If the merge panics, the entry is queued
    /// again with what arrived, and the panic is handed back.
    fn requeue_then(
        &self,
        index: usize,
        leased: &(K, P),
        entry: EntryWord<'_>,
        requeue: impl FnOnce(),
    ) -> Option<Panic> {
        loop {
            let seen = self.unheld(index);
            let (merged, panic) = if entry.load().is(State::Dirty) {
                let arrived = self.value_words(index);
                if !self.unchanged(index, seen) {
                    continue;
                }
                match catch_unwind(AssertUnwindSafe(|| {
                    let mut pending = leased.1;
                    self.merge
                        .merge(&mut pending, compact_key::unpack(&arrived));
                    compact_key::pack(&pending)
                })) {
                    Ok(merged) => (Some(merged), None),
                    Err(panic) => (None, Some(panic)),
                }
            } else {
                // `InFlight`: nothing arrived; the slot still holds the
                // leased value (V2).
                (None, None)
            };
            if !self.hold(index, seen) {
                continue;
            }
            if let Some(merged) = merged {
                self.store_value(index, &merged);
            }
            // Under the bit: no E4 comes between the state read above and
            // this swap.
            requeue();
            self.release(index, seen);
            return panic;
        }
    }
}

/// One entry of the general valued store: its key and value, if any.
type Cell<K, P> = Mutex<Option<(K, P)>>;

/// The general valued store's cells: a `Mutex<Option<(K, P)>>` per entry,
/// hashed and compared on `K` alone.
pub struct ValuedLockedCells<K, P, S, M> {
    keys: Box<[Cell<K, P>]>,
    hasher: S,
    merge: M,
}

impl<K, P, S, M> ValuedLockedCells<K, P, S, M> {
    /// Cells for `entries` keys; an error if the allocator refuses them.
    pub(crate) fn try_new(entries: usize, hasher: S, merge: M) -> Result<Self, TryReserveError> {
        Ok(Self {
            keys: try_filled(entries, || Mutex::new(None))?,
            hasher,
            merge,
        })
    }

    #[inline(always)]
    fn lock(&self, index: usize) -> MutexGuard<'_, Option<(K, P)>> {
        self.keys[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K, P, S, M> Cells<(K, P)> for ValuedLockedCells<K, P, S, M>
where
    K: Hash + Eq + Clone,
    P: Clone,
    S: BuildHasher,
    M: Merge<P>,
{
    type Probe = ();
    const CLEARS: bool = true;
    const VALUED: bool = true;

    #[inline(always)]
    fn probe(&self, key: &(K, P)) -> (u64, ()) {
        (self.hasher.hash_one(&key.0), ())
    }

    #[inline(always)]
    fn matches(&self, index: usize, key: &(K, P), _: &()) -> bool {
        self.lock(index).as_ref().map(|(k, _)| k) == Some(&key.0)
    }

    #[inline(always)]
    fn write(&self, index: usize, key: (K, P), _: &()) {
        let old = self.lock(index).replace(key);
        debug_assert!(old.is_none(), "a reserved entry still held a key");
    }

    fn read(&self, index: usize) -> (K, P) {
        self.lock(index)
            .as_ref()
            .expect("an owned entry holds its key (breaks I4)")
            .clone()
    }

    fn take(&self, index: usize) -> (K, P) {
        self.lock(index)
            .take()
            .expect("an owned entry holds its key (breaks I4)")
    }

    fn clear(&self, index: usize) -> Option<(K, P)> {
        self.lock(index).take()
    }

    /// V1: the read and `commit` under the entry's lock. A leased take's
    /// `Clone` (user code) runs before `commit`: if it panics, the entry is
    /// still queued.
    fn take_then(&self, index: usize, leased: bool, commit: impl FnOnce()) -> (K, P) {
        let mut cell = self.lock(index);
        let key = if leased { cell.clone() } else { cell.take() }
            .expect("an owned entry holds its key (breaks I4)");
        commit();
        key
    }

    fn merge(
        &self,
        index: usize,
        key: (K, P),
        _: &(),
        entry: EntryWord<'_>,
        requeue: bool,
    ) -> Merged<(K, P)> {
        let mut cell = self.lock(index);
        let now = entry.load();
        let Some((_, pending)) = cell.as_mut().filter(|_| entry.holds_found(now)) else {
            return Merged::Moved(key);
        };
        let in_flight = now.is_leased();
        if now.is(State::InFlight) {
            if !requeue {
                return Merged::Coalesced { in_flight };
            }
            // E4 under the lock (V2); an ack that won took the key out.
            if !entry.mark_dirty(now) {
                return Merged::Moved(key);
            }
            *pending = key.1;
        } else {
            self.merge.merge(pending, key.1);
        }
        Merged::Coalesced { in_flight }
    }

    /// V2 under the entry's lock. If the merge (or the leased value's
    /// `Clone`) panics, the entry is queued again with the leased value (or
    /// what the merge left of it; with what arrived if the clone panicked),
    /// and the panic is handed back.
    fn requeue_then(
        &self,
        index: usize,
        leased: &(K, P),
        entry: EntryWord<'_>,
        requeue: impl FnOnce(),
    ) -> Option<Panic> {
        let mut cell = self.lock(index);
        let mut panic = None;
        if entry.load().is(State::Dirty) {
            let (_, pending) = cell
                .as_mut()
                .expect("a leased entry holds its key (breaks I4)");
            panic = catch_unwind(AssertUnwindSafe(|| {
                let arrived = core::mem::replace(pending, leased.1.clone());
                self.merge.merge(pending, arrived);
            }))
            .err();
        }
        requeue();
        panic
    }
}

impl<K, P, S, M> core::fmt::Debug for ValuedPackedCells<K, P, S, M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ValuedPackedCells").finish_non_exhaustive()
    }
}

impl<K, P, S, M> core::fmt::Debug for ValuedLockedCells<K, P, S, M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ValuedLockedCells").finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom), not(shuttle)))]
mod tests {
    use super::*;
    use crate::keys::table::{entries_for, KeyTable, Offer};
    use crate::keys::valued::Latest;

    type Table =
        KeyTable<(u64, u64), ValuedPackedCells<u64, u64, foldhash::fast::FixedState, Latest>>;

    fn table() -> Table {
        let hasher = foldhash::fast::FixedState::with_seed(7);
        let cells = ValuedPackedCells::try_new(entries_for(8), hasher, Latest).unwrap();
        KeyTable::new(8, cells)
    }

    /// The state of entry `index` as a writer would change it: its value
    /// word and its value words.
    fn written(table: &Table, index: u32) -> (u64, [u64; MAX_WORDS]) {
        let cells = table.cells();
        let index = index as usize;
        (
            cells.guards[index].load(Ordering::Relaxed),
            cells.value_words(index),
        )
    }

    /// A duplicate whose value is the pending one (under `Latest`) writes
    /// nothing: the value word keeps its count. One with another value
    /// writes once.
    #[test]
    fn an_equal_value_writes_nothing() {
        let table = table();
        let Offer::Inserted(index) = table.offer((1, 5), true, || false, || Ok(())) else {
            panic!("not inserted")
        };
        let before = written(&table, index);
        for _ in 0..3 {
            assert!(matches!(
                table.offer(
                    (1, 5),
                    true,
                    || false,
                    || panic!("no claim for a duplicate")
                ),
                Offer::Coalesced { in_flight: false }
            ));
        }
        assert_eq!(written(&table, index), before, "an equal value was written");
        table.offer((1, 6), true, || false, || panic!("no claim"));
        let (count, words) = written(&table, index);
        assert_eq!((count, words[0]), (before.0 + 2, 6));
        assert_eq!(table.take(index, None), (1, 6));
    }
}
