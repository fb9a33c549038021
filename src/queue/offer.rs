//! The offer forms: try, blocking, timeout, deadline and async, for keys
//! and items.
//!
//! Each is a loop around one attempt from `steps.rs`; only the final outcome
//! of a call is counted in the stats.

use crate::entry::Offered;
use crate::error::{OfferError, OfferTimeoutError, TryOfferError};
use crate::keys::KeyStore;
use crate::queue::{Attempt, CoalescingQueue};
use crate::stats::Counter;
use crate::wait::{self, Step};
use std::time::{Duration, Instant};

/// Whether an accepted offer took a slot. One that did not (a coalesced
/// key) passes on the "not full" wake-up it may have consumed.
trait UsesSlot {
    fn uses_slot(&self) -> bool;
}

impl UsesSlot for Offered {
    fn uses_slot(&self) -> bool {
        *self == Offered::Enqueued
    }
}

impl UsesSlot for () {
    fn uses_slot(&self) -> bool {
        true
    }
}

/// One offer attempt as a step of the wait loop.
fn offer_step<T, R: UsesSlot>(attempt: Attempt<T, R>) -> Step<T, Result<R, T>> {
    match attempt {
        Attempt::Done(done) if done.uses_slot() => Step::Done(Ok(done)),
        Attempt::Done(done) => Step::DoneUnused(Ok(done)),
        // Close wakes every waiter: nothing to pass on.
        Attempt::Closed(value) => Step::Done(Err(value)),
        Attempt::Full(value) => Step::Retry(value),
    }
}

/// Why an offer loop stopped without success.
enum Refused<T> {
    Closed(T),
    Timeout(T),
}

