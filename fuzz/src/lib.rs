//! The model and the replay loop shared by the fuzz targets.
//!
//! A run builds a `CoalescingQueue<u8, u32, S>` and a plain model of it (a
//! `VecDeque` for the ring, a `HashMap` key -> state for the key map, plain
//! counters for the stats), applies the same operations to both from one
//! thread, and compares every return value and, after every operation, the
//! queue's observable state (`len`, `in_flight`, `is_full`, `is_closed`,
//! `is_pending` of every key, `pending_keys`, `claimed_slots`, `stats()`).
//! At the end it acks every lease still held, drains the queue and checks
//! G6: no key is left pending and no slot is left claimed. Each input is
//! replayed four times, once per key store: `S` the default `BuildHasher`
//! (the general store), then `Compact` (the compact store), then the valued
//! stores `Valued<DefaultHashBuilder>` and `Valued<Compact>`, whose keys are
//! `(u8, u32)` pairs: the n-th key offer of a replay carries the value `n`,
//! merged by `Latest` on one valued store and by a wrapping add on the
//! other ([`Merges`], from the input), and every delivered value is
//! compared with the model's.
//!
//! Retries: unless the input says otherwise ([`Retries::of`]), the queues
//! are built with `.retries(Backoff::exponential(1 ms, 64 ms))
//! .manual_clock()`, and the delay ops run too: delayed offers
//! (`try_offer_key_after`), `nack_after` / `nack_backoff` of held leases
//! and of leased batches, clock advances, and `len` / `is_empty` / `stats`
//! as ops of their own. Every lease's `attempt()` (and a batch's
//! `attempts()`), every `nack_backoff` delay and the stats' `delayed`,
//! `next_due` and `delayed_nacks` are compared with the model's. `len`,
//! `is_empty` and `stats` queue the entries that are due (as a take does),
//! so while the model has a due entry not yet queued the state check
//! leaves them out, and the next take shows where it joins the ring. At
//! the end the clock is moved past the last due time (before the drain),
//! so what is still delayed is queued by the drain's takes.
//!
//! Every operation used is one that cannot block given the model's state:
//! the blocking forms (`offer_key`, `take`, `take_batch`) are only called
//! when the model says they return at once, after the state check has
//! confirmed the queue agrees, so a wrong model fails an assertion instead
//! of hanging the fuzzer. (While a due entry is not yet queued the check
//! cannot confirm it, so the timeout forms stand in for the blocking ones:
//! they return at once when the queue agrees, and fail the run after
//! [`HANG`] when it does not.)

use arbitrary::{Arbitrary, Unstructured};
use coalescing_queue::{
    Backoff, Builder, CoalescingQueue, Compact, DefaultHashBuilder, Entry, InFlightPolicy,
    KeyStore, Lease, LeaseBatch, OfferTimeoutError, Offered, Stats, TakeTimeoutError,
    TryOfferError, TryTakeError, Valued,
};

#[path = "../../tests/reference/mod.rs"]
mod reference;
use reference::{wrapping_add, Counts, RunKey, WithValue};
use std::fmt::Write as _;
use std::time::Duration;

/// The key space: small, so that offers collide with queued and leased copies.
pub const KEYS: u8 = 8;

/// The backoff of the queues built with retries: 1 ms doubling up to
/// 64 ms (the model works the delays out itself from these two).
pub const BASE: Duration = Duration::from_millis(1);
pub const MAX: Duration = Duration::from_millis(64);

/// How long a take the model says returns at once may wait when the state
/// check could not confirm it (see the module docs).
pub const HANG: Duration = Duration::from_secs(1);

/// The delay of a delay code: `u8::MAX` is `Duration::MAX` (due only at
/// close), any other `code % 10` milliseconds (0 is due at once, but still
/// waits for a take to queue it).
pub fn delay_of(code: u8) -> Duration {
    if code == u8::MAX {
        Duration::MAX
    } else {
        Duration::from_millis(u64::from(code % 10))
    }
}

/// The clock advance of an `AdvanceClock(raw)`: `raw % 33` milliseconds.
pub fn advance_of(raw: u8) -> Duration {
    Duration::from_millis(u64::from(raw % 33))
}

/// How a leased batch ends.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchEnd {
    /// `LeaseBatch::ack`.
    Ack,
    /// `LeaseBatch::nack`.
    Nack,
    /// Dropped without either: a nack of every entry, in order.
    Drop,
    /// `into_leases`: every entry becomes one held lease.
    Split,
    /// `nack_after(delay_of(code))` (retries only; else a plain nack).
    NackAfter(u8),
    /// `nack_backoff()` (retries only; else a plain nack).
    NackBackoff,
}

