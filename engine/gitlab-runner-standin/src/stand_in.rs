//! The stand-in itself: one `[[runners]]` entry that takes jobs, each run as gitlab-runner's
//! `Build.Run` for the custom executor does it (`JobRun`), against any driver.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::concurrency::ConcurrencySlots;
use super::config::RunnerConfig;
use super::control::JobControl;
use super::job::Job;
use super::job_run::JobRun;
use super::job_trace::{JobTrace, LiveWriter};
use super::result::JobResult;
use super::runner_log::RunnerLog;

/// Plays gitlab-runner's part for one `[[runners]]` entry. Clones share the job-id counter and
/// the `CI_CONCURRENT_ID` slots, so concurrent jobs of one runner see each other.
#[derive(Clone)]
pub struct Runner {
    pub(crate) config: Arc<RunnerConfig>,
    pub(crate) slots: ConcurrencySlots,
    next_job_id: Arc<AtomicU64>,
    pub(crate) uuid: String,
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
