//! Leases: entries taken but not yet acknowledged, which keep their key
//! deduplicated (and their slot claimed) until the caller says how the
//! delivery went.
//!
//! A lease ends exactly once: `ack` (delivered), `nack` (queue it again at
//! the tail), or drop, which is a nack: a forgotten lease never loses an
//! entry and never pins a key. One type, [`LeaseIn`], holds the logic; it
//! reaches its queue through a [`QueueHandle`], borrowed ([`Lease`]) or
//! shared ([`OwnedLease`]).

pub(crate) mod batch;

use crate::entry::Entry;
use crate::keys::KeyStore;
use crate::queue::{CoalescingQueue, DefaultHashBuilder, LeaseEnd, LeaseStart, Ticket};
use core::fmt;
use core::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod sealed {
    pub trait Sealed {}
}

/// How a lease reaches its queue: `&CoalescingQueue` (for [`Lease`] and
/// [`LeaseBatch`](crate::LeaseBatch)) or `Arc<CoalescingQueue>` (for
/// [`OwnedLease`] and [`OwnedLeaseBatch`](crate::OwnedLeaseBatch), which are
/// `'static` and can move into another task or thread). Sealed: implemented
/// for those two only.
pub trait QueueHandle: Clone + sealed::Sealed {
    /// The queue's key type.
    type Key;
    /// The queue's pass-through item type.
    type Item;
    /// The queue's key store.
    type Store: KeyStore<Self::Key>;

    /// The queue.
    fn queue(&self) -> &CoalescingQueue<Self::Key, Self::Item, Self::Store>;
}

impl<K, V, S: KeyStore<K>> sealed::Sealed for &CoalescingQueue<K, V, S> {}

impl<K, V, S: KeyStore<K>> QueueHandle for &CoalescingQueue<K, V, S> {
    type Key = K;
    type Item = V;
    type Store = S;

    fn queue(&self) -> &CoalescingQueue<K, V, S> {
        self
    }
}

impl<K, V, S: KeyStore<K>> sealed::Sealed for Arc<CoalescingQueue<K, V, S>> {}

impl<K, V, S: KeyStore<K>> QueueHandle for Arc<CoalescingQueue<K, V, S>> {
    type Key = K;
    type Item = V;
    type Store = S;

    fn queue(&self) -> &CoalescingQueue<K, V, S> {
        self
    }
}

/// The entry type of a queue handle.
pub(crate) type EntryOf<Q> = Entry<<Q as QueueHandle>::Key, <Q as QueueHandle>::Item>;

/// A lease that borrows its queue: what [`try_take_leased`],
/// [`take_leased`] and the other leased takes on `&CoalescingQueue` return.
/// See [`LeaseIn`] for its methods.
///
/// [`try_take_leased`]: CoalescingQueue::try_take_leased
/// [`take_leased`]: CoalescingQueue::take_leased
pub type Lease<'q, K, V, S = DefaultHashBuilder> = LeaseIn<&'q CoalescingQueue<K, V, S>>;

/// A lease that holds an `Arc` of its queue: `'static`, and `Send` when the
/// queue is, so it can move into another task or thread (as tokio's
/// `OwnedPermit`). Made by [`try_take_leased_owned`] and
/// [`take_leased_owned_async`]; see [`LeaseIn`] for its methods.
///
/// ```
/// use coalescing_queue::{CoalescingQueue, Entry, OwnedLease};
/// use std::{sync::Arc, thread};
///
/// let q = Arc::new(CoalescingQueue::<u32, String>::new(4));
/// q.offer_key(1).unwrap();
/// let lease: OwnedLease<u32, String> = q.try_take_leased_owned().unwrap();
/// thread::spawn(move || {
///     assert_eq!(*lease, Entry::Key(1));
///     lease.ack();
/// })
/// .join()
/// .unwrap();
/// assert!(!q.is_pending(&1));
/// ```
///
/// [`try_take_leased_owned`]: CoalescingQueue::try_take_leased_owned
/// [`take_leased_owned_async`]: CoalescingQueue::take_leased_owned_async
pub type OwnedLease<K, V, S = DefaultHashBuilder> = LeaseIn<Arc<CoalescingQueue<K, V, S>>>;

