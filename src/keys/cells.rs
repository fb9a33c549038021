//! How a key sits in a key-table entry: the two key stores.
//!
//! The table (`table.rs`) owns the entries' control words and the
//! protocol on them; a `Cells` type owns what holds each entry's key:
//!
//! * [`PackedCells`], the compact store ([`Compact`](crate::Compact)), for
//!   [`CompactKey`] keys: the packed key in `W` atomic words per entry. A
//!   lookup reads them with plain loads between two loads of the control
//!   word (a seqlock read, `KeyTable::lookup`), so a duplicate offer writes
//!   nothing; the key's own code never runs inside the store.
//! * [`LockedCells`], the general store (any `BuildHasher` as the store
//!   parameter), for any `Hash + Eq + Clone` key: a `Mutex<Option<K>>` per
//!   entry, locked for one comparison, one move or one clone.
//!
//! Both hash with the queue's `BuildHasher`: the compact store hashes the
//! packed words, the general store the key (`K::hash`).

use crate::keys::compact_key::{self, words_for, CompactKey, MAX_WORDS};
use crate::keys::table::EntryWord;
use crate::keys::try_filled;
use crate::sync::{AtomicU64, Mutex, Ordering};
use core::hash::{BuildHasher, Hash, Hasher};
use core::marker::PhantomData;
use std::collections::TryReserveError;
use std::sync::PoisonError;

/// The key cells of a table of entries. Sealed: implemented by the two
/// stores of this file only.
///
/// Every method with an `index` is called only by a thread that may touch
/// that entry's key at that point of the protocol (table.rs, E1-E7):
/// `write` by the owner of a `Reserved` entry; `take`, `read` and `clear`
/// by the owner of a popped or leased entry; `matches` by anyone.
pub trait Cells<K> {
    /// What a lookup compares with: the packed words, or nothing.
    #[doc(hidden)]
    type Probe;

    /// The hash of `key`, and its probe.
    #[doc(hidden)]
    fn probe(&self, key: &K) -> (u64, Self::Probe);

    /// Whether entry `index` holds `key` now. For the compact store, a read
    /// without synchronization: valid only if the entry's version did not
    /// change around it (the caller checks).
    #[doc(hidden)]
    fn matches(&self, index: usize, key: &K, probe: &Self::Probe) -> bool;

    /// Stores `key` into a `Reserved` entry this thread owns.
    #[doc(hidden)]
    fn write(&self, index: usize, key: K, probe: &Self::Probe);

    /// A copy of the key of an entry this thread owns (popped or leased).
    #[doc(hidden)]
    fn read(&self, index: usize) -> K;

    /// Moves the key out of an entry this thread owns (a plain take).
    #[doc(hidden)]
    fn take(&self, index: usize) -> K;

    /// Empties an entry this thread owns of its key (an ack), handing the
    /// key back so that it is dropped after the table is left.
    #[doc(hidden)]
    fn clear(&self, index: usize) -> Option<K>;

    /// `true` if a key held in an entry must be cleared when the entry is
    /// emptied (the general store: the key owns memory).
    #[doc(hidden)]
    const CLEARS: bool;

    /// `true` for the valued stores (`valued_cells.rs`): a pending key
    /// carries a value that a duplicate offer merges into (`merge`), that a
    /// take reads under the entry's value guard (`take_then`), and that a
    /// nack merges with what arrived meanwhile (`requeue_then`). The plain
    /// stores never have `merge` called and keep the default forms below.
    #[doc(hidden)]
    const VALUED: bool = false;

    /// Takes (`leased`: copies) the key of an entry this thread owns, and
    /// runs `commit` (the table's E3 or E5 store) so that no merge falls
    /// between the read and the store. The plain stores read, then commit:
    /// no merge ever writes their entries.
    #[doc(hidden)]
    #[inline(always)]
    fn take_then(&self, index: usize, leased: bool, commit: impl FnOnce()) -> K {
        let key = if leased {
            self.read(index)
        } else {
            self.take(index)
        };
        commit();
        key
    }

    /// Merges the value of `key` into the pending entry `index` that a
    /// lookup found (`entry`). Only for `VALUED` stores.
    #[doc(hidden)]
    fn merge(
        &self,
        index: usize,
        key: K,
        probe: &Self::Probe,
        entry: EntryWord<'_>,
        requeue: bool,
    ) -> Merged<K> {
        let _ = (index, key, probe, entry, requeue);
        unreachable!("merge is called only for a VALUED store")
    }

    /// A nack of the leased entry `index` (`leased`: the lease's copy):
    /// for a `VALUED` store, the value queued again is the leased one merged
    /// with what arrived meanwhile; `requeue` (E6) runs under the entry's
    /// value guard, also when the merge panics, whose payload is returned
    /// (to be resumed once the nack is finished). The plain stores just
    /// requeue.
    #[doc(hidden)]
    #[inline(always)]
    fn requeue_then(
        &self,
        index: usize,
        leased: &K,
        entry: EntryWord<'_>,
        requeue: impl FnOnce(),
    ) -> Option<Panic> {
        let _ = (index, leased, entry);
        requeue();
        None
    }
}

/// The payload of a panic in user code, to be resumed.
#[doc(hidden)]
pub(crate) type Panic = Box<dyn std::any::Any + Send>;

/// What a merge into a pending entry did (`Cells::merge`).
#[doc(hidden)]
#[derive(Debug)]
pub enum Merged<K> {
    /// Absorbed by the pending copy (its value merged, or dropped under
    /// `InFlightPolicy::Absorb`); `true` if that copy is in flight.
    Coalesced { in_flight: bool },
    /// The entry no longer holds the key that was found (taken or acked
    /// meanwhile): the key is handed back, to be offered again.
    Moved(K),
}

