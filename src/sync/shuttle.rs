//! The shuttle backend (`--cfg shuttle`): shuttle's atomics and `Mutex`, the
//! `Mutex` ring of `mutex_ring.rs` on them, and a waiter with
//! event-listener's interface (`shuttle/waiter.rs`): event-listener parks OS
//! threads, which would block shuttle's scheduler.

#[path = "shuttle/waiter.rs"]
mod waiter;

pub(crate) use super::mutex_ring::Ring;
pub(crate) use shuttle::sync::atomic::{
    fence, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
pub(crate) use shuttle::sync::{Mutex, MutexGuard};
pub(crate) use shuttle::thread::yield_now;
pub(crate) use waiter::{Event, EventListener, Listener};
