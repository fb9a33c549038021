//! A plain driver for profilers (callgrind, perf): runs one workload of
//! `benches/queues.rs` on one design for a fixed number of items, without
//! criterion, so instruction counts per item are repeatable.
//!
//! ```text
//! cargo bench --bench profile --no-run      # prints the binary's path
//! valgrind --tool=callgrind --callgrind-out-file=cg.out \
//!     target/release/deps/profile-<hash> st_unique_pair crate 200000
//! callgrind_annotate cg.out | head -60
//! ```
//!
//! Workloads: st_unique_pair, st_dup90, spsc, st_lease_pair (the crate's
//! designs only: no baseline has leases), and depth_1e3 .. depth_1e6 (the
//! designs that coalesce; an iteration is a round of 10 offers). Designs: crate, general,
//! mutex, ported, dashmap, raw, eager. And st_value90 (`baselines::value90_round`:
//! 10 offers of one key with its own value each, then the take; an iteration is
//! 10 offers) on the value designs, under the same names: crate (`Valued<Compact>`),
//! general (`Valued`), mutex (`HashMap<Key, u64>`), dashmap (`DashMap<Key, u64>`).
//! `scripts/bench-report` runs it under
//! callgrind for its table of instructions per operation. Run with `cargo
//! bench` (no workload given) it does nothing.

#[path = "baselines/mod.rs"]
mod baselines;

use baselines::{
    check_values, key, offer_wait, take_wait, value90_round, Crate, CrateGeneral,
    CrateGeneralValued, CrateValued, Dash, DashValues, Depth, Design, Eager, Leased, MutexQ,
    MutexValues, Ported, Raw, ValueDesign, DEPTH_CAPACITY,
};
use std::hint::black_box;
use std::time::Instant;

fn st_unique_pair<D: Design>(q: &D, n: u64) {
    for i in 0..n {
        black_box(q.try_offer(D::prepare(black_box(key(i)))).is_ok());
        black_box(q.try_take());
    }
}

fn st_dup90<D: Design>(q: &D, n: u64) {
    for i in 0..n {
        let mut enqueued = 0;
        for _ in 0..10 {
            if let Ok(true) = q.try_offer(D::prepare(black_box(key(i)))) {
                enqueued += 1;
            }
        }
        for _ in 0..enqueued {
            black_box(q.try_take());
        }
    }
}

fn st_lease_pair<D: Leased>(q: &D, n: u64) {
    for i in 0..n {
        black_box(q.try_offer(D::prepare(black_box(key(i)))).is_ok());
        black_box(q.try_take_ack(|e| {
            black_box(e);
        }));
    }
}

fn spsc<D: Design>(q: &D, n: u64) {
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..n {
                offer_wait(q, key(i));
            }
        });
        for _ in 0..n {
            black_box(take_wait(q));
        }
    });
}

/// `st_lease_pair` on a design with leases.
fn run_leased<D: Leased>(workload: &str, n: u64) {
    if workload != "st_lease_pair" {
        return run::<D>(workload, n);
    }
    let q = D::with_capacity(1024);
    st_lease_pair(&q, 1000);
    let t = Instant::now();
    st_lease_pair(&q, n);
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    eprintln!("{workload} {} n={n}: {ns:.1} ns per iteration", D::NAME);
}

