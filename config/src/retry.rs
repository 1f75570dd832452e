//! Retry policy: how often and how long to wait before writing a failed batch again.
//!
//! `[retry]` sets the pipeline's policy; a stream's `retry = { ... }` overrides single fields
//! of it. `max_attempts` counts every attempt, the first one included.

use std::time::Duration;

use serde::Deserialize;

/// How the wait between attempts grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    /// The same wait, `every`, before each retry.
    Fixed,
    /// `every`, then twice that, then four times, ... capped at `max_delay`.
    Exponential,
}

/// The effective retry policy of a pipeline or stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included: 3 means one try and two retries. Default 3.
    pub max_attempts: u32,
    /// The wait before the first retry (and every retry, with fixed backoff). Default `"1m"`.
    pub every: Duration,
    /// How the wait grows between retries. Default [`Backoff::Fixed`].
    pub backoff: Backoff,
    /// Random spread of each wait, as a fraction: 0.2 means anywhere from 80% to 120% of it.
    /// Default 0 (waits are exact, as a nightly job's operators expect).
    pub jitter: f64,
    /// The longest wait exponential backoff may reach. Default `"1h"`.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            every: Duration::from_secs(60),
            backoff: Backoff::Fixed,
            jitter: 0.0,
            max_delay: Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    /// Whether another attempt is allowed after `failed_attempts` attempts have failed.
    pub fn may_retry(&self, failed_attempts: u32) -> bool {
        failed_attempts < self.max_attempts
    }

    /// The wait before the next attempt once `failed_attempts` (at least 1) have failed.
    ///
    /// `unit_random` is a random number in `[0, 1)` from the caller's generator, so that this
    /// crate needs none and tests can pin it; it only matters when `jitter` is above 0.
    pub fn delay_after(&self, failed_attempts: u32, unit_random: f64) -> Duration {
        let base = match self.backoff {
            Backoff::Fixed => self.every,
            Backoff::Exponential => {
                let doublings = failed_attempts.saturating_sub(1).min(63);
                let factor = 1u64 << doublings;
                let nanos = self.every.as_nanos().saturating_mul(u128::from(factor));
                let capped = nanos.min(self.max_delay.as_nanos());
                Duration::from_nanos(u64::try_from(capped).unwrap_or(u64::MAX))
            }
        };
        if self.jitter == 0.0 {
            return base;
        }
        let unit = unit_random.clamp(0.0, 1.0);
        let factor = 1.0 - self.jitter + 2.0 * self.jitter * unit;
        let jittered = base.mul_f64(factor.max(0.0));
        match self.backoff {
            Backoff::Exponential => jittered.min(self.max_delay),
            Backoff::Fixed => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(backoff: Backoff, jitter: f64) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            every: Duration::from_secs(20 * 60),
            backoff,
            jitter,
            max_delay: Duration::from_secs(3600),
        }
    }

    #[test]
    fn fixed_backoff_waits_the_same_every_time() {
        let p = policy(Backoff::Fixed, 0.0);
        for failed in 1..=3 {
            assert_eq!(p.delay_after(failed, 0.9), Duration::from_secs(1200));
        }
    }

    #[test]
    fn exponential_backoff_doubles_up_to_the_cap() {
        let p = policy(Backoff::Exponential, 0.0);
        assert_eq!(p.delay_after(1, 0.5), Duration::from_secs(1200));
        assert_eq!(p.delay_after(2, 0.5), Duration::from_secs(2400));
        assert_eq!(p.delay_after(3, 0.5), Duration::from_secs(3600));
        assert_eq!(p.delay_after(200, 0.5), Duration::from_secs(3600));
    }

    #[test]
    fn jitter_spreads_the_wait_within_its_fraction() {
        let p = policy(Backoff::Fixed, 0.25);
        assert_eq!(p.delay_after(1, 0.0), Duration::from_secs(900));
        assert_eq!(p.delay_after(1, 0.5), Duration::from_secs(1200));
        let high = p.delay_after(1, 0.999_999);
        assert!(high > Duration::from_secs(1499) && high <= Duration::from_secs(1500));
    }

    #[test]
    fn attempts_are_counted_with_the_first_one() {
        let p = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        assert!(p.may_retry(1));
        assert!(p.may_retry(2));
        assert!(!p.may_retry(3));
    }
}
