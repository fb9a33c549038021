//! The key table: one entry per key that is queued or in flight (I4 of
//! `CoalescingQueue`), and the only place a pending key is stored.
//!
//! The ring holds a [`Handle`] (16 bytes) for a queued key, not the key: a
//! take finds the entry through it, removes it and hands the key out (plain
//! take), or marks it in flight and hands out a clone (leased take). So a
//! pending key costs one table entry and one ring slot of a handle, and a
//! duplicate offer costs nothing.
//!
//! Shards: `Mutex<hashbrown::HashTable>`, each on its own cache line. Every
//! operation hashes the key once (`S::hash_one`; a take reuses the hash in
//! the handle) and holds its shard's lock for the lookup and the change, so
//! it is linearizable per key, as the protocol needs (DESIGN.md section 3).
//!
//! Invariants:
//! * T1 An entry's `seq` is unique among the entries of its shard: each
//!   insert takes the shard's next number. A handle (hash, seq) therefore
//!   names at most one entry, even among keys whose hashes are equal.
//! * T2 An entry keeps its hash and `seq` from insert to removal, so a
//!   handle pushed again at a requeue still names it.
//!
//! Panics under a shard lock come only from user code (`K::eq`, `K::clone`,
//! and `K::hash` when a table must grow); a lock is taken with
//! `PoisonError::into_inner`, as none of them leaves a table inconsistent.
//! What such a panic does to the protocol is said in DESIGN.md section 3.

use crate::key_state::KeyState;
use crate::sync::{Mutex, MutexGuard};
use core::hash::{BuildHasher, Hash};
use crossbeam_utils::CachePadded;
use hashbrown::hash_table::{Entry, HashTable, VacantEntry};
use std::sync::PoisonError;

/// Names one entry of the table; what the ring holds for a queued key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Handle {
    hash: u64,
    seq: u64,
}

struct Slot<K> {
    key: K,
    seq: u64,
    state: KeyState,
}

struct Shard<K> {
    table: HashTable<Slot<K>>,
    /// The `seq` of the next insert (T1).
    next_seq: u64,
}

pub(crate) struct KeyTable<K, S> {
    shards: Box<[CachePadded<Mutex<Shard<K>>>]>,
    hasher: S,
}

/// A key's entry as an offer sees it, under its shard's lock.
pub(crate) enum Lookup<'a, K> {
    /// The key is queued or in flight; its state may be changed in place.
    /// The offered key is handed back (it equals the stored one).
    Pending(&'a mut KeyState, K),
    /// The key is absent; `Vacancy::insert` reserves it.
    Absent(Vacancy<'a, K>),
}

/// An absent key, its shard locked until this is inserted or dropped.
pub(crate) struct Vacancy<'a, K> {
    entry: VacantEntry<'a, Slot<K>>,
    next_seq: &'a mut u64,
    hash: u64,
    key: K,
}

impl<K> Vacancy<'_, K> {
    /// Inserts the key with `state`; returns the handle for the ring.
    pub(crate) fn insert(self, state: KeyState) -> Handle {
        let seq = *self.next_seq;
        *self.next_seq += 1; // keeps T1
        self.entry.insert(Slot {
            key: self.key,
            seq,
            state,
        });
        Handle {
            hash: self.hash,
            seq,
        }
    }

    /// Gives the key back without inserting it.
    pub(crate) fn into_key(self) -> K {
        self.key
    }
}

/// The fewest and the most shards.
const MIN_SHARDS: usize = 8;
const MAX_SHARDS: usize = 256;

impl<K: Eq + Hash + Clone, S: BuildHasher> KeyTable<K, S> {
    /// A table for at most `capacity` keys, allocated here at full size.
    ///
    /// hashbrown gives a table a power of two of buckets, at most 7/8 full.
    /// With a power-of-two number of shards, a capacity that is itself a
    /// power of two would land every shard just past a power of two and
    /// double the buckets. So the shard count is chosen (from the expected
    /// concurrency up to twice that) to need the fewest buckets in all. Each
    /// shard is sized for its even share of `capacity` plus four standard
    /// deviations of the binomial spread of a random hash (and 4), so a
    /// full queue finds room in every shard and offers never allocate (G7);
    /// a shard that does receive more grows once and keeps its size.
    pub(crate) fn with_capacity_and_hasher(capacity: usize, hasher: S) -> Self {
        let (count, per_shard) = layout(capacity);
        let shards = (0..count)
            .map(|_| {
                CachePadded::new(Mutex::new(Shard {
                    table: HashTable::with_capacity(per_shard),
                    next_seq: 0,
                }))
            })
            .collect();
        Self { shards, hasher }
    }

