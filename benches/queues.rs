//! The benchmark workloads: the crate and every baseline in the same criterion
//! group, so one run gives all the medians to compare.
//!
//! `cargo bench --bench queues` (all), `cargo bench --bench queues -- spsc`
//! (one group). `scripts/bench-report` runs it and prints the ratio table.
//!
//! What one criterion iteration is, per group (the report divides by it):
//! * `st_unique_pair` - one offer of a new key + one take;
//! * `st_dup90`       - 10 offers of one key (1 new + 9 duplicates while it
//!   is pending), then the takes that drain them (1 for deduping designs, 10
//!   for the others): report ns per offer = median / 10;
//! * `spsc`, `mpmc_2t`, `mpmc_4t_over`, `batch` - one item (offered once and
//!   taken once, distinct keys), timed with `iter_custom` over many items
//!   spread across threads: median is ns per item.
//!
//! Two more groups use leases, which only the crate has, so only its two
//! columns (`crate`, `general`) are in them:
//! * `st_lease_pair` - as `st_unique_pair`, with the take leased and acked:
//!   one offer of a new key + `try_take_leased()` + `ack()`;
//! * `batch_leased`  - as `batch`, the consumer taking with
//!   `take_batch_leased(256, linger 0)` and acking each batch: ns per item.
//!
//! Two more use keys with values (`baselines::ValueDesign`: a key offered
//! with a `u64`, latest value wins, a take delivers the pair), so only the
//! value designs are in them, under the columns `crate` (the compact valued
//! store), `general` (the general valued store), `mutex` (`Mutex<(VecDeque,
//! HashMap<Key, u64>)>`) and `dashmap` (`ArrayQueue` + `DashMap<Key, u64>`):
//! * `st_value90`    - 10 offers of one key, each with its own value (1 new +
//!   9 replacing the pending value), then the take that drains it, checking
//!   its value in debug builds (`baselines::value90_round`): ns per offer =
//!   median / 10;
//! * `mpmc_value_2t` - 2 threads, each in rounds of 10 offers of one of 4
//!   keys the threads share (round r: key r % 4), each offer its own value,
//!   then as many takes as its offers enqueued (its own entries or the
//!   other's): one item is one offer, ns per offer. About 9 in 10 offers
//!   replace a pending value; the exact share is printed after each design.
//!
//! All waits are the same for every design: spin a little, then yield.

#[path = "baselines/mod.rs"]
mod baselines;

use baselines::{
    check_values, key, offer_value_wait, offer_wait, take_value_wait, take_wait, value90_round,
    Backoff, Crate, CrateGeneral, CrateGeneralValued, CrateValued, Dash, DashValues, Depth, Design,
    Eager, Leased, MutexQ, MutexValues, Ported, Raw, ValueDesign, DEPTH_CAPACITY,
};
use criterion::measurement::WallTime;
use criterion::{
    black_box, criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

/// Capacity for the single-threaded workloads (never more than 10 pending).
const ST_CAPACITY: usize = 1024;
/// Capacity for the threaded workloads: room for producers to run ahead.
const MT_CAPACITY: usize = 1 << 16;
/// `take_batch` size in the `batch` and `batch_leased` workloads.
const BATCH: usize = 256;
/// How long `take_batch_leased` gathers after its first entry in
/// `batch_leased`: not at all, as `take_batch` in `batch`.
const LINGER: Duration = Duration::ZERO;
/// How many keys the two threads of `mpmc_value_2t` share.
const VALUE_KEYS: u64 = 4;

fn group<'a>(c: &'a mut Criterion, name: &str, threaded: bool) -> BenchmarkGroup<'a, WallTime> {
    // ns per offer for st_dup90, st_value90 and depth_* (10 offers per
    // iteration), per item otherwise.
    let elements = if name == "st_dup90" || name == "st_value90" || name.starts_with("depth_") {
        10
    } else {
        1
    };
    let mut g = c.benchmark_group(name);
    if threaded {
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(700))
            .measurement_time(Duration::from_secs(3));
    } else {
        g.sample_size(30)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
    }
    g.throughput(Throughput::Elements(elements));
    g
}