impl BatchEnd {
    /// Needs a queue built with retries.
    fn delays(self) -> bool {
        matches!(self, BatchEnd::NackAfter(_) | BatchEnd::NackBackoff)
    }
}

/// One operation. Keys are reduced modulo the key space of the run, lease
/// indexes modulo the number of leases held (no-op when none is held).
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `try_offer_key(k)`.
    OfferKey(u8),
    /// `try_offer(v)` with a fresh item number.
    OfferItem,
    /// `offer_key(k)` (blocking), only when it cannot block.
    OfferKeyBlocking(u8),
    /// `offer_key_timeout(k, 0)`.
    OfferKeyTimeout(u8),
    /// `offer_timeout(v, 0)` with a fresh item number.
    OfferItemTimeout,
    /// `try_take()`.
    TryTake,
    /// `take()` (blocking), only when it cannot block.
    TakeBlocking,
    /// `take_timeout(0)`.
    TakeTimeout,
    /// `try_take_leased()`, holding the lease.
    TryTakeLeased,
    /// `take_leased_timeout(0)`, holding the lease.
    TakeLeasedTimeout,
    /// Ack a held lease.
    Ack(u8),
    /// Nack a held lease.
    Nack(u8),
    /// Drop a held lease.
    DropLease(u8),
    /// `take_batch(&mut out, 1 + max % 9, Duration::ZERO)` (max 0 is refused).
    TakeBatch(u8),
    /// `take_batch_leased(1 + max % 9, Duration::ZERO)`, then end the batch.
    TakeBatchLeased(u8, BatchEnd),
    /// `close()`.
    Close,
    /// `close_and_wait(Duration::ZERO)`.
    CloseAndWait,
    // Retries: skipped on a queue built without them (`len`, `is_empty`
    // and `stats` run on every queue).
    /// `try_offer_key_after(k, delay_of(code))`.
    OfferKeyAfter(u8, u8),
    /// `nack_after(delay_of(code))` of a held lease.
    NackAfter(u8, u8),
    /// `nack_backoff()` of a held lease.
    NackBackoff(u8),
    /// `advance_clock(advance_of(raw))`.
    AdvanceClock(u8),
    /// `len()` (queues what is due).
    Len,
    /// `is_empty()` (queues what is due).
    IsEmpty,
    /// `stats()` (queues what is due), compared in full.
    Stats,
}

impl Op {
    /// Needs a queue built with retries.
    fn delays(self) -> bool {
        match self {
            Op::OfferKeyAfter(..)
            | Op::NackAfter(..)
            | Op::NackBackoff(_)
            | Op::AdvanceClock(_) => true,
            Op::TakeBatchLeased(_, end) => end.delays(),
            _ => false,
        }
    }
}

/// A whole fuzz input for `queue_ops`: the queue's shape, then the ops.
#[derive(Arbitrary, Debug)]
pub struct Input {
    /// Capacity is `1 + capacity % 8`; bit 3 picks the valued replays'
    /// merges ([`Merges::of`]), bits 4 and 5 whether the queues have
    /// retries ([`Retries::of`]).
    pub capacity: u8,
    /// `InFlightPolicy::Absorb` when set, else `Requeue`.
    pub drop_policy: bool,
    /// The operations, in order.
    pub ops: Vec<Op>,
}

/// Which merge each valued replay uses: `Latest` on one valued store, the
/// wrapping add on the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merges {
    /// `Latest` on `Valued<DefaultHashBuilder>`, the add on `Valued<Compact>`.
    LatestOnGeneral,
    /// The add on `Valued<DefaultHashBuilder>`, `Latest` on `Valued<Compact>`.
    AddOnGeneral,
}

impl Merges {
    /// From bit 3 of an input's capacity byte (the capacity takes bits 0-2).
    pub fn of(capacity_byte: u8) -> Self {
        if capacity_byte & 8 == 0 {
            Merges::LatestOnGeneral
        } else {
            Merges::AddOnGeneral
        }
    }
}

/// Whether the queues of a run are built with retries (and the delay ops
/// run).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retries {
    /// `.retries(Backoff::exponential(BASE, MAX)).manual_clock()`.
    Manual,
    /// No delay schedule: the delay ops are skipped.
    None,
}

impl Retries {
    /// From bits 4 and 5 of an input's capacity byte: without retries
    /// only when both are set (a quarter of the inputs).
    pub fn of(capacity_byte: u8) -> Self {
        if capacity_byte & 0x30 == 0x30 {
            Retries::None
        } else {
            Retries::Manual
        }
    }
}

