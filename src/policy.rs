//! What happens to a key offered while a copy of it is in flight.

/// What an offer of a key does while a copy of that key is leased and not
/// yet acknowledged.
///
/// ```
/// use coalescing_queue::{CoalescingQueue, Entry, InFlightPolicy, Offered};
///
/// let q = CoalescingQueue::<u32, String>::builder()
///     .capacity(4)
///     .in_flight_policy(InFlightPolicy::Requeue)
///     .build();
/// q.offer_key(1).unwrap();
/// let lease = q.try_take_leased().unwrap();
/// assert_eq!(q.offer_key(1), Ok(Offered::Coalesced)); // absorbed, marked dirty
/// assert!(q.is_empty()); // never a second copy while the first is out
/// lease.ack();
/// assert_eq!(*q.try_take_leased().unwrap(), Entry::Key(1)); // delivered once more
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum InFlightPolicy {
    /// The offer is absorbed and the key is marked: when the lease is acked,
    /// the key is queued once more (however many offers came meanwhile), so
    /// the receiver sees a copy taken after the last offer. The default.
    #[default]
    Requeue,
    /// The offer is absorbed by the copy in flight and nothing more is
    /// delivered for it. A receiver that needs the state as of the later
    /// offer will not get it; use only when any one delivery will do.
    Absorb,
}

impl InFlightPolicy {
    /// The old name of [`Absorb`](Self::Absorb) (it read like the prelude's
    /// `Drop` trait).
    #[deprecated(since = "0.2.0", note = "renamed to `InFlightPolicy::Absorb`")]
    #[allow(non_upper_case_globals)]
    pub const Drop: Self = Self::Absorb;
}
