//! [`ResendGate`]: when to resend a fan-out request.
//!
//! A coordinator resends a request to many workers until every one has
//! answered. Resending while answers are still streaming in only multiplies
//! the answers; deferring while *any* answer arrives can defer for ever. The
//! gate decides, from times passed in as [`Instant`]s, when the next resend
//! may go out. The rules are on [`ResendGate`]; this page says how.
//!
//! The gate is lock-free and allocation-free: two `AtomicU64`s (from
//! `crate::sync`, so loom can see them), shared by `&self`. `state` holds the
//! last sent resend's stamp and two flags; taking a permit is one CAS that
//! sets `PERMIT_OUT`, ending it one read-modify-write that clears it.
//! `last_status` holds the latest answer's stamp and only grows.
//!
//! # Invariants
//!
//! * **I1** At most one permit is out: only a CAS that sees `PERMIT_OUT`
//!   clear sets it, and only the permit (sent or dropped) clears it.
//! * **I2** `RESET_WHILE_OUT` is set only while `PERMIT_OUT` is set, and is
//!   cleared together with it.
//! * **I3** While a permit is out, only its own end and [`ResendGate::reset`]
//!   write `state`; a failed `try_resend` writes nothing.
//! * **I4** `last_status` only grows, except that `reset` sets it to "none".
//!
//! # Time encoding
//!
//! Instants are stored as nanoseconds since an origin taken in `new`, plus
//! one, so that 0 means "none". The origin is set one day (or, where the
//! platform cannot represent that, less) before the gate's creation, so that
//! instants a caller took just before creating the gate keep their exact
//! distances; instants before the origin saturate to it. Stamps are capped
//! at 2^62 - 1 (about 146 years). All arithmetic saturates: a `now` earlier
//! than a recorded time (clocks passed out of order by racing threads)
//! counts as zero elapsed, never panics.

use crate::sync::{AtomicU64, Ordering};
use core::fmt;
use std::time::{Duration, Instant};

/// `state` bit: a permit is out (I1).
const PERMIT_OUT: u64 = 1;
/// `state` bit: `reset` ran while the permit was out (I2); the permit's end
/// then leaves the gate reset.
const RESET_WHILE_OUT: u64 = 2;
/// `state` bits above the two flags hold the last sent resend's stamp.
const SENT_SHIFT: u32 = 2;
/// The largest stamp; fits in `state` above the flags.
const MAX_STAMP: u64 = u64::MAX >> SENT_SHIFT;
/// Stamp meaning "no time recorded".
const NONE: u64 = 0;
/// How far before the gate's creation its origin is placed, tried in order.
const ORIGIN_SLACK: [Duration; 3] = [
    Duration::from_secs(86_400),
    Duration::from_secs(3_600),
    Duration::from_secs(1),
];

