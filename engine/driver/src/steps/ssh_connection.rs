//! The connection settings every SSH step takes: from the recipe's `ssh:` block, overridden
//! field by field by the step's own `ssh:` mapping.

use std::time::Duration;

use schemars::JsonSchema;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::steps::StepError;
use crate::steps::services::Services;
use executor_foundation::job_log::JobLog;
use executor_foundation::job_state::JobState;

use executor_ssh::HostKeyPolicy;
use executor_ssh::parse_console_fingerprints;
use executor_ssh::{ClientKey, KeySource};
use executor_ssh::{ConnectOptions, Target};

/// Job-state key holding the per-job private key's path (set by `ssh_generate_key`).
pub const STATE_KEY_FILE: &str = "ssh_key_file";
/// Job-state key holding the host key pinned at first contact (set by `ssh_probe`).
pub const STATE_HOST_KEY: &str = "ssh_host_key";

/// How the server's host key is trusted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HostKeyMode {
    /// `ssh_probe` records the key it meets first in the job state; every later step, a later
    /// probe included, refuses any other key. Stops attackers who appear after the probe (IP reuse, late hijack).
    #[default]
    Pinned,
    /// The key must match `fingerprints` or a fingerprint cloud-init printed in `console_log`.
    /// Stops a man in the middle from the very first connection.
    Fingerprints,
    /// Accept any key (warns in the job log). Protects against nothing.
    Insecure,
}

/// Where and how to connect. Every field is optional here; the step's values win over the
/// recipe's `ssh:` block.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SshConnectionArgs {
    /// Server address (IP or name), e.g. `{{ state.server_address }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// SSH port (default 22).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Login user on the image, e.g. `ubuntu` or `debian`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Private key file (OpenSSH or PEM). Default: the per-job key from `ssh_generate_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_file: Option<String>,
    /// Name of an environment variable holding the private key text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_env: Option<String>,
    /// Name of an environment variable holding the key's passphrase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_env: Option<String>,
    /// Host-key trust: `pinned` (default), `fingerprints` or `insecure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<HostKeyMode>,
    /// Trusted host-key fingerprints (`SHA256:...`) for `host_key: fingerprints`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprints: Option<Vec<String>>,
    /// Console output of the server; cloud-init's fingerprint block in it is trusted for
    /// `host_key: fingerprints`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_log: Option<String>,
    /// Limit for TCP connect, handshake and authentication, each (default 20s).
    #[serde(
        default,
        with = "executor_foundation::durations::optional_text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "executor_foundation::durations::optional_duration")]
    pub connect_timeout: Option<Duration>,
    /// Keepalive interval for long silent scripts (default 15s).
    #[serde(
        default,
        with = "executor_foundation::durations::optional_text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "executor_foundation::durations::optional_duration")]
    pub keepalive_interval: Option<Duration>,
}

/// Everything needed to open a session, resolved.
pub struct ResolvedConnection {
    pub target: Target,
    pub key: ClientKey,
    pub policy: HostKeyPolicy,
    pub options: ConnectOptions,
    pub mode: HostKeyMode,
}

impl SshConnectionArgs {
    fn overlay(self, over: &SshConnectionArgs) -> SshConnectionArgs {
        let o = over.clone();
        SshConnectionArgs {
            host: o.host.or(self.host),
            port: o.port.or(self.port),
            user: o.user.or(self.user),
            private_key_file: o.private_key_file.or(self.private_key_file),
            private_key_env: o.private_key_env.or(self.private_key_env),
            passphrase_env: o.passphrase_env.or(self.passphrase_env),
            host_key: o.host_key.or(self.host_key),
            fingerprints: o.fingerprints.or(self.fingerprints),
            console_log: o.console_log.or(self.console_log),
            connect_timeout: o.connect_timeout.or(self.connect_timeout),
            keepalive_interval: o.keepalive_interval.or(self.keepalive_interval),
        }
    }

    /// The recipe's `ssh:` block with `step` laid over it.
    pub fn merged(
        services: &Services,
        step: Option<&SshConnectionArgs>,
    ) -> Result<Self, StepError> {
        let block = services.settings("ssh")?;
        let base: SshConnectionArgs = if block.is_null() {
            SshConnectionArgs::default()
        } else {
            serde_json::from_value(block)
                .map_err(|e| StepError::invalid(format!("the recipe's `ssh:` block: {e}")))?
        };
        Ok(match step {
            Some(step) => base.overlay(step),
            None => base,
        })
    }

