//! A port of the LMAX Coalescing Ring Buffer's tests (Java,
//! github.com/LMAX-Exchange/LMAXCollections, directory
//! `CoalescingRingBuffer/src/test/java/com/lmax/collections/coalescing/ring/buffer/`:
//! `FunctionalTest.java`, `ThreadSafetyTest.java`, `BufferOverflowTest.java`,
//! `MemoryLeakTest.java`, with `MarketSnapshot.java` as the test data) to a
//! valued queue: LMAX's latest-value coalescing is `Valued` with `Latest`.
//!
//! Mapping. `offer(key, value)` is `try_offer_key((key, value))`;
//! `offer(value)` (never collapsed) is `try_offer(value)`, a pass-through
//! item; `poll(bucket)` is repeated `try_take` until empty, `poll(bucket,
//! max)` is `take_batch(bucket, max, 0)`; `size()` is `len()`, `isEmpty()`
//! is `is_empty()`, `isFull()` is `is_full()` and `claimed_slots() ==
//! capacity()`; `rejectionCount()` is `stats().full_rejections`. The keyed
//! value and the pass-through item are both a `MarketSnapshot` (the queue's
//! key type is `(instrument, MarketSnapshot)`, its item type
//! `MarketSnapshot`), so a bucket is a `Vec<MarketSnapshot>` as in Java.
//! Each test runs on the compact valued store (`Valued<Compact>`) and on
//! the general one (`Valued`), unless said otherwise.
//!
//! Differences from LMAX the port keeps visible, not papered over:
//! * Capacity is exact here; LMAX rounds it up to the next power of two
//!   (`nextPowerOfTwo`). `shouldCorrectlyIncreaseTheCapacityToTheNextHigherPowerOfTwo`
//!   is ported as `should_keep_the_exact_capacity`: its capacity and
//!   fill checks, with the exact capacity, and the next offer refused.
//! * LMAX is single-producer, single-consumer; this queue is
//!   multi-producer. The thread-safety test is ported as it is (one
//!   producer) and extended to several producers (disjoint instruments,
//!   since values of one key from two producers have no order to check).
//! * An offer returns `Offered::{Enqueued, Coalesced}` or a `Full` error
//!   handing the value back (LMAX: `true`/`false`); the port checks which.
//! * `assertSame` (object identity) becomes `assert_eq!` on snapshots that
//!   differ in value (every snapshot of a test is distinct, except where
//!   the Java test offers the very same object twice).
//! * LMAX's `poll` never blocks; `take_batch` waits for a first entry (it
//!   returns 0 only once closed and drained), so a poll of a possibly
//!   empty queue uses `try_take`, and the threaded consumers use
//!   `take_batch_timeout` under a deadline (a failing producer fails the
//!   test instead of hanging it).
//! * In `ThreadSafetyTest` a refused offer throws (the Java test relies on
//!   its consumer keeping up with a buffer of 2^20 for 5,000,000
//!   instruments). Here the buffer is much smaller than the instruments
//!   (so the ring wraps, as in Java) and a refused offer is retried: a
//!   debug build's consumer need not keep up. The retries must match
//!   `stats().full_rejections`.
//! * `MemoryLeakTest` counts finalized objects after `System.gc()`; here
//!   a live count of keys and values (clones included) must reach 0 once
//!   everything is taken and the taken entries dropped, the queue still
//!   alive. General store only: compact keys and values are `Copy` plain
//!   data, with no drop to count.
//! * `shouldUseObjectEqualityToCompareKeys` (two distinct `String`
//!   objects equal by value) runs on the general store with `String`
//!   identities; on the compact store (no `String`) two separately built
//!   `[char; 3]` identities, compared by their packed bits.
//! * `BufferOverflowTest`'s consumer polls up to 100 from a buffer of 32.
//!   A batch take here frees its slots only when it returns and keeps
//!   taking while the producer refills, so the slots of entries already
//!   taken can fill the queue: `should_be_able_to_reuse_capacity` (the
//!   faithful port) fails intermittently on this crate, a consequence of
//!   the batch take freeing its slots in one step, not of the port; the extra test with batches of at most
//!   the spare slots (21) shows the bound under which it never fails.
//!
//! Left out:
//! * The power-of-two rounding assertions of
//!   `shouldCorrectlyIncreaseTheCapacityToTheNextHigherPowerOfTwo`
//!   (`capacity() == 1024` for 1023, `2048` for 1025): capacity is exact here.
//! * `nextWrite()`, `firstWrite()` (the brief's "nextRead") and the
//!   producer's lazy clean-up of read slots (`MemoryLeakTest`'s
//!   `offer(null)` "to trigger the clean"): the ring's indices are not
//!   public and a take frees its slot when it returns; no Java test asserts on
//!   the indices.
//! * `offer(null)`: Rust has no null value.
//! * The manual tests (`src/manual-test/.../SoakTest.java`,
//!   `performance/PerformanceTest.java`): benchmarks, not functional tests.

