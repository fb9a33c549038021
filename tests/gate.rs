//! Integration tests of `ResendGate`: one test per rule with explicit
//! instants, a proptest against a plain model, and a multi-thread test of
//! the one-permit rule.

use coalescing_queue::{ResendGate, ResendPermit};
use proptest::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A gate of min_interval 100 ms, quiet 30 ms, max_wait 500 ms, and a base
/// instant taken *before* it (as callers often do).
fn gate() -> (ResendGate, Instant) {
    let base = Instant::now();
    (ResendGate::new(ms(100), ms(30), ms(500)), base)
}

#[test]
fn send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ResendGate>();
    assert_send_sync::<ResendPermit<'static>>();
}

#[test]
fn first_resend_is_immediate() {
    let (gate, base) = gate();
    assert!(gate.try_resend(base).is_some());
}

#[test]
fn answers_before_the_first_resend_do_not_delay_it() {
    let (gate, base) = gate();
    for t in 0..10 {
        gate.note_status(base + ms(t));
    }
    gate.try_resend(base + ms(10))
        .expect("first resend is immediate")
        .sent();
}

#[test]
fn min_interval_since_the_last_sent_resend() {
    let (gate, base) = gate();
    gate.try_resend(base).unwrap().sent();
    assert!(gate.try_resend(base).is_none());
    assert!(gate.try_resend(base + ms(99)).is_none());
    assert!(gate.try_resend(base + ms(100)).is_some());
}

#[test]
fn quiet_window_holds_back_after_min_interval() {
    let (gate, base) = gate();
    gate.try_resend(base).unwrap().sent();
    gate.note_status(base + ms(90));
    // min_interval passed at 100, but the last answer was at 90: quiet until 120.
    assert!(gate.try_resend(base + ms(100)).is_none());
    assert!(gate.try_resend(base + ms(119)).is_none());
    assert!(gate.try_resend(base + ms(120)).is_some());
}

#[test]
fn quiet_window_is_independent_of_min_interval() {
    // quiet longer than min_interval (H12: they must not be the same knob).
    let base = Instant::now();
    let gate = ResendGate::new(ms(10), ms(50), ms(1_000));
    gate.try_resend(base).unwrap().sent();
    gate.note_status(base + ms(5));
    assert!(gate.try_resend(base + ms(10)).is_none());
    assert!(gate.try_resend(base + ms(54)).is_none());
    assert!(gate.try_resend(base + ms(55)).is_some());
}

#[test]
fn answers_only_before_the_last_resend_still_count_for_quiet() {
    let (gate, base) = gate();
    gate.note_status(base + ms(0));
    gate.try_resend(base + ms(1)).unwrap().sent();
    // Last answer at 0: 101 ms of quiet at 101, min_interval passed at 101.
    assert!(gate.try_resend(base + ms(100)).is_none());
    assert!(gate.try_resend(base + ms(101)).is_some());
}

#[test]
fn starvation_cap_answers_every_ms_forever() {
    let (gate, base) = gate();
    gate.try_resend(base).unwrap().sent();
    let mut released = Vec::new();
    // Answers every 1 ms for 2 s: the quiet window never opens.
    for t in 1..=2_000 {
        gate.note_status(base + ms(t));
        if let Some(permit) = gate.try_resend(base + ms(t)) {
            permit.sent();
            released.push(t);
        }
    }
    assert_eq!(released, vec![500, 1_000, 1_500, 2_000]);
}

#[test]
fn max_wait_shorter_than_min_interval_acts_as_min_interval() {
    let base = Instant::now();
    let gate = ResendGate::new(ms(100), ms(30), ms(10));
    gate.try_resend(base).unwrap().sent();
    for t in 1..=99 {
        gate.note_status(base + ms(t));
        assert!(gate.try_resend(base + ms(t)).is_none(), "at {t} ms");
    }
    gate.note_status(base + ms(100));
    assert!(gate.try_resend(base + ms(100)).is_some());
}

#[test]
fn one_permit_at_a_time() {
    let (gate, base) = gate();
    let permit = gate.try_resend(base).unwrap();
    assert!(gate.try_resend(base).is_none());
    assert!(gate.try_resend(base + ms(10_000)).is_none());
    permit.sent();
    assert!(gate.try_resend(base + ms(10_000)).is_some());
}

