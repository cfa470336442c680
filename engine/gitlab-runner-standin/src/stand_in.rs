//! The stand-in itself: gitlab-runner's `Build.Run` for the custom executor, against any driver.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::RngExt;
use rand::distr::Alphanumeric;
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::concurrency::ConcurrencySlots;
use super::config::{DriverCommand, RunnerConfig};
use super::control::{JobControl, StopReason};
use super::driver_config::{DriverConfig, startup_line};
use super::env::{EnvInputs, parent_environment, stage_environment};
use super::exit::{StageError, map_exit};
use super::job::{Job, JobVariable};
use super::job_trace::{JobTrace, LiveWriter};
use super::payload::{PayloadContext, payload};
use super::process::{self, Bounds, Ended, Invocation, Sink, StopCause};
use super::project;
use super::result::{JobResult, JobStatus, StageRecord};
use super::run_stage::RunStage;
use super::runner_log::RunnerLog;
use super::script::{ScriptContext, script_for};
use super::variables::{VariableContext, all_variables, gitlab_variables, lookup, short_token};

/// Plays gitlab-runner's part for one `[[runners]]` entry. Clones share the job-id counter and
/// the `CI_CONCURRENT_ID` slots, so concurrent jobs of one runner see each other.
#[derive(Clone)]
pub struct Runner {
    config: Arc<RunnerConfig>,
    slots: ConcurrencySlots,
    next_job_id: Arc<AtomicU64>,
    uuid: String,
}

/// Per-job options.
#[derive(Default, Clone)]
pub struct RunOptions {
    pub control: Option<JobControl>,
    /// The job log is mirrored here while the job runs.
    pub live_log: Option<LiveWriter>,
    /// The runner log (cleanup output) is mirrored here.
    pub runner_log: Option<LiveWriter>,
}

impl Runner {
    pub fn new(config: RunnerConfig) -> Self {
        Self {
            config: Arc::new(config),
            slots: ConcurrencySlots::default(),
            next_job_id: Arc::new(AtomicU64::new(1001)),
            uuid: uuid::Uuid::new_v4().to_string(),
        }
    }

    pub fn config(&self) -> &RunnerConfig {
        &self.config
    }

    pub async fn run_job(&self, job: &Job) -> JobResult {
        self.run_job_with(job, RunOptions::default()).await
    }

    /// Runs `jobs` with at most `concurrency` at a time; results are in the order of `jobs`.
    pub async fn run_jobs(
        &self,
        jobs: Vec<Job>,
        concurrency: usize,
        options: RunOptions,
    ) -> Vec<JobResult> {
        let gate = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        let mut handles = Vec::new();
        for job in jobs {
            let runner = self.clone();
            let gate = gate.clone();
            let opts = RunOptions {
                control: None,
                ..options.clone()
            };
            handles.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await;
                runner.run_job_with(&job, opts).await
            }));
        }
        let mut out = Vec::new();
        for h in handles {
            if let Ok(r) = h.await {
                out.push(r);
            }
        }
        out
    }

    pub async fn run_job_with(&self, job: &Job, opts: RunOptions) -> JobResult {
        let job_id = job
            .id
            .unwrap_or_else(|| self.next_job_id.fetch_add(1, Ordering::Relaxed));
        let control = opts.control.clone().unwrap_or_default();
        let log = JobTrace::new(self.config.output_limit, opts.live_log.clone());
        let runner_log = RunnerLog::new(opts.runner_log.clone());
        let mut run = JobRun::new(self, job, job_id, control, log, runner_log);
        run.execute().await
    }
}

/// One prepare attempt's executor state.
struct Attempt {
    number: u32,
    dir: PathBuf,
    job_env: indexmap::IndexMap<String, String>,
    driver: DriverConfig,
    builds_dir: String,
    project_dir: String,
    cache_dir: String,
    shell: String,
    hostname: String,
}

impl Attempt {
    fn exit_code_file(&self) -> PathBuf {
        self.dir.join("build_exit_code")
    }
}

/// The final error of a job, before it becomes a status line.
enum JobError {
    Script { exit_code: i32, message: String },
    Configuration(String),
    System(String),
}

