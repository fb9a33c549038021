//! The key table: one entry per key that is queued or in flight (I4 of
//! `CoalescingQueue`), the only place a pending key is stored, allocated
//! once at full size and never grown, shrunk or rehashed.
//!
//! Layout: `buckets` buckets of `BUCKET` entries, at least 5/4 of the
//! capacity in all. An entry is its control word (`control.rs`: state, tag,
//! spilled, version), its key cell (`cells.rs`: packed atomic words, or a
//! locked `Option<K>`), and two side words: the home bucket of a spilled
//! key and the start of a lease. The ring holds an entry's index (`u32`)
//! for a queued key, so a take goes straight to the entry, and a take or an
//! ack finds what it must undo in the entry itself: no hash, no `Eq`, no
//! user code. Each bucket has an insert bit and an overflow count: how many
//! keys live past it that probed it on their way (as in folly's F14).
//!
//! A key's home bucket and tag come from its hash. It lives in its home
//! bucket, or, when that is full, in the first bucket after it with an
//! empty entry; a lookup walks on from a bucket only while that bucket's
//! overflow count is not zero, so nothing accumulates under churn (an
//! emptied entry is simply empty: no tombstones).
//!
//! The entry word's transitions (state table and orderings: DESIGN.md
//! section 3, "The key table's entry word"):
//! * E1 Empty -> Reserved: a CAS, by an inserter (which holds its key's
//!   home bit, not the bit of the bucket it reserves in) or a leased item's
//!   start record. No one waits for another bucket's bit: a reserver only
//!   ever holds its own home bit, so no two reservers wait for each other.
//! * E2 Reserved -> Queued: the inserter publishes the key (Release store),
//!   after writing the cell (after a Release fence, for packed words).
//! * E3 Queued -> InFlight: a leased take, after its pop (a plain store:
//!   while queued, only the entry's taker writes it; duplicates only read).
//! * E4 InFlight -> Dirty: a duplicate offer under `Requeue` (CAS).
//! * E5 Queued -> Empty (plain take, after the pop), InFlight -> Empty (ack,
//!   CAS against E4): the version moves on (`Control::emptied`), so a
//!   seqlock reader of the old key rejects the words of the next one.
//! * E6 Dirty -> Queued (ack of a dirty key), InFlight or Dirty -> Queued
//!   (nack): a swap by the lease's holder; the entry's index is pushed
//!   again.
//! * E7 Empty -> ItemLease -> Empty: a leased pass-through item's start time,
//!   reserved as in E1.
//!
//! Invariants:
//! * T1 At most one entry holds a given pending key: a key is inserted only
//!   by the holder of its home bucket's insert bit, after a lookup found it
//!   absent that is authoritative: made under that bit, or made after
//!   reading the bucket's insert word unheld and then taking the bit on
//!   that same word (no insert of this home came between: each hold moves
//!   the word on).
//! * T2 A key placed past its home bucket counts once in the overflow count
//!   of each bucket from its home up to (not including) its own, from
//!   before it is published until after it is emptied (E5); its entry is
//!   marked spilled and its home recorded in `homes` when it is published,
//!   so the removal lowers exactly the counts the insert raised, whatever
//!   the key's `Hash` says by then. So a lookup under the home bit (which
//!   follows the inserter's release of that bit) walks far enough.
//! * T3 An index in the ring names a `Queued` entry (I4), so a take never
//!   waits for, or fails to find, its key.

use crate::keys::cells::{Cells, Merged, Panic};
use crate::keys::control::{Control, State};
use crate::queue::occupancy::ClaimError;
use crate::sync::{fence, spin_wait, AtomicU32, AtomicU64, Backoff, Ordering};
use core::marker::PhantomData;
use std::time::{Duration, Instant};

/// Entries per bucket: one cache line of control words. Two under the
/// model checkers, so that their tiny tables have several buckets and a key
/// can spill past its home.
#[cfg(not(any(loom, shuttle)))]
const BUCKET: usize = 8;
#[cfg(any(loom, shuttle))]
const BUCKET: usize = 2;

/// One bucket's control words, on a cache line of their own.
#[repr(align(64))]
struct Bucket {
    control: [AtomicU64; BUCKET],
}

/// What an offer did to the table.
pub(crate) enum Offer<K> {
    /// The key was absent: it is now `Queued` at this entry, whose index the
    /// caller pushes (its slot was claimed first: never rolled back, I6).
    Inserted(u32),
    /// Absorbed by the pending copy; `true` if that copy is in flight.
    Coalesced { in_flight: bool },
    /// Closed (duplicates too), or no slot for a new key.
    Refused(K, ClaimError),
}

/// What a lookup found.
enum Lookup {
    /// The key is pending at this entry, as last read.
    Found(usize, Control),
    Absent,
    /// A candidate changed while it was read: look again.
    Changed,
}

