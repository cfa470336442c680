//! Keystone v3 authentication and the service catalog.
//!
//! Our own rather than osauth's `Password`: that one keeps the password in a plain `String` that
//! its derived `Debug` prints, cannot refer to users or domains by ID, and its forced refresh is a
//! no-op while the old token has not expired, so a revoked token (401) could never be replaced.
//!
//! A token outlives the process that obtained it: the transport saves it (with its catalog) in
//! the job state, and the job's next stage process adopts it instead of asking Keystone again,
//! unless it expires within [`REUSE_MARGIN`] or was made for other credentials. The token's text
//! is a `SecretString` everywhere but in the request header (marked sensitive) and in the saved
//! state (a file of mode 0600); no message or `Debug` output of ours contains it.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use osauth::{Error as OsError, ErrorKind};
use reqwest::header::HeaderValue;
use reqwest::{Client, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::answer_body::{ANSWER_LIMIT, bounded_text};
use super::credentials::{AuthMethod, Credentials, IdOrName};
use executor_foundation::url_userinfo::without_userinfo;

/// Tokens are renewed this long before Keystone says they expire.
const EXPIRY_MARGIN: Duration = Duration::from_secs(120);
/// A token an earlier stage saved is not reused this close to its expiry: a stage may run for
/// a while before its first request, and a fresh token costs one request.
pub const REUSE_MARGIN: Duration = Duration::from_secs(300);

/// Authenticates against Keystone and finds endpoints in the token's catalog.
pub struct KeystoneAuth {
    creds: Credentials,
    token_url: String,
    token: tokio::sync::RwLock<Option<Token>>,
    issued: AtomicU64,
    /// The status and `Retry-After` of Keystone's last refusal: osauth's error has no room for
    /// them, and the caller's retry loop needs both (a 429 is not a server fault).
    refusal: std::sync::Mutex<Option<Refusal>>,
}

/// Keystone said no to a token request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: u16,
    pub retry_after: Option<Duration>,
}

struct Token {
    value: SecretString,
    /// When this process asks for a new one (our monotonic clock).
    renew_at: Instant,
    /// When Keystone stops accepting it, on our wall clock (Keystone's lifetime applied to the
    /// moment we asked, so a skewed clock does not matter).
    valid_until: SystemTime,
    catalog: Vec<CatalogEntry>,
    project_id: Option<String>,
}

/// A token as saved between the stage processes of one job. `Debug` shows no token.
#[derive(Clone)]
pub(crate) struct SavedToken {
    pub scope: String,
    pub value: SecretString,
    pub valid_until: SystemTime,
    pub catalog: Vec<CatalogEntry>,
    pub project_id: Option<String>,
}

impl fmt::Debug for SavedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SavedToken")
            .field("scope", &self.scope)
            .field("valid_until", &self.valid_until)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub(crate) struct CatalogEntry {
    #[serde(rename = "type")]
    service_type: String,
    #[serde(default)]
    endpoints: Vec<CatalogEndpoint>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub(crate) struct CatalogEndpoint {
    interface: String,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    region_id: Option<String>,
    url: String,
}

#[derive(Deserialize)]
struct TokenBody {
    token: TokenInfo,
}

#[derive(Deserialize)]
struct TokenInfo {
    expires_at: String,
    #[serde(default)]
    issued_at: Option<String>,
    #[serde(default)]
    catalog: Vec<CatalogEntry>,
    #[serde(default)]
    project: Option<ProjectRef>,
}

#[derive(Deserialize)]
struct ProjectRef {
    id: String,
}

impl fmt::Debug for KeystoneAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeystoneAuth")
            .field("token_url", &self.token_url)
            .field("source", &self.creds.source)
            .finish_non_exhaustive()
    }
}

fn reference(v: &IdOrName) -> Value {
    match v {
        IdOrName::Id(id) => json!({ "id": id }),
        IdOrName::Name(name) => json!({ "name": name }),
    }
}

fn user_reference(user: &IdOrName, domain: &Option<IdOrName>) -> Value {
    let mut value = reference(user);
    if let (IdOrName::Name(_), Some(domain)) = (user, domain) {
        value["domain"] = reference(domain);
    } else if let IdOrName::Name(_) = user {
        // keystoneauth assumes the default domain when none is named.
        value["domain"] = json!({ "id": "default" });
    }
    value
}

