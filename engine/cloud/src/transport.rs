//! Every HTTP call to the cloud goes through here: endpoints, retries, re-authentication,
//! error mapping.
//!
//! API requests are raw JSON calls through an osauth `Session`, sent with `send_unchecked`:
//! the `openstack` crate's typed calls hide the HTTP status and drop the request id, both of
//! which every error of ours must name, and `Retry-After` decides our pauses. The session gets
//! its token and endpoints from us (os_session.rs), because its own would log in and discover
//! every service's versions anew in every process (four GETs per job). Keystone and version
//! discovery are plain requests on the same HTTP client, since neither needs what the session
//! adds. osauth keeps nothing of a failed send but reqwest's top line, so the cause of one that
//! got no answer is observed beside it (send_failure.rs).
//!
//! What a connection learned is cheap to keep: [`Api::saved_session`] is the token, its catalog
//! and the discovered compute API, which the driver keeps in the job state so that the job's
//! later stage processes send none of those requests again ([`ConnectOptions::session`]).
//! Version discovery is needed for compute alone (its microversion) and, when a job boots from
//! a volume, for Cinder; Neutron and Glance have one API version each, which is appended to the
//! catalog's URL when the catalog does not name it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};
use osauth::ApiVersion;
use osauth::services::ServiceType;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, Response, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::answer_body::{ANSWER_LIMIT, AnswerError, bounded_text};
use super::credentials::{Credentials, EnvLookup};
use super::error::{CloudError, CloudErrorKind};
use super::keystone::{CatalogEntry, KeystoneAuth, SavedToken};
use super::lookup_cache::LookupCache;
use super::os_session::{Roots, SessionAuth};
use super::request_meter;
use super::send_failure::{self, NoteConnectFailures};
use super::settings::CloudSettings;
use executor_foundation::bounded_read::{CONFIG_LIMIT, read_bounded};

/// The compute microversion we ask for when the cloud offers it: 2.67 adds `volume_type` to
/// block device mappings, and everything older we need (tags 2.52, description 2.19) comes
/// with it.
pub const WANTED_COMPUTE_VERSION: ApiVersion = ApiVersion(2, 67);

/// Which OpenStack service a call goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Nova.
    Compute,
    /// Neutron.
    Network,
    /// Glance.
    Image,
    /// Cinder.
    Volume,
}

impl Service {
    /// The catalog's name for it, which is also the metrics label.
    pub fn name(self) -> &'static str {
        match self {
            Service::Compute => "compute",
            Service::Network => "network",
            Service::Image => "image",
            Service::Volume => "volume",
        }
    }
}

/// One request, described so that it can be sent again.
#[derive(Debug, Clone)]
pub struct Call {
    /// What we do, for messages ("delete server").
    pub operation: String,
    /// On what, for messages (`server 1234`).
    pub resource: String,
    /// The HTTP method.
    pub method: Method,
    /// The service.
    pub service: Service,
    /// Path segments below the service's endpoint.
    pub path: Vec<String>,
    /// Query parameters.
    pub query: Vec<(String, String)>,
    /// JSON body.
    pub body: Option<Value>,
    /// Whether sending it twice is harmless (GET, DELETE, and a few read-only POST actions).
    pub idempotent: bool,
}

impl Call {
    /// Starts a call; GET and DELETE count as idempotent.
    pub fn new(
        operation: impl Into<String>,
        resource: impl Into<String>,
        method: Method,
        service: Service,
        path: &[&str],
    ) -> Call {
        let idempotent = matches!(method, Method::GET | Method::DELETE | Method::HEAD);
        Call {
            operation: operation.into(),
            resource: resource.into(),
            method,
            service,
            path: path.iter().map(|s| s.to_string()).collect(),
            query: Vec::new(),
            body: None,
            idempotent,
        }
    }

    /// Adds a query parameter.
    pub fn query(mut self, key: &str, value: impl Into<String>) -> Call {
        self.query.push((key.to_string(), value.into()));
        self
    }

    /// Sets the JSON body.
    pub fn json(mut self, body: Value) -> Call {
        self.body = Some(body);
        self
    }

