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
use crate::steps::debug_hold;
use executor_cloud::cleanup::{CleanupPolicy, CleanupTarget, cleanup};
use executor_cloud::keypair::job_keypair_name;

/// Delete the job's server and release what belongs to it (floating IP, key pair, kept
/// volumes), then wait until the server is gone.
///
/// Finds the server by the id in the job state and, in any case, by EXACT name among servers
/// carrying this job's ownership metadata (Nova's name filter is a regex; we filter again).
/// Never deletes a server without this job's metadata. Idempotent, and succeeds when nothing
/// was ever created. Outputs: `servers_deleted`, `floating_ips_released`, `volumes_deleted`.
///
/// Debug hold: when the runner host sets `EXECUTOR_HOLD_FAILED` (a duration, at most 7 days)
/// and a `run` sub-stage failed the job, the server is kept until then instead (metadata
/// `executor:hold-until`), with the job's key kept on the runner host, and the job log says how
/// to reach it; outputs `held` (the server id) and `held_until`. See the book's "Debug hold".
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteServer {
    /// Server id; defaults to `state.server_id`.
    #[serde(default)]
    pub server: Option<String>,
    /// Exact server name; defaults to `state.server_name`.
    #[serde(default)]
    pub name: Option<String>,
    /// Key pair to delete; defaults to `state.keypair_name`, and when the job state lost the
    /// server (missing or damaged) to the per-job name `executor-<owner>-<project>-<job>`.
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
        if let Some(held) = debug_hold::hold_instead_of_delete(cx, server_id.as_deref()).await? {
            return Ok(held);
        }
        // What the job state does not remember, because it is missing or was damaged, may
        // still exist: prepare saves the server's name before anything is created, so a state
        // without one is a state that lost it.
        let state_lost_the_server = cloud_glue::state_text(cx, STATE_SERVER_NAME).is_none()
            && cloud_glue::state_text(cx, STATE_SERVER_ID).is_none();
        let handle = cloud_glue::cloud(cx).await?;
        let owner = cloud_glue::owner(cx, &handle.settings)?;
        // The per-job key pair's name follows from the ownership alone, so it can be deleted
        // by exact name even when the state never recorded it.
        let keypair = keypair.or_else(|| state_lost_the_server.then(|| job_keypair_name(&owner)));
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