fn parse_time(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text.trim_end_matches('Z'))
        .ok()
        .or_else(|| humantime::parse_rfc3339(text).ok())
}

impl KeystoneAuth {
    /// Prepares authentication; nothing is sent until the first request.
    pub fn new(creds: Credentials) -> KeystoneAuth {
        let base = creds.auth_url.trim_end_matches('/');
        let token_url = if base.ends_with("/v3") {
            format!("{base}/auth/tokens")
        } else {
            format!("{base}/v3/auth/tokens")
        };
        KeystoneAuth {
            creds,
            token_url,
            token: tokio::sync::RwLock::new(None),
            issued: AtomicU64::new(0),
            refusal: std::sync::Mutex::new(None),
        }
    }

    /// How many tokens this process obtained so far (1 in a normal run; 2 after one 401; 0
    /// when an earlier stage's token was reused).
    pub fn tokens_issued(&self) -> u64 {
        self.issued.load(Ordering::SeqCst)
    }

    /// The project the current token is scoped to.
    pub async fn project_id(&self) -> Option<String> {
        self.token
            .read()
            .await
            .as_ref()
            .and_then(|t| t.project_id.clone())
    }

    /// Who and where a token is for, without any secret: a saved token is reused only by a
    /// process whose credentials give the same scope.
    pub fn scope(&self) -> String {
        let who = |v: &IdOrName| match v {
            IdOrName::Id(id) => format!("id:{id}"),
            IdOrName::Name(name) => format!("name:{name}"),
        };
        let opt = |v: &Option<IdOrName>| v.as_ref().map(who).unwrap_or_default();
        let user = match &self.creds.method {
            AuthMethod::Password {
                user, user_domain, ..
            } => format!("user {} {}", who(user), opt(user_domain)),
            AuthMethod::ApplicationCredential {
                credential,
                user,
                user_domain,
                ..
            } => format!(
                "appcred {} {} {}",
                who(credential),
                opt(user),
                opt(user_domain)
            ),
            // Another given token is another identity. The scope sits in the state file next
            // to the saved token itself, so a digest of the given one reveals nothing more.
            AuthMethod::Token { token } => {
                use std::hash::{Hash, Hasher};
                let mut h = std::hash::DefaultHasher::new();
                token.expose_secret().hash(&mut h);
                format!("token {:016x}", h.finish())
            }
        };
        format!(
            "{} | {} | project {} {} | region {} | {}",
            self.token_url,
            user,
            opt(&self.creds.project),
            opt(&self.creds.project_domain),
            self.creds.region.as_deref().unwrap_or(""),
            self.creds.interface
        )
    }

    /// Takes over a token an earlier stage process saved, unless it is too close to its expiry
    /// (within [`REUSE_MARGIN`]) or was made for other credentials. Returns whether it did.
    pub(crate) fn adopt(&mut self, saved: SavedToken) -> bool {
        if saved.scope != self.scope() {
            return false;
        }
        let now = SystemTime::now();
        let Ok(left) = saved.valid_until.duration_since(now) else {
            return false;
        };
        if left <= REUSE_MARGIN {
            return false;
        }
        *self.token.get_mut() = Some(Token {
            value: saved.value,
            renew_at: Instant::now() + left.saturating_sub(EXPIRY_MARGIN),
            valid_until: saved.valid_until,
            catalog: saved.catalog,
            project_id: saved.project_id,
        });
        true
    }

    /// The current token, to be saved for the job's later stage processes.
    pub(crate) async fn saved(&self) -> Option<SavedToken> {
        self.token.read().await.as_ref().map(|t| SavedToken {
            scope: self.scope(),
            value: t.value.clone(),
            valid_until: t.valid_until,
            catalog: t.catalog.clone(),
            project_id: t.project_id.clone(),
        })
    }

