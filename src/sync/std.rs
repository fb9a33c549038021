//! The real backend: `std` atomics and `Mutex`, `crossbeam_queue::ArrayQueue`
//! for the ring and `event_listener::Event` for the waiter.

pub(crate) use crossbeam_queue::ArrayQueue as Ring;
pub(crate) use event_listener::{Event, EventListener, Listener};
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
pub(crate) use std::sync::{Mutex, MutexGuard};
pub(crate) use std::thread::yield_now;