    /// Marks a POST as safe to repeat (e.g. fetching the console log).
    pub fn idempotent(mut self) -> Call {
        self.idempotent = true;
        self
    }
}

/// A successful answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The cloud's request id.
    pub request_id: Option<String>,
    /// JSON body (`Null` when empty).
    pub body: Value,
}

/// What a new connection may start from.
#[derive(Default)]
pub struct ConnectOptions {
    /// What an earlier process of the same job saved ([`Api::saved_session`]): its token is
    /// reused unless it expires within five minutes, and its discovered compute API is not
    /// discovered again. Anything unreadable in it is ignored.
    pub session: Option<Value>,
    /// Added to the `User-Agent` of every request, e.g. the stage (`prepare`), so that the
    /// cloud's logs tell a job's stages and the pool daemon apart.
    pub purpose: Option<String>,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("session", &self.session.as_ref().map(|_| "(saved)"))
            .field("purpose", &self.purpose)
            .finish()
    }
}

/// A service's API root and, for compute, the microversion we use: what version discovery
/// found, kept so that it is found once per job (and once per runner host and ten minutes, for
/// compute, through the lookup cache).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Discovered {
    /// The catalog's URL this was discovered from.
    catalog_url: String,
    /// The API's root, below which the request paths go.
    root: String,
    /// The microversion we send (`[2, 67]`), none when the API has no microversions.
    version: Option<[u16; 2]>,
}

/// What [`Api::saved_session`] writes. Private: the driver only moves it around as JSON.
#[derive(Serialize, Deserialize)]
struct SessionFile {
    scope: String,
    token: String,
    /// Seconds since the epoch, on this host's clock.
    valid_until: u64,
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default)]
    catalog: Vec<CatalogEntry>,
    #[serde(default)]
    compute: Option<Discovered>,
    #[serde(default)]
    volume: Option<Discovered>,
}

/// The authenticated connection: one per process.
pub struct Api {
    /// For Keystone and version discovery; the session sends the API requests on a clone.
    client: reqwest::Client,
    session: osauth::Session,
    auth: Arc<KeystoneAuth>,
    /// The endpoints the session asks `auth`'s adapter for.
    roots: Arc<Roots>,
    settings: CloudSettings,
    compute: Discovered,
    volume: tokio::sync::Mutex<Option<Discovered>>,
    lookups: LookupCache,
    sent: AtomicU64,
    /// Bumped when something worth saving for later stages changes: a new token, a discovery.
    discoveries: AtomicU64,
    /// False when `verify: false` turned certificate checks off.
    verifies_certificates: bool,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("auth", &self.auth)
            .field("compute", &self.compute)
            .finish_non_exhaustive()
    }
}

/// The request id OpenStack services put in their answers.
pub fn request_id(headers: &HeaderMap) -> Option<String> {
    [
        "x-openstack-request-id",
        "x-compute-request-id",
        "x-request-id",
    ]
    .iter()
    .find_map(|h| headers.get(*h))
    .and_then(|v| v.to_str().ok())
    .map(str::to_string)
}

/// A reqwest error, without the chain noise but with the cause ("connection refused").
pub fn describe_reqwest_error(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let kind = if crate::tls_trust::is_untrusted_certificate(e) {
        crate::tls_trust::TRUST_HINT
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    match e.source() {
        Some(cause) => format!("{kind}: {}", send_failure::describe_chain(cause)),
        None => kind.to_string(),
    }
}

/// The human part of an OpenStack error body, whatever the service's format.
pub fn error_message(body: &str) -> String {
    fn from_json(v: &Value) -> Option<String> {
        for key in ["message", "faultstring", "title", "description", "detail"] {
            if let Some(s) = v.get(key).and_then(Value::as_str) {
                return Some(s.to_string());
            }
        }
        if let Some(obj) = v.as_object() {
            // Nova: {"forbidden": {"message": ..}}; Neutron: {"NeutronError": {"message": ..}}.
            for inner in obj.values() {
                if inner.is_object()
                    && let Some(s) = from_json(inner)
                {
                    return Some(s);
                }
            }
        }
        None
    }
    let found = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| from_json(&v));
    let mut text = found.unwrap_or_else(|| {
        // Glance and proxies answer HTML; keep only the words.
        let mut out = String::new();
        let mut in_tag = false;
        for c in body.chars() {
            match c {
                '<' => in_tag = true,
                '>' => {
                    in_tag = false;
                    out.push(' ');
                }
                c if !in_tag => out.push(c),
                _ => {}
            }
        }
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    });
    if text.chars().count() > 500 {
        text = text.chars().take(500).collect::<String>() + "…";
    }
    if text.is_empty() {
        text = "(no message)".into();
    }
    text
}

pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("retry-after")?.to_str().ok()?.trim();
    value.parse::<u64>().ok().map(Duration::from_secs)
}

fn auth_error(call: &Call, e: osauth::Error) -> CloudError {
    use osauth::ErrorKind as K;
    // osauth puts its kind's description first ("Internal server error or bad gateway: ..."),
    // which misnames a 429 or a refused password; our messages say what happened themselves.
    let full = e.to_string();
    let prefix = format!("{}: ", e.kind());
    let text = full.strip_prefix(&prefix).unwrap_or(&full).to_string();
    let kind = match e.kind() {
        K::AuthenticationFailed | K::AccessDenied => CloudErrorKind::Auth,
        K::ResourceNotFound => CloudErrorKind::NotFound,
        K::Conflict => CloudErrorKind::Conflict,
        K::OperationTimedOut => CloudErrorKind::Timeout,
        K::InternalServerError => CloudErrorKind::Transient,
        K::ProtocolError if text.contains("timed out") => CloudErrorKind::Timeout,
        K::ProtocolError => CloudErrorKind::Transient,
        _ => CloudErrorKind::Invalid,
    };
    CloudError::new(kind, call.operation.clone(), call.resource.clone(), text)
}

fn transport_error(call: &Call, e: &reqwest::Error) -> CloudError {
    let untrusted = crate::tls_trust::is_untrusted_certificate(e);
    no_answer_error(call, e.is_timeout(), untrusted, describe_reqwest_error(e))
}

/// A request that got no answer: a timeout, or a connection that failed (worth a retry),
/// unless the certificate was untrusted, which no retry mends.
fn no_answer_error(call: &Call, timed_out: bool, untrusted: bool, why: String) -> CloudError {
    let kind = if timed_out {
        CloudErrorKind::Timeout
    } else if untrusted {
        CloudErrorKind::Invalid
    } else {
        CloudErrorKind::Transient
    };
    CloudError::new(kind, call.operation.clone(), call.resource.clone(), why)
}

/// `url` with `segments` appended, each percent-encoded as one path segment.
fn join(url: &Url, segments: &[String]) -> Url {
    let mut out = url.clone();
    if let Ok(mut path) = out.path_segments_mut() {
        path.pop_if_empty();
        for s in segments {
            path.push(s);
        }
    }
    out
}

/// The catalog's URL of a single-version API (Neutron v2.0, Glance v2), with the version
/// appended when the catalog leaves it out (`http://host:9696` → `http://host:9696/v2.0`).
fn versioned(catalog: &Url, version: &str) -> Url {
    let named = catalog
        .path_segments()
        .is_some_and(|mut s| s.any(|seg| seg == version));
    if named {
        catalog.clone()
    } else {
        join(catalog, &[version.to_string()])
    }
}

/// `2.67` → `[2, 67]`.
fn parse_version(text: &str) -> Option<[u16; 2]> {
    let (major, minor) = text.trim().split_once('.')?;
    Some([major.parse().ok()?, minor.parse().ok()?])
}

/// The version document's self link (or `fallback`), kept on https when the catalog is.
fn self_link(doc: &Value, fallback: &Url) -> Url {
    let mut url = doc["links"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["rel"] == "self")
        .and_then(|l| l["href"].as_str())
        .and_then(|h| Url::parse(h).ok())
        .unwrap_or_else(|| fallback.clone());
    // Older Nova answers http links on an https endpoint.
    if fallback.scheme() == "https" && url.scheme() == "http" {
        let _ = url.set_scheme("https");
    }
    url
}

