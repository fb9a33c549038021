//! The lifecycle of a key in the key table.

/// Where a key is in its lifecycle. A key absent from the table is neither
/// queued nor in flight; see the invariants on `CoalescingQueue`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyState {
    /// Exactly one copy is in the ring (or being pushed into it).
    Queued,
    /// Taken by a lease, not yet acknowledged; no copy is in the ring.
    InFlight,
    /// In flight, and offered again since it was taken (`InFlightPolicy::Requeue`):
    /// the ack queues it once more.
    InFlightDirty,
}
