//! The OpenStack back end's HTTP behaviour against a small scripted fake cloud on loopback:
//! retries (500, 503, 429 with Retry-After, slow answers), one re-authentication on 401,
//! request ids in errors, the cause of a request that got no answer, no blind repeat of a
//! create, the duplicate-image rule, and secrets.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use executor_cloud::*;
use serde_json::{Value, json};

const PASSWORD: &str = "s3cr3t-pw-do-not-print";

/// What the fake does with the next request to a path.
#[derive(Clone, Copy, Debug)]
enum Act {
    Status(u16, Option<&'static str>),
    Delay(Duration),
    /// Do the work, then answer too late (the answer is lost, the effect is not).
    After(Duration),
    /// A 200 whose body never ends (no Content-Length).
    Endless,
}

#[derive(Default)]
struct Fake {
    port: u16,
    tokens: u32,
    script: HashMap<String, VecDeque<Act>>,
    seen: Vec<(String, String, String)>,
    servers: Vec<Value>,
    images: Vec<Value>,
    keystone_bodies: Vec<String>,
    /// The catalog's Neutron URL instead of the fake's own.
    network_url: Option<String>,
}

type Shared = Arc<Mutex<Fake>>;

fn reply(status: u16, body: Value, headers: &[(&'static str, String)]) -> Response {
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        axum::Json(body),
    )
        .into_response();
    r.headers_mut()
        .insert("x-openstack-request-id", "req-fake-0001".parse().unwrap());
    for (k, v) in headers {
        r.headers_mut().insert(*k, v.parse().unwrap());
    }
    r
}

async fn handle(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_end_matches('/').to_string();
    let key = format!("{method} {path}");
    let token = headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let (act, base) = {
        let mut f = state.lock().unwrap();
        f.seen.push((method.to_string(), path.clone(), token));
        let act = f.script.get_mut(&key).and_then(VecDeque::pop_front);
        (act, format!("http://127.0.0.1:{}", f.port))
    };
    match act {
        Some(Act::Status(code, retry_after)) => {
            let extra: Vec<(&'static str, String)> = retry_after
                .map(|v| ("retry-after", v.to_string()))
                .into_iter()
                .collect();
            return reply(
                code,
                json!({"computeFault": {"message": format!("scripted {code}"), "code": code}}),
                &extra,
            );
        }
        Some(Act::Delay(d)) => tokio::time::sleep(d).await,
        Some(Act::Endless) => {
            let spaces = tokio_util::io::ReaderStream::new(tokio::io::repeat(b' '));
            return Response::new(axum::body::Body::from_stream(spaces));
        }
        _ => {}
    }
    let response = respond(
        &mut state.lock().unwrap(),
        &method,
        &uri,
        &path,
        &key,
        &base,
        &body,
    );
    if let Some(Act::After(d)) = act {
        tokio::time::sleep(d).await;
    }
    response
}

fn respond(
    f: &mut Fake,
    method: &Method,
    uri: &Uri,
    path: &str,
    key: &str,
    base: &str,
    body: &Bytes,
) -> Response {
    match (method.as_str(), path) {
        ("POST", "/identity/v3/auth/tokens") => {
            f.tokens += 1;
            f.keystone_bodies
                .push(String::from_utf8_lossy(body).to_string());
            let ep = |t: &str, url: String| json!({"type": t, "endpoints": [{"interface": "public", "region": "RegionOne", "region_id": "RegionOne", "url": url}]});
            reply(
                201,
                json!({"token": {
                "expires_at": "2099-01-01T01:00:00.000000Z",
                "issued_at": "2099-01-01T00:00:00.000000Z",
                "project": {"id": "p1"},
                "catalog": [
                    ep("compute", format!("{base}/compute/v2.1")),
                    ep("image", format!("{base}/image")),
                    ep("network", f.network_url.clone().unwrap_or(format!("{base}/network"))),
                ]}}),
                &[("x-subject-token", format!("tok-{}", f.tokens))],
            )
        }
        ("GET", "/compute/v2.1") => reply(
            200,
            json!({"version": {"id": "v2.1", "status": "CURRENT", "version": "2.67", "min_version": "2.1",
            "links": [{"rel": "self", "href": format!("{base}/compute/v2.1/")}]}}),
            &[],
        ),
        ("GET", "/image") => reply(
            200,
            json!({"versions": [{"id": "v2.9", "status": "CURRENT", "links": [{"rel": "self", "href": format!("{base}/image/v2/")}]}]}),
            &[],
        ),
        ("GET", "/network") => reply(
            200,
            json!({"versions": [{"id": "v2.0", "status": "CURRENT", "links": [{"rel": "self", "href": format!("{base}/network/v2.0/")}]}]}),
            &[],
        ),
        ("GET", "/image/v2/images") => {
            let name = uri
                .query()
                .unwrap_or("")
                .split('&')
                .find_map(|kv| kv.strip_prefix("name="))
                .map(str::to_string);
            let images: Vec<Value> = f
                .images
                .iter()
                .filter(|i| name.as_deref().is_none_or(|n| i["name"] == n))
                .cloned()
                .collect();
            reply(200, json!({"images": images}), &[])
        }
        ("GET", "/compute/v2.1/flavors") => reply(
            200,
            json!({"flavors": [{"id": "f1", "name": "small"}]}),
            &[],
        ),
        ("POST", "/compute/v2.1/servers") => {
            let req: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let id = format!("srv-{}", f.servers.len() + 1);
            let mut server = req["server"].clone();
            server["id"] = json!(id);
            server["status"] = json!("BUILD");
            f.servers.push(server);
            reply(202, json!({"server": {"id": id}}), &[])
        }
        ("GET", "/compute/v2.1/servers/detail") => {
            reply(200, json!({"servers": f.servers.clone()}), &[])
        }
        ("GET", p) if p.starts_with("/compute/v2.1/servers/") => {
            let id = p.rsplit('/').next().unwrap_or("");
            match f.servers.iter().find(|s| s["id"] == id) {
                Some(s) => reply(200, json!({"server": s}), &[]),
                None => reply(
                    404,
                    json!({"itemNotFound": {"message": "Instance could not be found."}}),
                    &[],
                ),
            }
        }
        _ => reply(404, json!({"message": format!("fake has no {key}")}), &[]),
    }
}

async fn start() -> (Shared, String) {
    let state: Shared = Arc::new(Mutex::new(Fake::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    state.lock().unwrap().port = port;
    let app = Router::new().fallback(handle).with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (state, format!("http://127.0.0.1:{port}/identity/v3"))
}

fn settings() -> CloudSettings {
    CloudSettings {
        request_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        retries: 4,
        retry_delay: Duration::from_millis(10),
        max_retry_delay: Duration::from_secs(3),
        ..CloudSettings::default()
    }
}

async fn connect(auth_url: &str) -> Result<OpenStack, CloudError> {
    let vars: HashMap<&str, String> = HashMap::from([
        ("OS_AUTH_URL", auth_url.to_string()),
        ("OS_USERNAME", "demo".into()),
        ("OS_PASSWORD", PASSWORD.into()),
        ("OS_PROJECT_NAME", "demo".into()),
        ("OS_USER_DOMAIN_NAME", "Default".into()),
        ("OS_PROJECT_DOMAIN_ID", "default".into()),
    ]);
    OpenStack::connect_with_env(&settings(), &move |k| vars.get(k).cloned()).await
}

fn script(state: &Shared, key: &str, acts: &[Act]) {
    state
        .lock()
        .unwrap()
        .script
        .entry(key.to_string())
        .or_default()
        .extend(acts.iter().cloned());
}

fn count(state: &Shared, method: &str, path: &str) -> usize {
    state
        .lock()
        .unwrap()
        .seen
        .iter()
        .filter(|(m, p, _)| m == method && p == path)
        .count()
}

fn add_server(state: &Shared, id: &str) {
    state
        .lock()
        .unwrap()
        .servers
        .push(json!({"id": id, "name": id, "status": "ACTIVE", "metadata": {}}));
}

#[tokio::test]
async fn gets_survive_500_503_and_429() {
    let (state, url) = start().await;
    let os = connect(&url).await.unwrap();
    add_server(&state, "a");
    script(
        &state,
        "GET /compute/v2.1/servers/a",
        &[
            Act::Status(500, None),
            Act::Status(503, None),
            Act::Status(429, None),
        ],
    );
    let server = os.get_server("a").await.unwrap().expect("server a");
    assert_eq!(server.id, "a");
    assert_eq!(count(&state, "GET", "/compute/v2.1/servers/a"), 4);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let (state, url) = start().await;
    let os = connect(&url).await.unwrap();
    add_server(&state, "a");
    script(
        &state,
        "GET /compute/v2.1/servers/a",
        &[Act::Status(429, Some("1"))],
    );
    let started = std::time::Instant::now();
    os.get_server("a").await.unwrap().expect("server a");
    // A lower bound only: the pause asked for was kept.
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_slow_answer_times_out_and_is_retried() {
    let (state, url) = start().await;
    let os = connect(&url).await.unwrap();
    add_server(&state, "a");
    script(
        &state,
        "GET /compute/v2.1/servers/a",
        &[Act::Delay(Duration::from_secs(5))],
    );
    os.get_server("a").await.unwrap().expect("server a");
    assert_eq!(count(&state, "GET", "/compute/v2.1/servers/a"), 2);
}

#[tokio::test]
async fn retries_are_bounded_and_the_error_names_status_and_request_id() {
    let (state, url) = start().await;
    let os = connect(&url).await.unwrap();
    script(
        &state,
        "GET /compute/v2.1/servers/a",
        &[Act::Status(503, None); 10],
    );
    let err = os.get_server("a").await.unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::Transient);
    assert_eq!(
        count(&state, "GET", "/compute/v2.1/servers/a"),
        5,
        "1 try + 4 retries"
    );
    let text = err.to_string();
    for part in [
        "show server",
        "server a",
        "HTTP 503",
        "req-fake-0001",
        "scripted 503",
    ] {
        assert!(text.contains(part), "{text:?} lacks {part:?}");
    }
}

#[tokio::test]
async fn one_reauthentication_on_401() {
    let (state, url) = start().await;
    let os = connect(&url).await.unwrap();
    assert_eq!(os.api().tokens_issued(), 1);
    add_server(&state, "a");
    script(
        &state,
        "GET /compute/v2.1/servers/a",
        &[Act::Status(401, None)],
    );
    os.get_server("a").await.unwrap().expect("server a");
    assert_eq!(os.api().tokens_issued(), 2);
    let last = state.lock().unwrap().seen.last().cloned().unwrap();
    assert_eq!(last.2, "tok-2", "the retry carries the new token");
    // A second 401 in a row is an auth error, not a loop.
    script(
        &state,
        "GET /compute/v2.1/servers/a",
        &[Act::Status(401, None), Act::Status(401, None)],
    );
    let err = os.get_server("a").await.unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::Auth);
    assert_eq!(os.api().tokens_issued(), 3);
}

#[tokio::test]
async fn a_create_is_never_blindly_repeated() {
    let (state, url) = start().await;
    let os = connect(&url).await.unwrap();
    state.lock().unwrap().images.push(json!({"id": "i1", "name": "img", "status": "active", "created_at": "2026-01-01T00:00:00Z"}));
    let owner = Ownership {
        runner: "r".into(),
        project: "p".into(),
        job: "1".into(),
    };
    let spec = ServerSpec {
        name: "ci-1".into(),
        flavor: "small".into(),
        image: "img".into(),
        ..ServerSpec::default()
    };
    // The create "fails" after the cloud made the server: it must be adopted, not made twice.
    script(
        &state,
        "POST /compute/v2.1/servers",
        &[Act::After(Duration::from_secs(5))],
    );
    let options = CreateOptions {
        attempts: 3,
        lookup_delay: Duration::from_millis(10),
    };
    let created = create_server(&os, &spec, &owner, &options).await.unwrap();
    assert!(created.adopted);
    assert_eq!(state.lock().unwrap().servers.len(), 1, "exactly one server");
    assert_eq!(count(&state, "POST", "/compute/v2.1/servers"), 1);
    // A 500 that made nothing: looked for, then sent again once.
    script(
        &state,
        "POST /compute/v2.1/servers",
        &[Act::Status(500, None)],
    );
    let spec2 = ServerSpec {
        name: "ci-2".into(),
        ..spec.clone()
    };
    let created = create_server(&os, &spec2, &owner, &options).await.unwrap();
    assert!(!created.adopted);
    assert_eq!(created.requests, 2);
    assert_eq!(state.lock().unwrap().servers.len(), 2);
}

#[tokio::test]
async fn duplicate_image_names_pick_the_newest_active_one() {
    let (state, url) = start().await;
    let os = connect(&url).await.unwrap();
    state.lock().unwrap().images.extend([
        json!({"id": "old", "name": "ubuntu", "status": "active", "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-11-01T00:00:00Z"}),
        json!({"id": "new", "name": "ubuntu", "status": "active", "created_at": "2026-06-01T00:00:00Z", "updated_at": "2026-06-01T00:00:00Z"}),
        json!({"id": "queued", "name": "ubuntu", "status": "queued", "created_at": "2026-09-01T00:00:00Z"}),
        json!({"id": "gone", "name": "ubuntu", "status": "deactivated", "created_at": "2026-10-01T00:00:00Z"}),
        json!({"id": "other", "name": "ubuntu-2", "status": "active", "created_at": "2026-12-01T00:00:00Z"}),
    ]);
    assert_eq!(os.resolve_image("ubuntu").await.unwrap().id, "new");
    let err = os.resolve_image("nothing").await.unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::NotFound);
}

#[tokio::test]
async fn secrets_appear_in_no_message_or_debug_output() {
    let (state, url) = start().await;
    let os = connect(&url).await.unwrap();
    assert!(
        state.lock().unwrap().keystone_bodies[0].contains(PASSWORD),
        "the fake did get the password"
    );
    assert!(!format!("{os:?}").contains(PASSWORD));
    assert!(!format!("{os:?}").contains("tok-1"));
    // A refused password: the message says who refused, not what was sent.
    script(
        &state,
        "POST /identity/v3/auth/tokens",
        &[Act::Status(401, None)],
    );
    let err = connect(&url).await.unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::Auth);
    assert!(!err.to_string().contains(PASSWORD), "{err}");
    assert!(!format!("{err:?}").contains(PASSWORD));
    assert!(err.to_string().contains("HTTP 401"), "{err}");
}

#[tokio::test]
async fn a_refused_connection_is_retried_and_named() {
    let (state, url) = start().await;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    state.lock().unwrap().network_url = Some(format!("http://127.0.0.1:{port}"));
    let os = connect(&url).await.unwrap();
    let before = os.api().requests_sent();
    let call = transport::Call::new(
        "list networks",
        "networks",
        reqwest::Method::GET,
        transport::Service::Network,
        &["networks"],
    );
    let err = os.api().send(call).await.unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::Transient);
    assert_eq!(os.api().requests_sent() - before, 5, "1 try + 4 retries");
    let text = err.to_string();
    for part in ["list networks", "connection failed", "Connection refused"] {
        assert!(text.contains(part), "{text:?} lacks {part:?}");
    }
}

#[tokio::test]
async fn a_password_in_the_auth_url_is_not_printed_when_keystone_is_unreachable() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let err = connect(&format!(
        "http://admin:{PASSWORD}@127.0.0.1:{port}/identity/v3"
    ))
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("cannot reach Keystone at"), "{text}");
    assert!(
        text.contains(&format!("http://127.0.0.1:{port}/identity/v3")),
        "{text}"
    );
    assert!(!text.contains(PASSWORD), "{text}");
    assert!(!text.contains("admin:"), "{text}");
    assert!(!format!("{err:?}").contains(PASSWORD));
}