// ----- single thread -----

fn st_unique_pair<D: Design>(g: &mut BenchmarkGroup<'_, WallTime>) {
    let q = D::with_capacity(ST_CAPACITY);
    let mut i = 0u64;
    g.bench_function(D::NAME, |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(q.try_offer(D::prepare(black_box(key(i)))).is_ok());
            black_box(q.try_take());
        })
    });
}

/// `depth_*`: rounds of 10 offers (9 duplicates of random pending keys, a
/// take and a new key) on a table of 2^20 holding `PENDING` keys
/// (`baselines::Depth`): what a duplicate costs once the keys no longer fit
/// in the caches.
fn depth<D: Design, const PENDING: u64>(g: &mut BenchmarkGroup<'_, WallTime>) {
    let q = D::with_capacity(DEPTH_CAPACITY);
    let mut state = Depth::fill(&q, PENDING);
    g.bench_function(D::NAME, |b| b.iter(|| state.round(&q)));
}

fn st_dup90<D: Design>(g: &mut BenchmarkGroup<'_, WallTime>) {
    let q = D::with_capacity(ST_CAPACITY);
    let mut i = 0u64;
    g.bench_function(D::NAME, |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let mut enqueued = 0;
            for _ in 0..10 {
                // 1 new key, then 9 duplicates of it while it is pending.
                if let Ok(true) = q.try_offer(D::prepare(black_box(key(i)))) {
                    enqueued += 1;
                }
            }
            // Drain what was enqueued: 1 take if deduped, 10 if not.
            for _ in 0..enqueued {
                black_box(q.try_take());
            }
        })
    });
}

fn st_lease_pair<D: Leased>(g: &mut BenchmarkGroup<'_, WallTime>) {
    let q = D::with_capacity(ST_CAPACITY);
    let mut i = 0u64;
    g.bench_function(D::NAME, |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(q.try_offer(D::prepare(black_box(key(i)))).is_ok());
            black_box(q.try_take_ack(|e| {
                black_box(e);
            }));
        })
    });
}

fn st_value90<D: ValueDesign>(g: &mut BenchmarkGroup<'_, WallTime>) {
    let q = D::with_capacity(ST_CAPACITY);
    check_values(&q);
    let mut i = 0u64;
    g.bench_function(D::NAME, |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            value90_round(&q, i);
        })
    });
}

// ----- threads -----

/// Runs `threads` closures (given their index) released together by a
/// barrier; returns the wall time from the release to the last join.
fn run_threads<F>(threads: usize, f: F) -> Duration
where
    F: Fn(usize) + Sync,
{
    let barrier = Barrier::new(threads + 1);
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (f, barrier) = (&f, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    f(t)
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for h in handles {
            h.join().unwrap();
        }
        start.elapsed()
    })
}

/// Splits `n` items among `parts`: the share of part `t`.
fn share(n: u64, parts: u64, t: u64) -> u64 {
    n / parts + u64::from(t < n % parts)
}

fn spsc<D: Design>(g: &mut BenchmarkGroup<'_, WallTime>) {
    let q = D::with_capacity(MT_CAPACITY);
    g.bench_function(D::NAME, |b| {
        b.iter_custom(|n| {
            run_threads(2, |t| {
                if t == 0 {
                    for i in 0..n {
                        offer_wait(&q, key(i));
                    }
                } else {
                    for _ in 0..n {
                        black_box(take_wait(&q));
                    }
                }
            })
        })
    });
}

fn mpmc_2t<D: Design>(g: &mut BenchmarkGroup<'_, WallTime>) {
    let q = D::with_capacity(MT_CAPACITY);
    g.bench_function(D::NAME, |b| {
        b.iter_custom(|n| {
            run_threads(2, |t| {
                // Each thread offers its own keys and takes as many entries
                // (its own or the other's): at least one is always there.
                let base = t as u64 * (n / 2 + 1);
                for i in 0..share(n, 2, t as u64) {
                    offer_wait(&q, key(base + i));
                    black_box(take_wait(&q));
                }
            })
        })
    });
}

