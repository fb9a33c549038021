//! The take forms: try, blocking, timeout, async and batch.
//!
//! Each loops around `attempt_take` from `queue.rs`; the leased forms in
//! `lease.rs` use the same loops with `leased = true`.

use crate::entry::Entry;
use crate::error::{TakeError, TakeTimeoutError, TryTakeError};
use crate::key_store::KeyStore;
use crate::queue::{CoalescingQueue, LeaseStart};
use crate::wait::{self, Step};
use std::time::{Duration, Instant};

/// A take's result: the entry, the index its lease ends by (leased takes),
/// and when the lease started (leased takes only).
pub(crate) type Taken<K, V> = (Entry<K, V>, u32, Option<LeaseStart>);

impl<K, V, S> CoalescingQueue<K, V, S>
where
    S: KeyStore<K>,
{
    /// Takes the entry at the head without blocking.
    ///
    /// A key stops being pending as it is taken: an offer of it from then on
    /// queues a new copy.
    ///
    /// # Errors
    ///
    /// `Empty` if nothing is queued; `Closed` if the queue is closed and
    /// nothing is queued or on its way in.
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, Entry, TryTakeError};
    ///
    /// let q = CoalescingQueue::<u32, String>::new(4);
    /// assert_eq!(q.try_take(), Err(TryTakeError::Empty));
    /// q.offer_key(1).unwrap();
    /// assert_eq!(q.try_take(), Ok(Entry::Key(1)));
    /// q.close();
    /// assert_eq!(q.try_take(), Err(TryTakeError::Closed));
    /// ```
    pub fn try_take(&self) -> Result<Entry<K, V>, TryTakeError> {
        self.attempt_take(None).map(|(entry, _)| entry)
    }

    /// Takes the entry at the head, blocking while the queue is empty.
    ///
    /// # Errors
    ///
    /// `TakeError` only when the queue is closed and drained.
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, Entry};
    /// use std::{sync::Arc, thread};
    ///
    /// let q = Arc::new(CoalescingQueue::<u32, String>::new(4));
    /// let offerer = { let q = q.clone(); thread::spawn(move || q.offer_key(9).unwrap()) };
    /// assert_eq!(q.take(), Ok(Entry::Key(9)));
    /// offerer.join().unwrap();
    /// ```
    pub fn take(&self) -> Result<Entry<K, V>, TakeError> {
        match self.take_blocking(false, None) {
            Ok((entry, ..)) => Ok(entry),
            Err(_) => Err(TakeError),
        }
    }

    /// Takes the entry at the head, blocking for at most `timeout`.
    ///
    /// # Errors
    ///
    /// `Timeout` if nothing arrived in time; `Closed` if the queue is closed
    /// and drained.
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, TakeTimeoutError};
    /// use std::time::Duration;
    ///
    /// let q = CoalescingQueue::<u32, String>::new(4);
    /// let t = Duration::from_millis(5);
    /// assert_eq!(q.take_timeout(t), Err(TakeTimeoutError::Timeout));
    /// q.offer_key(1).unwrap();
    /// assert!(q.take_timeout(t).is_ok());
    /// ```
    pub fn take_timeout(&self, timeout: Duration) -> Result<Entry<K, V>, TakeTimeoutError> {
        self.take_blocking(false, Instant::now().checked_add(timeout))
            .map(|(entry, ..)| entry)
    }

    /// Takes the entry at the head, waiting asynchronously while empty.
    ///
    /// # Errors
    ///
    /// `TakeError` only when the queue is closed and drained.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: an entry is popped only in the poll that returns it, so
    /// dropping the future never loses one, and a wake-up it had received is
    /// passed on to another waiter.
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, Entry};
    ///
    /// let q = CoalescingQueue::<u32, String>::new(4);
    /// q.offer_key(3).unwrap();
    /// assert_eq!(futures_lite::future::block_on(q.take_async()), Ok(Entry::Key(3)));
    /// ```
    pub async fn take_async(&self) -> Result<Entry<K, V>, TakeError> {
        self.take_waiting(false).await.map(|(entry, ..)| entry)
    }

    /// Waits for one entry, then gathers more until `max` entries or until
    /// `linger` has passed since the first; appends them to `out` in FIFO
    /// order and returns how many it appended.
    ///
    /// Returns 0 only when the queue is closed and drained (or `max` is 0).
    /// Every entry it took is in `out` when it returns: nothing is dropped.
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, Entry};
    /// use std::time::Duration;
    ///
    /// let q = CoalescingQueue::<u32, String>::new(8);
    /// for key in [1, 2, 1, 3] {
    ///     q.offer_key(key).unwrap();
    /// }
    /// let mut batch = Vec::new();
    /// assert_eq!(q.take_batch(&mut batch, 2, Duration::ZERO), 2);
    /// assert_eq!(q.take_batch(&mut batch, 10, Duration::from_millis(1)), 1);
    /// assert_eq!(batch, [Entry::Key(1), Entry::Key(2), Entry::Key(3)]);
    /// q.close();
    /// assert_eq!(q.take_batch(&mut batch, 10, Duration::ZERO), 0);
    /// ```
    pub fn take_batch(&self, out: &mut Vec<Entry<K, V>>, max: usize, linger: Duration) -> usize {
        self.gather(out, None, max, linger).0
    }

    // ----- shared loops, also used by the leased forms -----

    pub(crate) fn take_blocking(
        &self,
        leased: bool,
        deadline: Option<Instant>,
    ) -> Result<Taken<K, V>, TakeTimeoutError> {
        match wait::block_on(&self.not_empty, deadline, (), |()| self.take_step(leased)) {
            Ok(Ok(taken)) => Ok(taken),
            Ok(Err(TakeError)) => Err(TakeTimeoutError::Closed),
            Err(()) => Err(TakeTimeoutError::Timeout),
        }
    }

    pub(crate) async fn take_waiting(&self, leased: bool) -> Result<Taken<K, V>, TakeError> {
        wait::wait_async(&self.not_empty, (), |()| self.take_step(leased)).await
    }

    fn take_step(&self, leased: bool) -> Step<(), Result<Taken<K, V>, TakeError>> {
        let lease = leased.then(|| self.lease_start());
        match self.attempt_take(lease) {
            Ok((entry, index)) => Step::Done(Ok((entry, index, lease))),
            Err(TryTakeError::Closed) => Step::Done(Err(TakeError)),
            Err(TryTakeError::Empty) => Step::Retry(()),
        }
    }

    /// The batch take: waits for one entry, then gathers up to `max` for
    /// at most `linger`, appending to `out` (and, for a leased batch, the
    /// leases' indexes to `indexes`). Returns how many, and when the
    /// batch's lease started.
    pub(crate) fn gather(
        &self,
        out: &mut Vec<Entry<K, V>>,
        mut indexes: Option<&mut Vec<u32>>,
        max: usize,
        linger: Duration,
    ) -> (usize, Option<LeaseStart>) {
        if max == 0 {
            return (0, None);
        }
        let leased = indexes.is_some();
        let Ok((first, index, start)) = self.take_blocking(leased, None) else {
            return (0, None);
        };
        // Bounded by the capacity so that a huge `max` cannot over-allocate.
        let room = max.min(self.capacity());
        out.reserve(room);
        out.push(first);
        if let Some(indexes) = indexes.as_deref_mut() {
            indexes.reserve(room);
            indexes.push(index);
        }
        let deadline = Instant::now().checked_add(linger);
        let mut taken = 1;
        while taken < max {
            // Whatever is queued now, in one step; then wait for more.
            match self.attempt_take_many(start, max - taken, out, indexes.as_deref_mut()) {
                Ok(more) => taken += more,
                Err(TryTakeError::Closed) => break,
                Err(TryTakeError::Empty) if linger.is_zero() => break,
                Err(TryTakeError::Empty) => match self.take_blocking(leased, deadline) {
                    Ok((entry, index, _)) => {
                        out.push(entry);
                        if let Some(indexes) = indexes.as_deref_mut() {
                            indexes.push(index);
                        }
                        taken += 1;
                    }
                    Err(_) => break,
                },
            }
        }
        (taken, start)
    }
}