/// Decodes an input for `lease_ops`: the same shape, but the ops are drawn
/// with weights that favour leases (take leased, ack, nack, drop, re-offers
/// of leased keys), a key space of 4 and a close only rarely. With
/// retries, a pick of 192 or more (a quarter) draws from the delay ops
/// ([`delay_weighted`]) instead.
pub fn lease_weighted(
    data: &[u8],
) -> arbitrary::Result<(usize, InFlightPolicy, u8, Merges, Retries, Vec<Op>)> {
    let mut u = Unstructured::new(data);
    let capacity_byte = u.arbitrary::<u8>()?;
    let capacity = 1 + usize::from(capacity_byte % 8);
    let policy = policy_of(u.arbitrary::<bool>()?);
    let retries = Retries::of(capacity_byte);
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < 512 {
        let pick: u8 = u.arbitrary()?;
        let arg: u8 = u.arbitrary().unwrap_or(0);
        if retries == Retries::Manual && pick >= 192 {
            let code: u8 = u.arbitrary().unwrap_or(0);
            ops.push(delay_weighted(pick % 64, arg, code));
            continue;
        }
        let op = match pick % 64 {
            0..=13 => Op::OfferKey(arg),
            14..=15 => Op::OfferItem,
            16 => Op::OfferKeyBlocking(arg),
            17..=24 => Op::TryTakeLeased,
            25 => Op::TakeLeasedTimeout,
            26..=31 => Op::Ack(arg),
            32..=36 => Op::Nack(arg),
            37..=40 => Op::DropLease(arg),
            41..=43 => Op::TryTake,
            44 => Op::TakeTimeout,
            45 => Op::TakeBatch(arg),
            46..=52 => Op::TakeBatchLeased(
                arg,
                match arg >> 5 & 3 {
                    0 => BatchEnd::Ack,
                    1 => BatchEnd::Nack,
                    2 => BatchEnd::Drop,
                    _ => BatchEnd::Split,
                },
            ),
            53..=61 => Op::OfferKey(arg),
            62 => {
                if arg & 3 == 0 {
                    Op::Close
                } else {
                    Op::OfferKeyTimeout(arg)
                }
            }
            _ => {
                if arg & 7 == 0 {
                    Op::CloseAndWait
                } else {
                    Op::TakeBlocking
                }
            }
        };
        ops.push(op);
    }
    Ok((capacity, policy, 4, Merges::of(capacity_byte), retries, ops))
}

/// A delay op of `lease_ops`, from `pick` (below 64), a lease index or key
/// `arg` and a delay code.
fn delay_weighted(pick: u8, arg: u8, code: u8) -> Op {
    match pick {
        0..=15 => Op::NackAfter(arg, code),
        16..=27 => Op::NackBackoff(arg),
        28..=41 => Op::AdvanceClock(code),
        42..=45 => Op::OfferKeyAfter(arg, code),
        46..=50 => Op::TakeBatchLeased(arg, BatchEnd::NackAfter(code)),
        51..=54 => Op::TakeBatchLeased(arg, BatchEnd::NackBackoff),
        55..=56 => Op::Len,
        57 => Op::IsEmpty,
        58..=59 => Op::Stats,
        _ => Op::TryTakeLeased,
    }
}

/// The policy a flag stands for.
pub fn policy_of(drop_policy: bool) -> InFlightPolicy {
    if drop_policy {
        InFlightPolicy::Absorb
    } else {
        InFlightPolicy::Requeue
    }
}

/// Runs a `queue_ops` input.
pub fn run_input(input: &Input) {
    let capacity = 1 + usize::from(input.capacity % 8);
    let merges = Merges::of(input.capacity);
    run(
        capacity,
        policy_of(input.drop_policy),
        KEYS,
        merges,
        Retries::of(input.capacity),
        &input.ops,
    );
}

/// The shared reference model (the proptest's too), on this harness's
/// key and item types: keys `u8` or `(u8, u32)`, items `u32`.
type Model<Key> = reference::Model<Key, u32, <Key as RunKey>::Carry>;

/// An entry of a harness's queue.
type E<Key> = Entry<Key, u32>;

/// The harness: the queue (keys `Key`, on key store `S`), the model, the
/// leases held and a trace for failure messages.
struct Harness<'q, Key: RunKey, S: KeyStore<Key>> {
    q: &'q CoalescingQueue<Key, u32, S>,
    m: Model<Key>,
    key_space: u8,
    /// Leases held, with the entry the model says each holds.
    held: Vec<(Lease<'q, Key, u32, S>, E<Key>)>,
    /// The last item number handed out: items are 1, 2, 3, ...
    next_item: u32,
    /// The number of the last key offer: a valued key's value.
    key_offers: u32,
    /// Built with retries: the delay ops run.
    retries: bool,
    trace: String,
}

