//! Creating a server without ever creating two.
//!
//! A create request whose answer is lost (5xx, timeout, broken connection) may or may not have
//! made a server. Before sending it again we look for the server it may have made, by exact
//! name and this job's ownership metadata, and adopt it if it is there.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::backend::{Cloud, Named};
use super::error::{CloudError, CloudErrorKind};
use super::ownership::Ownership;
use super::server::Server;
use super::server_spec::ServerSpec;

/// How hard to try.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Create requests sent at most (each after checking that the previous one made nothing).
    pub attempts: u32,
    /// Pause before looking for a server an unanswered request may have made.
    pub lookup_delay: Duration,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            attempts: 3,
            lookup_delay: Duration::from_secs(2),
        }
    }
}

/// The outcome of `create_server`.
#[derive(Debug, Clone, Serialize)]
pub struct Created {
    /// The new server's id.
    pub server_id: String,
    /// The resolved flavor.
    pub flavor: Named,
    /// The resolved image.
    pub image: Named,
    /// Create requests sent.
    pub requests: u32,
    /// Whether the server was found after a request whose answer was lost.
    pub adopted: bool,
}

/// The Nova `name` filter (a regex, matched as a substring) for exactly `name`.
pub fn exact_name_filter(name: &str) -> String {
    format!("^{}$", regex::escape(name))
}

/// Servers named exactly `name` that carry `owner`'s metadata. Nova's filter is only a
/// pre-selection; the decision is made here.
pub async fn find_owned_by_name(
    cloud: &dyn Cloud,
    name: &str,
    owner: &Ownership,
) -> Result<Vec<Server>, CloudError> {
    let listed = cloud.list_servers(Some(&exact_name_filter(name))).await?;
    Ok(listed
        .into_iter()
        .filter(|s| s.name == name && owner.owns(&s.metadata) && s.status != "DELETED")
        .collect())
}

fn validate(spec: &ServerSpec) -> Result<(), CloudError> {
    let resource = format!("server {:?}", spec.name);
    let bad = |m: String| Err(CloudError::invalid("create server", resource.clone(), m));
    if spec.name.trim().is_empty() {
        return bad("the server name is empty".into());
    }
    if spec.flavor.trim().is_empty() {
        return bad("no flavor given".into());
    }
    if spec.image.trim().is_empty() {
        return bad("no image given".into());
    }
    if let Some(key) = spec.metadata.keys().find(|k| k.starts_with("executor:")) {
        return bad(format!(
            "metadata key {key:?} is reserved for ownership metadata"
        ));
    }
    for (i, net) in spec.networks.iter().enumerate() {
        match (&net.network, &net.port, &net.fixed_ip) {
            (Some(_), None, _) | (None, Some(_), None) => {}
            _ => {
                return bad(format!(
                    "networks[{i}] needs exactly one of `network` or `port` (`fixed_ip` goes with `network`)"
                ));
            }
        }
    }
    if spec.security_groups.iter().any(|g| g.trim().is_empty()) {
        return bad("an empty security group name".into());
    }
    Ok(())
}

