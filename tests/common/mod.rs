//! Helpers shared by the threaded tests.

use crossbeam_channel::{bounded, RecvTimeoutError, Sender};
use std::time::Duration;

/// Turns a hang into a failure: if it is not dropped within `limit`, it
/// prints what hung and aborts the test process (a blocked thread cannot be
/// unwound, and a scoped test would otherwise wait for it for ever).
pub struct Watchdog {
    _alive: Sender<()>,
}

impl Watchdog {
    pub fn new(limit: Duration, what: &'static str) -> Self {
        let (alive, rx) = bounded::<()>(0);
        std::thread::spawn(move || {
            if rx.recv_timeout(limit) == Err(RecvTimeoutError::Timeout) {
                eprintln!("watchdog: {what} did not finish within {limit:?} (lost wake-up?)");
                std::process::abort();
            }
        });
        Self { _alive: alive }
    }
}