use coalescing_queue::{
    compact_key, Builder, CoalescingQueue, Entry, KeyStore, Offered, TryOfferError, Valued,
};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// `MarketSnapshot.java`: 3 × 64 = 192 bits, so the compact store keeps it
/// in three words and a torn value would show as a bid/ask mismatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MarketSnapshot {
    instrument_id: i64,
    bid: i64,
    ask: i64,
}
compact_key!(MarketSnapshot {
    instrument_id: i64,
    bid: i64,
    ask: i64
});

fn snapshot(instrument_id: i64, bid: i64, ask: i64) -> MarketSnapshot {
    MarketSnapshot {
        instrument_id,
        bid,
        ask,
    }
}

const VOD_SNAPSHOT_1: MarketSnapshot = MarketSnapshot {
    instrument_id: 1,
    bid: 3,
    ask: 4,
};
const VOD_SNAPSHOT_2: MarketSnapshot = MarketSnapshot {
    instrument_id: 1,
    bid: 5,
    ask: 6,
};
const BP_SNAPSHOT: MarketSnapshot = MarketSnapshot {
    instrument_id: 2,
    bid: 7,
    ask: 8,
};

/// `offer(key, value)`'s pair: the instrument (identity) and its snapshot.
type Key = (i64, MarketSnapshot);
type Buffer<S> = CoalescingQueue<Key, MarketSnapshot, Valued<S>>;

/// `new CoalescingRingBuffer<Long, MarketSnapshot>(capacity)`.
fn create_buffer<S>(capacity: usize) -> Buffer<S>
where
    S: Default,
    Valued<S>: KeyStore<Key>,
{
    Builder::<Key, MarketSnapshot, Valued<S>>::new()
        .capacity(capacity)
        .build()
}

/// A taken entry as LMAX's bucket holds it: the value, keyed or not.
fn value<K, V>(entry: Entry<(K, V), V>) -> V {
    match entry {
        Entry::Key((_, v)) => v,
        Entry::Item(v) => v,
    }
}

/// `poll(bucket)`: everything queued now; the count added.
fn poll<K, V, S>(buffer: &CoalescingQueue<(K, V), V, S>, bucket: &mut Vec<V>) -> usize
where
    S: KeyStore<(K, V)>,
{
    let before = bucket.len();
    while let Ok(entry) = buffer.try_take() {
        bucket.push(value(entry));
    }
    bucket.len() - before
}

/// `poll(bucket, max)`: at most `max` of what is queued now, with
/// `take_batch` (which would wait on an empty queue, where LMAX returns 0).
fn poll_max<K, V, S>(
    buffer: &CoalescingQueue<(K, V), V, S>,
    bucket: &mut Vec<V>,
    max: usize,
) -> usize
where
    S: KeyStore<(K, V)>,
{
    if buffer.is_empty() {
        return 0;
    }
    let mut entries = Vec::new();
    let taken = buffer.take_batch(&mut entries, max, Duration::ZERO);
    assert_eq!(taken, entries.len());
    bucket.extend(entries.into_iter().map(value));
    taken
}

/// `isFull()`, both ways the queue tells it (they must agree).
fn is_full<K, V, S: KeyStore<K>>(buffer: &CoalescingQueue<K, V, S>) -> bool {
    let full = buffer.is_full();
    assert_eq!(
        full,
        buffer.claimed_slots() == buffer.capacity(),
        "is_full() disagrees with claimed_slots() == capacity()"
    );
    full
}

/// `addKeyAndValue`: `assertTrue(buffer.offer(snapshot.getInstrumentId(), snapshot))`.
fn add_key_and_value<S>(buffer: &Buffer<S>, snapshot: MarketSnapshot)
where
    Valued<S>: KeyStore<Key>,
{
    let offered = buffer.try_offer_key((snapshot.instrument_id, snapshot));
    assert!(offered.is_ok(), "offer of {snapshot:?} refused");
}

/// `addValue`: `assertTrue(buffer.offer(snapshot))`.
fn add_value<S>(buffer: &Buffer<S>, snapshot: MarketSnapshot)
where
    Valued<S>: KeyStore<Key>,
{
    assert!(
        buffer.try_offer(snapshot).is_ok(),
        "offer of {snapshot:?} refused"
    );
}

