//! Waiting for a server to become ACTIVE, noticing it quickly.
//!
//! Polls start at `min_interval` and grow with the time waited (so an early boot is still seen
//! soon), are dense around the expected boot time (so ACTIVE is seen within about
//! `min_interval`), and back off again when the boot is late, up to `max_interval`.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backend::Cloud;
use super::error::{CloudError, CloudErrorKind};
use super::server::Server;

/// How to wait.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct WaitPolicy {
    /// Give up after this long (the error class is `timeout`).
    #[serde(with = "executor_foundation::durations::text")]
    #[schemars(schema_with = "executor_foundation::durations::duration")]
    pub timeout: Duration,
    /// When the server usually becomes ACTIVE; polls are densest around it.
    #[serde(with = "executor_foundation::durations::text")]
    #[schemars(schema_with = "executor_foundation::durations::duration")]
    pub expected: Duration,
    /// Shortest pause between polls.
    #[serde(with = "executor_foundation::durations::text")]
    #[schemars(schema_with = "executor_foundation::durations::duration")]
    pub min_interval: Duration,
    /// Longest pause between polls.
    #[serde(with = "executor_foundation::durations::text")]
    #[schemars(schema_with = "executor_foundation::durations::duration")]
    pub max_interval: Duration,
}

impl Default for WaitPolicy {
    fn default() -> Self {
        WaitPolicy {
            timeout: Duration::from_secs(600),
            expected: Duration::from_secs(20),
            min_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(10),
        }
    }
}

impl WaitPolicy {
    /// The pause before the next poll, `elapsed` after the wait began.
    pub fn interval(&self, elapsed: Duration) -> Duration {
        let min = self.min_interval.max(Duration::from_millis(10));
        let max = self.max_interval.max(min);
        let dense_from = self.expected / 2;
        let dense_until = self.expected + self.expected / 2;
        let pause = if elapsed < dense_from {
            // Grow with the time already waited (a boot faster than expected is still seen
            // soon, with few requests), but never sleep past the dense window's start.
            (elapsed / 2).max(min).min(max).min(dense_from - elapsed)
        } else if elapsed < dense_until {
            min
        } else {
            // Late: grow with the lateness, so a slow cloud is not hammered.
            let late = elapsed - dense_until;
            (min + late / 4).min(max)
        };
        pause.max(min).min(max)
    }
}

/// Waits until `id` is ACTIVE. ERROR yields a `boot_error` with Nova's fault message.
/// `on_status` sees each new status (for the job log).
pub async fn wait_active(
    cloud: &dyn Cloud,
    id: &str,
    policy: &WaitPolicy,
    cancel: &CancellationToken,
    on_status: &mut (dyn FnMut(&str) + Send),
) -> Result<Server, CloudError> {
    let started = Instant::now();
    let deadline = started + policy.timeout;
    let resource = format!("server {id}");
    let mut last_status = String::new();
    loop {
        let polled = match cloud.get_server(id).await {
            // The transport already retried; a flaky API is no reason to give up on the boot
            // before the deadline.
            Err(e)
                if matches!(
                    e.kind,
                    CloudErrorKind::Transient
                        | CloudErrorKind::RateLimited
                        | CloudErrorKind::Timeout
                ) && Instant::now() < deadline =>
            {
                tracing::warn!(error = %e, "polling the server failed; polling on");
                tokio::select! {
                    _ = cancel.cancelled() => {
                        return Err(CloudError::new(CloudErrorKind::Canceled, "wait for ACTIVE", resource, "canceled"));
                    }
                    _ = tokio::time::sleep(policy.max_interval.min(deadline - Instant::now())) => {}
                }
                continue;
            }
            other => other?,
        };
        let server = polled.ok_or_else(|| {
            CloudError::new(
                CloudErrorKind::NotFound,
                "wait for ACTIVE",
                resource.clone(),
                "the server disappeared while booting",
            )
        })?;
        if server.status != last_status {
            last_status = server.status.clone();
            on_status(&last_status);
        }
        match server.status.as_str() {
            "ACTIVE" => return Ok(server),
            "ERROR" => {
                let fault = server
                    .fault
                    .clone()
                    .unwrap_or_else(|| "Nova gave no fault message".into());
                return Err(CloudError::new(
                    CloudErrorKind::BootError,
                    "wait for ACTIVE",
                    format!("server {:?} ({id})", server.name),
                    format!("the server went to ERROR: {fault}"),
                ));
            }
            "DELETED" | "SOFT_DELETED" | "SHELVED_OFFLOADED" | "SHUTOFF" => {
                return Err(CloudError::new(
                    CloudErrorKind::BootError,
                    "wait for ACTIVE",
                    format!("server {:?} ({id})", server.name),
                    format!("the server is {} and will not become ACTIVE", server.status),
                ));
            }
            _ => {}
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(CloudError::new(
                CloudErrorKind::Timeout,
                "wait for ACTIVE",
                format!("server {:?} ({id})", server.name),
                format!(
                    "still {} after {}",
                    server.status,
                    humantime::format_duration(Duration::from_secs(policy.timeout.as_secs()))
                ),
            ));
        }
        let pause = policy.interval(now - started).min(deadline - now);
        tokio::select! {
            _ = cancel.cancelled() => {
                return Err(CloudError::new(
                    CloudErrorKind::Canceled,
                    "wait for ACTIVE",
                    resource,
                    "canceled",
                ));
            }
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_densely_around_the_expected_boot_time_and_back_off_later() {
        let p = WaitPolicy {
            timeout: Duration::from_secs(600),
            expected: Duration::from_secs(20),
            min_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(10),
        };
        assert_eq!(p.interval(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(p.interval(Duration::from_secs(4)), Duration::from_secs(2));
        // Never sleeps across the start of the dense window.
        assert_eq!(p.interval(Duration::from_secs(8)), Duration::from_secs(2));
        assert_eq!(p.interval(Duration::from_secs(15)), Duration::from_secs(1));
        assert_eq!(p.interval(Duration::from_secs(29)), Duration::from_secs(1));
        assert!(p.interval(Duration::from_secs(60)) > Duration::from_secs(1));
        assert_eq!(
            p.interval(Duration::from_secs(500)),
            Duration::from_secs(10)
        );
    }
}
