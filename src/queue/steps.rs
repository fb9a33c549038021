//! The protocol's single steps (DESIGN.md section 3): one attempt to offer
//! a key or an item, to take, and to end a lease, each keeping the
//! invariants of `mod.rs`; the public forms loop around them.

use super::occupancy::{ClaimError, Snapshot};
use super::slot::{Slot, Ticket};
use super::unwind::Undo;
use super::CoalescingQueue;
use crate::entry::{Entry, Offered};
use crate::keys::table::{Ended, Offer};
use crate::keys::KeyStore;
use crate::policy::InFlightPolicy;
use crate::stats::Counter;
use crate::sync::Ordering;
use crate::TryTakeError;
use std::time::Instant;

/// One attempt to offer, before any waiting.
pub(crate) enum Attempt<T, R> {
    Done(R),
    Full(T),
    Closed(T),
}

/// The entries one take or batch has popped, not yet in the shared counts:
/// counted by `finish` after the last pop (I3), or by `Drop` if user code
/// panics half way through a batch, so that no claim is leaked.
pub(crate) struct Pops<'q, K, V, S: KeyStore<K>> {
    queue: &'q CoalescingQueue<K, V, S>,
    leased: bool,
    count: usize,
}

impl<'q, K, V, S: KeyStore<K>> Pops<'q, K, V, S> {
    fn new(queue: &'q CoalescingQueue<K, V, S>, leased: bool) -> Self {
        Self {
            queue,
            leased,
            count: 0,
        }
    }
}

impl<K, V, S: KeyStore<K>> Pops<'_, K, V, S> {
    /// Counts the pops; returns how many. The normal end of a take: the
    /// `Drop` below runs only if the take unwinds.
    #[inline(always)]
    fn finish(self) -> usize {
        let (queue, leased, count) = (self.queue, self.leased, self.count);
        core::mem::forget(self);
        if count > 0 {
            queue.account_taken(leased, count);
        }
        count
    }
}

impl<K, V, S: KeyStore<K>> Drop for Pops<'_, K, V, S> {
    fn drop(&mut self) {
        if self.count > 0 {
            self.queue.account_taken(self.leased, self.count);
        }
    }
}

/// How a lease ends at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeaseEnd {
    Ack,
    Nack,
}

/// How a lease ends, delays included: what a batch applies to each of its
/// leases (`end_lease_as`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    Now(LeaseEnd),
    /// Nacked, queued again once the queue's clock reaches this due time
    /// (`delays.rs`).
    NackUntil(u64),
    /// Nacked, delayed as the queue's backoff says for the lease's attempt.
    NackBackoff,
}

/// A leased take's start: when, and its tick in the key table.
#[derive(Clone, Copy)]
pub(crate) struct LeaseStart {
    pub(crate) at: Instant,
    tick: u32,
}