/// `assertContains`: a poll returns exactly `expected`, in order, and
/// leaves the buffer empty.
fn assert_contains<S>(buffer: &Buffer<S>, expected: &[MarketSnapshot])
where
    Valued<S>: KeyStore<Key>,
{
    let mut actual = Vec::with_capacity(expected.len());
    let read_count = poll(buffer, &mut actual);
    assert_eq!(read_count, expected.len());
    assert_eq!(actual, expected);
    assert!(buffer.is_empty(), "buffer should now be empty");
}

fn assert_is_empty<S>(buffer: &Buffer<S>)
where
    Valued<S>: KeyStore<Key>,
{
    assert_contains(buffer, &[]);
}

#[path = "common/both_stores.rs"]
#[macro_use]
mod both_stores;

both_stores!(
    should_keep_the_exact_capacity,
    should_correctly_report_size,
    should_reject_values_without_keys_when_full,
    should_reject_new_keys_when_full,
    should_accept_existing_keys_when_full,
    should_return_single_value,
    should_return_two_values_with_different_keys,
    should_update_values_with_equal_keys,
    should_not_update_values_without_keys,
    should_update_values_with_equal_keys_and_preserve_ordering,
    should_not_update_values_if_read_occurs_between_values,
    should_return_only_the_maximum_number_of_requested_items,
    should_return_all_items_without_request_limit,
    should_count_rejections,
    should_see_last_prices,
    should_see_latest_prices_in_order,
    should_see_latest_prices_in_order_with_several_producers,
    should_be_able_to_reuse_capacity,
    should_be_able_to_reuse_capacity_with_batches_within_the_spare_slots,
);

// ----- FunctionalTest.java -----

/// `shouldCorrectlyIncreaseTheCapacityToTheNextHigherPowerOfTwo`, without
/// the rounding: the capacity asked for is the capacity, that many values
/// are accepted, and the next is refused (LMAX would accept up to 1024,
/// 1024 and 2048).
fn should_keep_the_exact_capacity<S>()
where
    S: Default,
    Valued<S>: KeyStore<Key>,
{
    for capacity in [1023, 1024, 1025] {
        let buffer = create_buffer::<S>(capacity);
        assert_eq!(buffer.capacity(), capacity);
        for i in 0..capacity as i64 {
            assert!(buffer.try_offer(snapshot(i, i, i)).is_ok(), "offer {i}");
        }
        assert!(is_full(&buffer));
        let refused = buffer.try_offer(snapshot(-1, -1, -1)).unwrap_err();
        assert!(refused.is_full(), "capacity {capacity} was rounded up");
        assert_eq!(refused.into_inner(), snapshot(-1, -1, -1));
        assert_eq!(buffer.len(), capacity);
    }
}

fn should_correctly_report_size<S>()
where
    S: Default,
    Valued<S>: KeyStore<Key>,
{
    let mut snapshots = Vec::new();

    let buffer = create_buffer::<S>(2);
    assert_eq!(buffer.len(), 0);
    assert!(buffer.is_empty());
    assert!(!is_full(&buffer));

    buffer.try_offer(BP_SNAPSHOT).unwrap();
    assert_eq!(buffer.len(), 1);
    assert!(!buffer.is_empty());
    assert!(!is_full(&buffer));

    buffer
        .try_offer_key((VOD_SNAPSHOT_1.instrument_id, VOD_SNAPSHOT_1))
        .unwrap();
    assert_eq!(buffer.len(), 2);
    assert!(!buffer.is_empty());
    assert!(is_full(&buffer));

    assert_eq!(poll_max(&buffer, &mut snapshots, 1), 1);
    assert_eq!(buffer.len(), 1);
    assert!(!buffer.is_empty());
    assert!(!is_full(&buffer));

    assert_eq!(poll_max(&buffer, &mut snapshots, 1), 1);
    assert_eq!(buffer.len(), 0);
    assert!(buffer.is_empty());
    assert!(!is_full(&buffer));
    assert_eq!(snapshots, [BP_SNAPSHOT, VOD_SNAPSHOT_1]);
}

fn should_reject_values_without_keys_when_full<S>()
where
    S: Default,
    Valued<S>: KeyStore<Key>,
{
    let buffer = create_buffer::<S>(2);
    buffer.try_offer(BP_SNAPSHOT).unwrap();
    buffer.try_offer(BP_SNAPSHOT).unwrap();

    assert!(matches!(
        buffer.try_offer(BP_SNAPSHOT),
        Err(TryOfferError::Full(BP_SNAPSHOT))
    ));
    assert_eq!(buffer.len(), 2);
}