/// How a lease on a key ended in the table.
pub(crate) enum Ended<K> {
    /// The entry is queued again: push this index.
    Requeue(u32),
    /// As `Requeue`, but the user's merge panicked during a valued nack
    /// (what is queued: `valued_cells.rs`, `requeue_then`): push, finish
    /// the nack, then resume the panic.
    RequeuedPanicked(u32, Panic),
    /// The key left the table; the general store hands its stored copy back,
    /// to be dropped by the caller outside the table.
    Removed(Option<K>),
}

pub(crate) struct KeyTable<K, C> {
    buckets: Box<[Bucket]>,
    /// Per bucket: its insert word. Bit 0 (`HELD`) is set while an offer of
    /// a key whose home it is looks it up and inserts it (T1); the other 63
    /// bits count the holds so far, so that an offer that looked without
    /// the bit can tell that no insert of its home came since it looked
    /// (`try_lock_unchanged`): then its lookup stands, and a new key is
    /// scanned for once, not twice.
    insert_bits: Box<[AtomicU64]>,
    /// Per bucket: keys living past it that probed it (T2).
    overflow: Box<[AtomicU32]>,
    /// Per entry: the home bucket of a spilled key (T2), written before
    /// it is published (E2), read by the owner that removes it (E5).
    homes: Box<[AtomicU32]>,
    /// Per entry: when its lease began (InFlight, Dirty, ItemLease), in
    /// milliseconds since `epoch`, wrapping after 2^32 (49.7 days). Written
    /// by the lease's taker before the state says leased; read by `stats()`.
    /// While a key is queued again after a nack: its delivery count
    /// (`set_deliveries`).
    lease_ticks: Box<[AtomicU32]>,
    cells: C,
    /// Lease ticks count milliseconds from here.
    epoch: Instant,
    _key: PhantomData<fn(K) -> K>,
}

/// The insert word's held bit; the count of holds is the rest.
const HELD: u64 = 1;

/// Holds a bucket's insert bit; lets go of it when dropped (also when a
/// user's `Eq` panics under it).
struct InsertBit<'a> {
    /// The insert word and its value while held.
    bit: Option<(&'a AtomicU64, u64)>,
}

impl Drop for InsertBit<'_> {
    fn drop(&mut self) {
        if let Some((word, held)) = self.bit {
            // Unheld, one hold more (`held + 1`: bit 0 clear, the count up).
            // Release: what this holder wrote (the published entry, raised
            // overflow counts) is seen by the next holder's Acquire, and by
            // the Acquire of a lookup that reads the word first (T1, T2).
            word.store(held + 1, Ordering::Release);
        }
    }
}

/// One pending entry's control word as a valued store's cells see it
/// (`Cells::merge`, `Cells::requeue_then`): what a lookup found there, and
/// the two things the cells may do with the word. Everything else about
/// the word stays in this file.
#[doc(hidden)]
#[derive(Debug)]
pub struct EntryWord<'a> {
    word: &'a AtomicU64,
    found: Control,
}

impl EntryWord<'_> {
    /// The word now. Acquire: pairs with the Release of E2, E3 and E6, so a
    /// state read here is at least as new as the cell writes before it.
    #[inline(always)]
    pub(crate) fn load(&self) -> Control {
        Control(self.word.load(Ordering::Acquire))
    }

    /// `now` still holds the key that was found: pending, same version.
    #[inline(always)]
    pub(crate) fn holds_found(&self, now: Control) -> bool {
        now.is_pending() && now.version() == self.found.version()
    }

    /// E4 from `now` (`InFlight`): marks the copy in flight dirty; `false`
    /// if the word moved on (the lease was acked: the key left the table).
    /// AcqRel: against the ack's CAS (E5), as in `KeyTable::absorb`.
    #[inline(always)]
    pub(crate) fn mark_dirty(&self, now: Control) -> bool {
        self.word
            .compare_exchange(
                now.0,
                now.with_state(State::Dirty).0,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
    }
}

/// Entries for `capacity` keys: at least 5/4 of it, in whole buckets.
pub(crate) fn entries_for(capacity: usize) -> usize {
    let wanted = capacity + capacity.div_ceil(4);
    wanted.div_ceil(BUCKET).max(1) * BUCKET
}

impl<K, C: Cells<K>> KeyTable<K, C> {
    /// A table for `capacity` keys with `cells`; an error if the allocator
    /// refuses one of its arrays.
    pub(crate) fn try_new(capacity: usize, cells: C) -> Result<Self, crate::keys::Refused> {
        let (entries, buckets) = (entries_for(capacity), entries_for(capacity) / BUCKET);
        Ok(Self {
            buckets: crate::keys::try_filled(buckets, || Bucket {
                control: core::array::from_fn(|_| AtomicU64::new(Control::EMPTY.0)),
            })?,
            insert_bits: crate::keys::try_filled(buckets, || AtomicU64::new(0))?,
            overflow: crate::keys::try_filled(buckets, || AtomicU32::new(0))?,
            homes: crate::keys::try_filled(entries, || AtomicU32::new(0))?,
            lease_ticks: crate::keys::try_filled(entries, || AtomicU32::new(0))?,
            cells,
            epoch: Instant::now(),
            _key: PhantomData,
        })
    }

