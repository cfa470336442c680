//! The run sub-stages in gitlab-runner's order: prepare_script, get_sources, restore_cache,
//! the job's script, after_script, archive_cache, upload_artifacts and
//! cleanup_file_variables, with gitlab-runner's retries and its rules for what a failure skips.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::JobRun;
use super::attempt::Attempt;
use super::outcome::{JobError, job_error};
use crate::control::StopReason;
use crate::exit::StageError;
use crate::job::JobVariable;
use crate::run_stage::RunStage;
use crate::variables::lookup;

impl JobRun<'_> {
    /// The run sub-stages. A job that ended (canceled, timed out) stops them at once. A failure
    /// before the job's script skips the script and after_script; the cache and artifact stages
    /// run as their `when` asks, and cleanup_file_variables always.
    pub(super) async fn run_stages(&mut self, attempt: &Attempt) -> Result<(), JobError> {
        let job_ctx = self.control.job_context();
        self.prepare_script(attempt, &job_ctx).await?;
        let mut failure = self.sources_and_cache(attempt, &job_ctx).await;
        // download_artifacts: the simulated job has no dependencies, so it is always skipped.
        self.fail_if_job_ended()?;
        let reached_user_steps = failure.is_none();
        if reached_user_steps {
            failure = self.user_script(attempt).await;
        }
        self.fail_if_job_ended()?;
        let canceled = self.control.reason() == Some(StopReason::Canceled);
        if reached_user_steps {
            self.job_status = if canceled {
                "canceled"
            } else if failure.is_some() {
                "failed"
            } else {
                "success"
            };
            if !self.job.after_script.is_empty() {
                self.after_script(attempt, &job_ctx).await?;
            }
        }

        let failed = failure.is_some() || canceled;
        let cache_error = self.archive_cache(attempt, failed, &job_ctx).await?;
        let artifact_error = self.upload_artifacts(attempt, failed, &job_ctx).await?;
        self.cleanup_file_variables(attempt, &job_ctx).await;
        // gitlab-runner's pickPriorityError: the job's own error, then cache, then artifacts.
        match failure.or(cache_error).or(artifact_error) {
            None => Ok(()),
            Some(e) => Err(job_error(&e, |m| m)),
        }
    }

    /// Once the job context has ended, no further stage starts.
    fn fail_if_job_ended(&self) -> Result<(), JobError> {
        if self.control.job_ended() {
            return Err(JobError::System("canceled".into()));
        }
        Ok(())
    }

    /// A failing prepare_script fails the job with gitlab-runner's hint about shell profiles.
    async fn prepare_script(
        &mut self,
        attempt: &Attempt,
        job_ctx: &CancellationToken,
    ) -> Result<(), JobError> {
        if let Err(e) = self
            .run_stage(attempt, RunStage::PrepareScript, job_ctx.clone(), None)
            .await
        {
            let check = "Check https://docs.gitlab.com/runner/shells/#shell-profile-loading for more information";
            return Err(job_error(&e, |m| {
                format!("prepare environment: {m}. {check}")
            }));
        }
        self.fail_if_job_ended()
    }

    /// get_sources, then restore_cache when the job has a cache; the first failure.
    async fn sources_and_cache(
        &mut self,
        attempt: &Attempt,
        job_ctx: &CancellationToken,
    ) -> Option<StageError> {
        let failure = self.get_sources(attempt, job_ctx).await.err();
        if failure.is_none() && self.job.cache.as_ref().is_some_and(|c| !c.paths.is_empty()) {
            let tries = attempts_from(&self.variables(Some(attempt)), "RESTORE_CACHE_ATTEMPTS");
            return self
                .retry_stage(attempt, RunStage::RestoreCache, tries, job_ctx)
                .await
                .err();
        }
        failure
    }

    /// The job's script, in a context of its own: a cancel ends it, while after_script still
    /// runs in the job context.
    async fn user_script(&mut self, attempt: &Attempt) -> Option<StageError> {
        match self.control.enter_user_script() {
            Some(script_ctx) => {
                let r = self
                    .run_stage(attempt, RunStage::Step("script".into()), script_ctx, None)
                    .await;
                self.control.leave_user_script();
                r.err()
            }
            None => Some(StageError::Interrupted("canceled".into())),
        }
    }

    /// after_script, bounded by `RUNNER_AFTER_SCRIPT_TIMEOUT`; its failure is only a warning.
    async fn after_script(
        &mut self,
        attempt: &Attempt,
        job_ctx: &CancellationToken,
    ) -> Result<(), JobError> {
        let limit = after_script_timeout(&self.variables(Some(attempt)))
            .unwrap_or(self.cfg.after_script_timeout);
        let deadline = Some(Instant::now() + limit);
        if let Err(e) = self
            .run_stage(attempt, RunStage::AfterScript, job_ctx.clone(), deadline)
            .await
        {
            self.trace.warning(&format!(
                "after_script failed, but job will continue unaffected: {e}"
            ));
        }
        self.fail_if_job_ended()
    }

    async fn archive_cache(
        &mut self,
        attempt: &Attempt,
        failed: bool,
        job_ctx: &CancellationToken,
    ) -> Result<Option<StageError>, JobError> {
        let wanted = self
            .job
            .cache
            .as_ref()
            .is_some_and(|c| !c.paths.is_empty() && c.when.matches(failed));
        let stage = RunStage::ArchiveCache { on_failure: failed };
        self.run_transfer(attempt, wanted, stage, job_ctx).await
    }

    async fn upload_artifacts(
        &mut self,
        attempt: &Attempt,
        failed: bool,
        job_ctx: &CancellationToken,
    ) -> Result<Option<StageError>, JobError> {
        let wanted = self
            .job
            .artifacts
            .as_ref()
            .is_some_and(|a| !a.paths.is_empty() && a.when.matches(failed));
        let stage = RunStage::UploadArtifacts { on_failure: failed };
        self.run_transfer(attempt, wanted, stage, job_ctx).await
    }

    /// Its failure goes to the runner log only, as in gitlab-runner.
    async fn cleanup_file_variables(&mut self, attempt: &Attempt, job_ctx: &CancellationToken) {
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
        self.fail_if_job_ended()?;
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