/// An entry taken with a lease: its key stays pending (an offer of it is
/// coalesced, see [`InFlightPolicy`](crate::InFlightPolicy)) and its slot
/// stays claimed until [`ack`](LeaseIn::ack) or [`nack`](LeaseIn::nack).
/// Dropping it is a nack. Used as [`Lease`] (borrowing the queue) or
/// [`OwnedLease`] (holding an `Arc` of it).
///
/// Derefs to the [`Entry`].
///
/// ```
/// use coalescing_queue::{CoalescingQueue, Entry};
///
/// let q = CoalescingQueue::<u32, String>::new(4);
/// q.offer_key(5).unwrap();
///
/// let lease = q.try_take_leased().unwrap();
/// assert_eq!(*lease, Entry::Key(5));
/// assert_eq!(q.in_flight(), 1);
/// lease.nack(); // the send failed: queued again at the tail
///
/// let lease = q.try_take_leased().unwrap();
/// lease.ack(); // delivered
/// assert_eq!(q.in_flight(), 0);
/// assert!(!q.is_pending(&5));
/// ```
///
/// A lease left unused is a warning (dropping it at once would nack it):
///
/// ```compile_fail
/// # #![deny(warnings)]
/// # let q = coalescing_queue::CoalescingQueue::<u32, String>::new(4);
/// # q.offer_key(5).unwrap();
/// q.try_take_leased().unwrap(); // error: unused `LeaseIn` that must be used
/// ```
#[must_use = "dropping a lease nacks it: the entry is queued again"]
pub struct LeaseIn<Q: QueueHandle> {
    queue: Q,
    /// `None` once the lease has ended.
    entry: Option<EntryOf<Q>>,
    /// Where the lease ends (the key's entry, or the item's start record)
    /// and which delivery it is.
    ticket: Ticket,
    started: Instant,
}

impl<Q: QueueHandle> LeaseIn<Q> {
    pub(crate) fn new(
        queue: Q,
        entry: EntryOf<Q>,
        ticket: Ticket,
        start: Option<LeaseStart>,
    ) -> Self {
        Self::starting(
            queue,
            entry,
            ticket,
            start.map_or_else(Instant::now, |start| start.at),
        )
    }

    pub(crate) fn starting(queue: Q, entry: EntryOf<Q>, ticket: Ticket, started: Instant) -> Self {
        Self {
            queue,
            entry: Some(entry),
            ticket,
            started,
        }
    }

    /// The entry was delivered. Its key stops being pending, unless it was
    /// offered again while in flight under `InFlightPolicy::Requeue`: then it
    /// is queued once more at the tail.
    ///
    /// ```
    /// use coalescing_queue::CoalescingQueue;
    ///
    /// let q = CoalescingQueue::<u32, String>::new(4);
    /// q.offer_key(1).unwrap();
    /// let lease = q.try_take_leased().unwrap();
    /// q.offer_key(1).unwrap(); // offered again while in flight
    /// lease.ack();
    /// assert_eq!(q.len(), 1); // queued once more
    /// q.try_take_leased().unwrap().ack();
    /// assert!(!q.is_pending(&1));
    /// ```
    pub fn ack(mut self) {
        self.end(LeaseEnd::Ack);
    }