/// Decides when a fan-out request may be resent: a minimum interval between
/// resends, a quiet window after the last answer, and a maximum wait that
/// caps how long answers can defer a resend.
///
/// Share it with `Arc`; every method takes `&self`, never blocks, never
/// allocates. Time is passed in, so the gate can be driven (and tested)
/// without sleeping.
///
/// # Rules
///
/// * The first resend after [`new`](Self::new) or [`reset`](Self::reset) is
///   immediate, whatever answers came before it.
/// * After a sent resend, the next one needs `min_interval` since it **and**
///   `quiet` since the last answer noted with
///   [`note_status`](Self::note_status).
/// * Once `max_wait` has passed since the last sent resend, the next one
///   goes out whatever the answers do: a never-ending stream of answers
///   cannot defer it for ever. `min_interval` is a hard floor: a `max_wait`
///   shorter than `min_interval` acts as `min_interval`.
/// * [`try_resend`](Self::try_resend) hands out a [`ResendPermit`]; only
///   [`ResendPermit::sent`] arms the gate, and a permit dropped unsent
///   leaves it exactly as it was. While a permit is out no other caller
///   gets one, so callers racing at the same instant get exactly one.
/// * A `now` earlier than a time already recorded (clocks read by racing
///   threads and passed in out of order) counts as no time elapsed; it
///   never panics, and the later of two recorded times is kept.
///
/// # Example
///
/// ```
/// use coalescing_queue::ResendGate;
/// use std::time::{Duration, Instant};
///
/// let ms = Duration::from_millis;
/// // At most one resend per 100 ms, only after 30 ms without an answer,
/// // but never more than 500 ms after the last one.
/// let gate = ResendGate::new(ms(100), ms(30), ms(500));
/// let t0 = Instant::now();
///
/// // The first resend is immediate, even with answers streaming in.
/// gate.note_status(t0);
/// let permit = gate.try_resend(t0).expect("first resend is immediate");
/// permit.sent(); // arms the gate at t0
///
/// // Too soon after the last resend.
/// assert!(gate.try_resend(t0 + ms(50)).is_none());
/// // min_interval has passed, but an answer came 10 ms ago: held back.
/// gate.note_status(t0 + ms(110));
/// assert!(gate.try_resend(t0 + ms(120)).is_none());
/// // 30 ms of quiet: it may go. Dropping the permit unsent changes nothing...
/// drop(gate.try_resend(t0 + ms(140)).expect("quiet window passed"));
/// // ...so the same instant still gets a permit, which is sent this time.
/// gate.try_resend(t0 + ms(140)).expect("still due").sent();
///
/// // Answers every 10 ms from then on never leave 30 ms of quiet, yet
/// // max_wait lets a resend out 500 ms after the last one.
/// for t in (150..640).step_by(10) {
///     gate.note_status(t0 + ms(t));
///     assert!(gate.try_resend(t0 + ms(t)).is_none());
/// }
/// gate.note_status(t0 + ms(640));
/// assert!(gate.try_resend(t0 + ms(640)).is_some());
/// ```
pub struct ResendGate {
    /// Stamp of the last sent resend (bits 2..) and the flags `PERMIT_OUT`
    /// and `RESET_WHILE_OUT`. Written only by CAS / read-modify-write (I1,
    /// I3).
    state: AtomicU64,
    /// Stamp of the latest answer, or `NONE`. Grows by `fetch_max` (I4).
    last_status: AtomicU64,
    /// Instants are measured from here (see "Time encoding").
    origin: Instant,
    min_interval: u64,
    quiet: u64,
    /// Effective maximum wait: `max(max_wait, min_interval)`.
    max_wait: u64,
}

/// The right to send one resend, from [`ResendGate::try_resend`].
///
/// While it exists no other caller gets a permit. [`sent`](Self::sent) arms
/// the gate at the instant the permit was granted; dropping it unsent
/// leaves the gate exactly as it was, so a failed or skipped send does not
/// delay the next one.
#[must_use = "dropping a permit unsent resends nothing and leaves the gate as it was"]
pub struct ResendPermit<'a> {
    gate: &'a ResendGate,
    /// Stamp of the `now` the permit was granted at.
    granted_at: u64,
}

impl ResendGate {
    /// Creates a gate whose first resend is immediate.
    ///
    /// * `min_interval`: the least time between two sent resends; never broken.
    /// * `quiet`: after a sent resend, the next also waits until no answer
    ///   has been noted for this long.
    /// * `max_wait`: once this long has passed since the last sent resend,
    ///   the next goes out whatever the answers do. A `max_wait` shorter than
    ///   `min_interval` acts as `min_interval` (the floor wins).
    ///
    /// Durations beyond about 146 years act as "never".
    ///
    /// # Example
    ///
    /// ```
    /// use coalescing_queue::ResendGate;
    /// use std::time::{Duration, Instant};
    ///
    /// let ms = Duration::from_millis;
    /// // max_wait (10 ms) below min_interval (50 ms): min_interval wins.
    /// let gate = ResendGate::new(ms(50), ms(20), ms(10));
    /// let t0 = Instant::now();
    /// gate.try_resend(t0).unwrap().sent();
    /// gate.note_status(t0 + ms(20));
    /// assert!(gate.try_resend(t0 + ms(20)).is_none()); // max_wait is not enough
    /// assert!(gate.try_resend(t0 + ms(50)).is_some()); // forced at min_interval
    /// ```
    pub fn new(min_interval: Duration, quiet: Duration, max_wait: Duration) -> Self {
        let now = Instant::now();
        let origin = ORIGIN_SLACK
            .iter()
            .find_map(|slack| now.checked_sub(*slack))
            .unwrap_or(now);
        let min_interval = nanos(min_interval);
        Self {
            state: AtomicU64::new(0),
            last_status: AtomicU64::new(NONE),
            origin,
            min_interval,
            quiet: nanos(quiet),
            max_wait: nanos(max_wait).max(min_interval),
        }
    }

