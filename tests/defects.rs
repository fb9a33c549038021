//! Regression tests for four defects a review found in an old build
//! (commit 47e407a): a key's `Drop` run under a shard lock, a pass-through
//! item dropped on ack before its slot was freed, a batch take that kept a
//! chunk of entries on the stack, and a table entry leaked per leased take
//! of a key whose `Hash` is not stable.

use coalescing_queue::{CoalescingQueue, Entry, Offered};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::process::Command;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Weak};
use std::thread;
use std::time::Duration;

/// How long a test body may take before it counts as deadlocked.
const PATIENCE: Duration = Duration::from_secs(10);

/// Runs `body` on its own thread and waits at most [`PATIENCE`] for it, so
/// that a deadlock fails the test instead of hanging the suite (the stuck
/// thread is leaked). A panic in `body` is re-raised here.
fn within_patience(what: &str, body: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        body();
        let _ = tx.send(());
    });
    match rx.recv_timeout(PATIENCE) {
        Ok(()) => handle.join().expect("the body finished"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // The body panicked: show its panic, not a timeout.
            if let Err(panic) = handle.join() {
                std::panic::resume_unwind(panic);
            }
            panic!("{what}: the body ended without reporting");
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: no answer within {PATIENCE:?}, deadlocked")
        }
    }
}

// ----- 1. a key's Drop runs under a lock -----

type CallbackQueue = CoalescingQueue<CallbackKey, ()>;

/// The id the callbacks offer: another key than the one being dropped.
const OTHER_ID: u64 = 2;

/// A key whose `Drop`, when `queue` is set, calls back into that queue:
/// `is_pending` of its own id (the very shard it lives in), `try_offer_key`
/// of another key and `len`. The keys it builds there have no `queue`, so
/// the callback does not recurse.
#[derive(Clone)]
struct CallbackKey {
    id: u64,
    queue: Option<Weak<CallbackQueue>>,
    callbacks: Arc<AtomicUsize>,
}

impl CallbackKey {
    fn plain(id: u64, callbacks: &Arc<AtomicUsize>) -> Self {
        CallbackKey {
            id,
            queue: None,
            callbacks: Arc::clone(callbacks),
        }
    }
}

impl Hash for CallbackKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl PartialEq for CallbackKey {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for CallbackKey {}

impl fmt::Debug for CallbackKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CallbackKey({})", self.id)
    }
}

impl Drop for CallbackKey {
    fn drop(&mut self) {
        let Some(queue) = self.queue.take().and_then(|weak| weak.upgrade()) else {
            return;
        };
        // Same id, so the same shard as the key being dropped.
        let _ = queue.is_pending(&CallbackKey::plain(self.id, &self.callbacks));
        let offered = queue.try_offer_key(CallbackKey::plain(OTHER_ID, &self.callbacks));
        assert!(offered.is_ok(), "the callback's offer failed: {offered:?}");
        let _ = queue.len();
        self.callbacks.fetch_add(1, Ordering::SeqCst);
    }
}

/// A key with id 1 whose drop calls back into `queue`.
fn calling_key(queue: &Arc<CallbackQueue>, callbacks: &Arc<AtomicUsize>) -> CallbackKey {
    CallbackKey {
        id: 1,
        queue: Some(Arc::downgrade(queue)),
        callbacks: Arc::clone(callbacks),
    }
}

/// Pins defect 1, on offer: on the old build the duplicate key coalesced
/// by an offer was dropped while its shard lock was held, so a key `Drop`
/// calling back into the queue (`is_pending` of its own shard) deadlocked.
#[test]
fn coalesced_key_drop_may_call_back_into_the_queue() {
    within_patience("coalesced key's drop calling back", || {
        let callbacks = Arc::new(AtomicUsize::new(0));
        let queue = Arc::new(CallbackQueue::new(8));
        let first = calling_key(&queue, &callbacks);
        assert_eq!(queue.try_offer_key(first), Ok(Offered::Enqueued));
        // The duplicate is coalesced and dropped: its callback runs.
        let duplicate = calling_key(&queue, &callbacks);
        assert_eq!(queue.try_offer_key(duplicate), Ok(Offered::Coalesced));
        assert_eq!(
            callbacks.load(Ordering::SeqCst),
            1,
            "the coalesced duplicate's drop did not call back"
        );
        assert!(queue.is_pending(&CallbackKey::plain(1, &callbacks)));
        assert!(queue.is_pending(&CallbackKey::plain(OTHER_ID, &callbacks)));
        assert_eq!(queue.len(), 2);
    });
}