fn should_reject_new_keys_when_full<S>()
where
    S: Default,
    Valued<S>: KeyStore<Key>,
{
    let buffer = create_buffer::<S>(2);
    buffer.try_offer_key((1, BP_SNAPSHOT)).unwrap();
    buffer.try_offer_key((2, VOD_SNAPSHOT_1)).unwrap();

    assert!(matches!(
        buffer.try_offer_key((4, VOD_SNAPSHOT_2)),
        Err(TryOfferError::Full((4, VOD_SNAPSHOT_2)))
    ));
    assert_eq!(buffer.len(), 2);
}

fn should_accept_existing_keys_when_full<S>()
where
    S: Default,
    Valued<S>: KeyStore<Key>,
{
    let buffer = create_buffer::<S>(2);
    buffer.try_offer_key((1, BP_SNAPSHOT)).unwrap();
    buffer.try_offer_key((2, BP_SNAPSHOT)).unwrap();

    assert_eq!(
        buffer.try_offer_key((2, BP_SNAPSHOT)),
        Ok(Offered::Coalesced)
    );
    assert_eq!(buffer.len(), 2);
}

fn should_return_single_value<S>()
where
    S: Default,
    Valued<S>: KeyStore<Key>,
{
    let buffer = create_buffer::<S>(10);
    add_key_and_value(&buffer, BP_SNAPSHOT);
    assert_contains(&buffer, &[BP_SNAPSHOT]);
}

fn should_return_two_values_with_different_keys<S>()
where
    S: Default,
    Valued<S>: KeyStore<Key>,
{
    let buffer = create_buffer::<S>(10);
    add_key_and_value(&buffer, BP_SNAPSHOT);
    add_key_and_value(&buffer, VOD_SNAPSHOT_1);

    assert_contains(&buffer, &[BP_SNAPSHOT, VOD_SNAPSHOT_1]);
}

fn should_update_values_with_equal_keys<S>()
where
    S: Default,
    Valued<S>: KeyStore<Key>,
{
    let buffer = create_buffer::<S>(10);
    add_key_and_value(&buffer, VOD_SNAPSHOT_1);
    add_key_and_value(&buffer, VOD_SNAPSHOT_2);

    assert_contains(&buffer, &[VOD_SNAPSHOT_2]);
}

fn should_not_update_values_without_keys<S>()
where
    S: Default,
    Valued<S>: KeyStore<Key>,
{
    let buffer = create_buffer::<S>(10);
    add_value(&buffer, VOD_SNAPSHOT_1);
    add_value(&buffer, VOD_SNAPSHOT_2);

    assert_contains(&buffer, &[VOD_SNAPSHOT_1, VOD_SNAPSHOT_2]);
}

fn should_update_values_with_equal_keys_and_preserve_ordering<S>()
where
    S: Default,
    Valued<S>: KeyStore<Key>,
{
    let buffer = create_buffer::<S>(10);
    add_key_and_value(&buffer, VOD_SNAPSHOT_1);
    add_key_and_value(&buffer, BP_SNAPSHOT);
    add_key_and_value(&buffer, VOD_SNAPSHOT_2);

    // FIFO by first offer: VOD keeps its place, with its latest value.
    assert_contains(&buffer, &[VOD_SNAPSHOT_2, BP_SNAPSHOT]);
}

fn should_not_update_values_if_read_occurs_between_values<S>()
where
    S: Default,
    Valued<S>: KeyStore<Key>,
{
    let buffer = create_buffer::<S>(10);
    add_key_and_value(&buffer, VOD_SNAPSHOT_1);
    assert_contains(&buffer, &[VOD_SNAPSHOT_1]);

    add_key_and_value(&buffer, VOD_SNAPSHOT_2);
    assert_contains(&buffer, &[VOD_SNAPSHOT_2]);
}

fn should_return_only_the_maximum_number_of_requested_items<S>()
where
    S: Default,
    Valued<S>: KeyStore<Key>,
{
    let buffer = create_buffer::<S>(10);
    add_value(&buffer, BP_SNAPSHOT);
    add_value(&buffer, VOD_SNAPSHOT_1);
    add_value(&buffer, VOD_SNAPSHOT_2);

    let mut snapshots = Vec::new();
    assert_eq!(poll_max(&buffer, &mut snapshots, 2), 2);
    assert_eq!(snapshots.len(), 2);
    assert_eq!(snapshots[0], BP_SNAPSHOT);
    assert_eq!(snapshots[1], VOD_SNAPSHOT_1);

    snapshots.clear();
    assert_eq!(poll_max(&buffer, &mut snapshots, 1), 1);
    assert_eq!(snapshots.len(), 1);
    assert_eq!(snapshots[0], VOD_SNAPSHOT_2);

    assert_is_empty(&buffer);
}