/// Picks the API of major version `major` from a version document (one version, or a list).
fn pick_version(body: &Value, major: u16, fetched: &Url) -> Option<(Url, Option<[u16; 2]>)> {
    let chosen = if body["version"].is_object() {
        body["version"].clone()
    } else {
        let mut candidates: Vec<&Value> = body["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| {
                let id = v["id"].as_str().unwrap_or("").trim_start_matches('v');
                id.split('.').next().and_then(|m| m.parse::<u16>().ok()) == Some(major)
                    && !matches!(
                        v["status"].as_str().map(str::to_ascii_uppercase).as_deref(),
                        Some("DEPRECATED" | "DELETED" | "EXPERIMENTAL")
                    )
            })
            .collect();
        // The highest minor of that major (Nova lists v2.0 and v2.1).
        candidates.sort_by_key(|v| {
            parse_version(v["id"].as_str().unwrap_or("").trim_start_matches('v'))
                .unwrap_or([major, 0])
        });
        (*candidates.last()?).clone()
    };
    let version = chosen["version"]
        .as_str()
        .filter(|v| !v.is_empty())
        .and_then(parse_version);
    Some((self_link(&chosen, fetched), version))
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The `User-Agent` of our requests.
fn user_agent(purpose: Option<&str>) -> String {
    let base = concat!("executor/", env!("CARGO_PKG_VERSION"));
    match purpose.filter(|p| !p.is_empty()) {
        Some(p) => format!("{base} ({p})"),
        None => base.to_string(),
    }
}

impl Api {
    /// Loads credentials, authenticates once and discovers the compute microversion.
    pub async fn connect(settings: &CloudSettings, env: EnvLookup<'_>) -> Result<Api, CloudError> {
        Self::connect_with(settings, env, ConnectOptions::default()).await
    }

