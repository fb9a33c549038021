//! Leases: entries taken but not yet acknowledged, which keep their key
//! deduplicated (and their slot claimed) until the caller says how the
//! delivery went.
//!
//! A lease ends exactly once: `ack` (delivered), `nack` (queue it again at
//! the tail), or drop, which is a nack: a forgotten lease never loses an
//! entry and never pins a key.

use crate::entry::Entry;
use crate::error::{TakeError, TakeTimeoutError, TryTakeError};
use crate::key_store::KeyStore;
use crate::queue::{CoalescingQueue, DefaultHasher, LeaseEnd, LeaseStart};
use core::fmt;
use core::ops::Deref;
use std::time::{Duration, Instant};

/// An entry taken with a lease: its key stays pending (an offer of it is
/// coalesced, see [`InFlightPolicy`](crate::InFlightPolicy)) and its slot stays
/// claimed until [`ack`](Lease::ack) or [`nack`](Lease::nack). Dropping it
/// is a nack.
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
pub struct Lease<'q, K, V, S = DefaultHasher>
where
    S: KeyStore<K>,
{
    queue: &'q CoalescingQueue<K, V, S>,
    /// `None` once the lease has ended.
    entry: Option<Entry<K, V>>,
    /// Where the lease ends: the key's entry, or the item's start record.
    index: u32,
    started: Instant,
}

impl<'q, K, V, S> Lease<'q, K, V, S>
where
    S: KeyStore<K>,
{
    fn new(
        queue: &'q CoalescingQueue<K, V, S>,
        (entry, index): (Entry<K, V>, u32),
        start: Option<LeaseStart>,
    ) -> Self {
        Self {
            queue,
            entry: Some(entry),
            index,
            started: start.map_or_else(Instant::now, |start| start.at),
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
    pub fn entry(&self) -> &Entry<K, V> {
        self.entry.as_ref().expect("a live lease holds its entry")
    }

    /// How long ago the entry was taken.
    pub fn age(&self) -> Duration {
        self.started.elapsed()
    }

    fn end(&mut self, end: LeaseEnd) {
        if let Some(entry) = self.entry.take() {
            self.queue.end_lease(entry, self.index, end);
        }
    }
}

impl<K, V, S> Deref for Lease<'_, K, V, S>
where
    S: KeyStore<K>,
{
    type Target = Entry<K, V>;

    fn deref(&self) -> &Entry<K, V> {
        self.entry()
    }
}

impl<K, V, S> Drop for Lease<'_, K, V, S>
where
    S: KeyStore<K>,
{
    fn drop(&mut self) {
        // MUTANT: drop_forgets_lease: a dropped lease does nothing, pinning
        // its key and its slot for ever (breaks G1, G6).
        #[cfg(not(coalescing_mutant = "drop_forgets_lease"))]
        self.end(LeaseEnd::Nack);
    }
}

impl<K, V, S> fmt::Debug for Lease<'_, K, V, S>
where
    K: fmt::Debug,
    V: fmt::Debug,
    S: KeyStore<K>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("entry", &self.entry)
            .field("age", &self.age())
            .finish()
    }
}

/// Entries taken together with one lease each, ended together with
/// [`ack`](LeaseBatch::ack) or [`nack`](LeaseBatch::nack), or one by one
/// after [`into_leases`](LeaseBatch::into_leases). Dropping it nacks every
/// entry still in it, in order.
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
pub struct LeaseBatch<'q, K, V, S = DefaultHasher>
where
    S: KeyStore<K>,
{
    queue: &'q CoalescingQueue<K, V, S>,
    entries: Vec<Entry<K, V>>,
    /// `indexes[i]`: where the lease of `entries[i]` ends.
    indexes: Vec<u32>,
    started: Instant,
}

impl<'q, K, V, S> LeaseBatch<'q, K, V, S>
where
    S: KeyStore<K>,
{
    /// The number of entries leased.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `true` only when the queue was closed and drained.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The leased entries, in the order they were taken.
    pub fn iter(&self) -> core::slice::Iter<'_, Entry<K, V>> {
        self.entries.iter()
    }

    /// The leased entries, in the order they were taken.
    pub fn entries(&self) -> &[Entry<K, V>] {
        &self.entries
    }

    /// How long ago the batch was taken.
    pub fn age(&self) -> Duration {
        self.started.elapsed()
    }

    /// Every entry was delivered; see [`Lease::ack`].
    pub fn ack(mut self) {
        self.end_all(LeaseEnd::Ack);
    }

    /// No entry was delivered: all are queued again, in order; see
    /// [`Lease::nack`].
    pub fn nack(mut self) {
        self.end_all(LeaseEnd::Nack);
    }

    /// Splits the batch into one lease per entry, to end them one by one
    /// (say, when a transport reports a result per entry).
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
    pub fn into_leases(mut self) -> Vec<Lease<'q, K, V, S>> {
        let entries = core::mem::take(&mut self.entries);
        let indexes = core::mem::take(&mut self.indexes);
        entries
            .into_iter()
            .zip(indexes)
            .map(|(entry, index)| Lease {
                queue: self.queue,
                entry: Some(entry),
                index,
                started: self.started,
            })
            .collect()
    }

    fn end_all(&mut self, end: LeaseEnd) {
        for (entry, index) in self.entries.drain(..).zip(self.indexes.drain(..)) {
            self.queue.end_lease(entry, index, end);
        }
    }
}

