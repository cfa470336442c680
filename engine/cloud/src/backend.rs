//! The operations the steps need from a cloud, as one small trait.
//!
//! `OpenStack` implements it over HTTP. The orchestration on top (create without duplicates,
//! wait, cleanup) is written against the trait, so it can be tested against any implementation.

use std::time::SystemTime;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use super::error::CloudError;
use super::quota::ComputeLimits;
use super::server::Server;

/// A resolved resource: its id and its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Named {
    /// The id.
    pub id: String,
    /// The name (may be empty).
    pub name: String,
}

/// A Neutron port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Port {
    /// Port id.
    pub id: String,
    /// Its network.
    pub network_id: String,
}

/// A floating IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FloatingIp {
    /// Its id.
    pub id: String,
    /// The address.
    pub address: String,
    /// The port it is associated with.
    pub port_id: Option<String>,
    /// Its description (we put our ownership marker there).
    pub description: String,
    /// When Neutron made it, if it says.
    pub created: Option<SystemTime>,
}

/// What a resolved network is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Network {
    /// Id and name.
    pub named: Named,
    /// `router:external`.
    pub external: bool,
}

/// The cloud operations the back end is built from.
#[async_trait]
pub trait Cloud: Send + Sync {
    /// A flavor by id, else by exact name.
    async fn resolve_flavor(&self, name_or_id: &str) -> Result<Named, CloudError>;
    /// An *active* image by id, else the newest active image with exactly this name.
    async fn resolve_image(&self, name_or_id: &str) -> Result<Named, CloudError>;
    /// A network by id, else by exact (unique) name.
    async fn resolve_network(&self, name_or_id: &str) -> Result<Network, CloudError>;
    /// A security group by id, else by exact name, preferring our project's.
    async fn resolve_security_group(&self, name_or_id: &str) -> Result<Named, CloudError>;
    /// A server group by id, else by exact name.
    async fn resolve_server_group(&self, name_or_id: &str) -> Result<Named, CloudError>;
    /// Whether a key pair with this name exists.
    async fn keypair_exists(&self, name: &str) -> Result<bool, CloudError>;
    /// Whether the compute API offers at least this microversion.
    fn compute_supports(&self, major: u16, minor: u16) -> bool;

    /// Sends one create request (never repeated here) and returns the new server's id.
    async fn post_server(&self, name: &str, body: Value) -> Result<String, CloudError>;
    /// A server by id; `None` when it does not exist (any more).
    async fn get_server(&self, id: &str) -> Result<Option<Server>, CloudError>;
    /// Servers whose name matches Nova's (regex) `name` filter, or all of them.
    async fn list_servers(&self, name_filter: Option<&str>) -> Result<Vec<Server>, CloudError>;
    /// Deletes a server; a missing one is fine.
    async fn delete_server(&self, id: &str) -> Result<(), CloudError>;
    /// Adds or replaces the given metadata items of a server; other items stay.
    async fn set_server_metadata(
        &self,
        id: &str,
        items: &BTreeMap<String, String>,
    ) -> Result<(), CloudError>;
    /// The last `lines` lines of the console log (all when None).
    async fn console_output(&self, id: &str, lines: Option<u32>) -> Result<String, CloudError>;

    /// The ports of a server.
    async fn server_ports(&self, server_id: &str) -> Result<Vec<Port>, CloudError>;
    /// Allocates a NEW floating IP on `network_id`, associated with `port_id` in the same call.
    async fn post_floating_ip(
        &self,
        network_id: &str,
        port_id: &str,
        description: &str,
    ) -> Result<FloatingIp, CloudError>;
    /// Floating IPs associated with a port.
    async fn floating_ips_on_port(&self, port_id: &str) -> Result<Vec<FloatingIp>, CloudError>;
    /// Every floating IP the credentials can see (the reaper looks for orphans among them).
    async fn list_floating_ips(&self) -> Result<Vec<FloatingIp>, CloudError>;
    /// Releases a floating IP; a missing one is fine.
    async fn delete_floating_ip(&self, id: &str) -> Result<(), CloudError>;

    /// Imports a public key under `name`.
    async fn import_keypair(&self, name: &str, public_key: &str) -> Result<(), CloudError>;
    /// The public key stored under `name`, if any.
    async fn keypair_public_key(&self, name: &str) -> Result<Option<String>, CloudError>;
    /// The names of the user's key pairs.
    async fn list_keypair_names(&self) -> Result<Vec<String>, CloudError>;
    /// When a key pair was made; `None` when it is gone or Nova does not say.
    async fn keypair_created(&self, name: &str) -> Result<Option<SystemTime>, CloudError>;
    /// Deletes a key pair; a missing one is fine.
    async fn delete_keypair(&self, name: &str) -> Result<(), CloudError>;
    /// Deletes a volume; a missing one is fine.
    async fn delete_volume(&self, id: &str) -> Result<(), CloudError>;
    /// A volume's metadata, or `None` when the volume is gone.
    async fn volume_metadata(
        &self,
        id: &str,
    ) -> Result<Option<BTreeMap<String, String>>, CloudError>;
    /// Adds `items` to a volume's metadata.
    async fn set_volume_metadata(
        &self,
        id: &str,
        items: &BTreeMap<String, String>,
    ) -> Result<(), CloudError>;

    /// Nova's absolute limits and their use (`GET /limits`): instances, cores, RAM.
    async fn compute_limits(&self) -> Result<ComputeLimits, CloudError>;

    /// HTTP requests sent so far (for per-phase request budgets).
    fn requests_sent(&self) -> u64;
}
