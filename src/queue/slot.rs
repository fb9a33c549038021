//! What the ring holds, and what a leased take hands its lease.

/// One ring slot: a queued key, as the index of its table entry and the
/// number of times this pending copy was delivered before (so a lease
/// knows its attempt), or a pass-through item. The count rides in the
/// bytes the index leaves free beside the enum's tag: `Slot<V>` is as
/// large as `Entry<u32, V>` for every `V` (8 bytes for `()` and `u32`, 16
/// for a `u64` or a `Box`). An item carries no count: that would grow the
/// slot of items with a niche (a `String`'s 24 bytes to 32) for every
/// queue, counted or not.
pub(crate) enum Slot<V> {
    Key { index: u32, deliveries: u16 },
    Item(V),
}

impl<V> Slot<V> {
    /// A key's first time in the ring (a new pending copy).
    #[inline(always)]
    pub(crate) fn new_key(index: u32) -> Self {
        Slot::Key {
            index,
            deliveries: 0,
        }
    }
}

/// Where a lease ends (the key's table entry, or the item's start record)
/// and which delivery of its pending copy it is: 1 for the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticket {
    pub(crate) index: u32,
    pub(crate) attempt: u16,
}

impl Ticket {
    /// What the ring gets back when this lease's key is queued again
    /// without being acked: one more delivery of the same copy.
    #[inline(always)]
    pub(crate) fn requeued_key<V>(self) -> Slot<V> {
        Slot::Key {
            index: self.index,
            deliveries: self.attempt,
        }
    }
}
