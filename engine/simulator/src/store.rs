//! The simulated cloud's data: identities, flavors, images, networks, servers and friends.
//!
//! Neutron and Glance resources are kept as JSON documents in the services' own shapes, because
//! their APIs filter on any attribute; Nova's servers are typed because they have a life cycle.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::SystemTime;

use indexmap::IndexMap;
use russh::keys::PrivateKey;
use secrecy::SecretString;
use serde_json::Value;

/// How many resources of each leak-prone kind exist right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Servers not yet deleted (BUILD, ACTIVE or ERROR; DELETED ones are gone already).
    pub servers: usize,
    /// Neutron ports.
    pub ports: usize,
    /// Floating IPs.
    pub floating_ips: usize,
    /// Nova key pairs.
    pub keypairs: usize,
    /// Volumes (created by `block_device_mapping_v2` boot-from-volume).
    pub volumes: usize,
    /// Security groups, including the seeded `default`.
    pub security_groups: usize,
    /// Server groups.
    pub server_groups: usize,
}

pub struct User {
    pub id: String,
    pub name: String,
    pub password: SecretString,
}

pub struct AppCredential {
    pub id: String,
    pub name: String,
    pub secret: SecretString,
    pub user_id: String,
}

pub struct Token {
    pub user_id: String,
    pub scoped: bool,
    pub methods: Vec<String>,
    pub issued: SystemTime,
    pub expires: SystemTime,
    pub app_cred_id: Option<String>,
}

pub struct Flavor {
    pub id: String,
    pub name: String,
    pub vcpus: u32,
    pub ram: u32,
    pub disk: u32,
}

pub struct Keypair {
    pub name: String,
    pub public_key: String,
    pub fingerprint: String,
    pub kind: String,
    pub created: SystemTime,
}

pub struct Volume {
    pub delete_on_termination: bool,
    /// Cinder's key/value metadata (the driver tags kept volumes with their job's ownership).
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerStatus {
    Build,
    Active,
    Error,
    /// Powered off by its guest (cloud-init's `power_state`).
    Shutoff,
    Deleted,
}

impl ServerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerStatus::Build => "BUILD",
            ServerStatus::Active => "ACTIVE",
            ServerStatus::Error => "ERROR",
            ServerStatus::Shutoff => "SHUTOFF",
            ServerStatus::Deleted => "DELETED",
        }
    }
}

pub struct Fault {
    pub code: u16,
    pub message: String,
    pub created: SystemTime,
}

pub struct Server {
    pub id: String,
    pub name: String,
    pub status: ServerStatus,
    pub flavor_id: String,
    /// Empty for boot from volume, as Nova shows it.
    pub image_id: String,
    pub key_name: Option<String>,
    pub metadata: IndexMap<String, String>,
    pub tags: Vec<String>,
    pub user_data: Option<String>,
    pub config_drive: bool,
    pub availability_zone: String,
    pub security_groups: Vec<String>,
    pub description: Option<String>,
    pub server_groups: Vec<String>,
    pub volumes: Vec<String>,
    pub created: SystemTime,
    pub updated: SystemTime,
    pub launched: Option<SystemTime>,
    pub fault: Option<Fault>,
    pub host_key: Arc<PrivateKey>,
    /// Set once the SSH endpoint accepts connections: cloud-init has "finished".
    pub ssh_port: Option<u16>,
}

pub struct Store {
    pub domain_id: String,
    pub project_id: String,
    pub project_name: String,
    pub users: Vec<User>,
    pub app_creds: Vec<AppCredential>,
    pub tokens: HashMap<String, Token>,
    pub flavors: Vec<Flavor>,
    pub images: Vec<Value>,
    pub networks: IndexMap<String, Value>,
    pub subnets: IndexMap<String, Value>,
    pub ports: IndexMap<String, Value>,
    pub security_groups: IndexMap<String, Value>,
    pub floating_ips: IndexMap<String, Value>,
    pub servers: IndexMap<String, Server>,
    pub keypairs: IndexMap<String, Keypair>,
    pub server_groups: IndexMap<String, Value>,
    pub volumes: IndexMap<String, Volume>,
    /// Ports Nova created for a server (deleted with it); user-made ports are only detached.
    pub nova_ports: std::collections::HashSet<String>,
    pub instance_quota: usize,
    /// Where address allocation starts inside each subnet. Random per simulator, so that
    /// simulators running side by side (parallel tests) rarely hand out the same loopback
    /// address, and a client that ignores `ssh_port` does not reach a neighbour's server.
    pub alloc_offset: u32,
}

