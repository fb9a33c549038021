//! Keys that carry a value: the `Valued` store, and how a duplicate's value
//! is merged into the pending one (`Merge`, `Latest`).
//!
//! A valued queue's key type is a pair `(K, P)`: `K` is the identity (what
//! coalesces: hashed and compared), `P` the payload, merged on coalesce and
//! delivered with the key. Every offer and take form works on the pair as
//! on any key; a take returns `Entry::Key((key, value))`.

use crate::keys::compact_key::CompactKey;
use crate::keys::table::entries_for;
use crate::keys::valued_cells::{ValuedLockedCells, ValuedPackedCells};
use crate::keys::{Compact, KeyStore, Refused};
use core::fmt;
use core::hash::{BuildHasher, Hash};

/// How a newer value is folded into a pending one when an offer coalesces:
/// `merge(pending, newer)` leaves the merged value in `pending`.
///
/// Implemented by [`Latest`] (the newer value replaces the pending one, the
/// default) and by every `Fn(&mut P, P)`.
///
/// A merge should be a pure function of its two values. On the compact
/// store it runs outside every lock, on a copy of the pending value, and
/// is run again if another writer changed that value first (as
/// `AtomicU64::fetch_update` runs its closure), so it may run more than once
/// per offer; exactly one result is kept. On the general store it runs once,
/// with the entry's lock held (as `K::eq` does), and so do the drop of a
/// value it replaces (also under [`Latest`]) and, in a nack, the `Clone` of
/// the leased value: none of them may offer into the same queue (an offer
/// whose lookup passes that entry would wait for its lock for ever).
///
/// A take of a compact key copies its value and commits only if no merge
/// wrote since: a key merged into without pause can make its taker try
/// again (lock-free, not wait-free, for that taker).
///
/// A merge that panics in an offer leaves the queue as it was (the general
/// store: with what the merge did to the value before it panicked). One that
/// panics in a nack is caught: the key is queued again (the compact store:
/// with what arrived while it was in flight; the general store: with the
/// leased value), the nack finishes, and then the panic resumes.
pub trait Merge<P> {
    /// Folds `newer` into `pending`.
    fn merge(&self, pending: &mut P, newer: P);
}

/// The default merge: the newer value replaces the pending one ("latest
/// wins", as in a coalescing ring buffer of market data).
///
/// ```
/// use coalescing_queue::{Latest, Merge};
///
/// let mut pending = 1;
/// Latest.merge(&mut pending, 5);
/// assert_eq!(pending, 5);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Latest;

impl<P> Merge<P> for Latest {
    #[inline(always)]
    fn merge(&self, pending: &mut P, newer: P) {
        *pending = newer;
    }
}

impl<P, F: Fn(&mut P, P)> Merge<P> for F {
    #[inline(always)]
    fn merge(&self, pending: &mut P, newer: P) {
        self(pending, newer)
    }
}

/// The key store of a queue whose keys carry a value: give it as the
/// queue's third type parameter, with keys of type `(K, P)` (identity,
/// value). `S` is the store of the identities: a hasher (the general store,
/// any `P: Clone`, kept under the entry's lock) or [`Compact`] (the compact
/// store: `K` and `P` both [`CompactKey`], the value in atomic words beside
/// the key's, merged without a lock). `M` is the [`Merge`]: [`Latest`]
/// unless set with [`Builder::merge`](crate::Builder::merge).
///
/// An offer of `(k, p)` whose `k` is pending merges `p` into the pending
/// value; a take delivers the value pending at the take. While `k` is
/// leased, the leased copy does not change: under
/// [`InFlightPolicy::Requeue`](crate::InFlightPolicy::Requeue) the values
/// offered meanwhile are merged among themselves (the first one starts
/// afresh) and delivered once after the ack; a nack queues the leased value
/// merged with them (`merge(leased, arrived)`), or the leased value if none
/// arrived. Under [`InFlightPolicy::Absorb`](crate::InFlightPolicy::Absorb)
/// a value offered while the key is in flight is dropped with the offer.
/// [`is_pending`](crate::CoalescingQueue::is_pending) looks at the
/// identity alone: `is_pending(&(k, any_value))`.
///
/// ```
/// use coalescing_queue::{Builder, CoalescingQueue, Compact, Entry, Offered, Valued};
///
/// // (table, checkpoint): each table's newest checkpoint, sent once.
/// let q = Builder::<(u32, u64), String, Valued<Compact>>::new()
///     .capacity(1024)
///     .merge(|pending: &mut u64, newer: u64| *pending = (*pending).max(newer))
///     .build();
/// assert_eq!(q.try_offer_key((7, 10)), Ok(Offered::Enqueued));
/// assert_eq!(q.try_offer_key((7, 12)), Ok(Offered::Coalesced));
/// assert_eq!(q.try_offer_key((7, 11)), Ok(Offered::Coalesced)); // older: kept 12
/// assert_eq!(q.try_take(), Ok(Entry::Key((7, 12))));
///
/// // The same on the general store, for any `Hash + Eq + Clone` key and
/// // `Clone` value; `Latest` (the default) keeps the newest.
/// let q = CoalescingQueue::<(String, Vec<u8>), (), Valued>::new(16);
/// q.try_offer_key(("a".into(), vec![1])).unwrap();
/// q.try_offer_key(("a".into(), vec![2])).unwrap();
/// assert_eq!(q.try_take(), Ok(Entry::Key(("a".into(), vec![2]))));
/// ```
#[derive(Clone, Copy, Default)]
pub struct Valued<S = crate::DefaultHashBuilder, M = Latest> {
    pub(crate) store: S,
    pub(crate) merge: M,
}

impl<S> Valued<S> {
    /// The store `store` of the identities, values merged by [`Latest`].
    pub fn new(store: S) -> Self {
        Valued {
            store,
            merge: Latest,
        }
    }
}

impl<S, M> Valued<S, M> {
    /// The same store, values merged by `merge`.
    pub fn with_merge<M2>(self, merge: M2) -> Valued<S, M2> {
        Valued {
            store: self.store,
            merge,
        }
    }
}

impl<S, M> fmt::Debug for Valued<S, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Valued(..)")
    }
}

impl<K, P, H, M> KeyStore<(K, P)> for Valued<H, M>
where
    K: Hash + Eq + Clone,
    P: Clone,
    H: BuildHasher,
    M: Merge<P>,
{
    type Cells = ValuedLockedCells<K, P, H, M>;

    fn try_cells(self, capacity: usize) -> Result<Self::Cells, Refused> {
        ValuedLockedCells::try_new(entries_for(capacity), self.store, self.merge)
    }
}

impl<K, P, H, M> KeyStore<(K, P)> for Valued<Compact<H>, M>
where
    K: CompactKey,
    P: CompactKey,
    H: BuildHasher,
    M: Merge<P>,
{
    type Cells = ValuedPackedCells<K, P, H, M>;

    fn try_cells(self, capacity: usize) -> Result<Self::Cells, Refused> {
        ValuedPackedCells::try_new(entries_for(capacity), self.store.0, self.merge)
    }
}
