//! Neutron v2.0: networks and subnets (read), ports, security groups and rules, and floating
//! IPs (create from an external network, associate, disassociate, delete).

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use indexmap::IndexMap;
use serde_json::{Value, json};

use super::faults::Service;
use super::filter::matches;
use super::http_error::error_typed;
use super::nova_servers::port_doc;
use super::seed::security_group;
use super::shared::Shared;
use super::store::{Store, new_uuid};
use super::timefmt;

type S = State<Arc<Shared>>;
type Q = Query<Vec<(String, String)>>;
type Body = Option<Json<Value>>;

/// The router floating IPs are reached through (the simulator does not model routers).
const ROUTER_ID: &str = "5b3c3a1e-7a43-4b8e-9d6e-2f1c0d9e8a71";

pub fn router() -> Router<Arc<Shared>> {
    let v = "/network/v2.0";
    Router::new()
        .route("/network", get(versions))
        .route("/network/", get(versions))
        .route(v, get(resources))
        .route(&format!("{v}/"), get(resources))
        .route(&format!("{v}/extensions"), get(extensions))
        .route(&format!("{v}/networks"), get(networks))
        .route(&format!("{v}/networks/{{id}}"), get(network))
        .route(&format!("{v}/subnets"), get(subnets))
        .route(&format!("{v}/subnets/{{id}}"), get(subnet))
        .route(&format!("{v}/ports"), get(ports).post(port_create))
        .route(
            &format!("{v}/ports/{{id}}"),
            get(port).put(port_update).delete(port_delete),
        )
        .route(&format!("{v}/security-groups"), get(sgs).post(sg_create))
        .route(
            &format!("{v}/security-groups/{{id}}"),
            get(sg).delete(sg_delete),
        )
        .route(
            &format!("{v}/security-group-rules"),
            get(rules).post(rule_create),
        )
        .route(
            &format!("{v}/security-group-rules/{{id}}"),
            get(rule).delete(rule_delete),
        )
        .route(&format!("{v}/floatingips"), get(fips).post(fip_create))
        .route(
            &format!("{v}/floatingips/{{id}}"),
            get(fip).put(fip_update).delete(fip_delete),
        )
}

fn err(status: u16, kind: &str, msg: &str) -> Response {
    error_typed(Service::Network, status, Some(kind), msg)
}

fn bad(msg: &str) -> Response {
    err(400, "HTTPBadRequest", msg)
}

fn now() -> String {
    timefmt::seconds(SystemTime::now())
}

async fn versions(State(sh): S) -> Json<Value> {
    Json(json!({"versions": [{"id": "v2.0", "status": "CURRENT",
        "links": [{"rel": "self", "href": format!("{}/network/v2.0/", sh.base_url)}]}]}))
}

async fn resources(State(sh): S) -> Json<Value> {
    let list: Vec<Value> = ["network", "subnet", "port", "security_group", "floatingip"]
        .iter()
        .map(|r| {
            let coll = format!("{}s", r.replace('_', "-"));
            json!({"name": r, "collection": coll,
                "links": [{"rel": "self", "href": format!("{}/network/v2.0/{coll}", sh.base_url)}]})
        })
        .collect();
    Json(json!({ "resources": list }))
}

async fn extensions() -> Json<Value> {
    let list: Vec<Value> = [
        ("security-group", "security-group"),
        ("router", "Neutron L3 Router"),
        ("external-net", "Neutron external network"),
        (
            "standard-attr-tag",
            "Tag support for resources with standard attribute",
        ),
        ("port-security", "Port Security"),
    ]
    .iter()
    .map(|(alias, name)| {
        json!({"alias": alias, "name": name, "description": name,
            "updated": "2025-01-01T00:00:00-00:00", "links": []})
    })
    .collect();
    Json(json!({ "extensions": list }))
}