/// Pins defect 1, on ack: on the old build the stored key removed by the
/// ack of a leased take was dropped while its shard lock was held, so a key
/// `Drop` calling back into the queue (`is_pending` of its own shard)
/// deadlocked.
#[test]
fn acked_key_drop_may_call_back_into_the_queue() {
    within_patience("acked key's drop calling back", || {
        let callbacks = Arc::new(AtomicUsize::new(0));
        let queue = Arc::new(CallbackQueue::new(8));
        let key = calling_key(&queue, &callbacks);
        assert_eq!(queue.try_offer_key(key), Ok(Offered::Enqueued));
        let lease = queue.try_take_leased().expect("key 1 is queued");
        assert_eq!(lease.key().map(|key| key.id), Some(1));
        assert_eq!(callbacks.load(Ordering::SeqCst), 0);
        // The ack removes the stored key and drops it (and the lease's copy).
        lease.ack();
        assert!(
            callbacks.load(Ordering::SeqCst) >= 1,
            "no key dropped by the ack called back"
        );
        assert!(!queue.is_pending(&CallbackKey::plain(1, &callbacks)));
        assert!(queue.is_pending(&CallbackKey::plain(OTHER_ID, &callbacks)));
        assert_eq!(queue.len(), 1, "only the callbacks' key is left");
    });
}

// ----- 2. ack of a pass-through item drops it before its slot is freed -----

type ItemQueue = CoalescingQueue<u64, ReofferingItem>;

/// An item whose `Drop`, when `queue` is set, offers a plain item into that
/// queue and records whether the offer found room.
struct ReofferingItem {
    queue: Option<Weak<ItemQueue>>,
    results: Arc<std::sync::Mutex<Vec<bool>>>,
}

impl Drop for ReofferingItem {
    fn drop(&mut self) {
        let Some(queue) = self.queue.take().and_then(|weak| weak.upgrade()) else {
            return;
        };
        let inner = ReofferingItem {
            queue: None,
            results: Arc::clone(&self.results),
        };
        let ok = queue.try_offer(inner).is_ok();
        self.results.lock().unwrap().push(ok);
    }
}

/// Pins defect 2: on the old build `ack` of a leased pass-through item
/// dropped the item before freeing its slot, so with capacity 1 an offer
/// from the item's `Drop` found the queue still full. Here it must find room.
#[test]
fn acked_item_is_dropped_after_its_slot_is_freed() {
    within_patience("ack of a re-offering item", || {
        let results = Arc::new(std::sync::Mutex::new(Vec::new()));
        let queue = Arc::new(ItemQueue::new(1));
        let item = ReofferingItem {
            queue: Some(Arc::downgrade(&queue)),
            results: Arc::clone(&results),
        };
        assert!(queue.try_offer(item).is_ok());
        let lease = queue.try_take_leased().expect("the item is queued");
        assert!(lease.is_item());
        assert!(queue.is_full(), "the lease holds the only slot");
        lease.ack();
        assert_eq!(
            *results.lock().unwrap(),
            [true],
            "the acked item's drop could not offer: the queue was still full"
        );
        assert_eq!(queue.len(), 1, "the drop's offer is queued");
        assert_eq!(queue.claimed_slots(), 1);
    });
}

// ----- 3. take_batch kept a chunk of entries on the stack -----

/// The size of one big item.
const BIG: usize = 48 * 1024;

/// A 48 KiB item held by value.
struct Big([u8; BIG]);

/// The marker telling a re-executed test binary to run the child body.
const CHILD_ENV: &str = "COALESCING_DEFECTS_BIG_ITEMS_CHILD";

