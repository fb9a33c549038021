//! What users of tokio's and crossbeam's channels expect, checked here: an
//! error's `Debug` says its kind.

use coalescing_queue::CoalescingQueue;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A payload that is not `Debug`.
struct NoDebug;

/// The message of a caught panic.
fn message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

// ----- an error's Debug says its kind -----

#[test]
fn unwrap_of_a_closed_offer_says_closed() {
    let q = CoalescingQueue::<u32, NoDebug>::new(4);
    q.close();
    let offer = catch_unwind(AssertUnwindSafe(|| {
        q.offer_key(1).unwrap();
    }))
    .unwrap_err();
    let text = message(offer);
    assert!(text.contains("Closed"), "{text}");
    let item = catch_unwind(AssertUnwindSafe(|| {
        q.offer(NoDebug).unwrap();
    }))
    .unwrap_err();
    let text = message(item);
    assert!(text.contains("Closed"), "{text}");
    let take = catch_unwind(AssertUnwindSafe(|| {
        q.take().unwrap();
    }))
    .unwrap_err();
    let text = message(take);
    assert!(text.contains("Closed"), "{text}");
}