fn mpmc_4t_over<D: Design>(g: &mut BenchmarkGroup<'_, WallTime>) {
    let q = D::with_capacity(MT_CAPACITY);
    g.bench_function(D::NAME, |b| {
        b.iter_custom(|n| {
            // Threads 0, 1 produce; 2, 3 consume; each consumer takes a fixed
            // share, so no shared "done" counter is needed.
            run_threads(4, |t| {
                if t < 2 {
                    let base = t as u64 * (n / 2 + 1);
                    for i in 0..share(n, 2, t as u64) {
                        offer_wait(&q, key(base + i));
                    }
                } else {
                    for _ in 0..share(n, 2, t as u64 - 2) {
                        black_box(take_wait(&q));
                    }
                }
            })
        })
    });
}

fn batch<D: Design>(g: &mut BenchmarkGroup<'_, WallTime>) {
    let q = D::with_capacity(MT_CAPACITY);
    g.bench_function(D::NAME, |b| {
        b.iter_custom(|n| {
            // Threads 0, 1 produce; thread 2 drains in batches of up to 256.
            run_threads(3, |t| {
                if t < 2 {
                    let base = t as u64 * (n / 2 + 1);
                    for i in 0..share(n, 2, t as u64) {
                        offer_wait(&q, key(base + i));
                    }
                } else {
                    let mut out = Vec::with_capacity(BATCH);
                    let mut got = 0u64;
                    let mut backoff = Backoff::new();
                    while got < n {
                        let k = q.take_batch(&mut out, BATCH);
                        if k == 0 {
                            backoff.snooze();
                        } else {
                            backoff = Backoff::new();
                            got += k as u64;
                            black_box(&out);
                            out.clear();
                        }
                    }
                }
            })
        })
    });
}

fn mpmc_value_2t<D: ValueDesign>(g: &mut BenchmarkGroup<'_, WallTime>) {
    let q = D::with_capacity(MT_CAPACITY);
    check_values(&q);
    // Offers and the new entries among them, over every timed run: the
    // share of offers that replaced a pending value, printed at the end.
    let (offers, enqueued) = (AtomicU64::new(0), AtomicU64::new(0));
    g.bench_function(D::NAME, |b| {
        b.iter_custom(|n| {
            run_threads(2, |t| {
                // Rounds of 10 offers of one shared key, then as many takes
                // as this thread's offers enqueued: at least one entry is
                // always there (as in mpmc_2t: each thread takes only after
                // its own offers made the entries it takes for).
                let mine = share(n, 2, t as u64);
                let (mut new, mut total_new) = (0u64, 0u64);
                for i in 0..mine {
                    // Distinct values: the offer's number and the thread.
                    let value = i << 1 | t as u64;
                    if offer_value_wait(&q, key(i / 10 % VALUE_KEYS), value) {
                        new += 1;
                    }
                    if i % 10 == 9 || i + 1 == mine {
                        for _ in 0..new {
                            let (k, v) = black_box(take_value_wait(&q));
                            // The value is one offered with this key.
                            debug_assert_eq!(k, key((v >> 1) / 10 % VALUE_KEYS), "{}", D::NAME);
                        }
                        total_new += new;
                        new = 0;
                    }
                }
                offers.fetch_add(mine, Ordering::Relaxed);
                enqueued.fetch_add(total_new, Ordering::Relaxed);
            })
        })
    });
    let (offers, enqueued) = (offers.into_inner(), enqueued.into_inner());
    if offers > 0 {
        eprintln!(
            "mpmc_value_2t/{}: {:.1}% of {offers} offers replaced a pending value",
            D::NAME,
            100.0 * (offers - enqueued) as f64 / offers as f64
        );
    }
}

