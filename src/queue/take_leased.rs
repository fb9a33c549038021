//! The leased take forms: on `&CoalescingQueue` (giving [`Lease`] and
//! [`LeaseBatch`]) and on `Arc<CoalescingQueue>` (giving the `'static`
//! [`OwnedLease`] and [`OwnedLeaseBatch`]). Both kinds are made by the same
//! generic functions at the end of this file, over a [`QueueHandle`].

use crate::error::{TakeError, TakeTimeoutError, TryTakeError};
use crate::keys::KeyStore;
use crate::lease::batch::{LeaseBatch, LeaseBatchIn, OwnedLeaseBatch};
use crate::lease::{Lease, LeaseIn, OwnedLease, QueueHandle};
use crate::queue::take::Taken;
use crate::queue::CoalescingQueue;
use core::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
        try_lease(self)
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
        lease_until(self, None).map_err(|_| TakeError)
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
        lease_until(self, Instant::now().checked_add(timeout))
    }

    /// Takes the entry at the head with a lease, blocking until `deadline`
    /// at most. A deadline already past makes this a
    /// [`try_take_leased`](Self::try_take_leased).
    ///
    /// # Errors
    ///
    /// As [`take_timeout`](Self::take_timeout).
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, TakeTimeoutError};
    /// use std::time::Instant;
    ///
    /// let q = CoalescingQueue::<u32, String>::new(4);
    /// let err = q.take_leased_deadline(Instant::now()).unwrap_err();
    /// assert_eq!(err, TakeTimeoutError::Timeout);
    /// q.offer_key(1).unwrap();
    /// q.take_leased_deadline(Instant::now()).unwrap().ack();
    /// ```
    pub fn take_leased_deadline(
        &self,
        deadline: Instant,
    ) -> Result<Lease<'_, K, V, S>, TakeTimeoutError> {
        lease_until(self, Some(deadline))
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
        lease_async(self).await
    }

    /// As [`take_batch`](Self::take_batch), with every entry leased: waits for
    /// one entry, then gathers up to `max` for at most `linger`. The batch is
    /// empty only when the queue is closed and drained.
    ///
    /// # Panics
    ///
    /// If `max` is 0, as [`take_batch`](Self::take_batch).
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
    #[track_caller]
    pub fn take_batch_leased(&self, max: usize, linger: Duration) -> LeaseBatch<'_, K, V, S> {
        batch_until(self, max, linger, None)
    }

    /// As [`take_batch_leased`](Self::take_batch_leased), waiting at most
    /// `timeout` for the first entry. The batch is empty if nothing came in
    /// time, or (at once) if the queue is closed and drained.
    ///
    /// # Panics
    ///
    /// If `max` is 0, as [`take_batch`](Self::take_batch).
    ///
    /// ```
    /// use coalescing_queue::CoalescingQueue;
    /// use std::time::Duration;
    ///
    /// let q = CoalescingQueue::<u32, String>::new(4);
    /// let (linger, timeout) = (Duration::from_millis(1), Duration::from_millis(5));
    /// assert!(q.take_batch_leased_timeout(8, linger, timeout).is_empty());
    /// q.offer_key(1).unwrap();
    /// q.take_batch_leased_timeout(8, linger, timeout).ack();
    /// ```
    #[track_caller]
    pub fn take_batch_leased_timeout(
        &self,
        max: usize,
        linger: Duration,
        timeout: Duration,
    ) -> LeaseBatch<'_, K, V, S> {
        batch_until(self, max, linger, Instant::now().checked_add(timeout))
    }

    /// The async form of [`take_batch_leased`](Self::take_batch_leased), as
    /// [`take_batch_async`](Self::take_batch_async): at least one entry
    /// unless the queue is closed and drained.
    ///
    /// # Panics
    ///
    /// When first polled, if `max` is 0, as [`take_batch`](Self::take_batch).
    ///
    /// # Cancel safety
    ///
    /// The future holds the batch it is gathering: dropped while it
    /// lingers, it nacks every entry it holds (each is queued again at the
    /// tail, in order): nothing is lost and nothing is left claimed.
    ///
    /// ```
    /// use coalescing_queue::CoalescingQueue;
    /// use std::time::Duration;
    ///
    /// let q = CoalescingQueue::<u32, String>::new(4);
    /// q.offer_key(1).unwrap();
    /// let batch = futures_lite::future::block_on(q.take_batch_leased_async(8, Duration::ZERO));
    /// assert_eq!(batch.len(), 1);
    /// batch.ack();
    /// ```
    pub async fn take_batch_leased_async(
        &self,
        max: usize,
        linger: Duration,
    ) -> LeaseBatch<'_, K, V, S> {
        batch_async(self, max, linger).await
    }

    /// As [`try_take_leased`](Self::try_take_leased), with a lease that holds
    /// an `Arc` of the queue ([`OwnedLease`]: `'static`, so it can move into
    /// another task or thread).
    ///
    /// # Errors
    ///
    /// As [`try_take`](Self::try_take).
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, Entry};
    /// use std::sync::Arc;
    ///
    /// let q = Arc::new(CoalescingQueue::<u32, String>::new(4));
    /// q.offer_key(1).unwrap();
    /// let lease = q.try_take_leased_owned().unwrap();
    /// drop(q); // the lease keeps the queue alive
    /// assert_eq!(*lease, Entry::Key(1));
    /// lease.ack();
    /// ```
    pub fn try_take_leased_owned(self: &Arc<Self>) -> Result<OwnedLease<K, V, S>, TryTakeError> {
        try_lease(Arc::clone(self))
    }

    /// As [`take_leased`](Self::take_leased), with an [`OwnedLease`]: blocks
    /// while the queue is empty, and the lease holds an `Arc` of the queue,
    /// so it can move to another thread.
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
    /// q.offer_key(1).unwrap();
    /// let lease = q.take_leased_owned().unwrap();
    /// thread::spawn(move || {
    ///     assert_eq!(*lease, Entry::Key(1));
    ///     lease.ack();
    /// })
    /// .join()
    /// .unwrap();
    /// q.close();
    /// assert!(q.take_leased_owned().is_err()); // closed and drained
    /// ```
    pub fn take_leased_owned(self: &Arc<Self>) -> Result<OwnedLease<K, V, S>, TakeError> {
        lease_until(Arc::clone(self), None).map_err(|_| TakeError)
    }

    /// As [`take_leased_timeout`](Self::take_leased_timeout), with an
    /// [`OwnedLease`].
    ///
    /// # Errors
    ///
    /// As [`take_timeout`](Self::take_timeout).
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, TakeTimeoutError};
    /// use std::{sync::Arc, time::Duration};
    ///
    /// let q = Arc::new(CoalescingQueue::<u32, String>::new(4));
    /// let t = Duration::from_millis(1);
    /// assert_eq!(q.take_leased_owned_timeout(t).unwrap_err(), TakeTimeoutError::Timeout);
    /// q.offer_key(1).unwrap();
    /// q.take_leased_owned_timeout(t).unwrap().ack();
    /// ```
    pub fn take_leased_owned_timeout(
        self: &Arc<Self>,
        timeout: Duration,
    ) -> Result<OwnedLease<K, V, S>, TakeTimeoutError> {
        lease_until(Arc::clone(self), Instant::now().checked_add(timeout))
    }

    /// As [`take_leased_deadline`](Self::take_leased_deadline), with an
    /// [`OwnedLease`]. A deadline already past makes this a
    /// [`try_take_leased_owned`](Self::try_take_leased_owned).
    ///
    /// # Errors
    ///
    /// As [`take_timeout`](Self::take_timeout).
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, TakeTimeoutError};
    /// use std::{sync::Arc, time::Instant};
    ///
    /// let q = Arc::new(CoalescingQueue::<u32, String>::new(4));
    /// let err = q.take_leased_owned_deadline(Instant::now()).unwrap_err();
    /// assert_eq!(err, TakeTimeoutError::Timeout);
    /// q.offer_key(1).unwrap();
    /// q.take_leased_owned_deadline(Instant::now()).unwrap().ack();
    /// ```
    pub fn take_leased_owned_deadline(
        self: &Arc<Self>,
        deadline: Instant,
    ) -> Result<OwnedLease<K, V, S>, TakeTimeoutError> {
        lease_until(Arc::clone(self), Some(deadline))
    }

    /// As [`take_batch_leased`](Self::take_batch_leased), with an
    /// [`OwnedLeaseBatch`] that can move to another thread: waits for one
    /// entry, then gathers up to `max` for at most `linger`. The batch is
    /// empty only when the queue is closed and drained.
    ///
    /// # Panics
    ///
    /// If `max` is 0, as [`take_batch`](Self::take_batch).
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, Entry};
    /// use std::{sync::Arc, thread, time::Duration};
    ///
    /// let q = Arc::new(CoalescingQueue::<u32, String>::new(4));
    /// q.offer_key(1).unwrap();
    /// q.offer_key(2).unwrap();
    /// let batch = q.take_batch_leased_owned(8, Duration::ZERO);
    /// thread::spawn(move || {
    ///     assert_eq!(batch.entries(), [Entry::Key(1), Entry::Key(2)]);
    ///     batch.ack();
    /// })
    /// .join()
    /// .unwrap();
    /// q.close();
    /// assert!(q.take_batch_leased_owned(8, Duration::ZERO).is_empty());
    /// ```
    #[track_caller]
    pub fn take_batch_leased_owned(
        self: &Arc<Self>,
        max: usize,
        linger: Duration,
    ) -> OwnedLeaseBatch<K, V, S> {
        batch_until(Arc::clone(self), max, linger, None)
    }

    /// As [`take_batch_leased_timeout`](Self::take_batch_leased_timeout),
    /// with an [`OwnedLeaseBatch`]: empty if nothing came within `timeout`,
    /// or (at once) if the queue is closed and drained.
    ///
    /// # Panics
    ///
    /// If `max` is 0, as [`take_batch`](Self::take_batch).
    ///
    /// ```
    /// use coalescing_queue::CoalescingQueue;
    /// use std::{sync::Arc, time::Duration};
    ///
    /// let q = Arc::new(CoalescingQueue::<u32, String>::new(4));
    /// let (linger, timeout) = (Duration::from_millis(1), Duration::from_millis(5));
    /// assert!(q.take_batch_leased_owned_timeout(8, linger, timeout).is_empty());
    /// q.offer_key(1).unwrap();
    /// q.take_batch_leased_owned_timeout(8, linger, timeout).ack();
    /// ```
    #[track_caller]
    pub fn take_batch_leased_owned_timeout(
        self: &Arc<Self>,
        max: usize,
        linger: Duration,
        timeout: Duration,
    ) -> OwnedLeaseBatch<K, V, S> {
        batch_until(
            Arc::clone(self),
            max,
            linger,
            Instant::now().checked_add(timeout),
        )
    }

    /// As [`take_leased_async`](Self::take_leased_async), with an
    /// [`OwnedLease`]. The future holds its own `Arc` of the queue, so it is
    /// `'static` too (it can be spawned).
    ///
    /// # Errors
    ///
    /// `TakeError` only when the queue is closed and drained.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`take_async`](Self::take_async).
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, Entry};
    /// use std::sync::Arc;
    ///
    /// let q = Arc::new(CoalescingQueue::<u32, String>::new(4));
    /// q.offer_key(1).unwrap();
    /// let lease = futures_lite::future::block_on(q.take_leased_owned_async()).unwrap();
    /// assert_eq!(*lease, Entry::Key(1));
    /// lease.ack();
    /// ```
    pub fn take_leased_owned_async(
        self: &Arc<Self>,
    ) -> impl Future<Output = Result<OwnedLease<K, V, S>, TakeError>> {
        lease_async(Arc::clone(self))
    }

    /// As [`take_batch_leased_async`](Self::take_batch_leased_async), with
    /// an [`OwnedLeaseBatch`] that can move into a spawned send task. The
    /// future holds its own `Arc` of the queue, so it is `'static` too.
    ///
    /// # Panics
    ///
    /// When first polled, if `max` is 0, as [`take_batch`](Self::take_batch).
    ///
    /// # Cancel safety
    ///
    /// As [`take_batch_leased_async`](Self::take_batch_leased_async): dropped
    /// while it lingers, it nacks what it holds.
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, Entry};
    /// use std::{sync::Arc, thread, time::Duration};
    ///
    /// let q = Arc::new(CoalescingQueue::<u32, String>::new(4));
    /// q.offer_key(1).unwrap();
    /// q.offer_key(2).unwrap();
    /// let take = q.take_batch_leased_owned_async(8, Duration::from_millis(1));
    /// let batch = futures_lite::future::block_on(take);
    /// thread::spawn(move || {
    ///     assert_eq!(batch.entries(), [Entry::Key(1), Entry::Key(2)]);
    ///     batch.ack();
    /// })
    /// .join()
    /// .unwrap();
    /// assert_eq!(q.in_flight(), 0);
    /// ```
    pub fn take_batch_leased_owned_async(
        self: &Arc<Self>,
        max: usize,
        linger: Duration,
    ) -> impl Future<Output = OwnedLeaseBatch<K, V, S>> {
        batch_async(Arc::clone(self), max, linger)
    }
}

