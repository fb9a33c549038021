//! `String` keys on the general key store: the A/B bench for builds that
//! change the store (`cargo bench --bench strings`). Written against the
//! API that both the current and earlier builds have, so that one file
//! measures either.
//!
//! * `str_unique_pair`: one offer of a new 32-byte `String` key + one take;
//!   the keys cycle through a pool (a take hands its key back), so the loop
//!   allocates nothing;
//! * `str_dup90`: 1 new key and 9 duplicate offers of it while it is
//!   pending, then one take; each duplicate is a fresh clone (as a caller
//!   would offer it), dropped by the queue: ns per offer = median / 10.
use coalescing_queue::{CoalescingQueue, Entry};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

type Queue = CoalescingQueue<String, Box<[u8; 120]>>;

fn key(i: u64) -> String {
    format!("{:032x}", 0x9e37_79b9_7f4a_7c15_u128 << 64 | i as u128)
}

fn str_unique_pair(c: &mut Criterion) {
    let mut g = c.benchmark_group("str_unique_pair");
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(1));
    let q = Queue::new(1024);
    let mut pool: Vec<String> = (0..4096).map(key).collect();
    let mut i = 0;
    g.bench_function("general", |b| {
        b.iter(|| {
            i = (i + 1) % pool.len();
            let k = std::mem::take(&mut pool[i]);
            black_box(q.try_offer_key(k).is_ok());
            if let Ok(Entry::Key(k)) = q.try_take() {
                pool[i] = k;
            }
        })
    });
    g.finish();
}

fn str_dup90(c: &mut Criterion) {
    let mut g = c.benchmark_group("str_dup90");
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(10));
    let q = Queue::new(1024);
    let mut i = 0u64;
    g.bench_function("general", |b| {
        b.iter(|| {
            i += 1;
            let k = key(i % 4096);
            for _ in 0..9 {
                black_box(q.try_offer_key(k.clone()).is_ok());
            }
            black_box(q.try_offer_key(k).is_ok());
            black_box(q.try_take().is_ok());
        })
    });
    g.finish();
}

criterion_group!(benches, str_unique_pair, str_dup90);
criterion_main!(benches);