#[tokio::test]
async fn a_password_in_the_auth_url_does_not_reach_the_lookup_cache_file() {
    let (state, url) = start().await;
    state.lock().unwrap().images.push(
        json!({"id": "i1", "name": "ubuntu", "status": "active", "created_at": "2026-01-01T00:00:00Z"}),
    );
    let cache = tempfile::tempdir().unwrap();
    let auth_url = url.replacen("http://", &format!("http://admin:{PASSWORD}@"), 1);
    let vars: HashMap<&str, String> = HashMap::from([
        ("OS_AUTH_URL", auth_url),
        ("OS_USERNAME", "demo".into()),
        ("OS_PASSWORD", "another-password".into()),
        ("OS_PROJECT_NAME", "demo".into()),
        ("OS_USER_DOMAIN_NAME", "Default".into()),
        ("OS_PROJECT_DOMAIN_ID", "default".into()),
        ("XDG_CACHE_HOME", cache.path().display().to_string()),
    ]);
    let os = OpenStack::connect_with_env(&settings(), &move |k| vars.get(k).cloned())
        .await
        .unwrap();
    os.resolve_image("ubuntu").await.unwrap();
    let file = os.api().lookups().path().expect("the cache is on");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("ubuntu"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
}

#[tokio::test]
async fn a_create_without_an_answer_is_a_timeout_sent_once() {
    let (state, url) = start().await;
    let os = connect(&url).await.unwrap();
    let before = os.api().requests_sent();
    script(
        &state,
        "POST /compute/v2.1/servers",
        &[Act::Delay(Duration::from_secs(5))],
    );
    let call = transport::Call::new(
        "create server",
        "server \"ci-1\"",
        reqwest::Method::POST,
        transport::Service::Compute,
        &["servers"],
    )
    .json(json!({"server": {"name": "ci-1"}}));
    let err = os.api().send(call).await.unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::Timeout);
    assert_eq!(
        os.api().requests_sent() - before,
        1,
        "a create is not resent"
    );
    assert_eq!(count(&state, "POST", "/compute/v2.1/servers"), 1);
    assert!(
        err.to_string().contains("timed out: no answer within 2s"),
        "{err}"
    );
}

