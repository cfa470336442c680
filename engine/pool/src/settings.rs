//! The recipe's `pool:` block: which VMs the daemon keeps warm, and the limits it keeps to.

use std::time::Duration;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// The warm pool. The daemon (`executor pool`) reads it; a job's `pool_claim` step reads
/// `key`, `socket` and `claim_wait`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolSettings {
    /// What a job may choose about its VM, e.g. `{flavor: "{{ vars.flavor }}", image:
    /// "{{ vars.image }}"}`: rendered for each job, it picks the warm VMs the job can take.
    /// The `provision` stage reads it as `pool.<name>`.
    #[serde(default)]
    pub key: IndexMap<String, Json>,
    /// The pool keys kept warm, and how many idle VMs of each.
    #[serde(default)]
    #[schemars(extend("x-static" = true))]
    pub warm: Vec<WarmKey>,
    /// At most this many VMs of the daemon's at once, idle plus claimed by jobs still running.
    #[serde(default = "default_max_instances")]
    #[schemars(extend("x-static" = true))]
    pub max_instances: u32,
    /// An idle VM older than this is deleted and replaced, so that jobs get fresh images.
    #[serde(
        default = "default_max_idle_age",
        with = "executor_foundation::durations::text"
    )]
    #[schemars(schema_with = "executor_foundation::durations::literal_duration")]
    pub max_idle_age: Duration,
    /// Start at most one VM per this interval (the create rate limit).
    #[serde(
        default = "default_create_interval",
        with = "executor_foundation::durations::text"
    )]
    #[schemars(schema_with = "executor_foundation::durations::literal_duration")]
    pub create_interval: Duration,
    /// While making VMs keeps failing, the pause between attempts doubles up to this.
    #[serde(
        default = "default_failure_backoff",
        with = "executor_foundation::durations::text"
    )]
    #[schemars(schema_with = "executor_foundation::durations::literal_duration")]
    pub failure_backoff: Duration,
    /// How often idle VMs are checked (one SSH round trip each); dead ones are replaced.
    #[serde(
        default = "default_health_interval",
        with = "executor_foundation::durations::text"
    )]
    #[schemars(schema_with = "executor_foundation::durations::literal_duration")]
    pub health_interval: Duration,
    /// How long a job's claim waits for the daemon before it provisions its own VM.
    #[serde(
        default = "default_claim_wait",
        with = "executor_foundation::durations::text"
    )]
    #[schemars(schema_with = "executor_foundation::durations::literal_duration")]
    pub claim_wait: Duration,
    /// What the daemon does with its idle VMs when it stops: `delete` them, or `keep` them
    /// for the next start to adopt.
    #[serde(default)]
    pub on_shutdown: OnShutdown,
    /// The daemon's socket (default `$XDG_RUNTIME_DIR/executor/pool.sock`, else
    /// `/tmp/executor-<uid>/pool.sock`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    /// Where the daemon keeps each VM's state and key, to adopt them after a restart (default
    /// `$STATE_DIRECTORY/pool`, else `~/.local/state/executor/pool`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
    /// Serve Prometheus metrics on this address, e.g. `127.0.0.1:9464`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
}

/// One pool key kept warm.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WarmKey {
    /// The key's values, e.g. `{flavor: m1.small, image: ubuntu-24.04}`.
    #[schemars(extend("x-static" = true))]
    pub key: IndexMap<String, String>,
    /// Idle VMs to keep ready, outside the periods below.
    #[schemars(range(max = 1000))]
    #[schemars(extend("x-static" = true))]
    pub idle: u32,
    /// Periods with another idle count (office hours, nights); the last that matches wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-static" = true))]
    pub periods: Vec<crate::schedule::Period>,
}

impl WarmKey {
    /// The idle count that holds now.
    pub fn idle_now(&self) -> u32 {
        crate::schedule::idle_at(self.idle, &self.periods, jiff::Timestamp::now())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnShutdown {
    /// Delete the idle VMs (nothing is left running without a daemon).
    #[default]
    Delete,
    /// Keep them; the next start adopts those it can still reach.
    Keep,
}

fn default_max_instances() -> u32 {
    10
}
fn default_max_idle_age() -> Duration {
    Duration::from_secs(3600)
}
fn default_create_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_failure_backoff() -> Duration {
    Duration::from_secs(60)
}
fn default_health_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_claim_wait() -> Duration {
    Duration::from_secs(3)
}

impl PoolSettings {
    /// Where the daemon keeps its VMs' states and keys: `state_dir`, else
    /// `$STATE_DIRECTORY/pool` (systemd's StateDirectory=), else
    /// `~/.local/state/executor/pool`.
    pub fn state_root(&self) -> std::path::PathBuf {
        use std::path::PathBuf;
        if let Some(dir) = self.state_dir.as_ref().filter(|d| !d.trim().is_empty()) {
            return dir.into();
        }
        if let Some(dir) = std::env::var_os("STATE_DIRECTORY").filter(|d| !d.is_empty()) {
            return PathBuf::from(dir).join("pool");
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/tmp".into());
        home.join(".local/state/executor/pool")
    }

    /// The socket path this recipe's daemon and jobs meet on.
    pub fn socket_path(&self) -> std::path::PathBuf {
        match &self.socket {
            Some(s) if !s.trim().is_empty() => s.into(),
            _ => crate::socket::default_socket_path(),
        }
    }
}
