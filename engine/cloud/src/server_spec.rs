//! What to create: the arguments of "create server", before names are resolved.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How the server joins a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkAttachment {
    /// Network name or id; Nova creates a port on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// An existing port id to use instead of a network. It is not deleted at cleanup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// A fixed IP to request on `network`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_ip: Option<String>,
}

/// Boot from a new volume made from the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BootVolume {
    /// Size in GiB.
    pub size_gb: u32,
    /// Cinder volume type (needs compute microversion 2.67).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_type: Option<String>,
    /// Whether Nova deletes the volume with the server. When false, cleanup still deletes it,
    /// because it was made for this job.
    #[serde(default = "yes")]
    pub delete_on_termination: bool,
}

fn yes() -> bool {
    true
}

/// A server to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerSpec {
    /// Server name (exact; cleanup finds it again by exact name plus ownership metadata).
    pub name: String,
    /// Flavor name or id.
    pub flavor: String,
    /// Image name or id (see `resolve` for the rule on duplicate names).
    pub image: String,
    /// Networks, ports or fixed IPs, in NIC order. Empty: Nova's `auto`.
    pub networks: Vec<NetworkAttachment>,
    /// Security group names or ids.
    pub security_groups: Vec<String>,
    /// Key pair name.
    pub key_name: Option<String>,
    /// User data as plain text; encoded to base64 here.
    pub user_data: Option<String>,
    /// Attach a config drive.
    pub config_drive: Option<bool>,
    /// Extra metadata (ownership metadata is added on top and cannot be overridden).
    pub metadata: BTreeMap<String, String>,
    /// Server tags (compute 2.52).
    pub tags: Vec<String>,
    /// Availability zone.
    pub availability_zone: Option<String>,
    /// Scheduler hints, passed as they are.
    pub scheduler_hints: serde_json::Map<String, serde_json::Value>,
    /// Server group name or id; becomes the `group` scheduler hint.
    pub server_group: Option<String>,
    /// Boot from a new volume instead of the image's ephemeral disk.
    pub boot_volume: Option<BootVolume>,
    /// Description (compute 2.19).
    pub description: Option<String>,
}
