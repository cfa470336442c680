//! Nova servers: create, show, list (Nova's regex `name` filter, status and tag filters,
//! marker/limit), delete, console output, metadata and tags, plus the BUILD -> ACTIVE/ERROR life
//! cycle that brings up each server's SSH endpoint.
//!
//! SSH port: when port 22 cannot be bound on the server's address, the endpoint listens on a
//! free port instead. In both cases the server's metadata carries it as `ssh_port` (e.g.
//! `"ssh_port": "40211"`) from ACTIVE on, while connections are refused until the endpoint is
//! up; then the console log shows the host key fingerprints. In the real-sshd mode the metadata also carries `ssh_user`: the
//! account the simulator runs as, the only one that sshd lets in.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use russh::keys::PrivateKey;
use russh::keys::ssh_key::Algorithm;
use serde_json::{Value, json};

use super::console_log;
use super::faults::Service;
use super::http_error::error;
use super::nova::Microversion;
use super::nova_create_request::{CreateRequest, Nic, Rejection, Resolved, as_bool};
use super::shared::Shared;
use super::ssh_endpoints::EndpointSpec;
use super::store::{Fault, Server, ServerStatus, Store, Volume, new_uuid};
use super::timefmt;

type S = State<Arc<Shared>>;
type Q = Query<Vec<(String, String)>>;

/// Nova's fault message for a create the scheduler cannot place.
pub const NO_VALID_HOST: &str = "No valid host was found. There are not enough hosts available.";

pub fn router() -> Router<Arc<Shared>> {
    let v = "/compute/v2.1/servers";
    Router::new()
        .route(v, get(list).post(create))
        .route(&format!("{v}/detail"), get(list_detail))
        .route(&format!("{v}/{{id}}"), get(show).delete(delete))
        .route(&format!("{v}/{{id}}/action"), post(action))
        .route(
            &format!("{v}/{{id}}/metadata"),
            get(metadata).post(metadata_update),
        )
        .route(&format!("{v}/{{id}}/tags"), get(tags))
        .route(
            &format!("{v}/{{id}}/tags/{{tag}}"),
            put(tag_add).delete(tag_remove).get(tag_check),
        )
}

fn bad(msg: &str) -> Response {
    error(Service::Compute, 400, msg)
}

fn not_found(id: &str) -> Response {
    error(
        Service::Compute,
        404,
        &format!("Instance {id} could not be found."),
    )
}

fn links(base: &str, id: &str) -> Value {
    json!([{"rel": "self", "href": format!("{base}/compute/v2.1/servers/{id}")},
        {"rel": "bookmark", "href": format!("{base}/compute/servers/{id}")}])
}

fn addresses(st: &Store, s: &Server) -> Value {
    let mut out = serde_json::Map::new();
    for p in st.ports_of(&s.id) {
        let net = p["network_id"].as_str().unwrap_or_default();
        let net_name = st
            .networks
            .get(net)
            .and_then(|n| n["name"].as_str())
            .unwrap_or(net);
        let mac = p["mac_address"].clone();
        let entry = out.entry(net_name.to_string()).or_insert_with(|| json!([]));
        let Some(list) = entry.as_array_mut() else {
            continue;
        };
        for f in p["fixed_ips"].as_array().into_iter().flatten() {
            list.push(json!({"version": 4, "addr": f["ip_address"],
                "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": mac}));
        }
        for fip in st.floating_ips.values().filter(|f| f["port_id"] == p["id"]) {
            list.push(json!({"version": 4, "addr": fip["floating_ip_address"],
                "OS-EXT-IPS:type": "floating", "OS-EXT-IPS-MAC:mac_addr": mac}));
        }
    }
    Value::Object(out)
}