fn should_return_all_items_without_request_limit<S>()
where
    S: Default,
    Valued<S>: KeyStore<Key>,
{
    let buffer = create_buffer::<S>(10);
    add_value(&buffer, BP_SNAPSHOT);
    add_key_and_value(&buffer, VOD_SNAPSHOT_1);
    add_key_and_value(&buffer, VOD_SNAPSHOT_2);

    let mut snapshots = Vec::new();
    assert_eq!(poll(&buffer, &mut snapshots), 2);
    assert_eq!(snapshots.len(), 2);

    assert_eq!(snapshots[0], BP_SNAPSHOT);
    assert_eq!(snapshots[1], VOD_SNAPSHOT_2);

    assert_is_empty(&buffer);
}

/// `CoalescingRingBuffer<Integer, Object>(2)`: the objects are numbers
/// here (the compact store needs plain data).
fn should_count_rejections<S>()
where
    S: Default,
    Valued<S>: KeyStore<(i32, u64)>,
{
    let buffer = Builder::<(i32, u64), u64, Valued<S>>::new()
        .capacity(2)
        .build();
    let rejections = || buffer.stats().full_rejections;
    assert_eq!(rejections(), 0);

    buffer.try_offer(10).unwrap();
    assert_eq!(rejections(), 0);

    assert_eq!(buffer.try_offer_key((1, 11)), Ok(Offered::Enqueued));
    assert_eq!(rejections(), 0);

    assert_eq!(buffer.try_offer_key((1, 12)), Ok(Offered::Coalesced));
    assert_eq!(rejections(), 0);

    assert!(buffer.try_offer(13).unwrap_err().is_full());
    assert_eq!(rejections(), 1);

    assert!(buffer.try_offer_key((2, 14)).unwrap_err().is_full());
    assert_eq!(rejections(), 2);
}

/// `shouldUseObjectEqualityToCompareKeys`, general store: two distinct
/// `String`s (`new String("boo")` twice) are one identity.
#[test]
fn should_use_object_equality_to_compare_keys_general() {
    let buffer = CoalescingQueue::<(String, u64), u64, Valued>::new(2);
    let (first, second) = (String::from("boo"), String::from("boo"));
    assert_ne!(first.as_ptr(), second.as_ptr(), "not two objects");

    buffer.try_offer_key((first, 1)).unwrap();
    buffer.try_offer_key((second, 2)).unwrap();

    assert_eq!(buffer.len(), 1);
    assert_eq!(buffer.try_take(), Ok(Entry::Key(("boo".to_string(), 2))));
}

/// `shouldUseObjectEqualityToCompareKeys`, compact store: two identities
/// built apart, equal by value, coalesce.
#[test]
fn should_use_object_equality_to_compare_keys_compact() {
    let buffer = Builder::<([char; 3], u64), u64, Valued<coalescing_queue::Compact>>::new()
        .capacity(2)
        .build();
    let first: [char; 3] = "boo".chars().collect::<Vec<_>>().try_into().unwrap();
    let second = ['b', 'o', 'o'];

    buffer.try_offer_key((first, 1)).unwrap();
    buffer.try_offer_key((second, 2)).unwrap();

    assert_eq!(buffer.len(), 1);
    assert_eq!(buffer.try_take(), Ok(Entry::Key((['b', 'o', 'o'], 2))));
}

// ----- ThreadSafetyTest.java -----

/// `ThreadSafetyTest`: 5,000,000 in Java with a buffer of 2^20; scaled to
/// run in debug, the buffer still far smaller than the instruments.
const NUMBER_OF_INSTRUMENTS: i64 = 40_000;
const THREAD_SAFETY_CAPACITY: usize = 1 << 12;
const POISON_PILL: i64 = -1;
const FIRST_BID: i64 = 3;
const SECOND_BID: i64 = 4;
const FIRST_ASK: i64 = 5;
const SECOND_ASK: i64 = 6;

/// How long a threaded test's consumer waits for its poison pill.
const DEADLINE: Duration = Duration::from_secs(60);

/// `put`: offers until accepted (Java throws on a refusal, see the head);
/// returns the refusals.
fn put<S>(buffer: &Buffer<S>, key: i64, bid: i64, ask: i64) -> u64
where
    Valued<S>: KeyStore<Key>,
{
    let mut pair = (key, snapshot(key, bid, ask));
    let mut refusals = 0;
    loop {
        match buffer.try_offer_key(pair) {
            Ok(_) => return refusals,
            Err(TryOfferError::Full(back)) => {
                refusals += 1;
                pair = back;
                thread::yield_now();
            }
            Err(TryOfferError::Closed(_)) => panic!("closed"),
        }
    }
}

