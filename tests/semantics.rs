//! What users of tokio's and crossbeam's channels expect, checked here: an
//! error's `Debug` says its kind, a batch take grows the caller's buffer
//! only by what it takes, dropping the queue drops every queued item even
//! when one's `Drop` panics, a batch of at most 0 entries is refused, and a
//! capacity too large for memory is an error of `try_build`.

use coalescing_queue::{BuildError, CoalescingQueue, Compact, Entry};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

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

// ----- a batch take reserves only what it takes -----

#[test]
fn take_batch_grows_the_buffer_only_by_what_it_takes() {
    let q = CoalescingQueue::<u32, String>::new(64);
    let mut batch = Vec::with_capacity(4);
    for key in 0..4 {
        q.offer_key(key).unwrap();
    }
    assert_eq!(q.take_batch(&mut batch, 64, Duration::ZERO), 4);
    assert_eq!(batch.capacity(), 4, "the buffer grew past what was taken");

    batch.clear();
    for key in 0..4 {
        q.offer_key(key).unwrap();
    }
    assert_eq!(
        q.take_batch_timeout(&mut batch, 64, Duration::ZERO, Duration::ZERO),
        4
    );
    assert_eq!(batch.capacity(), 4, "the buffer grew past what was taken");

    batch.clear();
    for key in 0..4 {
        q.offer_key(key).unwrap();
    }
    let taken = futures_lite::future::block_on(q.take_batch_async(&mut batch, 64, Duration::ZERO));
    assert_eq!(taken, 4);
    assert_eq!(batch.capacity(), 4, "the buffer grew past what was taken");
    assert_eq!(batch, (0..4).map(Entry::Key).collect::<Vec<_>>());
}

#[test]
fn a_large_max_does_not_reserve_for_the_whole_capacity() {
    let q = CoalescingQueue::<u32, String>::new(1 << 16);
    q.offer_key(1).unwrap();
    let mut batch = Vec::new();
    assert_eq!(q.take_batch(&mut batch, usize::MAX, Duration::ZERO), 1);
    assert!(batch.capacity() < 64, "capacity {}", batch.capacity());
}

// ----- dropping the queue drops every item, even when one panics -----

static DROPPED: AtomicUsize = AtomicUsize::new(0);

/// Counts its drop in `DROPPED`; panics in its `Drop` if it holds `true`.
struct Bomb(bool);

impl Drop for Bomb {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, Ordering::Relaxed);
        if self.0 {
            panic!("a Bomb's Drop panics");
        }
    }
}

#[test]
fn drop_all_items_during_panic() {
    DROPPED.store(0, Ordering::Relaxed);
    let q = CoalescingQueue::<u32, Bomb>::new(10);
    q.try_offer(Bomb(true)).unwrap_or_else(|_| panic!("offer"));
    q.try_offer(Bomb(false)).unwrap_or_else(|_| panic!("offer"));
    q.try_offer(Bomb(false)).unwrap_or_else(|_| panic!("offer"));
    q.try_offer_key(7).unwrap_or_else(|_| panic!("offer"));
    let panic = catch_unwind(AssertUnwindSafe(|| drop(q))).unwrap_err();
    assert_eq!(message(panic), "a Bomb's Drop panics");
    assert_eq!(DROPPED.load(Ordering::Relaxed), 3, "an item was leaked");
}

/// Counts its drops; its `Drop` panics if `bomb`.
struct Counted {
    bomb: bool,
    drops: Arc<AtomicUsize>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
        if self.bomb {
            panic!("a Counted's Drop panics");
        }
    }
}

/// The marker telling a re-executed test binary to run the child body.
const UNWINDING_CHILD_ENV: &str = "COALESCING_SEMANTICS_DROP_WHILE_UNWINDING_CHILD";