pub fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Keystone prints ids as 32 hex digits.
pub fn new_hex_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn parse_cidr(cidr: &str) -> Option<(u32, u32)> {
    let (addr, len) = cidr.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let len: u32 = len.parse().ok()?;
    if len > 30 {
        return None;
    }
    let mask = u32::MAX << (32 - len);
    Some((u32::from(addr) & mask, mask))
}

/// True when `ip` lies inside `cidr` (`a.b.c.d/n`).
pub fn cidr_contains(cidr: &str, ip: Ipv4Addr) -> bool {
    parse_cidr(cidr).is_some_and(|(net, mask)| u32::from(ip) & mask == net)
}

impl Store {
    pub fn counts(&self) -> Counts {
        Counts {
            servers: self
                .servers
                .values()
                .filter(|s| s.status != ServerStatus::Deleted)
                .count(),
            ports: self.ports.len(),
            floating_ips: self.floating_ips.len(),
            keypairs: self.keypairs.len(),
            volumes: self.volumes.len(),
            security_groups: self.security_groups.len(),
            server_groups: self.server_groups.len(),
        }
    }

    fn used_ips(&self) -> std::collections::HashSet<String> {
        let mut used = std::collections::HashSet::new();
        for p in self.ports.values() {
            for f in p["fixed_ips"].as_array().into_iter().flatten() {
                if let Some(ip) = f["ip_address"].as_str() {
                    used.insert(ip.to_string());
                }
            }
        }
        for f in self.floating_ips.values() {
            if let Some(ip) = f["floating_ip_address"].as_str() {
                used.insert(ip.to_string());
            }
        }
        used
    }

    /// The lowest free address of the subnet, skipping network, gateway (.1) and broadcast.
    pub fn allocate_ip(&self, subnet_id: &str) -> Option<Ipv4Addr> {
        let cidr = self.subnets.get(subnet_id)?["cidr"].as_str()?.to_string();
        let (net, mask) = parse_cidr(&cidr)?;
        let used = self.used_ips();
        let hosts = (!mask).saturating_sub(2);
        if hosts == 0 {
            return None;
        }
        let start = self.alloc_offset % hosts;
        (0..hosts)
            .map(|i| Ipv4Addr::from(net + 2 + (start + i) % hosts))
            .find(|ip| !used.contains(&ip.to_string()))
    }

    /// True when some port or floating IP already holds `ip`.
    pub fn ip_in_use(&self, ip: Ipv4Addr) -> bool {
        self.used_ips().contains(&ip.to_string())
    }

    /// The first IPv4 subnet of a network.
    pub fn first_subnet_of(&self, network_id: &str) -> Option<String> {
        self.subnets
            .values()
            .find(|s| s["network_id"] == network_id)
            .and_then(|s| s["id"].as_str().map(str::to_string))
    }

    /// The subnet of `network_id` whose CIDR holds `ip`.
    pub fn subnet_for_ip(&self, network_id: &str, ip: Ipv4Addr) -> Option<String> {
        self.subnets
            .values()
            .find(|s| {
                s["network_id"] == network_id
                    && s["cidr"].as_str().is_some_and(|c| cidr_contains(c, ip))
            })
            .and_then(|s| s["id"].as_str().map(str::to_string))
    }

    pub fn flavor(&self, id_or_name: &str) -> Option<&Flavor> {
        self.flavors.iter().find(|f| f.id == id_or_name)
    }

    pub fn image(&self, id: &str) -> Option<&Value> {
        self.images.iter().find(|i| i["id"] == id)
    }

    /// Ports attached to a server, in creation order.
    pub fn ports_of(&self, server_id: &str) -> Vec<&Value> {
        self.ports
            .values()
            .filter(|p| p["device_id"] == server_id)
            .collect()
    }

    /// The loopback addresses a server's SSH endpoint listens on: its fixed IPs, then the
    /// floating IPs associated with its ports.
    pub fn server_addresses(&self, server_id: &str) -> Vec<Ipv4Addr> {
        let mut out = Vec::new();
        let ports = self.ports_of(server_id);
        for p in &ports {
            for f in p["fixed_ips"].as_array().into_iter().flatten() {
                if let Some(ip) = f["ip_address"].as_str().and_then(|s| s.parse().ok()) {
                    out.push(ip);
                }
            }
        }
        for fip in self.floating_ips.values() {
            if ports.iter().any(|p| p["id"] == fip["port_id"])
                && let Some(ip) = fip["floating_ip_address"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
            {
                out.push(ip);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_membership() {
        assert!(cidr_contains(
            "127.77.0.0/16",
            "127.77.3.4".parse().unwrap()
        ));
        assert!(!cidr_contains(
            "127.77.0.0/16",
            "127.78.0.4".parse().unwrap()
        ));
        assert!(!cidr_contains("garbage", "127.77.0.4".parse().unwrap()));
    }
}