struct JobRun<'a> {
    runner: &'a Runner,
    cfg: &'a RunnerConfig,
    job: &'a Job,
    job_id: u64,
    job_token: SecretString,
    short_token: String,
    control: JobControl,
    log: JobTrace,
    runner_log: RunnerLog,
    parent_env: Vec<(String, String)>,
    timeout: Duration,
    concurrent_id: u32,
    concurrent_project_id: u32,
    job_status: &'static str,
    stages: Vec<StageRecord>,
    attempts: u32,
    cleanup_calls: u32,
    temp_dirs: Vec<PathBuf>,
    held_pipe_stages: Vec<String>,
}

impl<'a> JobRun<'a> {
    fn new(
        runner: &'a Runner,
        job: &'a Job,
        job_id: u64,
        control: JobControl,
        log: JobTrace,
        runner_log: RunnerLog,
    ) -> Self {
        let cfg: &RunnerConfig = &runner.config;
        let random: String = rand::rng()
            .sample_iter(&Alphanumeric)
            .take(20)
            .map(char::from)
            .collect();
        let job_token = SecretString::from(format!("glcbt-64_{random}"));
        let timeout = job
            .timeout
            .filter(|t| !t.is_zero())
            .unwrap_or(cfg.default_job_timeout);
        Self {
            runner,
            cfg,
            job,
            job_id,
            job_token,
            short_token: short_token(cfg),
            control,
            log,
            runner_log,
            parent_env: parent_environment()
                .into_iter()
                .chain(cfg.service_env.iter().cloned())
                .collect(),
            timeout,
            concurrent_id: 0,
            concurrent_project_id: 0,
            job_status: "running",
            stages: Vec::new(),
            attempts: 0,
            cleanup_calls: 0,
            temp_dirs: Vec::new(),
            held_pipe_stages: Vec::new(),
        }
    }

    fn timeout_secs(&self) -> u64 {
        let t = self.timeout;
        t.as_secs() + u64::from(t.subsec_nanos() > 0)
    }

    /// The variable list as the driver sees it at this point (dirs empty before `StartBuild`).
    fn variables(&self, attempt: Option<&Attempt>) -> Vec<JobVariable> {
        let (builds_dir, project_dir) = match attempt {
            Some(a) if !a.project_dir.is_empty() => (a.builds_dir.as_str(), a.project_dir.as_str()),
            _ => ("", ""),
        };
        all_variables(&VariableContext {
            config: self.cfg,
            job: self.job,
            job_id: self.job_id,
            job_token: self.job_token.expose_secret(),
            short_token: &self.short_token,
            concurrent_id: self.concurrent_id,
            concurrent_project_id: self.concurrent_project_id,
            builds_dir,
            project_dir,
            job_status: self.job_status,
            timeout_secs: self.timeout_secs(),
        })
    }

    fn environment(&self, attempt: &Attempt) -> Vec<(String, String)> {
        let vars = self.variables(Some(attempt));
        stage_environment(&EnvInputs {
            parent: &self.parent_env,
            tmp_dir: &attempt.dir,
            job_env: &attempt.job_env,
            variables: &vars,
        })
    }

