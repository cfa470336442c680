//! How a job ended: the error that decides it, and its status. A stop of the job (timeout,
//! cancel) outranks whatever error the interrupted stage produced, as in gitlab-runner.

use super::JobRun;
use crate::control::StopReason;
use crate::exit::StageError;
use crate::go_duration::go_duration;
use crate::result::JobStatus;

/// The final error of a job, before it becomes a status line.
pub(super) enum JobError {
    Script { exit_code: i32, message: String },
    Configuration(String),
    System(String),
}

/// How the job ended, as its result reports it.
pub(super) struct Verdict {
    pub(super) status: JobStatus,
    pub(super) exit_code: Option<i32>,
    pub(super) allowed_to_fail: bool,
    pub(super) error: Option<String>,
}

impl JobRun<'_> {
    /// Says how the job ended in the trace's last line, and closes the trace.
    pub(super) fn announce_verdict(&self, outcome: Result<(), JobError>) -> Verdict {
        let (status, exit_code, error) = self.final_status(outcome);
        let allowed_to_fail = status == JobStatus::ScriptFailure
            && (self.job.allow_failure
                || exit_code.is_some_and(|c| self.job.allow_failure_exit_codes.contains(&c)));
        match (&status, &error) {
            (JobStatus::Success, _) => self.trace.notice("Job succeeded"),
            (JobStatus::SystemFailure, Some(e)) => self
                .trace
                .error(&format!("Job failed (system failure): {e}")),
            (_, Some(e)) if allowed_to_fail => self.trace.warning(&format!("Job failed: {e}")),
            (_, Some(e)) => self.trace.error(&format!("Job failed: {e}")),
            (_, None) => self.trace.error("Job failed"),
        }
        self.trace.close();
        Verdict {
            status,
            exit_code,
            allowed_to_fail,
            error,
        }
    }

    /// The job's status, exit code and error message.
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
}

/// A stage's error as the job's, its message reworded by `word`.
pub(super) fn job_error(e: &StageError, word: impl Fn(String) -> String) -> JobError {
    match e {
        StageError::Build { exit_code } => JobError::Script {
            exit_code: *exit_code,
            message: word(e.to_string()),
        },
        StageError::Configuration(_) => JobError::Configuration(word(e.to_string())),
        StageError::System(_) | StageError::Interrupted(_) => JobError::System(word(e.to_string())),
    }
}
