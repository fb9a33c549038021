//! Checkpoints: each table's newest checkpoint gets out, never a stale one
//! after it.
//!
//! 10,000 tables; 8 worker threads report "table `t` is done up to
//! checkpoint `ts`" as offers of `(t, ts)` on a `Valued<Compact>` queue
//! whose merge keeps the larger `ts`. Every report is offered several times
//! (re-sends), and a worker re-sends its older reports after its newer
//! ones, so for any table the offers arrive out of order, within a thread
//! and between threads. One sender thread takes leased batches and sends
//! them over a transport that fails about one batch in ten (pseudo-random,
//! the same batch numbers every run): a failed batch is nacked, a good one
//! acked.
//!
//! What coalesces is the table; the checkpoint rides with it. While a
//! table is pending, an older report merges away (max), and a nack queues
//! the larger of the leased checkpoint and those offered meanwhile. A merge
//! sees only what is still pending, though: once a checkpoint is delivered
//! (its lease acked) the queue forgets it, and a stale re-send offered
//! after that, or while it was in flight, comes out on its own. So the
//! sender keeps the last checkpoint it sent per table and acks, without
//! sending, one that is not newer.
//!
//! At the end the program checks what went over the wire, and prints it:
//! per table, the checkpoints sent never went backwards, and the last one
//! is the newest offered. It exits non-zero if not.
//!
//! ```text
//! cargo run --release --example checkpoints
//! ```

use coalescing_queue::{Builder, Compact, Entry, Valued};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const TABLES: u32 = 10_000;
const WORKERS: u64 = 8;
/// Checkpoints each worker reports per table.
const ROUNDS: u64 = 16;
/// Times each report is offered.
const RESENDS: u64 = 3;
/// Entries per leased batch.
const BATCH: usize = 512;

/// A report: table, checkpoint.
type Report = (u32, u64);

/// The checkpoint worker `w` reports for `table` in round `r`: the rounds
/// of all workers interleave, so each table's checkpoint grows with time,
/// but a slower worker's report can be older than one already offered; and
/// which worker is ahead differs from table to table.
fn checkpoint(w: u64, r: u64, table: u32) -> u64 {
    r * WORKERS + (w + r + u64::from(table)) % WORKERS + 1
}

/// splitmix64: the transport's failures, a function of the batch number.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A transport that fails about one batch in ten, and records what it
/// carried: the checks read the wire, not the sender's own bookkeeping.
struct FlakyTransport {
    sends: u64,
    failed: u64,
    messages: u64,
    /// Per table, the last checkpoint carried (0: none yet).
    carried: Vec<u64>,
    /// Messages that carried an older checkpoint than one carried before.
    stale: u64,
    first_stale: Option<(u32, u64, u64)>,
}

impl FlakyTransport {
    fn send(&mut self, reports: &[Report]) -> Result<(), &'static str> {
        let n = self.sends;
        self.sends += 1;
        // The messages are built from the reports only now, at send time.
        let bytes: usize = reports
            .iter()
            .map(|(t, ts)| format!("table {t} done up to {ts}").len())
            .sum();
        std::hint::black_box(bytes);
        // Long enough that reports arrive while the batch is in flight.
        thread::sleep(Duration::from_micros(100));
        if mix(n) % 10 == 0 {
            self.failed += 1;
            return Err("connection reset");
        }
        for &(table, ts) in reports {
            let last = &mut self.carried[table as usize];
            if ts < *last {
                self.stale += 1;
                self.first_stale.get_or_insert((table, *last, ts));
            }
            *last = ts;
        }
        self.messages += reports.len() as u64;
        Ok(())
    }
}

