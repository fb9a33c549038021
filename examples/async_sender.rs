//! An async sender on tokio, with leases, retries and a graceful drain.
//!
//! Eight worker tasks and two plain threads report "done" for a set of
//! jobs, and re-send each answer a few times: the tasks with
//! `offer_key_async`, the threads with the blocking `offer_key`. One sender
//! task takes leased batches (`take_batch_leased_owned_async`, with a short
//! linger) and hands each to a spawned send task. The transport fails one
//! attempt in five and is slow at times. A send task makes one attempt: on
//! success it acks the batch (keys re-sent while it was in flight are
//! coalesced into the copy in flight and queued once more by the ack,
//! `InFlightPolicy::Requeue`, the default); on failure it nacks the batch
//! with the queue's backoff (`nack_backoff`: each key waits as long as its
//! own attempt count says, 1 ms doubling up to 16 ms, with jitter). The
//! send task does not sleep and holds no lease while a key waits: the key
//! stays pending in the queue, its re-sends coalesce into it, and the
//! sender's next take returns it once it is due.
//!
//! Once every worker is done, `close_and_wait` drains the queue: every
//! queued key is taken and every lease acked. The program then checks, and
//! prints, that nothing was lost (every key's last offer is followed by a
//! delivery whose send began after it) and that no key was in two sends at
//! once. It exits with status 1 if either check or the drain failed.
//!
//! ```text
//! cargo run --release --example async_sender
//! ```

use coalescing_queue::{Backoff, Builder, Compact, CompactQueue, Entry, OwnedLeaseBatch};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const JOBS: u64 = 2_000;
const RESENDS: u32 = 4;
const WORKER_TASKS: u64 = 8;
const WORKER_THREADS: u64 = 2;
const WORKERS: u64 = WORKER_TASKS + WORKER_THREADS;
/// How many jobs a worker finishes before it re-sends their answers.
const JOBS_AT_ONCE: usize = 10;
/// How long a worker waits before re-sending its answers.
const RESEND_PAUSE: Duration = Duration::from_millis(1);

const CAPACITY: usize = 256;
const BATCH_MAX: usize = 64;
const LINGER: Duration = Duration::from_millis(2);

/// The first retry's delay; each further failure of a key doubles it, up
/// to `MAX_BACKOFF`; jitter takes up to half of each delay off.
const FIRST_BACKOFF: Duration = Duration::from_millis(1);
const MAX_BACKOFF: Duration = Duration::from_millis(16);
/// Sends at once: the transport's connections.
const MAX_SENDS: usize = 4;
const SEND_TIME: Duration = Duration::from_millis(1);
const SLOW_SEND: Duration = Duration::from_millis(5);
/// Upper bound for the drain; it normally takes milliseconds.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

type Queue = CompactQueue<u64, String>;
type Batch = OwnedLeaseBatch<u64, String, Compact>;

/// The message a job's answer becomes, built only when it is sent.
fn done_message(job: u64) -> String {
    format!("job {job} done")
}

/// A small xorshift generator: the transport's failures and slow sends
/// depend only on the batch and the attempt, not on timing.
struct XorShift(u64);

impl XorShift {
    /// Seeded with a splitmix64 step, so that neighbouring batches and
    /// attempts draw unrelated numbers. Attempt 0 is the batch's own draw.
    fn for_attempt(batch_no: u64, attempt: u32) -> Self {
        let mut z = (batch_no << 8 | u64::from(attempt)).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self((z ^ (z >> 31)) | 1) // xorshift never leaves 0
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A transport whose sends take a millisecond, and five one time in
/// eight. One attempt in six fails, and one batch in twenty lands on a
/// connection that stays down (every attempt fails, so the batch is
/// nacked): about one attempt in five fails in all.
struct FlakyTransport;

impl FlakyTransport {
    async fn send(
        &self,
        batch_no: u64,
        attempt: u32,
        messages: &[String],
    ) -> Result<(), &'static str> {
        let stays_down = XorShift::for_attempt(batch_no, 0).next() % 20 == 0;
        let mut rng = XorShift::for_attempt(batch_no, attempt);
        let slow = rng.next() % 8 == 0;
        tokio::time::sleep(if slow { SLOW_SEND } else { SEND_TIME }).await;
        std::hint::black_box(messages.iter().map(String::len).sum::<usize>());
        if stays_down || rng.next() % 6 == 0 {
            Err("connection reset")
        } else {
            Ok(())
        }
    }
}

/// What happened to one key, on one clock.
#[derive(Default)]
struct KeyTimes {
    /// When the last successful offer of the key began.
    last_offer: u64,
    /// When the last send attempt that delivered the key began.
    last_delivery: u64,
}

/// The checks' bookkeeping: a clock that orders offers and send attempts,
/// each key's times on it, and the keys in a send right now. Locks are
/// fine here; this is the test, not the hot path.
#[derive(Default)]
struct Ledger {
    clock: AtomicU64,
    keys: Mutex<HashMap<u64, KeyTimes>>,
    in_send: Mutex<HashSet<u64>>,
    sent_twice: AtomicU64,
}

impl Ledger {
    /// A stamp taken before an offer begins.
    fn stamp(&self) -> u64 {
        self.clock.fetch_add(1, SeqCst) + 1
    }

