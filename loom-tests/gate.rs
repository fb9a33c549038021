//! Loom models of the resend gate's races.
//!
//! Run with `scripts/loom gate`. On mutant `gate_no_cas`
//! (`mutants/gate_no_cas.patch`: the permit granted by a load-then-store
//! instead of a CAS) the one-permit models must FAIL.

use coalescing_queue::ResendGate;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use std::time::{Duration, Instant};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Runs `body` under `loom::model`, then prints the model's name and how
/// many interleavings loom explored (also when a failing one panics).
fn model(name: &'static str, body: impl Fn() + Sync + Send + 'static) {
    /// Prints the count when dropped, on success or while unwinding.
    struct Report {
        name: &'static str,
        iterations: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }
    impl Drop for Report {
        fn drop(&mut self) {
            let count = self.iterations.load(std::sync::atomic::Ordering::Relaxed);
            let outcome = if std::thread::panicking() {
                "FAILED at iteration"
            } else {
                "iterations:"
            };
            println!("{}: {outcome} {count}", self.name);
        }
    }
    let report = Report {
        name,
        iterations: std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0)),
    };
    let counter = std::sync::Arc::clone(&report.iterations);
    loom::model(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        body();
    });
}

/// Two callers race `try_resend` at the same instant and send what they
/// get: exactly one permit; afterwards the gate is armed at that instant
/// and no permit is out.
#[test]
fn two_callers_one_permit_sent() {
    model("two_callers_one_permit_sent", || {
        let gate = Arc::new(ResendGate::new(ms(10), ms(0), ms(10)));
        let base = Instant::now();
        let callers: Vec<_> = (0..2)
            .map(|_| {
                let gate = Arc::clone(&gate);
                thread::spawn(move || match gate.try_resend(base) {
                    Some(permit) => {
                        permit.sent();
                        true
                    }
                    None => false,
                })
            })
            .collect();
        let permits = callers
            .into_iter()
            .map(|caller| caller.join().unwrap())
            .filter(|&got| got)
            .count();
        assert_eq!(permits, 1, "callers at one instant got {permits} permits");
        assert!(format!("{gate:?}").contains("permit_out: false"));
        assert!(gate.try_resend(base).is_none(), "armed at base");
        assert!(gate.try_resend(base + ms(9)).is_none(), "armed at base");
        gate.try_resend(base + ms(10))
            .expect("due min_interval after the sent resend")
            .sent();
    });
}

/// Two callers race `try_resend` at the same instant and drop what they
/// get: never two permits out at once, and the dropped permits leave the
/// (fresh) gate as it was, so the next resend is still immediate.
#[test]
fn two_callers_hold_and_drop() {
    model("two_callers_hold_and_drop", || {
        let gate = Arc::new(ResendGate::new(ms(10), ms(0), ms(10)));
        let holders = Arc::new(AtomicUsize::new(0));
        let granted = Arc::new(AtomicUsize::new(0));
        let base = Instant::now();
        let callers: Vec<_> = (0..2)
            .map(|_| {
                let gate = Arc::clone(&gate);
                let holders = Arc::clone(&holders);
                let granted = Arc::clone(&granted);
                thread::spawn(move || {
                    if let Some(permit) = gate.try_resend(base) {
                        // Relaxed: read-modify-writes of one counter see
                        // each other in order; nothing else is published.
                        granted.fetch_add(1, Ordering::Relaxed);
                        let others = holders.fetch_add(1, Ordering::Relaxed);
                        assert_eq!(others, 0, "two permits out at once");
                        holders.fetch_sub(1, Ordering::Relaxed);
                        drop(permit);
                    }
                })
            })
            .collect();
        for caller in callers {
            caller.join().unwrap();
        }
        assert!(
            granted.load(Ordering::Relaxed) >= 1,
            "no caller got a permit"
        );
        assert!(format!("{gate:?}").contains("permit_out: false"));
        assert!(format!("{gate:?}").contains("last_sent: None"));
        gate.try_resend(base)
            .expect("dropped permits leave the gate unarmed")
            .sent();
        assert!(gate.try_resend(base).is_none());
    });
}

/// An answer (passed with a later clock reading) races a `try_resend` +
/// `sent`: whichever order, the answer is not lost and the gate ends
/// consistent. min_interval 10 ms, quiet 5 ms, armed at 0; answer at 20 ms,
/// try at 12 ms.
#[test]
fn note_vs_try_and_sent() {
    model("note_vs_try_and_sent", || {
        let gate = Arc::new(ResendGate::new(ms(10), ms(5), ms(100)));
        let base = Instant::now();
        gate.try_resend(base).unwrap().sent();
        let noter = {
            let gate = Arc::clone(&gate);
            thread::spawn(move || gate.note_status(base + ms(20)))
        };
        let sender = {
            let gate = Arc::clone(&gate);
            thread::spawn(move || match gate.try_resend(base + ms(12)) {
                Some(permit) => {
                    permit.sent();
                    true
                }
                None => false,
            })
        };
        noter.join().unwrap();
        let sent = sender.join().unwrap();
        assert!(format!("{gate:?}").contains("permit_out: false"));
        // Armed at 0 or 12, the answer at 20 holds the next resend back
        // until 25 either way.
        assert!(
            gate.try_resend(base + ms(22)).is_none(),
            "answer lost (sent: {sent})"
        );
        assert!(gate.try_resend(base + ms(24)).is_none());
        gate.try_resend(base + ms(25))
            .expect("quiet window passed")
            .sent();
    });
}

/// Two answers race: the later one is kept, whichever lands last.
#[test]
fn two_notes_keep_the_latest() {
    model("two_notes_keep_the_latest", || {
        let gate = Arc::new(ResendGate::new(ms(10), ms(5), ms(100)));
        let base = Instant::now();
        gate.try_resend(base).unwrap().sent();
        let noters: Vec<_> = [20, 30]
            .into_iter()
            .map(|t| {
                let gate = Arc::clone(&gate);
                thread::spawn(move || gate.note_status(base + ms(t)))
            })
            .collect();
        for noter in noters {
            noter.join().unwrap();
        }
        assert!(
            gate.try_resend(base + ms(34)).is_none(),
            "the answer at 30 ms was lost"
        );
        assert!(gate.try_resend(base + ms(35)).is_some());
    });
}

/// `reset` races a `try_resend` + `sent`: no permit is left out, and the
/// caller always gets its permit (the gate is due, reset or not).
#[test]
fn reset_vs_try_and_sent() {
    model("reset_vs_try_and_sent", || {
        let gate = Arc::new(ResendGate::new(ms(10), ms(0), ms(10)));
        let base = Instant::now();
        gate.try_resend(base).unwrap().sent();
        let resetter = {
            let gate = Arc::clone(&gate);
            thread::spawn(move || gate.reset())
        };
        let sender = {
            let gate = Arc::clone(&gate);
            thread::spawn(move || match gate.try_resend(base + ms(10)) {
                Some(permit) => {
                    permit.sent();
                    true
                }
                None => false,
            })
        };
        resetter.join().unwrap();
        assert!(sender.join().unwrap(), "a due resend was refused");
        assert!(format!("{gate:?}").contains("permit_out: false"));
        // Armed at 10 ms at the latest (or reset): due again at 20 ms.
        assert!(gate.try_resend(base + ms(20)).is_some());
    });
}
