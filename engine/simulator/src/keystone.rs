//! Keystone v3: version discovery and tokens (password and application credentials, project
//! scope), with a service catalog pointing at the other simulated services.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::faults::Service;
use super::http_error::{error, unauthorized};
use super::shared::Shared;
use super::store::{Store, Token, new_hex_id};
use super::timefmt;

type S = State<Arc<Shared>>;

pub fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/identity", get(versions))
        .route("/identity/", get(versions))
        .route("/identity/v3", get(version))
        .route("/identity/v3/", get(version))
        .route(
            "/identity/v3/auth/tokens",
            get(validate_token).post(issue_token).delete(revoke_token),
        )
}

fn version_doc(base: &str) -> Value {
    json!({"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{base}/identity/v3/")}],
        "media-types": [{"base": "application/json",
            "type": "application/vnd.openstack.identity-v3+json"}]})
}

async fn versions(State(sh): S) -> Response {
    let mut r = (
        StatusCode::MULTIPLE_CHOICES,
        Json(json!({"versions": {"values": [version_doc(&sh.base_url)]}})),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{}/identity/v3/", sh.base_url)) {
        r.headers_mut().insert("location", v);
    }
    r
}

async fn version(State(sh): S) -> Json<Value> {
    Json(json!({"version": version_doc(&sh.base_url)}))
}

/// True when the request carries a live, project-scoped token.
pub fn token_valid(sh: &Shared, headers: &HeaderMap) -> bool {
    let Some(tok) = headers.get("x-auth-token").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    sh.store()
        .tokens
        .get(tok)
        .is_some_and(|t| t.scoped && t.expires > SystemTime::now())
}

fn token_body(sh: &Shared, st: &Store, t: &Token) -> Value {
    let user = st.users.iter().find(|u| u.id == t.user_id);
    let mut tok = json!({
        "methods": t.methods,
        "user": {"domain": {"id": st.domain_id, "name": super::seed::DOMAIN_NAME},
            "id": t.user_id, "name": user.map(|u| u.name.as_str()).unwrap_or_default(),
            "password_expires_at": null},
        "audit_ids": [new_hex_id()[..22].to_string()],
        "expires_at": timefmt::micros(t.expires),
        "issued_at": timefmt::micros(t.issued),
    });
    if t.scoped {
        tok["project"] = json!({"domain": {"id": st.domain_id, "name": super::seed::DOMAIN_NAME},
            "id": st.project_id, "name": st.project_name});
        tok["is_domain"] = json!(false);
        tok["roles"] = json!([{"id": "5f1c0c1e0a8f4f6f9d2b2f6c3f1e9a01", "name": "reader"},
            {"id": "8e2a7c4d1b3f4e5a9c6d7e8f9a0b1c02", "name": "member"}]);
        tok["catalog"] =
            super::endpoints::catalog(&sh.base_url, &sh.split_endpoints, &st.project_id);
    }
    if let Some(id) = &t.app_cred_id {
        let name = st
            .app_creds
            .iter()
            .find(|a| &a.id == id)
            .map(|a| a.name.clone());
        tok["application_credential"] = json!({"id": id, "name": name, "restricted": true});
    }
    json!({ "token": tok })
}

fn domain_matches(st: &Store, d: &Value) -> bool {
    // Only the default domain exists; a missing domain is Keystone's 401, not a 400.
    d["id"].as_str() == Some(st.domain_id.as_str())
        || d["name"].as_str() == Some(super::seed::DOMAIN_NAME)
}

fn find_user(st: &Store, u: &Value) -> Option<String> {
    if let Some(id) = u["id"].as_str() {
        return st.users.iter().find(|x| x.id == id).map(|x| x.id.clone());
    }
    let name = u["name"].as_str()?;
    if !domain_matches(st, &u["domain"]) {
        return None;
    }
    st.users
        .iter()
        .find(|x| x.name == name)
        .map(|x| x.id.clone())
}

enum Outcome {
    Ok {
        user_id: String,
        scoped: bool,
        method: &'static str,
        app_cred_id: Option<String>,
        /// A token made from another token expires with it, as Keystone's do.
        not_after: Option<SystemTime>,
    },
    Unauthorized,
    Bad(String),
}