    async fn execute(&mut self) -> JobResult {
        let started = Instant::now();
        let project_pool = format!("{}/{}", self.short_token, project::PROJECT_ID);
        let [slot, project_slot] = self
            .runner
            .slots
            .acquire_all([self.short_token.as_str(), project_pool.as_str()]);
        self.concurrent_id = slot.id();
        self.concurrent_project_id = project_slot.id();

        let mut masks: Vec<String> = self
            .job
            .variables
            .iter()
            .filter(|v| v.masked)
            .map(|v| v.value.clone())
            .collect();
        masks.push(self.job_token.expose_secret().to_owned());
        masks.push(self.cfg.token.expose_secret().to_owned());
        self.log.set_masks(masks);

        let timer = {
            let control = self.control.clone();
            let timeout = self.timeout;
            tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                control.time_out();
            })
        };

        self.log.line(&format!(
            "Running with gitlab-runner {} ({})",
            project::RUNNER_VERSION,
            project::RUNNER_REVISION
        ));
        self.log.line(&format!(
            "  on {} {}, system ID: s_{:012x}",
            self.cfg.name, self.short_token, self.cfg.runner_id
        ));

        let outcome = match self.prepare().await {
            Ok(attempt) => {
                let result = self.run_stages(&attempt).await;
                self.cleanup(&attempt).await;
                result
            }
            Err(e) => Err(e),
        };
        timer.abort();

        let (status, exit_code, error) = self.final_status(outcome);
        let allowed_to_fail = status == JobStatus::ScriptFailure
            && (self.job.allow_failure
                || exit_code.is_some_and(|c| self.job.allow_failure_exit_codes.contains(&c)));
        match (&status, &error) {
            (JobStatus::Success, _) => self.log.notice("Job succeeded"),
            (JobStatus::SystemFailure, Some(e)) => {
                self.log.error(&format!("Job failed (system failure): {e}"))
            }
            (_, Some(e)) if allowed_to_fail => self.log.warning(&format!("Job failed: {e}")),
            (_, Some(e)) => self.log.error(&format!("Job failed: {e}")),
            (_, None) => self.log.error("Job failed"),
        }
        self.log.close();
        drop(project_slot);
        drop(slot);
        JobResult {
            job_id: self.job_id,
            job_name: self.job.name.clone(),
            status,
            exit_code,
            allowed_to_fail,
            error,
            attempts: self.attempts,
            cleanup_calls: self.cleanup_calls,
            stages: std::mem::take(&mut self.stages),
            duration: started.elapsed(),
            concurrent_id: self.concurrent_id,
            temp_dirs: std::mem::take(&mut self.temp_dirs),
            held_pipe_stages: std::mem::take(&mut self.held_pipe_stages),
            job_log: self.log.text(),
            runner_log: self.runner_log.lines(),
        }
    }

    /// A stop of the job context outranks whatever error the interrupted stage produced.
    fn final_status(
        &self,
        outcome: Result<(), JobError>,
    ) -> (JobStatus, Option<i32>, Option<String>) {
        match self.control.reason() {
            Some(StopReason::TimedOut) => {
                return (
                    JobStatus::TimedOut,
                    None,
                    Some(format!(
                        "execution took longer than {} seconds",
                        go_duration(self.timeout)
                    )),
                );
            }
            Some(StopReason::Canceled | StopReason::Aborted) => {
                return (JobStatus::Canceled, None, Some("canceled".into()));
            }
            None => {}
        }
        match outcome {
            Ok(()) => (JobStatus::Success, None, None),
            Err(JobError::Script { exit_code, message }) => {
                (JobStatus::ScriptFailure, Some(exit_code), Some(message))
            }
            Err(JobError::System(m)) => (JobStatus::SystemFailure, None, Some(m)),
            Err(JobError::Configuration(m)) => (JobStatus::ConfigurationError, None, Some(m)),
        }
    }

    // ---- prepare ------------------------------------------------------------------------------

    async fn prepare(&mut self) -> Result<Attempt, JobError> {
        self.log
            .section_start("prepare_executor", "Preparing the \"custom\" executor");
        let mut last: Option<StageError> = None;
        for number in 1..=self.cfg.preparation_attempts.max(1) {
            self.attempts = number;
            let mut attempt = match self.new_attempt(number) {
                Ok(a) => a,
                Err(e) => {
                    last = Some(StageError::System(e));
                    break;
                }
            };
            match self.prepare_attempt(&mut attempt).await {
                Ok(()) => {
                    self.log.section_end("prepare_executor");
                    return Ok(attempt);
                }
                Err(e) => {
                    self.cleanup(&attempt).await;
                    let stop = e.is_build_error() || self.control.job_ended();
                    if !stop {
                        self.log.error(&format!("Preparation failed: {e}"));
                        self.log.line(&format!(
                            "Will be retried in {} ...",
                            go_duration(self.cfg.preparation_retry_interval)
                        ));
                        tokio::time::sleep(self.cfg.preparation_retry_interval).await;
                    }
                    last = Some(e);
                    if stop {
                        break;
                    }
                }
            }
        }
        self.log.section_end("prepare_executor");
        Err(match last {
            Some(StageError::Build { exit_code }) => JobError::Script {
                exit_code,
                message: format!("exit status {exit_code}"),
            },
            Some(StageError::Configuration(m)) => JobError::Configuration(m),
            Some(e) => JobError::System(e.to_string()),
            None => JobError::System("preparation failed".into()),
        })
    }

    /// `os.MkdirTemp("", "custom-executor")` and `response.json` (0600).
    fn new_attempt(&mut self, number: u32) -> Result<Attempt, String> {
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

    async fn prepare_attempt(&mut self, attempt: &mut Attempt) -> Result<(), StageError> {
        if self.cfg.run_exec.is_none() {
            return Err(StageError::Configuration(
                "custom executor is missing RunExec".into(),
            ));
        }
        if let Some(cmd) = self.cfg.config_exec.clone() {
            let env = self.environment(attempt);
            let deadline = Instant::now() + self.cfg.config_exec_timeout;
            let stderr = Sink::Trace(self.log.clone());
            let (res, stdout) = self
                .invoke(
                    attempt,
                    "config",
                    &cmd,
                    Vec::new(),
                    &env,
                    Sink::Capture,
                    stderr,
                    self.control.job_context(),
                    Some(deadline),
                )
                .await;
            res?;
            attempt.driver =
                DriverConfig::parse(&stdout).map_err(|e| StageError::System(e.to_string()))?;
            attempt.job_env = attempt.driver.job_env.clone();
        }
        self.log.line(&startup_line(&attempt.driver));
        self.start_build(attempt)?;
        if let Some(cmd) = self.cfg.prepare_exec.clone() {
            let env = self.environment(attempt);
            let deadline = Instant::now() + self.cfg.prepare_exec_timeout;
            let (out, err) = (Sink::Trace(self.log.clone()), Sink::Trace(self.log.clone()));
            let (res, _) = self
                .invoke(
                    attempt,
                    "prepare",
                    &cmd,
                    Vec::new(),
                    &env,
                    out,
                    err,
                    self.control.job_context(),
                    Some(deadline),
                )
                .await;
            res?;
        }
        Ok(())
    }

    /// `StartBuild`: directories and shell, after the config overrides.
    fn start_build(&self, attempt: &mut Attempt) -> Result<(), StageError> {
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

    // ---- run ----------------------------------------------------------------------------------

    async fn run_stages(&mut self, attempt: &Attempt) -> Result<(), JobError> {
        let job_ctx = self.control.job_context();
        if let Err(e) = self
            .run_stage(attempt, RunStage::PrepareScript, job_ctx.clone(), None)
            .await
        {
            let check = "Check https://docs.gitlab.com/runner/shells/#shell-profile-loading for more information";
            return Err(job_error(&e, |m| {
                format!("prepare environment: {m}. {check}")
            }));
        }
        if self.control.job_ended() {
            return Err(JobError::System("canceled".into()));
        }

        let mut failure: Option<StageError> = self.get_sources(attempt, &job_ctx).await.err();
        if failure.is_none() && self.job.cache.as_ref().is_some_and(|c| !c.paths.is_empty()) {
            let tries = attempts_from(&self.variables(Some(attempt)), "RESTORE_CACHE_ATTEMPTS");
            failure = self
                .retry_stage(attempt, RunStage::RestoreCache, tries, &job_ctx)
                .await
                .err();
        }
        // download_artifacts: the simulated job has no dependencies, so it is always skipped.
        if self.control.job_ended() {
            return Err(JobError::System("canceled".into()));
        }

        let mut reached_user_steps = false;
        if failure.is_none() {
            reached_user_steps = true;
            match self.control.enter_user_script() {
                Some(script_ctx) => {
                    let r = self
                        .run_stage(attempt, RunStage::Step("script".into()), script_ctx, None)
                        .await;
                    self.control.leave_user_script();
                    failure = r.err();
                }
                None => failure = Some(StageError::Interrupted("canceled".into())),
            }
        }
        if self.control.job_ended() {
            return Err(JobError::System("canceled".into()));
        }
        let canceled = self.control.reason() == Some(StopReason::Canceled);
        if reached_user_steps {
            self.job_status = if canceled {
                "canceled"
            } else if failure.is_some() {
                "failed"
            } else {
                "success"
            };
        }
        if reached_user_steps && !self.job.after_script.is_empty() {
            let limit = after_script_timeout(&self.variables(Some(attempt)))
                .unwrap_or(self.cfg.after_script_timeout);
            let deadline = Some(Instant::now() + limit);
            if let Err(e) = self
                .run_stage(attempt, RunStage::AfterScript, job_ctx.clone(), deadline)
                .await
            {
                self.log.warning(&format!(
                    "after_script failed, but job will continue unaffected: {e}"
                ));
            }
            if self.control.job_ended() {
                return Err(JobError::System("canceled".into()));
            }
        }

        let failed = failure.is_some() || canceled;
        let wants_cache = self
            .job
            .cache
            .as_ref()
            .is_some_and(|c| !c.paths.is_empty() && c.when.matches(failed));
        let cache_error = self
            .run_transfer(
                attempt,
                wants_cache,
                RunStage::ArchiveCache { on_failure: failed },
                &job_ctx,
            )
            .await?;
        let wants_artifacts = self
            .job
            .artifacts
            .as_ref()
            .is_some_and(|a| !a.paths.is_empty() && a.when.matches(failed));
        let artifact_error = self
            .run_transfer(
                attempt,
                wants_artifacts,
                RunStage::UploadArtifacts { on_failure: failed },
                &job_ctx,
            )
            .await?;
        if let Err(e) = self
            .run_stage(
                attempt,
                RunStage::CleanupFileVariables,
                job_ctx.clone(),
                None,
            )
            .await
        {
            self.runner_log
                .record(format!("WARNING: cleanup_file_variables failed: {e}"));
        }
        // gitlab-runner's pickPriorityError: the job's own error, then cache, then artifacts.
        match failure.or(cache_error).or(artifact_error) {
            None => Ok(()),
            Some(e) => Err(job_error(&e, |m| m)),
        }
    }

    /// A cache or artifact sub-stage, run only when the job asks for it. Its failure is
    /// returned for gitlab-runner's error priority; a job that ended meanwhile is an `Err`.
    async fn run_transfer(
        &mut self,
        attempt: &Attempt,
        wanted: bool,
        stage: RunStage,
        ctx: &CancellationToken,
    ) -> Result<Option<StageError>, JobError> {
        if !wanted {
            return Ok(None);
        }
        let error = self
            .run_stage(attempt, stage, ctx.clone(), None)
            .await
            .err();
        if self.control.job_ended() {
            return Err(JobError::System("canceled".into()));
        }
        Ok(error)
    }

    async fn get_sources(
        &mut self,
        attempt: &Attempt,
        ctx: &CancellationToken,
    ) -> Result<(), StageError> {
        let tries = attempts_from(&self.variables(Some(attempt)), "GET_SOURCES_ATTEMPTS");
        let mut last = Ok(());
        for i in 0..tries {
            if i == 1 {
                let _ = self
                    .run_stage(attempt, RunStage::ClearWorktree, ctx.clone(), None)
                    .await;
            }
            last = self
                .run_stage(attempt, RunStage::GetSources, ctx.clone(), None)
                .await;
            if last.is_ok() || self.control.job_ended() {
                break;
            }
        }
        last
    }

    async fn retry_stage(
        &mut self,
        attempt: &Attempt,
        stage: RunStage,
        tries: u32,
        ctx: &CancellationToken,
    ) -> Result<(), StageError> {
        let mut last = Ok(());
        for _ in 0..tries {
            last = self
                .run_stage(attempt, stage.clone(), ctx.clone(), None)
                .await;
            if last.is_ok() || self.control.job_ended() {
                break;
            }
        }
        last
    }

    /// One `run_exec <run_args> <script> <stage>` call inside its log section.
    async fn run_stage(
        &mut self,
        attempt: &Attempt,
        stage: RunStage,
        ctx: CancellationToken,
        deadline: Option<Instant>,
    ) -> Result<(), StageError> {
        let Some(cmd) = self.cfg.run_exec.clone() else {
            return Err(StageError::Configuration(
                "custom executor is missing RunExec".into(),
            ));
        };
        let section = stage.section_name();
        self.log.section_start(&section, &stage.header());
        let vars = self.variables(Some(attempt));
        let script = script_for(
            &stage,
            &ScriptContext {
                job: self.job,
                variables: &vars,
                project_dir: &attempt.project_dir,
                cache_dir: &attempt.cache_dir,
                hostname: &attempt.hostname,
                shell: &attempt.shell,
            },
        );
        let path = match write_script(&attempt.dir, &script) {
            Ok(p) => p,
            Err(e) => {
                self.log.section_end(&section);
                return Err(StageError::System(e));
            }
        };
        if matches!(&stage, RunStage::Step(n) if n == "script") {
            self.log.warning(
                "Starting with version 17.0 the 'build_script' stage will be replaced with 'step_script': https://gitlab.com/groups/gitlab-org/-/epics/6112",
            );
        }
        let env = self.environment(attempt);
        let extra = vec![OsString::from(path), OsString::from(stage.driver_name())];
        let (out, err) = (Sink::Trace(self.log.clone()), Sink::Trace(self.log.clone()));
        let (res, _) = self
            .invoke(
                attempt,
                &stage.driver_name(),
                &cmd,
                extra,
                &env,
                out,
                err,
                ctx,
                deadline,
            )
            .await;
        self.log.section_end(&section);
        res
    }

    // ---- cleanup ------------------------------------------------------------------------------

    /// `cleanup_exec`: not cancellable, bounded only by its own timeout, output to the runner log.
    /// Then the attempt's temp dir is removed.
    async fn cleanup(&mut self, attempt: &Attempt) {
        if let Some(cmd) = self.cfg.cleanup_exec.clone() {
            self.cleanup_calls += 1;
            let env = self.environment(attempt);
            let deadline = Instant::now() + self.cfg.cleanup_exec_timeout;
            let out = Sink::Runner {
                log: self.runner_log.clone(),
                level: "DEBUG",
                stream: "out",
            };
            let err = Sink::Runner {
                log: self.runner_log.clone(),
                level: "WARNING",
                stream: "err",
            };
            let (res, _) = self
                .invoke(
                    attempt,
                    "cleanup",
                    &cmd,
                    Vec::new(),
                    &env,
                    out,
                    err,
                    CancellationToken::new(),
                    Some(deadline),
                )
                .await;
            if let Err(e) = res {
                self.log.warning(&format!("Cleanup script failed: {e}"));
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&attempt.dir) {
            self.runner_log
                .record(format!("WARNING: removing {}: {e}", attempt.dir.display()));
        }
    }

    // ---- one process --------------------------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    async fn invoke(
        &mut self,
        attempt: &Attempt,
        name: &str,
        cmd: &DriverCommand,
        extra_args: Vec<OsString>,
        env: &[(String, String)],
        stdout: Sink,
        stderr: Sink,
        context: CancellationToken,
        deadline: Option<Instant>,
    ) -> (Result<(), StageError>, Vec<u8>) {
        let started = Instant::now();
        self.control.enter_stage(name);
        let mut args = cmd.args.clone();
        args.extend(extra_args);
        let is_cleanup = name == "cleanup";
        let log = self.log.clone();
        let runner_log = self.runner_log.clone();
        let remark = move |text: String| {
            if is_cleanup {
                runner_log.record(format!("WARNING: {text}"));
            } else {
                log.warning(&text);
            }
        };
        let bounds = Bounds {
            context,
            deadline,
            graceful_kill: self.cfg.graceful_kill_timeout,
            force_kill: self.cfg.force_kill_timeout,
            held_pipe_grace: self.cfg.held_pipe_grace,
            job_end_wait: (!is_cleanup).then(|| {
                (
                    self.control.job_context(),
                    self.cfg.wait_for_build_finish_timeout,
                )
            }),
            remark: &remark,
        };
        let inv = Invocation {
            program: &cmd.program,
            args,
            cwd: &attempt.dir,
            env,
            stdout,
            stderr,
        };
        let outcome = process::run(inv, &bounds).await;
        if outcome.held_pipes {
            self.held_pipe_stages.push(name.to_owned());
        }
        let result = match outcome.ended {
            Ended::Exited(status) => map_exit(status, &attempt.exit_code_file()),
            Ended::StartFailed(m) => Err(StageError::System(m)),
            Ended::Stopped {
                cause: StopCause::Deadline,
                ..
            } => {
                let limit = deadline
                    .map(|d| d.saturating_duration_since(started))
                    .unwrap_or_default();
                Err(StageError::System(format!(
                    "{name} did not finish within {}: context deadline exceeded",
                    go_duration(limit)
                )))
            }
            Ended::Stopped {
                cause: StopCause::Context,
                ..
            } => Err(StageError::Interrupted(match self.control.reason() {
                Some(StopReason::TimedOut) => "context deadline exceeded".into(),
                _ => "context canceled".into(),
            })),
        };
        self.stages.push(StageRecord {
            name: name.to_owned(),
            attempt: attempt.number,
            duration: started.elapsed(),
            error: result.as_ref().err().map(ToString::to_string),
        });
        (result, outcome.stdout)
    }
}

fn job_error(e: &StageError, word: impl Fn(String) -> String) -> JobError {
    match e {
        StageError::Build { exit_code } => JobError::Script {
            exit_code: *exit_code,
            message: word(e.to_string()),
        },
        StageError::Configuration(_) => JobError::Configuration(word(e.to_string())),
        StageError::System(_) | StageError::Interrupted(_) => JobError::System(word(e.to_string())),
    }
}

/// `<tmp>/script<random>/script`, mode 0700, kept until the attempt's dir is removed.
fn write_script(dir: &Path, text: &str) -> Result<PathBuf, String> {
    let sub = tempfile::Builder::new()
        .prefix("script")
        .tempdir_in(dir)
        .map_err(|e| format!("creating the script dir: {e}"))?
        .keep();
    let path = sub.join("script");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o700)
        .open(&path)
        .map_err(|e| format!("writing the script: {e}"))?;
    f.write_all(text.as_bytes())
        .map_err(|e| format!("writing the script: {e}"))?;
    Ok(path)
}

