use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::steps::StepError;
use crate::steps::cloud_glue::{
    self, STATE_ADDRESS, STATE_FLOATING_IP, STATE_FLOATING_IP_ID, STATE_FLOATING_IP_REQUESTED,
    STATE_KEYPAIR, STATE_SERVER_ID, STATE_SERVER_NAME, STATE_VOLUMES,
};
use crate::steps::context::{Outputs, StepContext};
use executor_cloud::cleanup::{CleanupPolicy, CleanupTarget, cleanup};

/// Delete the job's server and release what belongs to it (floating IP, key pair, kept
/// volumes), then wait until the server is gone.
///
/// Finds the server by the id in the job state and, in any case, by EXACT name among servers
/// carrying this job's ownership metadata (Nova's name filter is a regex; we filter again).
/// Never deletes a server without this job's metadata. Idempotent, and succeeds when nothing
/// was ever created. Outputs: `servers_deleted`, `floating_ips_released`, `volumes_deleted`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteServer {
    /// Server id; defaults to `state.server_id`.
    #[serde(default)]
    pub server: Option<String>,
    /// Exact server name; defaults to `state.server_name`.
    #[serde(default)]
    pub name: Option<String>,
    /// Key pair to delete; defaults to `state.keypair_name`.
    #[serde(default)]
    pub keypair: Option<String>,
    /// Upper bound for the server to disappear.
    #[serde(
        default = "default_timeout",
        with = "executor_foundation::durations::text"
    )]
    #[schemars(schema_with = "executor_foundation::durations::duration")]
    pub wait_timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(180)
}

impl DeleteServer {
    pub async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outputs, StepError> {
        let server_id = self
            .server
            .clone()
            .or_else(|| cloud_glue::state_text(cx, STATE_SERVER_ID));
        let name = self
            .name
            .clone()
            .or_else(|| cloud_glue::state_text(cx, STATE_SERVER_NAME));
        let keypair = self
            .keypair
            .clone()
            .or_else(|| cloud_glue::state_text(cx, STATE_KEYPAIR));
        let floating_ip_ids: Vec<String> = cloud_glue::state_text(cx, STATE_FLOATING_IP_ID)
            .into_iter()
            .collect();
        let volume_ids: Vec<String> = cx
            .state
            .get(STATE_VOLUMES)
            .and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if server_id.is_none()
            && name.is_none()
            && keypair.is_none()
            && floating_ip_ids.is_empty()
            && volume_ids.is_empty()
        {
            // Prepare never got as far as the cloud: nothing to do, and no need to log in.
            cx.log.info("nothing to delete");
            return Ok(Outputs::new());
        }
        let handle = cloud_glue::cloud(cx).await?;
        let owner = cloud_glue::owner(cx, &handle.settings)?;
        let target = CleanupTarget {
            owner,
            server_id,
            server_name: name,
            floating_ip_ids,
            keypair_name: keypair,
            volume_ids,
        };
        // Floating IPs beyond the one the state names exist only if a floating IP step began.
        let find_floating_ips = cx.state.get(STATE_FLOATING_IP_REQUESTED).is_some()
            || cx.state.get(STATE_FLOATING_IP_ID).is_some();
        let policy = CleanupPolicy {
            timeout: self.wait_timeout,
            find_floating_ips,
            ..CleanupPolicy::default()
        };
        let report = cleanup(handle.cloud.as_ref(), &target, &policy).await?;
        for refused in &report.servers_refused {
            cx.log.warn(&format!(
                "server {refused} lacks this job's ownership metadata; left alone"
            ));
        }
        if !report.servers_deleted.is_empty() {
            cx.log.info(&format!(
                "deleted server {}",
                report.servers_deleted.join(", ")
            ));
        }
        for key in [
            STATE_SERVER_ID,
            STATE_SERVER_NAME,
            STATE_ADDRESS,
            STATE_FLOATING_IP_ID,
            STATE_FLOATING_IP,
            STATE_FLOATING_IP_REQUESTED,
            STATE_KEYPAIR,
            STATE_VOLUMES,
        ] {
            if cx.state.get(key).is_some() {
                cx.state.remove(key);
            }
        }
        cx.state
            .save()
            .map_err(|e| StepError::other(format!("cannot save the job state: {e}")))?;
        let mut out = Outputs::new();
        out.insert("servers_deleted".into(), json!(report.servers_deleted));
        out.insert(
            "floating_ips_released".into(),
            json!(report.floating_ips_released),
        );
        out.insert("volumes_deleted".into(), json!(report.volumes_deleted));
        Ok(out)
    }
}
