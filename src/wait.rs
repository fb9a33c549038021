//! Waiting and waking without losing a wake-up (G5), and without paying for
//! a wake-up nobody waits for.
//!
//! Every wait follows one shape: try; register; try again; only then sleep.
//! A `Signal` is an `event_listener::Event` plus a count of registered
//! waiters, so that the hot path (a push, a freed slot) skips the event
//! entirely when nobody waits: `Event::notify` always takes the event's
//! internal lock, which costs more than the rest of an offer.
//!
//! Why no wake-up is lost (the store-buffering pattern, with two `SeqCst`
//! fences): a waiter increments `waiting`, registers its listener, issues
//! fence F1, then tries again. A notifier changes the state (a push, a
//! release), issues fence F2, then reads `waiting`. The fences are totally
//! ordered. If F1 comes first, the notifier reads the waiter's increment and
//! its notify (under the event's lock) finds the listener registered before
//! F1. If F2 comes first, the waiter's second try sees the state change and
//! it does not sleep. Either way the change reaches the waiter. Loom models
//! `fence(SeqCst)` exactly (unlike `SeqCst` accesses), which is why the
//! argument rests on fences and the counter itself is `Relaxed`.
//!
//! A woken waiter loops and tries again, so a spurious or stolen wake-up
//! costs a retry, never an entry. A waiter woken for a resource it then did
//! not use (an offerer woken for a free slot whose key turned out to be
//! pending already, so it was coalesced without one) passes the wake-up on.

use crate::sync::{fence, AtomicUsize, Event, EventListener, Listener, Ordering};
use std::time::Instant;

/// The result of one attempt.
pub(crate) enum Step<T, R> {
    /// Done, having used what a wake-up stands for (an entry, a slot).
    Done(R),
    /// Done without using it: a wake-up this waiter consumed is passed on.
    DoneUnused(R),
    /// Not yet; the value is handed back for the next attempt.
    Retry(T),
    /// Not yet, and something may change by itself at this instant (a
    /// delayed entry falls due): sleep no longer than that.
    RetryBy(T, Instant),
}

/// A wake-up source with a count of the waiters registered on it.
pub(crate) struct Signal {
    event: Event,
    /// Waiters between registering and leaving. Ordered by the fences, or by
    /// the `SeqCst` order (`notify_after_seqcst_change`).
    waiting: AtomicUsize,
}

/// A waiter counted in `waiting` until this is dropped.
struct Counted<'a>(&'a Signal);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Signal {
    pub(crate) fn new() -> Self {
        let event = Event::new();
        // `Event` allocates its state on first use; make that now, at build,
        // so that no later operation allocates (`close` notifies every
        // event, even one nobody ever waited on).
        #[cfg(not(any(loom, shuttle)))]
        drop(event.listen());
        Self {
            event,
            waiting: AtomicUsize::new(0),
        }
    }

    /// Wakes one more waiter, if any is registered. Call after the state
    /// change it announces (F2 of the module docs).
    #[inline]
    pub(crate) fn notify_one(&self) {
        self.notify(1);
    }

    /// Wakes `count` more waiters (one per entry or slot that appeared), if
    /// any is registered.
    #[inline]
    pub(crate) fn notify(&self, count: usize) {
        fence(Ordering::SeqCst);
        self.wake_registered(count);
    }

    /// Like [`notify`](Self::notify), for a state change that was a `SeqCst`
    /// read-modify-write (a release of the occupancy word): no F2 needed.
    /// The change, this `SeqCst` load and the waiter's `SeqCst` increment are
    /// all in the single total order of `SeqCst` operations, with F1 after
    /// the increment. If this load misses the increment, it precedes it in
    /// that order, so the change precedes F1 and the waiter's re-check after
    /// F1 sees the change (C++20 [atomics.order] p4.1 and p4.3). That saves a
    /// full fence (an `mfence` on x86) per take.
    ///
    /// Loom treats `SeqCst` accesses as `AcqRel`, so it cannot see that
    /// argument; under loom a fence stands in for the order the `SeqCst`
    /// accesses give (and the fence argument of the module docs applies).
    #[inline]
    pub(crate) fn notify_after_seqcst_change(&self, count: usize) {
        #[cfg(loom)]
        fence(Ordering::SeqCst);
        self.wake_registered(count);
    }