/// Applies `fields=` selection (Neutron returns only the asked attributes).
fn project_fields(doc: &Value, q: &[(String, String)]) -> Value {
    let fields: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "fields")
        .map(|(_, v)| v.as_str())
        .collect();
    if fields.is_empty() {
        return doc.clone();
    }
    let mut out = serde_json::Map::new();
    for f in fields {
        if let Some(v) = doc.get(f) {
            out.insert(f.to_string(), v.clone());
        }
    }
    Value::Object(out)
}

fn list_of<'a>(
    key: &str,
    docs: impl Iterator<Item = &'a Value>,
    q: &[(String, String)],
) -> Response {
    let items: Vec<Value> = docs
        .filter(|d| matches(d, q))
        .map(|d| project_fields(d, q))
        .collect();
    Json(json!({ key: items })).into_response()
}

fn one(key: &str, doc: Option<&Value>, kind: &str, what: &str, id: &str) -> Response {
    match doc {
        Some(d) => Json(json!({ key: d })).into_response(),
        None => err(404, kind, &format!("{what} {id} could not be found.")),
    }
}

async fn networks(State(sh): S, Query(q): Q) -> Response {
    list_of("networks", sh.store().networks.values(), &q)
}
async fn network(State(sh): S, Path(id): Path<String>) -> Response {
    one(
        "network",
        sh.store().networks.get(&id),
        "NetworkNotFound",
        "Network",
        &id,
    )
}
async fn subnets(State(sh): S, Query(q): Q) -> Response {
    list_of("subnets", sh.store().subnets.values(), &q)
}
async fn subnet(State(sh): S, Path(id): Path<String>) -> Response {
    one(
        "subnet",
        sh.store().subnets.get(&id),
        "SubnetNotFound",
        "Subnet",
        &id,
    )
}
async fn ports(State(sh): S, Query(q): Q) -> Response {
    list_of("ports", sh.store().ports.values(), &q)
}
async fn port(State(sh): S, Path(id): Path<String>) -> Response {
    one(
        "port",
        sh.store().ports.get(&id),
        "PortNotFound",
        "Port",
        &id,
    )
}

// A ready HTTP answer is the natural error of a handler helper; it is built once per request.
#[allow(clippy::result_large_err)]
fn sg_ids(st: &Store, v: &Value) -> Result<Option<Vec<String>>, Response> {
    let Some(list) = v.as_array() else {
        return Ok(None);
    };
    let mut out = vec![];
    for x in list {
        let want = x.as_str().unwrap_or_default();
        if !st.security_groups.contains_key(want) {
            return Err(err(
                404,
                "SecurityGroupNotFound",
                &format!("Security group {want} does not exist"),
            ));
        }
        out.push(want.to_string());
    }
    Ok(Some(out))
}

