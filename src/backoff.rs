//! `Backoff`: how long a key nacked with [`nack_backoff`] waits before it
//! is queued again, by its attempt count.
//!
//! [`nack_backoff`]: crate::LeaseIn::nack_backoff

use core::fmt;
use std::time::Duration;

/// Exponential backoff: the `n`-th failed delivery of a pending key waits
/// `base × 2^(n-1)`, at most `max`; optionally shortened by a random part
/// (jitter), so that keys that failed together do not all come back
/// together. Set on a queue with [`Builder::retries`](crate::Builder::retries),
/// applied by [`LeaseIn::nack_backoff`](crate::LeaseIn::nack_backoff).
///
/// The default is client-go's workqueue default: 5 ms doubling up to
/// 1,000 s, without jitter.
///
/// ```
/// use coalescing_queue::Backoff;
/// use std::time::Duration;
///
/// let backoff = Backoff::exponential(Duration::from_millis(1), Duration::from_secs(1));
/// assert_eq!(backoff.delay(1), Duration::from_millis(1));
/// assert_eq!(backoff.delay(2), Duration::from_millis(2));
/// assert_eq!(backoff.delay(5), Duration::from_millis(16));
/// assert_eq!(backoff.delay(11), Duration::from_secs(1)); // 1.024 s, capped
/// assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(1));
/// assert_eq!(Backoff::default().delay(1), Duration::from_millis(5));
/// ```
#[derive(Clone, Copy, PartialEq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    /// The share of a delay that jitter may take away, in `[0, 1]`.
    jitter: f64,
}

impl Backoff {
    /// `base` for the first failure, doubling with each further one, never
    /// above `max` (a `base` above `max` gives `max` each time).
    pub const fn exponential(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            jitter: 0.0,
        }
    }

    /// Draws each delay uniformly from `[d × (1 - fraction), d]`, where `d`
    /// is [`delay`](Self::delay)'s value: `1.0` is "full jitter" (anything
    /// from zero to `d`), `0.0` none. Jitter only shortens a delay, so the
    /// cap `max` still holds. `fraction` is clamped to `[0, 1]` (NaN counts
    /// as 0).
    ///
    /// ```
    /// use coalescing_queue::Backoff;
    /// use std::time::Duration;
    ///
    /// let backoff = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(10))
    ///     .with_jitter(0.5);
    /// assert_eq!(backoff.jitter(), 0.5);
    /// assert_eq!(backoff.delay(1), Duration::from_millis(100)); // `delay` has no jitter
    /// ```
    pub fn with_jitter(mut self, fraction: f64) -> Self {
        self.jitter = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        self
    }

    /// The delay of the first failure.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The longest delay.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The share of a delay jitter may take away (0 for none).
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// The delay after the `attempt`-th failed delivery, without jitter:
    /// `base × 2^(attempt - 1)`, at most `max`; attempt 0 counts as 1.
    /// Never overflows: a doubling past `max` (or past what a `Duration`
    /// holds) is `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1);
        let (base, max) = (self.base.as_nanos(), self.max.as_nanos());
        if base == 0 {
            return Duration::ZERO;
        }
        // base × 2^doublings > max, tested without computing it.
        if base >= max || doublings >= 128 || base > max >> doublings {
            return self.max;
        }
        nanos(base << doublings)
    }

    /// `delay(attempt)` shortened by jitter; `unit` is a draw from `[0, 1)`.
    pub(crate) fn jittered(&self, attempt: u32, unit: f64) -> Duration {
        let delay = self.delay(attempt);
        if self.jitter == 0.0 {
            return delay;
        }
        let keep = 1.0 - self.jitter * unit.clamp(0.0, 1.0);
        // Never above `delay`: a product rounded up past it (or past what a
        // `Duration` holds, near `Duration::MAX`) keeps `delay`.
        Duration::try_from_secs_f64(delay.as_secs_f64() * keep)
            .map_or(delay, |jittered| jittered.min(delay))
    }
}

/// A `Duration` of `nanos` nanoseconds (at most a `Duration::MAX`'s).
fn nanos(nanos: u128) -> Duration {
    const PER_SECOND: u128 = 1_000_000_000;
    let seconds = u64::try_from(nanos / PER_SECOND).unwrap_or(u64::MAX);
    Duration::new(seconds, (nanos % PER_SECOND) as u32)
}

impl Default for Backoff {
    /// 5 ms doubling up to 1,000 s, no jitter (client-go's
    /// `DefaultTypedItemBasedRateLimiter`).
    fn default() -> Self {
        Self::exponential(Duration::from_millis(5), Duration::from_secs(1000))
    }
}

impl fmt::Debug for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backoff")
            .field("base", &self.base)
            .field("max", &self.max)
            .field("jitter", &self.jitter)
            .finish()
    }
}

/// A draw from `[0, 1)` for jitter: a per-thread xorshift generator seeded
/// from the process's random hasher state and the thread, so no two
/// threads draw the same sequence. Not cryptographic; it only spreads
/// retries.
pub(crate) fn unit_draw() -> f64 {
    use core::cell::Cell;
    use core::hash::BuildHasher;
    std::thread_local! {
        static STATE: Cell<u64> = const { Cell::new(0) };
    }
    STATE.with(|state| {
        let mut x = state.get();
        if x == 0 {
            let seed = foldhash::fast::RandomState::default();
            x = seed.hash_one(std::thread::current().id()) | 1;
        }
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_base_and_caps_at_max() {
        let backoff = Backoff::exponential(Duration::from_millis(1), Duration::from_secs(1000));
        let delays: Vec<_> = (1..=6).map(|n| backoff.delay(n)).collect();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(delays, [ms(1), ms(2), ms(4), ms(8), ms(16), ms(32)]);
        assert_eq!(backoff.delay(1001), Duration::from_secs(1000));
        let minutes = Backoff::exponential(Duration::from_secs(60), Duration::from_secs(3_600_000));
        assert_eq!(minutes.delay(3), Duration::from_secs(240));
        assert_eq!(minutes.delay(1001), Duration::from_secs(3_600_000));
        assert_eq!(minutes.delay(0), Duration::from_secs(60));
    }

    #[test]
    fn huge_bases_and_zero_bases_do_not_overflow() {
        let huge = Backoff::exponential(Duration::MAX, Duration::MAX);
        assert_eq!(huge.delay(40), Duration::MAX);
        let zero = Backoff::exponential(Duration::ZERO, Duration::from_secs(1));
        assert_eq!(zero.delay(u32::MAX), Duration::ZERO);
        let above = Backoff::exponential(Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(above.delay(1), Duration::from_secs(1));
    }

    #[test]
    fn jitter_only_shortens_and_stays_in_its_band() {
        let backoff = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(1))
            .with_jitter(0.5);
        for _ in 0..1000 {
            let d = backoff.jittered(1, unit_draw());
            assert!(
                d >= Duration::from_millis(50) && d <= Duration::from_millis(100),
                "{d:?}"
            );
        }
        let draws: Vec<f64> = (0..1000).map(|_| unit_draw()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        let mean = draws.iter().sum::<f64>() / 1000.0;
        assert!((0.4..0.6).contains(&mean), "mean {mean}");
        assert_eq!(Backoff::default().with_jitter(f64::NAN).jitter(), 0.0);
        assert_eq!(Backoff::default().with_jitter(7.0).jitter(), 1.0);
    }
}
