//! Waiting for an event without losing a wake-up (G5).
//!
//! Every wait follows one shape: try; register a listener; try again; only
//! then sleep. A change that happens after the first try is either seen by
//! the second try or, having come after the registration, notifies the
//! listener: `Event::notify` issues a `SeqCst` fence before it looks for
//! listeners, and `listen` registers under the event's lock, so the two
//! cannot both miss each other. A woken waiter loops and tries again, so a
//! spurious or stolen wake-up costs a retry, never an entry.

use crate::sync::{Event, Listener};
use std::time::Instant;

/// The result of one attempt: done, or not yet (with the value handed back
/// so the next attempt can use it again).
pub(crate) enum Step<T, R> {
    Done(R),
    Retry(T),
}

/// Tries `attempt` until it is done, sleeping on `event` in between. With a
/// deadline, gives the value back once the deadline passes (after one last
/// attempt).
pub(crate) fn block_on<T, R>(
    event: &Event,
    deadline: Option<Instant>,
    mut value: T,
    mut attempt: impl FnMut(T) -> Step<T, R>,
) -> Result<R, T> {
    loop {
        value = match attempt(value) {
            Step::Done(done) => return Ok(done),
            Step::Retry(value) => value,
        };
        let listener = event.listen();
        // The re-check after registering: without it, a change made between
        // the first attempt and `listen` would notify nobody (G5).
        value = match attempt(value) {
            Step::Done(done) => return Ok(done),
            Step::Retry(value) => value,
        };
        match deadline {
            None => listener.wait(),
            Some(deadline) => {
                if listener.wait_deadline(deadline).is_none() {
                    return match attempt(value) {
                        Step::Done(done) => Ok(done),
                        Step::Retry(value) => Err(value),
                    };
                }
            }
        }
    }
}

/// The async form of [`block_on`] without a deadline. Cancel-safe as long as
/// `attempt` is: nothing is held between polls but the value and a listener,
/// and dropping a notified listener passes its notification on.
pub(crate) async fn wait_async<T, R>(
    event: &Event,
    mut value: T,
    mut attempt: impl FnMut(T) -> Step<T, R>,
) -> R {
    loop {
        value = match attempt(value) {
            Step::Done(done) => return done,
            Step::Retry(value) => value,
        };
        let listener = event.listen();
        value = match attempt(value) {
            Step::Done(done) => return done,
            Step::Retry(value) => value,
        };
        listener.await;
    }
}