    #[inline]
    fn hash(&self, key: &K) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The shard of a hash. A fast hasher may leave little entropy in some
    /// bits: foldhash, for keys that differ only in a few low bits, varies
    /// its high bits little under some seeds, and taking the shard from
    /// them sent 100 keys to 2 shards of 9 (found by
    /// `a_full_table_never_grows`). So the hash is mixed first (xor-shift
    /// and multiply, the first steps of splitmix64's finalizer), whose top
    /// bits depend on every bit of it, then multiply-shift maps the top 32
    /// onto any shard count. Within a shard hashbrown still sees the
    /// original hash, its low bits (bucket) and top 7 (tag).
    #[inline]
    fn shard_index(&self, hash: u64) -> usize {
        let mixed = (hash ^ (hash >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        (((mixed >> 32) * self.shards.len() as u64) >> 32) as usize
    }

    #[inline]
    fn lock(&self, index: usize) -> MutexGuard<'_, Shard<K>> {
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The shard of a hash, locked.
    #[inline]
    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard<K>> {
        self.lock(self.shard_index(hash))
    }

    /// Runs `f` on `key`'s entry with the key's shard locked.
    #[inline(always)]
    pub(crate) fn entry<R>(&self, key: K, f: impl FnOnce(Lookup<'_, K>) -> R) -> R {
        let hash = self.hash(&key);
        let mut shard = self.shard(hash);
        let Shard { table, next_seq } = &mut *shard;
        // The rehash closure runs only if the table must grow.
        match table.entry(hash, |slot| slot.key == key, |slot| self.hash(&slot.key)) {
            Entry::Occupied(mut occupied) => f(Lookup::Pending(&mut occupied.get_mut().state, key)),
            Entry::Vacant(entry) => f(Lookup::Absent(Vacancy {
                entry,
                next_seq,
                hash,
                key,
            })),
        }
    }

    /// The key of the entry `handle` names, for a take: a plain take
    /// removes the entry and moves its key out; a leased one marks it in
    /// flight and clones the key (the entry stays, deduplicating, while the
    /// lease is out). `None` if no entry has that handle.
    #[inline]
    pub(crate) fn take(&self, handle: Handle, leased: bool) -> Option<K> {
        take_in(&mut self.shard(handle.hash).table, handle, leased)
    }

    /// A clone of the key the handle names, changing nothing.
    #[cfg(coalescing_mutant = "deliver_before_remove")]
    pub(crate) fn key_of(&self, handle: Handle) -> Option<K> {
        let shard = self.shard(handle.hash);
        let slot = shard
            .table
            .find(handle.hash, |slot| slot.seq == handle.seq)?;
        Some(slot.key.clone())
    }

    /// The keys of `handles` for a batch take, each shard locked once for
    /// all of its handles: a plain take removes the entries and moves their
    /// keys out, a leased one marks them in flight and clones them.
    /// `keys[i]` receives the key of `handles[i]`, if it has an entry; at
    /// most 64 handles.
    pub(crate) fn take_many(
        &self,
        handles: &[Option<Handle>],
        leased: bool,
        keys: &mut [Option<K>],
    ) {
        debug_assert!(handles.len() <= 64 && keys.len() >= handles.len());
        let mut shard_of = [0; 64];
        // Bit i: handle i still to do.
        let mut pending = 0u64;
        for (i, handle) in handles.iter().enumerate() {
            if let Some(handle) = handle {
                shard_of[i] = self.shard_index(handle.hash);
                pending |= 1 << i;
            }
        }
        while pending != 0 {
            let index = shard_of[pending.trailing_zeros() as usize];
            let mut shard = self.lock(index);
            let mut rest = pending;
            while rest != 0 {
                let i = rest.trailing_zeros() as usize;
                rest &= rest - 1;
                if let (true, Some(handle)) = (shard_of[i] == index, handles[i]) {
                    pending &= !(1 << i);
                    keys[i] = take_in(&mut shard.table, handle, leased);
                }
            }
        }
    }

    /// Runs `f` on `key`'s state if present; removes the entry if `f`
    /// returns `true` for "remove". Returns what `f` returned and the
    /// entry's handle (still valid unless removed, T2), or `None` if absent.
    #[inline]
    pub(crate) fn update<R>(
        &self,
        key: &K,
        f: impl FnOnce(&mut KeyState) -> (R, bool),
    ) -> Option<(R, Handle)> {
        let hash = self.hash(key);
        let mut shard = self.shard(hash);
        let mut found = shard.table.find_entry(hash, |slot| slot.key == *key).ok()?;
        let slot = found.get_mut();
        let handle = Handle {
            hash,
            seq: slot.seq,
        };
        let (r, remove) = f(&mut slot.state);
        if remove {
            found.remove();
        }
        Some((r, handle))
    }

    pub(crate) fn get(&self, key: &K) -> Option<KeyState> {
        let hash = self.hash(key);
        let shard = self.shard(hash);
        shard
            .table
            .find(hash, |slot| slot.key == *key)
            .map(|slot| slot.state)
    }

    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .table
                    .len()
            })
            .sum()
    }
}

