//! The debug hold (like Zuul's autohold): when the runner host asks for it, `delete_server`
//! keeps a failed job's server for a bounded time instead of deleting it, keeps the job's key
//! where only the runner's user can read it, and says in the job log how to reach the server.
//!
//! The setting is read from the driver's own process environment, never through a template:
//! gitlab-runner hands job variables to the driver only as `CUSTOM_ENV_*`, so no pipeline can
//! set it, and no recipe can pass a job variable into it by mistake. It belongs to the runner
//! host for another reason too: the held key is kept on that host, and `executor gc
//! --release` must run there to delete it.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::{Value as Json, json};

use crate::steps::StepError;
use crate::steps::cloud_glue::{self, STATE_ADDRESS, STATE_SERVER_ID, STATE_SERVER_NAME};
use crate::steps::context::{Outputs, StepContext};
use crate::steps::ssh_connection::STATE_KEY_FILE;
use executor_cloud::credentials::process_env;
use executor_cloud::hold::hold_server;
use executor_foundation::job_log::JobLog;
use executor_foundation::job_state::JobState;

/// The runner host's setting: how long a failed job's server is held, e.g. `2h`. Unset, empty
/// or `0s`: no hold (the default).
pub const HOLD_ENV: &str = "EXECUTOR_HOLD_FAILED";
/// Where held keys are kept; see [`held_key_dir`].
pub const HOLD_DIR_ENV: &str = "EXECUTOR_HOLD_DIR";
/// Job-state key: the `run` sub-stage whose failure failed the job. Written by the driver
/// itself after a failed `run`, so a job cannot set it.
pub const STATE_JOB_FAILED: &str = "job_failed";
/// The longest hold: a forgotten VM holding the job's data must not live on for weeks.
pub const MAX_HOLD: Duration = Duration::from_secs(7 * 24 * 3600);

/// gitlab-runner does not fail a job for its `after_script`, so neither does the hold.
const SUB_STAGES_THAT_DO_NOT_FAIL_THE_JOB: &[&str] = &["after_script"];

/// After a failed `run` sub-stage: records in the job state that it failed the job, and, the
/// first time and when the runner host asks for a hold, says in the job log how to reach the
/// server. Only `run` can: gitlab-runner shows the output of `cleanup`, which does the holding,
/// in its own log, not in the job's.
pub fn after_failed_run(
    state: &mut JobState,
    log: &JobLog,
    sub_stage: &str,
    ssh: &Json,
) -> Result<(), StepError> {
    if SUB_STAGES_THAT_DO_NOT_FAIL_THE_JOB.contains(&sub_stage) || state.dir().is_none() {
        return Ok(());
    }
    // The first failure is what failed the job; later sub-stages only report on it.
    if state.get(STATE_JOB_FAILED).is_some() {
        return Ok(());
    }
    state.set(STATE_JOB_FAILED, Json::String(sub_stage.to_string()));
    state
        .save()
        .map_err(|e| StepError::other(format!("cannot save the job state: {e}")))?;
    let Ok(Some(duration)) = hold_duration(process_env(HOLD_ENV).as_deref()) else {
        return Ok(());
    };
    let Some(server_id) = state_text(state, STATE_SERVER_ID) else {
        return Ok(());
    };
    let key = match state_text(state, STATE_KEY_FILE) {
        None => None,
        // Without a place for the key, cleanup deletes the server: promise nothing.
        Some(_) => match held_key_dir().and_then(|d| held_key_path(&d, &server_id)) {
            Some(k) => Some(k),
            None => return Ok(()),
        },
    };
    let name = state_text(state, STATE_SERVER_NAME).unwrap_or_else(|| server_id.clone());
    log.warn(&format!(
        "debug hold: this job failed in {sub_stage}; its server {name} ({server_id}) is kept for \
         {} after the job instead of deleted ({HOLD_ENV} on the runner host)",
        executor_foundation::durations::format(duration)
    ));
    log.info(&access_line(state, ssh, key.as_deref()));
    log.info(&release_line(&server_id));
    Ok(())
}

fn state_text(state: &JobState, key: &str) -> Option<String> {
    text(state.get(key))
}

/// How to log in to the held server: address and port from the job state, user from the
/// recipe's `ssh:` block, and the kept key. Nothing here is a secret.
fn access_line(state: &JobState, ssh: &Json, key: Option<&Path>) -> String {
    let address = state_text(state, STATE_ADDRESS)
        .or_else(|| text(ssh.get("host")))
        .unwrap_or_else(|| "<no address known>".into());
    let port = state_text(state, "ssh_port")
        .or_else(|| text(ssh.get("port")))
        .unwrap_or_else(|| "22".into());
    let user = text(ssh.get("user")).unwrap_or_else(|| "<user>".into());
    match key {
        Some(k) => format!(
            "debug hold: from the runner host, as the runner's user: ssh -i {} -p {port} \
             {user}@{address}",
            k.display()
        ),
        None => format!(
            "debug hold: from the runner host, with the site's own key: ssh -p {port} \
             {user}@{address}"
        ),
    }
}

fn release_line(server_id: &str) -> String {
    format!(
        "debug hold: release it with `executor gc --release {server_id}`; `executor gc` \
         deletes it once the hold is over"
    )
}

/// The hold the runner host asks for: `Ok(None)` when none, an error text when the setting
/// cannot be used (the server is then deleted as usual).
pub fn hold_duration(value: Option<&str>) -> Result<Option<Duration>, String> {
    let Some(text) = value.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let d = executor_foundation::durations::parse(text)
        .map_err(|e| format!("{HOLD_ENV}={text} is not a duration such as `2h`: {e}"))?;
    if d > MAX_HOLD {
        return Err(format!(
            "{HOLD_ENV}={text} is longer than the longest hold, {}",
            executor_foundation::durations::format(MAX_HOLD)
        ));
    }
    Ok((!d.is_zero()).then_some(d))
}