#[test]
fn dropped_permit_leaves_the_gate_untouched() {
    let (gate, base) = gate();
    // Unarmed gate: a dropped permit does not arm it.
    drop(gate.try_resend(base + ms(50)).unwrap());
    gate.try_resend(base + ms(50))
        .expect("still immediate")
        .sent();
    // Armed at 50: a dropped permit at 150 does not re-arm it at 150.
    drop(gate.try_resend(base + ms(150)).unwrap());
    assert!(gate.try_resend(base + ms(149)).is_none());
    assert!(gate.try_resend(base + ms(150)).is_some());
    // And max_wait still runs from 50, not from the dropped permit.
    gate.note_status(base + ms(549));
    assert!(gate.try_resend(base + ms(549)).is_none());
    assert!(gate.try_resend(base + ms(550)).is_some());
}

#[test]
fn sent_arms_at_the_grant_instant() {
    let (gate, base) = gate();
    gate.try_resend(base + ms(5)).unwrap().sent();
    assert!(gate.try_resend(base + ms(104)).is_none());
    assert!(gate.try_resend(base + ms(105)).is_some());
}

#[test]
fn reset_makes_the_next_resend_immediate() {
    let (gate, base) = gate();
    gate.try_resend(base).unwrap().sent();
    gate.note_status(base + ms(1));
    assert!(gate.try_resend(base + ms(1)).is_none());
    gate.reset();
    gate.try_resend(base + ms(1))
        .expect("immediate after reset")
        .sent();
    // Armed again at 1 ms; the answer before the reset is forgotten.
    assert!(gate.try_resend(base + ms(100)).is_none());
    assert!(gate.try_resend(base + ms(101)).is_some());
}

#[test]
fn reset_while_a_permit_is_out() {
    let (gate, base) = gate();
    gate.try_resend(base).unwrap().sent();
    let permit = gate.try_resend(base + ms(200)).unwrap();
    gate.reset();
    // The permit is still the only one.
    assert!(gate.try_resend(base + ms(200)).is_none());
    // The reset wins over the permit's `sent`: the next resend is immediate.
    permit.sent();
    assert!(gate.try_resend(base + ms(200)).is_some());

    // Dropped instead of sent: also reset.
    let (gate, base) = self::gate();
    gate.try_resend(base).unwrap().sent();
    let permit = gate.try_resend(base + ms(200)).unwrap();
    gate.reset();
    drop(permit);
    assert!(gate.try_resend(base + ms(200)).is_some());
}

#[test]
fn now_going_backwards_does_not_panic() {
    let (gate, base) = gate();
    gate.try_resend(base + ms(1_000)).unwrap().sent();
    // Earlier than the last resend: no time has elapsed.
    assert!(gate.try_resend(base + ms(10)).is_none());
    assert!(gate.try_resend(base).is_none());
    // Answers out of order: the latest one is kept.
    gate.note_status(base + ms(1_090));
    gate.note_status(base + ms(20));
    assert!(gate.try_resend(base + ms(1_119)).is_none());
    assert!(gate.try_resend(base + ms(1_120)).is_some());
    // A permit granted at an earlier instant does not move the arming back.
    let zero = ResendGate::new(Duration::ZERO, Duration::ZERO, Duration::ZERO);
    zero.try_resend(base + ms(1_000)).unwrap().sent();
    zero.try_resend(base + ms(10)).unwrap().sent();
    let later = ResendGate::new(ms(100), Duration::ZERO, ms(100));
    later.try_resend(base + ms(1_000)).unwrap().sent();
    assert!(later.try_resend(base + ms(1_099)).is_none());
    // Instants long before the gate's creation saturate; no panic.
    if let Some(long_ago) = base.checked_sub(Duration::from_secs(400 * 86_400)) {
        let gate = ResendGate::new(ms(100), ms(30), ms(500));
        gate.note_status(long_ago);
        gate.try_resend(long_ago).unwrap().sent();
        assert!(gate.try_resend(long_ago).is_none());
        assert!(gate.try_resend(base + ms(1)).is_some());
    }
    // Far-future instants and huge durations saturate; no panic.
    let huge = ResendGate::new(Duration::MAX, Duration::MAX, Duration::MAX);
    huge.try_resend(base).unwrap().sent();
    assert!(huge
        .try_resend(base + Duration::from_secs(1 << 40))
        .is_none());
}

