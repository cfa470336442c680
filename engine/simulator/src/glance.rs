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
    let order = sort_order(&q);
    all.sort_by(|a, b| {
        for (key, desc) in &order {
            let o = cmp_values(&a[key.as_str()], &b[key.as_str()]);
            let o = if *desc { o.reverse() } else { o };
            if o != std::cmp::Ordering::Equal {
                return o;
            }
        }
        std::cmp::Ordering::Equal
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

/// Glance's `sort=created_at:desc,id:desc` or `sort_key`/`sort_dir`; default newest first.
fn sort_order(q: &[(String, String)]) -> Vec<(String, bool)> {
    if let Some(spec) = param(q, "sort") {
        return spec
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once(':') {
                Some((k, d)) => (k.to_string(), d != "asc"),
                None => (p.to_string(), true),
            })
            .collect();
    }
    let keys: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "sort_key")
        .map(|(_, v)| v.as_str())
        .collect();
    let dirs: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "sort_dir")
        .map(|(_, v)| v.as_str())
        .collect();
    if keys.is_empty() {
        return vec![("created_at".into(), true), ("id".into(), true)];
    }
    keys.iter()
        .enumerate()
        .map(|(i, k)| {
            (
                k.to_string(),
                dirs.get(i).or(dirs.first()).is_none_or(|d| *d != "asc"),
            )
        })
        .collect()
}

fn cmp_values(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
        _ => a
            .as_str()
            .unwrap_or_default()
            .cmp(b.as_str().unwrap_or_default()),
    }
}

async fn show(State(sh): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match sh.store().image(&id) {
        Some(i) => Json(i.clone()).into_response(),
        None => error(Service::Image, 404, &format!("No image found with ID {id}")),
    }
}