    /// `try_new`, for this file's tests.
    #[cfg(all(test, not(loom), not(shuttle)))]
    pub(crate) fn new(capacity: usize, cells: C) -> Self {
        Self::try_new(capacity, cells).expect("table allocated")
    }

    #[inline(always)]
    fn control(&self, index: usize) -> &AtomicU64 {
        &self.buckets[index / BUCKET].control[index % BUCKET]
    }

    /// The bucket after `bucket`, wrapping (no division on the hot path).
    #[inline(always)]
    fn next_bucket(&self, bucket: usize) -> usize {
        if bucket + 1 == self.buckets.len() {
            0
        } else {
            bucket + 1
        }
    }

    /// The home bucket and tag of a hash. The hash is mixed first (the
    /// first steps of splitmix64's finalizer), since a fast hasher may leave
    /// little entropy in some bits; multiply-shift maps its top 32 bits
    /// onto any bucket count.
    #[inline(always)]
    fn home_and_tag(&self, hash: u64) -> (usize, u8) {
        let mixed = (hash ^ (hash >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let home = (((mixed >> 32) * self.buckets.len() as u64) >> 32) as usize;
        (home, (mixed ^ (mixed >> 29)) as u8)
    }

    /// Finds the entry holding `key`, reading only: the compact store's
    /// duplicate path. Scans the home bucket, and the next ones while the
    /// one before has keys overflowing past it (T2); a candidate (pending,
    /// same tag, same key words) counts only if its version and pendency
    /// held across the read of its cell (a seqlock read). `Changed` if a
    /// candidate changed while it was read: the offer then asks again
    /// under the insert bit.
    #[inline(always)]
    fn lookup(&self, key: &K, probe: &C::Probe, home: usize, tag: u8) -> Lookup {
        let mut bucket = home;
        for _ in 0..self.buckets.len() {
            for (slot, word) in self.buckets[bucket].control.iter().enumerate() {
                let index = bucket * BUCKET + slot;
                // Acquire: pairs with the Release of E2, so the words read
                // next are at least those published with this version.
                let before = Control(word.load(Ordering::Acquire));
                if !before.is_pending_with(tag) {
                    continue;
                }
                if !self.cells.matches(index, key, probe) {
                    continue;
                }
                // Acquire fence: if a word read above came from a later
                // writer (after E5 and E1), the load below sees that
                // writer's E5 or later, with a new version.
                fence(Ordering::Acquire);
                let after = Control(word.load(Ordering::Relaxed));
                return if after.version() == before.version() && after.is_pending() {
                    Lookup::Found(index, after)
                } else {
                    Lookup::Changed
                };
            }
            // Acquire: pairs with the Release of a removal's decrement (E5
            // before it), so a zero read here means that key is gone.
            if self.overflow[bucket].load(Ordering::Acquire) == 0 {
                break;
            }
            bucket = self.next_bucket(bucket);
        }
        Lookup::Absent
    }

    /// The offer of `key`'s table step (DESIGN.md section 3, steps 0-3):
    /// absorb it into its pending copy, or claim a slot (`claim`) and insert
    /// it as `Queued`. `closed` is checked before a key is absorbed (step 0);
    /// `claim` checks it for a new key. `requeue`: mark an in-flight copy
    /// dirty (`InFlightPolicy::Requeue`).
    #[inline(always)]
    pub(crate) fn offer(
        &self,
        mut key: K,
        requeue: bool,
        closed: impl Fn() -> bool,
        claim: impl FnOnce() -> Result<(), ClaimError>,
    ) -> Offer<K> {
        let (hash, probe) = self.cells.probe(&key);
        let (home, tag) = self.home_and_tag(hash);
        if closed() {
            return Offer::Refused(key, ClaimError::Closed);
        }
        // Read before the lookup (T1): if the word is the same when the bit
        // is taken, no insert of this home came since, and a lookup that
        // found the key absent stands. Acquire: pairs with the last
        // holder's Release, so its inserts and overflow counts are seen.
        let seen = self.insert_bits[home].load(Ordering::Acquire);
        // The duplicate path, without the insert bit: loads only for the
        // compact store (entry locks for the general one), unless an
        // in-flight copy is marked dirty. A duplicate never waits behind
        // another key's insert.
        let absent = loop {
            match self.lookup(&key, &probe, home, tag) {
                Lookup::Found(index, found) if C::VALUED => {
                    match self.merge(index, found, key, &probe, requeue) {
                        Ok(in_flight) => return Offer::Coalesced { in_flight },
                        // The copy changed under us (taken, acked or
                        // nacked): look again.
                        Err(back) => key = back,
                    }
                }
                Lookup::Found(index, found) => {
                    if let Some(in_flight) = self.absorb(index, found, requeue) {
                        return Offer::Coalesced { in_flight };
                    }
                    // The copy changed under us (acked or nacked): look again.
                }
                Lookup::Absent => break true,
                Lookup::Changed => break false,
            }
        };
        self.insert(
            key,
            probe,
            home,
            tag,
            requeue,
            closed,
            claim,
            absent.then_some(seen),
        )
    }

    /// A valued store's absorb: merges the offer's value into the pending
    /// copy at `index`, last read as `found` (`Cells::merge`).
    /// `Ok(in_flight)`, or the key back if that copy changed first.
    #[inline(always)]
    fn merge(
        &self,
        index: usize,
        found: Control,
        key: K,
        probe: &C::Probe,
        requeue: bool,
    ) -> Result<bool, K> {
        let entry = EntryWord {
            word: self.control(index),
            found,
        };
        match self.cells.merge(index, key, probe, entry, requeue) {
            Merged::Coalesced { in_flight } => Ok(in_flight),
            Merged::Moved(key) => Err(key),
        }
    }

    /// Absorbs an offer into the pending copy at `index`, last read as
    /// `found`. `None` if that copy changed before it could be marked dirty.
    #[inline(always)]
    fn absorb(&self, index: usize, found: Control, requeue: bool) -> Option<bool> {
        if found.is(State::Queued) {
            return Some(false);
        }
        match found.state() {
            State::InFlight if requeue => {
                // E4. AcqRel: against the ack's CAS (E5), which must see the
                // mark if this wins, and fail it.
                self.control(index)
                    .compare_exchange(
                        found.0,
                        found.with_state(State::Dirty).0,
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    )
                    .ok()
                    .map(|_| true)
            }
            _ => Some(true),
        }
    }

    /// The offer's locked path: under the home bucket's insert bit, the
    /// lookup is authoritative (T1), so a key not found is inserted.
    /// `absent_since`: the insert word read before a lookup that found the
    /// key absent; if the bit is taken on that very word, that lookup is
    /// authoritative already and is not made again.
    #[cold]
    #[allow(clippy::too_many_arguments)]
    fn insert(
        &self,
        mut key: K,
        probe: C::Probe,
        home: usize,
        tag: u8,
        requeue: bool,
        closed: impl Fn() -> bool,
        claim: impl FnOnce() -> Result<(), ClaimError>,
        absent_since: Option<u64>,
    ) -> Offer<K> {
        let bit = match absent_since.and_then(|seen| self.try_lock_unchanged(home, seen)) {
            // T1: no insert of this home since `seen`, and the lookup made
            // after it found the key absent.
            Some(bit) => bit,
            None => {
                let mut bit = self.lock_home(home);
                loop {
                    match self.lookup_locked(&key, &probe, home, tag) {
                        Some(_) if closed() => return Offer::Refused(key, ClaimError::Closed),
                        Some((index, found)) if C::VALUED => {
                            // The merge runs user code: not under the bit. A
                            // pending key needs no T1 protection; if it left
                            // meanwhile, the bit is taken again and the key
                            // looked up anew.
                            drop(bit);
                            match self.merge(index, found, key, &probe, requeue) {
                                Ok(in_flight) => return Offer::Coalesced { in_flight },
                                Err(back) => key = back,
                            }
                            bit = self.lock_home(home);
                        }
                        Some((index, found)) => {
                            if let Some(in_flight) = self.absorb(index, found, requeue) {
                                return Offer::Coalesced { in_flight };
                            }
                        }
                        None => break,
                    }
                }
                bit
            }
        };
        // Claim before insert, both under the insert bit: keeps I6.
        if let Err(error) = claim() {
            return Offer::Refused(key, error);
        }
        let (index, spilled) = self.reserve(home);
        self.publish(index, key, &probe, tag, spilled);
        drop(bit);
        Offer::Inserted(index as u32)
    }

    /// Writes `key` into the reserved entry `index` and publishes it (E2).
    fn publish(&self, index: usize, key: K, probe: &C::Probe, tag: u8, spilled: bool) {
        let reserved = Control(self.control(index).load(Ordering::Relaxed));
        // Release fence: a seqlock reader whose load of a word below sees
        // this write also sees `Reserved` (or later) on its second look.
        fence(Ordering::Release);
        self.cells.write(index, key, probe);
        // Release: pairs with the lookups' Acquire (the cell is complete).
        self.control(index)
            .store(reserved.published(tag, spilled).0, Ordering::Release);
    }

    /// `lookup` under the home bit, authoritative (T1): a candidate that
    /// changed while it was read is looked at again; it cannot come back
    /// holding this key without this bit, so the loop ends.
    fn lookup_locked(
        &self,
        key: &K,
        probe: &C::Probe,
        home: usize,
        tag: u8,
    ) -> Option<(usize, Control)> {
        loop {
            match self.lookup(key, probe, home, tag) {
                Lookup::Found(index, found) => return Some((index, found)),
                Lookup::Absent => return None,
                // A reader's retry: the entry settles in a few steps of
                // another thread (no bit or lock is waited for).
                Lookup::Changed => spin_wait(),
            }
        }
    }

    /// Takes the insert bit of `home`, waiting while another offer of a key
    /// with this home holds it. A holder keeps it for a lookup, a claim and
    /// a few stores (and, on the general store, the `K::eq` calls of the
    /// lookup; never any other user code, an allocation or a wait), so the
    /// wait spins briefly, then yields, then sleeps in growing steps
    /// (`Backoff`): a waiter behind a slow `Eq` does not burn its core.
    fn lock_home(&self, home: usize) -> InsertBit<'_> {
        let word = &self.insert_bits[home];
        let mut backoff = Backoff::new();
        loop {
            // A CAS after a load, not a swap: a failed attempt leaves the
            // line unwritten (which is also what lets loom see this loop as
            // waiting, not as progress).
            if let Some(bit) = self.try_lock_unchanged(home, word.load(Ordering::Relaxed)) {
                return bit;
            }
            backoff.snooze();
        }
    }

    /// Takes the insert bit of `home` if its word is still `seen` (and
    /// `seen` is unheld): no hold, so no insert of this home, came since
    /// `seen` was read.
    #[inline(always)]
    fn try_lock_unchanged(&self, home: usize, seen: u64) -> Option<InsertBit<'_>> {
        let word = &self.insert_bits[home];
        // Acquire: pairs with the last holder's Release (InsertBit::drop).
        (seen & HELD == 0
            && word
                .compare_exchange(seen, seen | HELD, Ordering::Acquire, Ordering::Relaxed)
                .is_ok())
        .then(|| InsertBit {
            bit: Some((word, seen | HELD)),
        })
    }