#[test]
fn zero_durations_resend_every_time() {
    let base = Instant::now();
    let gate = ResendGate::new(Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for t in 0..10 {
        gate.note_status(base + ms(t));
        gate.try_resend(base + ms(t)).unwrap().sent();
    }
}

#[test]
fn debug_output() {
    let (gate, base) = gate();
    let text = format!("{gate:?}");
    assert!(text.contains("ResendGate"), "{text}");
    assert!(text.contains("permit_out: false"), "{text}");
    assert!(text.contains("last_sent: None"), "{text}");
    let permit = gate.try_resend(base).unwrap();
    assert!(format!("{permit:?}").contains("ResendPermit"));
    assert!(format!("{gate:?}").contains("permit_out: true"));
    permit.sent();
    let text = format!("{gate:?}");
    assert!(text.contains("permit_out: false"), "{text}");
    assert!(text.contains("last_sent: Some"), "{text}");
}

/// N threads released together call `try_resend` at the same instant:
/// exactly one gets a permit.
#[test]
fn concurrent_callers_get_exactly_one_permit() {
    const THREADS: usize = 4;
    let rounds: u64 = if cfg!(miri) { 5 } else { 300 };
    let gate = Arc::new(ResendGate::new(ms(10), ms(0), ms(10)));
    let barrier = Arc::new(Barrier::new(THREADS));
    let base = Instant::now();
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let gate = Arc::clone(&gate);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let mut wins = Vec::new();
                for round in 0..rounds {
                    let now = base + ms(10 * round);
                    barrier.wait();
                    let permit = gate.try_resend(now);
                    // Hold the permit until every thread has tried, so a
                    // second permit could only come from a broken CAS.
                    barrier.wait();
                    if let Some(permit) = permit {
                        // Alternate: sent arms the gate for this round;
                        // dropped leaves it due.
                        if round % 2 == 0 {
                            permit.sent();
                        } else {
                            drop(permit);
                        }
                        wins.push(round);
                    }
                    barrier.wait();
                }
                wins
            })
        })
        .collect();
    let mut per_round = vec![0; rounds as usize];
    for handle in handles {
        for round in handle.join().unwrap() {
            per_round[round as usize] += 1;
        }
    }
    for (round, count) in per_round.iter().enumerate() {
        assert_eq!(*count, 1, "round {round}: {count} permits");
    }
}

/// Threads hammer `try_resend` on a gate that is always due, each holding
/// what it gets for a moment and then dropping it: no two permits are ever
/// out at once. Each drop reopens the race, so a permit granted without a
/// CAS is caught here on real threads, not only under loom.
#[test]
fn concurrent_permits_never_overlap() {
    const THREADS: usize = 4;
    let attempts: usize = if cfg!(miri) { 50 } else { 1_000_000 };
    // Armed, and with an answer noted, so `try_resend` reads both words:
    // zero durations keep it due whatever the permits do.
    let gate = Arc::new(ResendGate::new(ms(0), ms(0), ms(1_000)));
    let now = Instant::now();
    gate.try_resend(now).unwrap().sent();
    gate.note_status(now);
    let holders = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let gate = Arc::clone(&gate);
            let holders = Arc::clone(&holders);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                let mut granted = 0;
                for _ in 0..attempts {
                    if let Some(permit) = gate.try_resend(now) {
                        // AcqRel: the count is the thing checked; the
                        // permit's own orderings are under test, not these.
                        let others = holders.fetch_add(1, Ordering::AcqRel);
                        assert_eq!(others, 0, "two permits out at once");
                        std::hint::spin_loop();
                        holders.fetch_sub(1, Ordering::AcqRel);
                        drop(permit);
                        granted += 1;
                    }
                }
                granted
            })
        })
        .collect();
    let granted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(granted > 0);
    assert!(gate.try_resend(now).is_some());
}

// ---- property test against a plain model ----------------------------------

/// The rules, written the obvious way on `Instant`s.
#[derive(Clone, Debug)]
struct Model {
    min_interval: Duration,
    quiet: Duration,
    max_wait: Duration,
    last_sent: Option<Instant>,
    last_status: Option<Instant>,
    permit: Option<Instant>,
    reset_while_out: bool,
}

impl Model {
    fn new(min_interval: Duration, quiet: Duration, max_wait: Duration) -> Self {
        Model {
            min_interval,
            quiet,
            max_wait,
            last_sent: None,
            last_status: None,
            permit: None,
            reset_while_out: false,
        }
    }

