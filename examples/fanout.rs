//! The production case this crate exists for, replayed: a coordinator fans a
//! request out to N workers and re-sends it until everyone answers; every
//! worker answers DONE to every copy; one sender drains the answers in
//! batches. The same load runs through `CoalescingQueue` and through an
//! eager baseline (each answer a freshly boxed ~120-byte message in a
//! bounded channel, no dedupe), and a table compares them.
//!
//! ```text
//! cargo run --release --example fanout                 # 60,000 workers, 20 resends
//! cargo run --release --example fanout -- --help       # the flags
//! ```

// Each message is its own heap allocation on purpose: that is what the
// eager design costs, and what the crate avoids.
#![allow(clippy::vec_box)]

use coalescing_queue::{CoalescingQueue, Entry, ResendGate};
use crossbeam_channel::{bounded, RecvTimeoutError};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

// ----- a global allocator that counts live and peak heap bytes -----

struct CountingAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: defers every call to `System`, only counting sizes on the side.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
            PEAK.fetch_max(live, Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

// ----- the answer: a compact key, and the message built from it -----

/// What a worker reports: "dispatcher `dispatcher` is done with the request
/// at `checkpoint`". Identical for every re-send of the same request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Done {
    dispatcher: u128,
    checkpoint: u64,
    is_blocked: bool,
    is_done: bool,
}

/// The full wire message, about as big as the original's (~120 bytes).
struct Message {
    done: Done,
    _header: [u8; 64],
    _trailer: [u64; 2],
}

impl Message {
    fn build(done: Done) -> Box<Message> {
        Box::new(Message {
            done,
            _header: [0x5a; 64],
            _trailer: [done.checkpoint, done.dispatcher as u64],
        })
    }
}

// ----- flags -----

#[derive(Clone, Debug)]
struct Config {
    workers: usize,
    resends: u64,
    threads: usize,
    capacity: usize,
    eager_capacity: usize,
    batch: usize,
    linger: Duration,
    send_cost: Duration,
    progress: bool,
}

impl Config {
    fn from_args() -> Config {
        let mut config = Config {
            workers: 60_000,
            resends: 20,
            threads: 4,
            capacity: 0,
            eager_capacity: 1 << 20,
            batch: 1024,
            linger: Duration::from_millis(10),
            send_cost: Duration::from_nanos(500),
            progress: true,
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut i = 0;
        while i < args.len() {
            let flag = args[i].as_str();
            if flag == "--help" || flag == "-h" {
                println!("{}", HELP);
                std::process::exit(0);
            }
            if flag == "--no-progress" {
                config.progress = false;
                i += 1;
                continue;
            }
            let value = args
                .get(i + 1)
                .unwrap_or_else(|| fail(&format!("{flag} needs a value")));
            let number = || -> u64 {
                value
                    .parse()
                    .unwrap_or_else(|_| fail(&format!("{flag}: not a number: {value}")))
            };
            match flag {
                "--workers" => config.workers = number() as usize,
                "--resends" => config.resends = number(),
                "--threads" => config.threads = number() as usize,
                "--capacity" => config.capacity = number() as usize,
                "--eager-capacity" => config.eager_capacity = number() as usize,
                "--batch" => config.batch = number() as usize,
                "--linger-ms" => config.linger = Duration::from_millis(number()),
                "--send-ns" => config.send_cost = Duration::from_nanos(number()),
                _ => fail(&format!("unknown flag {flag}")),
            }
            i += 2;
        }
        if config.workers == 0 || config.resends == 0 || config.threads == 0 || config.batch == 0 {
            fail("--workers, --resends, --threads and --batch must be at least 1");
        }
        if config.capacity == 0 {
            // Room for every distinct answer: duplicates need no slot.
            config.capacity = config.workers.next_power_of_two();
        }
        config.threads = config.threads.min(config.workers);
        config
    }
}

const HELP: &str = "fanout: replay N workers answering DONE to a re-sent fan-out request

