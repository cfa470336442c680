//! What a Nova `POST /servers` asks for: read from its body, then resolved against the store,
//! each problem answered with the error Nova gives. Only the first problem is answered, so the
//! order of the checks is Nova's: the body's own shape first, then what needs the store.

use std::net::Ipv4Addr;

use axum::Json;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use indexmap::IndexMap;
use serde_json::Value;

use super::faults::Service;
use super::http_error::error;
use super::nova::Microversion;
use super::store::{ServerStatus, Store};

/// Nova's answer to a create it will not do. Kept as data until the handler answers with it.
pub(crate) struct Rejection {
    status: u16,
    message: String,
}

impl Rejection {
    pub fn bad(message: impl Into<String>) -> Self {
        Rejection::new(400, message)
    }

    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Rejection {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        error(Service::Compute, self.status, &self.message)
    }
}

/// A server create request whose body is well formed.
pub(crate) struct CreateRequest {
    pub name: String,
    pub flavor_ref: String,
    pub image_ref: String,
    pub block_devices: Vec<Value>,
    pub user_data: Option<String>,
    pub metadata: IndexMap<String, String>,
    pub tags: Vec<String>,
    pub key_name: Option<String>,
    /// Names or ids, as the request gave them.
    pub security_groups: Vec<String>,
    /// As given: its meaning depends on the store and the microversion.
    pub networks: Value,
    /// The scheduler hint `group`.
    pub server_group: Option<String>,
    pub config_drive: bool,
    pub availability_zone: String,
    pub description: Option<String>,
}

/// One NIC the server is to get: an existing port, or a new one on a network.
pub(crate) struct Nic {
    pub network_id: String,
    pub port_id: Option<String>,
    pub fixed_ip: Option<Ipv4Addr>,
}

/// What a request's references resolved to in the store.
pub(crate) struct Resolved {
    /// Security groups by name, as Nova reports them.
    pub sg_names: Vec<String>,
    /// The same groups by id, as new ports carry them.
    pub sg_ids: Vec<String>,
    pub nics: Vec<Nic>,
}

/// `imageRef` and `flavorRef` may be URLs; Nova uses their last segment.
fn last_segment(r: &str) -> &str {
    r.trim_end_matches('/').rsplit('/').next().unwrap_or(r)
}

/// A boolean as Nova's API accepts one: a JSON boolean or its usual spellings as text.
pub(crate) fn as_bool(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => matches!(s.to_ascii_lowercase().as_str(), "true" | "1" | "yes"),
        _ => false,
    }
}