    fn offered(&self, key: u64, stamp: u64) {
        let mut keys = self.keys.lock().unwrap();
        let times = keys.entry(key).or_default();
        times.last_offer = times.last_offer.max(stamp);
    }

    /// Marks `keys` as in a send and returns the attempt's stamp, taken
    /// before the transport sees the batch.
    fn begin_send(&self, keys: &[u64]) -> u64 {
        let mut in_send = self.in_send.lock().unwrap();
        for &key in keys {
            if !in_send.insert(key) {
                self.sent_twice.fetch_add(1, SeqCst);
            }
        }
        self.stamp()
    }

    fn end_send(&self, keys: &[u64]) {
        let mut in_send = self.in_send.lock().unwrap();
        for key in keys {
            in_send.remove(key);
        }
    }

    fn delivered(&self, keys: &[u64], stamp: u64) {
        let mut times = self.keys.lock().unwrap();
        for &key in keys {
            let times = times.entry(key).or_default();
            times.last_delivery = times.last_delivery.max(stamp);
        }
    }

    /// Keys whose last offer began after the last send that delivered them.
    fn lost(&self) -> usize {
        let keys = self.keys.lock().unwrap();
        keys.values()
            .filter(|t| t.last_offer > 0 && t.last_delivery < t.last_offer)
            .count()
    }
}

/// Counts for the report.
#[derive(Default)]
struct Counts {
    offers: AtomicU64,
    batches: AtomicU64,
    attempts: AtomicU64,
    failed_sends: AtomicU64,
    delivered: AtomicU64,
    /// The most attempts a key needed.
    max_attempt: AtomicU64,
}

/// Everything a worker or a send task shares.
struct Shared {
    queue: Arc<Queue>,
    ledger: Ledger,
    counts: Counts,
    transport: FlakyTransport,
}

/// The jobs a worker answers for, in the groups it finishes them in:
/// every `WORKERS`-th job, from its own.
fn job_groups(worker: u64) -> Vec<Vec<u64>> {
    let jobs: Vec<u64> = (worker..JOBS).step_by(WORKERS as usize).collect();
    jobs.chunks(JOBS_AT_ONCE).map(<[u64]>::to_vec).collect()
}

/// A worker task: finishes its jobs a group at a time and answers "done"
/// for each, re-sending the group's answers `RESENDS` times, as a worker
/// that has not heard back would.
async fn worker_task(shared: Arc<Shared>, worker: u64) {
    for group in job_groups(worker) {
        for _ in 0..RESENDS {
            for &job in &group {
                let stamp = shared.ledger.stamp();
                // Waits (without blocking the runtime) while the queue is full.
                shared
                    .queue
                    .offer_key_async(job)
                    .await
                    .expect("open while workers run");
                shared.ledger.offered(job, stamp);
                shared.counts.offers.fetch_add(1, SeqCst);
            }
            tokio::time::sleep(RESEND_PAUSE).await;
        }
    }
}

/// A worker thread: the same, with the blocking offer.
fn worker_thread(shared: Arc<Shared>, worker: u64) {
    for group in job_groups(worker) {
        for _ in 0..RESENDS {
            for &job in &group {
                let stamp = shared.ledger.stamp();
                shared.queue.offer_key(job).expect("open while workers run");
                shared.ledger.offered(job, stamp);
                shared.counts.offers.fetch_add(1, SeqCst);
            }
            thread::sleep(RESEND_PAUSE);
        }
    }
}

/// The one sender: takes leased batches and spawns a send task for each,
/// at most `MAX_SENDS` at once.
async fn sender(shared: Arc<Shared>) {
    let connections = Arc::new(Semaphore::new(MAX_SENDS));
    let mut sends = JoinSet::new();
    let mut batch_no = 0;
    loop {
        // A connection first, then the batch: while every connection is
        // busy the keys stay queued, where re-sends coalesce into them.
        let connection = connections.clone().acquire_owned().await.unwrap();
        let batch = shared
            .queue
            .take_batch_leased_owned_async(BATCH_MAX, LINGER)
            .await;
        if batch.is_empty() {
            // Closed and drained: nothing queued and no lease out (while a
            // send task still held one, the take waited for its nack or
            // ack), so nothing can come back. The send tasks have ended
            // their batches; wait for them to return.
            while let Some(done) = sends.join_next().await {
                done.expect("send task panicked");
            }
            return;
        }
        shared.counts.batches.fetch_add(1, SeqCst);
        let send = send_with_retries(shared.clone(), batch, batch_no);
        sends.spawn(async move {
            send.await;
            drop(connection);
        });
        batch_no += 1;
        while let Some(done) = sends.try_join_next() {
            done.expect("send task panicked");
        }
    }
}

/// Sends one batch once: acks it if it went out, else nacks it with the
/// queue's backoff, each key delayed by its own attempt count. Nothing
/// sleeps here: a delayed key waits in the queue, still pending.
async fn send_with_retries(shared: Arc<Shared>, batch: Batch, batch_no: u64) {
    let keys: Vec<u64> = batch.iter().filter_map(Entry::key).copied().collect();
    let messages: Vec<String> = batch
        .iter()
        .map(|entry| entry.clone().into_item(done_message))
        .collect();
    let (ledger, counts) = (&shared.ledger, &shared.counts);
    // The batch's attempt: its keys' highest (the transport draws its
    // failures from it and the batch number).
    let attempt = batch.attempts().max().unwrap_or(1);
    counts.max_attempt.fetch_max(u64::from(attempt), SeqCst);
    counts.attempts.fetch_add(1, SeqCst);
    let stamp = ledger.begin_send(&keys);
    let sent = shared.transport.send(batch_no, attempt, &messages).await;
    ledger.end_send(&keys);
    if sent.is_ok() {
        ledger.delivered(&keys, stamp);
        counts.delivered.fetch_add(keys.len() as u64, SeqCst);
        batch.ack();
    } else {
        counts.failed_sends.fetch_add(1, SeqCst);
        // Pending, not leased, until due: re-sends coalesce into it.
        batch.nack_backoff();
    }
}

fn usage() -> ! {
    println!("usage: async_sender");
    println!();
    println!("Runs {WORKER_TASKS} worker tasks and {WORKER_THREADS} worker threads that report");
    println!("{JOBS} jobs done {RESENDS} times each to one async sender over a flaky");
    println!("transport, then checks that nothing was lost or sent twice while in flight.");
    std::process::exit(0);
}

#[tokio::main]
async fn main() {
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some("-h" | "--help") => usage(),
        Some(other) => {
            eprintln!("async_sender: unknown argument {other:?} (try --help)");
            std::process::exit(2);
        }
    }
    let started = Instant::now();
    let shared = Arc::new(Shared {
        queue: Arc::new(
            Builder::<u64, String, Compact>::new()
                .capacity(CAPACITY)
                .retries(Backoff::exponential(FIRST_BACKOFF, MAX_BACKOFF).with_jitter(0.5))
                .build(),
        ),
        ledger: Ledger::default(),
        counts: Counts::default(),
        transport: FlakyTransport,
    });