  --workers N         distinct workers (answer keys)            [60000]
  --resends R         copies of the request each worker answers [20]
  --threads T         worker threads                            [4]
  --capacity C        CoalescingQueue capacity          [workers rounded up to 2^k]
  --eager-capacity C  eager channel capacity (the original's)   [1048576]
  --batch B           sender batch size                         [1024]
  --linger-ms L       sender linger window                      [10]
  --send-ns S         sender cost per message sent              [500]
  --no-progress       no progress lines on stderr";

fn fail(message: &str) -> ! {
    eprintln!("fanout: {message}\n\n{HELP}");
    std::process::exit(2);
}

// ----- the run -----

/// Where the answers go: the crate, or the eager baseline.
trait Pipe: Send + Sync + 'static {
    /// A worker's answer; blocks while the pipe is full.
    fn answer(&self, done: Done);
    /// Takes up to `max` messages, waiting for the first and then up to
    /// `linger`; returns them built. Empty once closed and drained.
    fn drain(&self, out: &mut Vec<Box<Message>>, max: usize, linger: Duration);
    fn close(&self);
    /// Answers waiting now (queued entries or channel messages).
    fn pending(&self) -> usize;
    /// Offers absorbed by a pending copy.
    fn coalesced(&self) -> u64;
}

struct Coalescing {
    queue: CoalescingQueue<Done, Box<Message>>,
    entries: std::sync::Mutex<Vec<Entry<Done, Box<Message>>>>,
}

impl Pipe for Coalescing {
    fn answer(&self, done: Done) {
        self.queue
            .offer_key(done)
            .expect("closed only after the workers end");
    }

    fn drain(&self, out: &mut Vec<Box<Message>>, max: usize, linger: Duration) {
        // One sender: the lock is never contended; it only reuses the Vec.
        let mut entries = self.entries.lock().unwrap();
        self.queue.take_batch(&mut entries, max, linger);
        // Lazy materialization: the message is built only now, once per
        // delivered key, however many times the key was offered.
        out.extend(entries.drain(..).map(|e| e.into_item(Message::build)));
    }

    fn close(&self) {
        self.queue.close();
    }

    fn pending(&self) -> usize {
        self.queue.len()
    }

    fn coalesced(&self) -> u64 {
        self.queue.stats().coalesced
    }
}

struct Eager {
    tx: crossbeam_channel::Sender<Box<Message>>,
    rx: crossbeam_channel::Receiver<Box<Message>>,
    closed: AtomicBool,
}

impl Pipe for Eager {
    fn answer(&self, done: Done) {
        // The original: every answer a freshly built message.
        self.tx.send(Message::build(done)).expect("receiver alive");
    }

    fn drain(&self, out: &mut Vec<Box<Message>>, max: usize, linger: Duration) {
        let first = loop {
            match self.rx.recv_timeout(Duration::from_millis(5)) {
                Ok(message) => break message,
                Err(RecvTimeoutError::Timeout) if self.closed.load(Relaxed) => {
                    if self.rx.is_empty() {
                        return;
                    }
                }
                Err(_) => {}
            }
        };
        out.push(first);
        let deadline = Instant::now() + linger;
        while out.len() < max {
            match self.rx.recv_deadline(deadline) {
                Ok(message) => out.push(message),
                Err(_) => break,
            }
        }
    }

    fn close(&self) {
        self.closed.store(true, Relaxed);
    }

    fn pending(&self) -> usize {
        self.rx.len()
    }

