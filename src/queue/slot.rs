//! What the ring holds, and what a leased take hands its lease.

/// One ring slot: a queued key, as the index of its table entry, or a
/// pass-through item. `Again` is a key queued again without an ack (a
/// nack, a dropped lease, a delay that fell due): its entry's lease-tick
/// word holds how many times this pending copy was delivered, written by
/// the nack (`KeyTable::set_deliveries`), so its next lease knows its
/// attempt. A new copy (`Key`) was delivered 0 times and reads nothing.
/// The count lives in the table, not in the slot, because a third
/// variant costs no byte (`Slot<V>` is as large as `Entry<u32, V>` for
/// every `V`) and copies as the two-variant enum did, while a count in
/// the slot made every pop copy it field by field (10 instructions more
/// per take); an item carries no count, which would grow the slot of
/// items with a niche (a `String`'s 24 bytes to 32) for every queue.
pub(crate) enum Slot<V> {
    Key(u32),
    Again(u32),
    Item(V),
}

/// Where a lease ends (the key's table entry, or the item's start record)
/// and which delivery of its pending copy it is: 1 for the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticket {
    pub(crate) index: u32,
    pub(crate) attempt: u32,
}
