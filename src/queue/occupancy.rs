//! The queue's slot accounting and its closed flag, packed in one atomic word.
//!
//! Layout of the word: bit 63 is `closed`; bits 32..63 count the entries in
//! flight (leased, not yet acked or nacked); bit 31 is `delayed` (entries
//! wait in the queue's delay schedule, `delays.rs`); bits 0..31 count the
//! claimed slots (queued + delayed + in flight + being pushed). Capacity is
//! below 2^31, so claims never reach bit 31. Keeping all of it in one word
//! makes every transition a single read-modify-write, so any value read is a
//! consistent snapshot. That is what makes "closed and
//! finished" exact (see `Snapshot::is_finished`): an offer can only claim
//! while the closed bit is clear, so a word with the bit set counts every
//! claim that will ever be made before the close.
//!
//! Orderings. A claim is `Acquire` and every release is `Release` (all RMWs
//! are `AcqRel`, and the two that free a slot are `SeqCst`, see
//! `release_many`): the slot a taker freed in the ring (its pop) must be visible
//! to the offerer whose claim reads the freed count, or that offerer's push
//! could find the ring full (breaks I2 of `CoalescingQueue`). No other data is
//! published through this word; a weaker ordering on the RMWs would only
//! lose that one edge, and on x86 every RMW is a full barrier anyway.

use crate::sync::{AtomicU64, Ordering};

const CLAIM: u64 = 1;
const LEASE: u64 = 1 << 32;
const CLOSED: u64 = 1 << 63;
/// Set while the delay schedule holds an entry (D1 of `delays.rs`): what a
/// take reads, in the word its own update returns, to know that it must
/// look for entries that fell due. A plain bit test where no entry is
/// delayed.
const DELAYED: u64 = 1 << 31;
const CLAIM_MASK: u64 = DELAYED - 1;

/// The largest capacity the packed word can count (in flight has 31 bits).
pub(crate) const MAX_CAPACITY: usize = (1 << 31) - 1;

/// Why a claim failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClaimError {
    Full,
    Closed,
}

/// One consistent reading of the word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Snapshot(u64);

impl Snapshot {
    /// Slots claimed: queued + in flight + being pushed + being taken.
    pub(crate) fn claimed(self) -> usize {
        (self.0 & CLAIM_MASK) as usize
    }

    /// Entries leased and not yet acked or nacked.
    pub(crate) fn in_flight(self) -> usize {
        ((self.0 & !CLOSED) >> 32) as usize
    }

    pub(crate) fn is_closed(self) -> bool {
        self.0 & CLOSED != 0
    }

    /// The delay schedule holds an entry (or did when the word was read).
    #[inline(always)]
    pub(crate) fn has_delayed(self) -> bool {
        self.0 & DELAYED != 0
    }

    /// Claims that are not in flight: entries queued, being pushed, or
    /// popped and not yet released or leased. Never below the ring's length (I3).
    pub(crate) fn not_in_flight(self) -> usize {
        self.claimed() - self.in_flight()
    }

    /// Closed, nothing queued or on its way into the ring, and no lease out
    /// (a lease holds its claim): a take may report `Closed`, and
    /// `close_and_wait` may return. Nothing can be queued again after it.
    pub(crate) fn is_finished(self) -> bool {
        self.is_closed() && self.claimed() == 0
    }
}

pub(crate) struct Occupancy {
    word: AtomicU64,
    capacity: u64,
}

impl Occupancy {
    pub(crate) fn new(capacity: usize) -> Self {
        debug_assert!((1..=MAX_CAPACITY).contains(&capacity));
        Self {
            word: AtomicU64::new(0),
            capacity: capacity as u64,
        }
    }

    pub(crate) fn load(&self) -> Snapshot {
        Snapshot(self.word.load(Ordering::Acquire))
    }

    /// Claims one slot if the queue is open and below capacity; returns the
    /// word after the claim (keeps I1).
    pub(crate) fn try_claim(&self) -> Result<Snapshot, ClaimError> {
        let mut current = self.word.load(Ordering::Acquire);
        loop {
            if current & CLOSED != 0 {
                return Err(ClaimError::Closed);
            }
            if current & CLAIM_MASK >= self.capacity {
                return Err(ClaimError::Full);
            }
            match self.word.compare_exchange_weak(
                current,
                current + CLAIM,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(Snapshot(current + CLAIM)),
                Err(actual) => current = actual,
            }
        }
    }

