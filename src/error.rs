//! Error types. Every offer error hands the rejected value back
//! (`into_inner`), and every error implements `Debug` without requiring
//! `T: Debug`: it prints the kind, `Full(..)` or `Closed(..)`, so `unwrap()`
//! works on any payload and its panic message says why.

use core::fmt;

/// Why [`try_offer_key`](crate::CoalescingQueue::try_offer_key) or
/// [`try_offer`](crate::CoalescingQueue::try_offer) did not take the value.
///
/// ```
/// use coalescing_queue::{CoalescingQueue, TryOfferError};
///
/// let q = CoalescingQueue::<u32, String>::new(1);
/// q.try_offer_key(1).unwrap();
/// assert_eq!(q.try_offer_key(2), Err(TryOfferError::Full(2)));
/// q.close();
/// let err = q.try_offer_key(3).unwrap_err();
/// assert!(err.is_closed());
/// assert_eq!(err.into_inner(), 3);
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TryOfferError<T> {
    /// Every slot is claimed (queued or in flight). The value is handed back.
    Full(T),
    /// The queue is closed. The value is handed back.
    Closed(T),
}

impl<T> TryOfferError<T> {
    /// The rejected value.
    pub fn into_inner(self) -> T {
        match self {
            Self::Full(value) | Self::Closed(value) => value,
        }
    }

    /// `true` if the queue was full.
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full(_))
    }

    /// `true` if the queue was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed(_))
    }
}

impl<T> fmt::Debug for TryOfferError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("Full(..)"),
            Self::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for TryOfferError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("offering to a full queue"),
            Self::Closed(_) => f.write_str("offering to a closed queue"),
        }
    }
}

impl<T> std::error::Error for TryOfferError<T> {}

/// A blocking or async offer failed because the queue is closed. The value
/// is handed back. Its `Debug` says the kind, `Closed(..)`, as the other
/// offer errors do.
///
/// ```
/// use coalescing_queue::{CoalescingQueue, OfferError};
///
/// let q = CoalescingQueue::<u32, String>::new(4);
/// q.close();
/// assert_eq!(q.offer_key(7), Err(OfferError(7)));
/// let err = q.offer_key(7).unwrap_err();
/// assert_eq!(format!("{err:?}"), "Closed(..)");
/// assert_eq!(err.to_string(), "offering to a closed queue");
/// assert_eq!(err.into_inner(), 7);
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct OfferError<T>(pub T);

impl<T> OfferError<T> {
    /// The rejected value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for OfferError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The kind, as `TryOfferError::Closed` prints it: an `unwrap()`
        // panic then says why the offer failed.
        f.write_str("Closed(..)")
    }
}

impl<T> fmt::Display for OfferError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("offering to a closed queue")
    }
}

impl<T> std::error::Error for OfferError<T> {}

/// Why [`offer_key_timeout`](crate::CoalescingQueue::offer_key_timeout) or
/// [`offer_timeout`](crate::CoalescingQueue::offer_timeout) did not take the value.
///
/// ```
/// use coalescing_queue::{CoalescingQueue, OfferTimeoutError};
/// use std::time::Duration;
///
/// let q = CoalescingQueue::<u32, String>::new(1);
/// q.offer_key(1).unwrap();
/// let err = q.offer_key_timeout(2, Duration::from_millis(1)).unwrap_err();
/// assert_eq!(err, OfferTimeoutError::Timeout(2));
/// assert!(err.is_timeout());
/// assert_eq!(err.into_inner(), 2);
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum OfferTimeoutError<T> {
    /// The queue stayed full until the deadline. The value is handed back.
    Timeout(T),
    /// The queue is closed. The value is handed back.
    Closed(T),
}

impl<T> OfferTimeoutError<T> {
    /// The rejected value.
    pub fn into_inner(self) -> T {
        match self {
            Self::Timeout(value) | Self::Closed(value) => value,
        }
    }

    /// `true` if the deadline passed.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }

    /// `true` if the queue was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed(_))
    }
}

impl<T> fmt::Debug for OfferTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(_) => f.write_str("Timeout(..)"),
            Self::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for OfferTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(_) => f.write_str("timed out offering to a full queue"),
            Self::Closed(_) => f.write_str("offering to a closed queue"),
        }
    }
}

impl<T> std::error::Error for OfferTimeoutError<T> {}