async fn port_create(State(sh): S, body: Body) -> Response {
    let body = body.map(|b| b.0).unwrap_or_default();
    let p = &body["port"];
    let Some(net) = p["network_id"].as_str() else {
        return bad("Failed to parse request. Required attribute 'network_id' not specified");
    };
    if uuid::Uuid::parse_str(net).is_err() {
        return bad(&format!(
            "Invalid input for network_id. Reason: '{net}' is not a valid UUID."
        ));
    }
    let mut st = sh.store();
    if !st.networks.contains_key(net) {
        return err(
            404,
            "NetworkNotFound",
            &format!("Network {net} could not be found."),
        );
    }
    let sgs = match sg_ids(&st, &p["security_groups"]) {
        Ok(Some(s)) => s,
        Ok(None) => st
            .security_groups
            .values()
            .filter(|g| g["name"] == "default")
            .filter_map(|g| g["id"].as_str().map(str::to_string))
            .collect(),
        Err(r) => return r,
    };
    let wanted = p["fixed_ips"].get(0);
    let (subnet, ip) = match wanted {
        Some(f) => {
            let sub = f["subnet_id"]
                .as_str()
                .map(str::to_string)
                .or_else(|| st.first_subnet_of(net));
            let Some(sub) = sub else {
                return bad("No subnet on network");
            };
            match f["ip_address"].as_str() {
                Some(ip) => match ip.parse::<Ipv4Addr>() {
                    Ok(a) if st.ip_in_use(a) => {
                        return err(
                            409,
                            "IpAddressInUse",
                            &format!(
                                "Unable to complete operation for network {net}. The IP address {a} is in use."
                            ),
                        );
                    }
                    Ok(a) => (sub, a),
                    Err(_) => {
                        return bad(&format!(
                            "Invalid input for fixed_ips. Reason: '{ip}' is not a valid IP address."
                        ));
                    }
                },
                None => match st.allocate_ip(&sub) {
                    Some(a) => (sub, a),
                    None => {
                        return err(
                            409,
                            "IpAddressGenerationFailure",
                            &format!("No more IP addresses available on network {net}."),
                        );
                    }
                },
            }
        }
        None => {
            let Some(sub) = st.first_subnet_of(net) else {
                return bad("No subnet on network");
            };
            match st.allocate_ip(&sub) {
                Some(a) => (sub, a),
                None => {
                    return err(
                        409,
                        "IpAddressGenerationFailure",
                        &format!("No more IP addresses available on network {net}."),
                    );
                }
            }
        }
    };
    let name = p["name"].as_str().unwrap_or("").to_string();
    let mut doc = port_doc(&st, net, &subnet, ip, &name, sgs);
    if let Some(d) = p["description"].as_str() {
        doc["description"] = json!(d);
    }
    let id = doc["id"].as_str().unwrap_or_default().to_string();
    st.ports.insert(id, doc.clone());
    (StatusCode::CREATED, Json(json!({ "port": doc }))).into_response()
}

async fn port_update(State(sh): S, Path(id): Path<String>, body: Body) -> Response {
    let body = body.map(|b| b.0).unwrap_or_default();
    let p = &body["port"];
    let mut st = sh.store();
    let sgs = match sg_ids(&st, &p["security_groups"]) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(doc) = st.ports.get_mut(&id) else {
        return err(
            404,
            "PortNotFound",
            &format!("Port {id} could not be found."),
        );
    };
    for key in ["name", "description", "admin_state_up"] {
        if let Some(v) = p.get(key) {
            doc[key] = v.clone();
        }
    }
    if let Some(s) = sgs {
        doc["security_groups"] = json!(s);
    }
    doc["updated_at"] = json!(now());
    Json(json!({"port": doc})).into_response()
}

