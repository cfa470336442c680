//! What we know about a server, read from Nova's JSON.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;
use serde_json::Value;

/// Whether an address is the port's own or a floating IP NATed to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AddressKind {
    /// The port's own address.
    Fixed,
    /// A floating IP.
    Floating,
}

/// One address of a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Address {
    /// The network's name, as Nova reports it.
    pub network: String,
    /// The address.
    pub ip: IpAddr,
    /// Fixed or floating.
    pub kind: AddressKind,
}

/// A volume attached to a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttachedVolume {
    /// Cinder id.
    pub id: String,
    /// Whether Nova deletes it with the server.
    pub delete_on_termination: bool,
}

/// A server as Nova shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Server {
    /// UUID.
    pub id: String,
    /// Name.
    pub name: String,
    /// Nova status (BUILD, ACTIVE, ERROR, DELETED...).
    pub status: String,
    /// The fault message of an ERROR server.
    pub fault: Option<String>,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
    /// Addresses in Nova's order (networks as Nova lists them, then per port order).
    pub addresses: Vec<Address>,
    /// Attached volumes.
    pub volumes: Vec<AttachedVolume>,
    /// The key pair Nova put on it.
    pub key_name: Option<String>,
}

impl Server {
    /// Reads a server object (the value under `"server"`, or one element of `"servers"`).
    pub fn from_json(v: &Value) -> Option<Server> {
        let id = v.get("id")?.as_str()?.to_string();
        let metadata = v
            .get("metadata")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let mut addresses = Vec::new();
        if let Some(nets) = v.get("addresses").and_then(Value::as_object) {
            for (network, list) in nets {
                for entry in list.as_array().into_iter().flatten() {
                    let Some(ip) = entry
                        .get("addr")
                        .and_then(Value::as_str)
                        .and_then(|a| a.parse::<IpAddr>().ok())
                    else {
                        continue;
                    };
                    let kind = match entry.get("OS-EXT-IPS:type").and_then(Value::as_str) {
                        Some("floating") => AddressKind::Floating,
                        _ => AddressKind::Fixed,
                    };
                    addresses.push(Address {
                        network: network.clone(),
                        ip,
                        kind,
                    });
                }
            }
        }
        let volumes = v
            .get("os-extended-volumes:volumes_attached")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| {
                Some(AttachedVolume {
                    id: a.get("id")?.as_str()?.to_string(),
                    delete_on_termination: a
                        .get("delete_on_termination")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                })
            })
            .collect();
        let fault = v.get("fault").and_then(|f| {
            let message = f.get("message").and_then(Value::as_str)?;
            let details = f.get("details").and_then(Value::as_str).unwrap_or("");
            // `details` holds a traceback for admins only; the first line is enough context.
            let first = details.lines().next().unwrap_or("").trim();
            Some(if first.is_empty() || first == message {
                message.to_string()
            } else {
                format!("{message} ({first})")
            })
        });
        Some(Server {
            id,
            name: v
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            status: v
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("UNKNOWN")
                .to_string(),
            fault,
            metadata,
            addresses,
            volumes,
            key_name: v
                .get("key_name")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }
}
