//! Memory report: `cargo run --release --example memory`.
//!
//! A counting global allocator measures, for the crate and each baseline of
//! `benches/baselines` (same key type, same hasher):
//!
//! * bytes per pending key with 1,000,000 distinct keys pending, in a queue
//!   of capacity 2^20 (everything the design allocated, the pre-sized ring
//!   and map included, divided by 1M);
//! * bytes added by 1,000,000 duplicate offers (each pending key offered
//!   once more); designs without dedupe queue them as new entries until
//!   full, which the "dups queued" column shows;
//! * allocations per offer in steady state: after draining and a warm-up,
//!   100,000 offer/take cycles of new keys.
//!
//! Bytes are the sizes requested from the allocator (malloc rounds up a
//! little more: a 120-byte message is a 128-byte chunk).
//!
//! Two more rows measure the crate's compact store with values
//! (`Valued<Compact>`, the same key with a `u64` or a `[u64; 4]` value,
//! latest wins): every offer carries a new value, so each duplicate offer
//! writes its value into the pending one.

#[path = "../benches/baselines/mod.rs"]
mod baselines;

use baselines::{key, Crate, CrateGeneral, Dash, Design, Eager, Key, Message, MutexQ, Ported, Raw};
use coalescing_queue::{CoalescingQueue, Compact, CompactKey, Entry, Offered, Valued};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees are passed on as they are; the
// counters on the side touch no memory the allocator hands out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        LIVE_BYTES.fetch_add(layout.size() as isize, Relaxed);
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        LIVE_BYTES.fetch_add(layout.size() as isize, Relaxed);
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Relaxed);
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        LIVE_BYTES.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE_BYTES.load(Relaxed)
}
fn allocs() -> usize {
    ALLOCS.load(Relaxed)
}

const CAPACITY: usize = 1 << 20;
const KEYS: u64 = 1_000_000;
const WARM_UP: u64 = 10_000;
const CYCLES: u64 = 100_000;

/// A value for the valued rows: the n-th one, and the row's name.
trait Value: CompactKey + Send + Sync {
    const ROW: &'static str;
    fn nth(n: u64) -> Self;
}

impl Value for u64 {
    const ROW: &'static str = "crate, value u64";
    fn nth(n: u64) -> Self {
        n
    }
}

impl Value for [u64; 4] {
    const ROW: &'static str = "crate, value [u64; 4]";
    fn nth(n: u64) -> Self {
        [n, !n, n.rotate_left(17), n ^ 0x9e37_79b9_7f4a_7c15]
    }
}

/// The values handed out so far: each offer gets a new one, duplicates
/// included. Relaxed: a counter, one thread.
static VALUES: AtomicU64 = AtomicU64::new(0);

/// The compact valued store: key `Key`, value `P`, latest wins.
struct CrateValued<P: Value>(CoalescingQueue<(Key, P), Box<Message>, Valued<Compact>>);

impl<P: Value> Design for CrateValued<P> {
    const NAME: &'static str = P::ROW;
    const DEDUPES: bool = true;
    type Pending = (Key, P);
    type Out = Entry<(Key, P), Box<Message>>;

    fn with_capacity(capacity: usize) -> Self {
        CrateValued(CoalescingQueue::new(capacity))
    }
    fn prepare(key: Key) -> (Key, P) {
        (key, P::nth(VALUES.fetch_add(1, Relaxed)))
    }
    fn try_offer(&self, pair: (Key, P)) -> Result<bool, (Key, P)> {
        match self.0.try_offer_key(pair) {
            Ok(Offered::Enqueued) => Ok(true),
            Ok(Offered::Coalesced) => Ok(false),
            Err(e) => Err(e.into_inner()),
        }
    }
    fn try_take(&self) -> Option<Self::Out> {
        self.0.try_take().ok()
    }
    fn take_batch(&self, out: &mut Vec<Self::Out>, max: usize) -> usize {
        // As the `crate` design: `take_batch` blocks for its first entry.
        if self.0.is_empty() {
            return 0;
        }
        self.0.take_batch(out, max, Duration::ZERO)
    }
}

struct Row {
    name: &'static str,
    construct_bytes: isize,
    per_key: f64,
    dup_bytes: isize,
    dup_queued: u64,
    dup_allocs: usize,
    steady_allocs_per_offer: f64,
    freed: bool,
    secs: f64,
}

