//! Waiting for a booting VM's SSH to accept our key.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::connect::{ConnectOptions, SshSession, Target, connect};
use super::errors::SshError;
use super::host_key::HostKeyPolicy;
use super::keys::ClientKey;

/// Knobs for [`probe`].
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// Give up after this long.
    pub timeout: Duration,
    /// Authentication failures are tolerated this long (cloud-init may still be installing the
    /// key while sshd already runs); after that an auth failure ends the probe at once.
    pub auth_grace: Duration,
    /// First pause after a refused or failed attempt.
    pub min_backoff: Duration,
    /// Longest pause between attempts. Small, so that we notice a freshly listening sshd quickly;
    /// a refused connection costs nothing.
    pub max_backoff: Duration,
    /// Pause after an auth failure (each one costs the server a log line).
    pub auth_retry_interval: Duration,
    /// Limits for each connection attempt.
    pub connect: ConnectOptions,
    /// Run once connected; the probe succeeds only when it exits 0 (e.g. `cloud-init status --wait`).
    pub readiness_command: Option<String>,
    /// Limit for the readiness command.
    pub readiness_timeout: Duration,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            timeout: Duration::from_secs(300),
            auth_grace: Duration::from_secs(60),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(250),
            auth_retry_interval: Duration::from_secs(1),
            connect: ConnectOptions {
                tcp_timeout: Duration::from_secs(3),
                ..ConnectOptions::default()
            },
            readiness_command: None,
            readiness_timeout: Duration::from_secs(600),
        }
    }
}

/// A successful probe: the open session (reuse it) and what to pin.
#[derive(Debug)]
pub struct Probed {
    pub session: SshSession,
    /// The host key to store in the job state; later stages pass it to [`HostKeyPolicy::pinned`].
    pub host_key_pin: String,
    pub attempts: u32,
    pub elapsed: Duration,
}

/// Connects repeatedly until SSH accepts `key`, the timeout passes, or a failure that retrying
/// cannot fix happens (changed host key, persistent auth failure, bad key).
pub async fn probe(
    target: &Target,
    key: &ClientKey,
    policy: &HostKeyPolicy,
    options: &ProbeOptions,
    cancel: &CancellationToken,
) -> Result<Probed, SshError> {
    let started = Instant::now();
    let deadline = started + options.timeout;
    let mut backoff = options.min_backoff;
    let mut attempts = 0u32;
    let mut first_auth_failure: Option<Instant> = None;
    let mut last_error: String;

    let session = loop {
        attempts += 1;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let mut limits = options.connect.clone();
        limits.tcp_timeout = limits
            .tcp_timeout
            .min(remaining.max(Duration::from_millis(50)));
        let attempt = tokio::select! {
            r = connect(target, key, policy, &limits) => r,
            _ = cancel.cancelled() => return Err(SshError::Canceled { remote_stopped: false }),
        };
        let pause = match attempt {
            Ok(session) => break session,
            Err(e @ SshError::Auth { .. }) => {
                let since = *first_auth_failure.get_or_insert_with(Instant::now);
                if since.elapsed() >= options.auth_grace {
                    return Err(e);
                }
                tracing::debug!("probe attempt {attempts}: {e}");
                last_error = e.to_string();
                options.auth_retry_interval
            }
            Err(e) if e.is_retryable() || matches!(e, SshError::ConnectionLost { .. }) => {
                tracing::debug!("probe attempt {attempts}: {e}");
                last_error = e.to_string();
                let pause = backoff;
                backoff = (backoff * 3 / 2).min(options.max_backoff);
                pause
            }
            Err(e) => return Err(e),
        };
        let now = Instant::now();
        if now + pause >= deadline {
            return Err(SshError::ProbeTimeout {
                addr: target.addr(),
                after: options.timeout,
                attempts,
                last_error,
            });
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = cancel.cancelled() => return Err(SshError::Canceled { remote_stopped: false }),
        }
    };

    if let Some(command) = &options.readiness_command {
        let run = session.run_command(command, None, 64 * 1024, cancel);
        let output = tokio::time::timeout(options.readiness_timeout, run)
            .await
            .map_err(|_| SshError::Timeout {
                addr: target.addr(),
                what: "readiness command",
                after: options.readiness_timeout,
            })??;
        if !output.exit.success() {
            return Err(SshError::RemoteFailed {
                addr: target.addr(),
                what: format!("readiness command `{command}`"),
                outcome: output.exit.to_string(),
                stderr_tail: output.stderr_tail(2048),
            });
        }
    }

    Ok(Probed {
        host_key_pin: session.host_key_pin()?,
        session,
        attempts,
        elapsed: started.elapsed(),
    })
}
