//! A blocking batch take refused for `max == 0` panics at the caller's
//! line, not inside the crate (`#[track_caller]` through the batch loop).
//!
//! One test in this binary: it sets the process's panic hook.

use coalescing_queue::CoalescingQueue;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where the last panic was raised: `file:line`.
static LOCATION: Mutex<Option<String>> = Mutex::new(None);

/// Runs `body`, which must panic, and returns where it panicked.
fn panic_location(body: impl FnOnce()) -> String {
    *LOCATION.lock().unwrap() = None;
    assert!(catch_unwind(AssertUnwindSafe(body)).is_err(), "no panic");
    LOCATION.lock().unwrap().take().expect("a location")
}

#[test]
fn a_zero_max_panics_at_the_caller() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()));
        *LOCATION.lock().unwrap() = location;
    }));
    let q = Arc::new(CoalescingQueue::<u32, String>::new(4));
    q.offer_key(1).unwrap();
    let mut batch = Vec::new();
    let linger = Duration::ZERO;
    let locations = [
        panic_location(|| {
            q.take_batch(&mut batch, 0, linger);
        }),
        panic_location(|| {
            q.take_batch_timeout(&mut batch, 0, linger, linger);
        }),
        panic_location(|| drop(q.take_batch_leased(0, linger))),
        panic_location(|| drop(q.take_batch_leased_timeout(0, linger, linger))),
        panic_location(|| drop(q.take_batch_leased_owned(0, linger))),
        panic_location(|| drop(q.take_batch_leased_owned_timeout(0, linger, linger))),
    ];
    let _ = std::panic::take_hook();
    for location in locations {
        assert!(
            location.starts_with(file!()),
            "the panic points at {location}, not at the caller in {}",
            file!()
        );
    }
    assert_eq!(q.len(), 1, "nothing was taken");
}