/// `KeyTable::take` on a locked shard's table.
#[inline]
fn take_in<K: Clone>(table: &mut HashTable<Slot<K>>, handle: Handle, leased: bool) -> Option<K> {
    let found = table
        .find_entry(handle.hash, |slot| slot.seq == handle.seq)
        .ok()?;
    if !leased {
        return Some(found.remove().0.key);
    }
    let slot = found.into_mut();
    // Clone first: a panicking `clone` leaves the state as it was.
    let key = slot.key.clone();
    slot.state = KeyState::InFlight;
    Some(key)
}

/// `(shards, keys per shard)` for `capacity` keys: the count in
/// `[n, 2n]` (n: four per core, within `MIN_SHARDS..=MAX_SHARDS`, at most
/// `capacity`) whose tables need the fewest buckets in all.
fn layout(capacity: usize) -> (usize, usize) {
    let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
    let least = parallelism
        .saturating_mul(4)
        .clamp(MIN_SHARDS, MAX_SHARDS)
        .min(capacity.max(1));
    (least..=2 * least)
        .map(|count| {
            let share = capacity.div_ceil(count);
            let per_shard = share + 4 * share.isqrt() + 4;
            (count, per_shard, count.saturating_mul(buckets(per_shard)))
        })
        .min_by_key(|&(_, _, total)| total)
        .map(|(count, per_shard, _)| (count, per_shard))
        .unwrap_or((1, capacity))
}

/// The buckets hashbrown allocates for `capacity` entries: a power of two,
/// at most 7/8 full (below 8 buckets: up to 3 in 4, 7 in 8).
fn buckets(capacity: usize) -> usize {
    if capacity < 4 {
        4
    } else if capacity < 8 {
        8
    } else {
        (capacity.saturating_mul(8) / 7).next_power_of_two()
    }
}

#[cfg(all(test, not(loom), not(shuttle)))]
mod tests {
    use super::*;
    use crate::key_state::KeyState::{InFlight, Queued};

    type Table = KeyTable<u64, foldhash::fast::RandomState>;

    /// Each shard's room (entries it holds before it must grow).
    fn room<S: BuildHasher>(table: &KeyTable<u64, S>) -> Vec<usize> {
        table
            .shards
            .iter()
            .map(|s| s.lock().unwrap().table.capacity())
            .collect()
    }

    fn insert<S: BuildHasher>(table: &KeyTable<u64, S>, key: u64) -> Handle {
        table.entry(key, |lookup| match lookup {
            Lookup::Absent(vacancy) => vacancy.insert(Queued),
            Lookup::Pending(..) => panic!("{key} already present"),
        })
    }