fn main() {
    let started = Instant::now();
    // One entry per table: a report never waits for room.
    let queue = Arc::new(
        Builder::<Report, String, Valued<Compact>>::new()
            .capacity(TABLES as usize)
            .merge(|pending: &mut u64, newer: u64| *pending = (*pending).max(newer))
            .build(),
    );
    // Per table, the newest checkpoint offered; read after the workers end.
    let newest: Vec<AtomicU64> = (0..TABLES).map(|_| AtomicU64::new(0)).collect();
    let offers = AtomicU64::new(0);

    let mut transport = FlakyTransport {
        sends: 0,
        failed: 0,
        messages: 0,
        carried: vec![0; TABLES as usize],
        stale: 0,
        first_stale: None,
    };
    // Per table, the last checkpoint the sender got acked by the transport.
    let mut sent = vec![0u64; TABLES as usize];
    let mut skipped = 0u64;
    let mut fresh: Vec<Report> = Vec::with_capacity(BATCH);

    thread::scope(|s| {
        // The last producer's drop closes the queue; the sender then drains.
        let producer = queue.producer();
        for w in 0..WORKERS {
            let (producer, newest, offers) = (producer.clone(), &newest, &offers);
            s.spawn(move || {
                // Each worker walks the tables from its own place.
                let start = (w * u64::from(TABLES) / WORKERS) as u32;
                let mut made = 0u64;
                // Step `step` offers the report of round `step`, then re-sends
                // those of the rounds before it: older after newer.
                for step in 0..ROUNDS + RESENDS - 1 {
                    for i in 0..TABLES {
                        let table = (start + i) % TABLES;
                        for round in (0..=step).rev().take(RESENDS as usize) {
                            if round >= ROUNDS {
                                continue;
                            }
                            let ts = checkpoint(w, round, table);
                            producer
                                .offer_key((table, ts))
                                .expect("open while workers run");
                            // Relaxed: read only after the scope joins this thread.
                            newest[table as usize].fetch_max(ts, Relaxed);
                            made += 1;
                        }
                    }
                    // A worker reaches its next checkpoint a little later.
                    thread::sleep(Duration::from_millis(1));
                }
                offers.fetch_add(made, Relaxed);
            });
        }
        drop(producer);

        loop {
            let batch = queue.take_batch_leased(BATCH, Duration::from_millis(1));
            if batch.is_empty() {
                break; // closed and drained: nothing queued, nothing in flight
            }
            fresh.clear();
            for entry in batch.iter() {
                let Entry::Key((table, ts)) = *entry else {
                    unreachable!("only reports are offered")
                };
                // Not newer than what went out: a re-send that came after.
                if ts > sent[table as usize] {
                    fresh.push((table, ts));
                } else {
                    skipped += 1;
                }
            }
            if fresh.is_empty() {
                batch.ack();
                continue;
            }
            match transport.send(&fresh) {
                Ok(()) => {
                    for &(table, ts) in &fresh {
                        sent[table as usize] = ts;
                    }
                    batch.ack();
                }
                // Queued again, merged with what arrived meanwhile.
                Err(_) => batch.nack(),
            }
        }
    });

    let behind: Vec<u32> = (0..TABLES)
        .filter(|&t| transport.carried[t as usize] != newest[t as usize].load(Relaxed))
        .collect();
    let stats = queue.stats();
    println!("tables                  {TABLES:>9}");
    println!("workers                 {WORKERS:>9}");
    println!("offers made             {:>9}", offers.load(Relaxed));
    println!("  coalesced             {:>9}", stats.coalesced);
    println!("  (into in-flight)      {:>9}", stats.coalesced_in_flight);
    println!("entries taken           {:>9}", stats.taken);
    println!("  stale, acked unsent   {skipped:>9}");
    println!("batches sent            {:>9}", transport.sends);
    println!("  failed (nacked)       {:>9}", transport.failed);
    println!("messages sent (acked)   {:>9}", transport.messages);
    println!(
        "  per table             {:>9.2}",
        transport.messages as f64 / f64::from(TABLES)
    );
    println!("stale after newer       {:>9}", transport.stale);
    println!("tables not at newest    {:>9}", behind.len());
    println!(
        "time                    {:>8.2}s",
        started.elapsed().as_secs_f64()
    );

    let mut ok = true;
    if let Some((table, newer, older)) = transport.first_stale {
        println!(
            "FAILED: table {table}: checkpoint {older} sent after {newer} ({} such messages)",
            transport.stale
        );
        ok = false;
    }
    if let Some(&table) = behind.first() {
        println!(
            "FAILED: table {table}: last sent {}, newest offered {} ({} tables behind)",
            transport.carried[table as usize],
            newest[table as usize].load(Relaxed),
            behind.len()
        );
        ok = false;
    }
    if (queue.len(), queue.in_flight()) != (0, 0) {
        println!("FAILED: entries left after the drain");
        ok = false;
    }
    if !ok {
        std::process::exit(1);
    }
    println!("OK: every table's newest checkpoint sent, none after a newer one");
}