    fn body(&self) -> Value {
        let identity = match &self.creds.method {
            AuthMethod::Password {
                user,
                user_domain,
                password,
            } => {
                let mut user = user_reference(user, user_domain);
                user["password"] = Value::String(password.expose_secret().to_string());
                json!({ "methods": ["password"], "password": { "user": user } })
            }
            AuthMethod::ApplicationCredential {
                credential,
                user,
                user_domain,
                secret,
            } => {
                let mut cred = reference(credential);
                if let (IdOrName::Name(_), Some(user)) = (credential, user) {
                    cred["user"] = user_reference(user, user_domain);
                }
                cred["secret"] = Value::String(secret.expose_secret().to_string());
                json!({ "methods": ["application_credential"], "application_credential": cred })
            }
            AuthMethod::Token { token } => {
                json!({ "methods": ["token"], "token": { "id": token.expose_secret() } })
            }
        };
        let mut auth = json!({ "identity": identity });
        if let Some(project) = &self.creds.project {
            let mut scope = reference(project);
            if let IdOrName::Name(_) = project {
                scope["domain"] = match &self.creds.project_domain {
                    Some(d) => reference(d),
                    None => json!({ "id": "default" }),
                };
            }
            auth["scope"] = json!({ "project": scope });
        }
        json!({ "auth": auth })
    }

    async fn issue(&self, client: &Client) -> Result<Token, OsError> {
        let started = Instant::now();
        let started_wall = SystemTime::now();
        let response = client.post(&self.token_url).json(&self.body()).send().await;
        crate::request_meter::record(
            "identity",
            response.as_ref().ok().map(|r| r.status().as_u16()),
        );
        let response = response.map_err(|e| {
            // Not a network failure: retrying cannot make the certificate trusted.
            let kind = if super::tls_trust::is_untrusted_certificate(&e) {
                ErrorKind::InvalidConfig
            } else {
                ErrorKind::ProtocolError
            };
            OsError::new(
                kind,
                format!(
                    "cannot reach Keystone at {}: {}",
                    without_userinfo(&self.token_url),
                    super::transport::describe_reqwest_error(&e)
                ),
            )
        })?;
        let status = response.status();
        let request_id = super::transport::request_id(response.headers());
        if !status.is_success() {
            *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(Refusal {
                status: status.as_u16(),
                retry_after: super::transport::retry_after(response.headers()),
            });
            let kind = match status.as_u16() {
                401 => ErrorKind::AuthenticationFailed,
                403 => ErrorKind::AccessDenied,
                404 => ErrorKind::EndpointNotFound,
                // osauth has no "rate limited" kind; both mean "try again later".
                s if s >= 500 || s == 429 => ErrorKind::InternalServerError,
                _ => ErrorKind::InvalidInput,
            };
            // A given token cannot be renewed by us: say so where the job's author and the
            // operator will look, instead of a bare 401.
            let hint = match (&self.creds.method, status.as_u16()) {
                (AuthMethod::Token { .. }, 401 | 404) => {
                    "; the given token (OS_TOKEN or auth.token) has expired or was revoked, and \
                     the tokens made from it with it. The driver cannot get a new one by itself: \
                     give the runner a fresh token, or an application credential"
                }
                _ => "",
            };
            let detail = super::transport::error_message(
                &bounded_text(response, ANSWER_LIMIT)
                    .await
                    .unwrap_or_default(),
            );
            return Err(OsError::new(
                kind,
                format!(
                    "Keystone refused a token for {} (HTTP {}{}): {}{hint}",
                    self.creds.source,
                    status,
                    request_id
                        .map(|id| format!(", request id {id}"))
                        .unwrap_or_default(),
                    detail
                ),
            )
            .with_status(status));
        }
        let value = response
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(|v| SecretString::from(v.to_string()))
            .ok_or_else(|| {
                OsError::new(
                    ErrorKind::InvalidResponse,
                    "Keystone sent no X-Subject-Token",
                )
            })?;
        let text = bounded_text(response, ANSWER_LIMIT).await.map_err(|e| {
            OsError::new(
                ErrorKind::InvalidResponse,
                format!("Keystone's token answer: {e}"),
            )
        })?;
        let body: TokenBody = serde_json::from_str(&text).map_err(|e| {
            OsError::new(
                ErrorKind::InvalidResponse,
                format!("unreadable Keystone token: {e}"),
            )
        })?;
        // Lifetime from Keystone's own two clocks, applied to ours: immune to clock skew.
        let lifetime = match (
            parse_time(&body.token.expires_at),
            body.token.issued_at.as_deref().and_then(parse_time),
        ) {
            (Some(expires), Some(issued)) => expires.duration_since(issued).unwrap_or_default(),
            (Some(expires), None) => expires
                .duration_since(SystemTime::now())
                .unwrap_or_default(),
            _ => Duration::from_secs(600),
        };
        self.issued.fetch_add(1, Ordering::SeqCst);
        tracing::debug!(url = %without_userinfo(&self.token_url), ?lifetime, "obtained a Keystone token");
        Ok(Token {
            value,
            renew_at: started + lifetime.saturating_sub(EXPIRY_MARGIN),
            valid_until: started_wall + lifetime,
            catalog: body.token.catalog,
            project_id: body.token.project.map(|p| p.id),
        })
    }