impl<'a, K, V, S> IntoIterator for &'a LeaseBatch<'_, K, V, S>
where
    S: KeyStore<K>,
{
    type Item = &'a Entry<K, V>;
    type IntoIter = core::slice::Iter<'a, Entry<K, V>>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}

impl<K, V, S> Drop for LeaseBatch<'_, K, V, S>
where
    S: KeyStore<K>,
{
    fn drop(&mut self) {
        self.end_all(LeaseEnd::Nack);
    }
}

impl<K, V, S> fmt::Debug for LeaseBatch<'_, K, V, S>
where
    K: fmt::Debug,
    V: fmt::Debug,
    S: KeyStore<K>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseBatch")
            .field("entries", &self.entries)
            .field("age", &self.age())
            .finish()
    }
}

impl<K, V, S> CoalescingQueue<K, V, S>
where
    S: KeyStore<K>,
{
    /// Takes the entry at the head with a lease, without blocking.
    ///
    /// # Errors
    ///
    /// As [`try_take`](Self::try_take).
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, Entry, TryTakeError};
    ///
    /// let q = CoalescingQueue::<u32, String>::new(4);
    /// assert_eq!(q.try_take_leased().unwrap_err(), TryTakeError::Empty);
    /// q.offer_key(1).unwrap();
    /// let lease = q.try_take_leased().unwrap();
    /// assert_eq!(*lease, Entry::Key(1));
    /// lease.ack();
    /// ```
    pub fn try_take_leased(&self) -> Result<Lease<'_, K, V, S>, TryTakeError> {
        let start = self.lease_start();
        self.attempt_take(Some(start))
            .map(|taken| Lease::new(self, taken, Some(start)))
    }

    /// Takes the entry at the head with a lease, blocking while empty.
    ///
    /// # Errors
    ///
    /// `TakeError` only when the queue is closed and drained.
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, Entry};
    ///
    /// let q = CoalescingQueue::<u32, String>::new(4);
    /// q.offer_key(1).unwrap();
    /// let lease = q.take_leased().unwrap();
    /// assert_eq!(*lease, Entry::Key(1));
    /// drop(lease); // a nack: queued again
    /// assert_eq!(q.len(), 1);
    /// ```
    pub fn take_leased(&self) -> Result<Lease<'_, K, V, S>, TakeError> {
        match self.take_blocking(true, None) {
            Ok((entry, index, start)) => Ok(Lease::new(self, (entry, index), start)),
            Err(_) => Err(TakeError),
        }
    }

    /// Takes the entry at the head with a lease, blocking for at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`take_timeout`](Self::take_timeout).
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, TakeTimeoutError};
    /// use std::time::Duration;
    ///
    /// let q = CoalescingQueue::<u32, String>::new(4);
    /// let err = q.take_leased_timeout(Duration::from_millis(1)).unwrap_err();
    /// assert_eq!(err, TakeTimeoutError::Timeout);
    /// ```
    pub fn take_leased_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Lease<'_, K, V, S>, TakeTimeoutError> {
        self.take_blocking(true, Instant::now().checked_add(timeout))
            .map(|(entry, index, start)| Lease::new(self, (entry, index), start))
    }

    /// Takes the entry at the head with a lease, waiting asynchronously.
    ///
    /// # Errors
    ///
    /// `TakeError` only when the queue is closed and drained.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`take_async`](Self::take_async): the lease is made in
    /// the poll that returns it.
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, Entry};
    ///
    /// let q = CoalescingQueue::<u32, String>::new(4);
    /// q.offer_key(1).unwrap();
    /// let lease = futures_lite::future::block_on(q.take_leased_async()).unwrap();
    /// assert_eq!(*lease, Entry::Key(1));
    /// lease.ack();
    /// ```
    pub async fn take_leased_async(&self) -> Result<Lease<'_, K, V, S>, TakeError> {
        let (entry, index, start) = self.take_waiting(true).await?;
        Ok(Lease::new(self, (entry, index), start))
    }

    /// As [`take_batch`](Self::take_batch), with every entry leased: waits for
    /// one entry, then gathers up to `max` for at most `linger`. The batch is
    /// empty only when the queue is closed and drained (or `max` is 0).
    ///
    /// ```
    /// use coalescing_queue::CoalescingQueue;
    /// use std::time::Duration;
    ///
    /// let q = CoalescingQueue::<u32, String>::new(4);
    /// q.offer_key(1).unwrap();
    /// q.offer("status".to_string()).unwrap();
    /// let batch = q.take_batch_leased(8, Duration::ZERO);
    /// assert_eq!(batch.len(), 2);
    /// batch.ack();
    /// q.close();
    /// assert!(q.take_batch_leased(8, Duration::ZERO).is_empty());
    /// ```
    pub fn take_batch_leased(&self, max: usize, linger: Duration) -> LeaseBatch<'_, K, V, S> {
        let mut entries = Vec::new();
        let mut indexes = Vec::new();
        let (_, started) = self.gather(&mut entries, Some(&mut indexes), max, linger);
        LeaseBatch {
            queue: self,
            entries,
            indexes,
            started: started.map_or_else(Instant::now, |start| start.at),
        }
    }
}