    /// Reserves an empty entry for a key whose home bucket's bit this
    /// thread holds (E1): the first empty one from the home bucket on,
    /// counting the key in the overflow of every bucket it passed (T2).
    /// Returns the entry and whether it spilled.
    ///
    /// It waits for no one: E1 is a CAS that any reserver may make, so a
    /// busy bucket is never skipped and no bit but the home bit is held.
    /// There is always an empty entry (the table has more entries than the
    /// capacity, and every non-empty entry holds a claim or an item lease's
    /// slot); a pass finds none only if other reservers took each empty
    /// entry just before this one looked, and each of them then made
    /// progress, so a new pass is tried at once.
    fn reserve(&self, home: usize) -> (usize, bool) {
        loop {
            let mut bucket = home;
            for distance in 0..self.buckets.len() {
                if let Some(index) = self.reserve_in(bucket) {
                    if distance == 0 {
                        return (index, false);
                    }
                    // T2, before the publish. Relaxed: ordered for the
                    // lookups that rely on it by the home bit's Release; the
                    // home is read by the key's remover, ordered by E2.
                    let mut passed = home;
                    while passed != bucket {
                        self.overflow[passed].fetch_add(1, Ordering::Relaxed);
                        passed = self.next_bucket(passed);
                    }
                    self.homes[index].store(home as u32, Ordering::Relaxed);
                    return (index, true);
                }
                bucket = self.next_bucket(bucket);
            }
            spin_wait();
        }
    }

