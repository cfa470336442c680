use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::steps::StepError;
use crate::steps::context::{Outputs, StepContext};
use crate::steps::ssh_connection::SshConnectionArgs;
use crate::steps::ssh_sessions::SshSessions;
use executor_ssh::{RemoteExit, ScriptOptions, SshError};

/// Run gitlab-runner's script on the server: the file is streamed into a remote shell and its
/// output streamed back live, byte for byte. A non-zero exit is the job's own failure (its
/// code reaches `BUILD_EXIT_CODE_FILE`); a lost connection is a system failure. On SIGTERM the
/// remote script and its children are stopped; the server is left alone.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SshRunScript {
    /// Connection settings; override the recipe's `ssh:` block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshConnectionArgs>,
    /// Local script to run. Default: the script gitlab-runner passed to `run` (`run.script`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
}

impl SshRunScript {
    pub async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outputs, StepError> {
        let script = match (&self.script, cx.run) {
            (Some(path), _) => std::path::PathBuf::from(path),
            (None, Some(run)) => run.script.clone(),
            (None, None) => {
                return Err(StepError::invalid(
                    "`ssh_run_script` needs `script` outside the run stage",
                ));
            }
        };
        let args = SshConnectionArgs::merged(cx.services, self.ssh.as_ref())?;
        let conn = args.resolve(cx.state, cx.log, false)?;
        let session = SshSessions::of(cx.services).await?.get(&conn).await?;
        let (mut stdout, mut stderr) = (
            executor_ssh::DirectOutput::Stdout,
            executor_ssh::DirectOutput::Stderr,
        );
        let result = session
            .run_script(
                &script,
                &mut stdout,
                &mut stderr,
                &ScriptOptions::default(),
                cx.cancel,
            )
            .await;
        let exit = match result {
            Ok(exit) => exit,
            Err(SshError::Canceled { remote_stopped }) => {
                if !remote_stopped {
                    cx.log
                        .warn("could not confirm that the remote script was stopped");
                }
                return Err(StepError::canceled());
            }
            Err(e) => return Err(e.into()),
        };
        if let RemoteExit::Signal { .. } = &exit {
            cx.log.warn(&format!("the job script was killed by {exit}"));
        }
        let code = exit.shell_code();
        if code != 0 {
            return Err(StepError::script(i32::try_from(code).unwrap_or(i32::MAX)));
        }
        let mut out = Outputs::new();
        out.insert("exit_code".into(), Json::from(code));
        Ok(out)
    }
}
