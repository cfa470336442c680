//! Glance v2 images: version discovery, list (attribute filters such as `name` and `status`,
//! newest first, marker/limit) and show. Several images may share a name, as on real clouds.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::faults::Service;
use super::filter::{matches, param};
use super::http_error::error;
use super::shared::Shared;

pub fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/image", get(versions))
        .route("/image/", get(versions))
        .route("/image/versions", get(versions_ok))
        .route("/image/v2/images", get(list))
        .route("/image/v2/images/{id}", get(show))
}

fn versions_doc(base: &str) -> Value {
    let list: Vec<Value> = (0..=16)
        .rev()
        .map(|minor| {
            json!({"id": format!("v2.{minor}"),
                "status": if minor == 16 { "CURRENT" } else { "SUPPORTED" },
                "links": [{"rel": "self", "href": format!("{base}/image/v2/")}]})
        })
        .collect();
    json!({ "versions": list })
}

async fn versions(State(sh): State<Arc<Shared>>) -> Response {
    (
        StatusCode::MULTIPLE_CHOICES,
        Json(versions_doc(&sh.base_url)),
    )
        .into_response()
}

async fn versions_ok(State(sh): State<Arc<Shared>>) -> Json<Value> {
    Json(versions_doc(&sh.base_url))
}

async fn list(State(sh): State<Arc<Shared>>, Query(q): Query<Vec<(String, String)>>) -> Response {
    let st = sh.store();
    let mut all: Vec<&Value> = st.images.iter().filter(|i| matches(i, &q)).collect();
    // Newest first (Glance's default sort is created_at desc).
    all.sort_by(|a, b| {
        b["created_at"]
            .as_str()
            .cmp(&a["created_at"].as_str())
            .then_with(|| b["id"].as_str().cmp(&a["id"].as_str()))
    });
    let start = match param(&q, "marker") {
        Some(m) => match all.iter().position(|i| i["id"] == m) {
            Some(p) => p + 1,
            None => {
                return error(
                    Service::Image,
                    400,
                    &format!("Invalid marker. Image {m} could not be found."),
                );
            }
        },
        None => 0,
    };
    let limit = param(&q, "limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(25);
    let page: Vec<Value> = all
        .iter()
        .skip(start)
        .take(limit)
        .map(|i| (*i).clone())
        .collect();
    let mut body = json!({"images": page, "first": "/v2/images", "schema": "/v2/schemas/images"});
    if page.len() == limit
        && start + limit < all.len()
        && let Some(last) = page.last()
    {
        let mut next: Vec<String> = q
            .iter()
            .filter(|(k, _)| k != "marker")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        next.push(format!(
            "marker={}",
            last["id"].as_str().unwrap_or_default()
        ));
        body["next"] = json!(format!("/v2/images?{}", next.join("&")));
    }
    Json(body).into_response()
}

async fn show(State(sh): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match sh.store().image(&id) {
        Some(i) => Json(i.clone()).into_response(),
        None => error(Service::Image, 404, &format!("No image found with ID {id}")),
    }
}
