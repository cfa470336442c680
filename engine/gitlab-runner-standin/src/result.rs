//! What a job run produced, for people (the log, the summary line) and for tests.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Success,
    /// `script_failure`; the exit code is in [`JobResult::exit_code`].
    ScriptFailure,
    /// `runner_system_failure`.
    SystemFailure,
    /// A `ConfigurationError` (missing `run_exec`, empty `builds_dir`...): never retried.
    ConfigurationError,
    Canceled,
    TimedOut,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Success => "success",
            JobStatus::ScriptFailure => "script_failure",
            JobStatus::SystemFailure => "runner_system_failure",
            JobStatus::ConfigurationError => "config_error",
            JobStatus::Canceled => "canceled",
            JobStatus::TimedOut => "timed_out",
        }
    }
}

/// One driver invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageRecord {
    /// `config`, `prepare`, `cleanup`, or the run sub-stage name passed to `run_exec`.
    pub name: String,
    /// The prepare attempt this invocation belongs to (1-based).
    pub attempt: u32,
    pub duration: Duration,
    /// `None` on success, else the error as gitlab-runner would word it.
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct JobResult {
    pub job_id: u64,
    pub job_name: String,
    pub status: JobStatus,
    /// The exit code reported to GitLab for a script failure.
    pub exit_code: Option<i32>,
    /// A script failure whose exit code is in `allow_failure: exit_codes`.
    pub allowed_to_fail: bool,
    /// The error text of the final `ERROR: Job failed...` line, if any.
    pub error: Option<String>,
    pub attempts: u32,
    pub cleanup_calls: u32,
    pub stages: Vec<StageRecord>,
    pub duration: Duration,
    pub concurrent_id: u32,
    /// The per-attempt `custom-executor*` directories (all removed by the end).
    pub temp_dirs: Vec<PathBuf>,
    /// Stages where the driver exited but left its pipes held open by another process.
    pub held_pipe_stages: Vec<String>,
    pub job_log: String,
    pub runner_log: Vec<String>,
}

impl JobResult {
    /// Names of the driver invocations in order (`config`, `prepare`, `prepare_script`, ...).
    pub fn stage_names(&self) -> Vec<&str> {
        self.stages.iter().map(|s| s.name.as_str()).collect()
    }

    /// One line for humans: status, exit code, attempts and the time spent per stage.
    pub fn summary_line(&self) -> String {
        let mut s = format!(
            "job {} ({}): {}",
            self.job_id,
            self.job_name,
            self.status.as_str()
        );
        if let Some(code) = self.exit_code {
            s.push_str(&format!(
                " (exit code {code}{})",
                if self.allowed_to_fail {
                    ", allowed to fail"
                } else {
                    ""
                }
            ));
        }
        s.push_str(&format!(
            " in {:.1}s; attempts {}, cleanup calls {}",
            self.duration.as_secs_f64(),
            self.attempts,
            self.cleanup_calls
        ));
        let stages: Vec<String> = self
            .stages
            .iter()
            .map(|st| format!("{} {:.1}s", st.name, st.duration.as_secs_f64()))
            .collect();
        if !stages.is_empty() {
            s.push_str(" | ");
            s.push_str(&stages.join(", "));
        }
        s
    }
}