/// `Consumer.fill`: alternately `poll(bucket, 1)` and `poll(bucket)`, each
/// waiting a little for a first entry; panics past `deadline`.
fn fill<K, V, S>(
    buffer: &CoalescingQueue<(K, V), V, S>,
    bucket: &mut Vec<V>,
    limited: &mut bool,
    deadline: Instant,
) where
    S: KeyStore<(K, V)>,
{
    assert!(
        Instant::now() < deadline,
        "consumer: no poison pill in time"
    );
    let max = if *limited { 1 } else { buffer.capacity() };
    *limited = !*limited;
    let mut entries = Vec::new();
    buffer.take_batch_timeout(&mut entries, max, Duration::ZERO, Duration::from_millis(10));
    assert!(entries.len() <= max);
    bucket.extend(entries.into_iter().map(value));
}

fn should_see_last_prices<S>()
where
    S: Default,
    Valued<S>: KeyStore<Key>,
    Buffer<S>: Sync,
{
    let buffer = create_buffer::<S>(THREAD_SAFETY_CAPACITY);
    let mut snapshots: Vec<Option<MarketSnapshot>> = vec![None; NUMBER_OF_INSTRUMENTS as usize];
    let refusals = thread::scope(|s| {
        let buffer = &buffer;
        let producer = s.spawn(move || {
            let mut refusals = 0;
            for key in 0..NUMBER_OF_INSTRUMENTS {
                refusals += put(buffer, key, FIRST_BID, FIRST_ASK);
                refusals += put(buffer, key, SECOND_BID, SECOND_ASK);
            }
            refusals + put(buffer, POISON_PILL, POISON_PILL, POISON_PILL)
        });
        let snapshots = &mut snapshots;
        let consumer = s.spawn(move || {
            let deadline = Instant::now() + DEADLINE;
            let (mut bucket, mut limited) = (Vec::new(), false);
            loop {
                fill(buffer, &mut bucket, &mut limited, deadline);
                for snapshot in bucket.drain(..) {
                    if snapshot.instrument_id == POISON_PILL {
                        return;
                    }
                    let seen = &mut snapshots[snapshot.instrument_id as usize];
                    // FIRST then SECOND, never back: prices do not go back.
                    if let Some(earlier) = seen {
                        assert!(
                            earlier.bid == FIRST_BID && snapshot.bid == SECOND_BID,
                            "instrument {}: {earlier:?} then {snapshot:?}",
                            snapshot.instrument_id
                        );
                    }
                    *seen = Some(snapshot);
                }
            }
        });
        consumer.join().unwrap();
        producer.join().unwrap()
    });

    for (instrument, snapshot) in snapshots.iter().enumerate() {
        let snapshot = snapshot.unwrap_or_else(|| panic!("instrument {instrument}: nothing"));
        assert_eq!(snapshot.instrument_id, instrument as i64);
        assert_eq!(snapshot.bid, SECOND_BID, "bid for instrument {instrument}:");
        assert_eq!(snapshot.ask, SECOND_ASK, "ask for instrument {instrument}:");
    }
    assert!(buffer.is_empty());
    assert_eq!(buffer.claimed_slots(), 0);
    assert_eq!(buffer.stats().full_rejections, refusals);
}

/// The thread-safety test with many prices per instrument (the brief's
/// form of it): the consumer sees each instrument's prices in order, never
/// torn, and each instrument's last delivered price is the last offered.
fn should_see_latest_prices_in_order<S>()
where
    S: Default,
    Valued<S>: KeyStore<Key>,
    Buffer<S>: Sync,
{
    latest_prices::<S>(1);
}

/// Not in LMAX (single producer): several producers, each with its own
/// instruments, into one queue.
fn should_see_latest_prices_in_order_with_several_producers<S>()
where
    S: Default,
    Valued<S>: KeyStore<Key>,
    Buffer<S>: Sync,
{
    latest_prices::<S>(4);
}