// ----- the one core of the borrowed and the owned forms -----

fn try_lease<Q: QueueHandle>(handle: Q) -> Result<LeaseIn<Q>, TryTakeError> {
    let queue = handle.queue();
    let start = queue.lease_start();
    let (entry, ticket) = queue.attempt_take(Some(start))?;
    Ok(LeaseIn::new(handle, entry, ticket, Some(start)))
}

fn lease_until<Q: QueueHandle>(
    handle: Q,
    deadline: Option<Instant>,
) -> Result<LeaseIn<Q>, TakeTimeoutError> {
    let taken = handle.queue().take_blocking(true, deadline)?;
    Ok(lease_of(handle, taken))
}

async fn lease_async<Q: QueueHandle>(handle: Q) -> Result<LeaseIn<Q>, TakeError> {
    let taken = handle.queue().take_waiting(true).await?;
    Ok(lease_of(handle, taken))
}

fn lease_of<Q: QueueHandle>(
    handle: Q,
    (entry, ticket, start): Taken<Q::Key, Q::Item>,
) -> LeaseIn<Q> {
    LeaseIn::new(handle, entry, ticket, start)
}

#[track_caller]
fn batch_until<Q: QueueHandle>(
    handle: Q,
    max: usize,
    linger: Duration,
    first_by: Option<Instant>,
) -> LeaseBatchIn<Q> {
    let mut batch = LeaseBatchIn::empty(handle);
    let LeaseBatchIn {
        queue,
        entries,
        tickets,
        started,
    } = &mut batch;
    let (_, start) = queue
        .queue()
        .gather(entries, Some(tickets), max, linger, first_by);
    if let Some(start) = start {
        *started = start.at;
    }
    batch
}

/// The batch is built inside the future: dropped while it lingers, the
/// future drops the batch, which nacks every entry in it.
async fn batch_async<Q: QueueHandle>(handle: Q, max: usize, linger: Duration) -> LeaseBatchIn<Q> {
    let mut batch = LeaseBatchIn::empty(handle);
    let LeaseBatchIn {
        queue,
        entries,
        tickets,
        started,
    } = &mut batch;
    let (_, start) = queue
        .queue()
        .gather_async(entries, Some(tickets), max, linger)
        .await;
    if let Some(start) = start {
        *started = start.at;
    }
    batch
}
