//! `pool_claim`: take a warm VM from the pool daemon for this job.
//!
//! Any failure (no daemon, a slow one, an empty pool, a VM that died) is an `unavailable`
//! error, which a recipe answers with `fallback: provision`: the job then makes its own VM.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use executor_foundation::ErrorClass;
use executor_foundation::state_binding::STATE_JOB;
use executor_pool::{Claim, Owner, PoolSettings};

use crate::steps::StepError;
use crate::steps::cloud_glue;
use crate::steps::context::{Outputs, StepContext};
use crate::steps::ssh_connection::STATE_KEY_FILE;

/// File name of a claimed VM's private key in the job's state directory.
const CLAIMED_KEY_FILE: &str = "pool_vm_key";

/// Claims a ready VM of the job's pool key (the recipe's `pool:` block) and records it in the
/// job state as if `provision` had made it: server id and address, pinned host key, key file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolClaim {}

fn unavailable(what: impl std::fmt::Display) -> StepError {
    StepError::new(ErrorClass::Unavailable, what.to_string())
}

impl PoolClaim {
    pub async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outputs, StepError> {
        let block = cx.services.settings("pool")?;
        if block.is_null() {
            return Err(unavailable("the recipe has no `pool:` block"));
        }
        let settings: PoolSettings = serde_json::from_value(block)
            .map_err(|e| StepError::invalid(format!("the recipe's `pool:` block: {e}")))?;
        let key = settings
            .key
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let cloud = cloud_glue::settings_of(cx.services.settings("cloud")?)?;
        let owner = cloud_glue::job_ownership(&cloud, &executor_cloud::credentials::process_env)?;
        let claim = Claim {
            key,
            owner: Owner {
                runner: owner.runner,
                project: owner.project,
                job: owner.job,
            },
        };
        let dir = cx.state.dir().map(|d| d.to_path_buf()).ok_or_else(|| {
            StepError::invalid("the job state has no directory to keep the key in")
        })?;
        let state = &mut *cx.state;
        // The VM is recorded before the claim is confirmed; a failure here leaves the daemon to
        // delete it (the job then provisions its own).
        let job = claim.owner.job.clone();
        let claimed = executor_pool::claim(
            &settings.socket_path(),
            claim,
            settings.claim_wait,
            |claimed| {
                let key_path = dir.join(CLAIMED_KEY_FILE);
                write_private(&key_path, claimed.private_key.as_bytes())
                    .map_err(|e| format!("cannot write {}: {e}", key_path.display()))?;
                for (k, v) in &claimed.state {
                    // The job's own binding stays: the VM's state names no job, and must not.
                    if k != STATE_KEY_FILE && k != STATE_JOB {
                        state.set(k, v.clone());
                    }
                }
                state.set(STATE_KEY_FILE, Json::String(key_path.display().to_string()));
                state
                    .save()
                    .map_err(|e| format!("cannot save the job state: {e}"))?;
                Ok(claimed)
            },
        )
        .await;
        let claimed = match claimed {
            Ok(c) => c,
            Err(e) => {
                tell_the_daemon_of_the_fallback(&settings, job, &e);
                return Err(unavailable(e));
            }
        };
        let name = claimed
            .state
            .get(cloud_glue::STATE_SERVER_NAME)
            .and_then(Json::as_str)
            .unwrap_or("?");
        cx.log.info(&format!(
            "claimed warm VM {name} from the pool (ready for {:.0}s)",
            claimed.idle_seconds
        ));
        let mut out = Outputs::new();
        out.insert("claimed".into(), Json::Bool(true));
        out.insert("state".into(), Json::Object(claimed.state));
        Ok(out)
    }
}

/// Counted as `fallback` in the daemon's claims. Sent in the background, while the job boots
/// its own VM, so that a slow daemon delays nothing; a daemon that is down never hears of it.
fn tell_the_daemon_of_the_fallback(
    settings: &PoolSettings,
    job: String,
    why: &executor_pool::ClaimError,
) {
    if matches!(
        why,
        executor_pool::ClaimError::Down { .. } | executor_pool::ClaimError::Untrusted { .. }
    ) {
        return;
    }
    let socket = settings.socket_path();
    let fallback = executor_pool::Fallback {
        job,
        why: why.kind().into(),
    };
    tokio::spawn(async move {
        let _ =
            executor_pool::report_fallback(&socket, fallback, std::time::Duration::from_secs(2))
                .await;
    });
}

/// Writes a secret with mode 0600 from the start, never readable by others even briefly.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
