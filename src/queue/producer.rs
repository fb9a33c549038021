//! Producer handles: the queue closes when the last one is dropped, as a
//! channel closes when its last sender goes.

use crate::keys::KeyStore;
use crate::queue::{CoalescingQueue, DefaultHashBuilder};
use crate::sync::Ordering;
use core::fmt;
use core::ops::Deref;
use std::sync::Arc;

/// A handle for offering into a shared queue that closes the queue when
/// the last `Producer` of it is dropped: "every producer is gone" then
/// ends the sender's takes (they drain what is queued and report `Closed`)
/// instead of leaving them blocked for ever. Made by
/// [`CoalescingQueue::producer`]; `Clone` makes another producer of the same
/// queue. Derefs to the queue, so every offer form is there.
///
/// Closing by the last producer is [`close`](CoalescingQueue::close)
/// except that it does not abandon a running
/// [`close_and_wait`](CoalescingQueue::close_and_wait). Producers made
/// after the last one was dropped offer into a closed queue. So:
///
/// * Keep each producer for as long as it produces: a temporary one
///   (`q.producer().offer_key(k)`), if no other producer lives, is the
///   last, and closes the queue at the end of that statement.
/// * Make every producer before any can be dropped: clone them from one
///   made before the threads start, and drop that one once they are
///   started (as below). Threads that each call `q.producer()` for
///   themselves race: one that finishes and drops its producer before the
///   next has made its own closes the queue, and the late thread's offers
///   fail with `Closed`.
///
/// ```
/// use coalescing_queue::CoalescingQueue;
/// use std::sync::Arc;
///
/// let q = Arc::new(CoalescingQueue::<u32, String>::new(4));
/// q.producer().offer_key(1).unwrap(); // a temporary: the last producer
/// assert!(q.is_closed()); // closed at the end of that statement
/// assert!(q.producer().offer_key(2).is_err());
/// ```
///
/// ```
/// use coalescing_queue::CoalescingQueue;
/// use std::{sync::Arc, thread};
///
/// let q = Arc::new(CoalescingQueue::<u32, String>::new(64));
/// let producer = q.producer();
/// let workers: Vec<_> = (0..4)
///     .map(|w| {
///         let producer = producer.clone();
///         thread::spawn(move || {
///             for key in 0..8 {
///                 producer.offer_key(w * 8 + key).unwrap();
///             }
///         })
///     })
///     .collect();
/// drop(producer);
/// let mut taken = 0;
/// while q.take().is_ok() {
///     taken += 1; // ends once every worker is done: no close() needed
/// }
/// assert_eq!(taken, 32);
/// # for worker in workers { worker.join().unwrap(); }
/// ```
pub struct Producer<K, V, S = DefaultHashBuilder>
where
    S: KeyStore<K>,
{
    queue: Arc<CoalescingQueue<K, V, S>>,
}

impl<K, V, S> CoalescingQueue<K, V, S>
where
    S: KeyStore<K>,
{
    /// A new [`Producer`] of this queue: when the last producer is
    /// dropped, the queue closes.
    ///
    /// ```
    /// use coalescing_queue::CoalescingQueue;
    /// use std::sync::Arc;
    ///
    /// let q = Arc::new(CoalescingQueue::<u32, String>::new(4));
    /// let producer = q.producer();
    /// producer.offer_key(1).unwrap();
    /// drop(producer);
    /// assert!(q.is_closed());
    /// assert!(q.take().is_ok()); // what was offered is still taken
    /// ```
    pub fn producer(self: &Arc<Self>) -> Producer<K, V, S> {
        // Relaxed: a count, as `Arc`'s; the close orders itself.
        self.producers.fetch_add(1, Ordering::Relaxed);
        Producer {
            queue: Arc::clone(self),
        }
    }
}

impl<K, V, S> Clone for Producer<K, V, S>
where
    S: KeyStore<K>,
{
    fn clone(&self) -> Self {
        self.queue.producer()
    }
}

impl<K, V, S> Drop for Producer<K, V, S>
where
    S: KeyStore<K>,
{
    fn drop(&mut self) {
        // AcqRel: the last producer's close comes after every other
        // producer's offers (each released its offers with its decrement).
        if self.queue.producers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.queue.close_only();
        }
    }
}

impl<K, V, S> Deref for Producer<K, V, S>
where
    S: KeyStore<K>,
{
    type Target = CoalescingQueue<K, V, S>;

    fn deref(&self) -> &CoalescingQueue<K, V, S> {
        &self.queue
    }
}

impl<K, V, S> fmt::Debug for Producer<K, V, S>
where
    S: KeyStore<K>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("queue", &self.queue)
            .field("producers", &self.queue.producers.load(Ordering::Relaxed))
            .finish()
    }
}
