//! `Stream`s of takes (the `stream` feature): [`TakeStream`] of entries,
//! [`LeaseStream`] of owned leases and [`LeasedBatchStream`] of owned
//! leased batches, each over an `Arc` of the queue.
//!
//! Each holds at most one pending take future, the crate's own async take
//! (`take_async`, `take_leased_owned_async`,
//! `take_batch_leased_owned_async`), boxed: the wait loop is the one the
//! loom models check, not a second copy of it. A stream ends (`None`, and
//! `None` ever after) when its take reports the queue closed and drained.
//!
//! A stream keeps its pending take between polls, not its `next()` future:
//! dropping a `next()` future (a `select!` arm that lost, a timeout) leaves
//! the take, with its registered listener, in the stream. Such a stream
//! holds its place among the queue's waiters, and any batch it is
//! gathering, until it is polled again or dropped: a wake-up an offer gave
//! it stays with it (another waiting taker is not woken for that entry),
//! and a [`LeasedBatchStream`]'s lingering batch stays in flight. Dropping
//! the stream drops its take, which passes a wake-up it had received on to
//! another waiter (as a dropped `take_async` does) and nacks a batch it was
//! gathering. So drop a stream you stop polling.
//!
//! The streams are `Send` and `'static` when the queue is `Send + Sync`, so
//! they can be spawned; they are not `Sync` (nothing needs to share one).

use crate::entry::Entry;
use crate::keys::KeyStore;
use crate::lease::batch::OwnedLeaseBatch;
use crate::lease::OwnedLease;
use crate::queue::{CoalescingQueue, DefaultHashBuilder};
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use futures_core::stream::{FusedStream, Stream};
use std::sync::Arc;
use std::time::Duration;

/// The pending take of a stream: `None` from it ends the stream.
type Pending<T> = Pin<Box<dyn Future<Output = Option<T>> + Send>>;

/// The state all three streams share: the queue, and the take under way.
struct Takes<K, V, S: KeyStore<K>, T> {
    queue: Arc<CoalescingQueue<K, V, S>>,
    pending: Option<Pending<T>>,
    ended: bool,
}

impl<K, V, S: KeyStore<K>, T> Takes<K, V, S, T> {
    fn new(queue: &Arc<CoalescingQueue<K, V, S>>) -> Self {
        Self {
            queue: Arc::clone(queue),
            pending: None,
            ended: false,
        }
    }

    /// Polls the take under way, starting one with `start` if there is none.
    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        start: impl FnOnce(Arc<CoalescingQueue<K, V, S>>) -> Pending<T>,
    ) -> Poll<Option<T>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let queue = &self.queue;
        let pending = self.pending.get_or_insert_with(|| start(Arc::clone(queue)));
        let next = match pending.as_mut().poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(next) => next,
        };
        self.pending = None;
        self.ended = next.is_none();
        Poll::Ready(next)
    }
}

impl<K, V, S: KeyStore<K>, T> fmt::Debug for Takes<K, V, S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("queue", &self.queue)
            .field("taking", &self.pending.is_some())
            .field("ended", &self.ended)
            .finish()
    }
}

/// A [`Stream`] of the entries taken from a queue, in FIFO order: each item
/// is what [`take_async`](CoalescingQueue::take_async) returns. Made by
/// [`CoalescingQueue::take_stream`] (feature `stream`).
///
/// It ends when the queue is closed and drained (nothing queued or on its
/// way in, no lease out), and stays ended. No entry is lost when the
/// stream, or a `next()` future of it, is dropped while it waits (an entry
/// is taken only in the poll that returns it). But a dropped `next()`
/// future leaves the stream's take registered: a stream kept unpolled
/// holds its place among the waiters, and a wake-up it was given, until it
/// is polled again or dropped (dropping it passes the wake-up on; see the
/// [crate docs](crate#streams)). Drop a stream you stop polling. Each take boxes
/// its future: one small allocation per item.
///
/// ```
/// use coalescing_queue::{CoalescingQueue, Entry};
/// use futures_lite::StreamExt;
/// use std::sync::Arc;
///
/// let q = Arc::new(CoalescingQueue::<u32, String>::new(8));
/// q.offer_key(1).unwrap();
/// q.offer("item".to_string()).unwrap();
/// q.close();
/// let taken: Vec<_> = futures_lite::future::block_on(q.take_stream().collect());
/// assert_eq!(taken, [Entry::Key(1), Entry::Item("item".to_string())]);
/// ```
#[must_use = "a stream takes nothing unless it is polled"]
pub struct TakeStream<K, V, S = DefaultHashBuilder>
where
    S: KeyStore<K>,
{
    takes: Takes<K, V, S, Entry<K, V>>,
}