fn authenticate(st: &Store, body: &Value) -> Outcome {
    let identity = &body["auth"]["identity"];
    let Some(methods) = identity["methods"].as_array() else {
        return Outcome::Bad("Expecting to find identity in auth. The server could not comply with the request since it is either malformed or otherwise incorrect. The client is assumed to be in error.".into());
    };
    let wants = |m: &str| methods.iter().any(|x| x == m);
    let scope = &body["auth"]["scope"];
    let scoped = match &scope["project"] {
        Value::Null => false,
        p => {
            let ok = p["id"].as_str() == Some(st.project_id.as_str())
                || (p["name"].as_str() == Some(st.project_name.as_str())
                    && domain_matches(st, &p["domain"]));
            if !ok {
                return Outcome::Unauthorized;
            }
            true
        }
    };
    if wants("application_credential") {
        let ac = &identity["application_credential"];
        let Some(secret) = ac["secret"].as_str() else {
            return Outcome::Bad("Invalid input for field 'identity/application_credential': 'secret' is a required property".into());
        };
        let found = if let Some(id) = ac["id"].as_str() {
            st.app_creds.iter().find(|a| a.id == id)
        } else if let Some(name) = ac["name"].as_str() {
            let Some(uid) = find_user(st, &ac["user"]) else {
                return Outcome::Unauthorized;
            };
            st.app_creds
                .iter()
                .find(|a| a.name == name && a.user_id == uid)
        } else {
            None
        };
        return match found {
            Some(a) if a.secret.expose_secret() == secret => Outcome::Ok {
                user_id: a.user_id.clone(),
                scoped: true,
                method: "application_credential",
                app_cred_id: Some(a.id.clone()),
                not_after: None,
            },
            _ => Outcome::Unauthorized,
        };
    }
    if wants("password") {
        let user = &identity["password"]["user"];
        let Some(uid) = find_user(st, user) else {
            return Outcome::Unauthorized;
        };
        let given = user["password"].as_str().unwrap_or_default();
        let ok = st
            .users
            .iter()
            .any(|u| u.id == uid && u.password.expose_secret() == given);
        return if ok {
            Outcome::Ok {
                user_id: uid,
                scoped,
                method: "password",
                app_cred_id: None,
                not_after: None,
            }
        } else {
            Outcome::Unauthorized
        };
    }
    if wants("token") {
        let old = identity["token"]["id"].as_str().unwrap_or_default();
        return match st.tokens.get(old) {
            Some(t) if t.expires > SystemTime::now() => Outcome::Ok {
                user_id: t.user_id.clone(),
                scoped,
                method: "token",
                app_cred_id: t.app_cred_id.clone(),
                not_after: Some(t.expires),
            },
            _ => Outcome::Unauthorized,
        };
    }
    Outcome::Bad("Attempted to authenticate with an unsupported method.".into())
}

async fn issue_token(State(sh): S, body: Option<Json<Value>>) -> Response {
    let Some(Json(body)) = body else {
        return error(
            Service::Identity,
            400,
            "The request body is not valid JSON.",
        );
    };
    let mut st = sh.store();
    let (user_id, scoped, method, app_cred_id, not_after) = match authenticate(&st, &body) {
        Outcome::Ok {
            user_id,
            scoped,
            method,
            app_cred_id,
            not_after,
        } => (user_id, scoped, method, app_cred_id, not_after),
        Outcome::Unauthorized => return unauthorized(&sh.base_url),
        Outcome::Bad(m) => return error(Service::Identity, 400, &m),
    };
    let now = SystemTime::now();
    let token = Token {
        user_id,
        scoped,
        methods: vec![method.to_string()],
        issued: now,
        expires: not_after.map_or(now + sh.opts.token_ttl, |cap| {
            cap.min(now + sh.opts.token_ttl)
        }),
        app_cred_id,
    };
    let id = format!("gAAAAAB{}{}", new_hex_id(), new_hex_id());
    let body = token_body(&sh, &st, &token);
    st.tokens.insert(id.clone(), token);
    let mut r = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&id) {
        r.headers_mut().insert("x-subject-token", v);
    }
    r
}

async fn validate_token(State(sh): S, headers: HeaderMap) -> Response {
    if !token_valid(&sh, &headers) {
        return unauthorized(&sh.base_url);
    }
    let subject = headers
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let st = sh.store();
    match st.tokens.get(subject) {
        Some(t) if t.expires > SystemTime::now() => {
            let mut r = Json(token_body(&sh, &st, t)).into_response();
            if let Ok(v) = HeaderValue::from_str(subject) {
                r.headers_mut().insert("x-subject-token", v);
            }
            r
        }
        _ => error(
            Service::Identity,
            404,
            "Could not find token: the token is expired or revoked.",
        ),
    }
}

async fn revoke_token(State(sh): S, headers: HeaderMap) -> Response {
    if !token_valid(&sh, &headers) {
        return unauthorized(&sh.base_url);
    }
    let subject = headers
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    match sh.store().tokens.remove(&subject) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => error(Service::Identity, 404, "Could not find token."),
    }
}
