//! Memory is fixed at build: after a queue is built, no sequence of
//! operations allocates (in the key store, the ring, or anywhere else the
//! operations reach). Every scenario runs at 100% fill (capacity C, C
//! distinct entries pending) for millions of operations, and a counting
//! global allocator checks that nothing is allocated inside the measured
//! windows.
//!
//! How it measures:
//! * The allocator counts only on a thread that has opened a window (a
//!   thread-local flag), and the tests take turns (one lock), so a window
//!   sees its own scenario's allocations and never the harness's or another
//!   test's. Each scenario runs on one thread, from build to the last check.
//! * Whatever the test itself uses inside a window is allocated before the
//!   window opens: pools of keys and items (moved in, handed back by takes,
//!   their buffers reused for the next key or item), the FIFO model (a
//!   `VecDeque` at full capacity) and the batch `Vec` (`take_batch` into
//!   reserved capacity). A window closes while the test refills its pools (a
//!   coalesced offer or an ack drops the key or item it consumed) or builds
//!   the next queues, and opens again; the queue is not touched in between.
//! * Before its first window, each test thread runs every operation once on
//!   a throwaway queue (`warm_up`): what std and the crate set up lazily once
//!   per *thread* is not what this file is about; anything set up lazily per
//!   *queue* is counted.
//! * A leased take of a key hands out a clone of the stored key. For
//!   `String` keys that clone is one allocation made by `String::clone` (user
//!   code, the key's own buffer), so the lease scenarios expect exactly one
//!   allocation per leased key and count everything else; `Done` keys are
//!   `Copy` and expect none.
//! * Nothing is lost: a model of the FIFO checks every entry taken (plain or
//!   leased) against the one expected, and at the end every key and item
//!   offered was delivered or is still pending (drained and checked).
//!
//! Scenarios (capacities 1, 1024 and 2^16; key types `String` and `Done`,
//! and both with a value, in the valued stores: `(String, [u64; 2])` in
//! `Valued`, `(Done, [u64; 2])` in `Valued<Compact>`, every offer with a new
//! value, so that duplicates, dirty re-offers and nacks all merge one):
//! a. `churn`: take one, offer a new distinct key; a duplicate offer of a
//!    pending key and a refused offer of a new key (full) in between; every
//!    64th take is a `take_batch`.
//! b. `leases`: lease, re-offer it while leased (dirty), ack (queued again);
//!    lease + nack (every other one re-offered while leased: dirty);
//!    lease + drop; lease + ack for good; offer a new key.
//!    (Plain leases only: `take_batch_leased` builds its `LeaseBatch` in a
//!    `Vec` of its own, an allocation per batch that is not the store's.)
//! c. `items`: pass-through items mixed with keys (one entry in four, at
//!    random), taken, leased and nacked, leases dropped, one lease in eight
//!    acked and its slot refilled; duplicates of pending keys.
//! d. `close`: two queues built before the window; the first is filled,
//!    closed (offers refused, values handed back) and drained with `take`,
//!    `try_take` and `take_batch`; the second is filled, half of it leased,
//!    closed, one lease nacked after close and taken again, the rest taken,
//!    every lease acked, then `close_and_wait`.
//!
//! e. `delays` (a queue with retries on a manual clock): lease + nack with
//!    a delay, re-offered while delayed, the clock moved, leased again and
//!    nacked with the backoff, the clock moved, leased and acked (every
//!    other one re-offered in flight); at the end a long delay released by
//!    `close`.
//!
//! `MEMORY_FIXED_ROUNDS=n` sets the rounds of every scenario (a round is
//! 2^16 steps; for `close`, 2^16 entries through fresh queues). By default
//! release builds run about 2M operations per scenario and capacity (fewer
//! at capacity 1 for `close`), debug builds one round.
//! `cargo test --release --test memory_fixed -- --nocapture` prints the
//! counts.

