// The shuttle models, included by loom-tests/shuttle.rs when built with
// `--cfg shuttle` (an included file has no inner attributes or docs: the
// binary's docs are in loom-tests/shuttle.rs).

use coalescing_queue::{CoalescingQueue, Compact, Entry, InFlightPolicy, KeyStore, Offered};
use shuttle::thread;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A fixed hasher, so that a failing schedule replays the same program (the
/// default hasher is seeded at random, which moves keys between buckets).
type Hasher = foldhash::fast::FixedState;
/// The queue on key store `S`: `Hasher` (the general store) or
/// `Compact<Hasher>` (the compact store).
type Queue<S> = CoalescingQueue<u32, u32, S>;

/// A key store the models run on: how to make its fixed hasher. (The
/// models also need `Queue<S>: Send + Sync`, which a bound here cannot
/// imply.)
trait Store: KeyStore<u32> + 'static {
    /// Its name in the printed lines.
    const NAME: &'static str;

    /// The store with the fixed hasher.
    fn fixed() -> Self;
}

impl Store for Hasher {
    const NAME: &'static str = "general";

    fn fixed() -> Self {
        Hasher::with_seed(0x5eed)
    }
}

impl Store for Compact<Hasher> {
    const NAME: &'static str = "compact";

    fn fixed() -> Self {
        Compact(Hasher::fixed())
    }
}

/// A model: one generic body, instantiated per store.
type Body = fn(usize);

/// `body` on each store, for `model`: `stores!(offers_and_takes_on)`.
macro_rules! stores {
    ($body:ident) => {
        [
            (Hasher::NAME, $body::<Hasher> as Body),
            (Compact::<Hasher>::NAME, $body::<Compact<Hasher>> as Body),
        ]
    };
}

