//! The two ways a rule samples: a reservoir of so many requests each second, and a
//! fixed rate of the rest.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall-clock time since the epoch: X-Ray's quota and rule modification times are
/// epoch seconds.
pub(crate) fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Whole seconds since the epoch: reservoirs fill per second.
pub(crate) fn epoch_seconds() -> u64 {
    since_epoch().as_secs()
}

/// Requests taken from a reservoir in the current second.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PerSecond {
    second: u64,
    taken: u64,
}

impl PerSecond {
    /// Takes one of `limit` places of second `now`, if one is left.
    pub(crate) fn take(&mut self, now: u64, limit: u64) -> bool {
        if self.second != now {
            self.second = now;
            self.taken = 0;
        }
        if self.taken < limit {
            self.taken += 1;
            true
        } else {
            false
        }
    }
}

/// Whether a request is among the `rate` (0 to 1) of requests sampled.
pub(crate) fn draw(rate: f64) -> bool {
    // 53 random bits: a uniform float in [0, 1).
    let unit = (crate::id::next_random() >> 11) as f64 / (1u64 << 53) as f64;
    unit < rate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservoir_refills_each_second() {
        let mut r = PerSecond::default();
        assert!(r.take(10, 2) && r.take(10, 2));
        assert!(!r.take(10, 2));
        assert!(r.take(11, 2));
        assert!(!PerSecond::default().take(10, 0));
    }

    #[test]
    fn rates_hold_in_the_long_run() {
        assert!(!(0..10_000).any(|_| draw(0.0)));
        assert!((0..10_000).all(|_| draw(1.0)));
        let n = (0..100_000).filter(|_| draw(0.05)).count();
        // 5% of 100,000 is 5,000, with a standard deviation of about 69.
        assert!((4_600..5_400).contains(&n), "{n}");
    }
}
