use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::steps::StepError;
use crate::steps::cloud_glue::{self, STATE_SERVER_ID, STATE_SERVER_NAME, STATE_VOLUMES};
use crate::steps::context::{Outputs, StepContext};
use executor_cloud::cleanup::{CleanupPolicy, CleanupTarget, cleanup};
use executor_cloud::create::CreateOptions;
use executor_cloud::ownership::{Ownership, POOL_PROJECT};
use executor_cloud::quota::{
    QuotaWait, QuotaWaiting, create_server_waiting_for_quota, short_duration,
};
use executor_cloud::server_spec::{BootVolume, NetworkAttachment, ServerSpec};
use executor_cloud::wait_active::{WaitPolicy, wait_active};
use executor_cloud::{CloudErrorKind, Server};
use executor_foundation::ErrorClass;

/// Create an OpenStack server for this job, tagged with ownership metadata (runner, project,
/// job, creation time), and by default wait until it is ACTIVE.
///
/// A create request whose answer is lost is never simply repeated: the server it may have
/// made is looked up by exact name and ownership first. The name is saved in the job state
/// before the request and the id right after, so cleanup finds the server even if this stage
/// dies. Outputs: `id`, `name`, `status`, `flavor_id`, `image_id`, `adopted`, `boots`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateServer {
    /// Server name; include the job id from the payload (e.g. `ci-{{ trusted.id }}`), not
    /// `job.CI_JOB_ID`, which a pipeline sets.
    pub name: String,
    /// Flavor name or id.
    pub flavor: String,
    /// Image name or id. When several active images share the name, the one with the newest
    /// `created_at` is used (ties: the larger id); images that are not active never are.
    pub image: String,
    /// Networks (by name or id, optionally with a `fixed_ip`) or existing `port`s, in NIC order.
    #[serde(default)]
    pub networks: Vec<NetworkAttachment>,
    /// Security group names or ids.
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// Name of an existing key pair (see the `keypair` step for a per-job one).
    #[serde(default)]
    pub key_name: Option<String>,
    /// User data as plain text (e.g. cloud-config); base64-encoded for you.
    #[serde(default)]
    pub user_data: Option<String>,
    /// Attach a config drive.
    #[serde(default)]
    pub config_drive: Option<bool>,
    /// Extra metadata. Keys starting with `executor:` are reserved.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Server tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Availability zone.
    #[serde(default)]
    pub availability_zone: Option<String>,
    /// Scheduler hints, passed to Nova as they are.
    #[serde(default)]
    pub scheduler_hints: serde_json::Map<String, Json>,
    /// Server group name or id (becomes the `group` scheduler hint).
    #[serde(default)]
    pub server_group: Option<String>,
    /// Boot from a new volume made from the image.
    #[serde(default)]
    pub boot_volume: Option<BootVolume>,
    /// Server description.
    #[serde(default)]
    pub description: Option<String>,
    /// If not empty, `flavor` must be one of these (guards job-supplied values).
    #[serde(default)]
    pub allowed_flavors: Vec<String>,
    /// If not empty, `image` must be one of these.
    #[serde(default)]
    pub allowed_images: Vec<String>,
    /// If not empty, every network must be one of these.
    #[serde(default)]
    pub allowed_networks: Vec<String>,
    /// Wait until ACTIVE (default on). Set `wait: null` to return right after the request.
    #[serde(default = "default_wait")]
    pub wait: Option<WaitPolicy>,
    /// How many servers to boot at most when one goes to ERROR: 1 (default) fails the step
    /// with class `boot_error` (a system failure, so gitlab-runner retries the prepare); N
    /// deletes the ERROR server and creates a new one, up to N boots in all.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 10))]
    pub boot_attempts: u32,
    /// How long to wait for quota (default `15m`). A create that Nova refuses because a
    /// quota (instances, cores, RAM) is exhausted is sent again, after 5 s, then every 10, 20,
    /// 40 and at most 60 s (with jitter), while the job log says which quota and how much of it
    /// is used. After this long the step fails with class `quota`, naming it. `0s` fails at
    /// once. The pool daemon never waits: a warm VM must not take quota a job is waiting for.
    #[serde(
        default,
        with = "executor_foundation::durations::optional_text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "executor_foundation::durations::optional_duration")]
    pub quota_wait: Option<Duration>,
}