    fn coalesced(&self) -> u64 {
        0
    }
}

struct Report {
    name: &'static str,
    capacity: usize,
    offers: u64,
    delivered: u64,
    coalesced: u64,
    all_answered: bool,
    peak_pending: usize,
    peak_heap: usize,
    wall: Duration,
    resends: u64,
    held_back: u64,
}

fn run(
    name: &'static str,
    config: &Config,
    capacity: usize,
    make: impl FnOnce() -> Arc<dyn Pipe>,
) -> Report {
    let heap_before = LIVE.load(Relaxed);
    PEAK.store(heap_before, Relaxed);
    let started = Instant::now();
    let pipe = make();

    // The request copy the coordinator last sent; workers answer each one.
    let round = Arc::new(AtomicU64::new(0));
    let offers = Arc::new(AtomicU64::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    let peak_pending = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    // The coordinator's gate: no resend while answers still stream in
    // (quiet window), at most one per min_interval, never later than max_wait.
    let gate = Arc::new(ResendGate::new(
        Duration::from_millis(5),
        Duration::from_millis(2),
        Duration::from_millis(40),
    ));

    let workers: Vec<_> = (0..config.threads)
        .map(|t| {
            let (pipe, round, offers) = (pipe.clone(), round.clone(), offers.clone());
            let (from, to) = (
                config.workers * t / config.threads,
                config.workers * (t + 1) / config.threads,
            );
            let resends = config.resends;
            thread::spawn(move || {
                let mut answered = 0;
                while answered < resends {
                    let current = round.load(Relaxed);
                    if current == answered {
                        thread::sleep(Duration::from_micros(200));
                        continue;
                    }
                    // Every copy of the request is answered, also when
                    // several arrived while this worker was busy.
                    while answered < current {
                        answered += 1;
                        for dispatcher in from..to {
                            pipe.answer(done_of(dispatcher));
                        }
                        offers.fetch_add((to - from) as u64, Relaxed);
                    }
                }
            })
        })
        .collect();

    let sender = {
        let (pipe, delivered, gate, config) = (
            pipe.clone(),
            delivered.clone(),
            gate.clone(),
            config.clone(),
        );
        thread::spawn(move || {
            let mut answered = vec![false; config.workers];
            let mut batch = Vec::with_capacity(config.batch);
            loop {
                pipe.drain(&mut batch, config.batch, config.linger);
                if batch.is_empty() {
                    return answered.iter().all(|&a| a);
                }
                gate.note_status(Instant::now());
                delivered.fetch_add(batch.len() as u64, Relaxed);
                for message in batch.drain(..) {
                    // The transport: a fixed cost per message sent.
                    let until = Instant::now() + config.send_cost;
                    while Instant::now() < until {
                        std::hint::spin_loop();
                    }
                    answered[message.done.dispatcher as u64 as usize] = true;
                    black_box(message);
                }
            }
        })
    };

    let monitor = {
        let (pipe, peak, finished, offers, delivered) = (
            pipe.clone(),
            peak_pending.clone(),
            finished.clone(),
            offers.clone(),
            delivered.clone(),
        );
        let progress = config.progress;
        thread::spawn(move || {
            let mut last_print = Instant::now();
            while !finished.load(Relaxed) {
                peak.fetch_max(pipe.pending(), Relaxed);
                if progress && last_print.elapsed() >= Duration::from_secs(1) {
                    last_print = Instant::now();
                    eprintln!(
                        "  [{name}] offers {:>10}  delivered {:>10}  pending {:>8}",
                        offers.load(Relaxed),
                        delivered.load(Relaxed),
                        pipe.pending()
                    );
                }
                thread::sleep(Duration::from_millis(1));
            }
        })
    };

    // The coordinator: resend when the gate allows, until R copies went out.
    let mut held_back = 0;
    while round.load(Relaxed) < config.resends {
        match gate.try_resend(Instant::now()) {
            Some(permit) => {
                round.fetch_add(1, Relaxed);
                permit.sent();
            }
            None => held_back += 1,
        }
        thread::sleep(Duration::from_millis(1));
    }
    for worker in workers {
        worker.join().expect("a worker panicked");
    }
    pipe.close();
    let all_answered = sender.join().expect("the sender panicked");
    finished.store(true, Relaxed);
    monitor.join().expect("the monitor panicked");
    let wall = started.elapsed();

    Report {
        name,
        capacity,
        offers: offers.load(Relaxed),
        delivered: delivered.load(Relaxed),
        coalesced: pipe.coalesced(),
        all_answered,
        peak_pending: peak_pending.load(Relaxed),
        peak_heap: PEAK.load(Relaxed).saturating_sub(heap_before),
        wall,
        resends: round.load(Relaxed),
        held_back,
    }
}

fn done_of(dispatcher: usize) -> Done {
    Done {
        dispatcher: (0x9e37_79b9_7f4a_7c15_u128 << 64) | dispatcher as u128,
        checkpoint: 4_000_000,
        is_blocked: false,
        is_done: true,
    }
}

fn main() {
    let config = Config::from_args();
    println!(
        "fanout: {} workers x {} resends = {} answers; {} worker threads, one sender \
         (batch {}, linger {:?}, {:?} per message sent)",
        config.workers,
        config.resends,
        config.workers as u64 * config.resends,
        config.threads,
        config.batch,
        config.linger,
        config.send_cost,
    );
    let capacity = config.capacity;
    let coalescing = run("coalescing-queue", &config, capacity, || {
        Arc::new(Coalescing {
            queue: CoalescingQueue::new(capacity),
            entries: std::sync::Mutex::new(Vec::with_capacity(config.batch)),
        })
    });
    let eager_capacity = config.eager_capacity;
    let eager = run("eager channel", &config, eager_capacity, || {
        let (tx, rx) = bounded(eager_capacity);
        Arc::new(Eager {
            tx,
            rx,
            closed: AtomicBool::new(false),
        })
    });

    let header = [
        "pipe",
        "capacity",
        "offers",
        "delivered",
        "coalesced",
        "answered",
        "peak pending",
        "peak heap KiB",
        "wall s",
        "offers/s",
        "resends",
        "held back",
    ];
    let rows: Vec<[String; 12]> = [&coalescing, &eager]
        .iter()
        .map(|r| {
            [
                r.name.to_string(),
                r.capacity.to_string(),
                r.offers.to_string(),
                r.delivered.to_string(),
                r.coalesced.to_string(),
                (if r.all_answered { "all" } else { "MISSING" }).to_string(),
                r.peak_pending.to_string(),
                (r.peak_heap / 1024).to_string(),
                format!("{:.2}", r.wall.as_secs_f64()),
                format!("{:.0}", r.offers as f64 / r.wall.as_secs_f64()),
                r.resends.to_string(),
                r.held_back.to_string(),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|row| row[c].len())
                .chain([header[c].len()])
                .max()
                .unwrap()
        })
        .collect();
    let line = |cells: Vec<String>| println!("| {} |", cells.join(" | "));
    println!();
    line(
        header
            .iter()
            .zip(&widths)
            .map(|(h, w)| format!("{h:>w$}"))
            .collect(),
    );
    line(widths.iter().map(|w| "-".repeat(*w)).collect());
    for row in &rows {
        line(
            row.iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:>w$}"))
                .collect(),
        );
    }
    println!();
    println!("{LEGEND}");
    println!();
    println!(
        "peak heap: coalescing-queue {:.2}x the eager channel's; messages built: {} vs {}",
        coalescing.peak_heap as f64 / eager.peak_heap.max(1) as f64,
        coalescing.delivered,
        eager.delivered,
    );

    // The checks of the run, and one line that says whether it met them.
    let checks = [
        (
            "every worker's answer reached the sender through coalescing-queue",
            coalescing.all_answered,
        ),
        (
            "every worker's answer reached the sender through the eager channel",
            eager.all_answered,
        ),
        (
            "coalescing-queue: every offer delivered or coalesced (delivered + coalesced = offers)",
            coalescing.delivered + coalescing.coalesced == coalescing.offers,
        ),
        (
            "coalescing-queue: peak pending within its capacity",
            coalescing.peak_pending <= coalescing.capacity,
        ),
        (
            "the eager channel delivered every offer (it does not coalesce)",
            eager.delivered == eager.offers,
        ),
    ];
    let failed: Vec<&str> = checks
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(what, _)| *what)
        .collect();
    if failed.is_empty() {
        println!(
            "verdict: PASS ({} of {} checks met)",
            checks.len(),
            checks.len()
        );
    } else {
        println!(
            "verdict: FAIL ({} of {} checks missed: {})",
            failed.len(),
            checks.len(),
            failed.join("; ")
        );
        std::process::exit(1);
    }
}

/// What the table's columns mean.
const LEGEND: &str = "\
legend:
  offers        answers the workers offered: workers x resends
  delivered     messages the sender built and sent. Above the worker count for
                coalescing-queue: an answer offered again after its copy was
                taken is a new copy (the worker answered a later resend), so a
                worker can be delivered once per resend that found no copy pending
  coalesced     offers absorbed by a pending copy of the same answer (no slot,
                no message built); delivered + coalesced = offers
  answered      whether every worker's answer reached the sender at least once
  peak pending  the most entries queued at once, sampled every millisecond
  peak heap     the most heap bytes live above the start of the run
  resends       copies of the request the coordinator sent
  held back     times the coordinator's resend gate said not yet (answers still
                streaming in, or too soon after the last resend), each checked
                1 ms apart";
