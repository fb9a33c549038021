//! A bounded, lock-free FIFO queue for hot paths where many threads report
//! "done" to one sender: an offer of a key that is already pending is
//! coalesced into the pending copy, other items pass through in order, keys
//! are stored compactly and built into full values only when taken, and
//! keys taken with a lease stay deduplicated until acknowledged.
//!
//! (Crate guide: see below.)
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![doc(test(attr(deny(warnings))))]

mod builder;
mod entry;
mod error;
mod gate;
mod key_state;
mod lease;
mod lease_clock;
#[cfg(loom)]
mod loom_shims;
mod occupancy;
mod offer;
mod policy;
mod queue;
mod stats;
mod sync;
mod take;
mod wait;

pub use builder::Builder;
pub use entry::{Entry, Offered};
pub use error::{
    BuildError, OfferError, OfferTimeoutError, TakeError, TakeTimeoutError, TryOfferError,
    TryTakeError,
};
pub use lease::{Lease, LeaseBatch};
pub use policy::InFlightPolicy;
pub use queue::{CoalescingQueue, DefaultHasher};
pub use stats::Stats;