macro_rules! check {
    ($h:expr, $cond:expr, $($fmt:tt)+) => {
        if !$cond {
            panic!("{}\nMISMATCH: {}", $h.trace, format!($($fmt)+));
        }
    };
}

macro_rules! check_eq {
    ($h:expr, $actual:expr, $expected:expr, $what:expr) => {{
        let actual = $actual;
        let expected = $expected;
        if actual != expected {
            panic!(
                "{}\nMISMATCH in {}: queue gave {:?}, model expected {:?}",
                $h.trace, $what, actual, expected
            );
        }
    }};
}

impl<'q, Key: RunKey, S: KeyStore<Key>> Harness<'q, Key, S> {
    fn note(&mut self, line: impl std::fmt::Display) {
        let _ = writeln!(self.trace, "  {line}");
    }

    /// The key of the next key offer: identity `raw` modulo the key space,
    /// and (a valued key) the offer's number as its value.
    fn key(&mut self, raw: u8) -> Key {
        self.key_offers = self.key_offers.wrapping_add(1);
        Key::make(raw % self.key_space, self.key_offers)
    }

    /// Compares an offer's result, `(is_full, value handed back)` for an
    /// error, with the model's.
    fn offer_key_result(&mut self, key: Key, result: Result<Offered, (bool, Key)>, what: &str) {
        let expected = self.m.offer_key(key).map_err(try_offer_parts);
        check_eq!(self, result, expected, format!("{what}({key:?})"));
    }

    fn offer_item_result(&mut self, item: u32, result: Result<(), (bool, u32)>, what: &str) {
        let expected = self.m.offer_item(item).map_err(try_offer_parts);
        check_eq!(self, result, expected, format!("{what}(item {item})"));
    }

    fn fresh_item(&mut self) -> u32 {
        self.next_item += 1;
        self.next_item
    }

    fn take_result(&mut self, got: Result<E<Key>, TryTakeError>, leased: bool, what: &str) {
        let want = self.m.take(leased);
        check_eq!(self, got, want, what);
    }

    fn end_held(&mut self, raw: u8, how: BatchEnd) {
        if self.held.is_empty() {
            return;
        }
        let index = usize::from(raw) % self.held.len();
        let (lease, entry) = self.held.remove(index);
        check_eq!(self, *lease, entry, "held lease's entry");
        check_eq!(
            self,
            lease.attempt(),
            self.m.attempt_of(&entry),
            "held lease's attempt()"
        );
        match how {
            BatchEnd::Ack => lease.ack(),
            BatchEnd::Nack => lease.nack(),
            BatchEnd::Drop | BatchEnd::Split => drop(lease),
            BatchEnd::NackAfter(code) => {
                lease.nack_after(delay_of(code));
                self.m.nack_after(entry, delay_of(code));
                return;
            }
            BatchEnd::NackBackoff => {
                let delay = lease.nack_backoff();
                let want = self.m.nack_backoff(entry);
                check_eq!(self, delay, want, "nack_backoff()'s delay");
                return;
            }
        }
        self.m.end_lease(entry, how == BatchEnd::Ack);
    }

