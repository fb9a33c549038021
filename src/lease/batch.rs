//! Leased batches: entries taken together, one lease each, ended together
//! or split into single leases. The per-entry logic is the queue's
//! `end_lease`, as for a single [`LeaseIn`].

use crate::entry::Entry;
use crate::keys::KeyStore;
use crate::lease::{EntryOf, LeaseIn, QueueHandle};
use crate::queue::{CoalescingQueue, DefaultHashBuilder, Ending, LeaseEnd, Ticket};
use core::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A leased batch that borrows its queue: what
/// [`take_batch_leased`](CoalescingQueue::take_batch_leased) and its
/// timeout and async forms return. See [`LeaseBatchIn`] for its methods.
pub type LeaseBatch<'q, K, V, S = DefaultHashBuilder> = LeaseBatchIn<&'q CoalescingQueue<K, V, S>>;

/// A leased batch that holds an `Arc` of its queue: `'static`, and `Send`
/// when the queue is, so it can move into a spawned send task. Made by
/// [`take_batch_leased_owned_async`](CoalescingQueue::take_batch_leased_owned_async);
/// see [`LeaseBatchIn`] for its methods.
pub type OwnedLeaseBatch<K, V, S = DefaultHashBuilder> =
    LeaseBatchIn<Arc<CoalescingQueue<K, V, S>>>;

/// Entries taken together with one lease each, ended together with
/// [`ack`](LeaseBatchIn::ack) or [`nack`](LeaseBatchIn::nack), or one by one
/// after [`into_leases`](LeaseBatchIn::into_leases). Dropping it nacks every
/// entry still in it, in order. Used as [`LeaseBatch`] (borrowing the
/// queue) or [`OwnedLeaseBatch`] (holding an `Arc` of it).
///
/// ```
/// use coalescing_queue::{CoalescingQueue, Entry};
/// use std::time::Duration;
///
/// let q = CoalescingQueue::<u32, String>::new(8);
/// for key in 1..=3 {
///     q.offer_key(key).unwrap();
/// }
/// let batch = q.take_batch_leased(10, Duration::ZERO);
/// assert_eq!(batch.len(), 3);
/// assert_eq!(batch.iter().filter_map(Entry::key).sum::<u32>(), 6);
/// batch.nack(); // all three queued again, in order
///
/// let batch = q.take_batch_leased(10, Duration::ZERO);
/// assert_eq!(batch.entries(), [Entry::Key(1), Entry::Key(2), Entry::Key(3)]);
/// batch.ack();
/// assert_eq!(q.in_flight(), 0);
/// ```
///
/// A batch left unused is a warning (dropping it at once nacks it all):
///
/// ```compile_fail
/// # #![deny(warnings)]
/// # let q = coalescing_queue::CoalescingQueue::<u32, String>::new(4);
/// q.take_batch_leased(8, std::time::Duration::ZERO); // error: unused `LeaseBatchIn`
/// ```
///
/// So is every future the crate returns (a future does nothing unless it
/// is awaited):
///
/// ```compile_fail
/// # #![deny(warnings)]
/// # let q = std::sync::Arc::new(coalescing_queue::CoalescingQueue::<u32, String>::new(4));
/// q.take_batch_leased_owned_async(8, std::time::Duration::ZERO); // error: unused `Future`
/// ```
#[must_use = "dropping a leased batch nacks every entry in it"]
pub struct LeaseBatchIn<Q: QueueHandle> {
    pub(crate) queue: Q,
    pub(crate) entries: Vec<EntryOf<Q>>,
    /// `tickets[i]`: where the lease of `entries[i]` ends, and its attempt.
    pub(crate) tickets: Vec<Ticket>,
    pub(crate) started: Instant,
}

impl<Q: QueueHandle> LeaseBatchIn<Q> {
    /// An empty batch, to be filled by a batch take.
    pub(crate) fn empty(queue: Q) -> Self {
        Self {
            queue,
            entries: Vec::new(),
            tickets: Vec::new(),
            started: Instant::now(),
        }
    }

