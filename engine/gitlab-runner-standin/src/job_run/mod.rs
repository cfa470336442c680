//! One job from start to end, as gitlab-runner's `Build.Run` runs it for the custom executor:
//! prepare (with retries), the run sub-stages, cleanup, then the job's status. Each concern is
//! a file of its own; they all extend `JobRun`, which holds what the job knows so far.

mod attempt;
mod build_stages;
mod cleanup;
mod driver_call;
mod outcome;
mod prepare;
mod run_exec;

use std::path::PathBuf;
use std::time::Duration;

use rand::RngExt;
use rand::distr::Alphanumeric;
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use crate::concurrency::SlotGuard;
use crate::config::RunnerConfig;
use crate::control::JobControl;
use crate::env::{EnvInputs, parent_environment, stage_environment};
use crate::job::{Job, JobVariable};
use crate::job_trace::JobTrace;
use crate::project;
use crate::result::{JobResult, StageRecord};
use crate::runner_log::RunnerLog;
use crate::stand_in::Runner;
use crate::variables::{VariableContext, all_variables, short_token};
use attempt::Attempt;
use outcome::Verdict;

pub(crate) struct JobRun<'a> {
    runner: &'a Runner,
    cfg: &'a RunnerConfig,
    job: &'a Job,
    job_id: u64,
    job_token: SecretString,
    short_token: String,
    control: JobControl,
    trace: JobTrace,
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
    pub(crate) fn new(
        runner: &'a Runner,
        job: &'a Job,
        job_id: u64,
        control: JobControl,
        trace: JobTrace,
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
            trace,
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

    /// The whole job. Its `CI_CONCURRENT_ID` slots are held until the trace is closed.
    pub(crate) async fn execute(&mut self) -> JobResult {
        let started = Instant::now();
        let [slot, project_slot] = self.take_concurrency_slots();
        self.mask_secrets();
        let timer = self.start_job_timeout();
        self.trace.line(&format!(
            "Running with gitlab-runner {} ({})",
            project::RUNNER_VERSION,
            project::RUNNER_REVISION
        ));
        self.trace.line(&format!(
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

        let verdict = self.announce_verdict(outcome);
        drop(project_slot);
        drop(slot);
        self.result(verdict, started)
    }

    /// `CI_CONCURRENT_ID` (per runner) and `CI_CONCURRENT_PROJECT_ID` (per runner and project),
    /// taken under one lock as gitlab-runner takes them.
    fn take_concurrency_slots(&mut self) -> [SlotGuard; 2] {
        let project_pool = format!("{}/{}", self.short_token, project::PROJECT_ID);
        let slots = self
            .runner
            .slots
            .acquire_all([self.short_token.as_str(), project_pool.as_str()]);
        self.concurrent_id = slots[0].id();
        self.concurrent_project_id = slots[1].id();
        slots
    }

    /// Masked variables, the job token and the runner token never reach the trace.
    fn mask_secrets(&self) {
        let mut masks: Vec<String> = self
            .job
            .variables
            .iter()
            .filter(|v| v.masked)
            .map(|v| v.value.clone())
            .collect();
        masks.push(self.job_token.expose_secret().to_owned());
        masks.push(self.cfg.token.expose_secret().to_owned());
        self.trace.set_masks(masks);
    }

    /// The job timeout ends the job context, which stops whatever stage is running.
    fn start_job_timeout(&self) -> tokio::task::JoinHandle<()> {
        let control = self.control.clone();
        let timeout = self.timeout;
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            control.time_out();
        })
    }

    fn result(&mut self, verdict: Verdict, started: Instant) -> JobResult {
        JobResult {
            job_id: self.job_id,
            job_name: self.job.name.clone(),
            status: verdict.status,
            exit_code: verdict.exit_code,
            allowed_to_fail: verdict.allowed_to_fail,
            error: verdict.error,
            attempts: self.attempts,
            cleanup_calls: self.cleanup_calls,
            stages: std::mem::take(&mut self.stages),
            duration: started.elapsed(),
            concurrent_id: self.concurrent_id,
            temp_dirs: std::mem::take(&mut self.temp_dirs),
            held_pipe_stages: std::mem::take(&mut self.held_pipe_stages),
            job_log: self.trace.text(),
            runner_log: self.runner_log.lines(),
        }
    }
}