    /// Like [`connect`](Self::connect), starting from what an earlier process saved: with a
    /// usable saved token and compute API, no request is sent here at all.
    pub async fn connect_with(
        settings: &CloudSettings,
        env: EnvLookup<'_>,
        options: ConnectOptions,
    ) -> Result<Api, CloudError> {
        let creds = Credentials::load(settings, env)?;
        let mut client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .user_agent(user_agent(options.purpose.as_deref()))
            .danger_accept_invalid_certs(!creds.verify)
            .connector_layer(NoteConnectFailures);
        if let Some(path) = &creds.cacert {
            let pem = read_bounded(path, CONFIG_LIMIT).map_err(|e| {
                CloudError::invalid(
                    "load CA certificate",
                    path.display().to_string(),
                    e.to_string(),
                )
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                CloudError::invalid(
                    "load CA certificate",
                    path.display().to_string(),
                    e.to_string(),
                )
            })?;
            for cert in certs {
                client = client.add_root_certificate(cert);
            }
        }
        let client = client.build().map_err(|e| {
            CloudError::invalid("build HTTP client", creds.source.clone(), e.to_string())
        })?;
        let source = creds.source.clone();
        let verifies_certificates = creds.verify;
        let region = creds.region.clone().unwrap_or_default();
        let auth_url = creds.auth_url.clone();
        let mut auth = KeystoneAuth::new(creds);
        let saved = options
            .session
            .and_then(|v| serde_json::from_value::<SessionFile>(v).ok());
        let mut compute = None;
        let mut volume = None;
        if let Some(saved) = saved {
            let adopted = auth.adopt(SavedToken {
                scope: saved.scope,
                value: SecretString::from(saved.token),
                valid_until: SystemTime::UNIX_EPOCH + Duration::from_secs(saved.valid_until),
                catalog: saved.catalog,
                project_id: saved.project_id,
            });
            tracing::debug!(adopted, "a token saved by an earlier stage");
            if adopted {
                compute = saved.compute;
                volume = saved.volume;
            }
        }
        let auth = Arc::new(auth);
        let roots = Arc::new(Roots::default());
        let auth_call = Call::new(
            "authenticate",
            source.clone(),
            Method::POST,
            Service::Compute,
            &[],
        );
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(settings.retry_delay)
            .with_max_delay(settings.max_retry_delay)
            .with_max_times(settings.retries as usize)
            .with_jitter()
            .build();
        // Making the session is the authentication: osauth refreshes its auth type then, which
        // asks Keystone unless a saved token was adopted. Asking Keystone for a token again is
        // harmless, so an unavailable Keystone is retried like any idempotent call; a refused
        // password is not.
        // For the final error: how long Keystone kept us waiting, and whether it asked to.
        let (mut waits, mut waited, mut honoured) = (0u32, Duration::ZERO, None);
        let session = loop {
            let session_auth = SessionAuth::new(auth.clone(), roots.clone());
            match osauth::Session::new_with_client(client.clone(), session_auth).await {
                Ok(session) => break session,
                Err(e) => {
                    // Keystone's certificate not trusted: configuration, kept as `invalid`.
                    let untrusted = e.kind() == osauth::ErrorKind::InvalidConfig;
                    let mut err = auth_error(&auth_call, e);
                    if err.kind == CloudErrorKind::Invalid && !untrusted {
                        err.kind = CloudErrorKind::Auth;
                    }
                    let refusal = auth.take_refusal();
                    // The status is in Keystone's message already; the class must say it too.
                    if refusal.is_some_and(|r| r.status == 429) {
                        err.kind = CloudErrorKind::RateLimited;
                    }
                    if waits > 0 {
                        err.message = format!(
                            "{} (after {waits} pause(s), {} in all{})",
                            err.message,
                            humantime::format_duration(round_ms(waited)),
                            honoured
                                .map(|h| format!(
                                    ", each at least the {} its Retry-After asked",
                                    humantime::format_duration(h)
                                ))
                                .unwrap_or_default()
                        );
                    }
                    match (err.kind, delays.next()) {
                        (
                            CloudErrorKind::Transient
                            | CloudErrorKind::Timeout
                            | CloudErrorKind::RateLimited,
                            Some(d),
                        ) => {
                            let hint = refusal.and_then(|r| r.retry_after);
                            let d = match hint {
                                Some(h) => d.max(h.min(settings.max_retry_delay)),
                                None => d,
                            };
                            waits += 1;
                            waited += d;
                            honoured = hint.or(honoured);
                            tracing::debug!(error = %err, ?d, "authentication failed; retrying");
                            tokio::time::sleep(d).await;
                        }
                        _ => return Err(err),
                    }
                }
            }
        };
        let project = auth.project_id().await.unwrap_or_default();
        // The scope is written into the cache file: never a password from the URL.
        let auth_url = executor_foundation::url_userinfo::without_userinfo(&auth_url);
        let lookups = LookupCache::open(env, &format!("{auth_url} | {project} | {region}"));
        let mut api = Api {
            client,
            session,
            auth,
            roots,
            settings: settings.clone(),
            compute: Discovered {
                catalog_url: String::new(),
                root: String::new(),
                version: None,
            },
            volume: tokio::sync::Mutex::new(volume),
            lookups,
            sent: AtomicU64::new(0),
            discoveries: AtomicU64::new(0),
            verifies_certificates,
        };
        let catalog_url = api
            .auth
            .endpoint(&api.client, "compute")
            .await
            .map_err(|e| auth_error(&auth_call, e))?;
        api.compute = match compute.filter(|c| c.catalog_url == catalog_url.as_str()) {
            Some(c) => c,
            None => api.discover_compute(&catalog_url).await?,
        };
        Ok(api)
    }