/// Why [`try_take`](crate::CoalescingQueue::try_take) returned nothing.
///
/// ```
/// use coalescing_queue::{CoalescingQueue, TryTakeError};
///
/// let q = CoalescingQueue::<u32, String>::new(4);
/// assert_eq!(q.try_take().unwrap_err(), TryTakeError::Empty);
/// q.close();
/// assert_eq!(q.try_take().unwrap_err(), TryTakeError::Closed);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TryTakeError {
    /// Nothing is queued right now.
    Empty,
    /// The queue is closed and drained: nothing is queued or on its way in,
    /// and no lease is out. Final: no take gets anything after it.
    Closed,
}

impl TryTakeError {
    /// `true` if the queue was empty but open.
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::Empty)
    }

    /// `true` if the queue was closed and drained.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed)
    }
}

impl fmt::Display for TryTakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("taking from an empty queue"),
            Self::Closed => f.write_str("taking from a closed and drained queue"),
        }
    }
}

impl std::error::Error for TryTakeError {}

/// A blocking or async take failed: the queue is closed and drained
/// (nothing queued or on its way in, no lease out; final). Its
/// `Debug` says the kind, `Closed`, as the other take errors do.
///
/// ```
/// use coalescing_queue::{CoalescingQueue, TakeError};
///
/// let q = CoalescingQueue::<u32, String>::new(4);
/// q.offer_key(1).unwrap();
/// q.close();
/// assert!(q.take().is_ok()); // what was queued is still delivered
/// assert_eq!(q.take(), Err(TakeError));
/// assert_eq!(format!("{TakeError:?}"), "Closed");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TakeError;

impl fmt::Debug for TakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The kind, as `TryTakeError::Closed` prints it.
        f.write_str("Closed")
    }
}

impl fmt::Display for TakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("taking from a closed and drained queue")
    }
}

impl std::error::Error for TakeError {}

/// Why [`take_timeout`](crate::CoalescingQueue::take_timeout) returned nothing.
///
/// ```
/// use coalescing_queue::{CoalescingQueue, TakeTimeoutError};
/// use std::time::Duration;
///
/// let q = CoalescingQueue::<u32, String>::new(4);
/// assert_eq!(q.take_timeout(Duration::from_millis(1)), Err(TakeTimeoutError::Timeout));
/// q.close();
/// assert_eq!(q.take_timeout(Duration::from_millis(1)), Err(TakeTimeoutError::Closed));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TakeTimeoutError {
    /// Nothing arrived before the deadline.
    Timeout,
    /// The queue is closed and drained (nothing queued or on its way in, no
    /// lease out; final).
    Closed,
}

impl TakeTimeoutError {
    /// `true` if the deadline passed.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout)
    }

    /// `true` if the queue was closed and drained.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed)
    }
}

impl fmt::Display for TakeTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("timed out taking from an empty queue"),
            Self::Closed => f.write_str("taking from a closed and drained queue"),
        }
    }
}

impl std::error::Error for TakeTimeoutError {}

/// Why [`Builder::try_build`](crate::Builder::try_build) could not build a queue.
///
/// ```
/// use coalescing_queue::{BuildError, CoalescingQueue};
///
/// let err = CoalescingQueue::<u32, String>::builder().capacity(0).try_build().unwrap_err();
/// assert_eq!(err, BuildError::ZeroCapacity);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BuildError {
    /// No capacity was set.
    MissingCapacity,
    /// The capacity was zero.
    ZeroCapacity,
    /// The capacity was above the largest supported, `2^31 - 1`.
    CapacityTooLarge,
    /// The allocator refused the memory the queue needs at this capacity:
    /// at least `bytes` (the ring and the key table together).
    OutOfMemory {
        /// The queue's size at this capacity, at least; `usize::MAX` if it
        /// is more than that (shown as "more than usize::MAX bytes").
        bytes: usize,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingCapacity => f.write_str("no capacity was set"),
            Self::ZeroCapacity => f.write_str("capacity must be at least 1"),
            Self::CapacityTooLarge => f.write_str("capacity must be below 2^31"),
            Self::OutOfMemory { bytes: usize::MAX } => {
                f.write_str("could not allocate more than usize::MAX bytes")
            }
            Self::OutOfMemory { bytes } => write!(f, "could not allocate {bytes} bytes"),
        }
    }
}

impl std::error::Error for BuildError {}