/// The full server document as `GET /servers/{id}` shows it at microversion `mv`.
pub fn server_doc(base: &str, st: &Store, s: &Server, mv: Microversion) -> Value {
    let flavor = match st.flavor(&s.flavor_id) {
        Some(f) if mv.at_least(47) => json!({"vcpus": f.vcpus, "ram": f.ram, "disk": f.disk,
            "ephemeral": 0, "swap": 0, "original_name": f.name, "extra_specs": {}}),
        _ => json!({"id": s.flavor_id, "links": [{"rel": "bookmark",
            "href": format!("{base}/compute/flavors/{}", s.flavor_id)}]}),
    };
    let image = if s.image_id.is_empty() {
        json!("")
    } else {
        json!({"id": s.image_id, "links": [{"rel": "bookmark",
            "href": format!("{base}/compute/images/{}", s.image_id)}]})
    };
    let (vm_state, task_state, power) = match s.status {
        ServerStatus::Build => ("building", json!("spawning"), 0),
        ServerStatus::Active => ("active", Value::Null, 1),
        ServerStatus::Error => ("error", Value::Null, 0),
        ServerStatus::Shutoff => ("stopped", Value::Null, 4),
        ServerStatus::Deleted => ("deleted", json!("deleting"), 0),
    };
    let built = matches!(
        s.status,
        ServerStatus::Active | ServerStatus::Error | ServerStatus::Shutoff
    );
    let volumes: Vec<Value> = s
        .volumes
        .iter()
        .map(|v| {
            let dot = st.volumes.get(v).is_some_and(|x| x.delete_on_termination);
            if mv.at_least(3) {
                json!({"id": v, "delete_on_termination": dot})
            } else {
                json!({"id": v})
            }
        })
        .collect();
    let mut d = json!({
        "accessIPv4": "", "accessIPv6": "",
        "addresses": addresses(st, s),
        "created": timefmt::seconds(s.created),
        "flavor": flavor,
        "hostId": if built { "5d1f0a3c9b2e4f6a8c7d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f70812" } else { "" },
        "id": s.id,
        "image": image,
        "key_name": s.key_name,
        "links": links(base, &s.id),
        "metadata": s.metadata,
        "name": s.name,
        "status": s.status.as_str(),
        "tenant_id": st.project_id,
        "user_id": st.users.first().map(|u| u.id.clone()),
        "updated": timefmt::seconds(s.updated),
        "OS-DCF:diskConfig": "MANUAL",
        "progress": 0,
        "OS-EXT-AZ:availability_zone": if built { s.availability_zone.as_str() } else { "" },
        "config_drive": if s.config_drive { "True" } else { "" },
        "OS-SRV-USG:launched_at": s.launched.map(timefmt::micros_naive),
        "OS-SRV-USG:terminated_at": null,
        "OS-EXT-STS:task_state": task_state,
        "OS-EXT-STS:vm_state": vm_state,
        "OS-EXT-STS:power_state": power,
        "os-extended-volumes:volumes_attached": volumes,
    });
    let o = d.as_object_mut().expect("literal object");
    if built || s.status == ServerStatus::Deleted {
        let sgs: Vec<Value> = s
            .security_groups
            .iter()
            .map(|n| json!({"name": n}))
            .collect();
        o.insert("security_groups".into(), json!(sgs));
    }
    if mv.at_least(9) {
        o.insert("locked".into(), json!(false));
    }
    if mv.at_least(19) {
        o.insert("description".into(), json!(s.description));
    }
    if mv.at_least(26) {
        o.insert("tags".into(), json!(s.tags));
    }
    if mv.at_least(63) {
        o.insert("trusted_image_certificates".into(), Value::Null);
    }
    if mv.at_least(71) {
        o.insert("server_groups".into(), json!(s.server_groups));
    }
    if mv.at_least(73) {
        o.insert("locked_reason".into(), Value::Null);
    }
    if let Some(f) = &s.fault {
        o.insert(
            "fault".into(),
            json!({"code": f.code, "created": timefmt::seconds(f.created), "message": f.message}),
        );
    }
    d
}

fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Nova's `name` filter: a case-insensitive regular expression matched anywhere in the name
/// (MySQL `REGEXP`), so `ci-1` also matches `ci-10`. A pattern that does not compile is
/// matched as literal text.
pub fn name_filter(pattern: &str) -> regex::Regex {
    regex::RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(1 << 20)
        .build()
        .or_else(|_| {
            regex::RegexBuilder::new(&regex::escape(pattern))
                .case_insensitive(true)
                .build()
        })
        .unwrap_or_else(|_| regex::Regex::new("$^").expect("static regex"))
}

