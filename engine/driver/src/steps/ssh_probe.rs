use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::steps::StepError;
use crate::steps::context::{Outputs, StepContext};
use crate::steps::ssh_connection::{ResolvedConnection, STATE_HOST_KEY, SshConnectionArgs};
use crate::steps::ssh_sessions::SshSessions;
use executor_ssh::{ConnectOptions, HostKeyPolicy, ProbeOptions, probe};

/// Wait until the server's SSH accepts our key. Refused connections, timeouts and resets are
/// retried every few hundred milliseconds; an authentication failure that lasts longer than
/// `auth_grace` fails at once, naming the user and key type. In `pinned` host-key mode the key
/// met here is stored in the job state and every later step insists on it; once the state holds
/// a pin (from an earlier probe or a warm-pool claim), the probe insists on it too.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SshProbe {
    /// Connection settings; override the recipe's `ssh:` block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshConnectionArgs>,
    /// Give up after this long (default `5m`).
    #[serde(
        default,
        with = "executor_foundation::durations::optional_text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "executor_foundation::durations::optional_duration")]
    pub wait_timeout: Option<Duration>,
    /// How long authentication failures are tolerated while the image installs its keys
    /// (default `60s`).
    #[serde(
        default,
        with = "executor_foundation::durations::optional_text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "executor_foundation::durations::optional_duration")]
    pub auth_grace: Option<Duration>,
    /// A command that must exit 0 before the server counts as ready, e.g.
    /// `cloud-init status --wait`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_command: Option<String>,
    /// Limit for the readiness command (default `10m`).
    #[serde(
        default,
        with = "executor_foundation::durations::optional_text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "executor_foundation::durations::optional_duration")]
    pub readiness_timeout: Option<Duration>,
}

impl SshProbe {
    pub async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outputs, StepError> {
        let args = SshConnectionArgs::merged(cx.services, self.ssh.as_ref())?;
        let conn = args.resolve(cx.state, cx.log, true)?;
        let defaults = ProbeOptions::default();
        let options = ProbeOptions {
            timeout: self.wait_timeout.unwrap_or(defaults.timeout),
            auth_grace: self.auth_grace.unwrap_or(defaults.auth_grace),
            readiness_command: self.readiness_command.clone(),
            readiness_timeout: self.readiness_timeout.unwrap_or(defaults.readiness_timeout),
            connect: ConnectOptions {
                // Each attempt's TCP connect stays short unless the recipe says otherwise, so a
                // dropped SYN does not hide a server that has started listening.
                tcp_timeout: if args.connect_timeout.is_some() {
                    conn.options.tcp_timeout
                } else {
                    defaults.connect.tcp_timeout
                },
                ..conn.options.clone()
            },
            ..defaults.clone()
        };
        cx.log.info(&format!(
            "waiting for SSH on {} as {}",
            conn.target.addr(),
            conn.target.user
        ));
        let probed = probe(&conn.target, &conn.key, &conn.policy, &options, cx.cancel).await?;
        let first_contact = matches!(conn.policy, HostKeyPolicy::Pinned(None));
        if first_contact {
            cx.state
                .set(STATE_HOST_KEY, Json::String(probed.host_key_pin.clone()));
            // Saved at once: a later stage is another process and must see it even if this one dies.
            cx.state
                .save()
                .map_err(|e| StepError::other(format!("cannot save the job state: {e}")))?;
        }
        cx.log.info(&format!(
            "SSH ready after {:.1}s ({} attempts); host key {}",
            probed.elapsed.as_secs_f64(),
            probed.attempts,
            probed
                .session
                .host_key()
                .fingerprint(russh::keys::HashAlg::Sha256)
        ));
        let mut out = Outputs::new();
        out.insert("host_key".into(), Json::String(probed.host_key_pin.clone()));
        out.insert("attempts".into(), Json::from(probed.attempts));
        out.insert(
            "elapsed_ms".into(),
            Json::from(u64::try_from(probed.elapsed.as_millis()).unwrap_or(u64::MAX)),
        );
        // Later steps of this stage resolve the pin the probe just saved: keep the session
        // under that policy, so they reuse it rather than connect again.
        let conn = if first_contact {
            ResolvedConnection {
                policy: HostKeyPolicy::pinned(Some(&probed.host_key_pin))?,
                ..conn
            }
        } else {
            conn
        };
        SshSessions::of(cx.services)
            .await?
            .insert(&conn, probed.session)
            .await;
        Ok(out)
    }
}
