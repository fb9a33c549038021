//! The take forms: try, blocking, timeout, deadline, async and batch.
//!
//! Each loops around `attempt_take` from `steps.rs`; the leased forms in
//! `take_leased.rs` use the same loops with `leased = true`.

use crate::entry::Entry;
use crate::error::{TakeError, TakeTimeoutError, TryTakeError};
use crate::keys::KeyStore;
use crate::queue::{CoalescingQueue, LeaseStart, Ticket};
use crate::wait::{self, Step};
use core::future::{poll_fn, Future};
use core::pin::{pin, Pin};
use core::task::Poll;
use futures_timer::Delay;
use std::time::{Duration, Instant};

/// A take's result: the entry, the ticket its lease ends by (leased takes),
/// and when the lease started (leased takes only).
pub(crate) type Taken<K, V> = (Entry<K, V>, Ticket, Option<LeaseStart>);

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
    /// `Empty` if nothing is queued (also after close while a lease is
    /// out: its nack may queue the entry again); `Closed` if the queue is
    /// closed and drained: nothing queued or on its way in, and no lease
    /// out. `Closed` is final.
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
    /// After close it still waits while a lease is out (a nack brings its
    /// entry back); it returns `TakeError` once the last lease has ended.
    /// So a thread that holds a lease must not block here on a closed queue
    /// (see [sharing and shutting down](crate#sharing-and-shutting-down)).
    ///
    /// # Errors
    ///
    /// `TakeError` only when the queue is closed and drained: nothing
    /// queued or on its way in, and no lease out.
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

    /// Takes the entry at the head, blocking until `deadline` at most. A
    /// deadline already past makes this a [`try_take`](Self::try_take).
    ///
    /// # Errors
    ///
    /// `Timeout` if nothing arrived in time; `Closed` if the queue is closed
    /// and drained.
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, Entry, TakeTimeoutError};
    /// use std::time::{Duration, Instant};
    ///
    /// let q = CoalescingQueue::<u32, String>::new(4);
    /// let deadline = Instant::now() + Duration::from_millis(5);
    /// assert_eq!(q.take_deadline(deadline), Err(TakeTimeoutError::Timeout));
    /// q.offer_key(1).unwrap();
    /// assert_eq!(q.take_deadline(deadline), Ok(Entry::Key(1))); // past: a try
    /// ```
    pub fn take_deadline(&self, deadline: Instant) -> Result<Entry<K, V>, TakeTimeoutError> {
        self.take_blocking(false, Some(deadline))
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
    /// Returns 0 only when the queue is closed and drained, so
    /// `while q.take_batch(..) > 0` drains it. Every entry it took is in `out` when it returns: nothing is dropped.
    /// `out` grows only as entries are pushed onto it (as with `Vec::push`),
    /// never by `max` up front: a buffer with room for what is taken keeps
    /// its allocation. After close it lingers no more: it takes what is
    /// queued and returns, and a close that comes while it lingers (with
    /// any `linger`, `Duration::MAX` included) ends the linger at once.
    ///
    /// A gathering step frees the slots of what it took when it ends, and
    /// takes at most as many entries as were claimed and not in flight
    /// when it began: it never holds more slots than were then queued (or
    /// on their way in), so offers of new keys find the rest free.
    ///
    /// # Panics
    ///
    /// If `max` is 0: a batch of at most 0 entries would return 0, which
    /// reads as "closed and drained".
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
    #[track_caller]
    pub fn take_batch(&self, out: &mut Vec<Entry<K, V>>, max: usize, linger: Duration) -> usize {
        self.gather(out, None, max, linger, None).0
    }

    /// As [`take_batch`](Self::take_batch), waiting at most `timeout` for the
    /// first entry; then lingers as `take_batch` does. Returns 0 if nothing
    /// came in time, or (at once) if the queue is closed and drained.
    ///
    /// # Panics
    ///
    /// If `max` is 0, as [`take_batch`](Self::take_batch).
    ///
    /// ```
    /// use coalescing_queue::CoalescingQueue;
    /// use std::time::Duration;
    ///
    /// let q = CoalescingQueue::<u32, String>::new(8);
    /// let (linger, timeout) = (Duration::from_millis(1), Duration::from_millis(5));
    /// let mut batch = Vec::new();
    /// assert_eq!(q.take_batch_timeout(&mut batch, 10, linger, timeout), 0);
    /// q.offer_key(1).unwrap();
    /// assert_eq!(q.take_batch_timeout(&mut batch, 10, linger, timeout), 1);
    /// ```
    #[track_caller]
    pub fn take_batch_timeout(
        &self,
        out: &mut Vec<Entry<K, V>>,
        max: usize,
        linger: Duration,
        timeout: Duration,
    ) -> usize {
        let first_by = Instant::now().checked_add(timeout);
        self.gather(out, None, max, linger, first_by).0
    }

    /// The async form of [`take_batch`](Self::take_batch): waits for one
    /// entry, then gathers more until `max` entries or until `linger` has
    /// passed since the first, appending them to `out`. Returns at least 1,
    /// unless the queue is closed and drained, as tokio's `recv_many`.
    /// Runtime-agnostic: the linger timer is `futures-timer`'s (one small
    /// allocation per batch that has to wait for more).
    ///
    /// # Panics
    ///
    /// When first polled, if `max` is 0, as [`take_batch`](Self::take_batch).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: every entry taken is moved into `out` in the poll that
    /// takes it, so dropping the future (say, in a `select!`) leaves in
    /// `out` all it took, and loses nothing.
    ///
    /// ```
    /// use coalescing_queue::{CoalescingQueue, Entry};
    /// use std::time::Duration;
    ///
    /// let q = CoalescingQueue::<u32, String>::new(8);
    /// q.offer_key(1).unwrap();
    /// q.offer_key(2).unwrap();
    /// let mut batch = Vec::new();
    /// let taken = futures_lite::future::block_on(
    ///     q.take_batch_async(&mut batch, 10, Duration::from_millis(1)),
    /// );
    /// assert_eq!((taken, batch), (2, vec![Entry::Key(1), Entry::Key(2)]));
    /// ```
    pub async fn take_batch_async(
        &self,
        out: &mut Vec<Entry<K, V>>,
        max: usize,
        linger: Duration,
    ) -> usize {
        self.gather_async(out, None, max, linger).await.0
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
            Ok((entry, ticket)) => Step::Done(Ok((entry, ticket, lease))),
            Err(TryTakeError::Closed) => Step::Done(Err(TakeError)),
            // Nothing queued; a delayed entry may fall due: look again
            // then, woken or not (D5 of `delays.rs`).
            Err(TryTakeError::Empty) => match self.next_due_instant() {
                Some(due) => Step::RetryBy((), due),
                None => Step::Retry(()),
            },
        }
    }

    /// One attempt of a batch's linger: an entry, or `None` once the queue
    /// is closed. After close the ring stays empty while leases are out
    /// (this batch's own, if leased), so the take would read `Empty`, not
    /// `Closed`, and wait out the linger; but no offer can come any more,
    /// and what leases give back is for the next take. Checked on every
    /// attempt, the re-check after registering included, so the wake-up
    /// `close` gives every taker ends the wait.
    fn linger_step(&self, leased: bool) -> Step<(), Option<Taken<K, V>>> {
        match self.take_step(leased) {
            Step::Done(taken) => Step::Done(taken.ok()),
            Step::DoneUnused(taken) => Step::DoneUnused(taken.ok()),
            Step::Retry(()) | Step::RetryBy((), _) if self.is_closed() => Step::Done(None),
            Step::Retry(()) => Step::Retry(()),
            Step::RetryBy((), due) => Step::RetryBy((), due),
        }
    }

    /// The batch take: waits for one entry (until `first_by`, if given),
    /// then gathers up to `max` for at most `linger`, appending to `out`
    /// (and, for a leased batch, the leases' tickets to `tickets`). Returns
    /// how many, and when the batch's lease started.
    #[track_caller]
    pub(crate) fn gather(
        &self,
        out: &mut Vec<Entry<K, V>>,
        mut tickets: Option<&mut Vec<Ticket>>,
        max: usize,
        linger: Duration,
        first_by: Option<Instant>,
    ) -> (usize, Option<LeaseStart>) {
        refuse_zero(max);
        let leased = tickets.is_some();
        let Ok(first) = self.take_blocking(leased, first_by) else {
            return (0, None);
        };
        let start = first.2;
        keep(out, tickets.as_deref_mut(), first);
        let linger_until = Instant::now().checked_add(linger);
        let mut taken = 1;
        while taken < max {
            // Whatever is queued now, in one step; then wait for more.
            match self.attempt_take_many(start, max - taken, out, tickets.as_deref_mut()) {
                Ok(more) => taken += more,
                Err(TryTakeError::Closed) => break,
                Err(TryTakeError::Empty) if linger.is_zero() => break,
                // Closed: no offer comes any more, and what leases give
                // back (this batch's own included) is for the next take.
                Err(TryTakeError::Empty) if self.is_closed() => break,
                Err(TryTakeError::Empty) => {
                    let step = |()| self.linger_step(leased);
                    match wait::block_on(&self.not_empty, linger_until, (), step) {
                        Ok(Some(one)) => {
                            keep(out, tickets.as_deref_mut(), one);
                            taken += 1;
                        }
                        // Closed (meanwhile), or the linger is over.
                        Ok(None) | Err(()) => break,
                    }
                }
            }
        }
        (taken, start)
    }

    /// The async batch take: as [`gather`](Self::gather) without a limit
    /// on the first wait, lingering on a timer. Each entry is in `out`
    /// before the next await, which is what makes it cancel-safe.
    pub(crate) async fn gather_async(
        &self,
        out: &mut Vec<Entry<K, V>>,
        mut tickets: Option<&mut Vec<Ticket>>,
        max: usize,
        linger: Duration,
    ) -> (usize, Option<LeaseStart>) {
        refuse_zero(max);
        let leased = tickets.is_some();
        let Ok(first) = self.take_waiting(leased).await else {
            return (0, None);
        };
        let start = first.2;
        keep(out, tickets.as_deref_mut(), first);
        let linger_until = Instant::now().checked_add(linger);
        // Made at the first wait only: a batch that fills at once needs none.
        let mut timer = None;
        let mut taken = 1;
        while taken < max {
            match self.attempt_take_many(start, max - taken, out, tickets.as_deref_mut()) {
                Ok(more) => taken += more,
                Err(TryTakeError::Closed) => break,
                Err(TryTakeError::Empty) if linger.is_zero() => break,
                // As in `gather`: after close, no lingering.
                Err(TryTakeError::Empty) if self.is_closed() => break,
                Err(TryTakeError::Empty) => {
                    let one = match linger_until {
                        // A linger too long to add to now: no timer.
                        None => {
                            let step = |()| self.linger_step(leased);
                            wait::wait_async(&self.not_empty, (), step).await
                        }
                        Some(until) => {
                            let timer = timer.get_or_insert_with(|| {
                                Delay::new(until.saturating_duration_since(Instant::now()))
                            });
                            self.take_before(leased, timer).await
                        }
                    };
                    let Some(one) = one else { break };
                    keep(out, tickets.as_deref_mut(), one);
                    taken += 1;
                }
            }
        }
        (taken, start)
    }

    /// Waits for one entry until `timer` fires; `None` if it fired first or
    /// the queue is closed (a lingering take's wait, `linger_step`). The
    /// take is polled first, so an entry that is there when the timer fires
    /// is still taken; a take dropped because the timer fired had taken
    /// nothing (the wait is cancel-safe, as `take_waiting`).
    async fn take_before(&self, leased: bool, timer: &mut Delay) -> Option<Taken<K, V>> {
        let mut take = pin!(wait::wait_async(&self.not_empty, (), |()| self.linger_step(leased)));
        poll_fn(|cx| {
            if let Poll::Ready(taken) = take.as_mut().poll(cx) {
                return Poll::Ready(taken);
            }
            Pin::new(&mut *timer).poll(cx).map(|()| None)
        })
        .await
    }
}

/// A batch of at most 0 entries is refused: its 0 would read as "closed
/// and drained" to a `while take_batch(..) > 0` loop.
#[track_caller]
fn refuse_zero(max: usize) {
    assert!(
        max > 0,
        "a batch take's max must be at least 1 (0 entries is what a closed and drained queue returns)"
    );
}

/// Appends a taken entry to a batch (and its lease's index, if leased).
fn keep<K, V>(out: &mut Vec<Entry<K, V>>, tickets: Option<&mut Vec<Ticket>>, taken: Taken<K, V>) {
    let (entry, ticket, _) = taken;
    out.push(entry);
    if let Some(tickets) = tickets {
        tickets.push(ticket);
    }
}