/// The compact store's cells: each key packed into `W` atomic words.
pub struct PackedCells<K, S> {
    words: Box<[AtomicU64]>,
    hasher: S,
    _key: PhantomData<fn(K) -> K>,
}

impl<K: CompactKey, S> PackedCells<K, S> {
    /// Words per key.
    const W: usize = words_for(K::BITS);

    /// Cells for `entries` keys; an error if the allocator refuses them.
    pub(crate) fn try_new(entries: usize, hasher: S) -> Result<Self, TryReserveError> {
        let words = entries.saturating_mul(Self::W);
        Ok(Self {
            words: try_filled(words, || AtomicU64::new(0))?,
            hasher,
            _key: PhantomData,
        })
    }

    #[cfg(all(test, not(loom), not(shuttle)))]
    pub(crate) fn new(entries: usize, hasher: S) -> Self {
        Self::try_new(entries, hasher).expect("cells allocated")
    }

    #[inline(always)]
    fn load(&self, index: usize) -> [u64; MAX_WORDS] {
        let mut words = [0; MAX_WORDS];
        let stored = &self.words[index * Self::W..][..Self::W];
        for (word, stored) in words.iter_mut().zip(stored) {
            // Relaxed: ordered by the control word around it (a seqlock
            // read, or an owner's read after its Acquire of the entry).
            *word = stored.load(Ordering::Relaxed);
        }
        words
    }
}

impl<K: CompactKey, S: BuildHasher> PackedCells<K, S> {
    /// The hash of a packed key (what the compact store hashes).
    #[inline(always)]
    fn hash_words(&self, words: &[u64; MAX_WORDS]) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        for word in &words[..Self::W] {
            hasher.write_u64(*word);
        }
        hasher.finish()
    }
}

impl<K: CompactKey, S: BuildHasher> Cells<K> for PackedCells<K, S> {
    type Probe = [u64; MAX_WORDS];
    const CLEARS: bool = false;

    #[inline(always)]
    fn probe(&self, key: &K) -> (u64, Self::Probe) {
        let words = compact_key::pack(key);
        (self.hash_words(&words), words)
    }

    #[inline(always)]
    fn matches(&self, index: usize, _: &K, probe: &Self::Probe) -> bool {
        let words = &self.words[index * Self::W..][..Self::W];
        words
            .iter()
            .zip(probe)
            // Relaxed: a seqlock read, validated by the caller.
            .all(|(word, want)| word.load(Ordering::Relaxed) == *want)
    }

    #[inline(always)]
    fn write(&self, index: usize, _: K, probe: &Self::Probe) {
        let stored = &self.words[index * Self::W..][..Self::W];
        for (stored, word) in stored.iter().zip(probe) {
            // Relaxed: published by the Release store of `Queued` that
            // follows, after the writer's Release fence (E2).
            stored.store(*word, Ordering::Relaxed);
        }
    }

    #[inline(always)]
    fn read(&self, index: usize) -> K {
        compact_key::unpack(&self.load(index))
    }

    #[inline(always)]
    fn take(&self, index: usize) -> K {
        self.read(index)
    }

    #[inline(always)]
    fn clear(&self, _: usize) -> Option<K> {
        None
    }
}

/// The general store's cells: a `Mutex<Option<K>>` per entry.
///
/// A lock is taken ignoring poison: user code run under it (`K::eq`,
/// `K::clone`) leaves the cell as it was if it panics.
pub struct LockedCells<K, S> {
    keys: Box<[Mutex<Option<K>>]>,
    hasher: S,
}

impl<K, S> LockedCells<K, S> {
    /// Cells for `entries` keys; an error if the allocator refuses them.
    pub(crate) fn try_new(entries: usize, hasher: S) -> Result<Self, TryReserveError> {
        Ok(Self {
            keys: try_filled(entries, || Mutex::new(None))?,
            hasher,
        })
    }

    #[cfg(all(test, not(loom), not(shuttle)))]
    pub(crate) fn new(entries: usize, hasher: S) -> Self {
        Self::try_new(entries, hasher).expect("cells allocated")
    }

    #[inline(always)]
    fn lock(&self, index: usize) -> crate::sync::MutexGuard<'_, Option<K>> {
        self.keys[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K: Hash + Eq + Clone, S: BuildHasher> Cells<K> for LockedCells<K, S> {
    type Probe = ();
    const CLEARS: bool = true;

    #[inline(always)]
    fn probe(&self, key: &K) -> (u64, ()) {
        (self.hasher.hash_one(key), ())
    }

    #[inline(always)]
    fn matches(&self, index: usize, key: &K, _: &()) -> bool {
        self.lock(index).as_ref() == Some(key)
    }

    #[inline(always)]
    fn write(&self, index: usize, key: K, _: &()) {
        let old = self.lock(index).replace(key);
        // E1: a reserved entry was cleared when it was last emptied.
        debug_assert!(old.is_none(), "a reserved entry still held a key");
    }

    #[inline(always)]
    fn read(&self, index: usize) -> K {
        self.lock(index)
            .as_ref()
            .expect("an owned entry holds its key (breaks I4)")
            .clone()
    }

    #[inline(always)]
    fn take(&self, index: usize) -> K {
        self.lock(index)
            .take()
            .expect("an owned entry holds its key (breaks I4)")
    }

    #[inline(always)]
    fn clear(&self, index: usize) -> Option<K> {
        self.lock(index).take()
    }
}

impl<K, S> core::fmt::Debug for PackedCells<K, S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PackedCells").finish_non_exhaustive()
    }
}

impl<K, S> core::fmt::Debug for LockedCells<K, S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LockedCells").finish_non_exhaustive()
    }
}
