//! The one place that imports the concurrency primitives.
//!
//! Everything concurrent in the crate (atomics, the ring, the key map and the
//! waiter) comes from here, so that one `cfg` swaps all of it:
//!
//! * the real build uses `crossbeam_queue::ArrayQueue`, `dashmap::DashMap`,
//!   `std` atomics and `event_listener::Event`;
//! * `--cfg loom` uses loom's atomics, `event_listener` built with its `loom`
//!   feature, and the shims of [`crate::loom_shims`] for the ring and the map.
//!   Loom cannot see inside `ArrayQueue` (it uses core atomics) and a DashMap
//!   lock held across a loom point hangs loom's single OS thread; both types
//!   are linearizable, so a `loom::sync::Mutex` around a plain collection
//!   models each of their operations exactly.
//! * `--cfg shuttle` uses shuttle's atomics, the same ring and map shims on
//!   `shuttle::sync::Mutex`, and the waiter of `src/shuttle_waiter.rs`
//!   (event-listener is not shuttle-aware: its parking would block shuttle's
//!   scheduler).

#[cfg(not(any(loom, shuttle)))]
pub(crate) use std::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};

#[cfg(not(all(shuttle, not(loom))))]
pub(crate) use event_listener::{Event, EventListener, Listener};

#[cfg(not(any(loom, shuttle)))]
pub(crate) use real::{KeyMap, Ring, Vacant};

#[cfg(loom)]
pub(crate) use crate::loom_shims::{KeyMap, Ring, Vacant};

// The shuttle arm: shuttle's atomics, the loom shims of the ring and the map
// (generic over the Mutex: they take `shuttle::sync::Mutex` here), and a
// Mutex + Condvar waiter with event-listener's interface.
#[cfg(all(shuttle, not(loom)))]
pub(crate) use shuttle::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};

#[cfg(all(shuttle, not(loom)))]
#[path = "loom_shims.rs"]
mod shuttle_shims;

#[cfg(all(shuttle, not(loom)))]
pub(crate) use shuttle_shims::{KeyMap, Ring, Vacant};

#[cfg(all(shuttle, not(loom)))]
#[path = "shuttle_waiter.rs"]
mod shuttle_waiter;

#[cfg(all(shuttle, not(loom)))]
pub(crate) use shuttle_waiter::{Event, EventListener, Listener};

use crate::key_state::KeyState;

/// A key's map entry as the protocol sees it, handed to the closure of
/// `KeyMap::entry` while the key's lock is held.
pub(crate) enum MapEntry<'a, K, S> {
    /// The key is queued or in flight; its state may be changed in place.
    Occupied(&'a mut KeyState),
    /// The key is absent; `Vacant::insert` reserves it.
    Vacant(Vacant<'a, K, S>),
}

#[cfg(not(any(loom, shuttle)))]
mod real {
    use super::MapEntry;
    use crate::key_state::KeyState;
    use core::hash::{BuildHasher, Hash};
    use core::marker::PhantomData;
    use dashmap::mapref::entry::{Entry, VacantEntry};
    use dashmap::DashMap;

    pub(crate) use crossbeam_queue::ArrayQueue as Ring;

    /// The key map: one entry per key that is queued or in flight.
    pub(crate) struct KeyMap<K, S> {
        map: DashMap<K, KeyState, S>,
    }

    /// An absent key, locked until this is inserted or dropped.
    pub(crate) struct Vacant<'a, K, S> {
        entry: VacantEntry<'a, K, KeyState>,
        _hasher: PhantomData<S>,
    }

    impl<'a, K: Eq + Hash, S> Vacant<'a, K, S> {
        /// Inserts the key with `state` and returns a copy of it for the ring.
        pub(crate) fn insert(self, state: KeyState) -> K
        where
            K: Clone,
        {
            let key = self.entry.key().clone();
            self.entry.insert(state);
            key
        }

        pub(crate) fn into_key(self) -> K {
            self.entry.into_key()
        }
    }

    impl<K: Eq + Hash + Clone, S: BuildHasher + Clone> KeyMap<K, S> {
        pub(crate) fn with_capacity_and_hasher(capacity: usize, hasher: S) -> Self {
            Self {
                map: DashMap::with_capacity_and_hasher(capacity, hasher),
            }
        }

        /// Runs `f` on `key`'s entry with the key's shard locked.
        pub(crate) fn entry<R>(&self, key: K, f: impl FnOnce(MapEntry<'_, K, S>) -> R) -> R {
            match self.map.entry(key) {
                Entry::Occupied(mut occupied) => f(MapEntry::Occupied(occupied.get_mut())),
                Entry::Vacant(entry) => f(MapEntry::Vacant(Vacant {
                    entry,
                    _hasher: PhantomData,
                })),
            }
        }

        /// Runs `f` on `key`'s state if present; removes the key if `f`
        /// returns `true` for "remove". Returns what `f` returned, or `None`
        /// if the key was absent.
        pub(crate) fn update<R>(
            &self,
            key: &K,
            f: impl FnOnce(&mut KeyState) -> (R, bool),
        ) -> Option<R> {
            let mut out = None;
            self.map.remove_if_mut(key, |_, state| {
                let (r, remove) = f(state);
                out = Some(r);
                remove
            });
            out
        }

        pub(crate) fn remove(&self, key: &K) -> Option<KeyState> {
            self.map.remove(key).map(|(_, state)| state)
        }

        pub(crate) fn get(&self, key: &K) -> Option<KeyState> {
            self.map.get(key).map(|state| *state)
        }

        pub(crate) fn len(&self) -> usize {
            self.map.len()
        }
    }
}

/// Statistics counters publish nothing and guard nothing: they are plain
/// `std` atomics even under loom, so that loom explores only the protocol.
pub(crate) use core::sync::atomic::AtomicU64 as StatCell;
