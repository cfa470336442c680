//! Preparing the executor: `config_exec`, `StartBuild` and `prepare_exec`, tried up to
//! `preparation_attempts` times with cleanup after each failed attempt, as gitlab-runner does.

use tokio::time::Instant;

use super::JobRun;
use super::attempt::Attempt;
use super::driver_call::DriverCall;
use super::outcome::JobError;
use crate::driver_config::{DriverConfig, startup_line};
use crate::exit::StageError;
use crate::go_duration::go_duration;
use crate::process::Sink;

impl JobRun<'_> {
    /// Attempts until one is prepared, or a build error or the end of the job stops them, or
    /// they run out; the prepared attempt is the one the run stages use.
    pub(super) async fn prepare(&mut self) -> Result<Attempt, JobError> {
        self.trace
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
                    self.trace.section_end("prepare_executor");
                    return Ok(attempt);
                }
                Err(e) => {
                    self.cleanup(&attempt).await;
                    let stop = e.is_build_error() || self.control.job_ended();
                    if !stop {
                        self.trace.error(&format!("Preparation failed: {e}"));
                        self.trace.line(&format!(
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
        self.trace.section_end("prepare_executor");
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

    async fn prepare_attempt(&mut self, attempt: &mut Attempt) -> Result<(), StageError> {
        if self.cfg.run_exec.is_none() {
            return Err(StageError::Configuration(
                "custom executor is missing RunExec".into(),
            ));
        }
        if let Some(cmd) = self.cfg.config_exec.clone() {
            let env = self.environment(attempt);
            let deadline = Instant::now() + self.cfg.config_exec_timeout;
            let stderr = Sink::Trace(self.trace.clone());
            let (res, stdout) = self
                .invoke(
                    attempt,
                    DriverCall {
                        name: "config",
                        cmd: &cmd,
                        extra_args: Vec::new(),
                        env: &env,
                        stdout: Sink::Capture,
                        stderr,
                        context: self.control.job_context(),
                        deadline: Some(deadline),
                    },
                )
                .await;
            res?;
            attempt.driver =
                DriverConfig::parse(&stdout).map_err(|e| StageError::System(e.to_string()))?;
            attempt.job_env = attempt.driver.job_env.clone();
        }
        self.trace.line(&startup_line(&attempt.driver));
        self.start_build(attempt)?;
        if let Some(cmd) = self.cfg.prepare_exec.clone() {
            let env = self.environment(attempt);
            let deadline = Instant::now() + self.cfg.prepare_exec_timeout;
            let (out, err) = (
                Sink::Trace(self.trace.clone()),
                Sink::Trace(self.trace.clone()),
            );
            let (res, _) = self
                .invoke(
                    attempt,
                    DriverCall {
                        name: "prepare",
                        cmd: &cmd,
                        extra_args: Vec::new(),
                        env: &env,
                        stdout: out,
                        stderr: err,
                        context: self.control.job_context(),
                        deadline: Some(deadline),
                    },
                )
                .await;
            res?;
        }
        Ok(())
    }
}