/// A proxy gone wrong, or a console log a runaway guest floods: the answer is cut off at the
/// ceiling with an error that says so, instead of growing the driver without bound.
#[tokio::test]
async fn an_endless_answer_is_refused_at_the_ceiling() {
    let (state, url) = start().await;
    let os = connect(&url).await.unwrap();
    add_server(&state, "a");
    script(&state, "GET /compute/v2.1/servers/a", &[Act::Endless]);
    let err = os.get_server("a").await.unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::Invalid, "{err}");
    assert!(err.to_string().contains("larger than 32 MiB"), "{err}");
    assert_eq!(count(&state, "GET", "/compute/v2.1/servers/a"), 1);
}

/// Keystone's 429 is named for what it is, with the Retry-After that was honoured; not an
/// "internal server error".
#[tokio::test]
async fn a_keystone_429_is_named_with_the_retry_after_it_honoured() {
    let (state, url) = start().await;
    script(
        &state,
        "POST /identity/v3/auth/tokens",
        &[Act::Status(429, Some("1")); 5],
    );
    let started = std::time::Instant::now();
    let err = connect(&url).await.unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::RateLimited, "{err}");
    let text = err.to_string();
    assert!(text.contains("HTTP 429 Too Many Requests"), "{text}");
    assert!(text.contains("the 1s its Retry-After asked"), "{text}");
    assert!(
        !text.to_lowercase().contains("internal server error"),
        "{text}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(count(&state, "POST", "/identity/v3/auth/tokens"), 5);

    // One 429, then a token: the connection is made after the pause asked for.
    let (state, url) = start().await;
    script(
        &state,
        "POST /identity/v3/auth/tokens",
        &[Act::Status(429, Some("1"))],
    );
    let started = std::time::Instant::now();
    connect(&url).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(950));
}
