//! The start times of the leases still out, for `Stats::oldest_lease_age`.
//!
//! Touched once when a lease (or a whole batch) starts and once when it ends,
//! never by offers or plain takes. A short `std` mutex: nothing inside it
//! waits, and it holds no loom point, so it is invisible to the models.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Identifies the leases started together (one lease, or one batch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticket(u64);

#[derive(Debug, Default)]
pub(crate) struct LeaseClock {
    inner: Mutex<Tickets>,
}

#[derive(Debug, Default)]
struct Tickets {
    next: u64,
    /// Ticket -> (start, leases of it still out). Tickets rise with time, so
    /// the first entry is the oldest.
    out: BTreeMap<u64, (Instant, usize)>,
}

impl LeaseClock {
    /// Records `count` leases starting now.
    pub(crate) fn start(&self, count: usize) -> Ticket {
        let mut tickets = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let ticket = tickets.next;
        tickets.next += 1;
        if count > 0 {
            tickets.out.insert(ticket, (Instant::now(), count));
        }
        Ticket(ticket)
    }

    /// Records that `count` leases of `ticket` ended.
    pub(crate) fn end(&self, ticket: Ticket, count: usize) {
        let mut tickets = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, left)) = tickets.out.get_mut(&ticket.0) {
            *left = left.saturating_sub(count);
            if *left == 0 {
                tickets.out.remove(&ticket.0);
            }
        }
    }

    pub(crate) fn oldest_age(&self) -> Option<Duration> {
        let tickets = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (_, (started, _)) = tickets.out.first_key_value()?;
        Some(started.elapsed())
    }
}
