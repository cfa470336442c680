use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::steps::StepError;
use crate::steps::context::{Outputs, StepContext};
use crate::steps::ssh_connection::SshConnectionArgs;
use crate::steps::ssh_sessions::SshSessions;

/// Write a file on the server, e.g. a small program the job needs. The file appears atomically
/// and only when complete. Give exactly one of `content` and `source`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SshUpload {
    /// Connection settings; override the recipe's `ssh:` block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshConnectionArgs>,
    /// Destination path on the server.
    pub path: String,
    /// The file's text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// A local file to copy instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Octal permissions (default `0644`).
    #[serde(default = "default_mode")]
    pub mode: String,
}

fn default_mode() -> String {
    "0644".into()
}

impl SshUpload {
    pub async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outputs, StepError> {
        let mode = u32::from_str_radix(self.mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| {
                StepError::invalid(format!("`{}` is not an octal file mode", self.mode))
            })?;
        let args = SshConnectionArgs::merged(cx.services, self.ssh.as_ref())?;
        let conn = args.resolve(cx.state, cx.log, false)?;
        let session = SshSessions::of(cx.services).await?.get(&conn).await?;
        let bytes = match (&self.content, &self.source) {
            (Some(text), None) => {
                let data = text.clone().into_bytes();
                let len = data.len() as u64;
                session
                    .upload(&self.path, std::io::Cursor::new(data), len, mode)
                    .await?;
                len
            }
            (None, Some(local)) => {
                let local = std::path::Path::new(local);
                let len = std::fs::metadata(local)
                    .map_err(|e| StepError::invalid(format!("{}: {e}", local.display())))?
                    .len();
                session.upload_file(&self.path, local, mode).await?;
                len
            }
            _ => {
                return Err(StepError::invalid(
                    "give exactly one of `content` and `source`",
                ));
            }
        };
        let mut out = Outputs::new();
        out.insert("bytes".into(), Json::from(bytes));
        Ok(out)
    }
}
