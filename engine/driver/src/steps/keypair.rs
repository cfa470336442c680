use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::steps::StepError;
use crate::steps::cloud_glue::{self, STATE_KEYPAIR};
use crate::steps::context::{Outputs, StepContext};
use executor_cloud::keypair::{import_job_keypair, job_keypair_name};

/// Import a public key as a key pair for this job only (deleted by `delete_server`). Saves
/// `state.keypair_name`. Outputs: `name`.
///
/// A key pair of the given `name` that exists before the job made it (a site's shared key
/// pair, with the same public key) is used as it is, left out of the job state, and never
/// deleted.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Keypair {
    /// The OpenSSH public key (`ssh-ed25519 AAAA... comment`).
    pub public_key: String,
    /// Key pair name; default `executor-<owner>-<project>-<job>`.
    #[serde(default)]
    pub name: Option<String>,
}

impl Keypair {
    pub async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outputs, StepError> {
        let handle = cloud_glue::cloud(cx).await?;
        let owner = cloud_glue::owner(cx, &handle.settings)?;
        let per_job = job_keypair_name(&owner);
        let name = self.name.clone().unwrap_or_else(|| per_job.clone());
        // A named key pair already there, and not made by an earlier attempt of this job, is
        // someone else's: cleanup must never learn its name.
        let theirs = name != per_job
            && cloud_glue::state_text(cx, STATE_KEYPAIR).as_deref() != Some(name.as_str())
            && handle.cloud.keypair_exists(&name).await?;
        if !theirs {
            // Saved first: a lost answer may still have created it.
            cloud_glue::save(cx, STATE_KEYPAIR, json!(name))?;
        }
        // Only the per-job name may be replaced: a named key pair may be shared.
        import_job_keypair(
            handle.cloud.as_ref(),
            &name,
            self.public_key.trim(),
            name == per_job,
        )
        .await?;
        if theirs {
            cx.log.info(&format!(
                "key pair {name} was there before this job: used as it is, and kept at cleanup"
            ));
        }
        let mut out = Outputs::new();
        out.insert("name".into(), json!(name));
        Ok(out)
    }
}
