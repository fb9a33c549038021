//! The key table against keys and hashers that misbehave: a `Hash` that
//! changes, a `CompactKey` whose `BITS` is too small, an `Eq` that is slow.
//! Each misbehaving key may get odd answers for itself; none may break the
//! guarantees of the other keys, and none may make another offer wait for
//! it beyond its own entry.

use coalescing_queue::{
    Builder, CoalescingQueue, CompactKey, CompactQueue, Offered, Packer, Unpacker,
};
use foldhash::fast::FixedState;
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::thread;
use std::time::Duration;

/// A key of the general store; `Fickle` keys hash differently at every call.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Key {
    Stable(u64),
    Fickle(u64),
}

static FICKLE_CALLS: AtomicU64 = AtomicU64::new(0);

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Key::Stable(id) => id.hash(state),
            Key::Fickle(id) => {
                id.hash(state);
                FICKLE_CALLS.fetch_add(1, SeqCst).hash(state);
            }
        }
    }
}

/// Keys whose `Hash` changes spill, are taken and acked among well-behaved
/// keys at a capacity where home buckets fill. Their removals must lower
/// only the overflow counts their inserts raised (the home is recorded at
/// the insert, not hashed again), or a well-behaved key past a lowered
/// count is no longer found and is queued twice (G2).
#[test]
fn an_unstable_hash_does_not_break_the_coalescing_of_other_keys() {
    let capacity = 64;
    let q: CoalescingQueue<Key, (), FixedState> = Builder::<Key, (), FixedState>::new()
        .capacity(capacity)
        .hasher(FixedState::with_seed(11))
        .build();
    let mut spilled_rounds = 0;
    for round in 0..500u64 {
        let keys: Vec<Key> = (0..capacity as u64)
            .map(|i| {
                let id = round * 1_000 + i;
                if i % 3 == 0 {
                    Key::Fickle(id)
                } else {
                    Key::Stable(id)
                }
            })
            .collect();
        for key in &keys {
            assert_eq!(q.try_offer_key(key.clone()), Ok(Offered::Enqueued));
        }
        spilled_rounds += usize::from(q.overflow_counts() > 0);
        // Take and ack the fickle keys (leased), take the stable ones
        // plainly, half of them; the other half stays pending.
        let mut kept = Vec::new();
        for n in 0..capacity {
            let lease = q.try_take_leased().expect("queued");
            match lease.key().unwrap() {
                Key::Fickle(_) => lease.ack(),
                Key::Stable(id) if n % 2 == 0 => {
                    kept.push(Key::Stable(*id));
                    lease.nack();
                }
                Key::Stable(_) => lease.ack(),
            }
        }
        for key in &kept {
            assert_eq!(
                q.try_offer_key(key.clone()),
                Ok(Offered::Coalesced),
                "round {round}: pending {key:?} not found (queued twice: G2)"
            );
        }
        assert_eq!(q.len(), kept.len(), "round {round}");
        while q.try_take().is_ok() {}
        assert_eq!(q.overflow_counts(), 0, "round {round}: counts left raised");
    }
    assert!(
        spilled_rounds > 100,
        "keys spilled in only {spilled_rounds} rounds"
    );
}

/// Declares 64 bits but packs 80: the store would keep one word, and two
/// keys that differ in `shard` would coalesce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Understated {
    id: u64,
    shard: u16,
}

impl CompactKey for Understated {
    const BITS: u32 = 64;
    fn pack(&self, out: &mut Packer) {
        self.id.pack(out);
        self.shard.pack(out);
    }
    fn unpack(input: &mut Unpacker<'_>) -> Self {
        Understated {
            id: u64::unpack(input),
            shard: u16::unpack(input),
        }
    }
}

/// An offer of a key whose `pack` writes more than its `BITS` panics, in
/// release builds too, and changes nothing; it never coalesces two
/// different keys.
#[test]
fn an_understated_compact_key_is_refused_not_truncated() {
    let q = CompactQueue::<Understated, ()>::new(4);
    for shard in [1, 2] {
        let offer = catch_unwind(AssertUnwindSafe(|| {
            q.try_offer_key(Understated { id: 7, shard })
        }));
        let message = offer.expect_err("an 80-bit key declared as 64 was accepted");
        let message = message
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or_default();
        assert!(
            message.contains("wrote 80 bits but declares BITS = 64"),
            "{message}"
        );
    }
    assert_eq!((q.len(), q.pending_keys(), q.claimed_slots()), (0, 0, 0));
}

/// A general key whose `Eq` is slow for one key: `SLOW`.
#[derive(Clone, Debug)]
struct Slow {
    id: u32,
    /// What it hashes: keys of one class share a hash (and so a bucket and
    /// a tag); the classes here differ in tag under the fixed hasher.
    class: u8,
}

const SLOW: u32 = 99;
/// The comparisons with `SLOW` so far.
static SLOW_COMPARES: AtomicU32 = AtomicU32::new(0);
/// The number of the comparison with `SLOW` under way, or 0.
static SLOW_COMPARING: AtomicU32 = AtomicU32::new(0);

impl Hash for Slow {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.class.hash(state);
    }
}

impl PartialEq for Slow {
    fn eq(&self, other: &Self) -> bool {
        if self.id == SLOW || other.id == SLOW {
            let number = SLOW_COMPARES.fetch_add(1, SeqCst) + 1;
            SLOW_COMPARING.store(number, SeqCst);
            thread::sleep(Duration::from_millis(700));
            SLOW_COMPARING.store(0, SeqCst);
        }
        self.id == other.id
    }
}

impl Eq for Slow {}

/// A new key whose `Eq` takes 0.7 s a comparison compares itself with a
/// pending key of its class: without the insert bit, and again holding its
/// home bucket's bit if an insert of that home came between. Duplicates of
/// another pending key with that home (but another tag) are answered during
/// each of those comparisons: a duplicate does not take the bit.
#[test]
fn a_slow_eq_does_not_hold_up_the_duplicates_of_other_keys() {
    // One bucket: every key has the same home.
    let q: CoalescingQueue<Slow, (), FixedState> = Builder::<Slow, (), FixedState>::new()
        .capacity(3)
        .hasher(FixedState::with_seed(5))
        .build();
    // Same class as the slow key (compared with it), and another class.
    assert_eq!(
        q.try_offer_key(Slow { id: 1, class: 0 }),
        Ok(Offered::Enqueued)
    );
    assert_eq!(
        q.try_offer_key(Slow { id: 2, class: 1 }),
        Ok(Offered::Enqueued)
    );
    let done = AtomicBool::new(false);
    thread::scope(|scope| {
        let slow = scope.spawn(|| {
            let outcome = q.try_offer_key(Slow { id: SLOW, class: 0 });
            done.store(true, SeqCst);
            outcome
        });
        let mut checked = 0;
        loop {
            let comparing = SLOW_COMPARING.load(SeqCst);
            if comparing == 0 {
                if done.load(SeqCst) {
                    break;
                }
                thread::yield_now();
                continue;
            }
            for _ in 0..3 {
                assert_eq!(
                    q.try_offer_key(Slow { id: 2, class: 1 }),
                    Ok(Offered::Coalesced)
                );
            }
            assert_eq!(
                SLOW_COMPARING.load(SeqCst),
                comparing,
                "the duplicates waited for comparison {comparing} of another key"
            );
            checked += 1;
            while SLOW_COMPARING.load(SeqCst) == comparing {
                thread::yield_now();
            }
        }
        assert!(checked >= 1, "no comparison was seen");
        assert_eq!(slow.join().unwrap(), Ok(Offered::Enqueued));
    });
    assert_eq!(q.len(), 3);
}