    /// Records an answer received at `now`.
    ///
    /// Cheap enough for every answer: a load, and a write only when `now`
    /// is later than the latest answer recorded. An earlier `now` (from a
    /// racing thread) is ignored; the latest answer is kept.
    ///
    /// # Example
    ///
    /// ```
    /// use coalescing_queue::ResendGate;
    /// use std::time::{Duration, Instant};
    ///
    /// let ms = Duration::from_millis;
    /// let gate = ResendGate::new(ms(10), ms(30), ms(1_000));
    /// let t0 = Instant::now();
    /// gate.try_resend(t0).unwrap().sent();
    /// gate.note_status(t0 + ms(20));
    /// gate.note_status(t0 + ms(5)); // late report of an older answer: ignored
    /// assert!(gate.try_resend(t0 + ms(49)).is_none()); // 29 ms of quiet
    /// assert!(gate.try_resend(t0 + ms(50)).is_some()); // 30 ms of quiet
    /// ```
    pub fn note_status(&self, now: Instant) {
        let stamp = self.stamp(now);
        // Relaxed: `last_status` is a timestamp that publishes no other
        // memory; readers only compare it. The RMW `fetch_max` never loses a
        // later stamp to a racing note (I4); the plain load first skips the
        // write, and the cache-line transfer, when nothing would change.
        if self.last_status.load(Ordering::Relaxed) < stamp {
            self.last_status.fetch_max(stamp, Ordering::Relaxed);
        }
    }

    /// Returns a permit to resend at `now` if a resend is due and no other
    /// permit is out, `None` otherwise.
    ///
    /// Due means: nothing sent since creation or the last [`reset`]
    /// (immediate); or `min_interval` since the last sent resend and either
    /// `quiet` since the last answer or `max_wait` since the last sent
    /// resend. Only [`ResendPermit::sent`] arms the gate.
    ///
    /// [`reset`]: Self::reset
    ///
    /// # Example
    ///
    /// ```
    /// use coalescing_queue::ResendGate;
    /// use std::time::{Duration, Instant};
    ///
    /// let ms = Duration::from_millis;
    /// let gate = ResendGate::new(ms(100), ms(0), ms(100));
    /// let t0 = Instant::now();
    ///
    /// let permit = gate.try_resend(t0).unwrap();
    /// assert!(gate.try_resend(t0).is_none()); // one permit at a time
    /// drop(permit); // not sent: the gate is as it was
    ///
    /// let permit = gate.try_resend(t0).unwrap();
    /// permit.sent();
    /// assert!(gate.try_resend(t0 + ms(99)).is_none());
    /// assert!(gate.try_resend(t0 + ms(100)).is_some());
    /// ```
    pub fn try_resend(&self, now: Instant) -> Option<ResendPermit<'_>> {
        let now = self.stamp(now);
        // Acquire: pairs with the Release of `reset`, so that once a reset's
        // `state` is seen, so is its clearing of `last_status` (and not an
        // answer from before the reset). Also pairs with a permit's end: see
        // the CAS below.
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            if state & PERMIT_OUT != 0 || !self.due(state >> SENT_SHIFT, now) {
                return None;
            }
            // Keeps I1: the permit is granted only if `state` is still the
            // one the decision was made on. Acquire (success): pairs with the
            // Release of the previous permit's `sent` / drop, so whatever its
            // holder did before ending it happens before this holder starts,
            // as with a lock. Acquire (failure): as the load above.
            match self.state.compare_exchange(
                state,
                state | PERMIT_OUT,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Some(ResendPermit {
                        gate: self,
                        granted_at: now,
                    })
                }
                // Another caller took a permit, ended one or reset the gate:
                // decide again on the new state.
                Err(actual) => state = actual,
            }
        }
    }

    /// Makes the next resend immediate, and forgets the answers noted so
    /// far: the gate is as new.
    ///
    /// A permit that is out stays the only one; when it ends, sent or not,
    /// the gate is still reset (the reset wins over the permit's `sent`).
    /// An answer noted concurrently with `reset` lands on either side of it.
    ///
    /// # Example
    ///
    /// ```
    /// use coalescing_queue::ResendGate;
    /// use std::time::{Duration, Instant};
    ///
    /// let ms = Duration::from_millis;
    /// let gate = ResendGate::new(ms(100), ms(30), ms(500));
    /// let t0 = Instant::now();
    /// gate.try_resend(t0).unwrap().sent();
    /// assert!(gate.try_resend(t0 + ms(1)).is_none());
    ///
    /// gate.reset(); // e.g. a new request: resend it at once
    /// gate.note_status(t0 + ms(1));
    /// assert!(gate.try_resend(t0 + ms(1)).is_some());
    /// ```
    pub fn reset(&self) {
        // Relaxed: published by the Release on `state` below.
        self.last_status.store(NONE, Ordering::Relaxed);
        // Release: pairs with the Acquire loads of `state` in `try_resend`
        // (see there). Keeps I2: the flag is set only with `PERMIT_OUT`.
        let _ = self
            .state
            .fetch_update(Ordering::Release, Ordering::Relaxed, |state| {
                Some(if state & PERMIT_OUT != 0 {
                    PERMIT_OUT | RESET_WHILE_OUT
                } else {
                    0
                })
            });
    }

    /// Whether a resend is due at `now`, given the last sent stamp.
    fn due(&self, last_sent: u64, now: u64) -> bool {
        if last_sent == NONE {
            return true;
        }
        let since_sent = now.saturating_sub(last_sent);
        if since_sent < self.min_interval {
            return false;
        }
        if since_sent >= self.max_wait {
            return true;
        }
        // Relaxed: see `note_status`. A racing note lands on either side of
        // this call.
        let last_status = self.last_status.load(Ordering::Relaxed);
        last_status == NONE || now.saturating_sub(last_status) >= self.quiet
    }

    /// `now` as a stamp: nanoseconds since the origin, plus one, saturating.
    fn stamp(&self, now: Instant) -> u64 {
        nanos(now.saturating_duration_since(self.origin)).min(MAX_STAMP - 1) + 1
    }

    /// A stamp back as an `Instant`, for `Debug`.
    fn instant(&self, stamp: u64) -> Option<Instant> {
        if stamp == NONE {
            return None;
        }
        self.origin.checked_add(Duration::from_nanos(stamp - 1))
    }
}