/// `GET_SOURCES_ATTEMPTS` and friends: default 1, clamped to 1..=10.
fn attempts_from(vars: &[JobVariable], key: &str) -> u32 {
    lookup(vars, key)
        .and_then(|v| v.trim().parse::<u32>().ok())
        .map(|n| n.clamp(1, 10))
        .unwrap_or(1)
}

/// `RUNNER_AFTER_SCRIPT_TIMEOUT`, a Go duration such as `30s` or `5m`.
fn after_script_timeout(vars: &[JobVariable]) -> Option<Duration> {
    lookup(vars, "RUNNER_AFTER_SCRIPT_TIMEOUT")
        .and_then(|v| humantime::parse_duration(v.trim()).ok())
        .filter(|d| !d.is_zero())
}

fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Go's `time.Duration.String()` for the durations the log prints (`3s`, `1h0m0s`, `250ms`).
pub(crate) fn go_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    if d < Duration::from_secs(1) {
        let ms = d.as_secs_f64() * 1000.0;
        return if ms.fract() == 0.0 {
            format!("{}ms", ms as u64)
        } else {
            format!("{}ms", trim_float(ms))
        };
    }
    let total = d.as_secs();
    let (h, m) = (total / 3600, (total % 3600) / 60);
    let s = (total % 60) as f64 + f64::from(d.subsec_nanos()) / 1e9;
    let secs = trim_float(s);
    if h > 0 {
        format!("{h}h{m}m{secs}s")
    } else if m > 0 {
        format!("{m}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.9}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_duration_formats_like_go() {
        assert_eq!(go_duration(Duration::from_secs(3)), "3s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_secs(7200)), "2h0m0s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
    }
}