/// `producers` threads each offer `OFFERS` prices, rising per instrument
/// by a random step, to instruments picked at random among its own
/// `PER_PRODUCER` (producer `p` owns `p * PER_PRODUCER ..`), then one more
/// for each of them; a price's ask is one above its bid. Then a
/// pass-through poison pill. Fewer slots than instruments: offers are
/// refused (and retried), and instruments re-offered while queued coalesce.
fn latest_prices<S>(producers: i64)
where
    S: Default,
    Valued<S>: KeyStore<Key>,
    Buffer<S>: Sync,
{
    const PER_PRODUCER: usize = 16;
    const OFFERS: usize = 30_000;
    let instruments = producers as usize * PER_PRODUCER;
    let buffer = create_buffer::<S>(8);
    let mut last: Vec<Option<MarketSnapshot>> = vec![None; instruments];
    let mut delivered_keys = 0u64;
    let (refusals, offered_last) = thread::scope(|s| {
        let buffer = &buffer;
        let last = &mut last;
        let delivered_keys = &mut delivered_keys;
        let consumer = s.spawn(move || {
            let deadline = Instant::now() + DEADLINE;
            let (mut bucket, mut limited) = (Vec::new(), false);
            loop {
                fill(buffer, &mut bucket, &mut limited, deadline);
                for snapshot in bucket.drain(..) {
                    if snapshot.instrument_id == POISON_PILL {
                        return;
                    }
                    *delivered_keys += 1;
                    assert_eq!(snapshot.ask, snapshot.bid + 1, "torn: {snapshot:?}");
                    let seen = &mut last[snapshot.instrument_id as usize];
                    // Strictly: every offer's price is new, and a price is
                    // delivered at most once (one pending copy per key).
                    if let Some(earlier) = seen {
                        assert!(
                            snapshot.bid > earlier.bid,
                            "instrument {}: {earlier:?} then {snapshot:?}",
                            snapshot.instrument_id
                        );
                    }
                    *seen = Some(snapshot);
                }
            }
        });
        let workers: Vec<_> = (0..producers)
            .map(|p| {
                s.spawn(move || {
                    let first = p * PER_PRODUCER as i64;
                    let mut prices = [0i64; PER_PRODUCER];
                    let mut refusals = 0;
                    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ p as u64;
                    for n in 0..OFFERS + PER_PRODUCER {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let (i, step) = if n < OFFERS {
                            (rng as usize % PER_PRODUCER, 1 + (rng >> 32) as i64 % 3)
                        } else {
                            (n - OFFERS, 1) // one last price for each
                        };
                        prices[i] += step;
                        let key = first + i as i64;
                        refusals += put(buffer, key, prices[i], prices[i] + 1);
                    }
                    (refusals, prices)
                })
            })
            .collect();
        let mut refusals = 0;
        let mut offered_last = Vec::new();
        for worker in workers {
            let (refused, prices) = worker.join().unwrap();
            refusals += refused;
            offered_last.extend(prices);
        }
        // After every producer: a never-collapsed pill (an item, type V).
        let mut pill = snapshot(POISON_PILL, 0, 0);
        while let Err(error) = buffer.try_offer(pill) {
            assert!(error.is_full());
            refusals += 1;
            pill = error.into_inner();
            thread::yield_now();
        }
        consumer.join().unwrap();
        (refusals, offered_last)
    });

    for (instrument, (delivered, bid)) in last.iter().zip(offered_last).enumerate() {
        assert_eq!(
            *delivered,
            Some(snapshot(instrument as i64, bid, bid + 1)),
            "instrument {instrument}: not the last price offered"
        );
    }
    assert!(buffer.is_empty());
    assert_eq!(buffer.claimed_slots(), 0);
    let stats = buffer.stats();
    assert_eq!(stats.full_rejections, refusals);
    let accepted = (instruments + producers as usize * OFFERS) as u64;
    // Each accepted offer either enqueued a copy (delivered once) or
    // coalesced; the pill is the one item.
    assert_eq!(stats.enqueued, delivered_keys + 1);
    assert_eq!(stats.coalesced + delivered_keys, accepted);
    assert_eq!(stats.taken, stats.enqueued);
}

// ----- BufferOverflowTest.java -----

/// `shouldBeAbleToReuseCapacity`: 10 keys offered round after round into
/// a buffer of 32 never fill it, as long as polls free their slots. The
/// consumer polls up to 100 at a time, as in Java. 1,000,000 rounds in
/// Java; scaled for debug.
///
/// Fails on this crate now and then (a few runs in a hundred): a batch
/// take frees the slots of all it took only when it returns, and keeps
/// taking while the producer refills, so more than 22 entries taken in
/// one batch plus the 10 pending keys claim all 32 slots; an offer is
/// then refused with `len() == 0` and no key pending. LMAX's
/// `poll(bucket, max)` takes only what was written when it began.
fn should_be_able_to_reuse_capacity<S>()
where
    S: Default,
    Valued<S>: KeyStore<(i32, i32)>,
    CoalescingQueue<(i32, i32), i32, Valued<S>>: Sync,
{
    reuse_capacity::<S>(100);
}

/// Not in LMAX: the same with batches of at most 21, the slots the 10
/// keys and the pill leave spare: never refused (see above).
fn should_be_able_to_reuse_capacity_with_batches_within_the_spare_slots<S>()
where
    S: Default,
    Valued<S>: KeyStore<(i32, i32)>,
    CoalescingQueue<(i32, i32), i32, Valued<S>>: Sync,
{
    reuse_capacity::<S>(32 - 10 - 1);
}

