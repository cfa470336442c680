//! One run sub-stage: its script written to the attempt's temp dir, then
//! `run_exec <run_args> <script> <stage>` inside the sub-stage's trace section.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::JobRun;
use super::attempt::Attempt;
use super::driver_call::DriverCall;
use crate::exit::StageError;
use crate::process::Sink;
use crate::run_stage::RunStage;
use crate::script::{ScriptContext, script_for};

impl JobRun<'_> {
    /// One `run_exec <run_args> <script> <stage>` call inside its log section.
    pub(super) async fn run_stage(
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
        self.trace.section_start(&section, &stage.header());
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
                self.trace.section_end(&section);
                return Err(StageError::System(e));
            }
        };
        if matches!(&stage, RunStage::Step(n) if n == "script") {
            self.trace.warning(
                "Starting with version 17.0 the 'build_script' stage will be replaced with 'step_script': https://gitlab.com/groups/gitlab-org/-/epics/6112",
            );
        }
        let env = self.environment(attempt);
        let extra = vec![OsString::from(path), OsString::from(stage.driver_name())];
        let (out, err) = (
            Sink::Trace(self.trace.clone()),
            Sink::Trace(self.trace.clone()),
        );
        let (res, _) = self
            .invoke(
                attempt,
                DriverCall {
                    name: &stage.driver_name(),
                    cmd: &cmd,
                    extra_args: extra,
                    env: &env,
                    stdout: out,
                    stderr: err,
                    context: ctx,
                    deadline,
                },
            )
            .await;
        self.trace.section_end(&section);
        res
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