fn split_tags(v: Option<&str>) -> Vec<&str> {
    v.map(|s| s.split(',').filter(|t| !t.is_empty()).collect())
        .unwrap_or_default()
}

fn listing(sh: &Shared, q: &[(String, String)], mv: Microversion, detail: bool) -> Response {
    let st = sh.store();
    let name_re = param(q, "name").map(name_filter);
    let status = param(q, "status").map(str::to_ascii_uppercase);
    let tags = split_tags(param(q, "tags"));
    let tags_any = split_tags(param(q, "tags-any"));
    let not_tags = split_tags(param(q, "not-tags"));
    let not_tags_any = split_tags(param(q, "not-tags-any"));
    let has = |s: &Server, t: &str| s.tags.iter().any(|x| x == t);
    // Newest first, as Nova sorts by created_at desc.
    let matching: Vec<&Server> = st
        .servers
        .values()
        .rev()
        .filter(|s| match &status {
            Some(want) => s.status.as_str() == want,
            None => s.status != ServerStatus::Deleted,
        })
        .filter(|s| name_re.as_ref().is_none_or(|re| re.is_match(&s.name)))
        .filter(|s| tags.iter().all(|t| has(s, t)))
        .filter(|s| tags_any.is_empty() || tags_any.iter().any(|t| has(s, t)))
        .filter(|s| not_tags.is_empty() || !not_tags.iter().all(|t| has(s, t)))
        .filter(|s| !not_tags_any.iter().any(|t| has(s, t)))
        .filter(|s| param(q, "image").is_none_or(|i| s.image_id == i))
        .filter(|s| param(q, "flavor").is_none_or(|f| s.flavor_id == f))
        .collect();
    let start = match param(q, "marker") {
        Some(m) => match matching.iter().position(|s| s.id == m) {
            Some(i) => i + 1,
            None => return bad(&format!("marker [{m}] not found")),
        },
        None => 0,
    };
    let limit = match param(q, "limit").map(str::parse::<usize>) {
        None => 1000,
        Some(Ok(n)) => n,
        Some(Err(_)) => return bad("Invalid input for query parameters limit."),
    };
    let page: Vec<&Server> = matching.iter().skip(start).take(limit).copied().collect();
    let docs: Vec<Value> = page
        .iter()
        .map(|s| {
            if detail {
                server_doc(&sh.base_url, &st, s, mv)
            } else {
                json!({"id": s.id, "name": s.name, "links": links(&sh.base_url, &s.id)})
            }
        })
        .collect();
    let mut body = json!({ "servers": docs });
    if limit > 0
        && page.len() == limit
        && let Some(last) = page.last()
    {
        let mut pairs: Vec<String> = q
            .iter()
            .filter(|(k, _)| k != "marker")
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect();
        pairs.push(format!("marker={}", last.id));
        let path = if detail { "servers/detail" } else { "servers" };
        body["servers_links"] = json!([{"rel": "next",
            "href": format!("{}/compute/v2.1/{path}?{}", sh.base_url, pairs.join("&"))}]);
    }
    Json(body).into_response()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn list(State(sh): S, Extension(mv): Extension<Microversion>, Query(q): Q) -> Response {
    listing(&sh, &q, mv, false)
}

async fn list_detail(
    State(sh): S,
    Extension(mv): Extension<Microversion>,
    Query(q): Q,
) -> Response {
    listing(&sh, &q, mv, true)
}

async fn show(
    State(sh): S,
    Extension(mv): Extension<Microversion>,
    Path(id): Path<String>,
) -> Response {
    let st = sh.store();
    match st.servers.get(&id) {
        Some(s) => Json(json!({"server": server_doc(&sh.base_url, &st, s, mv)})).into_response(),
        None => not_found(&id),
    }
}

fn mac_for(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("fa:16:3e:{:02x}:{:02x}:{:02x}", o[1], o[2], o[3])
}

/// A Neutron port document for a server NIC (Nova creates these for `networks: [{uuid}]`).
pub fn port_doc(
    st: &Store,
    network_id: &str,
    subnet_id: &str,
    ip: Ipv4Addr,
    name: &str,
    sgs: Vec<String>,
) -> Value {
    let now = timefmt::seconds(SystemTime::now());
    json!({"id": new_uuid(), "name": name, "network_id": network_id,
        "project_id": st.project_id, "tenant_id": st.project_id, "mac_address": mac_for(ip),
        "admin_state_up": true, "status": "DOWN", "device_id": "", "device_owner": "",
        "fixed_ips": [{"subnet_id": subnet_id, "ip_address": ip.to_string()}],
        "allowed_address_pairs": [], "extra_dhcp_opts": [], "security_groups": sgs,
        "description": "", "binding:vnic_type": "normal", "port_security_enabled": true,
        "tags": [], "created_at": now, "updated_at": now, "revision_number": 1})
}

/// `ssh_authorized_keys` entries anywhere in a `#cloud-config` user_data document
/// (top level or under `users:`).
pub fn cloud_config_keys(user_data: &str) -> Vec<String> {
    if !user_data.trim_start().starts_with("#cloud-config") {
        return vec![];
    }
    let Ok(doc) = serde_saphyr::from_str::<Value>(user_data) else {
        return vec![];
    };
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if k == "ssh_authorized_keys" {
                        for key in x.as_array().into_iter().flatten() {
                            if let Some(s) = key.as_str() {
                                out.push(s.to_string());
                            }
                        }
                    } else {
                        walk(x, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = vec![];
    walk(&doc, &mut out);
    out
}

/// The minutes after which cloud-init powers the guest off, from a `#cloud-config` document's
/// `power_state` (`mode: poweroff` or `halt`; `delay: now`, `"+N"` or `N` minutes).
pub fn cloud_config_power_off(user_data: &str) -> Option<u64> {
    if !user_data.trim_start().starts_with("#cloud-config") {
        return None;
    }
    let doc = serde_saphyr::from_str::<Value>(user_data).ok()?;
    let ps = doc.get("power_state")?;
    if !matches!(ps["mode"].as_str(), Some("poweroff" | "halt")) || ps["condition"] == false {
        return None;
    }
    match &ps["delay"] {
        Value::Null => Some(0),
        Value::Number(n) => n.as_u64(),
        Value::String(s) if s == "now" => Some(0),
        Value::String(s) => s.trim().trim_start_matches('+').parse().ok(),
        _ => None,
    }
}

async fn create(
    State(sh): S,
    Extension(mv): Extension<Microversion>,
    body: Option<Json<Value>>,
) -> Response {
    let request = match CreateRequest::parse(body, mv) {
        Ok(r) => r,
        Err(rejection) => return rejection.into_response(),
    };
    let host_key = match PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519) {
        Ok(k) => Arc::new(k),
        Err(_) => return error(Service::Compute, 500, "Host key generation failed."),
    };
    // Drawn before the store checks: a request they reject still uses up an injected failure.
    let fails = sh.faults().next_create_fails();

    let mut st = sh.store();
    let resolved = match request.resolve(&st, mv) {
        Ok(r) => r,
        Err(rejection) => return rejection.into_response(),
    };
    let id = new_uuid();
    let port_ids = match allocate_ports(&mut st, &resolved.nics, &resolved.sg_ids) {
        Ok(p) => p,
        Err(rejection) => return rejection.into_response(),
    };
    attach_ports(&mut st, &port_ids, &id);
    let volumes = create_volumes(&mut st, &request.block_devices);
    if let Some(g) = &request.server_group {
        join_server_group(&mut st, g, &id);
    }
    let server = new_server(&id, request, &resolved, volumes, host_key);
    st.servers.insert(id.clone(), server);
    drop(st);

    tokio::spawn(life_cycle(sh.clone(), id.clone(), fails));
    accepted(&sh.base_url, &id, &resolved.sg_names)
}

/// A new port for each NIC that does not name an existing one, and the ids of all the NICs'
/// ports. On failure the ports made so far are removed again.
fn allocate_ports(
    st: &mut Store,
    nics: &[Nic],
    sg_ids: &[String],
) -> Result<Vec<String>, Rejection> {
    let mut port_ids = vec![];
    for nic in nics {
        if let Some(pid) = &nic.port_id {
            port_ids.push(pid.clone());
            continue;
        }
        let (subnet, ip) = match address_for(st, nic) {
            Ok(found) => found,
            Err(rejection) => {
                rollback_ports(st, &port_ids);
                return Err(rejection);
            }
        };
        let port = port_doc(st, &nic.network_id, &subnet, ip, "", sg_ids.to_vec());
        let pid = port["id"].as_str().unwrap_or_default().to_string();
        st.ports.insert(pid.clone(), port);
        st.nova_ports.insert(pid.clone());
        port_ids.push(pid);
    }
    Ok(port_ids)
}

/// The subnet and address of a new port: the requested fixed IP if it is free and valid on
/// the network, else the next free address of the network's first subnet.
fn address_for(st: &mut Store, nic: &Nic) -> Result<(String, Ipv4Addr), Rejection> {
    let network = &nic.network_id;
    if let Some(ip) = nic.fixed_ip {
        if st.ip_in_use(ip) {
            return Err(Rejection::bad(format!(
                "Fixed IP address {ip} is already in use on network {network}."
            )));
        }
        return match st.subnet_for_ip(network, ip) {
            Some(sub) => Ok((sub, ip)),
            None => Err(Rejection::bad(format!(
                "Fixed IP address {ip} is not valid on network {network}."
            ))),
        };
    }
    let Some(sub) = st.first_subnet_of(network) else {
        return Err(Rejection::bad(format!(
            "Network {network} requires a subnet in order to boot instances on."
        )));
    };
    let Some(ip) = st.allocate_ip(&sub) else {
        return Err(Rejection::new(
            409,
            format!("No more IP addresses available on network {network}."),
        ));
    };
    Ok((sub, ip))
}

/// The ports now belong to server `id`.
fn attach_ports(st: &mut Store, port_ids: &[String], id: &str) {
    for pid in port_ids {
        if let Some(p) = st.ports.get_mut(pid) {
            p["device_id"] = json!(id);
            p["device_owner"] = json!("compute:nova");
            p["status"] = json!("ACTIVE");
        }
    }
}

/// A volume for each block device mapping whose destination is a volume; their ids.
fn create_volumes(st: &mut Store, block_devices: &[Value]) -> Vec<String> {
    let mut volumes = vec![];
    for d in block_devices {
        if d["destination_type"] == "volume" {
            let vid = match d["source_type"].as_str() {
                Some("volume") => d["uuid"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(new_uuid),
                _ => new_uuid(),
            };
            st.volumes.insert(
                vid.clone(),
                Volume {
                    delete_on_termination: as_bool(&d["delete_on_termination"]),
                    metadata: serde_json::Map::new(),
                },
            );
            volumes.push(vid);
        }
    }
    volumes
}

fn join_server_group(st: &mut Store, group: &str, id: &str) {
    if let Some(members) = st
        .server_groups
        .get_mut(group)
        .and_then(|x| x["members"].as_array_mut())
    {
        members.push(json!(id));
    }
}

/// The server as stored from the start: BUILD, until `life_cycle` moves it on.
fn new_server(
    id: &str,
    request: CreateRequest,
    resolved: &Resolved,
    volumes: Vec<String>,
    host_key: Arc<PrivateKey>,
) -> Server {
    let now = SystemTime::now();
    Server {
        id: id.to_string(),
        status: ServerStatus::Build,
        image_id: if request.boots_from_volume() {
            String::new()
        } else {
            request.image_ref
        },
        name: request.name,
        flavor_id: request.flavor_ref,
        key_name: request.key_name,
        metadata: request.metadata,
        tags: request.tags,
        user_data: request.user_data,
        config_drive: request.config_drive,
        availability_zone: request.availability_zone,
        security_groups: resolved.sg_names.clone(),
        description: request.description,
        server_groups: request.server_group.into_iter().collect(),
        volumes,
        created: now,
        updated: now,
        launched: None,
        fault: None,
        host_key,
        ssh_port: None,
    }
}

/// Nova's 202 to a create: the id, links and a generated admin password, with `Location`.
fn accepted(base_url: &str, id: &str, sg_names: &[String]) -> Response {
    let sgs: Vec<Value> = sg_names.iter().map(|n| json!({"name": n})).collect();
    let mut r = (
        StatusCode::ACCEPTED,
        Json(json!({"server": {"id": id, "links": links(base_url, id),
            "OS-DCF:diskConfig": "MANUAL", "security_groups": sgs,
            "adminPass": uuid::Uuid::new_v4().simple().to_string()[..12].to_string()}})),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{base_url}/compute/v2.1/servers/{id}")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn rollback_ports(st: &mut Store, ids: &[String]) {
    for id in ids {
        if st.nova_ports.remove(id) {
            st.ports.shift_remove(id);
        }
    }
}

/// BUILD -> ACTIVE (or ERROR), then, after `ssh_delay`, the SSH endpoint.
async fn life_cycle(sh: Arc<Shared>, id: String, fails: bool) {
    tokio::select! {
        _ = sh.shutdown.cancelled() => return,
        _ = tokio::time::sleep(sh.opts.build_delay) => {}
    }
    {
        let mut st = sh.store();
        let Some(s) = st.servers.get_mut(&id) else {
            return;
        };
        if s.status != ServerStatus::Build {
            return;
        }
        let now = SystemTime::now();
        s.updated = now;
        if fails {
            s.status = ServerStatus::Error;
            s.fault = Some(Fault {
                code: 500,
                message: NO_VALID_HOST.into(),
                created: now,
            });
        } else {
            s.status = ServerStatus::Active;
            s.launched = Some(now);
            if let Some(minutes) = s.user_data.as_deref().and_then(cloud_config_power_off) {
                tokio::spawn(power_off_later(sh.clone(), id.clone(), minutes));
            }
        }
    }
    if fails || sh.opts.ssh_mode == super::options::SshMode::Disabled {
        return;
    }
    publish_ssh_port(&sh, &id);
    tokio::select! {
        _ = sh.shutdown.cancelled() => return,
        _ = tokio::time::sleep(sh.opts.ssh_delay) => {}
    }
    bring_up_ssh(&sh, &id).await;
}

/// The guest powers itself off `minutes` (guest minutes) after it booted, as cloud-init's
/// `power_state` does: Nova then shows SHUTOFF, and SSH stops answering.
async fn power_off_later(sh: Arc<Shared>, id: String, minutes: u64) {
    let wait = sh
        .opts
        .guest_minute
        .saturating_mul(minutes.min(u32::MAX as u64) as u32);
    tokio::select! {
        _ = sh.shutdown.cancelled() => return,
        _ = tokio::time::sleep(wait) => {}
    }
    {
        let mut st = sh.store();
        let Some(s) = st.servers.get_mut(&id) else {
            return;
        };
        if s.status != ServerStatus::Active {
            return;
        }
        s.status = ServerStatus::Shutoff;
        s.updated = SystemTime::now();
    }
    sh.ssh.stop(&id);
}

/// A real guest's SSH port is known as soon as it is ACTIVE (it is 22), long before its sshd
/// answers; so the simulator picks and publishes the port at ACTIVE too, and connections to it
/// are refused until the guest "boots".
fn publish_ssh_port(sh: &Arc<Shared>, id: &str) {
    let mut st = sh.store();
    let Some(&first) = st.server_addresses(id).first() else {
        return;
    };
    let port = match sh.ssh.reserve(id, first) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(server = id, "cannot reserve an SSH port: {e}");
            return;
        }
    };
    if let Some(s) = st.servers.get_mut(id) {
        s.metadata.insert("ssh_port".into(), port.to_string());
    }
}

async fn bring_up_ssh(sh: &Arc<Shared>, id: &str) {
    let (spec, addrs) = {
        let st = sh.store();
        let Some(s) = st.servers.get(id) else { return };
        if s.status != ServerStatus::Active {
            return;
        }
        let mut keys = vec![];
        if let Some(k) = s.key_name.as_ref().and_then(|k| st.keypairs.get(k)) {
            keys.push(k.public_key.clone());
        }
        if let Some(ud) = &s.user_data {
            keys.extend(cloud_config_keys(ud));
        }
        let spec = EndpointSpec {
            host_key: s.host_key.clone(),
            authorized_keys: keys,
            workdir: sh.root.join(id),
        };
        (spec, st.server_addresses(id))
    };
    if addrs.is_empty() {
        return;
    }
    if let Err(e) = std::fs::create_dir_all(&spec.workdir) {
        tracing::warn!(
            server = id,
            "cannot create the server's working directory: {e}"
        );
        return;
    }
    let port = match sh.ssh.start(id, &addrs, spec).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(server = id, "SSH endpoint did not start: {e}");
            return;
        }
    };
    let mut st = sh.store();
    match st.servers.get_mut(id) {
        Some(s) if s.status == ServerStatus::Active => {
            s.ssh_port = Some(port);
            s.metadata.insert("ssh_port".into(), port.to_string());
            // A real sshd only lets in the user it runs as; tell recipes who that is.
            if sh.opts.ssh_mode == super::options::SshMode::OpenSsh
                && let Ok(user) = crate::openssh_server::current_user()
            {
                s.metadata.insert("ssh_user".into(), user);
            }
        }
        _ => {
            drop(st);
            sh.ssh.stop(id);
        }
    }
}

