//! Nova (compute v2.1): version discovery, microversions, flavors, server groups and limits.
//! Servers and key pairs have their own files.

use std::sync::Arc;

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::endpoints::Listener;
use super::faults::Service;
use super::http_error::error;
use super::shared::Shared;
use super::store::{Flavor, ServerStatus, new_uuid};

/// The highest compute microversion the simulator claims (`OpenStack-API-Version: compute 2.96`).
/// Requests above it get 406, as from Nova.
pub const MAX_MICROVERSION: u32 = 96;

/// The negotiated compute microversion `2.<minor>` of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Microversion(pub u32);

impl Microversion {
    pub fn at_least(self, minor: u32) -> bool {
        self.0 >= minor
    }
}

/// Reads the microversion headers. `Ok(None)` means none was asked for (2.1).
/// `Err(text)` carries the 406/400 message.
pub fn parse_microversion(headers: &axum::http::HeaderMap) -> Result<Microversion, (u16, String)> {
    let modern = headers
        .get_all("openstack-api-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|part| {
            let mut it = part.split_whitespace();
            match (it.next(), it.next()) {
                (Some(svc), Some(ver)) if svc.eq_ignore_ascii_case("compute") => {
                    Some(ver.to_string())
                }
                _ => None,
            }
        });
    let legacy = headers
        .get("x-openstack-nova-api-version")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string());
    let Some(raw) = modern.or(legacy) else {
        return Ok(Microversion(1));
    };
    if raw.eq_ignore_ascii_case("latest") {
        return Ok(Microversion(MAX_MICROVERSION));
    }
    let parsed = raw
        .split_once('.')
        .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
    match parsed {
        Some((2, minor)) if (1..=MAX_MICROVERSION).contains(&minor) => Ok(Microversion(minor)),
        Some(_) => Err((
            406,
            format!(
                "Version {raw} is not supported by the API. Minimum is 2.1 and maximum is 2.{MAX_MICROVERSION}."
            ),
        )),
        None => Err((
            400,
            format!(
                "API Version String {raw} is of invalid format. Must be of format MajorNum.MinorNum."
            ),
        )),
    }
}

pub fn router() -> Router<Arc<Shared>> {
    let v = "/compute/v2.1";
    Router::new()
        .route("/compute", get(versions))
        .route("/compute/", get(versions))
        .route(v, get(version))
        .route(&format!("{v}/"), get(version))
        .route(&format!("{v}/flavors"), get(flavors))
        .route(&format!("{v}/flavors/detail"), get(flavors_detail))
        .route(&format!("{v}/flavors/{{id}}"), get(flavor_show))
        .route(&format!("{v}/limits"), get(limits))
        .route(
            &format!("{v}/os-server-groups"),
            get(groups_list).post(group_create),
        )
        .route(
            &format!("{v}/os-server-groups/{{id}}"),
            get(group_show).delete(group_delete),
        )
        .merge(super::nova_servers::router())
        .merge(super::nova_keypairs::router())
}

fn version_doc(base: &str) -> Value {
    json!({"id": "v2.1", "status": "CURRENT", "version": format!("2.{MAX_MICROVERSION}"),
        "min_version": "2.1", "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": format!("{base}/compute/v2.1/")},
            {"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"}],
        "media-types": [{"base": "application/json",
            "type": "application/vnd.openstack.compute+json;version=2.1"}]})
}

// Version documents link to the listener that was asked, as Nova links to the host it was
// asked on: a client that follows the self link stays on the endpoint it chose.
async fn versions(Extension(at): Extension<Listener>) -> Json<Value> {
    let mut v = version_doc(&at.base);
    if let Some(o) = v.as_object_mut() {
        o.remove("media-types");
        o["links"] = json!([{"rel": "self", "href": format!("{}/compute/v2.1/", at.base)}]);
    }
    Json(json!({"versions": [v]}))
}

async fn version(Extension(at): Extension<Listener>) -> Json<Value> {
    Json(json!({"version": version_doc(&at.base)}))
}

fn links(base: &str, kind: &str, id: &str) -> Value {
    json!([{"rel": "self", "href": format!("{base}/compute/v2.1/{kind}/{id}")},
        {"rel": "bookmark", "href": format!("{base}/compute/{kind}/{id}")}])
}

pub fn flavor_doc(base: &str, f: &Flavor, detail: bool) -> Value {
    let mut v = json!({"id": f.id, "name": f.name, "links": links(base, "flavors", &f.id)});
    if detail {
        let o = v.as_object_mut().into_iter().next();
        if let Some(o) = o {
            o.insert("ram".into(), json!(f.ram));
            o.insert("disk".into(), json!(f.disk));
            o.insert("swap".into(), json!(""));
            o.insert("OS-FLV-EXT-DATA:ephemeral".into(), json!(0));
            o.insert("OS-FLV-DISABLED:disabled".into(), json!(false));
            o.insert("vcpus".into(), json!(f.vcpus));
            o.insert("os-flavor-access:is_public".into(), json!(true));
            o.insert("rxtx_factor".into(), json!(1.0));
        }
    }
    v
}

