//! `try_build` reports a refused allocation of the key table as
//! `BuildError::OutOfMemory`, whichever of its arrays is refused, instead of
//! aborting. A global allocator refuses, on request, the n-th large
//! allocation (the probe of the whole size, then each array of the table
//! and of its cells); the ring's own allocation, which cannot fail softly,
//! is never refused.
//!
//! One test in this binary: the allocator's switches are global.

use coalescing_queue::{BuildError, Builder, CoalescingQueue, Compact};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

/// Allocations at least this large are counted (the table's arrays at the
/// capacity below are; the waiters' and counters' are not).
const LARGE: usize = 16 << 10;
const CAPACITY: usize = 1 << 14;
/// A pass-through item whose slot size tells the ring's allocation apart.
type Item = [u8; 200];

struct Refusing;

/// Counting large allocations.
static ARMED: AtomicBool = AtomicBool::new(false);
/// Large allocations seen since armed.
static SEEN: AtomicUsize = AtomicUsize::new(0);
/// The large allocation (by its number since armed) to refuse; `usize::MAX`: none.
static REFUSE: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Never refused: the ring's size.
static SPARE: AtomicUsize = AtomicUsize::new(usize::MAX);
/// The sizes seen since armed (the first 64).
static SIZES: [AtomicUsize; 64] = [const { AtomicUsize::new(0) }; 64];

// SAFETY: forwards to `System`, or returns null (a refusal), which the
// `GlobalAlloc` contract allows.
unsafe impl GlobalAlloc for Refusing {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= LARGE && ARMED.load(SeqCst) {
            let n = SEEN.fetch_add(1, SeqCst);
            if let Some(size) = SIZES.get(n) {
                size.store(layout.size(), SeqCst);
            }
            if n == REFUSE.load(SeqCst) && layout.size() != SPARE.load(SeqCst) {
                return std::ptr::null_mut();
            }
        }
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: allocated by `System` above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Refusing = Refusing;

/// Builds with the `refuse`-th large allocation refused (none: `usize::MAX`);
/// returns the outcome and how many large allocations were made.
fn build<S>(
    builder: impl Fn() -> Builder<u32, Item, S>,
    refuse: usize,
) -> (Result<(), BuildError>, usize)
where
    S: coalescing_queue::KeyStore<u32>,
{
    let builder = builder();
    SEEN.store(0, SeqCst);
    REFUSE.store(refuse, SeqCst);
    ARMED.store(true, SeqCst);
    let built = builder.try_build();
    ARMED.store(false, SeqCst);
    let seen = SEEN.load(SeqCst);
    (built.map(drop), seen)
}

fn every_table_allocation_refused_is_an_error<S: coalescing_queue::KeyStore<u32>>(
    store: &str,
    builder: impl Fn() -> Builder<u32, Item, S>,
) {
    // Unrefused: the large allocations, in order.
    let (built, count) = build(&builder, usize::MAX);
    built.expect("builds");
    let sizes: Vec<usize> = SIZES[..count].iter().map(|s| s.load(SeqCst)).collect();
    // The ring's slot: a stamp word and the entry (crossbeam's layout).
    let ring = CAPACITY * std::mem::size_of::<(usize, coalescing_queue::Entry<u32, Item>)>();
    assert!(
        sizes.contains(&ring),
        "{store}: no ring of {ring} bytes in {sizes:?}"
    );
    SPARE.store(ring, SeqCst);
    let mut refused = 0;
    for (n, &size) in sizes.iter().enumerate() {
        if size == ring {
            continue;
        }
        let (built, _) = build(&builder, n);
        assert!(
            matches!(built, Err(BuildError::OutOfMemory { .. })),
            "{store}: allocation {n} of {sizes:?} refused, got {built:?}"
        );
        refused += 1;
    }
    // The probe, and the table's and the cells' arrays that are large here.
    assert!(refused >= 4, "{store}: only {refused} of {sizes:?} refused");
    SPARE.store(usize::MAX, SeqCst);
}

#[test]
fn a_refused_table_allocation_is_out_of_memory() {
    every_table_allocation_refused_is_an_error("compact", || {
        Builder::<u32, Item, Compact>::new().capacity(CAPACITY)
    });
    every_table_allocation_refused_is_an_error("general", || {
        CoalescingQueue::<u32, Item>::builder().capacity(CAPACITY)
    });
}