    fn apply(&mut self, op: Op) {
        let q = self.q;
        if op.delays() && !self.retries {
            return;
        }
        match op {
            Op::OfferKey(raw) => {
                let key = self.key(raw);
                self.note(format_args!("try_offer_key({key:?})"));
                let result = q.try_offer_key(key).map_err(try_offer_parts);
                self.offer_key_result(key, result, "try_offer_key");
            }
            Op::OfferKeyBlocking(raw) => {
                let key = self.key(raw);
                if !self.m.offer_key_ready(key) {
                    return;
                }
                self.note(format_args!("offer_key({key:?})"));
                let result = q.offer_key(key).map_err(|e| (false, e.into_inner()));
                self.offer_key_result(key, result, "offer_key");
            }
            Op::OfferKeyTimeout(raw) => {
                let key = self.key(raw);
                self.note(format_args!("offer_key_timeout({key:?}, 0)"));
                let result = q
                    .offer_key_timeout(key, Duration::ZERO)
                    .map_err(timeout_offer_parts);
                self.offer_key_result(key, result, "offer_key_timeout");
            }
            Op::OfferItem => {
                let item = self.fresh_item();
                self.note(format_args!("try_offer(item {item})"));
                let result = q.try_offer(item).map_err(try_offer_parts);
                self.offer_item_result(item, result, "try_offer");
            }
            Op::OfferItemTimeout => {
                let item = self.fresh_item();
                self.note(format_args!("offer_timeout(item {item}, 0)"));
                let result = q
                    .offer_timeout(item, Duration::ZERO)
                    .map_err(timeout_offer_parts);
                self.offer_item_result(item, result, "offer_timeout");
            }
            Op::TryTake => {
                self.note("try_take()");
                let got = q.try_take();
                self.take_result(got, false, "try_take");
            }
            Op::TakeBlocking => {
                if !self.m.take_ready() {
                    return;
                }
                if self.m.has_due() {
                    // Unconfirmed by the state check (module docs).
                    self.note(format_args!("take_timeout({HANG:?}) (for take())"));
                    let got = q.take_timeout(HANG).map_err(timeout_take_error);
                    self.take_result(got, false, "take");
                    return;
                }
                self.note("take()");
                let got = q.take().map_err(|_| TryTakeError::Closed);
                self.take_result(got, false, "take");
            }
            Op::TakeTimeout => {
                self.note("take_timeout(0)");
                let got = q.take_timeout(Duration::ZERO).map_err(timeout_take_error);
                self.take_result(got, false, "take_timeout");
            }
            Op::TryTakeLeased => {
                self.note("try_take_leased()");
                let got = q.try_take_leased();
                self.hold(got, "try_take_leased");
            }
            Op::TakeLeasedTimeout => {
                self.note("take_leased_timeout(0)");
                let got = q
                    .take_leased_timeout(Duration::ZERO)
                    .map_err(timeout_take_error);
                self.hold(got, "take_leased_timeout");
            }
            Op::Ack(raw) => self.end_op(raw, BatchEnd::Ack),
            Op::Nack(raw) => self.end_op(raw, BatchEnd::Nack),
            Op::DropLease(raw) => self.end_op(raw, BatchEnd::Drop),
            Op::TakeBatch(raw) => {
                let max = 1 + usize::from(raw % 9);
                if !self.m.take_ready() {
                    return;
                }
                self.note(format_args!("take_batch(max {max}, linger 0)"));
                // A sentinel first: take_batch appends, it does not clear.
                let mut out = vec![Entry::Item(u32::MAX)];
                let count = if self.m.has_due() {
                    // Unconfirmed by the state check (module docs).
                    q.take_batch_timeout(&mut out, max, Duration::ZERO, HANG)
                } else {
                    q.take_batch(&mut out, max, Duration::ZERO)
                };
                let mut want = vec![Entry::Item(u32::MAX)];
                while want.len() <= max {
                    match self.m.take(false) {
                        Ok(entry) => want.push(entry),
                        Err(_) => break,
                    }
                }
                check_eq!(self, count, want.len() - 1, "take_batch's count");
                check_eq!(self, out, want, "take_batch's entries");
            }
            Op::TakeBatchLeased(raw, end) => {
                let max = 1 + usize::from(raw % 9);
                if !self.m.take_ready() {
                    return;
                }
                self.note(format_args!(
                    "take_batch_leased(max {max}, linger 0) then {end:?}"
                ));
                let batch = if self.m.has_due() {
                    // Unconfirmed by the state check (module docs).
                    q.take_batch_leased_timeout(max, Duration::ZERO, HANG)
                } else {
                    q.take_batch_leased(max, Duration::ZERO)
                };
                let mut want = Vec::new();
                let mut attempts = Vec::new();
                while want.len() < max {
                    match self.m.take_attempt(true) {
                        Ok((entry, attempt)) => {
                            want.push(entry);
                            attempts.push(attempt);
                        }
                        Err(_) => break,
                    }
                }
                check_eq!(self, batch.len(), want.len(), "take_batch_leased's len");
                check_eq!(self, batch.is_empty(), want.is_empty(), "batch is_empty");
                check_eq!(
                    self,
                    batch.entries(),
                    &want[..],
                    "take_batch_leased's entries"
                );
                let iterated: Vec<E<Key>> = batch.iter().copied().collect();
                check_eq!(self, &iterated, &want, "LeaseBatch::iter");
                let got: Vec<u32> = batch.attempts().collect();
                check_eq!(self, got, attempts, "LeaseBatch::attempts");
                self.end_batch(batch, want, end);
            }
            Op::Close => {
                self.note("close()");
                let closed_now = q.close();
                let expected = self.m.close();
                check_eq!(self, closed_now, expected, "close()'s return");
            }
            Op::CloseAndWait => {
                self.note("close_and_wait(0)");
                let finished = q.close_and_wait(Duration::ZERO);
                self.m.close();
                check_eq!(self, finished, self.m.claimed() == 0, "close_and_wait(0)");
            }
            Op::OfferKeyAfter(raw, code) => {
                let key = self.key(raw);
                let delay = delay_of(code);
                self.note(format_args!("try_offer_key_after({key:?}, {delay:?})"));
                let result = q.try_offer_key_after(key, delay).map_err(try_offer_parts);
                let expected = self.m.offer_key_after(key, delay).map_err(try_offer_parts);
                check_eq!(
                    self,
                    result,
                    expected,
                    format!("try_offer_key_after({key:?})")
                );
            }
            Op::NackAfter(raw, code) => self.end_op(raw, BatchEnd::NackAfter(code)),
            Op::NackBackoff(raw) => self.end_op(raw, BatchEnd::NackBackoff),
            Op::AdvanceClock(raw) => {
                let by = advance_of(raw);
                self.note(format_args!("advance_clock({by:?})"));
                q.advance_clock(by);
                self.m.advance_clock(by);
            }
            Op::Len => {
                self.note("len()");
                self.m.queue_due();
                check_eq!(self, q.len(), self.m.ring.len(), "len()");
            }
            Op::IsEmpty => {
                self.note("is_empty()");
                self.m.queue_due();
                check_eq!(self, q.is_empty(), self.m.ring.is_empty(), "is_empty()");
            }
            Op::Stats => {
                self.note("stats()");
                self.m.queue_due();
                let s = q.stats();
                self.check_stats(&s);
            }
        }
    }