/// Where held keys are kept: `$EXECUTOR_HOLD_DIR`, else `$STATE_DIRECTORY/held` (systemd's
/// StateDirectory=), else `~/.local/state/executor/held`. Never a shared temporary directory:
/// the key opens a VM that may hold the job's secrets.
pub fn held_key_dir() -> Option<PathBuf> {
    let set = |name: &str| process_env(name).filter(|v| !v.trim().is_empty());
    if let Some(dir) = set(HOLD_DIR_ENV) {
        return Some(dir.into());
    }
    if let Some(dir) = set("STATE_DIRECTORY") {
        return Some(PathBuf::from(dir).join("held"));
    }
    set("HOME").map(|home| PathBuf::from(home).join(".local/state/executor/held"))
}

/// The held key of `server_id` in `dir`; `None` for an id that is not a plain name.
pub fn held_key_path(dir: &Path, server_id: &str) -> Option<PathBuf> {
    let plain = !server_id.is_empty()
        && server_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    plain.then(|| dir.join(format!("{server_id}.key")))
}

fn keep_key(from: &Path, to: &Path) -> std::io::Result<()> {
    let dir = to.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let key = std::fs::read(from)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(to)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(&key)?;
    file.sync_all()
}

fn text(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::String(s) if !s.is_empty() => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Holds the job's server instead of deleting it, when the runner host asks for a hold and
/// the job failed. `Ok(None)`: no hold, delete as usual.
pub async fn hold_instead_of_delete(
    cx: &mut StepContext<'_>,
    server_id: Option<&str>,
) -> Result<Option<Outputs>, StepError> {
    let duration = match hold_duration(process_env(HOLD_ENV).as_deref()) {
        Ok(Some(d)) => d,
        Ok(None) => return Ok(None),
        Err(problem) => {
            cx.log
                .warn(&format!("{problem}; the server is deleted, not held"));
            return Ok(None);
        }
    };
    let Some(failed_in) = cloud_glue::state_text(cx, STATE_JOB_FAILED) else {
        return Ok(None);
    };
    let Some(server_id) = server_id else {
        return Ok(None);
    };
    // The job directory, with the per-job key in it, is deleted after cleanup: keep the key.
    let kept_key = match cloud_glue::state_text(cx, STATE_KEY_FILE) {
        None => None,
        Some(job_key) => {
            let kept = held_key_dir().and_then(|d| held_key_path(&d, server_id));
            let Some(kept) = kept else {
                cx.log.warn(
                    "debug hold: no directory to keep the job's key in (set EXECUTOR_HOLD_DIR); \
                     the server is deleted, not held",
                );
                return Ok(None);
            };
            if let Err(e) = keep_key(Path::new(&job_key), &kept) {
                cx.log.warn(&format!(
                    "debug hold: cannot keep the job's key in {}: {e}; the server is deleted, \
                     not held",
                    kept.display()
                ));
                return Ok(None);
            }
            Some(kept)
        }
    };
    let forget_key = |kept: &Option<PathBuf>| {
        if let Some(k) = kept {
            let _ = std::fs::remove_file(k);
        }
    };
    let until = SystemTime::now() + duration;
    let reason = format!("{failed_in} failed");
    let handle = cloud_glue::cloud(cx).await?;
    let owner = cloud_glue::owner(cx, &handle.settings)?;
    match hold_server(handle.cloud.as_ref(), &owner, server_id, until, &reason).await {
        Ok(true) => {}
        Ok(false) => {
            forget_key(&kept_key);
            return Ok(None);
        }
        Err(e) => {
            forget_key(&kept_key);
            cx.log.warn(&format!(
                "debug hold: cannot mark server {server_id} as held: {e}; it is deleted instead"
            ));
            return Ok(None);
        }
    }
    let until_text = humantime::format_rfc3339_seconds(until).to_string();
    let name = cloud_glue::state_text(cx, STATE_SERVER_NAME).unwrap_or_else(|| server_id.into());
    let ssh = cx.services.settings("ssh").unwrap_or(Json::Null);
    cx.log.warn(&format!(
        "debug hold: the job failed in {failed_in}; server {name} ({server_id}) is kept until \
         {until_text} instead of deleted ({HOLD_ENV} on the runner host)"
    ));
    cx.log
        .info(&access_line(cx.state, &ssh, kept_key.as_deref()));
    cx.log.info(&release_line(server_id));
    let mut out = Outputs::new();
    out.insert("servers_deleted".into(), json!([]));
    out.insert("floating_ips_released".into(), json!([]));
    out.insert("volumes_deleted".into(), json!([]));
    out.insert("held".into(), json!(server_id));
    out.insert("held_until".into(), json!(until_text));
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hold_setting_is_off_unless_a_bounded_duration() {
        assert_eq!(hold_duration(None), Ok(None));
        assert_eq!(hold_duration(Some(" ")), Ok(None));
        assert_eq!(hold_duration(Some("0s")), Ok(None));
        assert_eq!(
            hold_duration(Some("2h")),
            Ok(Some(Duration::from_secs(7200)))
        );
        assert!(hold_duration(Some("yes")).is_err());
        assert!(hold_duration(Some("30days")).is_err());
    }

    #[test]
    fn a_held_key_path_is_a_plain_file_in_the_dir() {
        let dir = Path::new("/k");
        assert_eq!(
            held_key_path(dir, "5e1f-aa"),
            Some(PathBuf::from("/k/5e1f-aa.key"))
        );
        for bad in ["", "../x", "a/b", ".."] {
            assert_eq!(held_key_path(dir, bad), None, "{bad}");
        }
    }
}
