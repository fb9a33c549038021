//! Which key store a queue uses: its third type parameter.
//!
//! * A [`BuildHasher`] (the default, [`DefaultHashBuilder`](crate::DefaultHashBuilder)):
//!   the general store, for any `Hash + Eq + Clone` key; a per-entry lock
//!   for one comparison (`cells.rs`, `LockedCells`).
//! * [`Compact<S>`]: the compact store, for [`CompactKey`] keys (plain
//!   data packed into at most four words); duplicates answered with loads
//!   alone (`PackedCells`).
//!
//! The choice is a type, not a runtime switch: without specialization a
//! queue cannot pick the compact store for some `Hash + Eq` keys on its
//! own, and a default that needed a line per key type would break every
//! general key. So the compact store is one word in the type:
//! `CoalescingQueue<Key, V, Compact>` (or [`CompactQueue<Key, V>`](crate::CompactQueue)).

pub(crate) mod cells;
pub(crate) mod compact_key;
pub(crate) mod control;
pub(crate) mod table;
pub(crate) mod valued;
pub(crate) mod valued_cells;

use crate::keys::cells::{Cells, LockedCells, PackedCells};
use crate::keys::compact_key::CompactKey;
use crate::keys::table::entries_for;
use core::fmt;
use core::hash::{BuildHasher, Hash};
use std::collections::TryReserveError;

/// A refused allocation of the key store (`try_filled`).
pub(crate) type Refused = TryReserveError;

/// `len` values made by `make`, in one allocation that is asked for
/// fallibly (`Vec::try_reserve_exact`) and then filled in place: the key
/// table's and the cells' arrays, so that `try_build` can report a refusal
/// instead of aborting.
pub(crate) fn try_filled<T>(
    len: usize,
    make: impl FnMut() -> T,
) -> Result<Box<[T]>, TryReserveError> {
    let mut values = Vec::new();
    values.try_reserve_exact(len)?;
    // Within the reserved room: no further allocation.
    values.extend(core::iter::repeat_with(make).take(len));
    Ok(values.into_boxed_slice())
}

/// The compact key store, for [`CompactKey`] keys: give it as a queue's
/// third type parameter, `S` the hasher of the packed words.
///
/// A duplicate offer of a queued key reads the store and writes nothing; a
/// new key, a take, an ack and a nack change it with atomic
/// read-modify-writes and stores, never a lock. See the
/// [crate documentation](crate#the-two-key-stores).
///
/// ```
/// use coalescing_queue::{CoalescingQueue, Compact, Offered};
///
/// let q = CoalescingQueue::<u64, String, Compact>::new(16);
/// assert_eq!(q.try_offer_key(7), Ok(Offered::Enqueued));
/// assert_eq!(q.try_offer_key(7), Ok(Offered::Coalesced));
/// ```
#[derive(Clone, Copy, Default)]
pub struct Compact<S = crate::DefaultHashBuilder>(pub S);

impl<S> fmt::Debug for Compact<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Compact(..)")
    }
}

/// Chooses a queue's key store for keys of type `K`: implemented by every
/// [`BuildHasher`] (the general store, for `K: Hash + Eq + Clone`) and by
/// [`Compact`] (the compact store, for `K: CompactKey`). Sealed.
pub trait KeyStore<K>: Sized {
    /// The store's cells.
    #[doc(hidden)]
    type Cells: Cells<K>;

    /// Builds the cells of a table for `capacity` keys; an error if the
    /// allocator refuses their memory.
    #[doc(hidden)]
    fn try_cells(self, capacity: usize) -> Result<Self::Cells, TryReserveError>;
}

impl<K: Hash + Eq + Clone, S: BuildHasher> KeyStore<K> for S {
    type Cells = LockedCells<K, S>;

    fn try_cells(self, capacity: usize) -> Result<Self::Cells, TryReserveError> {
        LockedCells::try_new(entries_for(capacity), self)
    }
}

impl<K: CompactKey, S: BuildHasher> KeyStore<K> for Compact<S> {
    type Cells = PackedCells<K, S>;

    fn try_cells(self, capacity: usize) -> Result<Self::Cells, TryReserveError> {
        PackedCells::try_new(entries_for(capacity), self.0)
    }
}
