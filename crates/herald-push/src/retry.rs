//! When to try a failed send again: exponential backoff with full jitter, never sooner than the
//! provider's `Retry-After`, and a dead letter after the last attempt.

use std::time::Duration;

use rand::Rng;

use crate::config::RetryConfig;

/// What to do after a transient failure of attempt number `attempts` (1 for the first try).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    RetryAfter(Duration),
    GiveUp,
}

pub fn after_failure(
    config: &RetryConfig,
    attempts: u32,
    provider_says: Option<Duration>,
) -> RetryDecision {
    if attempts >= config.max_attempts {
        return RetryDecision::GiveUp;
    }
    let ceiling = backoff_ceiling(config, attempts);
    // Full jitter spreads the retries of a burst that failed together (AWS architecture blog).
    let jittered = Duration::from_millis(rand::rng().random_range(ceiling / 2..=ceiling.max(1)));
    RetryDecision::RetryAfter(jittered.max(provider_says.unwrap_or_default()))
}

/// `base * 2^(attempts-1)`, capped at `max`, in milliseconds.
fn backoff_ceiling(config: &RetryConfig, attempts: u32) -> u64 {
    let doublings = attempts.saturating_sub(1).min(32);
    config
        .base_delay_ms
        .saturating_mul(1u64 << doublings)
        .min(config.max_delay_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_gives_up() {
        let config = RetryConfig {
            max_attempts: 4,
            base_delay_ms: 100,
            max_delay_ms: 300,
        };
        for _ in 0..100 {
            let RetryDecision::RetryAfter(first) = after_failure(&config, 1, None) else {
                panic!("first failure retries");
            };
            assert!((50..=100).contains(&first.as_millis()), "{first:?}");
            let RetryDecision::RetryAfter(third) = after_failure(&config, 3, None) else {
                panic!("third failure retries");
            };
            assert!(
                (150..=300).contains(&third.as_millis()),
                "capped: {third:?}"
            );
        }
        assert_eq!(after_failure(&config, 4, None), RetryDecision::GiveUp);
    }

    #[test]
    fn retry_after_is_a_floor() {
        let config = RetryConfig::default();
        let RetryDecision::RetryAfter(d) = after_failure(&config, 1, Some(Duration::from_secs(7)))
        else {
            panic!("retries");
        };
        assert_eq!(d, Duration::from_secs(7));
    }
}