impl<K, V, S> CoalescingQueue<K, V, S>
where
    S: KeyStore<K>,
{
    /// Offers a key without blocking.
    ///
    /// If the key is already pending (queued, or in flight) the offer is
    /// coalesced into that copy, even when the queue is full; otherwise a
    /// new copy is queued at the tail if a slot is free.
    ///
    /// Only the `*_offer_key` forms coalesce: the `*_offer` forms (a
    /// channel's `send`) queue a pass-through item, never coalesced. When
    /// the key and the item are the same type (`CoalescingQueue<String,
    /// String>`) both compile; pick by what should coalesce.
    ///
    /// # Errors
    ///
    /// `Full(key)` if every slot is claimed and the key is not pending;
    /// `Closed(key)` if the queue is closed (duplicates too).
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, Offered, TryOfferError};
    ///
    /// let q = CoalescingQueue::<u32, String>::new(1);
    /// assert_eq!(q.try_offer_key(1), Ok(Offered::Enqueued));
    /// assert_eq!(q.try_offer_key(1), Ok(Offered::Coalesced));
    /// assert_eq!(q.try_offer_key(2), Err(TryOfferError::Full(2)));
    /// q.close();
    /// assert_eq!(q.try_offer_key(1), Err(TryOfferError::Closed(1)));
    /// ```
    pub fn try_offer_key(&self, key: K) -> Result<Offered, TryOfferError<K>> {
        match self.attempt_offer_key(key) {
            Attempt::Done(offered) => Ok(offered),
            Attempt::Full(key) => Err(self.refused_full(TryOfferError::Full(key))),
            Attempt::Closed(key) => Err(self.refused_closed(TryOfferError::Closed(key))),
        }
    }

    /// Offers a key, blocking while the queue is full. The form for a key
    /// that should coalesce; [`offer`](Self::offer), a channel's `send`,
    /// queues a pass-through item, never coalesced.
    ///
    /// A key that is pending when the call starts (or when it wakes) is
    /// coalesced at once, full or not. While it sleeps, it waits for a free
    /// slot or the close, not for its key: if another thread makes the key
    /// pending meanwhile, this call still waits for the next free slot and
    /// then returns `Coalesced`.
    ///
    /// # Fairness
    ///
    /// Waiting offerers are not served in order, and a freed slot is not
    /// handed to the one woken for it: each freed slot wakes one waiting
    /// offerer, which then tries again, and any offer that tries first (a
    /// fresh `try_offer`, or a new blocking offer's first attempt) can
    /// claim the slot instead. A woken offerer that loses its slot so waits
    /// again, behind offerers that began waiting after it. Nothing bounds
    /// how often that happens while other offers keep arriving at a full
    /// queue. Once no new offer competes, and takers keep freeing slots,
    /// the waiting offerers are woken one per freed slot in the order they
    /// last began to wait, so each gets one. To bound the wait, use a
    /// `*_timeout` or `*_deadline` form.
    ///
    /// # Errors
    ///
    /// `OfferError(key)` if the queue is closed, before or while waiting.
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, Offered};
    /// use std::{sync::Arc, thread};
    ///
    /// let q = Arc::new(CoalescingQueue::<u32, String>::new(1));
    /// q.offer_key(1).unwrap();
    /// let taker = { let q = q.clone(); thread::spawn(move || q.take().unwrap()) };
    /// assert_eq!(q.offer_key(2), Ok(Offered::Enqueued)); // waits for the taker
    /// taker.join().unwrap();
    /// ```
    pub fn offer_key(&self, key: K) -> Result<Offered, OfferError<K>> {
        match self.offer_blocking(key, None, Self::attempt_offer_key) {
            Ok(offered) => Ok(offered),
            Err(Refused::Closed(key) | Refused::Timeout(key)) => {
                Err(self.refused_closed(OfferError(key)))
            }
        }
    }

    /// Offers a key that is not to be taken before `delay` has passed (as
    /// client-go's `AddAfter`), without blocking. A new copy keeps a slot
    /// from now on and its key is pending (offers of it coalesce), but it
    /// waits in the delay schedule, as a key nacked with
    /// [`nack_after`](crate::LeaseIn::nack_after) does, and is queued at
    /// the tail once due. A key that is already pending is coalesced into
    /// its copy as by [`try_offer_key`](Self::try_offer_key), which keeps
    /// its place: queued, in flight, or delayed until its own due time (an
    /// offer never shortens or lengthens a delay). After close delays end,
    /// but offers fail anyway.
    ///
    /// # Errors
    ///
    /// As [`try_offer_key`](Self::try_offer_key): `Full(key)`, `Closed(key)`.
    ///
    /// # Panics
    ///
    /// If the queue was built without
    /// [`Builder::retries`](crate::Builder::retries).
    ///
    /// ```
    /// use coalescing_queue::{Backoff, CoalescingQueue, Offered};
    /// use std::time::{Duration, Instant};
    ///
    /// let q = CoalescingQueue::<u32, String>::builder()
    ///     .capacity(4)
    ///     .retries(Backoff::default())
    ///     .build();
    /// let offered = Instant::now();
    /// assert_eq!(q.try_offer_key_after(1, Duration::from_millis(10)), Ok(Offered::Enqueued));
    /// assert_eq!(q.try_offer_key(1), Ok(Offered::Coalesced)); // pending
    /// assert!(q.try_take().is_err()); // not yet due
    /// assert_eq!(q.take().unwrap().key(), Some(&1)); // sleeps until due
    /// assert!(offered.elapsed() >= Duration::from_millis(10));
    /// ```
    #[track_caller]
    pub fn try_offer_key_after(
        &self,
        key: K,
        delay: Duration,
    ) -> Result<Offered, TryOfferError<K>> {
        let due = self.delays().due_after(delay);
        match self.attempt_offer_key_until(key, due) {
            Attempt::Done(offered) => Ok(offered),
            Attempt::Full(key) => Err(self.refused_full(TryOfferError::Full(key))),
            Attempt::Closed(key) => Err(self.refused_closed(TryOfferError::Closed(key))),
        }
    }

    /// As [`try_offer_key_after`](Self::try_offer_key_after), blocking
    /// while the queue is full (as [`offer_key`](Self::offer_key)). The
    /// delay counts from the call, not from when a slot came free.
    ///
    /// # Errors
    ///
    /// `OfferError(key)` if the queue is closed, before or while waiting.
    ///
    /// # Panics
    ///
    /// If the queue was built without
    /// [`Builder::retries`](crate::Builder::retries).
    #[track_caller]
    pub fn offer_key_after(&self, key: K, delay: Duration) -> Result<Offered, OfferError<K>> {
        let due = self.delays().due_after(delay);
        match self.offer_blocking(key, None, |queue, key| {
            queue.attempt_offer_key_until(key, due)
        }) {
            Ok(offered) => Ok(offered),
            Err(Refused::Closed(key) | Refused::Timeout(key)) => {
                Err(self.refused_closed(OfferError(key)))
            }
        }
    }

    /// Offers a key, blocking while the queue is full for at most `timeout`.
    ///
    /// Waiting offerers are not served in order, and a later offer can take
    /// the slot freed for a waiting one; see "Fairness" in
    /// [`offer_key`](Self::offer_key).
    ///
    /// # Errors
    ///
    /// `Timeout(key)` if the queue stayed full; `Closed(key)` if it closed.
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, OfferTimeoutError, Offered};
    /// use std::time::Duration;
    ///
    /// let q = CoalescingQueue::<u32, String>::new(1);
    /// let t = Duration::from_millis(5);
    /// assert_eq!(q.offer_key_timeout(1, t), Ok(Offered::Enqueued));
    /// assert_eq!(q.offer_key_timeout(2, t), Err(OfferTimeoutError::Timeout(2)));
    /// ```
    pub fn offer_key_timeout(
        &self,
        key: K,
        timeout: Duration,
    ) -> Result<Offered, OfferTimeoutError<K>> {
        self.offer_key_until(key, Instant::now().checked_add(timeout))
    }

    /// Offers a key, blocking while the queue is full until `deadline`. A
    /// deadline already past makes this a [`try_offer_key`](Self::try_offer_key)
    /// (with the timeout error).
    ///
    /// Waiting offerers are not served in order, and a later offer can take
    /// the slot freed for a waiting one; see "Fairness" in
    /// [`offer_key`](Self::offer_key).
    ///
    /// # Errors
    ///
    /// `Timeout(key)` if the queue stayed full; `Closed(key)` if it closed.
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, OfferTimeoutError, Offered};
    /// use std::time::{Duration, Instant};
    ///
    /// let q = CoalescingQueue::<u32, String>::new(1);
    /// let deadline = Instant::now() + Duration::from_millis(5);
    /// assert_eq!(q.offer_key_deadline(1, deadline), Ok(Offered::Enqueued));
    /// assert_eq!(q.offer_key_deadline(2, deadline), Err(OfferTimeoutError::Timeout(2)));
    /// assert_eq!(q.offer_key_deadline(1, Instant::now()), Ok(Offered::Coalesced));
    /// ```
    pub fn offer_key_deadline(
        &self,
        key: K,
        deadline: Instant,
    ) -> Result<Offered, OfferTimeoutError<K>> {
        self.offer_key_until(key, Some(deadline))
    }

    /// The timeout and deadline forms; `None`: no deadline (a timeout too
    /// long to add to now).
    fn offer_key_until(
        &self,
        key: K,
        deadline: Option<Instant>,
    ) -> Result<Offered, OfferTimeoutError<K>> {
        match self.offer_blocking(key, deadline, Self::attempt_offer_key) {
            Ok(offered) => Ok(offered),
            Err(Refused::Closed(key)) => Err(self.refused_closed(OfferTimeoutError::Closed(key))),
            Err(Refused::Timeout(key)) => Err(self.refused_full(OfferTimeoutError::Timeout(key))),
        }
    }

    /// Offers a key, waiting asynchronously while the queue is full.
    ///
    /// Waiting offerers are not served in order, and a later offer can take
    /// the slot freed for a waiting one; see "Fairness" in
    /// [`offer_key`](Self::offer_key).
    ///
    /// # Errors
    ///
    /// `OfferError(key)` if the queue is closed, before or while waiting.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes means the key was not
    /// offered (it is dropped with the future); nothing else changes.
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, Offered};
    ///
    /// let q = CoalescingQueue::<u32, String>::new(1);
    /// let offered = futures_lite::future::block_on(q.offer_key_async(1));
    /// assert_eq!(offered, Ok(Offered::Enqueued));
    /// ```
    pub async fn offer_key_async(&self, key: K) -> Result<Offered, OfferError<K>> {
        match self.offer_waiting(key, Self::attempt_offer_key).await {
            Ok(offered) => Ok(offered),
            Err(key) => Err(self.refused_closed(OfferError(key))),
        }
    }

    /// Offers a pass-through item without blocking. Items are never
    /// coalesced; they keep their place in the FIFO with the keys.
    ///
    /// **Not** the way to offer a key: a key that should coalesce goes
    /// through [`try_offer_key`](Self::try_offer_key) (and the other
    /// `*_offer_key` forms). When the key and the item are the same type,
    /// both compile, and this one queues every copy:
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, Offered};
    ///
    /// let q = CoalescingQueue::<String, String>::new(4);
    /// q.try_offer("done 7".to_string()).unwrap(); // an item: not coalesced
    /// q.try_offer("done 7".to_string()).unwrap(); // a second copy
    /// assert_eq!(q.len(), 2);
    /// assert_eq!(q.try_offer_key("done 8".to_string()), Ok(Offered::Enqueued));
    /// assert_eq!(q.try_offer_key("done 8".to_string()), Ok(Offered::Coalesced));
    /// assert_eq!(q.len(), 3);
    /// ```
    ///
    /// # Errors
    ///
    /// `Full(item)` if every slot is claimed; `Closed(item)` if closed.
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, TryOfferError};
    ///
    /// let q = CoalescingQueue::<u32, &str>::new(1);
    /// assert_eq!(q.try_offer("a"), Ok(()));
    /// assert_eq!(q.try_offer("b"), Err(TryOfferError::Full("b")));
    /// q.close();
    /// assert_eq!(q.try_offer("c"), Err(TryOfferError::Closed("c")));
    /// ```
    pub fn try_offer(&self, item: V) -> Result<(), TryOfferError<V>> {
        match self.attempt_offer_item(item) {
            Attempt::Done(()) => Ok(()),
            Attempt::Full(item) => Err(self.refused_full(TryOfferError::Full(item))),
            Attempt::Closed(item) => Err(self.refused_closed(TryOfferError::Closed(item))),
        }
    }

    /// Offers a pass-through item, blocking while the queue is full. Items
    /// are never coalesced: a key that should coalesce goes through
    /// [`offer_key`](Self::offer_key), even when keys and items are the same
    /// type (see [`try_offer`](Self::try_offer)).
    ///
    /// Waiting offerers are not served in order, and a later offer can take
    /// the slot freed for a waiting one; see "Fairness" in
    /// [`offer_key`](Self::offer_key).
    ///
    /// # Errors
    ///
    /// `OfferError(item)` if the queue is closed, before or while waiting.
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, OfferError};
    ///
    /// let q = CoalescingQueue::<u32, &str>::new(1);
    /// assert_eq!(q.offer("a"), Ok(()));
    /// q.close();
    /// assert_eq!(q.offer("b"), Err(OfferError("b")));
    /// ```
    pub fn offer(&self, item: V) -> Result<(), OfferError<V>> {
        match self.offer_blocking(item, None, Self::attempt_offer_item) {
            Ok(()) => Ok(()),
            Err(Refused::Closed(item) | Refused::Timeout(item)) => {
                Err(self.refused_closed(OfferError(item)))
            }
        }
    }

    /// Offers a pass-through item, blocking while full for at most `timeout`.
    ///
    /// Waiting offerers are not served in order, and a later offer can take
    /// the slot freed for a waiting one; see "Fairness" in
    /// [`offer_key`](Self::offer_key).
    ///
    /// # Errors
    ///
    /// `Timeout(item)` if the queue stayed full; `Closed(item)` if it closed.
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, OfferTimeoutError};
    /// use std::time::Duration;
    ///
    /// let q = CoalescingQueue::<u32, &str>::new(1);
    /// let t = Duration::from_millis(5);
    /// assert_eq!(q.offer_timeout("a", t), Ok(()));
    /// assert_eq!(q.offer_timeout("b", t), Err(OfferTimeoutError::Timeout("b")));
    /// ```
    pub fn offer_timeout(&self, item: V, timeout: Duration) -> Result<(), OfferTimeoutError<V>> {
        self.offer_until(item, Instant::now().checked_add(timeout))
    }

    /// Offers a pass-through item, blocking while full until `deadline`. A
    /// deadline already past makes this a [`try_offer`](Self::try_offer)
    /// (with the timeout error).
    ///
    /// Waiting offerers are not served in order, and a later offer can take
    /// the slot freed for a waiting one; see "Fairness" in
    /// [`offer_key`](Self::offer_key).
    ///
    /// # Errors
    ///
    /// `Timeout(item)` if the queue stayed full; `Closed(item)` if it closed.
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, OfferTimeoutError};
    /// use std::time::{Duration, Instant};
    ///
    /// let q = CoalescingQueue::<u32, &str>::new(1);
    /// let deadline = Instant::now() + Duration::from_millis(5);
    /// assert_eq!(q.offer_deadline("a", deadline), Ok(()));
    /// assert_eq!(q.offer_deadline("b", deadline), Err(OfferTimeoutError::Timeout("b")));
    /// ```
    pub fn offer_deadline(&self, item: V, deadline: Instant) -> Result<(), OfferTimeoutError<V>> {
        self.offer_until(item, Some(deadline))
    }

    /// The timeout and deadline forms, as `offer_key_until`.
    fn offer_until(&self, item: V, deadline: Option<Instant>) -> Result<(), OfferTimeoutError<V>> {
        match self.offer_blocking(item, deadline, Self::attempt_offer_item) {
            Ok(()) => Ok(()),
            Err(Refused::Closed(item)) => Err(self.refused_closed(OfferTimeoutError::Closed(item))),
            Err(Refused::Timeout(item)) => Err(self.refused_full(OfferTimeoutError::Timeout(item))),
        }
    }

    /// Offers a pass-through item, waiting asynchronously while full.
    ///
    /// Waiting offerers are not served in order, and a later offer can take
    /// the slot freed for a waiting one; see "Fairness" in
    /// [`offer_key`](Self::offer_key).
    ///
    /// # Errors
    ///
    /// `OfferError(item)` if the queue is closed, before or while waiting.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes means the item was not
    /// offered (it is dropped with the future); nothing else changes.
    ///
    /// ```
    /// use coalescing_queue::CoalescingQueue;
    ///
    /// let q = CoalescingQueue::<u32, &str>::new(1);
    /// assert_eq!(futures_lite::future::block_on(q.offer_async("a")), Ok(()));
    /// ```
    pub async fn offer_async(&self, item: V) -> Result<(), OfferError<V>> {
        match self.offer_waiting(item, Self::attempt_offer_item).await {
            Ok(()) => Ok(()),
            Err(item) => Err(self.refused_closed(OfferError(item))),
        }
    }

    // ----- shared loops -----

    fn offer_blocking<T, R: UsesSlot>(
        &self,
        value: T,
        deadline: Option<Instant>,
        attempt: impl Fn(&Self, T) -> Attempt<T, R>,
    ) -> Result<R, Refused<T>> {
        let outcome = wait::block_on(&self.not_full, deadline, value, |value| {
            offer_step(attempt(self, value))
        });
        match outcome {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(value)) => Err(Refused::Closed(value)),
            Err(value) => Err(Refused::Timeout(value)),
        }
    }

    async fn offer_waiting<T, R: UsesSlot>(
        &self,
        value: T,
        attempt: impl Fn(&Self, T) -> Attempt<T, R>,
    ) -> Result<R, T> {
        wait::wait_async(&self.not_full, value, |value| {
            offer_step(attempt(self, value))
        })
        .await
    }

    fn refused_full<E>(&self, error: E) -> E {
        self.counters.add(Counter::FullRejections);
        error
    }

    fn refused_closed<E>(&self, error: E) -> E {
        self.counters.add(Counter::ClosedRejections);
        error
    }
}