impl CreateRequest {
    /// Reads the body, answering what Nova's request schema would reject.
    pub fn parse(body: Option<Json<Value>>, mv: Microversion) -> Result<Self, Rejection> {
        let Some(Json(body)) = body else {
            return Err(Rejection::bad("Malformed request body"));
        };
        let b = &body["server"];
        if !b.is_object() {
            return Err(Rejection::bad(
                "Invalid input for field/attribute server. Value: None. 'server' is a required property",
            ));
        }
        let Some(name) = b["name"]
            .as_str()
            .filter(|n| !n.is_empty() && n.len() <= 255)
        else {
            return Err(Rejection::bad(
                "Invalid input for field/attribute server. Value: None. 'name' is a required property",
            ));
        };
        let Some(flavor_ref) = b["flavorRef"].as_str().map(last_segment) else {
            return Err(Rejection::bad(
                "Invalid input for field/attribute server. Value: None. 'flavorRef' is a required property",
            ));
        };
        let user_data = decode_user_data(b)?;
        let metadata = string_metadata(b)?;
        let tags = tags(b, mv)?;
        let hints = body
            .get("os:scheduler_hints")
            .or_else(|| body.get("OS-SCH-HNT:scheduler_hints"))
            .unwrap_or(&Value::Null);
        Ok(CreateRequest {
            name: name.to_string(),
            flavor_ref: flavor_ref.to_string(),
            image_ref: b["imageRef"]
                .as_str()
                .map(last_segment)
                .unwrap_or("")
                .to_string(),
            block_devices: b["block_device_mapping_v2"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
            user_data,
            metadata,
            tags,
            key_name: b["key_name"].as_str().map(str::to_string),
            security_groups: match b["security_groups"].as_array() {
                Some(a) => a
                    .iter()
                    .filter_map(|g| g["name"].as_str().map(str::to_string))
                    .collect(),
                None => vec!["default".into()],
            },
            networks: b["networks"].clone(),
            server_group: hints["group"].as_str().map(str::to_string),
            config_drive: as_bool(&b["config_drive"]),
            availability_zone: b["availability_zone"]
                .as_str()
                .unwrap_or("nova")
                .to_string(),
            description: b["description"].as_str().map(str::to_string),
        })
    }

    /// Whether a block device mapping is the boot disk (then `imageRef` may be empty).
    pub fn boots_from_volume(&self) -> bool {
        self.block_devices
            .iter()
            .any(|d| d["boot_index"].as_i64() == Some(0) || d["boot_index"].as_str() == Some("0"))
    }

    /// Finds what the request names (flavor, images, key pair, security groups, networks,
    /// server group) in the store, and checks the instance quota. Nothing is allocated yet.
    pub fn resolve(&self, st: &Store, mv: Microversion) -> Result<Resolved, Rejection> {
        if st.flavor(&self.flavor_ref).is_none() {
            return Err(Rejection::bad(format!(
                "Flavor {} could not be found.",
                self.flavor_ref
            )));
        }
        self.check_images(st)?;
        if let Some(k) = &self.key_name
            && !st.keypairs.contains_key(k)
        {
            return Err(Rejection::bad("Invalid key_name provided."));
        }
        let (sg_names, sg_ids) = self.resolve_security_groups(st)?;
        let nics = self.resolve_networks(st, mv)?;
        if let Some(g) = &self.server_group
            && !st.server_groups.contains_key(g)
        {
            return Err(Rejection::bad(format!(
                "Invalid input for field/attribute group. Value: {g}. Instance group {g} could not be found."
            )));
        }
        check_instance_quota(st)?;
        Ok(Resolved {
            sg_names,
            sg_ids,
            nics,
        })
    }

    fn check_images(&self, st: &Store) -> Result<(), Rejection> {
        if self.image_ref.is_empty() && !self.boots_from_volume() {
            return Err(Rejection::bad(
                "Block Device Mapping is Invalid: Boot sequence for the instance and image/block device mapping combination is not valid.",
            ));
        }
        if !self.image_ref.is_empty() && st.image(&self.image_ref).is_none() {
            return Err(Rejection::bad(format!(
                "Image {} could not be found.",
                self.image_ref
            )));
        }
        for d in &self.block_devices {
            if d["source_type"] == "image"
                && let Some(uuid) = d["uuid"].as_str()
                && st.image(uuid).is_none()
            {
                return Err(Rejection::bad(format!("Image {uuid} could not be found.")));
            }
        }
        Ok(())
    }

    /// Security groups by name or id: (names, ids).
    fn resolve_security_groups(&self, st: &Store) -> Result<(Vec<String>, Vec<String>), Rejection> {
        let mut sg_names = vec![];
        let mut sg_ids = vec![];
        for want in &self.security_groups {
            let found = st
                .security_groups
                .values()
                .find(|g| g["id"] == want.as_str() || g["name"] == want.as_str());
            let Some(g) = found else {
                return Err(Rejection::bad(format!(
                    "Security group {want} not found for project {}.",
                    st.project_id
                )));
            };
            sg_names.push(g["name"].as_str().unwrap_or_default().to_string());
            sg_ids.push(g["id"].as_str().unwrap_or_default().to_string());
        }
        Ok((sg_names, sg_ids))
    }

    /// `networks`: a list of ports or networks, `"none"`, or (absent or `"auto"`) the one
    /// network the project can use. Absent is an error from microversion 2.37 on.
    fn resolve_networks(&self, st: &Store, mv: Microversion) -> Result<Vec<Nic>, Rejection> {
        match &self.networks {
            Value::Array(list) => list.iter().map(|n| requested_nic(st, n)).collect(),
            Value::String(s) if s == "none" => Ok(vec![]),
            Value::Null if mv.at_least(37) => Err(Rejection::bad(
                "Invalid input for field/attribute server. Value: None. 'networks' is a required property",
            )),
            _ => the_only_usable_network(st).map(|nic| vec![nic]),
        }
    }
}

/// `user_data` is base64 text.
fn decode_user_data(b: &Value) -> Result<Option<String>, Rejection> {
    match b["user_data"].as_str() {
        None => Ok(None),
        Some(enc) => match base64::engine::general_purpose::STANDARD.decode(enc.trim()) {
            Ok(raw) => Ok(Some(String::from_utf8_lossy(&raw).into_owned())),
            Err(_) => Err(Rejection::bad("User data needs to be valid base 64.")),
        },
    }
}

/// Server metadata values must be strings.
fn string_metadata(b: &Value) -> Result<IndexMap<String, String>, Rejection> {
    let mut metadata = IndexMap::new();
    if let Some(m) = b["metadata"].as_object() {
        for (k, v) in m {
            let Some(v) = v.as_str() else {
                return Err(Rejection::bad(format!(
                    "Invalid input for field/attribute metadata. Value: {v}. {v} is not of type 'string'"
                )));
            };
            metadata.insert(k.clone(), v.to_string());
        }
    }
    Ok(metadata)
}

/// Tags at create exist from microversion 2.52 on.
fn tags(b: &Value, mv: Microversion) -> Result<Vec<String>, Rejection> {
    let tags: Vec<String> = b["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_string))
        .collect();
    if !tags.is_empty() && !mv.at_least(52) {
        return Err(Rejection::bad(
            "Invalid input for field/attribute server. Additional properties are not allowed ('tags' was unexpected)",
        ));
    }
    Ok(tags)
}

/// One entry of a `networks` list: `{port}` (a free port) or `{uuid, fixed_ip?}`.
fn requested_nic(st: &Store, n: &Value) -> Result<Nic, Rejection> {
    if let Some(port) = n["port"].as_str() {
        let Some(p) = st.ports.get(port) else {
            return Err(Rejection::bad(format!(
                "Port id {port} could not be found."
            )));
        };
        if p["device_id"].as_str().is_some_and(|d| !d.is_empty()) {
            return Err(Rejection::new(409, format!("Port {port} is still in use.")));
        }
        return Ok(Nic {
            network_id: p["network_id"].as_str().unwrap_or_default().to_string(),
            port_id: Some(port.to_string()),
            fixed_ip: None,
        });
    }
    let Some(uuid) = n["uuid"].as_str() else {
        return Err(Rejection::bad(
            "Bad networks format: network uuid is not in proper format",
        ));
    };
    if !st.networks.contains_key(uuid) {
        return Err(Rejection::bad(format!(
            "Network {uuid} could not be found."
        )));
    }
    let fixed_ip = match n["fixed_ip"].as_str() {
        None => None,
        Some(ip) => match ip.parse::<Ipv4Addr>() {
            Ok(a) => Some(a),
            Err(_) => {
                return Err(Rejection::bad(format!(
                    "Invalid input for field/attribute fixed_ip. Value: {ip}. '{ip}' is not a 'ipv4'"
                )));
            }
        },
    };
    Ok(Nic {
        network_id: uuid.to_string(),
        port_id: None,
        fixed_ip,
    })
}

/// Nova's automatic network choice: the one non-external network, or an error when there is
/// none or more than one.
fn the_only_usable_network(st: &Store) -> Result<Nic, Rejection> {
    let usable: Vec<&Value> = st
        .networks
        .values()
        .filter(|n| n["router:external"] != true)
        .collect();
    match usable.as_slice() {
        [one] => Ok(Nic {
            network_id: one["id"].as_str().unwrap_or_default().to_string(),
            port_id: None,
            fixed_ip: None,
        }),
        [] => Err(Rejection::bad("No valid network found")),
        _ => Err(Rejection::new(
            409,
            "Multiple possible networks found, use a Network ID to be more specific.",
        )),
    }
}

fn check_instance_quota(st: &Store) -> Result<(), Rejection> {
    let used = st
        .servers
        .values()
        .filter(|s| s.status != ServerStatus::Deleted)
        .count();
    if used >= st.instance_quota {
        return Err(Rejection::new(
            403,
            format!(
                "Quota exceeded for instances: Requested 1, but already used {used} of {} instances",
                st.instance_quota
            ),
        ));
    }
    Ok(())
}
