//! The HTTP front: one listener on 127.0.0.1 serving all four services under path prefixes
//! (`/identity`, `/compute`, `/image`, `/network`, as devstack lays them out), with a gate
//! that applies injected faults, checks tokens, negotiates Nova microversions and logs.

use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;

use super::endpoints::Listener;
use super::faults::Service;
use super::http_error::{error, injected, unauthorized};
use super::keystone::token_valid;
use super::nova::parse_microversion;
use super::request_log::RequestRecord;
use super::shared::Shared;

pub(crate) fn app(shared: Arc<Shared>, listener: Listener) -> Router {
    Router::new()
        .merge(super::keystone::router())
        .merge(super::nova::router())
        .merge(super::glance::router())
        .merge(super::neutron::router())
        .merge(super::cinder::router())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), gate))
        // Outside the gate, so that the gate and every handler can read it.
        .layer(axum::Extension(listener))
        .with_state(shared)
}

async fn not_found(req: Request) -> Response {
    let service = Service::of_path(req.uri().path()).unwrap_or(Service::Compute);
    error(service, 404, "The resource could not be found.")
}

/// Version documents answer without a token, as on the real services.
fn is_discovery(path: &str) -> bool {
    let p = path.trim_end_matches('/');
    matches!(
        p,
        "" | "/compute"
            | "/compute/v2.1"
            | "/image"
            | "/image/versions"
            | "/network"
            | "/volume/v3"
    ) || p.starts_with("/identity")
}

async fn gate(
    State(sh): State<Arc<Shared>>,
    matched: Option<MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let user_agent = req
        .headers()
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let route = matched
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| path.clone());
    let service = Service::of_path(&path);
    let endpoint = req
        .extensions()
        .get::<Listener>()
        .and_then(|l| l.label.clone());
    let (req, body) = keep_body(req, service).await;

    let verdict = sh.faults().on_request(&method, &path);
    if !verdict.delay.is_zero() {
        tokio::time::sleep(verdict.delay).await;
    }
    let mut req = req;
    let mut mv = None;
    let mut resp = if let Some((status, retry_after)) = verdict.respond {
        injected(service, status, retry_after)
    } else if service.is_some_and(|s| s != Service::Identity)
        && !is_discovery(&path)
        && !token_valid(&sh, req.headers())
    {
        unauthorized(&sh.base_url)
    } else if service == Some(Service::Compute) {
        match parse_microversion(req.headers()) {
            Ok(v) => {
                mv = Some(v);
                req.extensions_mut().insert(v);
                next.run(req).await
            }
            Err((status, msg)) => error(Service::Compute, status, &msg),
        }
    } else {
        next.run(req).await
    };

    let headers = resp.headers_mut();
    let request_id = format!("req-{}", uuid::Uuid::new_v4());
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert("x-openstack-request-id", v.clone());
        if service == Some(Service::Compute) {
            headers.insert("x-compute-request-id", v);
        }
    }
    if service == Some(Service::Compute) {
        let minor = mv.map(|m| m.0).unwrap_or(1);
        if let Ok(v) = HeaderValue::from_str(&format!("compute 2.{minor}")) {
            headers.insert("openstack-api-version", v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!("2.{minor}")) {
            headers.insert("x-openstack-nova-api-version", v);
        }
        headers.append("vary", HeaderValue::from_static("OpenStack-API-Version"));
        headers.append(
            "vary",
            HeaderValue::from_static("X-OpenStack-Nova-API-Version"),
        );
    }
    let record = RequestRecord {
        method,
        path,
        route,
        query,
        status: resp.status().as_u16(),
        user_agent,
        body,
        endpoint,
        at: sh.started.elapsed(),
    };
    sh.log().push(record);
    resp
}

/// Requests larger than this are not kept in the log (the handlers still see them whole).
const KEPT_BODY_LIMIT: usize = 1 << 20;

/// Reads the body once so the log can keep it as JSON, and gives the handler the same bytes.
/// Keystone's bodies are never kept: they carry passwords and application-credential secrets.
async fn keep_body(req: Request, service: Option<Service>) -> (Request, Option<serde_json::Value>) {
    if service == Some(Service::Identity) || req.method() == axum::http::Method::GET {
        return (req, None);
    }
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, KEPT_BODY_LIMIT).await {
        Ok(bytes) => {
            let json = serde_json::from_slice(&bytes).ok();
            (
                Request::from_parts(parts, axum::body::Body::from(bytes)),
                json,
            )
        }
        // Too large or broken: the handler answers an empty body as the real service would
        // answer a malformed one.
        Err(_) => (Request::from_parts(parts, axum::body::Body::empty()), None),
    }
}