    fn end_op(&mut self, raw: u8, how: BatchEnd) {
        if self.held.is_empty() {
            return;
        }
        let index = usize::from(raw) % self.held.len();
        let what = match how {
            BatchEnd::Ack => "ack".to_string(),
            BatchEnd::Nack => "nack".to_string(),
            BatchEnd::NackAfter(code) => format!("nack_after({:?})", delay_of(code)),
            BatchEnd::NackBackoff => "nack_backoff".to_string(),
            _ => "drop".to_string(),
        };
        let entry = self.held[index].1;
        self.note(format_args!("{what} held lease #{index} ({entry:?})"));
        self.end_held(raw, how);
    }

    fn hold(&mut self, got: Result<Lease<'q, Key, u32, S>, TryTakeError>, what: &str) {
        let want = self.m.take_attempt(true);
        match (got, want) {
            (Ok(lease), Ok((entry, attempt))) => {
                check_eq!(self, *lease, entry, what);
                check_eq!(self, lease.entry(), &entry, what);
                check_eq!(self, lease.attempt(), attempt, format!("{what}: attempt()"));
                self.held.push((lease, entry));
            }
            (Err(got), Err(want)) => check_eq!(self, got, want, what),
            (got, want) => check!(
                self,
                false,
                "{what}: queue gave {:?}, model expected {:?}",
                got.as_deref(),
                want.map(|(entry, _)| entry)
            ),
        }
    }

    fn end_batch(
        &mut self,
        batch: LeaseBatch<'q, Key, u32, S>,
        entries: Vec<E<Key>>,
        end: BatchEnd,
    ) {
        match end {
            BatchEnd::Ack => {
                batch.ack();
                for entry in entries {
                    self.m.end_lease(entry, true);
                }
            }
            BatchEnd::Nack | BatchEnd::Drop => {
                if end == BatchEnd::Nack {
                    batch.nack();
                } else {
                    drop(batch);
                }
                for entry in entries {
                    self.m.end_lease(entry, false);
                }
            }
            BatchEnd::Split => {
                let leases = batch.into_leases();
                check_eq!(self, leases.len(), entries.len(), "into_leases' len");
                for (lease, entry) in leases.into_iter().zip(entries) {
                    check_eq!(self, *lease, entry, "into_leases' entry");
                    let attempt = self.m.attempt_of(&entry);
                    check_eq!(self, lease.attempt(), attempt, "into_leases' attempt()");
                    self.held.push((lease, entry));
                }
            }
            BatchEnd::NackAfter(code) => {
                // One due time for all, in the batch's order.
                batch.nack_after(delay_of(code));
                for entry in entries {
                    self.m.nack_after(entry, delay_of(code));
                }
            }
            BatchEnd::NackBackoff => {
                // Each by its own attempt.
                batch.nack_backoff();
                for entry in entries {
                    self.m.nack_backoff(entry);
                }
            }
        }
    }

