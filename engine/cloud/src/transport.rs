//! Every HTTP call to the cloud goes through here: retries, re-authentication, error mapping.
//!
//! The `openstack` crate's typed calls are not used for requests because its error type hides
//! the HTTP status and drops the request id, both of which every error of ours must name; its
//! session layer (osauth) still handles tokens, the catalog and version discovery.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use osauth::services::ServiceType;
use osauth::services::{BLOCK_STORAGE, COMPUTE, IMAGE, NETWORK};
use osauth::{ApiVersion, ServiceRequestBuilder, Session};
use reqwest::header::HeaderMap;
use reqwest::{Method, Response};
use serde_json::Value;

use super::credentials::{Credentials, EnvLookup};
use super::error::{CloudError, CloudErrorKind};
use super::keystone::{KeystoneAuth, SharedAuth};
use super::settings::CloudSettings;

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

/// The authenticated connection: one per process.
pub struct Api {
    session: Session,
    auth: Arc<KeystoneAuth>,
    settings: CloudSettings,
    compute_version: Option<ApiVersion>,
    sent: AtomicU64,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("auth", &self.auth)
            .field("compute_version", &self.compute_version)
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
    let mut text = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
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

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("retry-after")?.to_str().ok()?.trim();
    value.parse::<u64>().ok().map(Duration::from_secs)
}

fn os_error(call: &Call, e: osauth::Error) -> CloudError {
    use osauth::ErrorKind as K;
    let text = e.to_string();
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

async fn finish<S: ServiceType + Send>(
    builder: ServiceRequestBuilder<S>,
    call: &Call,
) -> Result<Response, osauth::Error> {
    let mut builder = builder;
    if !call.query.is_empty() {
        builder = builder.query(&call.query);
    }
    if let Some(body) = &call.body {
        builder = builder.json(body);
    }
    builder.send_unchecked().await
}

impl Api {
    /// Loads credentials, authenticates once and discovers the compute microversion.
    pub async fn connect(settings: &CloudSettings, env: EnvLookup<'_>) -> Result<Api, CloudError> {
        let creds = Credentials::load(settings, env)?;
        let mut client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .danger_accept_invalid_certs(!creds.verify);
        if let Some(path) = &creds.cacert {
            let pem = std::fs::read(path).map_err(|e| {
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
        let auth = Arc::new(KeystoneAuth::new(creds));
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
        // Asking Keystone for a token again is harmless, so an unavailable Keystone is retried
        // like any idempotent call; a refused password is not.
        let session = loop {
            match Session::new_with_client(client.clone(), SharedAuth(auth.clone())).await {
                Ok(session) => break session,
                Err(e) => {
                    let mut err = os_error(&auth_call, e);
                    if err.kind == CloudErrorKind::Invalid {
                        err.kind = CloudErrorKind::Auth;
                    }
                    match (err.kind, delays.next()) {
                        (CloudErrorKind::Transient | CloudErrorKind::Timeout, Some(d)) => {
                            tracing::debug!(error = %err, "authentication failed; retrying");
                            tokio::time::sleep(d).await;
                        }
                        _ => return Err(err),
                    }
                }
            }
        };
        let mut api = Api {
            session,
            auth,
            settings: settings.clone(),
            compute_version: None,
            sent: AtomicU64::new(0),
        };
        api.compute_version = api.discover_compute_version().await?;
        Ok(api)
    }

    async fn discover_compute_version(&self) -> Result<Option<ApiVersion>, CloudError> {
        let call = Call::new(
            "discover API version",
            "compute",
            Method::GET,
            Service::Compute,
            &[],
        );
        let mut delays = self.backoff();
        loop {
            match self.session.get_api_versions(COMPUTE).await {
                Ok(Some((_, max))) => {
                    return Ok(Some(if max < WANTED_COMPUTE_VERSION {
                        max
                    } else {
                        WANTED_COMPUTE_VERSION
                    }));
                }
                Ok(None) => return Ok(None),
                Err(e) => {
                    let err = os_error(&call, e);
                    match (err.kind, delays.next()) {
                        (CloudErrorKind::Transient | CloudErrorKind::Timeout, Some(d)) => {
                            tokio::time::sleep(d).await
                        }
                        _ => return Err(err),
                    }
                }
            }
        }
    }

    /// The compute microversion in use (None: the cloud has no microversions).
    pub fn compute_version(&self) -> Option<ApiVersion> {
        self.compute_version
    }

    /// Whether the compute API offers at least `version`.
    pub fn compute_supports(&self, version: ApiVersion) -> bool {
        self.compute_version.is_some_and(|v| v >= version)
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

    async fn send_once(&self, call: &Call) -> Result<Response, osauth::Error> {
        self.sent.fetch_add(1, Ordering::SeqCst);
        let path = call.path.iter().map(String::as_str);
        let method = call.method.clone();
        match call.service {
            Service::Compute => {
                let mut b = self.session.request(COMPUTE, method, path);
                if let Some(v) = self.compute_version {
                    b = b.api_version(v);
                }
                finish(b, call).await
            }
            Service::Network => finish(self.session.request(NETWORK, method, path), call).await,
            Service::Image => finish(self.session.request(IMAGE, method, path), call).await,
            Service::Volume => {
                finish(self.session.request(BLOCK_STORAGE, method, path), call).await
            }
        }
    }

    /// Sends `call`, retrying what is safe to retry, and re-authenticating once on 401.
    pub async fn send(&self, call: Call) -> Result<Reply, CloudError> {
        let mut delays = self.backoff();
        let mut reauthenticated = false;
        loop {
            let (err, hint) = match self.send_once(&call).await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let rid = request_id(response.headers());
                    let hint = retry_after(response.headers());
                    let text = match response.text().await {
                        Ok(t) => t,
                        Err(e) => {
                            let err = CloudError {
                                request_id: rid,
                                status: Some(status),
                                ..CloudError::new(
                                    CloudErrorKind::Transient,
                                    call.operation.clone(),
                                    call.resource.clone(),
                                    format!("answer cut short: {}", describe_reqwest_error(&e)),
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
                        let mut session = self.session.clone();
                        session.refresh().await.map_err(|e| os_error(&call, e))?;
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
                Err(e) => (os_error(&call, e), None),
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
