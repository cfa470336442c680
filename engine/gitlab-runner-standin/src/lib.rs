//! A stand-in for gitlab-runner: it plays the runner's side of the custom-executor protocol
//! against any driver command (`config`, `prepare`, `run <script> <stage>`, `cleanup`), exactly as
//! `shared/reference/custom-executor-protocol.md` describes gitlab-runner 19.4 doing it.
//!
//! Entry point: [`Runner::new`] with a [`RunnerConfig`], then [`Runner::run_job`] (or
//! [`Runner::run_job_with`] to cancel it or to mirror its log live) with a [`Job`].

mod ansi;
mod bash_quoting;
mod concurrency;
mod config;
mod control;
mod driver_config;
mod env;
mod exit;
mod go_duration;
mod job;
mod job_run;
mod job_trace;
mod payload;
mod process;
mod project;
mod result;
mod run_stage;
mod runner_log;
mod script;
pub mod simulate;
mod stand_in;
mod variables;

pub use concurrency::{ConcurrencySlots, SlotGuard};
pub use config::{DriverCommand, RunnerConfig};
pub use control::{JobControl, StopReason};
pub use driver_config::{ConfigParseError, DriverConfig};
pub use exit::StageError;
pub use job::{Job, JobArtifacts, JobCache, JobFileError, JobVariable, When};
pub use job_trace::LiveWriter;
pub use result::{JobResult, JobStatus, StageRecord};
pub use run_stage::RunStage;
pub use stand_in::{RunOptions, Runner};

/// Writes a finished job's log and its summary line (for a job that was not mirrored live).
pub fn print_job_log(result: &JobResult, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    out.write_all(result.job_log.as_bytes())?;
    writeln!(out, "{}", result.summary_line())
}