async fn delete(State(sh): S, Path(id): Path<String>) -> Response {
    {
        let mut st = sh.store();
        let Some(s) = st.servers.get_mut(&id) else {
            return not_found(&id);
        };
        if s.status == ServerStatus::Deleted {
            return StatusCode::NO_CONTENT.into_response();
        }
        s.status = ServerStatus::Deleted;
        s.updated = SystemTime::now();
    }
    sh.ssh.stop(&id);
    let delay = sh.opts.delete_delay;
    let sh2 = sh.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        sh2.remove_server_now(&id);
    });
    StatusCode::NO_CONTENT.into_response()
}

async fn action(State(sh): S, Path(id): Path<String>, body: Option<Json<Value>>) -> Response {
    let body = body.map(|b| b.0).unwrap_or_default();
    let st = sh.store();
    let Some(s) = st.servers.get(&id) else {
        return not_found(&id);
    };
    if let Some(req) = body.get("os-getConsoleOutput") {
        if s.status == ServerStatus::Build {
            return error(
                Service::Compute,
                409,
                &format!(
                    "Cannot 'get_console_output' instance {id} while it is in vm_state building"
                ),
            );
        }
        let length = match &req["length"] {
            Value::Number(n) => n.as_i64(),
            Value::String(t) => t.parse().ok(),
            _ => None,
        };
        let uptime = s
            .launched
            .and_then(|l| SystemTime::now().duration_since(l).ok())
            .unwrap_or(Duration::ZERO)
            .as_secs_f64()
            + 8.0;
        let text = console_log::console_text(&s.name, &s.host_key, s.ssh_port.is_some(), uptime);
        return Json(json!({"output": console_log::tail(&text, length)})).into_response();
    }
    for noop in ["reboot", "os-start", "os-stop"] {
        if body.get(noop).is_some() {
            return StatusCode::ACCEPTED.into_response();
        }
    }
    let name = body
        .as_object()
        .and_then(|o| o.keys().next().cloned())
        .unwrap_or_default();
    bad(&format!("There is no such action: {name}"))
}

