use std::time::Duration;

use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::steps::StepError;
use crate::steps::cloud_glue;
use crate::steps::context::{Outputs, StepContext};
use executor_cloud::console::{parse_host_keys, wait_for_console_line};

/// Fetch the server's console log, optionally waiting for a line (e.g. cloud-init's
/// `finished`), and expose the SSH host keys cloud-init printed there so that the SSH probe can
/// check the host key out of band. Outputs: `host_key_fingerprints` (list of
/// `{key_type, fingerprint}`), `host_keys` (list of `type base64`), `tail` (last lines).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsoleLog {
    /// Server id; defaults to `state.server_id`.
    #[serde(default)]
    pub server: Option<String>,
    /// A regular expression; wait until a console line matches it.
    #[serde(default)]
    pub wait_for: Option<String>,
    /// How long to wait for `wait_for`.
    #[serde(
        default = "default_timeout",
        with = "executor_foundation::durations::text"
    )]
    #[schemars(schema_with = "executor_foundation::durations::duration")]
    pub wait_timeout: Duration,
    /// Pause between fetches while waiting.
    #[serde(
        default = "default_interval",
        with = "executor_foundation::durations::text"
    )]
    #[schemars(schema_with = "executor_foundation::durations::duration")]
    pub interval: Duration,
    /// How many last lines to put in the `tail` output.
    #[serde(default = "default_tail")]
    pub tail_lines: usize,
}

fn default_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_interval() -> Duration {
    Duration::from_secs(3)
}
fn default_tail() -> usize {
    20
}

impl ConsoleLog {
    pub async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outputs, StepError> {
        let id = cloud_glue::server_id(cx, &self.server)?;
        let handle = cloud_glue::cloud(cx).await?;
        let cloud = handle.cloud.as_ref();
        let log = match &self.wait_for {
            Some(pattern) => {
                let re = Regex::new(pattern).map_err(|e| {
                    StepError::invalid(format!("wait_for is not a valid regex: {e}"))
                })?;
                wait_for_console_line(cloud, &id, &re, self.wait_timeout, self.interval, cx.cancel)
                    .await?
            }
            None => cloud.console_output(&id, None).await?,
        };
        let keys = parse_host_keys(&log);
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(self.tail_lines)..].join("\n");
        let mut out = Outputs::new();
        out.insert("host_key_fingerprints".into(), json!(keys.fingerprints));
        out.insert("host_keys".into(), json!(keys.public_keys));
        out.insert("tail".into(), json!(tail));
        Ok(out)
    }
}