async fn flavors(State(sh): State<Arc<Shared>>) -> Json<Value> {
    let st = sh.store();
    let list: Vec<Value> = st
        .flavors
        .iter()
        .map(|f| flavor_doc(&sh.base_url, f, false))
        .collect();
    Json(json!({ "flavors": list }))
}

async fn flavors_detail(State(sh): State<Arc<Shared>>) -> Json<Value> {
    let st = sh.store();
    let list: Vec<Value> = st
        .flavors
        .iter()
        .map(|f| flavor_doc(&sh.base_url, f, true))
        .collect();
    Json(json!({ "flavors": list }))
}

async fn flavor_show(State(sh): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let st = sh.store();
    match st.flavor(&id) {
        Some(f) => Json(json!({"flavor": flavor_doc(&sh.base_url, f, true)})).into_response(),
        None => error(
            Service::Compute,
            404,
            &format!("Flavor {id} could not be found."),
        ),
    }
}

/// Nova's absolute limits, in the shape of microversion 2.57 and later. Only the instance
/// quota is enforced (`nova_servers.rs`); cores and RAM are unlimited (-1, as Nova writes
/// it), and their use is what the flavors of the project's servers add up to.
async fn limits(State(sh): State<Arc<Shared>>) -> Json<Value> {
    let st = sh.store();
    let (mut instances, mut cores, mut ram) = (0u64, 0u64, 0u64);
    for s in st
        .servers
        .values()
        .filter(|s| s.status != ServerStatus::Deleted)
    {
        instances += 1;
        if let Some(f) = st.flavor(&s.flavor_id) {
            cores += u64::from(f.vcpus);
            ram += u64::from(f.ram);
        }
    }
    Json(json!({"limits": {"rate": [], "absolute": {
        "maxTotalInstances": st.instance_quota, "totalInstancesUsed": instances,
        "maxTotalCores": -1, "totalCoresUsed": cores,
        "maxTotalRAMSize": -1, "totalRAMUsed": ram,
        "maxTotalKeypairs": 100, "maxServerMeta": 128, "maxServerGroups": 10,
        "maxServerGroupMembers": 10, "totalServerGroupsUsed": st.server_groups.len()}}}))
}

fn group_view(g: &Value, mv: Microversion) -> Value {
    let mut g = g.clone();
    if let Some(o) = g.as_object_mut() {
        if mv.at_least(64) {
            o.remove("policies");
            o.remove("metadata");
        } else {
            o.remove("policy");
            o.remove("rules");
        }
    }
    g
}

async fn groups_list(
    State(sh): State<Arc<Shared>>,
    Extension(mv): Extension<Microversion>,
) -> Json<Value> {
    let st = sh.store();
    let list: Vec<Value> = st
        .server_groups
        .values()
        .map(|g| group_view(g, mv))
        .collect();
    Json(json!({ "server_groups": list }))
}

async fn group_show(
    State(sh): State<Arc<Shared>>,
    Extension(mv): Extension<Microversion>,
    Path(id): Path<String>,
) -> Response {
    match sh.store().server_groups.get(&id) {
        Some(g) => Json(json!({"server_group": group_view(g, mv)})).into_response(),
        None => error(
            Service::Compute,
            404,
            &format!("Instance group {id} could not be found."),
        ),
    }
}

const POLICIES: [&str; 4] = [
    "affinity",
    "anti-affinity",
    "soft-affinity",
    "soft-anti-affinity",
];

async fn group_create(
    State(sh): State<Arc<Shared>>,
    Extension(mv): Extension<Microversion>,
    body: Option<Json<Value>>,
) -> Response {
    let body = body.map(|b| b.0).unwrap_or_default();
    let g = &body["server_group"];
    let Some(name) = g["name"].as_str() else {
        return error(
            Service::Compute,
            400,
            "Invalid input for field/attribute server_group. Value: None. 'name' is a required property",
        );
    };
    let policy = if mv.at_least(64) {
        g["policy"].as_str()
    } else {
        g["policies"].get(0).and_then(Value::as_str)
    };
    let Some(policy) = policy.filter(|p| POLICIES.contains(p)) else {
        return error(
            Service::Compute,
            400,
            "Invalid input for field/attribute policy. Value must be one of affinity, anti-affinity, soft-affinity, soft-anti-affinity.",
        );
    };
    let mut st = sh.store();
    let id = new_uuid();
    let user = st.users.first().map(|u| u.id.clone()).unwrap_or_default();
    let doc = json!({"id": id, "name": name, "policies": [policy], "policy": policy,
        "rules": g.get("rules").cloned().unwrap_or(json!({})), "members": [], "metadata": {},
        "project_id": st.project_id, "user_id": user});
    st.server_groups.insert(id, doc.clone());
    Json(json!({"server_group": group_view(&doc, mv)})).into_response()
}

async fn group_delete(State(sh): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match sh.store().server_groups.shift_remove(&id) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => error(
            Service::Compute,
            404,
            &format!("Instance group {id} could not be found."),
        ),
    }
}
