//! How a step is retried: how many attempts, how long to wait between them, and for which
//! classes of error.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use executor_foundation::ErrorClass;

/// Retry settings of one step. Without `retry`, a step runs once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Total attempts, the first included.
    #[schemars(range(min = 1, max = 100))]
    #[schemars(extend("x-static" = true))]
    pub attempts: u32,
    /// Wait before the second attempt, e.g. `2s`. Doubles after each attempt up to `max_delay`,
    /// with jitter.
    #[serde(
        default = "default_delay",
        with = "executor_foundation::durations::text"
    )]
    #[schemars(schema_with = "executor_foundation::durations::literal_duration")]
    pub delay: Duration,
    /// The longest wait between two attempts.
    #[serde(
        default = "default_max_delay",
        with = "executor_foundation::durations::text"
    )]
    #[schemars(schema_with = "executor_foundation::durations::literal_duration")]
    pub max_delay: Duration,
    /// Error classes worth another attempt. Defaults to transient and rate-limited API errors
    /// and timeouts.
    #[serde(default = "default_on")]
    #[schemars(extend("x-static" = true))]
    pub on: Vec<ErrorClass>,
}

fn default_delay() -> Duration {
    Duration::from_secs(1)
}
fn default_max_delay() -> Duration {
    Duration::from_secs(30)
}
fn default_on() -> Vec<ErrorClass> {
    vec![
        ErrorClass::Transient,
        ErrorClass::RateLimited,
        ErrorClass::Timeout,
    ]
}

impl RetryPolicy {
    pub fn once() -> Self {
        Self {
            attempts: 1,
            delay: default_delay(),
            max_delay: default_max_delay(),
            on: vec![],
        }
    }

    pub fn retries(&self, class: ErrorClass) -> bool {
        // A cancelled stage must stop, and a failed job script is the job's own result.
        !matches!(class, ErrorClass::Canceled | ErrorClass::Script) && self.on.contains(&class)
    }

    /// The wait after failed attempt number `attempt` (1-based), with up to 25 % jitter so that
    /// many runners hitting the same failing API do not retry in lockstep.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let base = self
            .delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.max_delay);
        let jitter = rand::random_range(0.0..0.25);
        base.mul_f64(1.0 - jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_are_capped() {
        let p = RetryPolicy {
            attempts: 5,
            delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(3),
            on: default_on(),
        };
        assert!(p.delay_after(1) <= Duration::from_secs(1));
        assert!(p.delay_after(1) >= Duration::from_millis(750));
        assert!(p.delay_after(2) >= Duration::from_millis(1500));
        assert!(p.delay_after(10) <= Duration::from_secs(3));
    }

    #[test]
    fn script_failures_and_cancels_are_never_retried() {
        let mut p = RetryPolicy::once();
        p.on = vec![ErrorClass::Script, ErrorClass::Canceled, ErrorClass::Quota];
        assert!(!p.retries(ErrorClass::Script));
        assert!(!p.retries(ErrorClass::Canceled));
        assert!(p.retries(ErrorClass::Quota));
        assert!(!p.retries(ErrorClass::Auth));
    }
}