async fn metadata(State(sh): S, Path(id): Path<String>) -> Response {
    match sh.store().servers.get(&id) {
        Some(s) => Json(json!({"metadata": s.metadata})).into_response(),
        None => not_found(&id),
    }
}

/// `POST /servers/{id}/metadata`: merges the given items into the server's metadata, as Nova
/// does (keys not named stay).
async fn metadata_update(
    State(sh): S,
    Path(id): Path<String>,
    body: Option<Json<Value>>,
) -> Response {
    let Some(items) = body.as_ref().and_then(|b| b.0["metadata"].as_object()) else {
        return bad("Malformed request body: 'metadata' is a required property");
    };
    let mut st = sh.store();
    let Some(s) = st.servers.get_mut(&id) else {
        return not_found(&id);
    };
    for (k, v) in items {
        let Some(v) = v.as_str() else {
            return bad(&format!(
                "Invalid input for field/attribute {k}: not a string"
            ));
        };
        s.metadata.insert(k.clone(), v.to_string());
    }
    Json(json!({"metadata": s.metadata})).into_response()
}

async fn tags(State(sh): S, Path(id): Path<String>) -> Response {
    match sh.store().servers.get(&id) {
        Some(s) => Json(json!({"tags": s.tags})).into_response(),
        None => not_found(&id),
    }
}

