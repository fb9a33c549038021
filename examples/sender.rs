//! A sender over a transport that fails one send in five, with leases.
//!
//! Workers keep re-sending "done" for a set of tables; two sender threads
//! take leased batches and hand them to the transport. A failed send nacks
//! the batch (its keys go back to the tail); a good one acks it. Meanwhile
//! re-sends of keys in flight are coalesced into the lease
//! (`InFlightPolicy::Requeue`): each is delivered once more after the ack,
//! never while its first copy is out.
//!
//! At the end the program checks, and prints, that nothing was lost (every
//! key's last offer is followed by an acked delivery that began after it)
//! and nothing was sent twice while in flight.
//!
//! ```text
//! cargo run --release --example sender
//! ```

use coalescing_queue::{CoalescingQueue, Entry};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

const TABLES: u64 = 2_000;
const RESENDS: u64 = 50;
const WORKERS: u64 = 2;
const SENDERS: usize = 2;

/// A transport that fails every fifth send.
struct FlakyTransport {
    sends: AtomicU64,
}

impl FlakyTransport {
    fn send(&self, batch: &[Entry<u64, String>]) -> Result<(), &'static str> {
        let n = self.sends.fetch_add(1, SeqCst);
        // The message is built from the key only now, at send time.
        let bytes: usize = batch
            .iter()
            .map(|e| e.clone().into_item(|t| format!("table {t} done")).len())
            .sum();
        std::hint::black_box(bytes);
        thread::sleep(Duration::from_micros(50));
        if n % 5 == 4 {
            Err("connection reset")
        } else {
            Ok(())
        }
    }
}

fn main() {
    let queue = Arc::new(CoalescingQueue::<u64, String>::new(4096));
    let transport = Arc::new(FlakyTransport {
        sends: AtomicU64::new(0),
    });
    // A clock that orders offers and deliveries.
    let clock = Arc::new(AtomicU64::new(1));
    let last_offer: Arc<Vec<AtomicU64>> =
        Arc::new((0..TABLES).map(|_| AtomicU64::new(0)).collect());
    let last_acked_take: Arc<Vec<AtomicU64>> =
        Arc::new((0..TABLES).map(|_| AtomicU64::new(0)).collect());
    let in_flight = Arc::new(Mutex::new(HashSet::new()));
    let sent_twice = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));

    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (queue, clock, last_offer) = (queue.clone(), clock.clone(), last_offer.clone());
            thread::spawn(move || {
                for _ in 0..RESENDS {
                    // Re-send every few milliseconds, as a worker would.
                    thread::sleep(Duration::from_millis(2));
                    for table in (w..TABLES).step_by(WORKERS as usize) {
                        let stamp = clock.fetch_add(1, SeqCst);
                        queue.offer_key(table).expect("open while workers run");
                        last_offer[table as usize].fetch_max(stamp, SeqCst);
                    }
                }
            })
        })
        .collect();

    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            let (queue, transport, clock, acked, in_flight, sent_twice, failed) = (
                queue.clone(),
                transport.clone(),
                clock.clone(),
                last_acked_take.clone(),
                in_flight.clone(),
                sent_twice.clone(),
                failed.clone(),
            );
            thread::spawn(move || loop {
                let batch = queue.take_batch_leased(128, Duration::from_millis(2));
                if batch.is_empty() {
                    return; // closed and drained
                }
                let taken_at = clock.fetch_add(1, SeqCst);
                let keys: Vec<u64> = batch.iter().filter_map(Entry::key).copied().collect();
                {
                    let mut out = in_flight.lock().unwrap();
                    for key in &keys {
                        if !out.insert(*key) {
                            sent_twice.fetch_add(1, SeqCst);
                        }
                    }
                }
                let result = transport.send(batch.entries());
                {
                    let mut out = in_flight.lock().unwrap();
                    for key in &keys {
                        out.remove(key);
                    }
                }
                match result {
                    Ok(()) => {
                        for key in &keys {
                            acked[*key as usize].fetch_max(taken_at, SeqCst);
                        }
                        batch.ack();
                    }
                    Err(_) => {
                        failed.fetch_add(1, SeqCst);
                        batch.nack();
                    }
                }
            })
        })
        .collect();

    for worker in workers {
        worker.join().unwrap();
    }
    // Graceful drain: no more offers; wait for every lease to be acked.
    let drained = queue.close_and_wait(Duration::from_secs(30));
    for sender in senders {
        sender.join().unwrap();
    }

    let lost = (0..TABLES as usize)
        .filter(|&t| last_acked_take[t].load(SeqCst) <= last_offer[t].load(SeqCst))
        .count();
    let stats = queue.stats();
    println!("offers               {:>8}", stats.offered);
    println!("  coalesced          {:>8}", stats.coalesced);
    println!("  (into in-flight)   {:>8}", stats.coalesced_in_flight);
    println!("sends                {:>8}", transport.sends.load(SeqCst));
    println!("  failed (nacked)    {:>8}", failed.load(SeqCst));
    println!("entries acked        {:>8}", stats.acked);
    println!("entries nacked       {:>8}", stats.nacked);
    println!("dirty keys requeued  {:>8}", stats.requeued_dirty);
    println!("lost                 {:>8}", lost);
    println!("sent twice in flight {:>8}", sent_twice.load(SeqCst));
    println!("drained              {:>8}", drained);
    let ok = lost == 0 && sent_twice.load(SeqCst) == 0 && drained;
    println!(
        "{}",
        if ok {
            "OK: nothing lost, nothing sent twice while in flight"
        } else {
            "FAILED"
        }
    );
    if !ok {
        std::process::exit(1);
    }
}