/// How long a create waits for quota unless the recipe says otherwise (taskscaler's acquire
/// timeout has the same default).
pub const DEFAULT_QUOTA_WAIT: Duration = Duration::from_secs(15 * 60);

fn default_wait() -> Option<WaitPolicy> {
    Some(WaitPolicy::default())
}

fn one() -> u32 {
    1
}

fn allowed(list: &[String], value: &str, what: &str) -> Result<(), StepError> {
    if list.is_empty() || list.iter().any(|a| a == value) {
        Ok(())
    } else {
        Err(StepError::invalid(format!(
            "{what} {value:?} is not allowed here (allowed: {})",
            list.join(", ")
        )))
    }
}

impl CreateServer {
    fn spec(&self) -> ServerSpec {
        ServerSpec {
            name: self.name.clone(),
            flavor: self.flavor.clone(),
            image: self.image.clone(),
            networks: self.networks.clone(),
            security_groups: self.security_groups.clone(),
            key_name: self.key_name.clone(),
            // A recipe that templates user data away renders "": none, not an empty document.
            user_data: self.user_data.clone().filter(|u| !u.trim().is_empty()),
            config_drive: self.config_drive,
            metadata: self.metadata.clone(),
            tags: self.tags.clone(),
            availability_zone: self.availability_zone.clone(),
            scheduler_hints: self.scheduler_hints.clone(),
            server_group: self.server_group.clone(),
            boot_volume: self.boot_volume.clone(),
            description: self.description.clone(),
        }
    }

