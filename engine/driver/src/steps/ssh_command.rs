use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::steps::StepError;
use crate::steps::context::{Outputs, StepContext};
use crate::steps::ssh_connection::SshConnectionArgs;
use crate::steps::ssh_sessions::SshSessions;

/// Run a command on the server and capture its output as step outputs (`stdout`, `stderr`,
/// `exit_code`, `truncated`), e.g. to read `/etc/os-release` or wait for cloud-init.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SshCommand {
    /// Connection settings; override the recipe's `ssh:` block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshConnectionArgs>,
    /// The command line, run by the login shell.
    pub command: String,
    /// Text fed to the command's stdin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Keep at most this many bytes of each stream (default 1048576).
    #[serde(default = "default_max_output")]
    pub max_output: usize,
    /// Fail the step when the command exits non-zero (default true).
    #[serde(default = "default_check")]
    pub check: bool,
}

fn default_max_output() -> usize {
    1 << 20
}

fn default_check() -> bool {
    true
}

impl SshCommand {
    pub async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outputs, StepError> {
        let args = SshConnectionArgs::merged(cx.services, self.ssh.as_ref())?;
        let conn = args.resolve(cx.state, cx.log, false)?;
        let session = SshSessions::of(cx.services).await?.get(&conn).await?;
        let output = session
            .run_command(
                &self.command,
                self.stdin.as_deref().map(str::as_bytes),
                self.max_output,
                cx.cancel,
            )
            .await?;
        if self.check && !output.exit.success() {
            return Err(StepError::other(format!(
                "`{}` failed with {}: {}",
                self.command,
                output.exit,
                output.stderr_tail(2048)
            )));
        }
        let mut out = Outputs::new();
        out.insert(
            "stdout".into(),
            Json::String(String::from_utf8_lossy(&output.stdout).into_owned()),
        );
        out.insert(
            "stderr".into(),
            Json::String(String::from_utf8_lossy(&output.stderr).into_owned()),
        );
        out.insert("exit_code".into(), Json::from(output.exit.shell_code()));
        out.insert("truncated".into(), Json::Bool(output.truncated));
        Ok(out)
    }
}
