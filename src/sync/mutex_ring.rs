//! The ring under the model checkers: a stand-in for `ArrayQueue` on the
//! checker's `Mutex` (loom's or shuttle's).
//!
//! `ArrayQueue` is linearizable: each operation takes effect at one
//! instant. A `loom::sync::Mutex` around a `VecDeque` has exactly that
//! behaviour and, unlike the real type, is visible to loom, which then
//! explores every interleaving of the protocol's steps around these
//! operations. Only the methods the protocol uses exist here. (The key
//! table needs no stand-in: it is built on the facade's atomics and `Mutex`.)

// The checker's own `Mutex`: loom's or shuttle's.
use super::Mutex;
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
}
