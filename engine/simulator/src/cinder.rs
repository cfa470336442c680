//! Cinder v3, as far as cleanup needs it: version discovery, and show, delete and metadata of
//! the volumes that boot-from-volume made. A volume is `in-use` while a server (even one Nova is
//! still deleting) holds it, and Cinder refuses to delete it then, as the real service does.
//! Paths with and without the project id both work (microversion 3.67 made it optional).

use std::sync::Arc;

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::endpoints::Listener;
use super::faults::Service;
use super::http_error::error;
use super::shared::Shared;
use super::store::Store;

type S = State<Arc<Shared>>;

pub fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/volume/v3", get(version))
        .route("/volume/v3/", get(version))
        .route(
            "/volume/v3/{project}/volumes/{id}",
            get(show_in).delete(delete_in),
        )
        .route("/volume/v3/volumes/{id}", get(show).delete(delete))
        .route(
            "/volume/v3/{project}/volumes/{id}/metadata",
            post(set_metadata_in),
        )
        .route("/volume/v3/volumes/{id}/metadata", post(set_metadata))
}

async fn version(Extension(at): Extension<Listener>) -> Json<Value> {
    Json(
        json!({"version": {"id": "v3.0", "status": "CURRENT", "version": "3.70",
        "min_version": "3.0", "updated": "2023-08-31T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{}/volume/v3/", at.base)}],
        "media-types": [{"base": "application/json",
            "type": "application/vnd.openstack.volume+json;version=3"}]}}),
    )
}

fn attached_to(st: &Store, id: &str) -> Option<String> {
    st.servers
        .values()
        .find(|s| s.volumes.iter().any(|v| v == id))
        .map(|s| s.id.clone())
}

fn not_found(id: &str) -> Response {
    error(
        Service::Volume,
        404,
        &format!("Volume {id} could not be found."),
    )
}

async fn show_in(state: S, Path((_, id)): Path<(String, String)>) -> Response {
    show(state, Path(id)).await
}

async fn show(State(sh): S, Path(id): Path<String>) -> Response {
    let st = sh.store();
    if !st.volumes.contains_key(&id) {
        return not_found(&id);
    }
    let server = attached_to(&st, &id);
    let attachments: Vec<Value> = server
        .iter()
        .map(|s| json!({"server_id": s, "volume_id": id, "id": id, "device": "/dev/vda"}))
        .collect();
    Json(
        json!({"volume": {"id": id, "status": if server.is_some() { "in-use" } else { "available" },
        "bootable": "true", "attachments": attachments, "size": 10,
        "metadata": st.volumes[&id].metadata, "os-vol-tenant-attr:tenant_id": st.project_id}}),
    )
    .into_response()
}

async fn set_metadata_in(
    state: S,
    Path((_, id)): Path<(String, String)>,
    body: Json<Value>,
) -> Response {
    set_metadata(state, Path(id), body).await
}

/// `POST .../metadata` adds to the volume's metadata (Cinder's "create or update" call) and
/// answers with all of it.
async fn set_metadata(State(sh): S, Path(id): Path<String>, Json(body): Json<Value>) -> Response {
    let mut st = sh.store();
    let Some(volume) = st.volumes.get_mut(&id) else {
        return not_found(&id);
    };
    let Some(items) = body.get("metadata").and_then(Value::as_object) else {
        return error(Service::Volume, 400, "Malformed request body: no metadata");
    };
    for (k, v) in items {
        volume.metadata.insert(k.clone(), v.clone());
    }
    Json(json!({"metadata": volume.metadata})).into_response()
}

async fn delete_in(state: S, Path((_, id)): Path<(String, String)>) -> Response {
    delete(state, Path(id)).await
}

async fn delete(State(sh): S, Path(id): Path<String>) -> Response {
    let mut st = sh.store();
    if !st.volumes.contains_key(&id) {
        return not_found(&id);
    }
    if attached_to(&st, &id).is_some() {
        return error(
            Service::Volume,
            400,
            "Invalid volume: Volume status must be available or error or error_restoring or \
             error_extending or error_managing and must not be migrating, attached, belong to a \
             group, have snapshots, awaiting a transfer, or be disassociated from snapshots after \
             volume transfer.",
        );
    }
    st.volumes.shift_remove(&id);
    StatusCode::ACCEPTED.into_response()
}
