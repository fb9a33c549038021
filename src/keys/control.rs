//! The control word of one key-table entry: its state, a tag of its key's
//! hash, whether the key spilled past its home bucket, and a version, in
//! one `u64`.
//!
//! ```text
//! bits  0..3   state    Empty, Reserved, ItemLease; Queued, InFlight, Dirty
//!                       (the pending three have bit 2 set)
//! bits  3..11  tag      8 bits of the key's hash (Queued, InFlight, Dirty)
//! bit  11       spilled  the key lives past its home bucket (its home is in
//!                       the table's `homes`)
//! bits 12..64  version  52 bits; +1 each time the entry is emptied
//! ```
//!
//! Why 52 bits of version: a duplicate's seqlock read (`table.rs`, `lookup`)
//! trusts an entry whose version is the same before and after it read the
//! key's words. A reader stalled for a whole wrap of the version (a VM
//! pause, a descheduled thread) would accept another key's words. An entry
//! is emptied and refilled at most once per take (about 60 ns here); 2^52
//! of them take over 8 years, where 28 bits wrapped in 16 seconds. (The
//! lease start, which once shared this word, lives in the table's
//! `lease_ticks`.)
//!
//! The transitions, who makes them and how, are the table of DESIGN.md
//! section 3 ("The key table's entry word"); `table.rs` cites them as
//! E1-E7.

/// What an entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Free. Only the holder of its bucket's insert bit takes it.
    Empty = 0,
    /// Being written (or emptied) by the thread that owns it; invisible to
    /// lookups.
    Reserved = 1,
    /// No key: the start time of a leased pass-through item.
    ItemLease = 2,
    /// A pending key with one copy of its index in the ring (or on its way).
    Queued = PENDING as isize,
    /// A pending key taken with a lease.
    InFlight = PENDING as isize | 1,
    /// In flight and offered again since (`InFlightPolicy::Requeue`).
    Dirty = PENDING as isize | 2,
}

/// The state bit the three pending states share, so that a lookup tests
/// "pending with this tag" with one mask and one compare.
const PENDING: u64 = 4;

const STATE_BITS: u32 = 3;
const TAG_SHIFT: u32 = STATE_BITS;
const TAG_BITS: u32 = 8;
const SPILLED: u64 = 1 << (TAG_SHIFT + TAG_BITS);
const VERSION_SHIFT: u32 = TAG_SHIFT + TAG_BITS + 1;
/// Bits of the version: the rest of the word.
pub(crate) const VERSION_BITS: u32 = 64 - VERSION_SHIFT;
const VERSION_MASK: u64 = (1 << VERSION_BITS) - 1;

/// One reading of an entry's control word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Control(pub(crate) u64);

impl Control {
    /// The word of a table just built: empty, version 0.
    pub(crate) const EMPTY: Control = Control(0);

    pub(crate) fn state(self) -> State {
        match self.0 & ((1 << STATE_BITS) - 1) {
            0 => State::Empty,
            1 => State::Reserved,
            2 => State::ItemLease,
            4 => State::Queued,
            5 => State::InFlight,
            _ => State::Dirty,
        }
    }

    /// `state() == state`, on the bits.
    #[inline(always)]
    pub(crate) fn is(self, state: State) -> bool {
        self.0 & ((1 << STATE_BITS) - 1) == state as u64
    }

    /// Holds a pending key: queued, in flight or dirty.
    #[inline(always)]
    pub(crate) fn is_pending(self) -> bool {
        self.0 & PENDING != 0
    }

    /// Holds a pending key whose tag is `tag`: one mask, one compare.
    #[inline(always)]
    pub(crate) fn is_pending_with(self, tag: u8) -> bool {
        const MASK: u64 = PENDING | 0xff << TAG_SHIFT;
        self.0 & MASK == PENDING | u64::from(tag) << TAG_SHIFT
    }

    /// A lease (of a key or an item) is out on this entry: its start is in
    /// the table's `lease_ticks`.
    pub(crate) fn is_leased(self) -> bool {
        self.is(State::InFlight) || self.is(State::Dirty) || self.is(State::ItemLease)
    }

    #[cfg(test)]
    pub(crate) fn tag(self) -> u8 {
        (self.0 >> TAG_SHIFT) as u8
    }

    pub(crate) fn version(self) -> u64 {
        (self.0 >> VERSION_SHIFT) & VERSION_MASK
    }

    /// The same entry (tag, spill and version kept) in state `state`.
    pub(crate) fn with_state(self, state: State) -> Control {
        Control(self.0 & !((1 << STATE_BITS) - 1) | state as u64)
    }

    /// Whether the key lives past its home bucket (its removal lowers the
    /// overflow counts it raised, `table.rs` T2).
    pub(crate) fn is_spilled(self) -> bool {
        self.0 & SPILLED != 0
    }

    /// A key with `tag` published at this entry's version.
    pub(crate) fn published(self, tag: u8, spilled: bool) -> Control {
        let spilled = if spilled { SPILLED } else { 0 };
        Control(
            self.version() << VERSION_SHIFT
                | spilled
                | u64::from(tag) << TAG_SHIFT
                | State::Queued as u64,
        )
    }

    /// The same key queued again (tag, version and spill kept).
    pub(crate) fn requeued(self) -> Control {
        self.with_state(State::Queued)
    }

    /// Emptied of its key: the version moves on, so that a reader that saw
    /// the old key's word cannot mistake the next key's words for it (E5).
    pub(crate) fn emptied(self) -> Control {
        let next = (self.version() + 1) & VERSION_MASK;
        Control(next << VERSION_SHIFT | State::Empty as u64)
    }
}

#[cfg(all(test, not(loom), not(shuttle)))]
mod tests {
    use super::*;

    #[test]
    fn fields_do_not_overlap() {
        let queued = Control::EMPTY.emptied().emptied().published(0xab, true);
        assert!(queued.is_spilled() && queued.requeued() == queued);
        assert_eq!(queued.state(), State::Queued);
        assert_eq!((queued.tag(), queued.version()), (0xab, 2));
        let leased = queued.with_state(State::InFlight);
        assert_eq!(leased.state(), State::InFlight);
        assert_eq!((leased.tag(), leased.version()), (0xab, 2));
        let dirty = leased.with_state(State::Dirty);
        assert_eq!((dirty.tag(), dirty.version()), (0xab, 2));
        assert!(dirty.is_spilled() && !dirty.emptied().is_spilled());
        assert_eq!(dirty.requeued(), queued);
        let empty = dirty.emptied();
        assert_eq!((empty.state(), empty.version()), (State::Empty, 3));
        assert!(dirty.is_pending() && dirty.is_leased());
        assert!(!empty.is_pending() && !queued.is_leased());
    }

    /// A seqlock reader is fooled only if it stalls while its entry is
    /// emptied 2^VERSION_BITS times. At one reuse every 10 ns (faster than
    /// a take here), that must take longer than any stall: years, not the
    /// seconds 28 bits gave.
    #[test]
    fn the_version_outlasts_any_stall() {
        let reuses = 1u128 << VERSION_BITS;
        let seconds = reuses * 10 / 1_000_000_000;
        let years = seconds / (365 * 24 * 3600);
        assert!(years >= 1, "the version wraps in {seconds} s of churn");
    }

    #[test]
    fn the_version_wraps_within_its_bits() {
        let last = Control(VERSION_MASK << VERSION_SHIFT);
        assert_eq!(last.emptied().version(), 0);
        assert_eq!(last.emptied().state(), State::Empty);
    }
}
