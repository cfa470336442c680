//! The cleanup stage: gitlab-runner runs `cleanup_exec` after every failed prepare attempt and
//! after the run stages, whatever happened, and it cannot be cancelled.

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::JobRun;
use super::attempt::Attempt;
use super::driver_call::DriverCall;
use crate::process::Sink;

impl JobRun<'_> {
    /// `cleanup_exec`: not cancellable, bounded only by its own timeout, output to the runner log.
    /// Then the attempt's temp dir is removed.
    pub(super) async fn cleanup(&mut self, attempt: &Attempt) {
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
                    DriverCall {
                        name: "cleanup",
                        cmd: &cmd,
                        extra_args: Vec::new(),
                        env: &env,
                        stdout: out,
                        stderr: err,
                        context: CancellationToken::new(),
                        deadline: Some(deadline),
                    },
                )
                .await;
            if let Err(e) = res {
                self.trace.warning(&format!("Cleanup script failed: {e}"));
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&attempt.dir) {
            self.runner_log
                .record(format!("WARNING: removing {}: {e}", attempt.dir.display()));
        }
    }
}