    /// Compares everything observable with the model: `len`, `is_empty`
    /// and `stats` only if `look` and nothing is due, since they would
    /// queue it. Not after a delay op (`look` false), whatever the model
    /// says: a model that queued a due entry too early would agree with a
    /// `len` that queues it there and then, so only the next ops show
    /// where a due entry joins the ring.
    fn check_state(&self, look: bool) {
        let q = self.q;
        let m = &self.m;
        if look && !m.has_due() {
            check_eq!(self, q.len(), m.ring.len(), "len()");
            check_eq!(self, q.is_empty(), m.ring.is_empty(), "is_empty()");
            self.check_stats(&q.stats());
        }
        check_eq!(self, q.in_flight(), m.in_flight, "in_flight()");
        check_eq!(
            self,
            self.held.len(),
            m.in_flight,
            "leases held vs model in flight"
        );
        check_eq!(self, q.is_full(), m.is_full(), "is_full()");
        check_eq!(self, q.is_closed(), m.closed, "is_closed()");
        check_eq!(self, q.claimed_slots(), m.claimed(), "claimed_slots()");
        check!(
            self,
            q.claimed_slots() <= q.capacity(),
            "claimed above capacity (G3)"
        );
        check_eq!(self, q.pending_keys(), m.keys.len(), "pending_keys()");
        for key in 0..self.key_space {
            // A valued key's `is_pending` looks at the identity alone.
            check_eq!(
                self,
                q.is_pending(&Key::make(key, 0)),
                m.keys.contains_key(&key),
                format!("is_pending({key})")
            );
        }
        // Keys are queued at most once (G2), delayed copies included, and
        // pending at most once queued plus once in flight: the map holds
        // one state per key.
        let queued = || {
            m.ring
                .iter()
                .chain(m.delayed.iter().map(|delayed| &delayed.entry))
        };
        let queued_keys = queued().filter(|e| e.is_key()).count();
        let queued_distinct = queued()
            .filter_map(Entry::key)
            .collect::<std::collections::HashSet<_>>()
            .len();
        check_eq!(
            self,
            queued_keys,
            queued_distinct,
            "model: one queued copy per key"
        );
    }

    /// Compares a `stats()` snapshot with the model (which has queued what
    /// is due, as `stats` does).
    fn check_stats(&self, s: &Stats) {
        let m = &self.m;
        check_eq!(self, &Counts::of(s), &m.counts, "stats() counters");
        check_eq!(self, s.offered, m.counts.offered(), "stats().offered");
        check_eq!(self, s.queued, m.ring.len(), "stats().queued");
        check_eq!(self, s.in_flight, m.in_flight, "stats().in_flight");
        check_eq!(self, s.delayed, m.delayed.len(), "stats().delayed");
        check_eq!(self, s.next_due, m.next_due(), "stats().next_due");
        check_eq!(
            self,
            s.oldest_lease_age.is_some(),
            m.in_flight > 0,
            "stats().oldest_lease_age.is_some()"
        );
    }

    /// Acks every lease still held, drains the queue, and checks that no
    /// key stays pending and no slot stays claimed (G6).
    fn finish(&mut self) {
        self.note("-- end: ack every held lease, then drain");
        while !self.held.is_empty() {
            let (lease, entry) = self.held.remove(0);
            check_eq!(self, *lease, entry, "held lease's entry at the end");
            lease.ack();
            self.m.end_lease(entry, true);
            self.check_state(true);
        }
        // What is still delayed falls due (not by close): the drain's takes
        // queue it.
        if let Some(last) = self.m.delayed.back().map(|delayed| delayed.due) {
            let by = Duration::from_nanos(last.saturating_sub(self.m.now));
            self.note(format_args!("advance_clock({by:?}), to the last due time"));
            self.q.advance_clock(by);
            self.m.advance_clock(by);
            self.check_state(false);
        }
        loop {
            let got = self.q.try_take();
            let done = got.is_err();
            self.take_result(got, false, "try_take while draining");
            if done {
                break;
            }
        }
        self.check_state(true);
        check_eq!(self, self.q.len(), 0, "len() after draining");
        check_eq!(self, self.q.in_flight(), 0, "in_flight() after draining");
        check_eq!(
            self,
            self.q.pending_keys(),
            0,
            "pending_keys() after draining (G6)"
        );
        check_eq!(
            self,
            self.q.claimed_slots(),
            0,
            "claimed_slots() after draining (G6)"
        );
        // Closed and finished: every take reports Closed, every offer fails.
        self.note("close_and_wait(0) after draining");
        check_eq!(
            self,
            self.q.close_and_wait(Duration::ZERO),
            true,
            "close_and_wait(0)"
        );
        self.m.close();
        check_eq!(
            self,
            self.q.try_take(),
            Err(TryTakeError::Closed),
            "try_take after all"
        );
        check_eq!(
            self,
            self.q.take_batch(&mut Vec::new(), 4, Duration::ZERO),
            0,
            "take_batch after all"
        );
        let batch = self.q.take_batch_leased(4, Duration::ZERO);
        check!(
            self,
            batch.is_empty(),
            "take_batch_leased after all is not empty"
        );
        drop(batch);
        let key = self.key(0);
        let result = self.q.try_offer_key(key).map_err(try_offer_parts);
        self.offer_key_result(key, result, "try_offer_key after all");
        self.check_state(true);
    }
}