    pub async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outputs, StepError> {
        allowed(&self.allowed_flavors, &self.flavor, "flavor")?;
        allowed(&self.allowed_images, &self.image, "image")?;
        for n in &self.networks {
            if let Some(net) = &n.network {
                allowed(&self.allowed_networks, net, "network")?;
            }
        }
        let handle = cloud_glue::cloud(cx).await?;
        let cloud = handle.cloud.as_ref();
        let owner = cloud_glue::owner(cx, &handle.settings)?;
        let spec = self.spec();
        let attempts = self.boot_attempts.max(1);
        // The pool daemon provisions for no job: its create must not compete with jobs for
        // quota, so a refusal ends its provision at once (and it checks the limits first).
        let quota_wait = if owner.project == POOL_PROJECT && cx.job.is_empty() {
            QuotaWait::up_to(Duration::ZERO)
        } else {
            QuotaWait::up_to(self.quota_wait.unwrap_or(DEFAULT_QUOTA_WAIT))
        };
        let mut boots = 0;
        loop {
            boots += 1;
            cloud_glue::save(cx, STATE_SERVER_NAME, json!(spec.name))?;
            let log = cx.log;
            let mut waited_since: Option<Instant> = None;
            let mut on_wait = |w: &QuotaWaiting| {
                waited_since.get_or_insert_with(|| Instant::now() - w.waited);
                log.warn(&w.to_string());
            };
            let created = create_server_waiting_for_quota(
                cloud,
                &spec,
                &owner,
                &CreateOptions::default(),
                &quota_wait,
                cx.cancel,
                &mut on_wait,
            )
            .await?;
            if let Some(since) = waited_since {
                cx.log.info(&format!(
                    "quota had room after {} of waiting",
                    short_duration(since.elapsed())
                ));
            }
            cloud_glue::save(cx, STATE_SERVER_ID, json!(created.server_id))?;
            cx.log.info(&format!(
                "created server {:?} ({}) from image {:?} ({}), flavor {:?}",
                spec.name,
                created.server_id,
                created.image.name,
                created.image.id,
                created.flavor.name
            ));
            let mut out = Outputs::new();
            out.insert("id".into(), json!(created.server_id));
            out.insert("name".into(), json!(spec.name));
            out.insert("flavor_id".into(), json!(created.flavor.id));
            out.insert("image_id".into(), json!(created.image.id));
            out.insert("adopted".into(), json!(created.adopted));
            let Some(policy) = &self.wait else {
                out.insert("status".into(), json!("BUILD"));
                out.insert("boots".into(), json!(boots));
                return Ok(out);
            };
            let log = cx.log;
            let mut on_status = |s: &str| log.info(&format!("server {:?} is {s}", spec.name));
            match wait_active(cloud, &created.server_id, policy, cx.cancel, &mut on_status).await {
                Ok(server) => {
                    self.remember_volumes(cx, cloud, &server, &owner).await?;
                    out.insert("status".into(), json!(server.status));
                    out.insert("boots".into(), json!(boots));
                    return Ok(out);
                }
                Err(e) if e.kind == CloudErrorKind::BootError && boots < attempts => {
                    cx.log.warn(&format!(
                        "{e}; deleting it and booting again ({boots}/{attempts})"
                    ));
                    let target = CleanupTarget {
                        owner: owner.clone(),
                        server_id: Some(created.server_id.clone()),
                        server_name: Some(spec.name.clone()),
                        floating_ip_ids: vec![],
                        keypair_name: None,
                        volume_ids: vec![],
                    };
                    cleanup(cloud, &target, &CleanupPolicy::default()).await?;
                    cloud_glue::save(cx, STATE_SERVER_ID, Json::Null)?;
                }
                Err(e) => {
                    if e.kind == CloudErrorKind::BootError {
                        cx.log.error(&e.to_string());
                    }
                    let err: StepError = e.into();
                    return Err(if err.class == ErrorClass::BootError && attempts > 1 {
                        err.context(format!("after {boots} boots"))
                    } else {
                        err
                    });
                }
            }
        }
    }

    /// Nova keeps these volumes past the server's deletion: cleanup needs their ids, and, once
    /// the server is gone, a proof that they are this job's, which the job's ownership in the
    /// volume's metadata gives. A volume that cannot be tagged is still deleted with its
    /// server, which proves it while it exists.
    async fn remember_volumes(
        &self,
        cx: &mut StepContext<'_>,
        cloud: &dyn executor_cloud::Cloud,
        server: &Server,
        owner: &Ownership,
    ) -> Result<(), StepError> {
        let kept: Vec<&str> = server
            .volumes
            .iter()
            .filter(|v| !v.delete_on_termination)
            .map(|v| v.id.as_str())
            .collect();
        if self.boot_volume.is_none() || kept.is_empty() {
            return Ok(());
        }
        cloud_glue::save(cx, STATE_VOLUMES, json!(kept))?;
        let tag = owner.metadata(std::time::SystemTime::now());
        for id in kept {
            if let Err(e) = cloud.set_volume_metadata(id, &tag).await {
                cx.log.warn(&format!(
                    "cannot tag volume {id} with this job's ownership: {e}"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlists_refuse_values_outside_them_and_empty_lists_allow_all() {
        let list = vec!["m1.small".to_string(), "m1.large".to_string()];
        assert!(allowed(&list, "m1.small", "flavor").is_ok());
        let err = allowed(&list, "m1.huge", "flavor").unwrap_err();
        assert_eq!(err.class, ErrorClass::Invalid);
        assert!(err.message.contains("m1.huge") && err.message.contains("m1.large"));
        // Exact strings only: no prefix or pattern tricks.
        assert!(allowed(&list, "m1.small ", "flavor").is_err());
        assert!(allowed(&list, "m1.*", "flavor").is_err());
        assert!(allowed(&[], "anything", "flavor").is_ok());
    }
}