fn measure<D: Design>() -> Row {
    let t0 = Instant::now();
    let before = live();
    let q = D::with_capacity(CAPACITY);
    let construct_bytes = live() - before;

    // 1M distinct pending keys.
    for i in 0..KEYS {
        q.try_offer(D::prepare(key(i)))
            .ok()
            .expect("room for 1M keys");
    }
    let per_key = (live() - before) as f64 / KEYS as f64;

    // 1M duplicate offers: each pending key once more.
    let (b, a) = (live(), allocs());
    let mut dup_queued = 0;
    for i in 0..KEYS {
        if let Ok(true) = q.try_offer(D::prepare(key(i))) {
            dup_queued += 1;
        }
    }
    let dup_bytes = live() - b;
    let dup_allocs = allocs() - a;

    // Steady state: drain, warm up, then count allocations per offer over
    // offer/take cycles of new keys.
    while q.try_take().is_some() {}
    let mut next = 10 * KEYS;
    for _ in 0..WARM_UP {
        q.try_offer(D::prepare(key(next))).ok().expect("room");
        q.try_take().expect("an entry");
        next += 1;
    }
    let a = allocs();
    for _ in 0..CYCLES {
        q.try_offer(D::prepare(key(next))).ok().expect("room");
        std::hint::black_box(q.try_take().expect("an entry"));
        next += 1;
    }
    let steady_allocs_per_offer = (allocs() - a) as f64 / CYCLES as f64;

    drop(q);
    Row {
        name: D::NAME,
        construct_bytes,
        per_key,
        dup_bytes,
        dup_queued,
        dup_allocs,
        steady_allocs_per_offer,
        freed: live() == before,
        secs: t0.elapsed().as_secs_f64(),
    }
}

fn main() {
    // Let std set up whatever it allocates lazily before counting.
    let _ = std::thread::available_parallelism();
    println!(
        "memory: key = 32 bytes, {KEYS} distinct pending keys, capacity {CAPACITY}, hasher foldhash::fast::RandomState"
    );
    let rows = [
        measure::<Crate>(),
        measure::<CrateGeneral>(),
        measure::<CrateValued<u64>>(),
        measure::<CrateValued<[u64; 4]>>(),
        measure::<MutexQ>(),
        measure::<Ported>(),
        measure::<Dash>(),
        measure::<Raw>(),
        measure::<Eager>(),
    ];
    println!();
    println!(
        "| design | B/pending key @1M | of which pre-sized at build | B added by 1M dup offers | dups queued as new | allocs by dup offers | allocs/offer steady | all freed | time |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|---:|");
    for r in &rows {
        println!(
            "| {} | {:.1} | {:.1} | {} | {} | {} | {:.3} | {} | {:.1}s |",
            r.name,
            r.per_key,
            r.construct_bytes as f64 / KEYS as f64,
            r.dup_bytes,
            r.dup_queued,
            r.dup_allocs,
            r.steady_allocs_per_offer,
            if r.freed { "yes" } else { "NO" },
            r.secs,
        );
    }
    let c = &rows[0];
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!();
    println!("targets, crate:");
    println!(
        "  <= 80 B per pending key:       {:.1} B  -> {}",
        c.per_key,
        verdict(c.per_key <= 80.0)
    );
    println!(
        "  0 B added by 1M duplicates:    {} B  -> {}",
        c.dup_bytes,
        verdict(c.dup_bytes == 0)
    );
    println!(
        "  0 allocations per offer:       {:.3}  -> {}",
        c.steady_allocs_per_offer,
        verdict(c.steady_allocs_per_offer == 0.0)
    );
    println!();
    println!(
        "note: designs without dedupe ({}, {}) fill the {} free slots with duplicates, then refuse the rest as Full; \
         with room, eager would add ~{} B per duplicate offer.",
        Raw::NAME,
        Eager::NAME,
        CAPACITY as u64 - KEYS,
        core::mem::size_of::<baselines::Message>(),
    );
    let added = |name: &str| {
        let row = rows.iter().find(|r| r.name == name).expect("a valued row");
        row.per_key - c.per_key
    };
    println!(
        "note: a value adds its words and a guard word to every table entry: \
         +{:.1} B per pending key for a u64, +{:.1} B for a [u64; 4].",
        added(<u64 as Value>::ROW),
        added(<[u64; 4] as Value>::ROW),
    );
}
