//! The control word of one key-table entry: its state, a tag of its key's
//! hash, a version, and the start of its lease, in one `u64`.
//!
//! ```text
//! bits  0..3   state    Empty, Reserved, ItemLease; Queued, InFlight, Dirty
//!                       (the pending three have bit 2 set)
//! bits  3..11  tag      8 bits of the key's hash (Queued, InFlight, Dirty)
//! bits 11..39  version  28 bits; +1 each time the entry is emptied of a key
//! bit  39       spilled  the key lives past its home bucket
//! bits 40..64  tick     24 bits: when the lease began, in ms since the
//!                       table was built (InFlight, Dirty, ItemLease)
//! ```
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
const VERSION_SHIFT: u32 = TAG_SHIFT + TAG_BITS;
const VERSION_BITS: u32 = 28;
const SPILLED: u64 = 1 << (VERSION_SHIFT + VERSION_BITS);
const TICK_SHIFT: u32 = VERSION_SHIFT + VERSION_BITS + 1;
/// Lease ticks wrap after 2^24 ms (about 4.66 hours).
pub(crate) const TICK_BITS: u32 = 64 - TICK_SHIFT;
pub(crate) const TICK_MASK: u64 = (1 << TICK_BITS) - 1;
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

    /// A lease (of a key or an item) is out on this entry.
    pub(crate) fn is_leased(self) -> bool {
        self.is(State::InFlight) || self.is(State::Dirty) || self.is(State::ItemLease)
    }

    pub(crate) fn tag(self) -> u8 {
        (self.0 >> TAG_SHIFT) as u8
    }

    pub(crate) fn version(self) -> u64 {
        (self.0 >> VERSION_SHIFT) & VERSION_MASK
    }

    pub(crate) fn tick(self) -> u64 {
        self.0 >> TICK_SHIFT
    }

    /// The same entry (tag, version, tick kept) in state `state`.
    pub(crate) fn with_state(self, state: State) -> Control {
        Control(self.0 & !((1 << STATE_BITS) - 1) | state as u64)
    }

    /// Whether the key lives past its home bucket (its removal lowers the
    /// overflow counts it raised, `table.rs` T2).
    pub(crate) fn is_spilled(self) -> bool {
        self.0 & SPILLED != 0
    }

    /// A key with `tag` published at this entry's version (no tick).
    pub(crate) fn published(self, tag: u8, spilled: bool) -> Control {
        let spilled = if spilled { SPILLED } else { 0 };
        Control(
            self.version() << VERSION_SHIFT
                | spilled
                | u64::from(tag) << TAG_SHIFT
                | State::Queued as u64,
        )
    }

    /// The same key queued again (tag, version and spill kept; no tick).
    pub(crate) fn requeued(self) -> Control {
        self.published(self.tag(), self.is_spilled())
    }

    /// The entry leased at `tick`, in `state`, keeping tag and version.
    pub(crate) fn leased(self, state: State, tick: u64) -> Control {
        let kept = self.0 & ((1 << TICK_SHIFT) - 1) & !((1 << STATE_BITS) - 1);
        Control((tick & TICK_MASK) << TICK_SHIFT | kept | state as u64)
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
        assert_eq!(
            (queued.tag(), queued.version(), queued.tick()),
            (0xab, 2, 0)
        );
        let leased = queued.leased(State::InFlight, TICK_MASK);
        assert_eq!(leased.state(), State::InFlight);
        assert_eq!((leased.tag(), leased.version()), (0xab, 2));
        assert_eq!(leased.tick(), TICK_MASK);
        let dirty = leased.with_state(State::Dirty);
        assert_eq!(
            (dirty.tag(), dirty.version(), dirty.tick()),
            (0xab, 2, TICK_MASK)
        );
        assert!(dirty.is_spilled() && !dirty.emptied().is_spilled());
        let empty = dirty.emptied();
        assert_eq!(
            (empty.state(), empty.version(), empty.tick()),
            (State::Empty, 3, 0)
        );
        assert!(dirty.is_pending() && dirty.is_leased());
        assert!(!empty.is_pending() && !queued.is_leased());
    }

    #[test]
    fn the_version_wraps_within_its_bits() {
        let last = Control(VERSION_MASK << VERSION_SHIFT);
        assert_eq!(last.emptied().version(), 0);
        assert_eq!(last.emptied().state(), State::Empty);
    }
}
