//! How to reach the cloud: the part a recipe may carry.
//!
//! Credentials never live here; they come from clouds.yaml/secure.yaml or `OS_*` variables, as
//! with every other OpenStack tool.

use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Connection settings for the OpenStack back end.
///
/// Everything is optional: with nothing set, `OS_CLOUD` (and clouds.yaml) or the plain `OS_*`
/// variables decide, as for the `openstack` CLI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CloudSettings {
    /// Name of the cloud entry in clouds.yaml. Overrides `OS_CLOUD`.
    pub cloud: Option<String>,
    /// Name of this runner installation, recorded as `executor:runner` on every server and
    /// used by cleanup and the reaper to prove a server is ours. Give every runner manager
    /// that shares an OpenStack project its own. Default `executor`.
    pub owner: Option<String>,
    /// Path of a clouds.yaml to read instead of the standard places (`./clouds.yaml`,
    /// `~/.config/openstack/clouds.yaml`, `/etc/openstack/clouds.yaml`). `OS_CLIENT_CONFIG_FILE`
    /// does the same from the environment; this setting wins over it.
    pub clouds_yaml: Option<PathBuf>,
    /// Region of the endpoints to use. Overrides `region_name` and `OS_REGION_NAME`.
    pub region: Option<String>,
    /// Endpoint interface: `public`, `internal` or `admin`. Overrides `interface` and
    /// `OS_INTERFACE`; default `public`.
    pub interface: Option<String>,
    /// PEM file of the CA that signs the cloud's certificates. Overrides `cacert` and `OS_CACERT`.
    pub cacert: Option<PathBuf>,
    /// Set to `false` to skip TLS certificate verification (a test cloud only). Overrides
    /// `verify` in clouds.yaml and `OS_INSECURE`.
    pub verify: Option<bool>,
    /// Upper bound for one HTTP request, e.g. `60s`.
    #[serde(with = "executor_foundation::durations::text")]
    #[schemars(schema_with = "executor_foundation::durations::duration")]
    pub request_timeout: Duration,
    /// Upper bound for opening a TCP/TLS connection, e.g. `10s`.
    #[serde(with = "executor_foundation::durations::text")]
    #[schemars(schema_with = "executor_foundation::durations::duration")]
    pub connect_timeout: Duration,
    /// How many times an idempotent call (GET, DELETE) is sent again after a 5xx, a 429 or a
    /// broken connection.
    pub retries: u32,
    /// First pause between retries; later pauses grow exponentially with jitter.
    #[serde(with = "executor_foundation::durations::text")]
    #[schemars(schema_with = "executor_foundation::durations::duration")]
    pub retry_delay: Duration,
    /// Longest pause between retries, also the cap applied to a server's `Retry-After`.
    #[serde(with = "executor_foundation::durations::text")]
    #[schemars(schema_with = "executor_foundation::durations::duration")]
    pub max_retry_delay: Duration,
}

impl Default for CloudSettings {
    fn default() -> Self {
        CloudSettings {
            cloud: None,
            owner: None,
            clouds_yaml: None,
            region: None,
            interface: None,
            cacert: None,
            verify: None,
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            retries: 5,
            retry_delay: Duration::from_millis(500),
            max_retry_delay: Duration::from_secs(30),
        }
    }
}
