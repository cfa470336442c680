//! One prepare attempt: its temp dir with the job response file, and the directories and
//! shell that `StartBuild` settles once the driver's config is known. gitlab-runner makes a
//! fresh one per attempt, so a retried prepare never sees an earlier attempt's files.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use secrecy::ExposeSecret;

use super::JobRun;
use crate::driver_config::DriverConfig;
use crate::exit::StageError;
use crate::payload::{PayloadContext, payload};
use crate::project;
use crate::variables::{VariableContext, gitlab_variables};

/// One prepare attempt's executor state.
pub(super) struct Attempt {
    pub(super) number: u32,
    pub(super) dir: PathBuf,
    pub(super) job_env: indexmap::IndexMap<String, String>,
    pub(super) driver: DriverConfig,
    pub(super) builds_dir: String,
    pub(super) project_dir: String,
    pub(super) cache_dir: String,
    pub(super) shell: String,
    pub(super) hostname: String,
}

impl Attempt {
    pub(super) fn exit_code_file(&self) -> PathBuf {
        self.dir.join("build_exit_code")
    }
}

impl JobRun<'_> {
    /// `os.MkdirTemp("", "custom-executor")` and `response.json` (0600).
    pub(super) fn new_attempt(&mut self, number: u32) -> Result<Attempt, String> {
        let dir = tempfile::Builder::new()
            .prefix("custom-executor")
            .tempdir()
            .map_err(|e| format!("creating the executor temp dir: {e}"))?
            .keep();
        self.temp_dirs.push(dir.clone());
        let gitlab_vars = gitlab_variables(&VariableContext {
            config: self.cfg,
            job: self.job,
            job_id: self.job_id,
            job_token: self.job_token.expose_secret(),
            short_token: &self.short_token,
            concurrent_id: self.concurrent_id,
            concurrent_project_id: self.concurrent_project_id,
            builds_dir: "",
            project_dir: "",
            job_status: "running",
            timeout_secs: self.timeout_secs(),
        });
        let body = payload(&PayloadContext {
            job: self.job,
            job_id: self.job_id,
            job_token: self.job_token.expose_secret(),
            timeout_secs: self.timeout_secs(),
            runner_uuid: &self.runner.uuid,
            variables: &gitlab_vars,
        });
        let text =
            serde_json::to_vec(&body).map_err(|e| format!("encoding the job payload: {e}"))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.join("response.json"))
            .map_err(|e| format!("writing the job response file: {e}"))?;
        f.write_all(&text)
            .map_err(|e| format!("writing the job response file: {e}"))?;
        Ok(Attempt {
            number,
            dir,
            job_env: Default::default(),
            driver: DriverConfig::default(),
            builds_dir: String::new(),
            project_dir: String::new(),
            cache_dir: String::new(),
            shell: String::new(),
            hostname: String::new(),
        })
    }

    /// `StartBuild`: directories and shell, after the config overrides.
    pub(super) fn start_build(&self, attempt: &mut Attempt) -> Result<(), StageError> {
        let d = &attempt.driver;
        let builds_dir = d
            .builds_dir
            .clone()
            .or_else(|| self.cfg.builds_dir.clone())
            .unwrap_or_default();
        let cache_dir = d
            .cache_dir
            .clone()
            .or_else(|| self.cfg.cache_dir.clone())
            .unwrap_or_default();
        if builds_dir.is_empty() {
            return Err(StageError::Configuration(
                "the builds_dir is not configured".into(),
            ));
        }
        if cache_dir.is_empty() {
            return Err(StageError::Configuration(
                "the cache_dir is not configured".into(),
            ));
        }
        let shell = d.shell.clone().unwrap_or_else(|| self.cfg.shell.clone());
        match shell.as_str() {
            "bash" | "sh" => {}
            "pwsh" | "powershell" => {
                return Err(StageError::Configuration(format!(
                    "shell {shell:?} is not supported by the gitlab-runner stand-in"
                )));
            }
            other => return Err(StageError::System(format!("shell {other:?} not found"))),
        }
        let shared = d
            .builds_dir_is_shared
            .unwrap_or(self.cfg.builds_dir_is_shared);
        let base = builds_dir.trim_end_matches('/');
        attempt.project_dir = if shared {
            format!(
                "{base}/{}/{}/{}",
                self.short_token,
                self.concurrent_project_id,
                project::project_path()
            )
        } else {
            format!("{base}/{}", project::project_path())
        };
        attempt.builds_dir = builds_dir;
        attempt.cache_dir = cache_dir;
        attempt.shell = shell;
        attempt.hostname = d
            .hostname
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(local_hostname);
        Ok(())
    }
}

fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