/// Resolves every name in `spec` and builds Nova's request body.
pub async fn build_request(
    cloud: &dyn Cloud,
    spec: &ServerSpec,
    owner: &Ownership,
    now: SystemTime,
) -> Result<(Value, Named, Named), CloudError> {
    validate(spec)?;
    let resource = format!("server {:?}", spec.name);
    let needs = |major: u16, minor: u16, what: &str| -> Result<(), CloudError> {
        if cloud.compute_supports(major, minor) {
            Ok(())
        } else {
            Err(CloudError::invalid(
                "create server",
                resource.clone(),
                format!(
                    "{what} needs compute API {major}.{minor}, which this cloud does not offer"
                ),
            ))
        }
    };
    let flavor = cloud.resolve_flavor(&spec.flavor).await?;
    let image = cloud.resolve_image(&spec.image).await?;
    let mut server = Map::new();
    server.insert("name".into(), json!(spec.name));
    server.insert("flavorRef".into(), json!(flavor.id));

    let mut networks = Vec::new();
    for net in &spec.networks {
        if let Some(port) = &net.port {
            networks.push(json!({ "port": port }));
        } else if let Some(name) = &net.network {
            let resolved = cloud.resolve_network(name).await?;
            let mut entry = json!({ "uuid": resolved.named.id });
            if let Some(ip) = &net.fixed_ip {
                entry["fixed_ip"] = json!(ip);
            }
            networks.push(entry);
        }
    }
    if !networks.is_empty() {
        server.insert("networks".into(), Value::Array(networks));
    } else if cloud.compute_supports(2, 37) {
        server.insert("networks".into(), json!("auto"));
    }

    if !spec.security_groups.is_empty() {
        let mut groups = Vec::new();
        for g in &spec.security_groups {
            groups.push(json!({ "name": cloud.resolve_security_group(g).await?.id }));
        }
        server.insert("security_groups".into(), Value::Array(groups));
    }
    if let Some(key) = &spec.key_name {
        if !cloud.keypair_exists(key).await? {
            return Err(CloudError::new(
                CloudErrorKind::NotFound,
                "create server",
                resource,
                format!("key pair {key:?} does not exist"),
            ));
        }
        server.insert("key_name".into(), json!(key));
    }
    if let Some(data) = &spec.user_data {
        server.insert(
            "user_data".into(),
            json!(base64::engine::general_purpose::STANDARD.encode(data)),
        );
    }
    if let Some(cd) = spec.config_drive {
        server.insert("config_drive".into(), json!(cd));
    }
    let mut metadata: Map<String, Value> = spec
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    for (k, v) in owner.metadata(now) {
        metadata.insert(k, json!(v));
    }
    server.insert("metadata".into(), Value::Object(metadata));
    if !spec.tags.is_empty() {
        needs(2, 52, "tags")?;
        server.insert("tags".into(), json!(spec.tags));
    }
    if let Some(az) = &spec.availability_zone {
        server.insert("availability_zone".into(), json!(az));
    }
    if let Some(d) = &spec.description {
        needs(2, 19, "description")?;
        server.insert("description".into(), json!(d));
    }
    match &spec.boot_volume {
        Some(vol) => {
            let mut bdm = json!({
                "boot_index": 0,
                "uuid": image.id,
                "source_type": "image",
                "destination_type": "volume",
                "volume_size": vol.size_gb,
                "delete_on_termination": vol.delete_on_termination,
            });
            if let Some(t) = &vol.volume_type {
                needs(2, 67, "volume_type")?;
                bdm["volume_type"] = json!(t);
            }
            server.insert("block_device_mapping_v2".into(), json!([bdm]));
            server.insert("imageRef".into(), json!(""));
        }
        None => {
            server.insert("imageRef".into(), json!(image.id));
        }
    }
    let mut hints = spec.scheduler_hints.clone();
    if let Some(group) = &spec.server_group {
        hints.insert(
            "group".into(),
            json!(cloud.resolve_server_group(group).await?.id),
        );
    }
    let mut body = json!({ "server": server });
    if !hints.is_empty() {
        body["os:scheduler_hints"] = Value::Object(hints);
    }
    Ok((body, flavor, image))
}

/// Creates the server described by `spec`, owned by `owner`.
pub async fn create_server(
    cloud: &dyn Cloud,
    spec: &ServerSpec,
    owner: &Ownership,
    options: &CreateOptions,
) -> Result<Created, CloudError> {
    let request = build_request(cloud, spec, owner, SystemTime::now()).await?;
    send_create(cloud, spec, owner, options, &request).await
}

/// Sends a request `build_request` made: again only after a lost answer, and only when the
/// server it may have made is not there.
pub async fn send_create(
    cloud: &dyn Cloud,
    spec: &ServerSpec,
    owner: &Ownership,
    options: &CreateOptions,
    (body, flavor, image): &(Value, Named, Named),
) -> Result<Created, CloudError> {
    let mut requests = 0;
    loop {
        requests += 1;
        let err = match cloud.post_server(&spec.name, body.clone()).await {
            Ok(server_id) => {
                return Ok(Created {
                    server_id,
                    flavor: flavor.clone(),
                    image: image.clone(),
                    requests,
                    adopted: false,
                });
            }
            Err(e) => e,
        };
        // Only a lost answer leaves the outcome unknown; a 4xx made nothing.
        if !matches!(
            err.kind,
            CloudErrorKind::Transient | CloudErrorKind::Timeout
        ) {
            return Err(err);
        }
        tracing::warn!(error = %err, "create request failed; looking for a server it may have made");
        tokio::time::sleep(options.lookup_delay).await;
        let found = find_owned_by_name(cloud, &spec.name, owner).await?;
        if let Some(server) = found.first() {
            return Ok(Created {
                server_id: server.id.clone(),
                flavor: flavor.clone(),
                image: image.clone(),
                requests,
                adopted: true,
            });
        }
        if requests >= options.attempts {
            return Err(err);
        }
    }
}