    /// The notifier's read of the count and its call of the event, after
    /// F2 or a `SeqCst` change. The load is `SeqCst` for
    /// `notify_after_seqcst_change` (after a fence it costs the same).
    #[inline]
    fn wake_registered(&self, count: usize) {
        if self.waiting.load(Ordering::SeqCst) != 0 {
            // `additional`: two changes wake two waiters, never collapse.
            // `relaxed`: F2 or the SeqCst change already orders the state.
            self.event.notify_additional_relaxed(count);
        }
    }

    /// Wakes every registered waiter (close, drained). Rare: no fast path.
    pub(crate) fn notify_all(&self) {
        self.event.notify(usize::MAX);
    }

    /// Registers a waiter (the increment and F1 of the module docs).
    fn register(&self) -> (Counted<'_>, EventListener) {
        // SeqCst: in the total order `notify_after_seqcst_change` relies on.
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let counted = Counted(self);
        let listener = self.event.listen();
        fence(Ordering::SeqCst);
        (counted, listener)
    }
}

/// Tries `attempt` until it is done, sleeping on `signal` in between. With a
/// deadline, gives the value back once the deadline passes (after one last
/// attempt).
pub(crate) fn block_on<T, R>(
    signal: &Signal,
    deadline: Option<Instant>,
    mut value: T,
    mut attempt: impl FnMut(T) -> Step<T, R>,
) -> Result<R, T> {
    let mut woken = false;
    loop {
        value = match finish(signal, woken, attempt(value)) {
            Ok(done) => return Ok(done),
            Err((value, _)) => value,
        };
        let (_counted, listener) = signal.register();
        // The re-check after registering: without it, a change made between
        // the first attempt and the registration would wake nobody (G5).
        let by;
        (value, by) = match finish(signal, woken, attempt(value)) {
            Ok(done) => return Ok(done),
            Err(retry) => retry,
        };
        let until = match (deadline, by) {
            (Some(deadline), Some(by)) if by < deadline => Some((by, false)),
            (None, Some(by)) => Some((by, false)),
            (Some(deadline), _) => Some((deadline, true)),
            (None, None) => None,
        };
        match until {
            None => listener.wait(),
            Some((until, is_deadline)) => {
                if listener.wait_deadline(until).is_none() {
                    // The caller's deadline also when the instant to look
                    // again came first but the deadline has passed too (a
                    // due time that stays in the past never outlives it).
                    if is_deadline || deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                        return finish(signal, woken, attempt(value)).map_err(|(value, _)| value);
                    }
                    // The change it waited for is due: look again, with
                    // no wake-up consumed.
                    woken = false;
                    continue;
                }
            }
        }
        woken = true;
    }
}

/// The async form of [`block_on`] without a deadline. Cancel-safe as long as
/// `attempt` is: nothing is held between polls but the value and a
/// listener, and dropping a notified listener passes its wake-up on.
pub(crate) async fn wait_async<T, R>(
    signal: &Signal,
    mut value: T,
    mut attempt: impl FnMut(T) -> Step<T, R>,
) -> R {
    let mut woken = false;
    loop {
        value = match finish(signal, woken, attempt(value)) {
            Ok(done) => return done,
            Err((value, _)) => value,
        };
        let (_counted, listener) = signal.register();
        let by;
        (value, by) = match finish(signal, woken, attempt(value)) {
            Ok(done) => return done,
            Err(retry) => retry,
        };
        // `_counted` keeps this waiter counted until the await ends.
        match by {
            None => listener.await,
            Some(by) => {
                // A timer only when something falls due by itself (one
                // small allocation of `futures-timer`'s per such wait).
                let mut listener = core::pin::pin!(listener);
                let mut timer =
                    futures_timer::Delay::new(by.saturating_duration_since(Instant::now()));
                let notified = core::future::poll_fn(|cx| {
                    use core::future::Future;
                    use core::task::Poll;
                    if listener.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(true);
                    }
                    core::pin::Pin::new(&mut timer).poll(cx).map(|()| false)
                })
                .await;
                if !notified {
                    // Due: look again, with no wake-up consumed.
                    woken = false;
                    continue;
                }
            }
        }
        woken = true;
    }
}

/// Turns an attempt's step into done (`Ok`) or retry (`Err`, with the
/// instant to look again by, if any), passing on a wake-up that was
/// consumed (`woken`) but not used.
fn finish<T, R>(signal: &Signal, woken: bool, step: Step<T, R>) -> Result<R, (T, Option<Instant>)> {
    match step {
        Step::Done(done) => Ok(done),
        Step::DoneUnused(done) => {
            if woken {
                signal.notify_one();
            }
            Ok(done)
        }
        Step::Retry(value) => Err((value, None)),
        Step::RetryBy(value, by) => Err((value, Some(by))),
    }
}