async fn port_delete(State(sh): S, Path(id): Path<String>) -> Response {
    let mut st = sh.store();
    if st.ports.shift_remove(&id).is_none() {
        return err(
            404,
            "PortNotFound",
            &format!("Port {id} could not be found."),
        );
    }
    st.nova_ports.remove(&id);
    for f in st.floating_ips.values_mut() {
        if f["port_id"] == id.as_str() {
            disassociate(f);
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn sgs(State(sh): S, Query(q): Q) -> Response {
    list_of("security_groups", sh.store().security_groups.values(), &q)
}
async fn sg(State(sh): S, Path(id): Path<String>) -> Response {
    match sh.store().security_groups.get(&id) {
        Some(d) => Json(json!({ "security_group": d })).into_response(),
        None => err(
            404,
            "SecurityGroupNotFound",
            &format!("Security group {id} does not exist"),
        ),
    }
}

async fn sg_create(State(sh): S, body: Body) -> Response {
    let body = body.map(|b| b.0).unwrap_or_default();
    let g = &body["security_group"];
    let Some(name) = g["name"].as_str() else {
        return bad("Failed to parse request. Required attribute 'name' not specified");
    };
    if name == "default" {
        return err(
            409,
            "SecurityGroupDefaultAlreadyExists",
            "Default security group already exists.",
        );
    }
    let mut st = sh.store();
    let doc = security_group(
        name,
        g["description"].as_str().unwrap_or(""),
        &st.project_id.clone(),
        &now(),
    );
    let id = doc["id"].as_str().unwrap_or_default().to_string();
    st.security_groups.insert(id, doc.clone());
    (StatusCode::CREATED, Json(json!({ "security_group": doc }))).into_response()
}

async fn sg_delete(State(sh): S, Path(id): Path<String>) -> Response {
    let mut st = sh.store();
    let Some(g) = st.security_groups.get(&id) else {
        return err(
            404,
            "SecurityGroupNotFound",
            &format!("Security group {id} does not exist"),
        );
    };
    if g["name"] == "default" {
        return err(
            409,
            "SecurityGroupCannotRemoveDefault",
            "Insufficient rights for removing default security group.",
        );
    }
    let in_use = st.ports.values().any(|p| {
        p["security_groups"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == id.as_str()))
    });
    if in_use {
        return err(
            409,
            "SecurityGroupInUse",
            &format!("Security Group {id} in use."),
        );
    }
    st.security_groups.shift_remove(&id);
    StatusCode::NO_CONTENT.into_response()
}

fn all_rules(groups: &IndexMap<String, Value>) -> Vec<Value> {
    groups
        .values()
        .flat_map(|g| {
            g["security_group_rules"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

async fn rules(State(sh): S, Query(q): Q) -> Response {
    let all = all_rules(&sh.store().security_groups);
    list_of("security_group_rules", all.iter(), &q)
}

async fn rule(State(sh): S, Path(id): Path<String>) -> Response {
    let all = all_rules(&sh.store().security_groups);
    match all.iter().find(|r| r["id"] == id.as_str()) {
        Some(r) => Json(json!({ "security_group_rule": r })).into_response(),
        None => err(
            404,
            "SecurityGroupRuleNotFound",
            &format!("Security group rule {id} does not exist"),
        ),
    }
}

async fn rule_create(State(sh): S, body: Body) -> Response {
    let body = body.map(|b| b.0).unwrap_or_default();
    let r = &body["security_group_rule"];
    let Some(sg) = r["security_group_id"].as_str() else {
        return bad(
            "Failed to parse request. Required attribute 'security_group_id' not specified",
        );
    };
    let direction = r["direction"].as_str().unwrap_or_default();
    if direction != "ingress" && direction != "egress" {
        return bad(&format!(
            "Invalid input for direction. Reason: '{direction}' is not in ['ingress', 'egress']."
        ));
    }
    let mut st = sh.store();
    let project = st.project_id.clone();
    let Some(group) = st.security_groups.get_mut(sg) else {
        return err(
            404,
            "SecurityGroupNotFound",
            &format!("Security group {sg} does not exist"),
        );
    };
    let ts = now();
    let doc = json!({"id": new_uuid(), "project_id": project, "tenant_id": project,
        "security_group_id": sg, "ethertype": r["ethertype"].as_str().unwrap_or("IPv4"),
        "direction": direction, "protocol": r.get("protocol").cloned().unwrap_or(Value::Null),
        "port_range_min": r.get("port_range_min").cloned().unwrap_or(Value::Null),
        "port_range_max": r.get("port_range_max").cloned().unwrap_or(Value::Null),
        "remote_ip_prefix": r.get("remote_ip_prefix").cloned().unwrap_or(Value::Null),
        "remote_group_id": r.get("remote_group_id").cloned().unwrap_or(Value::Null),
        "description": r.get("description").cloned().unwrap_or(json!("")),
        "tags": [], "created_at": ts, "updated_at": ts, "revision_number": 0});
    if let Some(list) = group["security_group_rules"].as_array_mut() {
        list.push(doc.clone());
    }
    (
        StatusCode::CREATED,
        Json(json!({ "security_group_rule": doc })),
    )
        .into_response()
}

async fn rule_delete(State(sh): S, Path(id): Path<String>) -> Response {
    let mut st = sh.store();
    for g in st.security_groups.values_mut() {
        if let Some(list) = g["security_group_rules"].as_array_mut() {
            let before = list.len();
            list.retain(|r| r["id"] != id.as_str());
            if list.len() < before {
                return StatusCode::NO_CONTENT.into_response();
            }
        }
    }
    err(
        404,
        "SecurityGroupRuleNotFound",
        &format!("Security group rule {id} does not exist"),
    )
}

async fn fips(State(sh): S, Query(q): Q) -> Response {
    list_of("floatingips", sh.store().floating_ips.values(), &q)
}
async fn fip(State(sh): S, Path(id): Path<String>) -> Response {
    one(
        "floatingip",
        sh.store().floating_ips.get(&id),
        "FloatingIPNotFound",
        "Floating IP",
        &id,
    )
}

fn disassociate(f: &mut Value) {
    f["port_id"] = Value::Null;
    f["fixed_ip_address"] = Value::Null;
    f["router_id"] = Value::Null;
    f["status"] = json!("DOWN");
    f["updated_at"] = json!(now());
}

/// Points the floating IP at `port_id`; returns the server behind the port, if any.
#[allow(clippy::result_large_err)]
fn associate(
    st: &mut Store,
    fip_id: &str,
    port_id: &str,
    fixed: Option<&str>,
) -> Result<Option<String>, Response> {
    let Some(port) = st.ports.get(port_id) else {
        return Err(err(
            404,
            "PortNotFound",
            &format!("Port {port_id} could not be found."),
        ));
    };
    let ip = fixed.map(str::to_string).or_else(|| {
        port["fixed_ips"][0]["ip_address"]
            .as_str()
            .map(str::to_string)
    });
    let Some(ip) = ip else {
        return Err(bad(&format!(
            "Bad floatingip request: Port {port_id} does not have any IPv4 address."
        )));
    };
    let device = port["device_id"]
        .as_str()
        .filter(|d| !d.is_empty())
        .map(str::to_string);
    let taken = st.floating_ips.values().any(|f| {
        f["id"] != fip_id && f["port_id"] == port_id && f["fixed_ip_address"] == ip.as_str()
    });
    if taken {
        return Err(err(
            409,
            "FloatingIPPortAlreadyAssociated",
            &format!(
                "Cannot associate floating IP with port {port_id} using fixed IP {ip}, as that fixed IP already has a floating IP."
            ),
        ));
    }
    if let Some(f) = st.floating_ips.get_mut(fip_id) {
        f["port_id"] = json!(port_id);
        f["fixed_ip_address"] = json!(ip);
        f["router_id"] = json!(ROUTER_ID);
        f["status"] = json!("ACTIVE");
        f["updated_at"] = json!(now());
    }
    Ok(device)
}

/// Keeps the SSH endpoint listening on exactly the server's current addresses.
fn sync_ssh(sh: &Shared, server: Option<String>) {
    if let Some(id) = server {
        let addrs = sh.store().server_addresses(&id);
        sh.ssh.set_addresses(&id, &addrs);
    }
}

async fn fip_create(State(sh): S, body: Body) -> Response {
    let body = body.map(|b| b.0).unwrap_or_default();
    let f = &body["floatingip"];
    let Some(net) = f["floating_network_id"].as_str() else {
        return bad(
            "Failed to parse request. Required attribute 'floating_network_id' not specified",
        );
    };
    let mut st = sh.store();
    match st.networks.get(net) {
        None => {
            return err(
                404,
                "NetworkNotFound",
                &format!("Network {net} could not be found."),
            );
        }
        Some(n) if n["router:external"] != true => {
            return err(
                400,
                "BadRequest",
                &format!("Bad floatingip request: Network {net} is not a valid external network."),
            );
        }
        Some(_) => {}
    }
    let Some(sub) = st.first_subnet_of(net) else {
        return bad("External network has no subnet.");
    };
    let addr = match f["floating_ip_address"].as_str() {
        Some(a) => match a.parse::<Ipv4Addr>() {
            Ok(ip) if st.ip_in_use(ip) => {
                return err(
                    409,
                    "IpAddressAlreadyAllocated",
                    &format!("IP address {ip} already allocated in subnet {sub}"),
                );
            }
            Ok(ip) => ip,
            Err(_) => {
                return bad(&format!(
                    "Invalid input for floating_ip_address. Reason: '{a}' is not a valid IP address."
                ));
            }
        },
        None => match st.allocate_ip(&sub) {
            Some(ip) => ip,
            None => {
                return err(
                    409,
                    "IpAddressGenerationFailure",
                    &format!("No more IP addresses available on network {net}."),
                );
            }
        },
    };
    let ts = now();
    let id = new_uuid();
    let doc = json!({"id": id, "tenant_id": st.project_id, "project_id": st.project_id,
        "floating_ip_address": addr.to_string(), "floating_network_id": net, "router_id": null,
        "port_id": null, "fixed_ip_address": null, "status": "DOWN",
        "description": f["description"].as_str().unwrap_or(""), "port_details": null, "tags": [],
        "created_at": ts, "updated_at": ts, "revision_number": 0});
    st.floating_ips.insert(id.clone(), doc);
    let mut server = None;
    if let Some(port) = f["port_id"].as_str() {
        match associate(&mut st, &id, port, f["fixed_ip_address"].as_str()) {
            Ok(s) => server = s,
            Err(r) => {
                st.floating_ips.shift_remove(&id);
                return r;
            }
        }
    }
    let doc = st.floating_ips.get(&id).cloned().unwrap_or_default();
    drop(st);
    sync_ssh(&sh, server);
    (StatusCode::CREATED, Json(json!({ "floatingip": doc }))).into_response()
}

async fn fip_update(State(sh): S, Path(id): Path<String>, body: Body) -> Response {
    let body = body.map(|b| b.0).unwrap_or_default();
    let f = &body["floatingip"];
    let mut st = sh.store();
    let Some(current) = st.floating_ips.get(&id) else {
        return err(
            404,
            "FloatingIPNotFound",
            &format!("Floating IP {id} could not be found."),
        );
    };
    let old_server = current["port_id"]
        .as_str()
        .and_then(|p| st.ports.get(p))
        .and_then(|p| p["device_id"].as_str())
        .filter(|d| !d.is_empty())
        .map(str::to_string);
    let mut new_server = None;
    match f.get("port_id") {
        Some(Value::String(port)) => {
            match associate(&mut st, &id, port, f["fixed_ip_address"].as_str()) {
                Ok(s) => new_server = s,
                Err(r) => return r,
            }
        }
        Some(Value::Null) => {
            if let Some(doc) = st.floating_ips.get_mut(&id) {
                disassociate(doc);
            }
        }
        _ => {}
    }
    if let (Some(d), Some(doc)) = (f.get("description"), st.floating_ips.get_mut(&id)) {
        doc["description"] = d.clone();
    }
    let doc = st.floating_ips.get(&id).cloned().unwrap_or_default();
    drop(st);
    sync_ssh(&sh, old_server);
    sync_ssh(&sh, new_server);
    Json(json!({ "floatingip": doc })).into_response()
}

async fn fip_delete(State(sh): S, Path(id): Path<String>) -> Response {
    let mut st = sh.store();
    let Some(doc) = st.floating_ips.shift_remove(&id) else {
        return err(
            404,
            "FloatingIPNotFound",
            &format!("Floating IP {id} could not be found."),
        );
    };
    let server = doc["port_id"]
        .as_str()
        .and_then(|p| st.ports.get(p))
        .and_then(|p| p["device_id"].as_str())
        .filter(|d| !d.is_empty())
        .map(str::to_string);
    drop(st);
    sync_ssh(&sh, server);
    StatusCode::NO_CONTENT.into_response()
}
