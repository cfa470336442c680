use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::steps::StepError;
use crate::steps::context::{Outputs, StepContext};
use crate::steps::ssh_connection::STATE_KEY_FILE;
use executor_ssh::generate_job_key;

/// Generate this job's own ed25519 SSH key. The private half goes into the job's state
/// directory (mode 0600) and later SSH steps use it by default; the public half is an output
/// (`public_key`) for a key pair or cloud-init user data. The key is worthless after the job.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SshGenerateKey {
    /// File name inside the job state directory (default `ssh_key`).
    #[serde(default = "default_file_name")]
    pub file_name: String,
    /// Comment on the public key, e.g. `executor-{{ trusted.id }}`.
    #[serde(default = "default_comment")]
    pub comment: String,
}

fn default_file_name() -> String {
    "ssh_key".into()
}

fn default_comment() -> String {
    "executor".into()
}

impl SshGenerateKey {
    pub async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outputs, StepError> {
        if self.file_name.is_empty()
            || self.file_name.contains('/')
            || self.file_name.starts_with('.')
        {
            return Err(StepError::invalid(format!(
                "`{}` is not a plain file name",
                self.file_name
            )));
        }
        let dir = cx.state.dir().map(|d| d.to_path_buf()).ok_or_else(|| {
            StepError::invalid("the job state has no directory to keep the key in")
        })?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| StepError::other(format!("cannot create {}: {e}", dir.display())))?;
        let key = generate_job_key(&dir, &self.file_name, &self.comment)?;
        let path = key.private_path.display().to_string();
        cx.state.set(STATE_KEY_FILE, Json::String(path.clone()));
        // Saved at once: a later stage is another process and must see it even if this one dies.
        cx.state
            .save()
            .map_err(|e| StepError::other(format!("cannot save the job state: {e}")))?;
        cx.log
            .info(&format!("generated the job's SSH key {}", key.fingerprint));
        let mut out = Outputs::new();
        out.insert("public_key".into(), Json::String(key.public_openssh));
        out.insert("fingerprint".into(), Json::String(key.fingerprint));
        out.insert("private_key_file".into(), Json::String(path));
        Ok(out)
    }
}