    let sender = tokio::spawn(sender(shared.clone()));
    let tasks: Vec<_> = (0..WORKER_TASKS)
        .map(|w| tokio::spawn(worker_task(shared.clone(), w)))
        .collect();
    let threads: Vec<_> = (WORKER_TASKS..WORKERS)
        .map(|w| {
            let shared = shared.clone();
            thread::spawn(move || worker_thread(shared, w))
        })
        .collect();

    for task in tasks {
        task.await.expect("worker task panicked");
    }
    // Joining a thread blocks: not on a runtime worker.
    tokio::task::spawn_blocking(move || {
        for thread in threads {
            thread.join().expect("worker thread panicked");
        }
    })
    .await
    .unwrap();

    // Graceful drain: no more offers; wait until every lease is acked.
    let queue = shared.queue.clone();
    let drained = tokio::task::spawn_blocking(move || queue.close_and_wait(DRAIN_TIMEOUT))
        .await
        .unwrap();
    sender.await.expect("sender task panicked");

    report(&shared, drained, started.elapsed());
}

/// Prints the counts and the checks; exits with status 1 if a check failed.
fn report(shared: &Shared, drained: bool, elapsed: Duration) {
    let (stats, counts) = (shared.queue.stats(), &shared.counts);
    let lost = shared.ledger.lost();
    let sent_twice = shared.ledger.sent_twice.load(SeqCst);
    line("offers", counts.offers.load(SeqCst));
    line("  coalesced", stats.coalesced);
    line("  (into in-flight)", stats.coalesced_in_flight);
    line("batches", counts.batches.load(SeqCst));
    line("send attempts", counts.attempts.load(SeqCst));
    line("  failed sends", counts.failed_sends.load(SeqCst));
    line("keys nacked with backoff", stats.delayed_nacks);
    line("most attempts of a key", counts.max_attempt.load(SeqCst));
    line("delivered", counts.delivered.load(SeqCst));
    line("dirty keys requeued", stats.requeued_dirty);
    line("lost", lost);
    line("sent twice while in flight", sent_twice);
    line("drained", drained);
    line("time (ms)", elapsed.as_millis());
    let retried = stats.delayed_nacks > 0 && counts.max_attempt.load(SeqCst) > 1;
    line("retried with backoff", retried);
    if lost == 0 && sent_twice == 0 && drained && retried {
        println!("OK: nothing lost, nothing sent twice while in flight, drained");
    } else {
        println!("FAILED");
        std::process::exit(1);
    }
}

fn line(label: &str, value: impl std::fmt::Display) {
    println!("{label:<28}{value:>8}");
}