fn reuse_capacity<S>(consumer_capacity: usize)
where
    S: Default,
    Valued<S>: KeyStore<(i32, i32)>,
    CoalescingQueue<(i32, i32), i32, Valued<S>>: Sync,
{
    const RUNS: i32 = 20_000;
    const POISON: i32 = -1;
    let buffer = Builder::<(i32, i32), i32, Valued<S>>::new()
        .capacity(32)
        .build();
    // Where the producer was refused, and the queue as it saw it then.
    let has_overflowed = std::sync::Mutex::new(None);
    thread::scope(|s| {
        let buffer = &buffer;
        let has_overflowed = &has_overflowed;
        let producer = s.spawn(move || {
            for run in 0..RUNS {
                for message in 0..10 {
                    if buffer.try_offer_key((message, message)).is_err() {
                        *has_overflowed.lock().unwrap() = Some(format!(
                            "run {run}, key {message}: claimed_slots {}, len {}, pending_keys {}",
                            buffer.claimed_slots(),
                            buffer.len(),
                            buffer.pending_keys()
                        ));
                        // Java offers the pill, which may be refused too:
                        // close instead, which the consumer sees drained.
                        buffer.close();
                        return;
                    }
                }
            }
            buffer.try_offer(POISON).unwrap();
        });
        let consumer = s.spawn(move || {
            let deadline = Instant::now() + DEADLINE;
            let mut values = Vec::with_capacity(consumer_capacity);
            loop {
                assert!(Instant::now() < deadline, "consumer: no poison in time");
                values.clear();
                let mut entries = Vec::new();
                let taken = buffer.take_batch_timeout(
                    &mut entries,
                    consumer_capacity,
                    Duration::ZERO,
                    Duration::from_millis(10),
                );
                assert!(taken <= consumer_capacity);
                values.extend(entries.into_iter().map(value));
                if values.contains(&POISON) || (taken == 0 && buffer.is_closed()) {
                    return;
                }
            }
        });
        producer.join().unwrap();
        consumer.join().unwrap();
    });
    if let Some(at) = has_overflowed.into_inner().unwrap() {
        panic!("ring buffer has overflowed: {at}");
    }
    assert_eq!(buffer.stats().full_rejections, 0);
}

// ----- MemoryLeakTest.java -----

/// A key (`CountingKey`: equal and hashed by `id`) or a value
/// (`CountingValue`: `id` unused) that counts its live copies.
struct Counting {
    id: i32,
    live: Arc<AtomicIsize>,
}

impl Counting {
    fn new(id: i32, live: &Arc<AtomicIsize>) -> Self {
        live.fetch_add(1, Ordering::SeqCst);
        Counting {
            id,
            live: live.clone(),
        }
    }
}

impl Clone for Counting {
    fn clone(&self) -> Self {
        Counting::new(self.id, &self.live)
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl PartialEq for Counting {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for Counting {}

impl Hash for Counting {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

/// `shouldNotHaveMemoryLeaks`, general store only (see the head): once
/// everything is taken and dropped, no key or value is still alive, the
/// coalesced-away value and the duplicate key included, while the queue
/// itself lives on.
#[test]
fn should_not_have_memory_leaks() {
    let live = Arc::new(AtomicIsize::new(0));
    let new_value = |id| Counting::new(id, &live);
    let new_key = |id| Counting::new(id, &live);

    let buffer = CoalescingQueue::<(Counting, Counting), Counting, Valued>::new(16);
    buffer.try_offer(new_value(0)).unwrap();

    buffer.try_offer_key((new_key(1), new_value(0))).unwrap();
    buffer.try_offer_key((new_key(2), new_value(0))).unwrap();
    assert_eq!(
        buffer.try_offer_key((new_key(1), new_value(0))),
        Ok(Offered::Coalesced)
    );

    buffer.try_offer(new_value(0)).unwrap();

    assert_eq!(buffer.len(), 4);
    let mut first = Vec::new();
    assert_eq!(poll_max(&buffer, &mut first, 1), 1);
    let mut rest = Vec::new();
    assert_eq!(poll(&buffer, &mut rest), 3);
    assert!(buffer.is_empty());
    drop((first, rest));

    assert_eq!(
        live.load(Ordering::SeqCst),
        0,
        "keys or values still alive after every entry was taken and dropped"
    );
    assert_eq!(buffer.claimed_slots(), 0);
    assert_eq!(buffer.pending_keys(), 0);
}
