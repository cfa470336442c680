//! How the stand-in is configured: the `[runners.custom]` and `[[runners]]` settings that matter
//! to a driver, plus knobs that gitlab-runner hard-codes but tests need to shrink.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

/// One driver invocation: `program args...` (for run, the script path and stage are appended).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

impl DriverCommand {
    pub fn new(
        program: impl Into<PathBuf>,
        args: impl IntoIterator<Item = impl Into<OsString>>,
    ) -> Self {
        Self {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }
}

/// Settings of one runner, with gitlab-runner's defaults.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    pub config_exec: Option<DriverCommand>,
    pub prepare_exec: Option<DriverCommand>,
    /// Required, as in gitlab-runner (`custom executor is missing RunExec` otherwise).
    pub run_exec: Option<DriverCommand>,
    pub cleanup_exec: Option<DriverCommand>,
    pub config_exec_timeout: Duration,
    pub prepare_exec_timeout: Duration,
    pub cleanup_exec_timeout: Duration,
    /// gitlab-runner's code default is 10 min.
    pub graceful_kill_timeout: Duration,
    /// gitlab-runner's code default is 10 s (its docs say 600 s).
    pub force_kill_timeout: Duration,
    /// `PreparationRetries`: hard-coded to 3 in gitlab-runner.
    pub preparation_attempts: u32,
    /// `PreparationRetryInterval`: hard-coded to 3 s in gitlab-runner.
    pub preparation_retry_interval: Duration,
    /// `WaitForBuildFinishTimeout` (5 min): after a job timeout or abort, how long the runner
    /// waits for the interrupted stage before it runs cleanup anyway.
    pub wait_for_build_finish_timeout: Duration,
    /// `AfterScriptTimeout` (5 min) unless the job sets `RUNNER_AFTER_SCRIPT_TIMEOUT`.
    pub after_script_timeout: Duration,
    /// Used when the job has no timeout of its own (`DefaultTimeout`, 7200 s).
    pub default_job_timeout: Duration,
    /// `[[runners]] builds_dir` / `cache_dir`: paths on the target machine.
    pub builds_dir: Option<String>,
    pub cache_dir: Option<String>,
    pub builds_dir_is_shared: bool,
    /// `[[runners]] shell`; the config JSON may override it.
    pub shell: String,
    /// `[[runners]] environment = ["K=V"]`.
    pub environment: Vec<(String, String)>,
    /// Added to this process's environment to form the runner service's environment, which every
    /// driver inherits (e.g. `OS_CLOUD` in the systemd unit of a real runner).
    pub service_env: Vec<(String, String)>,
    pub name: String,
    pub runner_id: u64,
    /// The runner authentication token; only its short form ever reaches a log.
    pub token: SecretString,
    /// Job log cap in bytes (`output_limit`, 4 MiB by default).
    pub output_limit: usize,
    /// How long the pipes may stay open after the driver exited before the stand-in says so in
    /// the log (gitlab-runner itself would just hang).
    pub held_pipe_grace: Duration,
}

impl RunnerConfig {
    /// A runner whose four stages call one binary, as `executor --recipe r.yaml config|prepare|run|cleanup`.
    pub fn single_binary(
        program: impl Into<PathBuf>,
        base_args: impl IntoIterator<Item = impl Into<OsString>>,
    ) -> Self {
        let program = program.into();
        let base: Vec<OsString> = base_args.into_iter().map(Into::into).collect();
        let with = |stage: &str| {
            let mut args = base.clone();
            args.push(stage.into());
            DriverCommand {
                program: program.clone(),
                args,
            }
        };
        Self {
            config_exec: Some(with("config")),
            prepare_exec: Some(with("prepare")),
            run_exec: Some(with("run")),
            cleanup_exec: Some(with("cleanup")),
            ..Self::default()
        }
    }
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            config_exec: None,
            prepare_exec: None,
            run_exec: None,
            cleanup_exec: None,
            config_exec_timeout: Duration::from_secs(3600),
            prepare_exec_timeout: Duration::from_secs(3600),
            cleanup_exec_timeout: Duration::from_secs(3600),
            graceful_kill_timeout: Duration::from_secs(600),
            force_kill_timeout: Duration::from_secs(10),
            preparation_attempts: 3,
            preparation_retry_interval: Duration::from_secs(3),
            wait_for_build_finish_timeout: Duration::from_secs(300),
            after_script_timeout: Duration::from_secs(300),
            default_job_timeout: Duration::from_secs(7200),
            builds_dir: Some("/builds".into()),
            cache_dir: Some("/cache".into()),
            builds_dir_is_shared: false,
            shell: "bash".into(),
            environment: Vec::new(),
            service_env: Vec::new(),
            name: "executor-simulate".into(),
            runner_id: 42,
            token: SecretString::from("glrt-SimRunner0token0000000"),
            output_limit: 4 * 1024 * 1024,
            held_pipe_grace: Duration::from_secs(2),
        }
    }
}