    /// After a spilled key left its entry (E5): it no longer counts in the
    /// overflow of the buckets from its home up to its own (T2). The home
    /// is the one recorded when the key was published: no hash.
    fn unspill(&self, index: usize) {
        // Relaxed: the owner's own write (E2) or ordered to it by the pop
        // or the lease.
        let mut bucket = self.homes[index].load(Ordering::Relaxed) as usize;
        while bucket != index / BUCKET {
            // Release: pairs with the lookups' Acquire (E5 is before this).
            self.overflow[bucket].fetch_sub(1, Ordering::Release);
            bucket = self.next_bucket(bucket);
        }
    }

    /// An empty entry of `bucket`, reserved (E1).
    #[inline(always)]
    fn reserve_in(&self, bucket: usize) -> Option<usize> {
        (0..BUCKET).find_map(|slot| {
            let index = bucket * BUCKET + slot;
            let word = self.control(index);
            let control = Control(word.load(Ordering::Relaxed));
            // E1, a CAS: reservers of other homes and item leases race for
            // the same empty entries. Acquire: pairs with the Release of the
            // E5/E7 that emptied it, so that taker's reads of the old cell
            // come before our writes. Relaxed on failure: nothing is read.
            (control.is(State::Empty)
                && word
                    .compare_exchange(
                        control.0,
                        control.with_state(State::Reserved).0,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok())
            .then_some(index)
        })
    }

    /// The key of the queued entry `index` after its pop (T3): a plain take
    /// moves it out and empties the entry (E5); a leased take copies it and
    /// marks the entry in flight since `tick` (E3).
    #[inline(always)]
    pub(crate) fn take(&self, index: u32, lease_tick: Option<u32>) -> K {
        let index = index as usize;
        // Acquire: the entry was published before its index was pushed; the
        // ring orders that already, this makes it local to the table.
        let queued = Control(self.control(index).load(Ordering::Acquire));
        debug_assert_eq!(queued.state(), State::Queued, "breaks T3");
        // The one user code of a take (`K::clone` or `CompactKey::unpack`,
        // in the cell) runs before the entry changes: if it panics, the
        // entry is still queued, which is what the take's caller relies on
        // to put it back. A valued store runs the store below under the
        // entry's value guard, so no merge falls between its read and it.
        match lease_tick {
            None => {
                let key = self.cells.take_then(index, false, || {
                    // E5. Release: pairs with the next reservation's Acquire
                    // (E1).
                    self.control(index)
                        .store(queued.emptied().0, Ordering::Release);
                });
                if queued.is_spilled() {
                    self.unspill(index);
                }
                key
            }
            Some(tick) => self.cells.take_then(index, true, || {
                // Relaxed: published by the Release of E3 below.
                self.lease_ticks[index].store(tick, Ordering::Relaxed);
                // E3. Release: pairs with the Acquire of the lease's end and
                // of the lookups (they see the state).
                self.control(index)
                    .store(queued.with_state(State::InFlight).0, Ordering::Release);
            }),
        }
    }

    /// Ends a lease on the entry `index` (E5, E6): `ack` removes the key
    /// unless it is dirty (then it is queued again); a nack queues it again.
    /// No user code runs here, but for a valued nack's merge (caught, and
    /// handed back in `RequeuedPanicked`): the general store hands its copy
    /// back to be dropped outside.
    pub(crate) fn end_lease(&self, index: u32, ack: bool, leased_key: &K) -> Ended<K> {
        let index = index as usize;
        let word = self.control(index);
        loop {
            // Acquire: pairs with E3 and E4.
            let leased = Control(word.load(Ordering::Acquire));
            debug_assert!(leased.is_pending() && leased.is_leased());
            let dirty = leased.is(State::Dirty);
            if C::VALUED && !ack {
                // A nack of a valued key: the value queued again is the
                // leased one merged with what arrived meanwhile, written
                // with the E6 swap under the entry's value guard (no merge
                // marks the entry dirty while it is held).
                let entry = EntryWord {
                    word,
                    found: leased,
                };
                let panic = self.cells.requeue_then(index, leased_key, entry, || {
                    let now = Control(word.load(Ordering::Acquire));
                    word.swap(now.requeued().0, Ordering::AcqRel);
                });
                return match panic {
                    None => Ended::Requeue(index as u32),
                    Some(panic) => Ended::RequeuedPanicked(index as u32, panic),
                };
            }
            if !ack || dirty {
                // E6, a swap: only this lease's holder moves a leased entry
                // out of E3/E4, and a racing E4 may be overwritten (the key
                // is queued anyway, which delivers the offer it absorbed),
                // but a plain store could be ordered before that E4 and
                // leave the entry dirty with no lease (found by loom).
                // AcqRel: Release for the taker of the pushed index; Acquire
                // pairs with E4.
                word.swap(leased.requeued().0, Ordering::AcqRel);
                return Ended::Requeue(index as u32);
            }
            // E5 against E4. AcqRel: Release for the next reservation (E1);
            // Acquire, so a failure sees the Dirty mark.
            let next = if C::CLEARS {
                leased.with_state(State::Reserved)
            } else {
                leased.emptied()
            };
            if word
                .compare_exchange(leased.0, next.0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                let stored = if C::CLEARS {
                    let stored = self.cells.clear(index);
                    word.store(leased.emptied().0, Ordering::Release);
                    stored
                } else {
                    None
                };
                // After E5 (T2): until then the key is pending and must stay
                // findable.
                if leased.is_spilled() {
                    self.unspill(index);
                }
                return Ended::Removed(stored);
            }
        }
    }

    /// A key queued again without an ack (a nack): the number of times
    /// this pending copy was delivered, kept in the entry's lease-tick
    /// word until its next leased take reads it (`deliveries`) and writes
    /// its own tick there (E3). Free while the entry is queued or delayed:
    /// only a leased take of this index writes the word then. (A
    /// `stats()` pass that read the state just before the nack's E6 may
    /// read this count as a tick: one lease age off, once.) Relaxed: the
    /// push of the index, and its pop, order it.
    pub(crate) fn set_deliveries(&self, index: u32, deliveries: u32) {
        self.lease_ticks[index as usize].store(deliveries, Ordering::Relaxed);
    }

    /// What `set_deliveries` left, for the leased take of a key popped as
    /// queued again (before its E3).
    pub(crate) fn deliveries(&self, index: u32) -> u32 {
        self.lease_ticks[index as usize].load(Ordering::Relaxed)
    }

    /// The lease tick of `at`: milliseconds since the table was built,
    /// wrapping after 2^32 (49.7 days).
    pub(crate) fn tick(&self, at: Instant) -> u32 {
        at.saturating_duration_since(self.epoch).as_millis() as u32
    }

    /// Records a leased pass-through item's start in an empty entry (E7);
    /// returns the entry, for `end_item_lease`. Reserves as an insert does
    /// (E1), from a bucket that moves with the tick, so item leases do not
    /// all crowd the first bucket.
    pub(crate) fn start_item_lease(&self, tick: u32) -> u32 {
        // The model checkers start at bucket 0: their runs must not depend
        // on the clock.
        let start = if cfg!(any(loom, shuttle)) {
            0
        } else {
            tick as usize % self.buckets.len()
        };
        loop {
            let mut bucket = start;
            for _ in 0..self.buckets.len() {
                if let Some(index) = self.reserve_in(bucket) {
                    // Relaxed: published by the Release store below.
                    self.lease_ticks[index].store(tick, Ordering::Relaxed);
                    let reserved = Control(self.control(index).load(Ordering::Relaxed));
                    self.control(index)
                        .store(reserved.with_state(State::ItemLease).0, Ordering::Release);
                    return index as u32;
                }
                bucket = self.next_bucket(bucket);
            }
            // As in `reserve`: every empty entry was just taken by others.
            spin_wait();
        }
    }

    /// Frees the entry of a leased item's start time (E7).
    pub(crate) fn end_item_lease(&self, index: u32) {
        let word = self.control(index as usize);
        let lease = Control(word.load(Ordering::Relaxed));
        debug_assert_eq!(lease.state(), State::ItemLease);
        word.store(lease.emptied().0, Ordering::Release);
    }

    /// How long the oldest lease still out has been out: one pass over the
    /// control words (`stats()`; no lock, nothing written). Exact up to
    /// 49.7 days less an hour; older ones wrap.
    pub(crate) fn oldest_lease_age(&self) -> Option<Duration> {
        let now = self.tick(Instant::now());
        self.controls()
            .enumerate()
            .filter(|(_, control)| control.is_leased())
            // Relaxed: after the Acquire load of a leased state, which
            // follows the tick's store (E3, E7).
            .map(|(index, _)| lease_age(now, self.lease_ticks[index].load(Ordering::Relaxed)))
            .max()
            .map(|age| Duration::from_millis(u64::from(age)))
    }

    fn controls(&self) -> impl Iterator<Item = Control> + '_ {
        self.buckets.iter().flat_map(|bucket| {
            bucket
                .control
                .iter()
                .map(|word| Control(word.load(Ordering::Acquire)))
        })
    }

