//! Error responses in each service's own format (as the real services send them).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::faults::Service;

/// Nova's body key for a status code.
fn nova_key(status: u16) -> &'static str {
    match status {
        400 => "badRequest",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "itemNotFound",
        406 => "computeFault",
        409 => "conflictingRequest",
        413 | 429 => "overLimit",
        501 => "notImplemented",
        503 => "serviceUnavailable",
        _ => "computeFault",
    }
}

fn neutron_type(status: u16) -> &'static str {
    match status {
        400 => "HTTPBadRequest",
        403 => "HTTPForbidden",
        404 => "HTTPNotFound",
        409 => "HTTPConflict",
        429 => "HTTPTooManyRequests",
        503 => "HTTPServiceUnavailable",
        _ => "HTTPInternalServerError",
    }
}

fn reason(status: u16) -> &'static str {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
}

/// An error in the format of `service`.
pub fn error(service: Service, status: u16, message: &str) -> Response {
    error_typed(service, status, None, message)
}

/// A Neutron error with its exception type (`PortNotFound`, ...); other services ignore the type.
pub fn error_typed(service: Service, status: u16, kind: Option<&str>, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status == 401 {
        return unauthorized("");
    }
    match service {
        // Cinder shares Nova's error format.
        Service::Compute | Service::Volume => (
            code,
            axum::Json(json!({ nova_key(status): {"code": status, "message": message} })),
        )
            .into_response(),
        Service::Network => (
            code,
            axum::Json(json!({"NeutronError": {
                "type": kind.unwrap_or(neutron_type(status)), "message": message, "detail": ""}})),
        )
            .into_response(),
        Service::Identity => (
            code,
            axum::Json(
                json!({"error": {"code": status, "message": message, "title": reason(status)}}),
            ),
        )
            .into_response(),
        // Glance answers errors with webob's HTML pages.
        Service::Image => {
            let title = format!("{status} {}", reason(status));
            let body = format!(
                "<html>\n <head>\n  <title>{title}</title>\n </head>\n <body>\n  <h1>{title}</h1>\n  {message}<br /><br />\n\n\n\n </body>\n</html>"
            );
            (
                code,
                [(header::CONTENT_TYPE, "text/html; charset=UTF-8")],
                body,
            )
                .into_response()
        }
    }
}

/// The 401 that keystonemiddleware (and Keystone itself) send for a missing or bad token;
/// `base` is the simulator's URL, for the `WWW-Authenticate` pointer to Keystone.
pub fn unauthorized(base: &str) -> Response {
    let mut r = (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"error": {"code": 401, "title": "Unauthorized",
            "message": "The request you have made requires authentication."}})),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("Keystone uri=\"{base}/identity/v3\"")) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// An injected fault answer; 429 carries `Retry-After`.
pub fn injected(service: Option<Service>, status: u16, retry_after: Option<u64>) -> Response {
    let message = match status {
        429 => "Rate limit exceeded, retry later.".to_string(),
        503 => "The server is currently unavailable. Please try again at a later time.".into(),
        _ => "The server has either erred or is incapable of performing the requested operation."
            .into(),
    };
    let mut r = error(service.unwrap_or(Service::Compute), status, &message);
    if let Some(secs) = retry_after
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}