fn iterations() -> usize {
    std::env::var("SHUTTLE_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000)
}

/// Runs each store's body at each capacity under the random and the PCT
/// scheduler.
fn model(name: &str, capacities: &[usize], bodies: [(&str, Body); 2]) {
    let iterations = iterations();
    for (store, body) in bodies {
        for &capacity in capacities {
            for scheduler in ["random", "pct"] {
                let ran = Arc::new(AtomicUsize::new(0));
                let counted = ran.clone();
                let run = move || {
                    counted.fetch_add(1, SeqCst);
                    body(capacity);
                };
                let at = format!("{name} store={store} capacity={capacity} scheduler={scheduler}");
                println!("shuttle-model {at} start");
                let started = Instant::now();
                match scheduler {
                    "random" => shuttle::check_random(run, iterations),
                    _ => shuttle::check_pct(run, iterations, 3),
                }
                println!(
                    "shuttle-model {at} iterations={} seconds={:.2}",
                    ran.load(SeqCst),
                    started.elapsed().as_secs_f64()
                );
            }
        }
    }
}

/// A queue on store `S` with its fixed hasher, built as users build one:
/// `builder()`, then `.hasher(...)` (`Compact(hasher)` for the compact store).
fn queue<S: Store>(capacity: usize) -> Arc<Queue<S>> {
    Arc::new(
        CoalescingQueue::<u32, u32>::builder()
            .capacity(capacity)
            .in_flight_policy(InFlightPolicy::Requeue)
            .hasher(S::fixed())
            .build(),
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Enqueued,
    Coalesced,
    Refused,
}

#[derive(Clone, Copy, Debug)]
enum Event {
    Offer {
        key: u32,
        start: usize,
        outcome: Outcome,
    },
    /// A take of `key` at `at` that counts as a delivery (plain, or a lease
    /// that was acked).
    Delivered {
        key: u32,
        at: usize,
    },
    Closed {
        at: usize,
    },
}

/// The events of one execution, stamped in schedule order (shuttle runs one
/// thread at a time, so a `std` counter orders them).
#[derive(Default)]
struct History {
    clock: AtomicUsize,
    events: Mutex<Vec<Event>>,
}

impl History {
    fn now(&self) -> usize {
        self.clock.fetch_add(1, SeqCst)
    }

    fn push(&self, event: Event) {
        self.events.lock().unwrap().push(event);
    }

    fn offer<S: Store, E>(
        &self,
        q: &Queue<S>,
        key: u32,
        offer: impl FnOnce(u32) -> Result<Offered, E>,
    ) {
        let start = self.now();
        let outcome = match offer(key) {
            Ok(Offered::Enqueued) => Outcome::Enqueued,
            Ok(Offered::Coalesced) => Outcome::Coalesced,
            Err(_) => Outcome::Refused,
        };
        self.push(Event::Offer {
            key,
            start,
            outcome,
        });
        let claimed = q.claimed_slots();
        assert!(
            claimed <= q.capacity(),
            "G3 violated: {claimed} slots claimed"
        );
    }

    fn delivered_at(&self, entry: &Entry<u32, u32>, at: usize) {
        match entry {
            Entry::Key(key) => self.push(Event::Delivered { key: *key, at }),
            Entry::Item(item) => panic!("no items are offered, got {item}"),
        }
    }

    fn delivered(&self, entry: &Entry<u32, u32>) {
        let at = self.now();
        self.delivered_at(entry, at);
    }

    fn check<S: Store>(&self, q: &Queue<S>) {
        while let Ok(entry) = q.try_take() {
            self.delivered(&entry);
        }
        let events = self.events.lock().unwrap().clone();
        let closed_at = events.iter().find_map(|e| match e {
            Event::Closed { at } => Some(*at),
            _ => None,
        });
        for event in &events {
            let Event::Offer {
                key,
                start,
                outcome,
            } = *event
            else {
                continue;
            };
            if outcome == Outcome::Refused {
                continue;
            }
            if let Some(closed_at) = closed_at {
                assert!(
                    start < closed_at,
                    "an offer begun after close returned {outcome:?}: {events:?}"
                );
            }
            assert!(
                events.iter().any(
                    |e| matches!(*e, Event::Delivered { key: k, at } if k == key && at > start)
                ),
                "G1 violated: offer of key {key} (began at {start}) returned {outcome:?} and \
                 no delivery of it came after: {events:?}"
            );
        }
        assert_eq!(q.pending_keys(), 0, "G6 violated: {q:?}");
        assert_eq!(q.claimed_slots(), 0, "G6 violated: {q:?}");
        assert_eq!(q.in_flight(), 0, "G6 violated: {q:?}");
    }

    /// G2 for plain takes: deliveries of each key equal its enqueued copies.
    fn check_one_delivery_per_copy(&self) {
        let events = self.events.lock().unwrap().clone();
        let mut keys: Vec<u32> = events
            .iter()
            .filter_map(|e| match e {
                Event::Offer { key, .. } => Some(*key),
                _ => None,
            })
            .collect();
        keys.sort_unstable();
        keys.dedup();
        for key in keys {
            let enqueued = events
                .iter()
                .filter(|e| matches!(e, Event::Offer { key: k, outcome: Outcome::Enqueued, .. } if *k == key))
                .count();
            let delivered = events
                .iter()
                .filter(|e| matches!(e, Event::Delivered { key: k, .. } if *k == key))
                .count();
            assert_eq!(
                delivered, enqueued,
                "G2 violated: key {key} delivered {delivered} times for {enqueued} copies: {events:?}"
            );
        }
    }
}

const KEYS: u32 = 3;

/// Three producers offer keys 1..=3 six times each (blocking and `try_*`
/// forms alternating); three consumers take until the queue is closed and
/// drained: one with `take`, one with `take_batch(3, 0)`, one with
/// `take_async`. The main thread closes after the producers are done.
#[test]
fn offers_and_takes() {
    model("offers_and_takes", &[1, 2, 4], stores!(offers_and_takes_on));
}

fn offers_and_takes_on<S: Store>(capacity: usize)
where
    Queue<S>: Send + Sync,
{
    let q = queue::<S>(capacity);
    let log = Arc::new(History::default());
    let producers: Vec<_> = (0..3u32)
        .map(|p| {
            let (q, log) = (q.clone(), log.clone());
            thread::spawn(move || {
                for i in 0..6u32 {
                    let key = (p + i) % KEYS + 1;
                    if i % 2 == 0 {
                        log.offer(&q, key, |k| q.offer_key(k));
                    } else {
                        log.offer(&q, key, |k| q.try_offer_key(k));
                    }
                    let queued = q.len();
                    assert!(
                        queued <= KEYS as usize,
                        "G2 violated: {queued} queued, {KEYS} keys"
                    );
                }
            })
        })
        .collect();
    let mut consumers = Vec::new();
    {
        let (q, log) = (q.clone(), log.clone());
        consumers.push(thread::spawn(move || {
            while let Ok(entry) = q.take() {
                log.delivered(&entry);
            }
        }));
    }
    {
        let (q, log) = (q.clone(), log.clone());
        consumers.push(thread::spawn(move || {
            let mut batch = Vec::new();
            while q.take_batch(&mut batch, 3, Duration::ZERO) > 0 {
                for entry in batch.drain(..) {
                    log.delivered(&entry);
                }
            }
        }));
    }
    {
        let (q, log) = (q.clone(), log.clone());
        consumers.push(thread::spawn(move || {
            while let Ok(entry) = shuttle::future::block_on(q.take_async()) {
                log.delivered(&entry);
            }
        }));
    }
    for producer in producers {
        producer.join().unwrap();
    }
    q.close();
    for consumer in consumers {
        consumer.join().unwrap();
    }
    log.check(&q);
    log.check_one_delivery_per_copy();
}

/// Two producers offer (blocking) while a closer closes after a few yields
/// and two consumers take until closed and drained. Offers refused by the
/// close hand their key back; an offer begun after the close returned is
/// refused; every accepted one is delivered (G1); nothing leaks (G6).
#[test]
fn close_races_traffic() {
    model(
        "close_races_traffic",
        &[1, 2],
        stores!(close_races_traffic_on),
    );
}

fn close_races_traffic_on<S: Store>(capacity: usize)
where
    Queue<S>: Send + Sync,
{
    let q = queue::<S>(capacity);
    let log = Arc::new(History::default());
    let producers: Vec<_> = (0..2u32)
        .map(|p| {
            let (q, log) = (q.clone(), log.clone());
            thread::spawn(move || {
                for i in 0..5u32 {
                    let key = (p * 2 + i) % KEYS + 1;
                    log.offer(&q, key, |k| {
                        q.offer_key(k).inspect_err(|refused| {
                            assert_eq!(refused.0, k, "the refused key is handed back")
                        })
                    });
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let (q, log) = (q.clone(), log.clone());
            thread::spawn(move || {
                while let Ok(entry) = q.take() {
                    log.delivered(&entry);
                }
            })
        })
        .collect();
    let closer = {
        let (q, log) = (q.clone(), log.clone());
        thread::spawn(move || {
            for _ in 0..4 {
                thread::yield_now();
            }
            assert!(q.close());
            log.push(Event::Closed { at: log.now() });
        })
    };
    for producer in producers {
        producer.join().unwrap();
    }
    closer.join().unwrap();
    for consumer in consumers {
        consumer.join().unwrap();
    }
    log.check(&q);
    log.check_one_delivery_per_copy();
}

/// A flaky sender: three producers offer keys 1..=3 five times each
/// (blocking) while two consumers take leases (one with `take_leased`, one
/// with `take_batch_leased(2, 0)` split into leases) and end each with an
/// ack, a nack or a drop, by turns. No key is ever leased twice at once
/// (G2); every accepted offer is followed by an acked delivery taken after
/// it began (G1; a re-offer absorbed by a lease is delivered again after
/// the ack); nothing leaks (G6).
#[test]
fn leases_flaky_sender() {
    model(
        "leases_flaky_sender",
        &[1, 2, 3],
        stores!(leases_flaky_sender_on),
    );
}

fn leases_flaky_sender_on<S: Store>(capacity: usize)
where
    Queue<S>: Send + Sync,
{
    let q = queue::<S>(capacity);
    let log = Arc::new(History::default());
    let leased = Arc::new(Mutex::new(HashSet::new()));
    let producers: Vec<_> = (0..3u32)
        .map(|p| {
            let (q, log) = (q.clone(), log.clone());
            thread::spawn(move || {
                for i in 0..5u32 {
                    log.offer(&q, (p + i) % KEYS + 1, |k| q.offer_key(k));
                }
            })
        })
        .collect();
    // Ends one lease: ack, nack or drop, by turns; an ack counts as a
    // delivery stamped when the entry was taken.
    fn end<S: Store>(
        lease: coalescing_queue::Lease<'_, u32, u32, S>,
        taken_at: usize,
        turn: usize,
        log: &History,
        leased: &Mutex<HashSet<u32>>,
    ) {
        let key = lease.key().copied().expect("no items are offered");
        assert!(leased.lock().unwrap().remove(&key));
        match turn % 4 {
            1 => lease.nack(),
            3 => drop(lease),
            _ => {
                log.delivered_at(&Entry::Key(key), taken_at);
                lease.ack();
            }
        }
    }
    let note_leased = |leased: &Mutex<HashSet<u32>>, key: u32| {
        assert!(
            leased.lock().unwrap().insert(key),
            "G2 violated: key {key} leased twice at once"
        );
    };
    let single = {
        let (q, log, leased) = (q.clone(), log.clone(), leased.clone());
        thread::spawn(move || {
            let mut turn = 0;
            while let Ok(lease) = q.take_leased() {
                let taken_at = log.now();
                note_leased(&leased, *lease.key().unwrap());
                end(lease, taken_at, turn, &log, &leased);
                turn += 1;
            }
        })
    };
    let batched = {
        let (q, log, leased) = (q.clone(), log.clone(), leased.clone());
        thread::spawn(move || {
            let mut turn = 2;
            loop {
                let batch = q.take_batch_leased(2, Duration::ZERO);
                if batch.is_empty() {
                    break;
                }
                let taken_at = log.now();
                for entry in batch.iter() {
                    note_leased(&leased, *entry.key().unwrap());
                }
                for lease in batch.into_leases() {
                    end(lease, taken_at, turn, &log, &leased);
                    turn += 1;
                }
            }
        })
    };
    for producer in producers {
        producer.join().unwrap();
    }
    q.close();
    single.join().unwrap();
    batched.join().unwrap();
    log.check(&q);
}

/// As `leases_flaky_sender`, on a queue with retries and a manual clock: a
/// failed lease is nacked with a delay or with the backoff (1 to 4 ms), a
/// clock thread moves the clock a millisecond at a time, and the close at
/// the end ends every delay. Re-offers of a delayed key coalesce into it;
/// the same G1, G2 and G6 hold, and no key is delayed after the drain.
#[test]
fn delays_flaky_sender() {
    model(
        "delays_flaky_sender",
        &[1, 2, 3],
        stores!(delays_flaky_sender_on),
    );
}

fn delays_flaky_sender_on<S: Store>(capacity: usize)
where
    Queue<S>: Send + Sync,
{
    let q = Arc::new(
        CoalescingQueue::<u32, u32>::builder()
            .capacity(capacity)
            .in_flight_policy(InFlightPolicy::Requeue)
            .hasher(S::fixed())
            .retries(coalescing_queue::Backoff::exponential(
                Duration::from_millis(1),
                Duration::from_millis(4),
            ))
            .manual_clock()
            .build(),
    );
    let log = Arc::new(History::default());
    let leased = Arc::new(Mutex::new(HashSet::new()));
    let producers: Vec<_> = (0..3u32)
        .map(|p| {
            let (q, log) = (q.clone(), log.clone());
            thread::spawn(move || {
                for i in 0..5u32 {
                    log.offer(&q, (p + i) % KEYS + 1, |k| q.offer_key(k));
                }
            })
        })
        .collect();
    // The clock moves until every producer is done (a blocked offer may
    // wait for a delayed key to fall due and leave); then close ends the
    // delays.
    let producers_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clock = {
        let (q, done) = (q.clone(), producers_done.clone());
        thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                q.advance_clock(Duration::from_millis(1));
                thread::yield_now();
            }
        })
    };
    let taker = {
        let (q, log, leased) = (q.clone(), log.clone(), leased.clone());
        thread::spawn(move || {
            let mut turn = 0usize;
            while let Ok(lease) = q.take_leased() {
                let taken_at = log.now();
                let key = *lease.key().expect("no items are offered");
                assert!(
                    leased.lock().unwrap().insert(key),
                    "G2 violated: key {key} leased twice at once"
                );
                assert!(lease.attempt() >= 1);
                assert!(leased.lock().unwrap().remove(&key));
                match turn % 3 {
                    0 => lease.nack_after(Duration::from_millis(1 + (turn % 2) as u64)),
                    1 => {
                        lease.nack_backoff();
                    }
                    _ => {
                        log.delivered_at(&Entry::Key(key), taken_at);
                        lease.ack();
                    }
                }
                turn += 1;
            }
        })
    };
    for producer in producers {
        producer.join().unwrap();
    }
    producers_done.store(true, std::sync::atomic::Ordering::SeqCst);
    clock.join().unwrap();
    q.close();
    taker.join().unwrap();
    assert_eq!(q.stats().delayed, 0, "delayed after the drain");
    log.check(&q);
}