    /// Whether `key` is pending (queued or in flight) now.
    pub(crate) fn contains(&self, key: &K) -> bool {
        let (hash, probe) = self.cells.probe(key);
        let (home, tag) = self.home_and_tag(hash);
        loop {
            match self.lookup(key, &probe, home, tag) {
                Lookup::Found(..) => return true,
                Lookup::Absent => return false,
                Lookup::Changed => spin_wait(),
            }
        }
    }

    /// The cells, for the stores' tests.
    #[cfg(all(test, not(loom), not(shuttle)))]
    pub(crate) fn cells(&self) -> &C {
        &self.cells
    }

    /// The sum of the overflow counts (T2), for tests.
    pub(crate) fn overflow_total(&self) -> u64 {
        self.overflow
            .iter()
            .map(|count| u64::from(count.load(Ordering::Acquire)))
            .sum()
    }

    /// The number of keys pending (queued or in flight).
    pub(crate) fn len(&self) -> usize {
        self.controls()
            .filter(|control| control.is_pending())
            .count()
    }
}

/// Ticks ahead of the clock by less than this are leases that began after
/// the clock was read (during `oldest_lease_age`'s pass): one hour.
const AHEAD: u32 = 3_600_000;

/// The age at `now` of a lease that began at `tick` (both wrapping
/// milliseconds). A tick just ahead of `now` is a lease that began after
/// `now` was read: age 0, not 49 days.
fn lease_age(now: u32, tick: u32) -> u32 {
    let age = now.wrapping_sub(tick);
    if age > u32::MAX - AHEAD {
        0
    } else {
        age
    }
}