/// A [`Stream`] of owned leases, one entry each: each item is what
/// [`take_leased_owned_async`](CoalescingQueue::take_leased_owned_async)
/// returns. Made by [`CoalescingQueue::lease_stream`] (feature `stream`).
///
/// It ends when the queue is closed and drained, and stays ended; after
/// close it waits while a lease is out (its nack may bring the entry back),
/// so a task that holds a lease of this stream ends it before polling the
/// stream again. Loses nothing when dropped, as `take_leased_owned_async`;
/// kept unpolled after a dropped `next()`, it holds its place among the
/// waiters as [`TakeStream`] does, until polled again or dropped. One small
/// allocation per item.
///
/// ```
/// use coalescing_queue::{CoalescingQueue, Entry};
/// use futures_lite::StreamExt;
/// use std::sync::Arc;
///
/// let q = Arc::new(CoalescingQueue::<u32, String>::new(8));
/// q.offer_key(1).unwrap();
/// q.close();
/// futures_lite::future::block_on(async {
///     let mut leases = q.lease_stream();
///     let lease = leases.next().await.unwrap();
///     assert_eq!(*lease, Entry::Key(1));
///     lease.nack(); // queued again, and taken again
///     leases.next().await.unwrap().ack();
///     assert!(leases.next().await.is_none()); // closed and drained
/// });
/// ```
#[must_use = "a stream takes nothing unless it is polled"]
pub struct LeaseStream<K, V, S = DefaultHashBuilder>
where
    S: KeyStore<K>,
{
    takes: Takes<K, V, S, OwnedLease<K, V, S>>,
}

/// A [`Stream`] of owned leased batches: each item is what
/// [`take_batch_leased_owned_async`](CoalescingQueue::take_batch_leased_owned_async)
/// returns with the stream's `max` and `linger`, never empty. Made by
/// [`CoalescingQueue::leased_batch_stream`] (feature `stream`).
///
/// It ends when the queue is closed and drained (where the batch take
/// returns an empty batch), and stays ended; a batch still held keeps it
/// waiting, as for [`LeaseStream`]. The batch being gathered lives in the
/// stream, not in its `next()` future: a dropped `next()` future leaves it
/// there, and a stream kept unpolled keeps that batch's entries in flight
/// (its linger ends only at the next poll) and its place among the
/// waiters. Dropping the stream nacks what the batch held. Drop a stream
/// you stop polling. One small allocation per batch.
///
/// ```
/// use coalescing_queue::{CoalescingQueue, Entry};
/// use futures_lite::StreamExt;
/// use std::{sync::Arc, time::Duration};
///
/// let q = Arc::new(CoalescingQueue::<u32, String>::new(8));
/// for key in 1..=3 {
///     q.offer_key(key).unwrap();
/// }
/// q.close();
/// futures_lite::future::block_on(async {
///     let mut batches = q.leased_batch_stream(2, Duration::from_millis(1));
///     let first = batches.next().await.unwrap();
///     assert_eq!(first.entries(), [Entry::Key(1), Entry::Key(2)]);
///     first.ack();
///     batches.next().await.unwrap().ack();
///     assert!(batches.next().await.is_none());
/// });
/// ```
#[must_use = "a stream takes nothing unless it is polled"]
pub struct LeasedBatchStream<K, V, S = DefaultHashBuilder>
where
    S: KeyStore<K>,
{
    takes: Takes<K, V, S, OwnedLeaseBatch<K, V, S>>,
    max: usize,
    linger: Duration,
}