impl ResendPermit<'_> {
    /// Records that the resend was sent: the gate is armed at the `now` the
    /// permit was granted at, and other callers may get permits again.
    ///
    /// If the gate was [`reset`](ResendGate::reset) while this permit was
    /// out, the reset wins: the next resend is immediate. If the gate was
    /// already armed at a later instant (clocks passed out of order), the
    /// later instant is kept.
    ///
    /// # Example
    ///
    /// ```
    /// use coalescing_queue::ResendGate;
    /// use std::time::{Duration, Instant};
    ///
    /// let ms = Duration::from_millis;
    /// let gate = ResendGate::new(ms(100), ms(0), ms(100));
    /// let t0 = Instant::now();
    /// let permit = gate.try_resend(t0 + ms(5)).unwrap();
    /// // ... send the request; it took until t0 + 20 ms ...
    /// permit.sent(); // armed at t0 + 5 ms, when the permit was granted
    /// assert!(gate.try_resend(t0 + ms(104)).is_none());
    /// assert!(gate.try_resend(t0 + ms(105)).is_some());
    /// ```
    pub fn sent(self) {
        let gate = self.gate;
        let granted_at = self.granted_at;
        // The permit ends here; its `Drop` must not run as well.
        core::mem::forget(self);
        // Release: pairs with the Acquire CAS of the next `try_resend`, as
        // the unlock of a lock (see there). Relaxed on failure: nothing is
        // read through the failed load; the closure just runs again. Keeps
        // I1 and I2: both flags are cleared.
        let _ = gate
            .state
            .fetch_update(Ordering::Release, Ordering::Relaxed, |state| {
                Some(if state & RESET_WHILE_OUT != 0 {
                    0
                } else {
                    (state >> SENT_SHIFT).max(granted_at) << SENT_SHIFT
                })
            });
    }
}

impl Drop for ResendPermit<'_> {
    /// Ends the permit unsent: the gate is left exactly as it was (or as a
    /// `reset` made it meanwhile).
    fn drop(&mut self) {
        // Release: as in `sent`. Keeps I1 and I2; the last sent stamp is
        // untouched (I3: nothing else wrote it, except a reset).
        self.gate
            .state
            .fetch_and(!(PERMIT_OUT | RESET_WHILE_OUT), Ordering::Release);
    }
}

impl fmt::Debug for ResendGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Relaxed: a snapshot for printing, ordered with nothing.
        let state = self.state.load(Ordering::Relaxed);
        let last_status = self.last_status.load(Ordering::Relaxed);
        f.debug_struct("ResendGate")
            .field("min_interval", &Duration::from_nanos(self.min_interval))
            .field("quiet", &Duration::from_nanos(self.quiet))
            .field("max_wait", &Duration::from_nanos(self.max_wait))
            .field("permit_out", &(state & PERMIT_OUT != 0))
            .field("last_sent", &self.instant(state >> SENT_SHIFT))
            .field("last_status", &self.instant(last_status))
            .finish()
    }
}

impl fmt::Debug for ResendPermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResendPermit")
            .field("granted_at", &self.gate.instant(self.granted_at))
            .finish_non_exhaustive()
    }
}

/// A duration in nanoseconds, saturating at `u64::MAX`.
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
