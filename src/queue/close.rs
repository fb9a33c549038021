//! Closing: `close`, and the drain `close_and_wait` waits for.

use super::CoalescingQueue;
use crate::keys::KeyStore;
use crate::sync::Ordering;
use crate::wait::{self, Step};
use core::future::Future;
use std::time::{Duration, Instant};

impl<K, V, S> CoalescingQueue<K, V, S>
where
    S: KeyStore<K>,
{
    /// Closes the queue. Returns `true` for the call that closed it.
    ///
    /// Offers fail from now on with their value handed back (duplicates of
    /// pending keys too); blocked offerers wake and fail the same way. Takes
    /// go on returning what is queued; leases still ack and nack, and a
    /// nacked entry is queued again and taken. Takes report `Closed` once
    /// nothing is queued and no lease is out: while one is, a try-take says
    /// `Empty` and a blocking or async take waits for its end. A
    /// [`close_and_wait`](Self::close_and_wait) waiting meanwhile returns at
    /// once (the drain is abandoned).
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, TryOfferError};
    ///
    /// let q = CoalescingQueue::<u32, String>::new(4);
    /// q.offer_key(1).unwrap();
    /// assert!(q.close());
    /// assert!(!q.close());
    /// assert_eq!(q.try_offer_key(1), Err(TryOfferError::Closed(1)));
    /// assert!(q.take().is_ok());
    /// assert!(q.take().is_err());
    /// ```
    pub fn close(&self) -> bool {
        let closed_now = self.close_only();
        // A `close_and_wait` that read the count before this increment
        // returns (its drain abandoned) once it sees the new count.
        self.closes.fetch_add(1, Ordering::SeqCst);
        // After the increment, also when this call closed the queue: the
        // wake-up `close_only` gave came before the count changed, and a
        // `close_and_wait` that checked the count in between sleeps on.
        self.finished.notify_all();
        closed_now
    }

    /// `close` without interrupting a `close_and_wait`: what
    /// `close_and_wait` itself and a last [`Producer`](crate::Producer) use.
    pub(crate) fn close_only(&self) -> bool {
        // Release, before the occupancy bit: a claim refused by the bit
        // (Acquire) then sees the flag too, so `is_closed` agrees with
        // every refusal.
        self.closed.store(1, Ordering::Release);
        let closed_now = self.occupancy.close();
        // After the flag: delayed entries fall due now, and a delayed nack
        // from now on queues at once (D4 of `delays.rs`).
        self.release_delayed();
        if closed_now {
            self.not_full.notify_all();
            self.not_empty.notify_all();
            self.finished.notify_all();
        }
        closed_now
    }

    /// Closes the queue, then waits until every queued entry has been taken
    /// and every lease has ended with an ack (a graceful drain that also
    /// covers work in flight). Returns `true` if that happened within
    /// `timeout`; `false` if the timeout passed first, or if
    /// [`close`](Self::close) was called meanwhile (which abandons the
    /// drain, as client-go's `ShutDown` does during `ShutDownWithDrain`).
    ///
    /// ```
    /// use coalescing_queue::CoalescingQueue;
    /// use std::{sync::Arc, thread, time::Duration};
    ///
    /// let q = Arc::new(CoalescingQueue::<u32, String>::new(4));
    /// q.offer_key(1).unwrap();
    /// let lease = q.try_take_leased().unwrap();
    /// assert!(!q.close_and_wait(Duration::from_millis(1))); // still in flight
    /// lease.ack();
    /// assert!(q.close_and_wait(Duration::from_millis(1)));
    ///
    /// // A close from elsewhere ends a drain that would take too long.
    /// let q = Arc::new(CoalescingQueue::<u32, String>::new(4));
    /// q.offer_key(1).unwrap();
    /// let _stuck = q.try_take_leased_owned().unwrap();
    /// let closer = { let q = q.clone(); thread::spawn(move || {
    ///     thread::sleep(Duration::from_millis(10));
    ///     q.close();
    /// }) };
    /// assert!(!q.close_and_wait(Duration::from_secs(3600))); // returns at the close
    /// closer.join().unwrap();
    /// ```
    pub fn close_and_wait(&self, timeout: Duration) -> bool {
        // Read before closing: any `close` that overlaps this call ends it.
        let closes = self.closes.load(Ordering::SeqCst);
        self.close_only();
        let deadline = Instant::now().checked_add(timeout);
        wait::block_on(&self.finished, deadline, (), |()| self.drain_step(closes)).unwrap_or(false)
    }

    /// The async form of [`close_and_wait`](Self::close_and_wait), without
    /// a timeout (wrap it in your runtime's timeout): `true` once drained,
    /// `false` if [`close`](Self::close) was called meanwhile. The queue is
    /// closed by this call itself, not at the future's first poll.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops the waiting only; the queue stays closed.
    ///
    /// ```
    /// use coalescing_queue::CoalescingQueue;
    ///
    /// let q = CoalescingQueue::<u32, String>::new(4);
    /// q.offer_key(1).unwrap();
    /// q.try_take_leased().unwrap().ack();
    /// assert!(futures_lite::future::block_on(q.close_and_wait_async()));
    /// ```
    pub fn close_and_wait_async(&self) -> impl Future<Output = bool> + '_ {
        // Closed now, when called, not at the first poll.
        let closes = self.closes.load(Ordering::SeqCst);
        self.close_only();
        wait::wait_async(&self.finished, (), move |()| self.drain_step(closes))
    }

    /// One check of a drain: finished (`true`), abandoned by a `close`
    /// since `closes` was read (`false`), or not yet.
    fn drain_step(&self, closes: usize) -> Step<(), bool> {
        if self.occupancy.load().is_finished() {
            Step::Done(true)
        } else if self.closes.load(Ordering::SeqCst) != closes {
            Step::Done(false)
        } else {
            Step::Retry(())
        }
    }
}