impl<K, V, S> CoalescingQueue<K, V, S>
where
    S: KeyStore<K>,
{
    /// One attempt to offer `key` (DESIGN.md section 3, steps 0-5).
    #[inline(always)]
    pub(crate) fn attempt_offer_key(&self, key: K) -> Attempt<K, Offered> {
        self.attempt_offer_key_into(key, |slot| self.push(slot))
    }

    /// One attempt to offer `key`, a new copy of which waits in the delay
    /// schedule until `due` (`delays.rs`); a pending key is coalesced as
    /// by `attempt_offer_key`.
    pub(crate) fn attempt_offer_key_until(&self, key: K, due: u64) -> Attempt<K, Offered> {
        self.attempt_offer_key_into(key, |slot| self.delay(slot, due, false))
    }

    /// The one core of a key offer; `place` puts a new copy's slot, whose
    /// claim is held, into the ring (steps 4-5) or the delay schedule.
    #[inline(always)]
    fn attempt_offer_key_into(&self, key: K, place: impl FnOnce(Slot<V>)) -> Attempt<K, Offered> {
        // Steps 0-3 (`KeyTable::offer`).
        let offered = self.keys.offer(
            key,
            self.policy == InFlightPolicy::Requeue,
            // Acquire: nothing is read through it; it orders this offer
            // after a close that a racing take may already have reported.
            || self.closed.load(Ordering::Acquire) != 0,
            // The claim, under the key's home insert bit: keeps I6.
            || {
                let after = self.occupancy.try_claim()?;
                self.counters.note_claimed(after.claimed());
                Ok(())
            },
        );
        match offered {
            Offer::Inserted(index) => {
                // Steps 4-5.
                place(Slot::Key(index));
                self.counters.add(Counter::Enqueued);
                Attempt::Done(Offered::Enqueued)
            }
            Offer::Coalesced { in_flight } => {
                self.counters.add(if in_flight {
                    Counter::CoalescedInFlight
                } else {
                    Counter::CoalescedQueued
                });
                Attempt::Done(Offered::Coalesced)
            }
            Offer::Refused(key, ClaimError::Full) => Attempt::Full(key),
            Offer::Refused(key, ClaimError::Closed) => Attempt::Closed(key),
        }
    }

    /// One attempt to offer a pass-through item: claim, push, notify.
    pub(crate) fn attempt_offer_item(&self, item: V) -> Attempt<V, ()> {
        match self.occupancy.try_claim() {
            Ok(after) => {
                self.counters.note_claimed(after.claimed());
                self.push(Slot::Item(item));
                self.counters.add(Counter::Enqueued);
                Attempt::Done(())
            }
            Err(ClaimError::Full) => Attempt::Full(item),
            Err(ClaimError::Closed) => Attempt::Closed(item),
        }
    }

    /// Pushes an entry whose claim is held, then wakes one taker.
    #[inline(always)]
    pub(super) fn push(&self, slot: Slot<V>) {
        if self.ring.push(slot).is_err() {
            unreachable!("the ring had no room for a claimed slot (breaks I2)");
        }
        self.not_empty.notify_one();
    }

    /// A leased take's start time, read once per take or batch.
    pub(crate) fn lease_start(&self) -> LeaseStart {
        let at = Instant::now();
        LeaseStart {
            at,
            tick: self.keys.tick(at),
        }
    }

    /// One attempt to take (DESIGN.md section 3, "Take"). A leased take keeps
    /// the claim and marks the key in flight; a plain take releases both.
    /// Returns the entry and, for a lease, its ticket (the index it ends by
    /// and its attempt). Inlined into each take form: built as its own
    /// function, its result went through one more copy (13 instructions
    /// per take, benches/profile.rs).
    #[inline(always)]
    pub(crate) fn attempt_take(
        &self,
        lease: Option<LeaseStart>,
    ) -> Result<(Entry<K, V>, Ticket), TryTakeError> {
        let mut pops = Pops::new(self, lease.is_some());
        let taken = self.pop_one(lease, &mut pops);
        pops.finish();
        match taken {
            Some(taken) => Ok(taken),
            None => self.attempt_take_after_empty(lease.is_some()),
        }
    }

    /// The ring was empty: `Closed` or `Empty`, unless delayed entries
    /// fell due and were queued just now; then take again. Out of line:
    /// the take's own path stays as it was.
    #[cold]
    #[inline(never)]
    fn attempt_take_after_empty(
        &self,
        leased: bool,
    ) -> Result<(Entry<K, V>, Ticket), TryTakeError> {
        // A new start for a lease: keeping the first one alive across the
        // take's pop cost the take itself 10 instructions of spills.
        let lease = leased.then(|| self.lease_start());
        loop {
            let why = self.why_empty();
            if why != TryTakeError::Empty
                || !self.occupancy.load().has_delayed()
                || self.promote_due() == 0
            {
                return Err(why);
            }
            let mut pops = Pops::new(self, lease.is_some());
            let taken = self.pop_one(lease, &mut pops);
            pops.finish();
            if let Some(taken) = taken {
                return Ok(taken);
            }
        }
    }

    /// Takes up to `limit` entries at once into `out` (and, for a lease,
    /// their tickets into `tickets`), with one update of the shared counts
    /// for all of them (a batch frees its slots, counts its leases and wakes
    /// offerers in one step each). Returns how many.
    pub(crate) fn attempt_take_many(
        &self,
        lease: Option<LeaseStart>,
        limit: usize,
        out: &mut Vec<Entry<K, V>>,
        mut tickets: Option<&mut Vec<Ticket>>,
    ) -> Result<usize, TryTakeError> {
        // At most what was queued (or on its way in) when the batch began,
        // as a coalescing ring buffer's poll takes: the batch frees its
        // slots only when it returns, so one that kept taking what is
        // offered meanwhile would hold more slots than were ever queued at
        // once, and offers would find the queue full with nothing queued.
        loop {
            let limit = limit.min(self.occupancy.load().not_in_flight());
            let mut pops = Pops::new(self, lease.is_some());
            while pops.count < limit {
                let Some((entry, ticket)) = self.pop_one(lease, &mut pops) else {
                    break;
                };
                out.push(entry);
                if let Some(tickets) = tickets.as_deref_mut() {
                    tickets.push(ticket);
                }
            }
            let taken = pops.finish();
            if taken > 0 {
                return Ok(taken);
            }
            let why = self.why_empty();
            if why != TryTakeError::Empty
                || !self.occupancy.load().has_delayed()
                || self.promote_due() == 0
            {
                return Err(why);
            }
        }
    }

    /// The ring was empty: closed and finished (nothing queued, nothing on
    /// its way in and no lease out), or just empty for now. A lease still
    /// out after close may queue its entry again (a nack, or the ack of a
    /// dirty key), so the take is `Empty` then, not `Closed`: `Closed` is
    /// final. A waiting take is woken by that push, or by the last ack
    /// (`after_decrease`).
    fn why_empty(&self) -> TryTakeError {
        if self.occupancy.load().is_finished() {
            TryTakeError::Closed
        } else {
            TryTakeError::Empty
        }
    }

    /// After `count` pops: a leased take counts them in flight (keeping
    /// their claims); a plain take releases their claims and wakes as many
    /// blocked offerers. Always after the pops: keeps I3.
    #[inline(always)]
    fn account_taken(&self, leased: bool, count: usize) {
        let after = if leased {
            self.occupancy.lease_many(count)
        } else {
            let after = self.occupancy.release_many(count);
            // The release was a SeqCst RMW: no fence needed.
            self.not_full.notify_after_seqcst_change(count);
            after
        };
        self.counters.add_many(Counter::Taken, count);
        self.after_decrease(after);
        // Delayed entries that fell due queue at the tail (D1 of
        // `delays.rs`): a bit of the word just returned, so free where
        // nothing is delayed.
        if after.has_delayed() {
            self.promote_due();
        }
    }

    /// Pops the head and updates its key's entry: the pop and the key
    /// change of a take, counted in `pops` for the shared counts. For a
    /// lease, also the index the lease ends by (the key's entry, or the
    /// item's start time). Inlined into each take: it is their whole path.
    #[inline(always)]
    fn pop_one(
        &self,
        lease: Option<LeaseStart>,
        pops: &mut Pops<'_, K, V, S>,
    ) -> Option<(Entry<K, V>, Ticket)> {
        let (index, again) = match self.ring.pop()? {
            Slot::Item(item) => {
                let record = lease.map_or(u32::MAX, |lease| self.keys.start_item_lease(lease.tick));
                pops.count += 1;
                // Items carry no count (`slot.rs`): always a first attempt.
                let ticket = Ticket {
                    index: record,
                    attempt: 1,
                };
                return Some((Entry::Item(item), ticket));
            }
            Slot::Key(index) => (index, false),
            Slot::Again(index) => (index, true),
        };
        // Read before the take's E3 overwrites the word with its tick; a
        // plain take does not need it.
        let deliveries = if again && lease.is_some() {
            self.keys.deliveries(index)
        } else {
            0
        };
        // The key's entry changes only after the pop: keeps I4 and I5.
        let key = {
            // User code in the take (the key's `Clone`, `Hash` or unpack)
            // runs before the entry changes (keys/table.rs, `take`): if it
            // panics, the entry is still queued, so its index goes back
            // into the ring (at the tail; its claim is still held, I2).
            let put_back = Undo::new(|| {
                self.push(if again {
                    Slot::Again(index)
                } else {
                    Slot::Key(index)
                })
            });
            let key = self.keys.take(index, lease.map(|lease| lease.tick));
            put_back.disarm();
            key
        };
        pops.count += 1;
        let ticket = Ticket {
            index,
            attempt: deliveries.saturating_add(1),
        };
        Some((Entry::Key(key), ticket))
    }

    /// Ends one lease: ack removes the key (or queues it again if it is
    /// dirty); nack queues the entry again at the tail, or, with a delay,
    /// puts it into the delay schedule (`delays.rs`). `ticket` is what the
    /// take returned with the entry: no hash, no `Eq`.
    ///
    /// User values (the lease's key copy, the store's copy, an acked item)
    /// are dropped only after the slot is freed and the table left, so a
    /// `Drop` that offers into this queue finds room and no lock held.
    /// (Out of line: inlined into the lease's `end`, it made each end a
    /// call more, 20 instructions per ack.)
    #[inline(never)]
    pub(crate) fn end_lease(&self, entry: Entry<K, V>, ticket: Ticket, end: LeaseEnd) {
        let ack = end == LeaseEnd::Ack;
        self.end_lease_then(entry, ticket, ack, |requeue| self.finish_lease(requeue));
    }

    /// A nack into the delay schedule, until `due` or, if `None`, for as
    /// long as the backoff says for the lease's attempt.
    #[inline(never)]
    pub(crate) fn end_lease_delayed(&self, entry: Entry<K, V>, ticket: Ticket, due: Option<u64>) {
        // Before the table changes: nothing may fail between its E6 and
        // the entry's place in the schedule.
        let due = due.unwrap_or_else(|| {
            let delay = self.backoff_delay(ticket.attempt);
            self.delays().due_after(delay)
        });
        self.end_lease_then(entry, ticket, false, |requeue| match requeue {
            Some(slot) => self.delay(slot, due, true),
            None => self.finish_lease(None),
        });
    }

    /// `end_lease` or `end_lease_delayed`, as `ending` says.
    pub(crate) fn end_lease_as(&self, entry: Entry<K, V>, ticket: Ticket, ending: Ending) {
        match ending {
            Ending::Now(end) => self.end_lease(entry, ticket, end),
            Ending::NackUntil(due) => self.end_lease_delayed(entry, ticket, Some(due)),
            Ending::NackBackoff => self.end_lease_delayed(entry, ticket, None),
        }
    }

    /// The one core of a lease's end; `finish` puts back what a nack (or
    /// the ack of a dirty key) queues again, or frees the slot.
    #[inline(always)]
    fn end_lease_then(
        &self,
        entry: Entry<K, V>,
        ticket: Ticket,
        ack: bool,
        finish: impl FnOnce(Option<Slot<V>>),
    ) {
        // A panic of the user's merge in a valued nack, resumed once the
        // nack is finished.
        let mut merge_panic = None;
        // What goes back into the ring, and what is dropped at the end.
        let (requeue_slot, _dropped_last) = match entry {
            // No user code in the table's part (no hash, no `Eq`): the
            // entry is found by its index and its home is recorded in it.
            // (A valued nack runs the user's merge there, and hands back
            // its panic.)
            Entry::Key(key) => match self.keys.end_lease(ticket.index, ack, &key) {
                Ended::Requeue(index) if ack => {
                    self.counters.add(Counter::RequeuedDirty);
                    // What arrived in flight: a new pending copy, whose
                    // attempts count from 1 again.
                    (Some(Slot::Key(index)), (Some(key), None))
                }
                Ended::Requeue(index) => {
                    // The same copy again: its next lease is one attempt
                    // more (read by that take, after the push).
                    self.keys.set_deliveries(index, ticket.attempt);
                    (Some(Slot::Again(index)), (Some(key), None))
                }
                Ended::RequeuedPanicked(index, panic) => {
                    self.keys.set_deliveries(index, ticket.attempt);
                    merge_panic = Some(panic);
                    (Some(Slot::Again(index)), (Some(key), None))
                }
                Ended::Removed(stored) => (None, (Some(key), stored)),
            },
            Entry::Item(item) => {
                self.keys.end_item_lease(ticket.index);
                if !ack {
                    (Some(Slot::Item(item)), (None, None))
                } else {
                    // Dropped below, after the slot is freed.
                    let item_last = Some(item);
                    self.counters.add(Counter::Acked);
                    self.finish_lease(None);
                    drop(item_last);
                    return;
                }
            }
        };
        self.counters
            .add(if ack { Counter::Acked } else { Counter::Nacked });
        finish(requeue_slot);
        if let Some(panic) = merge_panic {
            // A nack made by a lease's drop while its thread unwinds: a
            // second panic there would abort. The first one goes on.
            if !std::thread::panicking() {
                std::panic::resume_unwind(panic);
            }
        }
    }

    /// The shared counts of a lease's end: out of the in-flight count before
    /// the push of a requeue (keeps I3; the claim stays with the entry, so
    /// the push finds room, I2), or the claim freed for good.
    fn finish_lease(&self, requeue: Option<Slot<V>>) {
        if let Some(slot) = requeue {
            self.occupancy.unlease();
            self.push(slot);
        } else {
            let after = self.occupancy.ack();
            // The ack was a SeqCst RMW: no fence needed.
            self.not_full.notify_after_seqcst_change(1);
            self.after_decrease(after);
        }
    }

    /// After a transition that may have freed the last claim (a plain
    /// take's release, an ack, a lease's count): once the queue is closed
    /// with no claim left, wake every taker (they report `Closed`) and
    /// `close_and_wait`.
    fn after_decrease(&self, after: Snapshot) {
        if after.is_finished() {
            self.not_empty.notify_all();
            self.finished.notify_all();
        }
    }
}