fn batch_leased<D: Leased>(g: &mut BenchmarkGroup<'_, WallTime>) {
    let q = D::with_capacity(MT_CAPACITY);
    g.bench_function(D::NAME, |b| {
        b.iter_custom(|n| {
            // As `batch`; each batch is leased, then acked (which frees its
            // slots: until then they stay claimed).
            run_threads(3, |t| {
                if t < 2 {
                    let base = t as u64 * (n / 2 + 1);
                    for i in 0..share(n, 2, t as u64) {
                        offer_wait(&q, key(base + i));
                    }
                } else {
                    let mut got = 0u64;
                    let mut backoff = Backoff::new();
                    while got < n {
                        let k = q.take_batch_ack(BATCH, LINGER, |entries| {
                            black_box(entries);
                        });
                        if k == 0 {
                            backoff.snooze();
                        } else {
                            backoff = Backoff::new();
                            got += k as u64;
                        }
                    }
                }
            })
        })
    });
}

// ----- groups -----

macro_rules! all_designs {
    ($c:expr, $name:literal, $threaded:expr, $f:ident) => {{
        let mut g = group($c, $name, $threaded);
        $f::<Crate>(&mut g);
        $f::<CrateGeneral>(&mut g);
        $f::<MutexQ>(&mut g);
        $f::<Ported>(&mut g);
        $f::<Dash>(&mut g);
        $f::<Raw>(&mut g);
        $f::<Eager>(&mut g);
        g.finish();
    }};
}

/// The groups of the designs that coalesce (the others fill with
/// duplicates and refuse the rest as full).
macro_rules! dedupe_designs {
    ($c:expr, $name:literal, $threaded:expr, $f:ident, $pending:expr) => {{
        let mut g = group($c, $name, $threaded);
        $f::<Crate, $pending>(&mut g);
        $f::<CrateGeneral, $pending>(&mut g);
        $f::<MutexQ, $pending>(&mut g);
        $f::<Ported, $pending>(&mut g);
        $f::<Dash, $pending>(&mut g);
        g.finish();
    }};
}

/// The groups only the crate's designs are in (leases).
macro_rules! crate_designs {
    ($c:expr, $name:literal, $threaded:expr, $f:ident) => {{
        let mut g = group($c, $name, $threaded);
        $f::<Crate>(&mut g);
        $f::<CrateGeneral>(&mut g);
        g.finish();
    }};
}

/// The groups of keys with values (`ValueDesign`): the crate's two valued
/// stores and the two baselines with values.
macro_rules! value_designs {
    ($c:expr, $name:literal, $threaded:expr, $f:ident) => {{
        let mut g = group($c, $name, $threaded);
        $f::<CrateValued>(&mut g);
        $f::<CrateGeneralValued>(&mut g);
        $f::<MutexValues>(&mut g);
        $f::<DashValues>(&mut g);
        g.finish();
    }};
}

fn benches(c: &mut Criterion) {
    all_designs!(c, "st_unique_pair", false, st_unique_pair);
    all_designs!(c, "st_dup90", false, st_dup90);
    all_designs!(c, "spsc", true, spsc);
    all_designs!(c, "mpmc_2t", true, mpmc_2t);
    all_designs!(c, "mpmc_4t_over", true, mpmc_4t_over);
    all_designs!(c, "batch", true, batch);
    crate_designs!(c, "st_lease_pair", false, st_lease_pair);
    crate_designs!(c, "batch_leased", true, batch_leased);
    dedupe_designs!(c, "depth_1e3", false, depth, 1_000);
    dedupe_designs!(c, "depth_1e4", false, depth, 10_000);
    dedupe_designs!(c, "depth_1e5", false, depth, 100_000);
    dedupe_designs!(c, "depth_1e6", false, depth, 1_000_000);
    value_designs!(c, "st_value90", false, st_value90);
    value_designs!(c, "mpmc_value_2t", true, mpmc_value_2t);
}

fn config() -> Criterion {
    // Fewer bootstrap resamples: the analysis otherwise takes seconds per
    // benchmark without rayon.
    Criterion::default().nresamples(10_000)
}

criterion_group! {
    name = queues;
    config = config();
    targets = benches
}
criterion_main!(queues);