    /// The number of entries leased.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `true` only when the queue was closed and drained (or, for the
    /// timeout form, nothing came in time).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The leased entries, in the order they were taken.
    pub fn iter(&self) -> core::slice::Iter<'_, EntryOf<Q>> {
        self.entries.iter()
    }

    /// The leased entries, in the order they were taken.
    pub fn entries(&self) -> &[EntryOf<Q>] {
        &self.entries
    }

    /// How long ago the batch was taken.
    pub fn age(&self) -> Duration {
        self.started.elapsed()
    }

    /// Every entry was delivered; see [`LeaseIn::ack`].
    pub fn ack(mut self) {
        self.end_all(Ending::Now(LeaseEnd::Ack));
    }

    /// No entry was delivered: all are queued again, in order; see
    /// [`LeaseIn::nack`].
    pub fn nack(mut self) {
        self.end_all(Ending::Now(LeaseEnd::Nack));
    }

    /// No entry was delivered, and none should be tried again before
    /// `delay`: all wait as [`LeaseIn::nack_after`] says, and fall due
    /// together, in the batch's order. For a delay per entry, use
    /// [`nack_backoff`](Self::nack_backoff) or split the batch with
    /// [`into_leases`](Self::into_leases).
    ///
    /// # Panics
    ///
    /// If the queue was built without
    /// [`Builder::retries`](crate::Builder::retries); the batch is then
    /// dropped as the panic unwinds, which nacks every entry.
    ///
    /// ```
    /// use coalescing_queue::{Backoff, CoalescingQueue, Entry};
    /// use std::time::Duration;
    ///
    /// let q = CoalescingQueue::<u32, String>::builder()
    ///     .capacity(8)
    ///     .retries(Backoff::default())
    ///     .build();
    /// for key in 1..=3 {
    ///     q.offer_key(key).unwrap();
    /// }
    /// q.take_batch_leased(10, Duration::ZERO).nack_after(Duration::from_millis(5));
    /// assert_eq!(q.stats().delayed, 3);
    /// let batch = q.take_batch_leased(10, Duration::from_millis(50));
    /// assert_eq!(batch.entries(), [Entry::Key(1), Entry::Key(2), Entry::Key(3)]);
    /// assert!(batch.attempts().all(|attempt| attempt == 2));
    /// batch.ack();
    /// ```
    #[track_caller]
    pub fn nack_after(mut self, delay: Duration) {
        let due = self.queue.queue().delays().due_after(delay);
        self.end_all(Ending::NackUntil(due));
    }

    /// No entry was delivered: each is nacked with the delay the queue's
    /// backoff gives its own attempt, as [`LeaseIn::nack_backoff`].
    ///
    /// # Panics
    ///
    /// If the queue was built without
    /// [`Builder::retries`](crate::Builder::retries), as `nack_after`.
    #[track_caller]
    pub fn nack_backoff(mut self) {
        self.queue.queue().delays();
        self.end_all(Ending::NackBackoff);
    }

    /// Each entry's [attempt](LeaseIn::attempt), in the batch's order.
    pub fn attempts(&self) -> impl ExactSizeIterator<Item = u32> + '_ {
        self.tickets.iter().map(|ticket| ticket.attempt)
    }

    /// Splits the batch into one lease per entry, to end them one by one
    /// (say, when a transport reports a result per entry). Owned batches
    /// give owned leases.
    ///
    /// ```
    /// use coalescing_queue::CoalescingQueue;
    /// use std::time::Duration;
    ///
    /// let q = CoalescingQueue::<u32, String>::new(8);
    /// q.offer_key(1).unwrap();
    /// q.offer_key(2).unwrap();
    /// let mut leases = q.take_batch_leased(2, Duration::ZERO).into_leases();
    /// leases.pop().unwrap().nack(); // key 2 failed
    /// leases.pop().unwrap().ack(); // key 1 went out
    /// assert_eq!(q.len(), 1);
    /// ```
    pub fn into_leases(mut self) -> Vec<LeaseIn<Q>> {
        let entries = core::mem::take(&mut self.entries);
        let tickets = core::mem::take(&mut self.tickets);
        entries
            .into_iter()
            .zip(tickets)
            .map(|(entry, ticket)| {
                LeaseIn::starting(self.queue.clone(), entry, ticket, self.started)
            })
            .collect()
    }

    fn end_all(&mut self, end: Ending) {
        let queue = self.queue.queue();
        let mut unended = Unended {
            queue,
            end,
            rest: self.entries.drain(..).zip(self.tickets.drain(..)),
        };
        for (entry, ticket) in unended.rest.by_ref() {
            queue.end_lease_as(entry, ticket, end);
        }
    }
}

/// The leases of a batch not yet ended. If a user `Drop` panics inside one
/// `end_lease` (that lease has ended by then), the unwinding drops this,
/// which ends the rest the same way: a panic never leaves part of a batch
/// leased. (A second panic there aborts, as any panic during unwinding.)
struct Unended<'q, K, V, S: KeyStore<K>, I: Iterator<Item = (Entry<K, V>, Ticket)>> {
    queue: &'q CoalescingQueue<K, V, S>,
    end: Ending,
    rest: I,
}

impl<K, V, S: KeyStore<K>, I: Iterator<Item = (Entry<K, V>, Ticket)>> Drop
    for Unended<'_, K, V, S, I>
{
    fn drop(&mut self) {
        for (entry, ticket) in &mut self.rest {
            self.queue.end_lease_as(entry, ticket, self.end);
        }
    }
}

impl<'a, Q: QueueHandle> IntoIterator for &'a LeaseBatchIn<Q> {
    type Item = &'a Entry<Q::Key, Q::Item>;
    type IntoIter = core::slice::Iter<'a, EntryOf<Q>>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}

impl<Q: QueueHandle> Drop for LeaseBatchIn<Q> {
    fn drop(&mut self) {
        self.end_all(Ending::Now(LeaseEnd::Nack));
    }
}

impl<Q: QueueHandle> fmt::Debug for LeaseBatchIn<Q>
where
    Q::Key: fmt::Debug,
    Q::Item: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseBatch")
            .field("entries", &self.entries)
            .field("age", &self.age())
            .finish()
    }
}