fn try_offer_parts<T>(error: TryOfferError<T>) -> (bool, T) {
    let full = error.is_full();
    assert_eq!(full, !error.is_closed());
    (full, error.into_inner())
}

fn timeout_offer_parts<T>(error: OfferTimeoutError<T>) -> (bool, T) {
    let full = error.is_timeout();
    assert_eq!(full, !error.is_closed());
    (full, error.into_inner())
}

fn timeout_take_error(error: TakeTimeoutError) -> TryTakeError {
    match error {
        TakeTimeoutError::Timeout => TryTakeError::Empty,
        TakeTimeoutError::Closed => TryTakeError::Closed,
    }
}

/// Replays `ops` on a queue of `capacity` with `policy`, keys taken modulo
/// `key_space`, against the model: on the general key store, on the
/// compact one, then on the valued stores (general and compact, merged as
/// `merges` says). Panics on the first difference, with the store and the
/// trace of the operations applied so far.
pub fn run(
    capacity: usize,
    policy: InFlightPolicy,
    key_space: u8,
    merges: Merges,
    retries: Retries,
    ops: &[Op],
) {
    let retries = retries == Retries::Manual;
    // The model of a queue built by `builder`.
    let model = |m: Model<_>| {
        if retries {
            m.with_retries(BASE, MAX)
        } else {
            m
        }
    };
    let plain = || model(Model::<u8>::new(capacity, policy));
    let q = builder::<u8, DefaultHashBuilder>(capacity, policy, retries).build();
    run_on("general", &q, plain(), key_space, ops);
    let q = builder::<u8, Compact>(capacity, policy, retries).build();
    run_on("compact", &q, plain(), key_space, ops);

    let general = builder::<(u8, u32), Valued>(capacity, policy, retries);
    let compact = builder::<(u8, u32), Valued<Compact>>(capacity, policy, retries);
    let add = wrapping_add as fn(&mut u32, u32);
    let valued = |m: Model<(u8, u32)>| {
        if retries {
            m.with_retries(BASE, MAX)
        } else {
            m
        }
    };
    let latest = || valued(Model::with_carry(capacity, policy, WithValue::latest()));
    let adding = || valued(Model::with_carry(capacity, policy, WithValue(add)));
    match merges {
        Merges::LatestOnGeneral => {
            let store = "valued general, Latest";
            run_on(store, &general.build(), latest(), key_space, ops);
            let store = "valued compact, wrapping add";
            run_on(store, &compact.merge(add).build(), adding(), key_space, ops);
        }
        Merges::AddOnGeneral => {
            let store = "valued general, wrapping add";
            run_on(store, &general.merge(add).build(), adding(), key_space, ops);
            let store = "valued compact, Latest";
            run_on(store, &compact.build(), latest(), key_space, ops);
        }
    }
}

/// The builder of a run's queues: with `retries`, the backoff `BASE`..`MAX`
/// on the manual clock.
fn builder<Key, S: KeyStore<Key> + Default>(
    capacity: usize,
    policy: InFlightPolicy,
    retries: bool,
) -> Builder<Key, u32, S> {
    let builder = Builder::new().capacity(capacity).in_flight_policy(policy);
    if retries {
        builder
            .retries(Backoff::exponential(BASE, MAX))
            .manual_clock()
    } else {
        builder
    }
}

/// One replay of `run`, on `q` (on the store named `store` in the trace)
/// against `m`, a new model of it.
fn run_on<Key: RunKey, S: KeyStore<Key>>(
    store: &str,
    q: &CoalescingQueue<Key, u32, S>,
    m: Model<Key>,
    key_space: u8,
    ops: &[Op],
) {
    let (capacity, policy) = (m.capacity, m.policy);
    let retries = m.retries.is_some();
    let with = if retries {
        "retries on the manual clock"
    } else {
        "no retries"
    };
    let mut h = Harness {
        q,
        m,
        key_space: key_space.max(1),
        held: Vec::new(),
        next_item: 0,
        key_offers: 0,
        retries,
        trace: format!(
            "queue: {store} store, capacity {capacity}, {policy:?}, {with}; ops applied:\n"
        ),
    };
    check_eq!(h, q.in_flight_policy(), policy, "in_flight_policy()");
    check_eq!(h, q.capacity(), capacity, "capacity()");
    for &op in ops {
        h.apply(op);
        h.check_state(!op.delays());
    }
    h.finish();
}