    #[test]
    fn a_handle_names_its_entry_until_removed() {
        let table = Table::with_capacity_and_hasher(16, Default::default());
        let one = insert(&table, 1);
        let two = insert(&table, 2);
        assert_eq!(table.len(), 2);
        assert!(table.entry(1, |lookup| matches!(lookup, Lookup::Pending(_, 1))));
        assert_eq!(table.take(two, true), Some(2));
        assert_eq!(table.get(&2), Some(InFlight));
        assert_eq!(table.take(one, false), Some(1));
        assert_eq!(table.take(one, false), None, "a removed entry is gone");
        let (state, again) = table.update(&2, |s| (*s, false)).unwrap();
        assert_eq!((state, again), (InFlight, two), "T2: the handle stays");
        assert_eq!(table.update(&2, |_| ((), true)).map(|(r, _)| r), Some(()));
        assert_eq!(table.len(), 0);
    }

    /// Keys with equal hashes: the handle still tells them apart (T1).
    #[test]
    fn equal_hashes_are_told_apart_by_seq() {
        #[derive(Clone, Default)]
        struct Constant;
        impl BuildHasher for Constant {
            type Hasher = Zero;
            fn build_hasher(&self) -> Zero {
                Zero
            }
        }
        struct Zero;
        impl core::hash::Hasher for Zero {
            fn finish(&self) -> u64 {
                0
            }
            fn write(&mut self, _: &[u8]) {}
        }
        let table = KeyTable::<u32, Constant>::with_capacity_and_hasher(4, Constant);
        let handles: Vec<Handle> = (0..4)
            .map(|k| {
                table.entry(k, |lookup| match lookup {
                    Lookup::Absent(vacancy) => vacancy.insert(Queued),
                    Lookup::Pending(..) => unreachable!(),
                })
            })
            .collect();
        // Removed out of order, each handle yields its own key.
        for &i in &[2, 0, 3, 1] {
            assert_eq!(table.take(handles[i], false), Some(i as u32));
        }
    }

    /// An identity hasher for integer keys (what `nohash`-style hashers
    /// do): all entropy in the low bits, none in the high ones.
    #[derive(Clone, Default)]
    struct Identity;
    impl BuildHasher for Identity {
        type Hasher = IdentityHasher;
        fn build_hasher(&self) -> IdentityHasher {
            IdentityHasher(0)
        }
    }
    struct IdentityHasher(u64);
    impl core::hash::Hasher for IdentityHasher {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for &b in bytes {
                self.0 = self.0 << 8 | u64::from(b);
            }
        }
        fn write_u64(&mut self, n: u64) {
            self.0 = n;
        }
    }

    /// No shard of a full table grows (G7), whatever the hasher leaves in
    /// the high bits: the shard is picked from a mix of the whole hash.
    /// (Taken from the high bits as they are, the identity hasher sends
    /// every key to one shard, and foldhash did the same to 100 keys out of
    /// 9 shards under about one process seed in thirty.)
    #[test]
    fn a_full_table_never_grows() {
        fn check<S: BuildHasher + Clone>(hasher: S, what: &str) {
            for capacity in [1, 2, 3, 7, 100, 1000, 1 << 14] {
                let table = KeyTable::<u64, S>::with_capacity_and_hasher(capacity, hasher.clone());
                let before = room(&table);
                for key in 0..capacity as u64 {
                    insert(&table, key);
                }
                assert_eq!(
                    before,
                    room(&table),
                    "{what}, capacity {capacity}: a shard grew"
                );
            }
        }
        check(Identity, "identity hasher");
        for seed in 0..50 {
            check(foldhash::fast::FixedState::with_seed(seed), "foldhash");
        }
        check(
            foldhash::fast::RandomState::default(),
            "foldhash, random seed",
        );
    }

    #[test]
    fn a_million_keys_fit_without_growing() {
        let table = Table::with_capacity_and_hasher(1 << 20, Default::default());
        let before = room(&table);
        for key in 0..1u64 << 20 {
            insert(&table, key);
        }
        assert_eq!(before, room(&table), "a shard grew");
    }

    #[test]
    fn layout_avoids_doubling_at_powers_of_two() {
        let (count, per_shard) = layout(1 << 20);
        let total = count * buckets(per_shard);
        // A power-of-two shard count would need 2^21 buckets here.
        assert!(
            total < 3 << 19,
            "{count} shards x {per_shard}: {total} buckets"
        );
        assert!(count * per_shard >= 1 << 20);
    }
}