/// `depth_1e3` .. `depth_1e6`: `n` rounds of `baselines::Depth` (10 offers
/// each) on a table of 2^20 holding that many keys.
fn run_depth<D: Design>(pending: u64, n: u64) {
    let q = D::with_capacity(DEPTH_CAPACITY);
    let mut state = Depth::fill(&q, pending);
    let t = Instant::now();
    for _ in 0..n {
        state.round(&q);
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    eprintln!(
        "depth {pending} {} n={n}: {ns:.1} ns per round of 10 offers",
        D::NAME
    );
}

fn run<D: Design>(workload: &str, n: u64) {
    if let Some(exponent) = workload.strip_prefix("depth_1e") {
        let exponent: u32 = exponent.parse().expect("depth_1e<3..6>");
        return run_depth::<D>(10u64.pow(exponent), n);
    }
    let capacity = if workload == "spsc" { 1 << 16 } else { 1024 };
    let q = D::with_capacity(capacity);
    // Warm-up outside the measured loop (callgrind still counts it; keep n
    // large against it, or use --toggle-collect on the workload function).
    st_unique_pair(&q, 1000);
    let t = Instant::now();
    match workload {
        "st_unique_pair" => st_unique_pair(&q, n),
        "st_dup90" => st_dup90(&q, n),
        "spsc" => spsc(&q, n),
        other => panic!("unknown workload {other}"),
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    eprintln!("{workload} {} n={n}: {ns:.1} ns per iteration", D::NAME);
}

/// `st_value90` on a value design: `n` iterations of
/// `baselines::value90_round` (10 offers each), after a check of the
/// design's values and a warm-up, as `run`.
fn run_values<D: ValueDesign>(workload: &str, n: u64) {
    assert_eq!(
        workload, "st_value90",
        "the value designs run st_value90 only"
    );
    let q = D::with_capacity(1024);
    check_values(&q);
    for i in 0..1000 {
        value90_round(&q, i);
    }
    let t = Instant::now();
    for i in 0..n {
        value90_round(&q, i);
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    eprintln!(
        "{workload} {} n={n}: {ns:.1} ns per iteration (10 offers)",
        D::NAME
    );
}

/// Costs of the parts the crate's hot path is made of, each in isolation on
/// one thread (ns per operation, best of 5 runs of `n`): evidence for where
/// the time goes. `profile parts` runs it.
fn parts(n: u64) {
    use coalescing_queue::DefaultHashBuilder;
    use core::hash::BuildHasher;
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    fn time(name: &str, n: u64, mut f: impl FnMut(u64)) {
        let best = (0..5)
            .map(|_| {
                let t = Instant::now();
                for i in 0..n {
                    f(i);
                }
                t.elapsed().as_nanos() as f64 / n as f64
            })
            .fold(f64::INFINITY, f64::min);
        println!("{name:<58} {best:>7.1} ns");
    }
    type E = coalescing_queue::Entry<baselines::Key, Box<baselines::Message>>;

    let hasher = DefaultHashBuilder::default();
    time("foldhash of the 32-byte key", n, |i| {
        black_box(hasher.hash_one(black_box(key(i))));
    });
    let word = AtomicU64::new(0);
    time("AtomicU64 CAS (claim) + fetch_sub (release)", n, |_| {
        let c = word.load(Ordering::Acquire);
        let _ = word.compare_exchange_weak(c, c + 1, Ordering::AcqRel, Ordering::Acquire);
        word.fetch_sub(1, Ordering::AcqRel);
    });
    let counter = AtomicU64::new(0);
    time("one Relaxed fetch_add (a stats counter)", n, |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let event = event_listener::Event::new();
    event.notify_additional(1);
    time("Event::notify_additional(1), nobody listening", n, |_| {
        black_box(event.notify_additional(1));
    });
    time(
        "Event::notify_additional_relaxed(1), nobody listening",
        n,
        |_| {
            black_box(event.notify_additional_relaxed(1));
        },
    );
    time(
        "Event::total_listeners() (a lock; no public lock-free check)",
        n,
        |_| {
            black_box(event.total_listeners());
        },
    );
    let ring = crossbeam_queue::ArrayQueue::<E>::new(1024);
    time("ArrayQueue<Entry<Key, Box<Msg>>> push + pop", n, |i| {
        let _ = ring.push(coalescing_queue::Entry::Key(key(i)));
        black_box(ring.pop());
    });
    let set = Mutex::new(
        HashSet::<baselines::Key, DefaultHashBuilder>::with_capacity_and_hasher(
            1024,
            DefaultHashBuilder::default(),
        ),
    );
    time(
        "Mutex<HashSet> lock+insert+unlock, lock+remove+unlock",
        n,
        |i| {
            set.lock().unwrap().insert(key(i));
            black_box(set.lock().unwrap().remove(&key(i)));
        },
    );
    let crate_q = Crate::with_capacity(1024);
    time("crate try_offer_key + try_take (for comparison)", n, |i| {
        black_box(crate_q.try_offer(key(i)).is_ok());
        black_box(crate_q.try_take());
    });
    let mutex_q = MutexQ::with_capacity(1024);
    time("mutex baseline offer + take (for comparison)", n, |i| {
        black_box(mutex_q.try_offer(key(i)).is_ok());
        black_box(mutex_q.try_take());
    });
    set.lock().unwrap().insert(key(7));
    time("Mutex<HashSet> lock+contains+unlock (dup)", n, |_| {
        black_box(set.lock().unwrap().contains(&black_box(key(7))));
    });
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("parts") {
        let n = std::env::args()
            .nth(2)
            .map_or(2_000_000, |s| s.parse().expect("n"));
        return parts(n);
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let [workload, design, rest @ ..] = args.as_slice() else {
        eprintln!("usage: profile <workload> <design> [n]  (nothing to do)");
        return;
    };
    let n = rest.first().map_or(200_000, |s| s.parse().expect("n"));
    if workload == "st_value90" {
        return match design.as_str() {
            "crate" => run_values::<CrateValued>(workload, n),
            "general" => run_values::<CrateGeneralValued>(workload, n),
            "mutex" => run_values::<MutexValues>(workload, n),
            "dashmap" => run_values::<DashValues>(workload, n),
            other => panic!("no value design {other} (crate, general, mutex, dashmap)"),
        };
    }
    match design.as_str() {
        "crate" => run_leased::<Crate>(workload, n),
        "general" => run_leased::<CrateGeneral>(workload, n),
        "mutex" => run::<MutexQ>(workload, n),
        "ported" => run::<Ported>(workload, n),
        "dashmap" => run::<Dash>(workload, n),
        "raw" => run::<Raw>(workload, n),
        "eager" => run::<Eager>(workload, n),
        other => panic!("unknown design {other}"),
    }
}