/// A queue dropped while its thread already unwinds (a panic elsewhere)
/// drops every item, and one whose `Drop` panics does not abort the
/// process: the queue does not resume that second panic while unwinding.
/// Run in a child process (this binary re-executed to run only
/// [`drop_while_unwinding_child`]), so that an abort fails this test, not
/// the suite.
#[test]
fn a_queue_dropped_while_unwinding_does_not_abort() {
    let exe = std::env::current_exe().expect("the test binary's path");
    let output = std::process::Command::new(exe)
        .args([
            "--exact",
            "drop_while_unwinding_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(UNWINDING_CHILD_ENV, "1")
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

/// The body of [`a_queue_dropped_while_unwinding_does_not_abort`], run only
/// in the child process it starts (it does nothing without the marker).
#[test]
#[ignore = "run by a_queue_dropped_while_unwinding_does_not_abort in a child process"]
fn drop_while_unwinding_child() {
    if std::env::var_os(UNWINDING_CHILD_ENV).is_none() {
        return;
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let unwound = catch_unwind(AssertUnwindSafe(|| {
        let q = CoalescingQueue::<u32, Counted>::new(4);
        for bomb in [true, false] {
            let item = Counted {
                bomb,
                drops: drops.clone(),
            };
            q.try_offer(item).unwrap_or_else(|_| panic!("offer"));
        }
        panic!("the first panic");
    }));
    assert_eq!(message(unwound.unwrap_err()), "the first panic");
    assert_eq!(drops.load(Ordering::Relaxed), 2, "an item was leaked");
}

#[test]
fn drop_all_items_when_several_panic_and_resume_the_first() {
    let drops = Arc::new(AtomicUsize::new(0));
    let q = CoalescingQueue::<u32, Counted, Compact>::new(8);
    for bomb in [false, true, false, true, false] {
        let item = Counted {
            bomb,
            drops: drops.clone(),
        };
        q.try_offer(item).unwrap_or_else(|_| panic!("offer"));
    }
    let panic = catch_unwind(AssertUnwindSafe(|| drop(q))).unwrap_err();
    assert_eq!(message(panic), "a Counted's Drop panics");
    assert_eq!(drops.load(Ordering::Relaxed), 5);
}

#[test]
fn dropping_a_queue_drops_its_items_once() {
    let drops = Arc::new(AtomicUsize::new(0));
    let q = CoalescingQueue::<u32, Counted>::new(8);
    for _ in 0..3 {
        let item = Counted {
            bomb: false,
            drops: drops.clone(),
        };
        q.try_offer(item).unwrap_or_else(|_| panic!("offer"));
    }
    drop(q.try_take().unwrap());
    assert_eq!(drops.load(Ordering::Relaxed), 1);
    drop(q);
    assert_eq!(drops.load(Ordering::Relaxed), 3);
}

// ----- a batch of at most 0 entries is refused -----

fn panics(body: impl FnOnce()) -> String {
    message(catch_unwind(AssertUnwindSafe(body)).unwrap_err())
}

#[test]
fn take_batch_refuses_max_zero() {
    let q = Arc::new(CoalescingQueue::<u32, String>::new(4));
    q.offer_key(1).unwrap();
    let mut batch = Vec::new();
    let linger = Duration::ZERO;
    for text in [
        panics(|| {
            q.take_batch(&mut batch, 0, linger);
        }),
        panics(|| {
            q.take_batch_timeout(&mut batch, 0, linger, linger);
        }),
        panics(|| {
            futures_lite::future::block_on(q.take_batch_async(&mut batch, 0, linger));
        }),
        panics(|| drop(q.take_batch_leased(0, linger))),
        panics(|| drop(q.take_batch_leased_timeout(0, linger, linger))),
        panics(|| {
            drop(futures_lite::future::block_on(
                q.take_batch_leased_async(0, linger),
            ))
        }),
        panics(|| {
            drop(futures_lite::future::block_on(
                q.take_batch_leased_owned_async(0, linger),
            ))
        }),
    ] {
        assert!(text.contains("max must be at least 1"), "{text}");
    }
    // Nothing was taken by the refused calls.
    assert_eq!(q.len(), 1);
    assert_eq!(q.take_batch(&mut batch, 1, linger), 1);
}

// ----- a capacity too large for memory is an error of try_build -----

/// 2^31 - 1 slots of a 1 GiB item: about 2^61 bytes, below `isize::MAX`
/// (so the allocator is asked) but beyond any address space (57-bit
/// virtual addresses reach 2^57): refused on every machine.
type Huge = [u8; 1 << 30];

#[test]
fn try_build_refuses_a_capacity_it_cannot_allocate() {
    let built = CoalescingQueue::<u32, Huge>::builder()
        .capacity((1 << 31) - 1)
        .try_build();
    match built {
        Err(BuildError::OutOfMemory { bytes }) => {
            assert!(bytes >= ((1 << 31) - 1) << 30, "{bytes}");
            assert!(bytes < usize::MAX, "not saturated: {bytes}");
        }
        Err(other) => panic!("unexpected error {other:?}"),
        Ok(_) => panic!("built a queue of 2^61 bytes"),
    }
}

#[test]
fn try_build_refuses_more_than_the_address_space() {
    // 2^31 - 1 slots of an 8 GiB item: the size overflows, on any machine.
    let built = CoalescingQueue::<u32, [u8; 1 << 33]>::builder()
        .capacity((1 << 31) - 1)
        .try_build();
    assert!(matches!(built, Err(BuildError::OutOfMemory { .. })));
}

#[test]
fn a_size_beyond_usize_is_named_as_such() {
    let error = CoalescingQueue::<u32, [u8; 1 << 40]>::builder()
        .capacity((1 << 31) - 1)
        .try_build()
        .unwrap_err();
    assert_eq!(error, BuildError::OutOfMemory { bytes: usize::MAX });
    assert_eq!(
        error.to_string(),
        "could not allocate more than usize::MAX bytes"
    );
}

#[test]
fn new_names_the_bytes_it_could_not_allocate() {
    let text = panics(|| drop(CoalescingQueue::<u32, Huge>::new((1 << 31) - 1)));
    assert!(text.contains("bytes"), "{text}");
    assert!(text.contains("allocate"), "{text}");
}

// ----- Closed is final: not reported while a lease is out -----

/// How long a call that should return promptly may take.
const PROMPT: Duration = Duration::from_secs(5);
/// Long enough for a waiter to have blocked.
const SETTLE: Duration = Duration::from_millis(50);

/// Runs `f` on a thread; its result comes on the receiver.
fn spawn_result<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::sync::mpsc::Receiver<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

#[test]
fn a_take_after_close_waits_for_the_nack_of_a_lease() {
    let q = Arc::new(CoalescingQueue::<u32, String>::new(4));
    q.offer_key(1).unwrap();
    let lease = q.try_take_leased().unwrap();
    q.close();
    // Nothing queued, but the lease may come back: not Closed yet.
    assert!(q.try_take().unwrap_err().is_empty());
    assert!(q.try_take_leased().unwrap_err().is_empty());
    let taker = {
        let q = q.clone();
        spawn_result(move || {
            let mut taken = Vec::new();
            while let Ok(entry) = q.take() {
                taken.push(entry);
            }
            taken
        })
    };
    std::thread::sleep(SETTLE);
    assert!(
        taker.try_recv().is_err(),
        "take reported Closed with a lease out"
    );
    lease.nack();
    let taken = taker.recv_timeout(PROMPT).expect("the taker ended");
    assert_eq!(taken, [Entry::Key(1)], "the nacked key was left behind");
    assert!(q.try_take().unwrap_err().is_closed());
}

#[test]
fn a_take_after_close_ends_at_the_last_ack() {
    let q = Arc::new(CoalescingQueue::<u32, String>::new(4));
    q.offer_key(1).unwrap();
    q.offer("item".to_string()).unwrap();
    let key = q.try_take_leased().unwrap();
    let item = q.try_take_leased().unwrap();
    q.close();
    let taker = {
        let q = q.clone();
        spawn_result(move || q.take())
    };
    let timed = {
        let q = q.clone();
        spawn_result(move || q.take_timeout(Duration::from_secs(60)))
    };
    std::thread::sleep(SETTLE);
    assert!(
        taker.try_recv().is_err(),
        "take reported Closed with leases out"
    );
    key.ack();
    std::thread::sleep(SETTLE);
    assert!(
        taker.try_recv().is_err(),
        "take reported Closed with a lease out"
    );
    item.ack();
    let taken = taker
        .recv_timeout(PROMPT)
        .expect("the last ack woke the taker");
    assert!(taken.is_err(), "{taken:?}");
    let timed = timed
        .recv_timeout(PROMPT)
        .expect("the last ack woke the taker");
    assert_eq!(timed, Err(coalescing_queue::TakeTimeoutError::Closed));
}

#[test]
fn take_async_after_close_waits_for_the_nack_of_a_lease() {
    let q = Arc::new(CoalescingQueue::<u32, String>::new(4));
    q.offer_key(1).unwrap();
    let lease = q.try_take_leased_owned().unwrap();
    q.close();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let taken = runtime.block_on(async {
        let nacker = tokio::spawn(async move {
            tokio::time::sleep(SETTLE).await;
            lease.nack();
        });
        let first = tokio::time::timeout(PROMPT, q.take_async()).await;
        nacker.await.unwrap();
        let second = tokio::time::timeout(PROMPT, q.take_async()).await;
        (first, second)
    });
    assert_eq!(taken.0.expect("woken by the nack"), Ok(Entry::Key(1)));
    assert!(taken.1.expect("closed and drained").is_err());
}

/// The natural leased sender, with its sends in other threads: take leased
/// batches until one comes back empty. A send that fails nacks after the
/// close; nothing is left behind, and the drain finishes.
#[test]
fn a_sender_loop_that_stops_at_an_empty_batch_leaves_nothing_behind() {
    let q = Arc::new(CoalescingQueue::<u32, String>::new(16));
    for key in 0..8 {
        q.offer_key(key).unwrap();
    }
    q.close();
    let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut sends = Vec::new();
    let mut attempt = 0;
    loop {
        let batch = q.take_batch_leased_owned(3, Duration::ZERO);
        if batch.is_empty() {
            break;
        }
        attempt += 1;
        let fails = attempt <= 2; // the first two sends fail, late
        let sent = sent.clone();
        sends.push(std::thread::spawn(move || {
            std::thread::sleep(SETTLE);
            if fails {
                batch.nack();
            } else {
                let keys = batch.iter().map(|e| *e.key().unwrap());
                sent.lock().unwrap().extend(keys);
                batch.ack();
            }
        }));
    }
    for send in sends {
        send.join().unwrap();
    }
    let mut sent = sent.lock().unwrap().clone();
    sent.sort_unstable();
    assert_eq!(sent, (0..8).collect::<Vec<_>>(), "entries left behind");
    assert_eq!((q.len(), q.in_flight()), (0, 0));
    assert!(q.close_and_wait(Duration::ZERO));
}

#[test]
fn a_batch_after_close_does_not_linger_for_leases() {
    let q = CoalescingQueue::<u32, String>::new(4);
    q.offer_key(1).unwrap();
    q.offer_key(2).unwrap();
    let other = q.try_take_leased().unwrap();
    q.close();
    let started = std::time::Instant::now();
    let batch = q.take_batch_leased(4, Duration::from_secs(60));
    assert_eq!(batch.entries(), [Entry::Key(2)]);
    let mut plain = Vec::new();
    other.nack();
    assert_eq!(q.take_batch(&mut plain, 4, Duration::from_secs(60)), 1);
    assert!(started.elapsed() < PROMPT, "a batch lingered after close");
    batch.ack();
    assert_eq!(q.take_batch(&mut plain, 4, Duration::from_secs(60)), 0);
}