    /// Resolves key, target and host-key policy. `first_contact` is true for the probe, which
    /// may meet the host key for the first time in pinned mode, but only while the job state
    /// holds no pin.
    pub fn resolve(
        &self,
        state: &JobState,
        log: &JobLog,
        first_contact: bool,
    ) -> Result<ResolvedConnection, StepError> {
        let host = self
            .host
            .clone()
            .filter(|h| !h.trim().is_empty())
            .ok_or_else(|| StepError::invalid("no SSH host: set `ssh.host`"))?;
        let user = self
            .user
            .clone()
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| StepError::invalid("no SSH user: set `ssh.user`"))?;
        let target = Target::new(host, self.port.unwrap_or(22), user);

        // A recipe that templates a choice renders the unchosen one as "": treat that as unset.
        let non_empty = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        let source = match (
            non_empty(&self.private_key_file),
            non_empty(&self.private_key_env),
        ) {
            (Some(_), Some(_)) => {
                return Err(StepError::invalid(
                    "set only one of `ssh.private_key_file` and `ssh.private_key_env`",
                ));
            }
            (Some(file), None) => KeySource::File(file.into()),
            (None, Some(var)) => KeySource::Env(var),
            (None, None) => match state.get(STATE_KEY_FILE).and_then(|v| v.as_str()) {
                Some(path) => KeySource::File(path.into()),
                None => {
                    return Err(StepError::invalid(
                        "no SSH private key: set `ssh.private_key_file` or `ssh.private_key_env`, \
                         or run `ssh_generate_key` in prepare",
                    ));
                }
            },
        };
        let passphrase = match &self.passphrase_env {
            None => None,
            Some(var) => Some(SecretString::from(std::env::var(var).map_err(|_| {
                StepError::invalid(format!("the passphrase variable {var} is not set"))
            })?)),
        };
        let key = ClientKey::load(&source, passphrase.as_ref())?;

        let mode = self.host_key.unwrap_or_default();
        let policy = match mode {
            HostKeyMode::Insecure => {
                log.warn(&format!(
                    "SSH host-key checking is OFF for {} (host_key: insecure): anyone on the \
                     network path can impersonate the server and receive the job",
                    target.addr()
                ));
                HostKeyPolicy::Insecure
            }
            HostKeyMode::Fingerprints => {
                let mut list = self.fingerprints.clone().unwrap_or_default();
                if let Some(console) = &self.console_log {
                    list.extend(
                        parse_console_fingerprints(console)
                            .into_iter()
                            .map(|f| f.sha256),
                    );
                }
                if list.is_empty() {
                    return Err(StepError::new(
                        executor_foundation::ErrorClass::HostKey,
                        "host_key is `fingerprints` but no fingerprint was given and none was \
                         found in the console log (yet)",
                    ));
                }
                HostKeyPolicy::fingerprints(&list)?
            }
            // A pin in the state binds every connection, the probe's included: only a state
            // without one is first contact. A later probe (after a reboot, in another stage)
            // that re-learned the key would accept whoever answers at the address by then.
            HostKeyMode::Pinned => match state.get(STATE_HOST_KEY).and_then(|v| v.as_str()) {
                Some(pin) => HostKeyPolicy::pinned(Some(pin))?,
                None if first_contact => HostKeyPolicy::pinned(None)?,
                None => {
                    return Err(StepError::new(
                        executor_foundation::ErrorClass::HostKey,
                        "no pinned SSH host key in the job state: run `ssh_probe` in prepare \
                         first (or choose another `ssh.host_key` mode)",
                    ));
                }
            },
        };

        let mut options = ConnectOptions::default();
        if let Some(t) = self.connect_timeout {
            options.tcp_timeout = t;
            options.handshake_timeout = t;
            options.auth_timeout = t;
            options.channel_timeout = t;
        }
        if let Some(k) = self.keepalive_interval {
            options.keepalive_interval = k;
        }
        Ok(ResolvedConnection {
            target,
            key,
            policy,
            options,
            mode,
        })
    }
}