impl<K, V, S> CoalescingQueue<K, V, S>
where
    S: KeyStore<K>,
{
    /// A [`TakeStream`] of this queue's entries (feature `stream`).
    ///
    /// ```
    /// use coalescing_queue::CoalescingQueue;
    /// use futures_lite::StreamExt;
    /// use std::sync::Arc;
    ///
    /// let q = Arc::new(CoalescingQueue::<u32, String>::new(8));
    /// q.offer_key(1).unwrap();
    /// q.close();
    /// assert_eq!(futures_lite::future::block_on(q.take_stream().count()), 1);
    /// ```
    pub fn take_stream(self: &Arc<Self>) -> TakeStream<K, V, S> {
        TakeStream {
            takes: Takes::new(self),
        }
    }

    /// A [`LeaseStream`] of owned leases from this queue (feature `stream`).
    ///
    /// ```
    /// use coalescing_queue::CoalescingQueue;
    /// use futures_lite::StreamExt;
    /// use std::sync::Arc;
    ///
    /// let q = Arc::new(CoalescingQueue::<u32, String>::new(8));
    /// q.offer_key(1).unwrap();
    /// let lease = futures_lite::future::block_on(q.lease_stream().next()).unwrap();
    /// assert_eq!(q.in_flight(), 1);
    /// lease.ack();
    /// ```
    pub fn lease_stream(self: &Arc<Self>) -> LeaseStream<K, V, S> {
        LeaseStream {
            takes: Takes::new(self),
        }
    }

    /// A [`LeasedBatchStream`] of owned leased batches from this queue, each
    /// of at most `max` entries gathered for at most `linger` (feature
    /// `stream`).
    ///
    /// # Panics
    ///
    /// If `max` is 0, as [`take_batch`](Self::take_batch).
    ///
    /// ```
    /// use coalescing_queue::CoalescingQueue;
    /// use futures_lite::StreamExt;
    /// use std::{sync::Arc, time::Duration};
    ///
    /// let q = Arc::new(CoalescingQueue::<u32, String>::new(8));
    /// q.offer_key(1).unwrap();
    /// let mut batches = q.leased_batch_stream(16, Duration::ZERO);
    /// let batch = futures_lite::future::block_on(batches.next()).unwrap();
    /// assert_eq!(batch.len(), 1);
    /// batch.ack();
    /// ```
    #[track_caller]
    pub fn leased_batch_stream(
        self: &Arc<Self>,
        max: usize,
        linger: Duration,
    ) -> LeasedBatchStream<K, V, S> {
        assert!(
            max > 0,
            "a batch take's max must be at least 1 (0 entries is what a closed and drained queue returns)"
        );
        LeasedBatchStream {
            takes: Takes::new(self),
            max,
            linger,
        }
    }
}

impl<K, V, S> Stream for TakeStream<K, V, S>
where
    K: Send + 'static,
    V: Send + 'static,
    S: KeyStore<K> + Send + Sync + 'static,
    CoalescingQueue<K, V, S>: Send + Sync,
{
    type Item = Entry<K, V>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().takes.poll_next(cx, |queue| {
            Box::pin(async move { queue.take_async().await.ok() })
        })
    }
}

impl<K, V, S> Stream for LeaseStream<K, V, S>
where
    K: Send + 'static,
    V: Send + 'static,
    S: KeyStore<K> + Send + Sync + 'static,
    CoalescingQueue<K, V, S>: Send + Sync,
{
    type Item = OwnedLease<K, V, S>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().takes.poll_next(cx, |queue| {
            Box::pin(async move { queue.take_leased_owned_async().await.ok() })
        })
    }
}

impl<K, V, S> Stream for LeasedBatchStream<K, V, S>
where
    K: Send + 'static,
    V: Send + 'static,
    S: KeyStore<K> + Send + Sync + 'static,
    CoalescingQueue<K, V, S>: Send + Sync,
{
    type Item = OwnedLeaseBatch<K, V, S>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let (max, linger) = (this.max, this.linger);
        this.takes.poll_next(cx, move |queue| {
            Box::pin(async move {
                let batch = queue.take_batch_leased_owned_async(max, linger).await;
                (!batch.is_empty()).then_some(batch)
            })
        })
    }
}

/// A stream ends for good once it has returned `None` (`ended`).
macro_rules! fused {
    ($($stream:ident),+) => {$(
        impl<K, V, S> FusedStream for $stream<K, V, S>
        where
            K: Send + 'static,
            V: Send + 'static,
            S: KeyStore<K> + Send + Sync + 'static,
            CoalescingQueue<K, V, S>: Send + Sync,
        {
            fn is_terminated(&self) -> bool {
                self.takes.ended
            }
        }
    )+};
}
fused!(TakeStream, LeaseStream, LeasedBatchStream);

impl<K, V, S: KeyStore<K>> fmt::Debug for TakeStream<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TakeStream").field(&self.takes).finish()
    }
}

impl<K, V, S: KeyStore<K>> fmt::Debug for LeaseStream<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LeaseStream").field(&self.takes).finish()
    }
}

impl<K, V, S: KeyStore<K>> fmt::Debug for LeasedBatchStream<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeasedBatchStream")
            .field("takes", &self.takes)
            .field("max", &self.max)
            .field("linger", &self.linger)
            .finish()
    }
}
