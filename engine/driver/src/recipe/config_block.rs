//! The `config:` block: what the config stage prints as JSON for gitlab-runner.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What `executor config` prints. Every field is optional; unset fields are left out so that
/// `config.toml` values apply. Paths are on the job's VM, not on the runner host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigBlock {
    /// Where builds are checked out on the VM (`CI_BUILDS_DIR`), e.g. `/builds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builds_dir: Option<String>,
    /// Where the local cache lives on the VM, e.g. `/cache`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<String>,
    /// Whether several jobs share `builds_dir`. A fresh VM per job means `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builds_dir_is_shared: Option<bool>,
    /// The name the job log shows in "Running on ... via HOSTNAME".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The driver name and version in gitlab-runner's startup line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<DriverInfo>,
    /// Variables gitlab-runner passes, unprefixed, to the later stages of this driver (not to the job).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub job_env: IndexMap<String, String>,
    /// The shell gitlab-runner generates scripts for: `bash` (the default), `sh`, `pwsh` or `powershell`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Shell>,
}

/// Driver identity for the startup line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DriverInfo {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// The shells gitlab-runner can generate scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Shell {
    Bash,
    Sh,
    Pwsh,
    Powershell,
}