/// Pins defect 3: on the old build `take_batch` (and `take_batch_leased`)
/// popped entries into a 32-entry array on the stack, 1.5 MiB with 48 KiB
/// items, which overflowed a 2 MiB thread stack and aborted the process.
/// The check runs in a child process (this binary re-executed to run only
/// [`big_items_child`]) so that an abort fails this test, not the suite.
#[test]
fn batch_takes_of_big_items_fit_a_small_stack() {
    let exe = std::env::current_exe().expect("the test binary's path");
    let output = Command::new(exe)
        .args([
            "--exact",
            "big_items_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .expect("the child test ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the child failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("1 passed"),
        "the child test did not run:\n{stdout}"
    );
}

/// The body of [`batch_takes_of_big_items_fit_a_small_stack`], run only in
/// the child process it starts (it does nothing without the marker).
#[test]
#[ignore = "run by batch_takes_of_big_items_fit_a_small_stack in a child process"]
fn big_items_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    const ITEMS: usize = 40;
    let small_stack = thread::Builder::new()
        .name("big-items".into())
        .stack_size(2 * 1024 * 1024)
        .spawn(|| {
            let queue = CoalescingQueue::<u64, Big>::new(64);
            for i in 0..ITEMS {
                assert!(queue.try_offer(Big([i as u8; BIG])).is_ok(), "offer {i}");
            }
            let mut out = Vec::new();
            eprintln!("big_items_child: calling take_batch");
            assert_eq!(queue.take_batch(&mut out, 64, Duration::ZERO), ITEMS);
            for (i, entry) in out.iter().enumerate() {
                let item = entry.item().expect("an item");
                assert!(item.0.iter().all(|&b| b == i as u8), "item {i} garbled");
            }
            drop(out);

            for i in 0..ITEMS {
                assert!(queue.try_offer(Big([i as u8; BIG])).is_ok(), "offer {i}");
            }
            eprintln!("big_items_child: calling take_batch_leased");
            let batch = queue.take_batch_leased(64, Duration::ZERO);
            assert_eq!(batch.len(), ITEMS);
            for (i, entry) in batch.iter().enumerate() {
                let item = entry.item().expect("an item");
                assert!(item.0.iter().all(|&b| b == i as u8), "item {i} garbled");
            }
            batch.ack();
            assert!(queue.is_empty());
            assert_eq!(queue.claimed_slots(), 0);
            eprintln!("big_items_child: done");
        })
        .expect("spawned the small-stack thread");
    small_stack.join().expect("the small-stack thread passed");
}

// ----- 4. a key whose Hash is not stable -----

/// Bumped on every `hash` of a [`Drifting`] key.
static DRIFT: AtomicU64 = AtomicU64::new(0);

/// A key whose `Hash` changes on every call (`Eq` by `id`): a broken key,
/// but one that must not leak the queue's bounded table.
#[derive(Clone, Debug)]
struct Drifting {
    id: u64,
}

impl Hash for Drifting {
    fn hash<H: Hasher>(&self, state: &mut H) {
        DRIFT.fetch_add(1, Ordering::Relaxed).hash(state);
    }
}

impl PartialEq for Drifting {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for Drifting {}

/// Pins defect 4: on the old build a leased take and ack of a key whose
/// `Hash` is not stable looked the key up again by hash on ack, missed it,
/// and leaked one table entry per round, until the table was full. Here
/// 1000 rounds on a capacity of 8 must keep offering and leave nothing
/// pending or claimed.
#[test]
fn unstable_hash_key_does_not_leak_table_entries() {
    within_patience("unstable-hash key rounds", || {
        let queue = CoalescingQueue::<Drifting, ()>::new(8);
        for round in 0..1000 {
            // Nothing is pending after an ack, so the offer must enqueue:
            // neither Full nor coalesced into a leaked entry.
            let offered = queue.try_offer_key(Drifting { id: 7 });
            assert_eq!(
                offered,
                Ok(Offered::Enqueued),
                "round {round}: the offer did not enqueue, pending_keys now {}",
                queue.pending_keys()
            );
            let lease = queue
                .try_take_leased()
                .unwrap_or_else(|e| panic!("round {round}: take failed: {e:?}"));
            assert!(matches!(lease.entry(), Entry::Key(Drifting { id: 7 })));
            lease.ack();
        }
        assert_eq!(queue.pending_keys(), 0, "table entries leaked");
        assert_eq!(queue.claimed_slots(), 0, "slots leaked");
        assert!(queue.is_empty());
        // All eight slots are still usable by distinct keys.
        for id in 0..8 {
            assert_eq!(queue.try_offer_key(Drifting { id }), Ok(Offered::Enqueued));
        }
    });
}
