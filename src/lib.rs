//! A bounded, lock-free FIFO queue for hot paths where many threads report
//! "done" to one sender.
//!
//! An offer of a key that is already pending is **coalesced** into the
//! pending copy; other items **pass through** in order, in the same FIFO.
//! Keys are stored compactly and built into full values only when they are
//! **taken**. Keys taken with a **lease** stay deduplicated until the sender
//! acknowledges them, and come back if the send failed. Beside the queue, a
//! [`ResendGate`] tells a coordinator when to re-send a fan-out request.
//!
//! # Why
//!
//! A coordinator asks thousands of workers to do something; each answers
//! "done", and re-sends the answer until it is acknowledged. With a plain
//! channel, a slow sender makes the same answer pile up thousands of times,
//! each a freshly built message: memory grows with the number of *offers*.
//! Here it grows with the number of *distinct* pending answers, and is fixed
//! up front by the capacity.
//!
//! # Example
//!
//! ```
//! use coalescing_queue::CoalescingQueue;
//! use std::{sync::Arc, thread, time::Duration};
//!
//! /// The compact form of a "done" answer.
//! #[derive(Clone, PartialEq, Eq, Hash, Debug)]
//! struct Done { table: u64, job: u64 }
//!
//! let queue = Arc::new(CoalescingQueue::<Done, String>::new(1024));
//!
//! // Workers answer, and re-send; duplicates of a pending answer coalesce.
//! let workers: Vec<_> = (0..4)
//!     .map(|w| {
//!         let queue = queue.clone();
//!         thread::spawn(move || {
//!             for _resend in 0..3 {
//!                 for table in 0..10 {
//!                     queue.offer_key(Done { table: w * 10 + table, job: 7 }).unwrap();
//!                 }
//!             }
//!         })
//!     })
//!     .collect();
//! for worker in workers {
//!     worker.join().unwrap();
//! }
//! queue.close();
//!
//! // The sender drains in batches and builds each message only now.
//! let mut batch = Vec::new();
//! let mut sent = 0;
//! while queue.take_batch(&mut batch, 64, Duration::from_millis(1)) > 0 {
//!     for entry in batch.drain(..) {
//!         let message = entry.into_item(|done| format!("table {} done", done.table));
//!         assert!(message.ends_with("done"));
//!         sent += 1;
//!     }
//! }
//! // 120 offers; nothing was taken before the close, so each of the 40
//! // tables was delivered exactly once.
//! assert_eq!(sent, 40);
//! ```
//!
//! # Guarantees
//!
//! * **G1 No lost offer.** An offer that returned `Ok` is followed by a take
//!   of that key that returns *after* the offer began: what the receiver
//!   builds from the key is at least as new as the offer. With
//!   [`InFlightPolicy::Requeue`] (the default), an offer absorbed by a copy
//!   in flight is delivered once more after that lease is acked.
//! * **G2 Coalescing.** At most one copy of a key is pending: queued, or in
//!   flight. However many times it is offered meanwhile, it is delivered once
//!   (plus once after the ack, under `Requeue`).
//! * **G3 Bounded.** Queued plus in-flight entries never exceed the
//!   capacity. Memory is fixed when the queue is built, whatever the offer
//!   rate; a duplicate offer needs no slot and is coalesced even when full.
//! * **G4 FIFO.** Entries leave in the order they entered. A coalesced offer
//!   takes the place of the pending copy; a nacked or re-queued entry goes to
//!   the tail.
//! * **G5 No lost wake-up.** A blocked taker wakes when an entry arrives or
//!   the queue closes; a blocked offerer wakes when a slot frees up or the
//!   queue closes, and then gets its value back.
//! * **G6 No leaked reservation.** Once everything is taken and every lease
//!   acked, no key is pending and no slot is claimed. A dropped lease is a
//!   nack: it never loses an entry and never pins a key.
//! * **G7 No allocation per offer.** The ring and the key table are
//!   allocated at full size when the queue is built.
//!
//! The ring, the slot accounting and the close flag are lock-free atomics;
//! the key table takes a short per-shard lock for one lookup, never held
//! while waiting. Each pending key is stored once, in the table; the ring
//! holds a 16-byte handle to it.
//!
//! The protocol behind these (the order of every step, and why) is in
//! `DESIGN.md`; every race in it is model-checked with loom, and each rule
//! has a deliberately broken variant that the models must catch.
//!
//! # Leases: in-flight keys
//!
//! A sender that only knows after the send whether it went out takes with a
//! lease ([`try_take_leased`](CoalescingQueue::try_take_leased),
//! [`take_batch_leased`](CoalescingQueue::take_batch_leased), ...). While the
//! lease is out, its key stays pending, so re-sends are coalesced into it;
//! [`Lease::ack`] ends it, [`Lease::nack`] (or dropping it) queues the entry
//! again at the tail. A requeue never fails: the lease kept its slot.
//!
//! # Shutting down
//!
//! [`close`](CoalescingQueue::close) makes every later offer fail with its
//! value handed back, wakes everyone blocked, and lets takers drain what is
//! queued; a take reports `Closed` only once nothing is queued or on its way
//! in. [`close_and_wait`](CoalescingQueue::close_and_wait) also waits for
//! every lease to be acked.
//!
//! # Forms of each operation
//!
//! As in `crossbeam-channel`: `try_*` never blocks, the plain form blocks,
//! `*_timeout` blocks up to a deadline, `*_async` returns a future (the take
//! futures are cancel-safe). Errors hand the rejected value back
//! (`into_inner`) and print as `Full(..)` without needing `T: Debug`.
#![forbid(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![doc(test(attr(deny(warnings))))]

mod builder;
mod cells;
mod compact_key;
mod control;
mod entry;
mod error;
mod gate;
mod key_store;
mod key_table;
mod lease;
#[cfg(loom)]
mod loom_shims;
mod occupancy;
mod offer;
mod policy;
mod queue;
mod stats;
mod sync;
mod take;
mod thread_slot;
mod wait;

pub use builder::Builder;
pub use compact_key::{CompactKey, Packer, Unpacker};
pub use entry::{Entry, Offered};
pub use error::{
    BuildError, OfferError, OfferTimeoutError, TakeError, TakeTimeoutError, TryOfferError,
    TryTakeError,
};
pub use gate::{ResendGate, ResendPermit};
pub use key_store::{Compact, KeyStore};
pub use lease::{Lease, LeaseBatch};
pub use policy::InFlightPolicy;
pub use queue::{CoalescingQueue, CompactQueue, DefaultHasher};
pub use stats::Stats;

/// The README's example is compiled and run with the doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
