//! One driver process, as every stage starts it: the stage is recorded, the process is bounded
//! by its context and deadline and killed as gitlab-runner kills it, and its end is mapped to
//! the stage's error.

use std::ffi::OsString;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::JobRun;
use super::attempt::Attempt;
use crate::config::DriverCommand;
use crate::control::StopReason;
use crate::exit::{StageError, map_exit};
use crate::go_duration::go_duration;
use crate::process::{self, Bounds, Ended, Invocation, Sink, StopCause};
use crate::result::StageRecord;

/// One call of a driver command by a stage.
pub(super) struct DriverCall<'c> {
    /// The stage as records and the job control name it: `config`, `prepare`, a run
    /// sub-stage, `cleanup`.
    pub name: &'c str,
    pub cmd: &'c DriverCommand,
    /// Appended to the command's own args: `run` adds the script and the sub-stage.
    pub extra_args: Vec<OsString>,
    pub env: &'c [(String, String)],
    pub stdout: Sink,
    pub stderr: Sink,
    /// Cancelling it stops the process as gitlab-runner does.
    pub context: CancellationToken,
    pub deadline: Option<Instant>,
}

impl JobRun<'_> {
    /// Runs `call` for `attempt`; its result, and its stdout when captured.
    pub(super) async fn invoke(
        &mut self,
        attempt: &Attempt,
        call: DriverCall<'_>,
    ) -> (Result<(), StageError>, Vec<u8>) {
        let DriverCall {
            name,
            cmd,
            extra_args,
            env,
            stdout,
            stderr,
            context,
            deadline,
        } = call;
        let started = Instant::now();
        self.control.enter_stage(name);
        let mut args = cmd.args.clone();
        args.extend(extra_args);
        let is_cleanup = name == "cleanup";
        let trace = self.trace.clone();
        let runner_log = self.runner_log.clone();
        let remark = move |text: String| {
            if is_cleanup {
                runner_log.record(format!("WARNING: {text}"));
            } else {
                trace.warning(&text);
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
        let result = self.stage_result(name, outcome.ended, attempt, started, deadline);
        self.stages.push(StageRecord {
            name: name.to_owned(),
            attempt: attempt.number,
            duration: started.elapsed(),
            error: result.as_ref().err().map(ToString::to_string),
        });
        (result, outcome.stdout)
    }

    /// How the process's end reads as the stage's result: its exit status (and the attempt's
    /// exit code file), or why it was stopped.
    fn stage_result(
        &self,
        name: &str,
        ended: Ended,
        attempt: &Attempt,
        started: Instant,
        deadline: Option<Instant>,
    ) -> Result<(), StageError> {
        match ended {
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
        }
    }
}