    /// The entry was not delivered: it is queued again at the tail (keeping
    /// its slot, so this never fails for lack of room), also after close.
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, Entry};
    ///
    /// let q = CoalescingQueue::<u32, String>::new(1);
    /// q.offer_key(1).unwrap();
    /// let lease = q.try_take_leased().unwrap();
    /// assert!(q.is_full()); // the lease keeps its slot
    /// q.close();
    /// lease.nack();
    /// assert_eq!(q.try_take(), Ok(Entry::Key(1)));
    /// ```
    pub fn nack(mut self) {
        self.end(LeaseEnd::Nack);
    }

    /// The entry was not delivered, and should not be tried again before
    /// `delay` has passed: its key stays pending meanwhile (an offer of it
    /// is coalesced, and merges into its value, as into a queued copy; it
    /// keeps its slot), no take returns it before it is due, and then it
    /// is queued at the tail (entries that fall due together, in order of
    /// their due times). A blocking, timeout or async take waiting on the
    /// queue wakes when it falls due. Its next lease's
    /// [`attempt`](Self::attempt) is one more.
    ///
    /// Due entries are queued by the takes: a take (any form), `len`,
    /// `is_empty` or `stats` queues those that are due when it runs, and a
    /// waiting taker sleeps no longer than the first due time. After
    /// [`close`](CoalescingQueue::close) delays end: delayed entries fall
    /// due at close, and a delayed nack after close queues at once.
    ///
    /// # Panics
    ///
    /// If the queue was built without
    /// [`Builder::retries`](crate::Builder::retries) (there is no delay
    /// schedule). The lease is then dropped as the panic unwinds, which
    /// nacks it: the entry is not lost.
    ///
    /// ```
    /// use coalescing_queue::{Backoff, CoalescingQueue, Entry};
    /// use std::time::{Duration, Instant};
    ///
    /// let q = CoalescingQueue::<u32, String>::builder()
    ///     .capacity(8)
    ///     .retries(Backoff::default())
    ///     .build();
    /// q.offer_key(1).unwrap();
    /// let lease = q.try_take_leased().unwrap();
    /// assert_eq!(lease.attempt(), 1);
    /// let nacked = Instant::now();
    /// lease.nack_after(Duration::from_millis(20));
    /// assert!(q.try_take_leased().is_err()); // not yet due
    /// assert_eq!(q.try_offer_key(1), Ok(coalescing_queue::Offered::Coalesced));
    ///
    /// let lease = q.take_leased().unwrap(); // sleeps until it is due
    /// assert!(nacked.elapsed() >= Duration::from_millis(20));
    /// assert_eq!((lease.entry(), lease.attempt()), (&Entry::Key(1), 2));
    /// lease.ack();
    /// ```
    #[track_caller]
    pub fn nack_after(mut self, delay: Duration) {
        let due = self.queue.queue().delays().due_after(delay);
        self.end_delayed(due);
    }

    /// The entry was not delivered: nacks it with the delay the queue's
    /// [`Backoff`](crate::Backoff) gives this lease's attempt (the first
    /// failure waits `base`, each further one twice as long, up to `max`,
    /// less jitter if set), as [`nack_after`](Self::nack_after). Returns
    /// the delay. (After close the entry is queued at once; the delay
    /// returned is the one the backoff gave.)
    ///
    /// # Panics
    ///
    /// If the queue was built without
    /// [`Builder::retries`](crate::Builder::retries), as `nack_after`.
    ///
    /// ```
    /// use coalescing_queue::{Backoff, CoalescingQueue};
    /// use std::time::Duration;
    ///
    /// let ms = Duration::from_millis;
    /// let q = CoalescingQueue::<u32, String>::builder()
    ///     .capacity(8)
    ///     .retries(Backoff::exponential(ms(1), ms(4)))
    ///     .build();
    /// q.offer_key(1).unwrap();
    /// let mut delays = Vec::new();
    /// for _ in 0..4 {
    ///     delays.push(q.take_leased().unwrap().nack_backoff());
    /// }
    /// assert_eq!(delays, [ms(1), ms(2), ms(4), ms(4)]);
    /// let lease = q.take_leased().unwrap();
    /// assert_eq!(lease.attempt(), 5);
    /// lease.ack(); // delivered: a new offer of 1 starts at attempt 1
    /// ```
    #[track_caller]
    pub fn nack_backoff(mut self) -> Duration {
        let queue = self.queue.queue();
        let delay = queue.backoff_delay(self.ticket.attempt);
        let due = queue.delays().due_after(delay);
        self.end_delayed(due);
        delay
    }

    /// Which delivery of its pending copy this lease is: 1 for the first,
    /// one more after each nack (with a delay or not) and each lease
    /// dropped. It starts again at 1 when the key is acked and offered
    /// anew (also for a key offered again while in flight and queued by
    /// the ack: that is a new copy); it stops at `u32::MAX`. Pass-through
    /// items are not counted (an item's lease always says 1): a count would
    /// grow the ring slot of some item types for every queue.
    ///
    /// ```
    /// use coalescing_queue::CoalescingQueue;
    ///
    /// let q = CoalescingQueue::<u32, String>::new(4);
    /// q.offer_key(1).unwrap();
    /// q.try_take_leased().unwrap().nack();
    /// let lease = q.try_take_leased().unwrap();
    /// assert_eq!(lease.attempt(), 2);
    /// lease.ack();
    /// q.offer_key(1).unwrap();
    /// assert_eq!(q.try_take_leased().unwrap().attempt(), 1);
    /// ```
    pub fn attempt(&self) -> u32 {
        self.ticket.attempt
    }

    /// The leased entry (also reachable through `Deref`).
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, Entry};
    ///
    /// let q = CoalescingQueue::<u32, String>::new(4);
    /// q.offer_key(1).unwrap();
    /// let lease = q.try_take_leased().unwrap();
    /// assert_eq!(lease.entry(), &Entry::Key(1));
    /// assert_eq!(lease.key(), Some(&1)); // through Deref
    /// assert!(lease.age() < std::time::Duration::from_secs(60));
    /// lease.ack();
    /// ```
    pub fn entry(&self) -> &EntryOf<Q> {
        self.entry.as_ref().expect("a live lease holds its entry")
    }

    /// How long ago the entry was taken.
    pub fn age(&self) -> Duration {
        self.started.elapsed()
    }

    fn end(&mut self, end: LeaseEnd) {
        if let Some(entry) = self.entry.take() {
            self.queue.queue().end_lease(entry, self.ticket, end);
        }
    }

    fn end_delayed(&mut self, due: u64) {
        if let Some(entry) = self.entry.take() {
            self.queue
                .queue()
                .end_lease_delayed(entry, self.ticket, Some(due));
        }
    }
}

impl<Q: QueueHandle> Deref for LeaseIn<Q> {
    type Target = EntryOf<Q>;

    fn deref(&self) -> &EntryOf<Q> {
        self.entry()
    }
}

impl<Q: QueueHandle> Drop for LeaseIn<Q> {
    fn drop(&mut self) {
        self.end(LeaseEnd::Nack);
    }
}

impl<Q: QueueHandle> fmt::Debug for LeaseIn<Q>
where
    Q::Key: fmt::Debug,
    Q::Item: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("entry", &self.entry)
            .field("attempt", &self.ticket.attempt)
            .field("age", &self.age())
            .finish()
    }
}
