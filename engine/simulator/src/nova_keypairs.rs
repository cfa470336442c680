//! Nova key pairs: import a public key, list, show, delete. Server-side generation exists only
//! below microversion 2.92, as in Nova.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use russh::keys::ssh_key::{Algorithm, LineEnding, PrivateKey, PublicKey};
use serde_json::{Value, json};

use super::faults::Service;
use super::http_error::error;
use super::nova::Microversion;
use super::shared::Shared;
use super::store::Keypair;
use super::timefmt;

type S = State<Arc<Shared>>;

pub fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/compute/v2.1/os-keypairs", get(list).post(create))
        .route("/compute/v2.1/os-keypairs/{name}", get(show).delete(delete))
}

/// Nova's fingerprint: MD5 of the key blob, as colon-separated hex.
fn md5_fingerprint(key: &PublicKey) -> Option<String> {
    let blob = key.to_bytes().ok()?;
    let digest = md5::compute(blob);
    Some(
        digest
            .0
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

fn summary(k: &Keypair, mv: Microversion) -> Value {
    let mut v = json!({"name": k.name, "public_key": k.public_key, "fingerprint": k.fingerprint});
    if mv.at_least(2) {
        v["type"] = json!(k.kind);
    }
    v
}

async fn list(State(sh): S, Extension(mv): Extension<Microversion>) -> Json<Value> {
    let st = sh.store();
    let list: Vec<Value> = st
        .keypairs
        .values()
        .map(|k| json!({"keypair": summary(k, mv)}))
        .collect();
    Json(json!({ "keypairs": list }))
}

fn not_found(sh: &Shared, name: &str) -> Response {
    let user = sh
        .store()
        .users
        .first()
        .map(|u| u.id.clone())
        .unwrap_or_default();
    error(
        Service::Compute,
        404,
        &format!("Keypair {name} not found for user {user}"),
    )
}

async fn show(
    State(sh): S,
    Extension(mv): Extension<Microversion>,
    Path(name): Path<String>,
) -> Response {
    let doc = {
        let st = sh.store();
        st.keypairs.get(&name).map(|k| {
            let user = st.users.first().map(|u| u.id.clone()).unwrap_or_default();
            let mut v = summary(k, mv);
            v["user_id"] = json!(user);
            v["created_at"] = json!(timefmt::micros_naive(k.created));
            v["deleted"] = json!(false);
            v["deleted_at"] = Value::Null;
            v["updated_at"] = Value::Null;
            v["id"] = json!(1);
            v
        })
    };
    match doc {
        Some(v) => Json(json!({ "keypair": v })).into_response(),
        None => not_found(&sh, &name),
    }
}

async fn create(
    State(sh): S,
    Extension(mv): Extension<Microversion>,
    body: Option<Json<Value>>,
) -> Response {
    let body = body.map(|b| b.0).unwrap_or_default();
    let kp = &body["keypair"];
    let Some(name) = kp["name"].as_str().filter(|n| !n.trim().is_empty()) else {
        return error(
            Service::Compute,
            400,
            "Invalid input for field/attribute keypair. Value: None. 'name' is a required property",
        );
    };
    let kind = kp["type"].as_str().unwrap_or("ssh").to_string();
    let (public_key, private_key) = match kp["public_key"].as_str() {
        Some(text) => (text.trim().to_string(), None),
        None if mv.at_least(92) => {
            return error(
                Service::Compute,
                400,
                "Invalid input for field/attribute keypair. Value: None. 'public_key' is a required property",
            );
        }
        None => {
            let Ok(key) = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519) else {
                return error(Service::Compute, 500, "Key generation failed.");
            };
            let public = key.public_key().to_openssh().unwrap_or_default();
            let private = key
                .to_openssh(LineEnding::LF)
                .map(|z| z.to_string())
                .unwrap_or_default();
            (public, Some(private))
        }
    };
    let Some(fingerprint) = PublicKey::from_openssh(&public_key)
        .ok()
        .and_then(|k| md5_fingerprint(&k))
    else {
        return error(
            Service::Compute,
            400,
            "Keypair data is invalid: failed to generate fingerprint",
        );
    };
    let mut st = sh.store();
    if st.keypairs.contains_key(name) {
        return error(
            Service::Compute,
            409,
            &format!("Key pair '{name}' already exists."),
        );
    }
    let k = Keypair {
        name: name.to_string(),
        public_key,
        fingerprint,
        kind,
        created: SystemTime::now(),
    };
    let mut v = summary(&k, mv);
    v["user_id"] = json!(st.users.first().map(|u| u.id.clone()));
    if let Some(p) = private_key {
        v["private_key"] = json!(p);
    }
    st.keypairs.insert(k.name.clone(), k);
    let status = if mv.at_least(2) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, Json(json!({ "keypair": v }))).into_response()
}

async fn delete(
    State(sh): S,
    Extension(mv): Extension<Microversion>,
    Path(name): Path<String>,
) -> Response {
    if sh.store().keypairs.shift_remove(&name).is_none() {
        return not_found(&sh, &name);
    }
    if mv.at_least(2) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        StatusCode::ACCEPTED.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_matches_novas() {
        // Nova 34 printed this fingerprint for this key.
        let key = PublicKey::from_openssh(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm5LyvG4+rnhq6FQfDUiGr6PbZ2zc0e4mOYOo0y2f4e test",
        )
        .unwrap();
        assert_eq!(
            md5_fingerprint(&key).unwrap(),
            "6b:12:ef:74:90:c9:a1:14:5c:ca:f5:aa:fd:64:b4:9e"
        );
    }
}
