//! A shuttle-visible stand-in for `event_listener::Event` (`cfg(shuttle)`).
//!
//! event-listener parks OS threads, which shuttle cannot see or schedule, so
//! under shuttle the waiter is a `shuttle::sync::Mutex` over the list of
//! listeners plus a `Condvar`, with the interface and the semantics the crate
//! relies on: `listen` registers a listener at the tail; `notify_additional(n)`
//! notifies the `n` oldest listeners not yet notified; `notify(n)` tops the
//! notified listeners up to `n`; a notified listener is woken once (blocking
//! `wait` or `.await`), and one dropped while notified but not woken passes
//! its notification on to the next listener. The same listen / re-check /
//! wait shape of `src/wait.rs` therefore runs unchanged under shuttle.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use shuttle::sync::{Condvar, Mutex, MutexGuard};
use std::sync::Arc;
use std::time::Instant;

/// Wakes listeners; see the module docs.
pub(crate) struct Event {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    woken: Condvar,
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// Registered listeners, oldest first.
    listeners: Vec<Slot>,
}

struct Slot {
    id: u64,
    notified: bool,
    waker: Option<Waker>,
}

impl State {
    /// Notifies up to `count` of the oldest listeners not yet notified.
    fn notify_unnotified(&mut self, mut count: usize) {
        for slot in self.listeners.iter_mut().filter(|slot| !slot.notified) {
            if count == 0 {
                break;
            }
            slot.notified = true;
            if let Some(waker) = slot.waker.take() {
                waker.wake();
            }
            count -= 1;
        }
    }
}

impl Event {
    pub(crate) fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                woken: Condvar::new(),
            }),
        }
    }

    pub(crate) fn listen(&self) -> EventListener {
        let mut state = self.inner.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.listeners.push(Slot {
            id,
            notified: false,
            waker: None,
        });
        EventListener {
            inner: self.inner.clone(),
            id,
            done: false,
        }
    }

    /// Notifies `count` more listeners (the ordering is the caller's: every
    /// shuttle operation is sequentially consistent anyway).
    pub(crate) fn notify_additional_relaxed(&self, count: usize) {
        self.notify_additional(count);
    }

    pub(crate) fn notify_additional(&self, count: usize) {
        let mut state = self.inner.lock();
        state.notify_unnotified(count);
        drop(state);
        self.inner.woken.notify_all();
    }

    /// Notifies listeners until `count` of them are notified.
    pub(crate) fn notify(&self, count: usize) {
        let mut state = self.inner.lock();
        let already = state.listeners.iter().filter(|slot| slot.notified).count();
        state.notify_unnotified(count.saturating_sub(already));
        drop(state);
        self.inner.woken.notify_all();
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One registration on an [`Event`].
pub(crate) struct EventListener {
    inner: Arc<Inner>,
    id: u64,
    /// Woken (its notification consumed) or never to be woken again.
    done: bool,
}

impl EventListener {
    /// Consumes this listener's notification if it has one.
    fn take_notification(&mut self, state: &mut State) -> bool {
        let Some(at) = state.listeners.iter().position(|slot| slot.id == self.id) else {
            return false;
        };
        if !state.listeners[at].notified {
            return false;
        }
        state.listeners.remove(at);
        self.done = true;
        true
    }
}

/// The blocking half of event-listener's `Listener` trait.
pub(crate) trait Listener {
    /// Blocks until notified.
    fn wait(self);
    /// Not modelled: shuttle has no clock (the models use no timeouts).
    fn wait_deadline(self, deadline: Instant) -> Option<()>;
}

impl Listener for EventListener {
    fn wait(mut self) {
        let inner = self.inner.clone();
        let mut state = inner.lock();
        while !self.take_notification(&mut state) {
            state = inner
                .woken
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    fn wait_deadline(self, _deadline: Instant) -> Option<()> {
        panic!("timeouts are not modelled under shuttle: use the blocking, async or try forms")
    }
}

impl Future for EventListener {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let inner = self.inner.clone();
        let mut state = inner.lock();
        if self.take_notification(&mut state) {
            return Poll::Ready(());
        }
        let id = self.id;
        if let Some(slot) = state.listeners.iter_mut().find(|slot| slot.id == id) {
            slot.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for EventListener {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut state = self.inner.lock();
        let Some(at) = state.listeners.iter().position(|slot| slot.id == self.id) else {
            return;
        };
        if state.listeners.remove(at).notified {
            // Notified but never woken: pass the notification on.
            state.notify_unnotified(1);
            drop(state);
            self.inner.woken.notify_all();
        }
    }
}