    /// The compute API below `catalog_url`: from the runner host's lookup cache, else asked.
    async fn discover_compute(&self, catalog_url: &Url) -> Result<Discovered, CloudError> {
        let key = catalog_url.as_str();
        if let Some(found) = self
            .lookups
            .get("compute API", key)
            .and_then(|v| serde_json::from_value::<Discovered>(v).ok())
        {
            return Ok(found);
        }
        let (root, max) = self.discover(catalog_url, 2, Service::Compute).await?;
        let wanted = [WANTED_COMPUTE_VERSION.0, WANTED_COMPUTE_VERSION.1];
        let found = Discovered {
            catalog_url: key.to_string(),
            root: root.to_string(),
            version: max.map(|m| m.min(wanted)),
        };
        self.discoveries.fetch_add(1, Ordering::SeqCst);
        if let Ok(v) = serde_json::to_value(&found) {
            self.lookups.put("compute API", key, v);
        }
        Ok(found)
    }

    /// Asks the API at `url` (or, on a 404, its parent) which versions it has; returns the root
    /// of major version `major` and that version's highest microversion.
    async fn discover(
        &self,
        url: &Url,
        major: u16,
        service: Service,
    ) -> Result<(Url, Option<[u16; 2]>), CloudError> {
        let call = Call::new(
            "discover API version",
            service.name(),
            Method::GET,
            service,
            &[],
        );
        let mut candidates = vec![url.clone()];
        let mut parent = url.clone();
        if let Ok(mut p) = parent.path_segments_mut() {
            p.pop_if_empty().pop();
        }
        if parent != *url {
            candidates.push(parent);
        }
        for (i, candidate) in candidates.iter().enumerate() {
            let mut delays = self.backoff();
            let (status, body) = loop {
                // Version documents need no token, but a versioned URL below them may.
                let token = self
                    .auth
                    .token_header(&self.client)
                    .await
                    .map_err(|e| auth_error(&call, e))?;
                self.sent.fetch_add(1, Ordering::SeqCst);
                let attempt = self
                    .client
                    .get(candidate.clone())
                    .header("x-auth-token", token)
                    .send()
                    .await;
                request_meter::record(
                    call.service.name(),
                    attempt.as_ref().ok().map(|r| r.status().as_u16()),
                );
                let err = match attempt {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let text = bounded_text(response, ANSWER_LIMIT)
                            .await
                            .unwrap_or_default();
                        if status < 500 && status != 429 {
                            break (status, serde_json::from_str::<Value>(&text).ok());
                        }
                        CloudError::from_status(
                            status,
                            call.operation.clone(),
                            call.resource.clone(),
                            None,
                            error_message(&text),
                        )
                    }
                    Err(e) => transport_error(&call, &e),
                };
                match delays.next() {
                    Some(d) => tokio::time::sleep(d).await,
                    None => return Err(err),
                }
            };
            let last = i + 1 == candidates.len();
            match (status, body) {
                // Nova answers 300 Multiple Choices on its root.
                (200..=300, Some(body)) => {
                    if let Some(found) = pick_version(&body, major, candidate) {
                        return Ok(found);
                    }
                    // No version document: use the URL as it is, without microversions.
                    return Ok((url.clone(), None));
                }
                (404, _) if !last => continue,
                (200..=300, None) | (404, _) => return Ok((url.clone(), None)),
                (status, _) => {
                    return Err(CloudError::from_status(
                        status,
                        call.operation.clone(),
                        call.resource.clone(),
                        None,
                        format!("version discovery at {candidate} failed"),
                    ));
                }
            }
        }
        Ok((url.clone(), None))
    }

    /// The root of `service`'s API.
    async fn root(&self, service: Service, call: &Call) -> Result<Url, CloudError> {
        let parse = |text: &str| {
            Url::parse(text).map_err(|e| {
                CloudError::invalid(call.operation.clone(), call.resource.clone(), e.to_string())
            })
        };
        let catalog = || async move {
            self.auth
                .endpoint(&self.client, service.catalog_type())
                .await
                .map_err(|e| auth_error(call, e))
        };
        match service {
            Service::Compute => parse(&self.compute.root),
            Service::Network => Ok(versioned(&catalog().await?, "v2.0")),
            Service::Image => Ok(versioned(&catalog().await?, "v2")),
            Service::Volume => {
                let mut known = self.volume.lock().await;
                let url = catalog().await?;
                if let Some(v) = known.as_ref().filter(|v| v.catalog_url == url.as_str()) {
                    return parse(&v.root);
                }
                let (root, _) = self.discover(&url, 3, Service::Volume).await?;
                *known = Some(Discovered {
                    catalog_url: url.to_string(),
                    root: root.to_string(),
                    version: None,
                });
                self.discoveries.fetch_add(1, Ordering::SeqCst);
                Ok(root)
            }
        }
    }

    /// What later processes of the same job need to send no token or discovery request
    /// again: the token (a secret: it belongs in a file only its owner reads), its catalog,
    /// and the discovered APIs. Pass it back in [`ConnectOptions::session`].
    pub async fn saved_session(&self) -> Option<Value> {
        let token = self.auth.saved().await?;
        let volume = self.volume.lock().await.clone();
        let file = SessionFile {
            scope: token.scope,
            token: token.value.expose_secret().to_string(),
            valid_until: unix_seconds(token.valid_until),
            project_id: token.project_id,
            catalog: token.catalog,
            compute: Some(self.compute.clone()),
            volume,
        };
        serde_json::to_value(file).ok()
    }

    /// Changes whenever [`saved_session`](Self::saved_session) would say something new.
    pub fn session_generation(&self) -> u64 {
        self.auth.tokens_issued() + self.discoveries.load(Ordering::SeqCst)
    }

    /// Whether the cloud's TLS certificates are checked (false after `verify: false`).
    pub fn verifies_certificates(&self) -> bool {
        self.verifies_certificates
    }

    /// The runner host's cache of name lookups for this cloud, project and region.
    pub fn lookups(&self) -> &LookupCache {
        &self.lookups
    }

    /// The compute microversion in use (None: the cloud has no microversions).
    pub fn compute_version(&self) -> Option<ApiVersion> {
        self.compute.version.map(|[a, b]| ApiVersion(a, b))
    }

    /// Whether the compute API offers at least `version`.
    pub fn compute_supports(&self, version: ApiVersion) -> bool {
        self.compute_version().is_some_and(|v| v >= version)
    }

    /// How many HTTP requests (not counting Keystone) this connection has sent.
    pub fn requests_sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// How many Keystone tokens this process obtained.
    pub fn tokens_issued(&self) -> u64 {
        self.auth.tokens_issued()
    }

    /// The project our token is scoped to.
    pub async fn project_id(&self) -> Option<String> {
        self.auth.project_id().await
    }

    fn backoff(&self) -> impl Iterator<Item = Duration> + use<> {
        ExponentialBuilder::default()
            .with_min_delay(self.settings.retry_delay)
            .with_max_delay(self.settings.max_retry_delay)
            .with_max_times(self.settings.retries as usize)
            .with_jitter()
            .build()
    }

    async fn send_once(&self, call: &Call) -> Result<Response, CloudError> {
        // What can fail before the request leaves (an endpoint the catalog lacks, a discovery,
        // a token Keystone refuses) fails here, named after the call, so that `sent` counts
        // requests that left; the session then finds the root and the token ready.
        let root = self.root(call.service, call).await?;
        self.roots.set(call.service, &root);
        self.auth
            .authenticate(&self.client)
            .await
            .map_err(|e| auth_error(call, e))?;
        self.sent.fetch_add(1, Ordering::SeqCst);
        let mut request = self
            .session
            .request(call.service, call.method.clone(), &call.path);
        if call.service == Service::Compute
            && let Some([major, minor]) = self.compute.version
        {
            if let Ok(v) = HeaderValue::from_str(&format!("compute {major}.{minor}")) {
                request = request.header("openstack-api-version", v);
            }
            if let Ok(v) = HeaderValue::from_str(&format!("{major}.{minor}")) {
                request = request.header("x-openstack-nova-api-version", v);
            }
        }
        if !call.query.is_empty() {
            request = request.query(&call.query);
        }
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        let (outcome, observed) = send_failure::observe(request.send_unchecked()).await;
        outcome.map_err(|e| {
            // osauth reports a send that got no answer as a protocol error; the rest (a bad
            // endpoint, a request that could not be built, a token) are its or ours.
            if e.kind() != osauth::ErrorKind::ProtocolError {
                return auth_error(call, e);
            }
            let why = observed.no_answer(
                e.to_string(),
                self.settings.request_timeout,
                self.settings.connect_timeout,
            );
            let untrusted = matches!(why, send_failure::NoAnswer::Untrusted { .. });
            no_answer_error(call, why.is_timeout(), untrusted, why.to_string())
        })
    }

    /// Sends `call`, retrying what is safe to retry, and re-authenticating once on 401.
    pub async fn send(&self, call: Call) -> Result<Reply, CloudError> {
        let mut delays = self.backoff();
        let mut reauthenticated = false;
        loop {
            let attempt = self.send_once(&call).await;
            request_meter::record(
                call.service.name(),
                attempt.as_ref().ok().map(|r| r.status().as_u16()),
            );
            let (err, hint) = match attempt {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let rid = request_id(response.headers());
                    if let Some(id) = &rid {
                        executor_foundation::events::note_request_id(id);
                    }
                    let hint = retry_after(response.headers());
                    let text = match bounded_text(response, ANSWER_LIMIT).await {
                        Ok(t) => t,
                        Err(e @ AnswerError::TooLarge(_)) => {
                            return Err(CloudError {
                                request_id: rid,
                                status: Some(status),
                                ..CloudError::new(
                                    CloudErrorKind::Invalid,
                                    call.operation.clone(),
                                    call.resource.clone(),
                                    e.to_string(),
                                )
                            });
                        }
                        Err(e @ AnswerError::Cut(_)) => {
                            let err = CloudError {
                                request_id: rid,
                                status: Some(status),
                                ..CloudError::new(
                                    CloudErrorKind::Transient,
                                    call.operation.clone(),
                                    call.resource.clone(),
                                    e.to_string(),
                                )
                            };
                            if call.idempotent
                                && let Some(d) = delays.next()
                            {
                                tokio::time::sleep(d).await;
                                continue;
                            }
                            return Err(err);
                        }
                    };
                    if (200..300).contains(&status) {
                        let body = if text.trim().is_empty() {
                            Value::Null
                        } else {
                            serde_json::from_str(&text).map_err(|e| CloudError {
                                request_id: rid.clone(),
                                status: Some(status),
                                ..CloudError::new(
                                    CloudErrorKind::Invalid,
                                    call.operation.clone(),
                                    call.resource.clone(),
                                    format!("answer is not JSON: {e}"),
                                )
                            })?
                        };
                        return Ok(Reply {
                            status,
                            request_id: rid,
                            body,
                        });
                    }
                    if status == 401 && !reauthenticated {
                        // A 401 means the request was not processed, so resending is safe.
                        reauthenticated = true;
                        tracing::info!(operation = %call.operation, "token rejected; authenticating again");
                        self.auth
                            .reauthenticate(&self.client)
                            .await
                            .map_err(|e| auth_error(&call, e))?;
                        continue;
                    }
                    let err = CloudError::from_status(
                        status,
                        call.operation.clone(),
                        call.resource.clone(),
                        rid,
                        error_message(&text),
                    );
                    (err, hint)
                }
                Err(e) => (e, None),
            };
            // 429 means "not processed", so even a POST may be resent.
            let may_retry = match err.kind {
                CloudErrorKind::RateLimited => true,
                CloudErrorKind::Transient | CloudErrorKind::Timeout => call.idempotent,
                _ => false,
            };
            if !may_retry {
                return Err(err);
            }
            let Some(mut delay) = delays.next() else {
                return Err(err);
            };
            if let Some(hint) = hint {
                delay = delay.max(hint.min(self.settings.max_retry_delay));
            }
            tracing::debug!(operation = %call.operation, status = ?err.status, ?delay, "retrying");
            tokio::time::sleep(delay).await;
        }
    }
}

/// For messages: a jittered delay to the millisecond.
fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}