    async fn ensure(&self, client: &Client, force: bool) -> Result<(), OsError> {
        if !force
            && let Some(t) = self.token.read().await.as_ref()
            && Instant::now() < t.renew_at
        {
            return Ok(());
        }
        let mut guard = self.token.write().await;
        if !force
            && let Some(t) = guard.as_ref()
            && Instant::now() < t.renew_at
        {
            return Ok(());
        }
        *guard = Some(self.issue(client).await?);
        Ok(())
    }

    fn pick(&self, catalog: &[CatalogEntry], service_type: &str) -> Result<Url, OsError> {
        let region = self.creds.region.as_deref();
        // Clouds register Cinder under several historical names.
        let single = [service_type];
        let aliases: &[&str] = match service_type {
            "block-storage" => &["block-storage", "volumev3", "volume"],
            _ => &single,
        };
        let entry = aliases
            .iter()
            .find_map(|alias| catalog.iter().find(|e| e.service_type == *alias))
            .ok_or_else(|| {
                OsError::new(
                    ErrorKind::EndpointNotFound,
                    format!("the catalog has no {service_type} service"),
                )
            })?;
        let endpoint = entry
            .endpoints
            .iter()
            .filter(|e| e.interface == self.creds.interface)
            .find(|e| {
                region.is_none_or(|r| {
                    e.region.as_deref() == Some(r) || e.region_id.as_deref() == Some(r)
                })
            })
            .ok_or_else(|| {
                OsError::new(
                    ErrorKind::EndpointNotFound,
                    format!(
                        "the catalog has no {} endpoint for {service_type}{}",
                        self.creds.interface,
                        region
                            .map(|r| format!(" in region {r}"))
                            .unwrap_or_default()
                    ),
                )
            })?;
        Url::parse(&endpoint.url).map_err(|e| {
            OsError::new(
                ErrorKind::InvalidResponse,
                format!("bad {service_type} URL in catalog: {e}"),
            )
        })
    }
}

impl KeystoneAuth {
    /// The `X-Auth-Token` header of a request, authenticating first when there is no usable
    /// token. Marked sensitive, so that no debug output of reqwest shows it.
    pub(crate) async fn token_header(&self, client: &Client) -> Result<HeaderValue, OsError> {
        self.ensure(client, false).await?;
        let guard = self.token.read().await;
        let token = guard
            .as_ref()
            .ok_or_else(|| OsError::new(ErrorKind::AuthenticationFailed, "no token"))?;
        let mut header = HeaderValue::from_str(token.value.expose_secret())
            .map_err(|_| OsError::new(ErrorKind::InvalidResponse, "unusable token"))?;
        header.set_sensitive(true);
        Ok(header)
    }

    /// The catalog's URL of `service_type` for our interface and region.
    pub(crate) async fn endpoint(
        &self,
        client: &Client,
        service_type: &str,
    ) -> Result<Url, OsError> {
        self.ensure(client, false).await?;
        let guard = self.token.read().await;
        let token = guard
            .as_ref()
            .ok_or_else(|| OsError::new(ErrorKind::AuthenticationFailed, "no token"))?;
        self.pick(&token.catalog, service_type)
    }

    /// Makes sure there is a token, asking Keystone for one only when there is none (or it is
    /// due for renewal).
    /// Keystone's last refusal, once.
    pub(crate) fn take_refusal(&self) -> Option<Refusal> {
        self.refusal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    pub(crate) async fn authenticate(&self, client: &Client) -> Result<(), OsError> {
        self.ensure(client, false).await
    }

    /// A new token, whatever the current one: after a 401.
    pub(crate) async fn reauthenticate(&self, client: &Client) -> Result<(), OsError> {
        self.ensure(client, true).await
    }
}