use coalescing_queue::{
    Backoff, Builder, CoalescingQueue, DefaultHashBuilder, Entry, Lease, OfferError, Offered,
    TakeError, TryOfferError, TryTakeError, Valued,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt::{self, Debug, Write as _};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

// ----- the counting allocator -----

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static REALLOCS: AtomicUsize = AtomicUsize::new(0);
/// The sizes counted since `Meter::new`, for the failure message (which
/// table grew?): up to `SIZES` distinct sizes, each with its count; a size
/// of 0 marks a free slot. Allocations of `SKIP_SIZE` (the key clones a
/// lease hands out) are counted but not listed.
const SIZES: usize = 8;
static SIZE: [AtomicUsize; SIZES] = [const { AtomicUsize::new(0) }; SIZES];
static SIZE_COUNT: [AtomicUsize; SIZES] = [const { AtomicUsize::new(0) }; SIZES];
static SKIP_SIZE: AtomicUsize = AtomicUsize::new(0);

std::thread_local! {
    /// Set while this thread has a window open.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread has a window open. A const-initialized `Cell<bool>`
/// has no destructor and no lazy initialization: reading it never
/// allocates, so the allocator may call this.
fn counting() -> bool {
    COUNTING.try_with(Cell::get).unwrap_or(false)
}

fn note(counter: &AtomicUsize, size: usize) {
    if !counting() {
        return;
    }
    counter.fetch_add(1, Relaxed);
    if size == 0 || size == SKIP_SIZE.load(Relaxed) {
        return;
    }
    for (slot, count) in SIZE.iter().zip(&SIZE_COUNT) {
        let seen = match slot.compare_exchange(0, size, Relaxed, Relaxed) {
            Ok(_) => size,
            Err(seen) => seen,
        };
        if seen == size {
            count.fetch_add(1, Relaxed);
            return;
        }
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees are passed on as they are; the
// counters on the side (atomics and a thread-local flag that never
// allocates) touch no memory the allocator hands out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(&ALLOCS, layout.size());
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(&ALLOCS, layout.size());
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(&REALLOCS, new_size);
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The tests take turns, so that one window counts one scenario.
static SERIAL: Mutex<()> = Mutex::new(());

/// Measured windows on this thread, summed.
struct Meter {
    open: bool,
    base: (usize, usize),
    allocs: u64,
    reallocs: u64,
    windows: u64,
}

impl Meter {
    /// `skip_size`: an allocation size not to list (still counted).
    fn new(skip_size: usize) -> Self {
        for (slot, count) in SIZE.iter().zip(&SIZE_COUNT) {
            slot.store(0, Relaxed);
            count.store(0, Relaxed);
        }
        SKIP_SIZE.store(skip_size, Relaxed);
        Self {
            open: false,
            base: (0, 0),
            allocs: 0,
            reallocs: 0,
            windows: 0,
        }
    }

    fn open(&mut self) {
        assert!(!self.open, "window already open");
        self.base = (ALLOCS.load(Relaxed), REALLOCS.load(Relaxed));
        self.open = true;
        COUNTING.with(|c| c.set(true));
    }

    fn close(&mut self) {
        COUNTING.with(|c| c.set(false));
        assert!(self.open, "window not open");
        self.open = false;
        self.allocs += (ALLOCS.load(Relaxed) - self.base.0) as u64;
        self.reallocs += (REALLOCS.load(Relaxed) - self.base.1) as u64;
        self.windows += 1;
    }

    /// "size B x count" for each size listed.
    fn sizes(&self) -> String {
        let listed: Vec<String> = SIZE
            .iter()
            .zip(&SIZE_COUNT)
            .map(|(size, count)| (size.load(Relaxed), count.load(Relaxed)))
            .take_while(|&(size, _)| size != 0)
            .map(|(size, count)| format!("{size} B x{count}"))
            .collect();
        if listed.is_empty() {
            "none".to_string()
        } else {
            listed.join(", ")
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        let _ = COUNTING.try_with(|c| c.set(false));
    }
}

// ----- key types -----

/// Pass-through items: built before the window, recycled after a take.
type Item = Box<[u8; 64]>;

type Queue<T> = CoalescingQueue<<T as Keys>::K, Item, <T as Keys>::S>;

/// What a scenario needs of a key type: its queue, and the n-th key.
///
/// `S` is the key store: the general one (a `BuildHasher`) for `String`
/// keys, the compact one for `Done` keys.
trait Keys {
    type K: Clone + Debug + PartialEq;
    type S: coalescing_queue::KeyStore<Self::K>;
    const NAME: &'static str;
    /// Allocations one `K::clone` makes (a leased take hands out a clone),
    /// and their size.
    const CLONE_ALLOCS: u64;
    const CLONE_SIZE: usize;
    fn build(capacity: usize) -> Queue<Self>;
    /// The same queue with retries, on a manual clock.
    fn build_retrying(capacity: usize) -> Queue<Self>;
    /// A key to be overwritten later; built before the window.
    fn blank() -> Self::K;
    /// The n-th key, written into `spare` (a blank, or a key a take handed
    /// back) without allocating.
    fn key(n: u64, spare: Self::K) -> Self::K;
    /// The `n` of `key`.
    fn id(key: &Self::K) -> u64;
}

/// The backoff of the `delays` scenario: 1 ms doubling to 8 ms.
const BACKOFF_MAX: Duration = Duration::from_millis(8);

/// A queue with retries on a manual clock (the `delays` scenario).
fn retrying<K, S: coalescing_queue::KeyStore<K>>(
    builder: Builder<K, Item, S>,
    capacity: usize,
) -> CoalescingQueue<K, Item, S> {
    builder
        .capacity(capacity)
        .retries(Backoff::exponential(Duration::from_millis(1), BACKOFF_MAX))
        .manual_clock()
        .build()
}

/// `String` keys in the general store.
struct Strings;

/// "key-" and 20 digits: every `u64` fits, so a buffer never grows.
const KEY_LEN: usize = 24;

impl Keys for Strings {
    type K = String;
    type S = DefaultHashBuilder;
    const NAME: &'static str = "String";
    const CLONE_ALLOCS: u64 = 1;
    const CLONE_SIZE: usize = KEY_LEN;

    fn build(capacity: usize) -> Queue<Self> {
        CoalescingQueue::new(capacity)
    }

    fn build_retrying(capacity: usize) -> Queue<Self> {
        retrying(Builder::new(), capacity)
    }

    fn blank() -> String {
        String::with_capacity(KEY_LEN)
    }

    fn key(n: u64, mut spare: String) -> String {
        spare.clear();
        write!(spare, "key-{n:020}").expect("writing to a String");
        debug_assert_eq!(spare.len(), KEY_LEN);
        spare
    }

    fn id(key: &String) -> u64 {
        key[4..].parse().expect("a key of this test")
    }
}

/// A 32-byte `Copy` key: a "done" answer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct Done {
    id: u128,
    ts: u64,
    a: bool,
    b: bool,
}

const _: () = assert!(size_of::<Done>() == 32);

coalescing_queue::compact_key!(Done {
    id: u128,
    ts: u64,
    a: bool,
    b: bool
});

/// `Done` keys, in the compact store.
struct Dones;

impl Keys for Dones {
    type K = Done;
    type S = coalescing_queue::Compact;
    const NAME: &'static str = "Done";
    const CLONE_ALLOCS: u64 = 0;
    const CLONE_SIZE: usize = 0;

    fn build(capacity: usize) -> Queue<Self> {
        CoalescingQueue::<Done, Item, coalescing_queue::Compact>::new(capacity)
    }

    fn build_retrying(capacity: usize) -> Queue<Self> {
        retrying(Builder::new(), capacity)
    }

    fn blank() -> Done {
        Done {
            id: 0,
            ts: 0,
            a: false,
            b: false,
        }
    }

    fn key(n: u64, _spare: Done) -> Done {
        Done {
            id: (u128::from(n) << 64) | u128::from(!n),
            ts: n.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15,
            a: n & 1 == 1,
            b: n & 2 == 2,
        }
    }

    fn id(key: &Done) -> u64 {
        (key.id >> 64) as u64
    }
}

/// The value of the valued key types: its key's `n`, and a count that moves
/// on at every offer, so that every duplicate brings a new value to merge.
type Value = [u64; 2];

/// Offers made so far (the second word of each value). Relaxed: a count;
/// the tests take turns.
static VALUES: AtomicU64 = AtomicU64::new(0);

/// Key types of another `Keys` with a [`Value`], in the valued store over
/// that one's store (`Valued<Compact>` for `Done`, `Valued` for `String`),
/// latest wins. A key's id checks that its value is its own: a value left
/// behind in a reused entry, or merged into another key's, shows.
macro_rules! with_values {
    ($name:ident, $base:ty, $label:literal) => {
        struct $name;

        impl Keys for $name {
            type K = (<$base as Keys>::K, Value);
            type S = Valued<<$base as Keys>::S>;
            const NAME: &'static str = $label;
            const CLONE_ALLOCS: u64 = <$base as Keys>::CLONE_ALLOCS;
            const CLONE_SIZE: usize = <$base as Keys>::CLONE_SIZE;

            fn build(capacity: usize) -> Queue<Self> {
                CoalescingQueue::new(capacity)
            }

            fn build_retrying(capacity: usize) -> Queue<Self> {
                retrying(Builder::new(), capacity)
            }

            fn blank() -> Self::K {
                (<$base>::blank(), [0; 2])
            }

            fn key(n: u64, spare: Self::K) -> Self::K {
                let offer = VALUES.fetch_add(1, Relaxed);
                (<$base>::key(n, spare.0), [n, offer])
            }

            fn id(key: &Self::K) -> u64 {
                let n = <$base>::id(&key.0);
                assert_eq!(key.1[0], n, "key {n} delivered another key's value");
                n
            }
        }
    };
}

with_values!(StringValues, Strings, "String+value");
with_values!(DoneValues, Dones, "Done+value");

// ----- items, tags and the model -----

/// A model entry: a key's `n`, or an item's `n` with this bit set.
const ITEM: u64 = 1 << 63;
/// Keys that are offered only to be refused (full or closed): never pending.
const REFUSED: u64 = 1 << 62;

fn blank_item() -> Item {
    Box::new([0xa5; 64])
}

fn write_item(mut item: Item, n: u64) -> Item {
    item[..8].copy_from_slice(&n.to_le_bytes());
    item
}

fn item_id(item: &Item) -> u64 {
    u64::from_le_bytes(item[..8].try_into().expect("8 bytes"))
}

fn tag<T: Keys>(entry: &Entry<T::K, Item>) -> u64 {
    match entry {
        Entry::Key(key) => T::id(key),
        Entry::Item(item) => item_id(item) | ITEM,
    }
}

/// Values built before the window and moved in and out of the queue in it.
struct Pool<V> {
    values: Vec<V>,
}

impl<V> Pool<V> {
    fn new(capacity: usize) -> Self {
        Self {
            values: Vec::with_capacity(capacity),
        }
    }

    fn take(&mut self) -> V {
        self.values
            .pop()
            .expect("pool sized for what a window consumes")
    }

    fn put(&mut self, value: V) {
        // A push past the capacity would reallocate inside the window.
        assert!(
            self.values.len() < self.values.capacity(),
            "pool sized for what a window hands back"
        );
        self.values.push(value);
    }

    /// Outside the window only.
    fn refill(&mut self, target: usize, make: impl FnMut() -> V) {
        assert!(target <= self.values.capacity(), "pool too small");
        let missing = target.saturating_sub(self.values.len());
        self.values
            .extend(std::iter::repeat_with(make).take(missing));
    }
}

/// One scenario at one capacity: pools, the FIFO model and the counts.
struct Run<T: Keys> {
    scenario: &'static str,
    capacity: usize,
    keys: Pool<T::K>,
    items: Pool<Item>,
    /// Tags of the entries queued, in FIFO order (in-flight ones not
    /// included); never longer than the capacity, so it never grows.
    model: VecDeque<u64>,
    meter: Meter,
    started: Instant,
    ops: u64,
    next_key: u64,
    next_item: u64,
    next_refused: u64,
    /// New copies queued by offers.
    offered: u64,
    /// Copies gone for good: plain takes and acks that removed the entry.
    delivered: u64,
    /// Leased takes of a key (each hands out a clone of it).
    key_leases: u64,
    /// State of the scenario's pseudo-random choices (splitmix64).
    rng: u64,
}

impl<T: Keys> Run<T> {
    fn new(scenario: &'static str, capacity: usize, key_pool: usize, item_pool: usize) -> Self {
        Self {
            scenario,
            capacity,
            keys: Pool::new(key_pool),
            items: Pool::new(item_pool),
            model: VecDeque::with_capacity(capacity),
            meter: Meter::new(T::CLONE_SIZE),
            started: Instant::now(),
            ops: 0,
            next_key: 0,
            next_item: 0,
            next_refused: REFUSED,
            offered: 0,
            delivered: 0,
            key_leases: 0,
            rng: capacity as u64,
        }
    }

    /// A pseudo-random number (splitmix64): the same choices every run.
    fn roll(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Outside the window: tops the pools up.
    fn refill(&mut self, keys: usize, items: usize) {
        assert!(!self.meter.open);
        self.keys.refill(keys, T::blank);
        self.items.refill(items, blank_item);
    }

    fn queued(&mut self, tag: u64) {
        assert!(self.model.len() < self.model.capacity(), "model full");
        self.model.push_back(tag);
    }

    /// Offers a new key (never offered before); it must be queued.
    fn offer_key(&mut self, q: &Queue<T>, blocking: bool) {
        let n = self.next_key;
        self.next_key += 1;
        let key = T::key(n, self.keys.take());
        let result = if blocking {
            q.offer_key(key).ok()
        } else {
            q.try_offer_key(key).ok()
        };
        assert_eq!(result, Some(Offered::Enqueued), "key {n}");
        self.ops += 1;
        self.offered += 1;
        self.queued(n);
    }

    /// Offers a new item; it must be queued.
    fn offer_item(&mut self, q: &Queue<T>, blocking: bool) {
        let n = self.next_item;
        self.next_item += 1;
        let item = write_item(self.items.take(), n);
        let result = if blocking {
            q.offer(item).ok()
        } else {
            q.try_offer(item).ok()
        };
        assert_eq!(result, Some(()), "item {n}");
        self.ops += 1;
        self.offered += 1;
        self.queued(n | ITEM);
    }

    /// Offers key `n` again while it is pending (queued or in flight): it
    /// must be coalesced, even when the queue is full.
    fn offer_duplicate(&mut self, q: &Queue<T>, n: u64, blocking: bool) {
        let key = T::key(n, self.keys.take());
        let result = if blocking {
            q.offer_key(key).ok()
        } else {
            q.try_offer_key(key).ok()
        };
        assert_eq!(result, Some(Offered::Coalesced), "duplicate of key {n}");
        self.ops += 1;
    }

    /// Offers a new key to a full queue: refused, handed back.
    fn offer_refused(&mut self, q: &Queue<T>) {
        let n = self.next_refused;
        self.next_refused += 1;
        match q.try_offer_key(T::key(n, self.keys.take())) {
            Err(TryOfferError::Full(key)) => self.keys.put(key),
            other => panic!("key {n} offered to a full queue: {other:?}"),
        }
        self.ops += 1;
    }

    /// Offers to a closed queue a new key, a duplicate of `pending` (if
    /// any) and an item, in the try and blocking forms: all refused, each
    /// value handed back.
    fn offer_closed(&mut self, q: &Queue<T>, pending: Option<u64>) {
        let n = self.next_refused;
        self.next_refused += 1;
        for n in [Some(n), pending].into_iter().flatten() {
            match q.try_offer_key(T::key(n, self.keys.take())) {
                Err(TryOfferError::Closed(key)) => self.keys.put(key),
                other => panic!("key {n} offered after close: {other:?}"),
            }
            match q.offer_key(T::key(n, self.keys.take())) {
                Err(OfferError(key)) => self.keys.put(key),
                other => panic!("key {n} offered after close: {other:?}"),
            }
            self.ops += 2;
        }
        match q.try_offer(self.items.take()) {
            Err(TryOfferError::Closed(item)) => self.items.put(item),
            _ => panic!("item offered after close was not refused"),
        }
        match q.offer(self.items.take()) {
            Err(OfferError(item)) => self.items.put(item),
            _ => panic!("item offered after close was not refused"),
        }
        self.ops += 2;
    }

    /// An entry taken without a lease: the one the model expects; its key
    /// or item goes back to the pool.
    fn taken(&mut self, entry: Entry<T::K, Item>) {
        let tag = tag::<T>(&entry);
        assert_eq!(Some(tag), self.model.pop_front(), "FIFO order");
        self.ops += 1;
        self.delivered += 1;
        match entry {
            Entry::Key(key) => self.keys.put(key),
            Entry::Item(item) => self.items.put(item),
        }
    }

    /// An entry taken with a lease: the one the model expects. Returns its
    /// tag.
    fn leased(&mut self, entry: &Entry<T::K, Item>) -> u64 {
        let tag = tag::<T>(entry);
        assert_eq!(Some(tag), self.model.pop_front(), "FIFO order");
        self.ops += 1;
        if entry.is_key() {
            self.key_leases += 1;
        }
        tag
    }

    /// A lease ended and its entry was queued again (nack, drop, or an ack
    /// of a key offered while in flight).
    fn requeued(&mut self, tag: u64) {
        self.ops += 1;
        self.queued(tag);
    }

    /// A lease was acked and its entry is gone.
    fn acked(&mut self) {
        self.ops += 1;
        self.delivered += 1;
    }

    /// A pending key of the model near `at`, if any.
    fn pending_key(&self, at: usize) -> Option<u64> {
        let len = self.model.len();
        (0..2.min(len))
            .map(|i| self.model[(at + i) % len])
            .find(|tag| tag & ITEM == 0)
    }

    /// Outside the window: no entry lost or duplicated; drains `q` (if
    /// given) in the model's order.
    fn finish(mut self, q: Option<&Queue<T>>) -> Outcome {
        assert!(!self.meter.open);
        let pending = self.model.len() as u64;
        assert_eq!(
            self.offered,
            self.delivered + pending,
            "{}: offered = delivered + pending",
            self.scenario
        );
        if let Some(q) = q {
            assert_eq!(q.in_flight(), 0);
            assert_eq!(q.len() as u64, pending);
            while let Ok(entry) = q.try_take() {
                assert_eq!(Some(tag::<T>(&entry)), self.model.pop_front());
            }
            assert!(self.model.is_empty(), "entries lost");
            assert_eq!(q.pending_keys(), 0);
            assert_eq!(q.claimed_slots(), 0);
        }
        assert!(
            self.delivered > 0 && self.ops > 0,
            "the scenario did nothing"
        );
        Outcome {
            scenario: self.scenario,
            keys: T::NAME,
            capacity: self.capacity,
            ops: self.ops,
            windows: self.meter.windows,
            allocs: self.meter.allocs,
            reallocs: self.meter.reallocs,
            clones: self.key_leases * T::CLONE_ALLOCS,
            sizes: self.meter.sizes(),
            offered: self.offered,
            delivered: self.delivered,
            pending,
            secs: self.started.elapsed().as_secs_f64(),
        }
    }
}

struct Outcome {
    scenario: &'static str,
    keys: &'static str,
    capacity: usize,
    ops: u64,
    windows: u64,
    allocs: u64,
    reallocs: u64,
    /// Allocations expected from key clones handed out by leased takes.
    clones: u64,
    sizes: String,
    offered: u64,
    delivered: u64,
    pending: u64,
    secs: f64,
}

impl Outcome {
    /// Allocations other than the key clones leases hand out.
    fn extra(&self) -> i64 {
        self.allocs as i64 - self.clones as i64
    }

    fn ok(&self) -> bool {
        self.extra() == 0 && self.reallocs == 0
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<6} {:<12} capacity {:>5}: {:>8} ops in {:>5} windows ({:.2}s): \
             {} allocations + {} reallocations beyond {} key clones \
             (sizes: {}); offered {}, delivered {}, pending at end {} -> {}",
            self.scenario,
            self.keys,
            self.capacity,
            self.ops,
            self.windows,
            self.secs,
            self.extra(),
            self.reallocs,
            self.clones,
            self.sizes,
            self.offered,
            self.delivered,
            self.pending,
            if self.ok() { "ok" } else { "ALLOCATES" },
        )
    }
}

// ----- running -----

const CAPACITIES: [usize; 3] = [1, 1024, 1 << 16];
/// Steps per round (for `close`: entries per round).
const STEPS: usize = 1 << 16;
/// Entries a `take_batch` takes.
const BATCH: usize = 32;

fn rounds(release_default: u64) -> u64 {
    match std::env::var("MEMORY_FIXED_ROUNDS") {
        Ok(s) => s
            .parse::<u64>()
            .expect("MEMORY_FIXED_ROUNDS: a number of rounds")
            .max(1),
        Err(_) if cfg!(debug_assertions) => 1,
        Err(_) => release_default,
    }
}

/// Runs every operation once on a throwaway queue, so that what is set up
/// lazily once per thread is set up before the first window.
fn warm_up<T: Keys>() {
    let q = T::build(4);
    q.try_offer_key(T::key(0, T::blank())).unwrap();
    q.offer_key(T::key(1, T::blank())).unwrap();
    q.try_offer(blank_item()).unwrap();
    q.offer(blank_item()).unwrap();
    q.try_take().unwrap();
    q.take().unwrap();
    let lease = q.try_take_leased().unwrap();
    q.try_offer_key(T::key(1, T::blank())).unwrap();
    lease.nack();
    q.take_leased().unwrap().ack();
    drop(q.try_take_leased().unwrap());
    let mut batch = Vec::with_capacity(BATCH);
    q.take_batch(&mut batch, BATCH, Duration::ZERO);
    q.close();
    assert!(q.close_and_wait(Duration::ZERO));
    let q = T::build_retrying(4);
    q.try_offer_key(T::key(0, T::blank())).unwrap();
    q.try_take_leased().unwrap().nack_after(Duration::ZERO);
    q.advance_clock(Duration::from_millis(1));
    q.try_take_leased().unwrap().nack_backoff();
    q.close();
    let _ = q.stats();
}

fn check<T: Keys>(scenario: fn(usize, u64) -> Outcome, release_rounds: u64) {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    warm_up::<T>();
    let rounds = rounds(release_rounds);
    let outcomes: Vec<Outcome> = CAPACITIES
        .iter()
        .map(|&capacity| scenario(capacity, rounds))
        .collect();
    for outcome in &outcomes {
        println!("{outcome}");
    }
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.ok())
        .map(Outcome::to_string)
        .collect();
    assert!(
        failed.is_empty(),
        "operations allocated after build:\n{}",
        failed.join("\n")
    );
}

// ----- the scenarios -----

/// a. Take one, offer a new distinct key; a duplicate of a pending key and
/// a refused new key in between. The queue stays full throughout.
fn churn<T: Keys>(capacity: usize, rounds: u64) -> Outcome {
    let q = T::build(capacity);
    // Per round: a blank per duplicate (dropped when coalesced); taken keys
    // come back and are reused for the new ones.
    let target = capacity + STEPS + 1;
    let mut run = Run::<T>::new("churn", capacity, target + capacity + 1, 0);
    let mut batch = Vec::with_capacity(BATCH);
    let per_batch = BATCH.min(capacity);
    run.refill(target, 0);
    run.meter.open();
    for _ in 0..capacity {
        run.offer_key(&q, false);
    }
    for round in 0..rounds {
        if round > 0 {
            run.refill(target, 0);
            run.meter.open();
        }
        for step in 0..STEPS {
            if step % 64 == 63 {
                let n = q.take_batch(&mut batch, per_batch, Duration::ZERO);
                assert_eq!(n, per_batch);
                for entry in batch.drain(..) {
                    run.taken(entry);
                }
                for _ in 0..n {
                    run.offer_key(&q, false);
                }
            } else {
                let entry = if step % 2 == 0 {
                    q.try_take().expect("full")
                } else {
                    q.take().expect("full")
                };
                run.taken(entry);
                run.offer_key(&q, step % 4 == 1);
            }
            let n = run.model[step.wrapping_mul(7919) % run.model.len()];
            run.offer_duplicate(&q, n, step % 3 == 0);
            run.offer_refused(&q);
        }
        run.meter.close();
        assert_eq!((q.len(), q.pending_keys()), (capacity, capacity));
    }
    run.finish(Some(&q))
}

/// b. Leases at full capacity: lease, re-offer while leased (dirty), ack
/// (queued again); lease + nack, dirty every other step (a valued key's
/// nack then merges the leased value with the one offered); lease + drop;
/// lease + ack for good; offer a new key. (Plain leases:
/// `take_batch_leased` allocates its batch's `Vec`.)
fn leases<T: Keys>(capacity: usize, rounds: u64) -> Outcome {
    let q = T::build(capacity);
    // Per step a blank for each dirty re-offer (one or two) and one for the
    // new key; no key comes back (every take is leased, the store keeps the
    // key).
    let target = capacity + 3 * STEPS + 1;
    let mut run = Run::<T>::new("leases", capacity, target, 0);
    run.refill(target, 0);
    run.meter.open();
    for _ in 0..capacity {
        run.offer_key(&q, false);
    }
    for round in 0..rounds {
        if round > 0 {
            run.refill(target, 0);
            run.meter.open();
        }
        for step in 0..STEPS {
            // Offered again while in flight: the ack queues it again.
            let lease = q.try_take_leased().expect("full");
            let tag = run.leased(&lease);
            run.offer_duplicate(&q, tag, step % 2 == 0);
            lease.ack();
            run.requeued(tag);

            let lease = if step % 2 == 0 {
                q.take_leased().expect("full")
            } else {
                q.try_take_leased().expect("full")
            };
            let tag = run.leased(&lease);
            if step % 2 == 0 {
                run.offer_duplicate(&q, tag, false);
            }
            lease.nack();
            run.requeued(tag);

            let lease = q.try_take_leased().expect("full");
            let tag = run.leased(&lease);
            drop(lease);
            run.requeued(tag);

            // Acked for good, then a new key takes its slot.
            let lease = q.try_take_leased().expect("full");
            run.leased(&lease);
            lease.ack();
            run.acked();
            assert_eq!(q.in_flight(), 0);
            run.offer_key(&q, step % 2 == 1);
        }
        run.meter.close();
        assert_eq!((q.len(), q.pending_keys()), (capacity, capacity));
    }
    run.finish(Some(&q))
}

/// e. Delays, on a queue with retries and a manual clock: lease + nack
/// with a delay, a re-offer while it waits (coalesced, and merged into its
/// value), the clock moved past its due time, leased again (one attempt
/// more) and nacked with the backoff, the clock moved to the backoff's
/// maximum, leased again and acked (every other one offered again while in
/// flight, so the ack queues it once more); a new key takes an acked
/// key's slot; a lease nacked with a long delay is released by `close` at
/// the end. The delayed key joins the tail when the take after its due
/// time finds it, behind what was queued: the FIFO model's order.
fn delays<T: Keys>(capacity: usize, rounds: u64) -> Outcome {
    let q = T::build_retrying(capacity);
    // Per step a blank for the re-offer during the delay, one for the
    // dirty re-offer and one for the new key.
    let target = capacity + 3 * STEPS + 1;
    let mut run = Run::<T>::new("delays", capacity, target, 0);
    run.refill(target, 0);
    run.meter.open();
    for _ in 0..capacity {
        run.offer_key(&q, false);
    }
    for round in 0..rounds {
        if round > 0 {
            run.refill(target, 0);
            run.meter.open();
        }
        for step in 0..STEPS {
            let lease = q.try_take_leased().expect("full");
            let first = lease.attempt();
            let tag = run.leased(&lease);
            lease.nack_after(Duration::from_millis(1));
            run.requeued(tag);
            run.offer_duplicate(&q, tag, false);
            q.advance_clock(Duration::from_millis(1));

            let lease = if step % 2 == 0 {
                q.take_leased().expect("full")
            } else {
                q.try_take_leased().expect("full")
            };
            let tag = run.leased(&lease);
            if capacity == 1 {
                assert_eq!(lease.attempt(), first + 1, "one attempt more after a nack");
            }
            assert!(lease.nack_backoff() <= BACKOFF_MAX);
            run.requeued(tag);
            q.advance_clock(BACKOFF_MAX);

            let lease = q.try_take_leased().expect("full");
            if capacity == 1 {
                assert_eq!(
                    lease.attempt(),
                    first + 2,
                    "one attempt more after a backoff"
                );
            }
            let tag = run.leased(&lease);
            if step % 2 == 0 {
                run.offer_duplicate(&q, tag, false);
                lease.ack();
                run.requeued(tag);
            } else {
                lease.ack();
                run.acked();
                run.offer_key(&q, false);
            }
            assert_eq!(q.in_flight(), 0);
        }
        run.meter.close();
        assert_eq!((q.len(), q.pending_keys()), (capacity, capacity));
    }
    // A long delay ends at close: the key is queued at once.
    run.meter.open();
    let lease = q.try_take_leased().expect("full");
    let tag = run.leased(&lease);
    lease.nack_after(Duration::from_secs(1000));
    run.requeued(tag);
    q.close();
    run.meter.close();
    assert_eq!(q.stats().delayed, 0);
    run.finish(Some(&q))
}

/// c. Pass-through items among the keys (one entry in four, chosen at
/// random): taken, leased and nacked, leases dropped, one in eight acked
/// and its slot refilled with an entry of its kind; duplicates of pending
/// keys.
fn items<T: Keys>(capacity: usize, rounds: u64) -> Outcome {
    let q = T::build(capacity);
    // A round drops at most one blank per step (duplicates) plus one key or
    // item per ack; taken keys and items come back. Either kind may end up
    // filling the queue.
    let key_target = 2 * capacity + 2 * STEPS + 1;
    let item_target = 2 * capacity + STEPS + 1;
    let mut run = Run::<T>::new(
        "items",
        capacity,
        key_target + capacity + 1,
        item_target + capacity + 1,
    );
    run.refill(key_target, item_target);
    run.meter.open();
    for _ in 0..capacity {
        if run.roll() % 4 == 0 {
            run.offer_item(&q, false);
        } else {
            run.offer_key(&q, false);
        }
    }
    for round in 0..rounds {
        if round > 0 {
            run.refill(key_target, item_target);
            run.meter.open();
        }
        for step in 0..STEPS {
            let entry = if step % 3 == 0 {
                q.take().expect("full")
            } else {
                q.try_take().expect("full")
            };
            run.taken(entry);
            let roll = run.roll();
            if roll % 4 == 0 {
                run.offer_item(&q, roll & 4 != 0);
            } else {
                run.offer_key(&q, roll & 4 != 0);
            }

            let lease = q.try_take_leased().expect("full");
            let tag = run.leased(&lease);
            match run.roll() % 8 {
                0 => {
                    lease.ack();
                    run.acked();
                    if tag & ITEM == 0 {
                        run.offer_key(&q, false);
                    } else {
                        run.offer_item(&q, true);
                    }
                }
                1..=4 => {
                    lease.nack();
                    run.requeued(tag);
                }
                _ => {
                    drop(lease);
                    run.requeued(tag);
                }
            }

            if let Some(n) = run.pending_key(step.wrapping_mul(7919)) {
                run.offer_duplicate(&q, n, step % 2 == 1);
            }
        }
        run.meter.close();
        assert_eq!(q.len(), capacity);
    }
    run.finish(Some(&q))
}

/// d. Close: fill, close, refused offers, drain with `take`, `try_take` and
/// `take_batch`; and a second queue: fill, lease half, close, nack one
/// lease after close and take it again, take the rest, ack every lease,
/// `close_and_wait`. Both queues are built before the window.
fn close<T: Keys>(capacity: usize, rounds: u64) -> Outcome {
    let cycles = (STEPS / capacity).clamp(1, 1024) as u64 * rounds;
    // Per cycle at most: every key of the second queue acked (dropped),
    // duplicates, and what the first queue holds.
    let key_target = 3 * capacity + 16;
    let item_target = capacity + 8;
    let mut run = Run::<T>::new(
        "close",
        capacity,
        key_target + 2 * capacity + 16,
        item_target + 2 * capacity + 8,
    );
    let mut batch = Vec::with_capacity(BATCH);
    for _ in 0..cycles {
        let (a, b) = (T::build(capacity), T::build(capacity));
        let mut leases: Vec<Lease<'_, T::K, Item, T::S>> = Vec::with_capacity(capacity);
        run.refill(key_target, item_target);
        run.meter.open();

        // The first queue: fill, with duplicates; close; drain.
        for i in 0..capacity {
            if i % 4 == 3 {
                run.offer_item(&a, i % 8 == 3);
            } else {
                run.offer_key(&a, i % 2 == 0);
                if i % 4 == 2 {
                    let n = run.next_key - 1;
                    run.offer_duplicate(&a, n, false);
                }
            }
        }
        assert!(a.is_full());
        assert!(a.close());
        assert!(!a.close());
        run.ops += 2;
        let pending = run.pending_key(0);
        run.offer_closed(&a, pending);
        let mut turn = 0;
        while !run.model.is_empty() {
            match turn % 3 {
                0 => run.taken(a.take().expect("queued")),
                1 => run.taken(a.try_take().expect("queued")),
                _ => {
                    let n = a.take_batch(&mut batch, BATCH, Duration::ZERO);
                    assert!(n > 0);
                    for entry in batch.drain(..) {
                        run.taken(entry);
                    }
                }
            }
            turn += 1;
        }
        assert_eq!(a.try_take(), Err(TryTakeError::Closed));
        assert_eq!(a.take(), Err(TakeError));
        assert_eq!(a.take_batch(&mut batch, BATCH, Duration::ZERO), 0);
        assert!(a.try_take_leased().is_err());
        run.ops += 4;

        // The second queue: fill, lease half, close with leases out.
        for i in 0..capacity {
            if i % 4 == 3 {
                run.offer_item(&b, false);
            } else {
                run.offer_key(&b, false);
            }
        }
        for i in 0..capacity {
            if i % 2 == 0 {
                let lease = b.try_take_leased().expect("queued");
                run.leased(&lease);
                leases.push(lease);
            } else {
                run.taken(b.try_take().expect("queued"));
            }
        }
        assert_eq!(b.in_flight(), leases.len());
        assert!(b.close());
        run.ops += 1;
        // A nack after close queues the entry again; it is taken again.
        let lease = leases.pop().expect("a lease");
        let tag = tag::<T>(&lease);
        lease.nack();
        run.requeued(tag);
        let lease = b.try_take_leased().expect("requeued");
        run.leased(&lease);
        leases.push(lease);
        // Leases are out: not Closed until the last one ends.
        assert_eq!(b.try_take_leased().err(), Some(TryTakeError::Empty));
        run.ops += 1;
        for lease in leases.drain(..) {
            lease.ack();
            run.acked();
        }
        assert_eq!(b.try_take_leased().err(), Some(TryTakeError::Closed));
        run.ops += 1;
        assert!(b.close_and_wait(Duration::ZERO));
        run.ops += 1;
        assert_eq!((b.pending_keys(), b.claimed_slots()), (0, 0));

        run.meter.close();
        drop(leases);
    }
    run.finish(None)
}

// ----- the tests -----

#[test]
fn churn_string_keys() {
    check::<Strings>(churn::<Strings>, 8);
}

#[test]
fn churn_done_keys() {
    check::<Dones>(churn::<Dones>, 8);
}

#[test]
fn leases_string_keys() {
    check::<Strings>(leases::<Strings>, 3);
}

#[test]
fn leases_done_keys() {
    check::<Dones>(leases::<Dones>, 3);
}

#[test]
fn items_string_keys() {
    check::<Strings>(items::<Strings>, 6);
}

#[test]
fn items_done_keys() {
    check::<Dones>(items::<Dones>, 6);
}

#[test]
fn close_string_keys() {
    check::<Strings>(close::<Strings>, 7);
}

#[test]
fn close_done_keys() {
    check::<Dones>(close::<Dones>, 7);
}

#[test]
fn delays_string_keys() {
    check::<Strings>(delays::<Strings>, 3);
}

#[test]
fn delays_done_keys() {
    check::<Dones>(delays::<Dones>, 3);
}

#[test]
fn delays_valued_string_keys() {
    check::<StringValues>(delays::<StringValues>, 3);
}

#[test]
fn delays_valued_done_keys() {
    check::<DoneValues>(delays::<DoneValues>, 3);
}

#[test]
fn churn_valued_string_keys() {
    check::<StringValues>(churn::<StringValues>, 8);
}

#[test]
fn churn_valued_done_keys() {
    check::<DoneValues>(churn::<DoneValues>, 8);
}

#[test]
fn leases_valued_string_keys() {
    check::<StringValues>(leases::<StringValues>, 3);
}

#[test]
fn leases_valued_done_keys() {
    check::<DoneValues>(leases::<DoneValues>, 3);
}

#[test]
fn items_valued_string_keys() {
    check::<StringValues>(items::<StringValues>, 6);
}

#[test]
fn items_valued_done_keys() {
    check::<DoneValues>(items::<DoneValues>, 6);
}

#[test]
fn close_valued_string_keys() {
    check::<StringValues>(close::<StringValues>, 7);
}

#[test]
fn close_valued_done_keys() {
    check::<DoneValues>(close::<DoneValues>, 7);
}
