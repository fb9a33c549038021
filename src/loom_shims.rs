//! Model-checkable stand-ins for the ring and the key map (`cfg(loom)`;
//! under `cfg(shuttle)` the same code on `shuttle::sync::Mutex`).
//!
//! `ArrayQueue` and `DashMap` are linearizable: each operation takes effect
//! at one instant. A `loom::sync::Mutex` around a plain collection has
//! exactly that behaviour and, unlike the real types, is visible to loom,
//! which then explores every interleaving of the protocol's steps around
//! these operations. Only the methods the protocol uses exist here.

use crate::key_state::KeyState;
use crate::sync::MapEntry;
use core::hash::{BuildHasher, Hash};
#[cfg(loom)]
use loom::sync::Mutex;
// The same shims serve `cfg(shuttle)` (included from `sync.rs`).
#[cfg(all(shuttle, not(loom)))]
use shuttle::sync::Mutex;
use std::collections::hash_map::{Entry, HashMap, VacantEntry};
use std::collections::VecDeque;

/// Bounded FIFO with the `ArrayQueue` methods the crate calls.
pub(crate) struct Ring<T> {
    slots: Mutex<VecDeque<T>>,
    capacity: usize,
}

impl<T> Ring<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            slots: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity,
        }
    }

    pub(crate) fn push(&self, value: T) -> Result<(), T> {
        let mut slots = self.slots.lock().unwrap();
        if slots.len() == self.capacity {
            return Err(value);
        }
        slots.push_back(value);
        Ok(())
    }

    pub(crate) fn pop(&self) -> Option<T> {
        self.slots.lock().unwrap().pop_front()
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.lock().unwrap().len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// MUTANT: delete_before_pop: a look at the head, for the take that
    /// removes its key before popping it.
    #[cfg(coalescing_mutant = "delete_before_pop")]
    pub(crate) fn mutant_peek<R>(&self, f: impl FnOnce(Option<&T>) -> R) -> R {
        f(self.slots.lock().unwrap().front())
    }
}

/// Key map with the `DashMap` methods the crate calls.
pub(crate) struct KeyMap<K, S> {
    map: Mutex<HashMap<K, KeyState, S>>,
}

/// An absent key, locked until this is inserted or dropped.
pub(crate) struct Vacant<'a, K, S> {
    entry: VacantEntry<'a, K, KeyState>,
    _hasher: core::marker::PhantomData<S>,
}

impl<'a, K, S> Vacant<'a, K, S> {
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
            map: Mutex::new(HashMap::with_capacity_and_hasher(capacity, hasher)),
        }
    }

    pub(crate) fn entry<R>(&self, key: K, f: impl FnOnce(MapEntry<'_, K, S>) -> R) -> R {
        let mut map = self.map.lock().unwrap();
        match map.entry(key) {
            Entry::Occupied(mut occupied) => f(MapEntry::Occupied(occupied.get_mut())),
            Entry::Vacant(entry) => f(MapEntry::Vacant(Vacant {
                entry,
                _hasher: core::marker::PhantomData,
            })),
        }
    }

    pub(crate) fn update<R>(
        &self,
        key: &K,
        f: impl FnOnce(&mut KeyState) -> (R, bool),
    ) -> Option<R> {
        let mut map = self.map.lock().unwrap();
        let state = map.get_mut(key)?;
        let (r, remove) = f(state);
        if remove {
            map.remove(key);
        }
        Some(r)
    }

    pub(crate) fn remove(&self, key: &K) -> Option<KeyState> {
        self.map.lock().unwrap().remove(key)
    }

    pub(crate) fn get(&self, key: &K) -> Option<KeyState> {
        self.map.lock().unwrap().get(key).copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }
}