    fn note(&mut self, now: Instant) {
        self.last_status = self.last_status.max(Some(now));
    }

    fn try_resend(&mut self, now: Instant) -> bool {
        if self.permit.is_some() {
            return false;
        }
        let due = match self.last_sent {
            None => true,
            Some(sent) => {
                let since = now.saturating_duration_since(sent);
                since >= self.min_interval
                    && (since >= self.max_wait
                        || self
                            .last_status
                            .map_or(true, |s| now.saturating_duration_since(s) >= self.quiet))
            }
        };
        if due {
            self.permit = Some(now);
        }
        due
    }

    fn sent(&mut self) {
        let at = self.permit.take().unwrap();
        if std::mem::take(&mut self.reset_while_out) {
            self.last_sent = None;
        } else {
            self.last_sent = self.last_sent.max(Some(at));
        }
    }

    fn drop_permit(&mut self) {
        self.permit.take().unwrap();
        self.reset_while_out = false;
    }

    fn reset(&mut self) {
        self.last_sent = None;
        self.last_status = None;
        self.reset_while_out = self.permit.is_some();
    }
}

#[derive(Clone, Debug)]
enum Op {
    Note,
    Try,
    Sent,
    Drop,
    Reset,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Note),
        4 => Just(Op::Try),
        2 => Just(Op::Sent),
        1 => Just(Op::Drop),
        1 => Just(Op::Reset),
    ]
}

/// Replays `ops` (each with its instant in milliseconds after the base) on a
/// gate and on the model, comparing every result.
fn replay(durations: (u64, u64, u64), ops: &[(Op, u64)]) -> Result<(), TestCaseError> {
    let (min_interval, quiet, max_wait) = (ms(durations.0), ms(durations.1), ms(durations.2));
    let base = Instant::now();
    let gate = ResendGate::new(min_interval, quiet, max_wait);
    // The model applies the documented rule itself: max_wait below
    // min_interval acts as min_interval.
    let mut model = Model::new(min_interval, quiet, max_wait.max(min_interval));
    let mut permit: Option<ResendPermit<'_>> = None;
    for (i, (op, t)) in ops.iter().enumerate() {
        let now = base + ms(*t);
        match op {
            Op::Note => {
                gate.note_status(now);
                model.note(now);
            }
            Op::Try => {
                let got = gate.try_resend(now);
                let expected = model.try_resend(now);
                prop_assert_eq!(got.is_some(), expected, "op {} {:?} at {}", i, op, t);
                if let Some(p) = got {
                    // A permit is already held only if the model refused.
                    prop_assert!(permit.is_none());
                    permit = Some(p);
                }
            }
            Op::Sent => {
                if let Some(p) = permit.take() {
                    p.sent();
                    model.sent();
                }
            }
            Op::Drop => {
                if let Some(p) = permit.take() {
                    drop(p);
                    model.drop_permit();
                }
            }
            Op::Reset => {
                gate.reset();
                model.reset();
            }
        }
        // After each op, the next instant's verdict agrees too (read-only
        // check: the probe permit is dropped at once, which must not matter).
        if permit.is_none() {
            let probe = gate.try_resend(now).is_some();
            let mut copy = model.clone();
            prop_assert_eq!(probe, copy.try_resend(now), "probe after op {} at {}", i, t);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        if cfg!(miri) { 8 } else { 512 }
    ))]

    /// Non-decreasing times, as one thread with one clock sees them.
    #[test]
    fn matches_model_in_order(
        durations in (0u64..20, 0u64..20, 0u64..40),
        ops in prop::collection::vec((op(), 0u64..8), 1..120),
    ) {
        let mut t = 0;
        let ops: Vec<(Op, u64)> = ops
            .into_iter()
            .map(|(op, dt)| {
                t += dt;
                (op, t)
            })
            .collect();
        replay(durations, &ops)?;
    }

    /// Times in any order, as racing threads may pass them: the same rules,
    /// with "no time elapsed" for a `now` before a recorded time.
    #[test]
    fn matches_model_out_of_order(
        durations in (0u64..20, 0u64..20, 0u64..40),
        ops in prop::collection::vec((op(), 0u64..200), 1..120),
    ) {
        replay(durations, &ops)?;
    }
}