    /// Gives `count` claims back (plain takes); returns the word after.
    /// `SeqCst`, so that the "not full" wake-up needs no fence
    /// (`Signal::notify_after_seqcst_change`); as cheap as `AcqRel` on x86.
    pub(crate) fn release_many(&self, count: usize) -> Snapshot {
        let sub = CLAIM * count as u64;
        Snapshot(self.word.fetch_sub(sub, Ordering::SeqCst) - sub)
    }

    /// `count` popped entries become leases; their claims stay. Returns the
    /// word after.
    pub(crate) fn lease_many(&self, count: usize) -> Snapshot {
        let add = LEASE * count as u64;
        Snapshot(self.word.fetch_add(add, Ordering::AcqRel) + add)
    }

    /// A lease ends by going back into the ring (nack, or ack of a dirty key);
    /// its claim stays for the push. Called before the push (keeps I3).
    pub(crate) fn unlease(&self) -> Snapshot {
        Snapshot(self.word.fetch_sub(LEASE, Ordering::AcqRel) - LEASE)
    }

    /// A lease ends for good: its claim and its in-flight count go together.
    /// `SeqCst` for the same reason as `release_many`.
    pub(crate) fn ack(&self) -> Snapshot {
        Snapshot(self.word.fetch_sub(LEASE + CLAIM, Ordering::SeqCst) - LEASE - CLAIM)
    }

    /// A lease ends by going into the delay schedule: out of the in-flight
    /// count, its claim kept; `first` (the schedule was empty) also sets
    /// the delayed bit, in the same step. Under the schedule's lock.
    pub(crate) fn unlease_delayed(&self, first: bool) -> Snapshot {
        let change = if first {
            DELAYED.wrapping_sub(LEASE)
        } else {
            0u64.wrapping_sub(LEASE)
        };
        Snapshot(
            self.word
                .fetch_add(change, Ordering::AcqRel)
                .wrapping_add(change),
        )
    }

    /// A new key's copy offered with a delay went into the empty schedule:
    /// the delayed bit set; its claim was made by the offer. Under the
    /// schedule's lock.
    pub(crate) fn mark_delayed(&self) {
        self.word.fetch_or(DELAYED, Ordering::AcqRel);
    }

    /// The schedule became empty. Under the schedule's lock.
    pub(crate) fn clear_delayed(&self) {
        self.word.fetch_and(!DELAYED, Ordering::AcqRel);
    }

    /// Sets the closed bit; `true` for the call that set it.
    pub(crate) fn close(&self) -> bool {
        self.word.fetch_or(CLOSED, Ordering::AcqRel) & CLOSED == 0
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn claims_stop_at_capacity_and_after_close() {
        let occupancy = Occupancy::new(2);
        assert_eq!(occupancy.try_claim().unwrap().claimed(), 1);
        assert_eq!(occupancy.try_claim().unwrap().claimed(), 2);
        assert_eq!(occupancy.try_claim(), Err(ClaimError::Full));
        assert_eq!(occupancy.release_many(1).claimed(), 1);
        assert!(occupancy.close());
        assert!(!occupancy.close());
        assert_eq!(occupancy.try_claim(), Err(ClaimError::Closed));
        let after = occupancy.load();
        assert!(after.is_closed());
        assert_eq!(after.claimed(), 1);
    }

    #[test]
    fn leases_are_counted_apart_from_claims() {
        let occupancy = Occupancy::new(4);
        occupancy.try_claim().unwrap();
        occupancy.try_claim().unwrap();
        let leased = occupancy.lease_many(1);
        assert_eq!((leased.claimed(), leased.in_flight()), (2, 1));
        assert_eq!(leased.not_in_flight(), 1);
        occupancy.close();
        assert_eq!(occupancy.release_many(1).not_in_flight(), 0);
        assert!(!occupancy.load().is_finished(), "a lease is still out");
        let requeued = occupancy.unlease();
        assert_eq!(requeued.not_in_flight(), 1);
        assert!(!requeued.is_finished());
        occupancy.lease_many(1);
        let done = occupancy.ack();
        assert_eq!((done.claimed(), done.in_flight()), (0, 0));
        assert!(done.is_finished());
    }

    #[test]
    fn largest_capacity_fills_without_touching_the_other_fields() {
        let occupancy = Occupancy::new(MAX_CAPACITY);
        occupancy
            .word
            .store(MAX_CAPACITY as u64 - 1, Ordering::Relaxed);
        let full = occupancy.try_claim().unwrap();
        assert_eq!(full.claimed(), MAX_CAPACITY);
        assert_eq!(full.in_flight(), 0);
        assert!(!full.is_closed());
        assert_eq!(occupancy.try_claim(), Err(ClaimError::Full));
    }
}