async fn tag_check(State(sh): S, Path((id, tag)): Path<(String, String)>) -> Response {
    match sh.store().servers.get(&id) {
        Some(s) if s.tags.contains(&tag) => StatusCode::NO_CONTENT.into_response(),
        Some(_) => error(
            Service::Compute,
            404,
            &format!("Tag {tag} could not be found."),
        ),
        None => not_found(&id),
    }
}

async fn tag_add(State(sh): S, Path((id, tag)): Path<(String, String)>) -> Response {
    match sh.store().servers.get_mut(&id) {
        Some(s) => {
            if s.tags.contains(&tag) {
                StatusCode::NO_CONTENT.into_response()
            } else {
                s.tags.push(tag);
                StatusCode::CREATED.into_response()
            }
        }
        None => not_found(&id),
    }
}

async fn tag_remove(State(sh): S, Path((id, tag)): Path<(String, String)>) -> Response {
    match sh.store().servers.get_mut(&id) {
        Some(s) => {
            let before = s.tags.len();
            s.tags.retain(|t| t != &tag);
            if s.tags.len() < before {
                StatusCode::NO_CONTENT.into_response()
            } else {
                error(
                    Service::Compute,
                    404,
                    &format!("Tag {tag} could not be found."),
                )
            }
        }
        None => not_found(&id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_filter_is_case_insensitive_unanchored_regex() {
        let re = name_filter("ci-1");
        assert!(re.is_match("ci-1"));
        assert!(re.is_match("ci-10"));
        assert!(re.is_match("CI-1.x"));
        assert!(re.is_match("job-ci-1"));
        assert!(!re.is_match("ci-2"));
        assert!(name_filter("^ci-1$").is_match("CI-1"));
        assert!(!name_filter("^ci-1$").is_match("ci-10"));
        // Not a valid regex: matched literally rather than failing.
        assert!(name_filter("ci-[").is_match("x-ci-[-y"));
    }

    #[test]
    fn power_state_gives_the_minutes_until_power_off() {
        let ud = |ps: &str| format!("#cloud-config\npackages: [git]\npower_state:\n{ps}");
        assert_eq!(
            cloud_config_power_off(&ud("  mode: poweroff\n  delay: \"+90\"\n")),
            Some(90)
        );
        assert_eq!(
            cloud_config_power_off(&ud("  mode: halt\n  delay: now\n")),
            Some(0)
        );
        assert_eq!(
            cloud_config_power_off(&ud("  mode: poweroff\n  delay: 5\n")),
            Some(5)
        );
        assert_eq!(
            cloud_config_power_off(&ud("  mode: reboot\n  delay: \"+1\"\n")),
            None
        );
        assert_eq!(
            cloud_config_power_off(&ud(
                "  mode: poweroff\n  delay: \"+1\"\n  condition: false\n"
            )),
            None
        );
        assert_eq!(cloud_config_power_off("#!/bin/sh\npoweroff"), None);
    }

    #[test]
    fn cloud_config_keys_are_found_anywhere() {
        let ud = "#cloud-config\nssh_authorized_keys:\n  - ssh-ed25519 AAAA one\nusers:\n  - name: ci\n    ssh_authorized_keys: [\"ssh-ed25519 BBBB two\"]\n";
        assert_eq!(
            cloud_config_keys(ud),
            ["ssh-ed25519 AAAA one", "ssh-ed25519 BBBB two"]
        );
        assert!(cloud_config_keys("#!/bin/sh\necho hi").is_empty());
    }
}