#[cfg(all(test, not(loom), not(shuttle)))]
mod tests {
    use super::*;
    use crate::keys::cells::{LockedCells, PackedCells};

    type Packed = KeyTable<u64, PackedCells<u64, foldhash::fast::FixedState>>;

    fn packed(capacity: usize) -> Packed {
        let hasher = foldhash::fast::FixedState::with_seed(7);
        KeyTable::new(capacity, PackedCells::new(entries_for(capacity), hasher))
    }

    fn insert<C: Cells<u64>>(table: &KeyTable<u64, C>, key: u64) -> u32 {
        match table.offer(key, true, || false, || Ok(())) {
            Offer::Inserted(index) => index,
            _ => panic!("{key} was not inserted"),
        }
    }

    #[test]
    fn an_index_names_its_entry_until_emptied() {
        let table = packed(16);
        let one = insert(&table, 1);
        let two = insert(&table, 2);
        assert_ne!(one, two);
        assert_eq!(table.len(), 2);
        assert!(matches!(
            table.offer(1, true, || false, || panic!("no claim for a duplicate")),
            Offer::Coalesced { in_flight: false }
        ));
        assert_eq!(table.take(two, Some(5)), 2);
        assert!(table.contains(&2), "a leased key stays pending");
        assert!(matches!(
            table.offer(2, true, || false, || panic!("no claim")),
            Offer::Coalesced { in_flight: true }
        ));
        assert!(matches!(table.end_lease(two, true, &2), Ended::Requeue(i) if i == two));
        assert_eq!(table.take(one, None), 1);
        assert!(!table.contains(&1));
        assert_eq!(table.take(two, Some(6)), 2);
        assert!(matches!(
            table.end_lease(two, true, &2),
            Ended::Removed(None)
        ));
        assert_eq!(table.len(), 0);
    }

    /// Keys whose hashes are all equal share one home: they spill into the
    /// following buckets, and every one is still found.
    #[test]
    fn equal_hashes_spill_and_are_found() {
        #[derive(Clone, Default)]
        struct Constant;
        impl core::hash::BuildHasher for Constant {
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
        for capacity in [1, 7, 40] {
            let table = KeyTable::new(
                capacity,
                LockedCells::<u64, _>::new(entries_for(capacity), Constant),
            );
            let indexes: Vec<u32> = (0..capacity as u64).map(|k| insert(&table, k)).collect();
            for k in 0..capacity as u64 {
                assert!(table.contains(&k), "{k} lost at capacity {capacity}");
            }
            for (k, &index) in indexes.iter().enumerate().rev() {
                assert_eq!(table.take(index, None), k as u64);
            }
            assert_eq!(table.len(), 0);
            // Every overflow count went back to zero with its key (T2).
            assert!(table
                .overflow
                .iter()
                .all(|count| count.load(Ordering::Relaxed) == 0));
        }
    }

    #[test]
    fn item_leases_are_timed_and_freed() {
        let table = packed(4);
        let start = Instant::now();
        let entry = table.start_item_lease(table.tick(start));
        std::thread::sleep(Duration::from_millis(30));
        let age = table.oldest_lease_age().unwrap();
        assert!(age >= Duration::from_millis(29), "{age:?}");
        table.end_item_lease(entry);
        assert_eq!(table.oldest_lease_age(), None);
        assert_eq!(table.len(), 0);
    }

    /// A lease that begins while `stats()` reads (its tick a few ms past
    /// the clock the pass reads) is new, not 2^32 - 5 ms old; the oldest
    /// lease is the one with the greatest age, across the wrap of the
    /// ticks.
    #[test]
    fn lease_ages_read_during_the_pass_and_across_the_wrap() {
        assert_eq!(lease_age(1_000, 1_005), 0);
        assert_eq!(lease_age(5, u32::MAX - 4), 10);
        assert_eq!(lease_age(1_000, 400), 600);
        let table = packed(4);
        let now = table.tick(Instant::now());
        let later = table.start_item_lease(now.wrapping_add(50));
        assert!(table.oldest_lease_age().unwrap() < Duration::from_millis(50));
        let earlier = table.start_item_lease(now.wrapping_sub(10_000));
        let age = table.oldest_lease_age().unwrap();
        assert!(age >= Duration::from_millis(10_000), "{age:?}");
        assert!(age < Duration::from_millis(11_000), "{age:?}");
        table.end_item_lease(later);
        table.end_item_lease(earlier);
    }

    /// A spilled key's removal lowers the overflow counts its insert
    /// raised, from the home recorded in its entry: a key whose `Hash`
    /// changed since (here: every call) cannot lower another bucket's count,
    /// which would hide a key that lives past it.
    #[test]
    fn a_changed_hash_lowers_only_the_counts_its_insert_raised() {
        use core::hash::{Hash, Hasher};
        use std::sync::atomic::AtomicU64 as Calls;
        static CALLS: Calls = Calls::new(0);
        /// Hashes differently at every call.
        #[derive(Clone, PartialEq, Eq, Debug)]
        struct Fickle(u64);
        impl Hash for Fickle {
            fn hash<H: Hasher>(&self, state: &mut H) {
                self.0.hash(state);
                CALLS.fetch_add(1, Ordering::Relaxed).hash(state);
            }
        }
        let capacity = 64;
        let hasher = foldhash::fast::FixedState::with_seed(3);
        let table = KeyTable::new(
            capacity,
            LockedCells::<Fickle, _>::new(entries_for(capacity), hasher),
        );
        let mut spilled = 0;
        for round in 0..200u64 {
            let indexes: Vec<u32> = (0..capacity as u64)
                .map(
                    |k| match table.offer(Fickle(round * 1000 + k), true, || false, || Ok(())) {
                        Offer::Inserted(index) => index,
                        _ => panic!("a new key was not inserted"),
                    },
                )
                .collect();
            spilled += table.controls().filter(|c| c.is_spilled()).count();
            for (n, index) in indexes.into_iter().enumerate() {
                if n % 2 == 0 {
                    table.take(index, None);
                } else {
                    table.take(index, Some(0));
                    assert!(matches!(
                        table.end_lease(index, true, &Fickle(0)),
                        Ended::Removed(Some(_))
                    ));
                }
            }
            let counts: Vec<u32> = table
                .overflow
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect();
            assert!(
                counts.iter().all(|&c| c == 0),
                "round {round}: overflow counts {counts:?}"
            );
        }
        assert!(
            spilled > 100,
            "only {spilled} keys spilled: the test tests nothing"
        );
    }

    #[test]
    fn a_million_keys_fit() {
        let table = packed(1 << 20);
        for key in 0..1u64 << 20 {
            insert(&table, key);
        }
        assert_eq!(table.len(), 1 << 20);
        assert!(table.contains(&12345));
    }
}
