//! Finding the credentials the way OpenStack's own tools do: `OS_CLOUD` with clouds.yaml,
//! clouds-public.yaml profiles and secure.yaml, or plain `OS_*` variables.
//!
//! We read clouds.yaml ourselves because osauth's loader ignores `verify: false`,
//! `OS_CLIENT_CONFIG_FILE`, IDs for users and domains, and does not let us pass our own HTTP
//! client (which carries the timeouts).

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde_json::Value;

use super::error::CloudError;
use super::settings::CloudSettings;
use executor_foundation::bounded_read::{CONFIG_LIMIT, read_to_string_bounded};

const OP: &str = "load credentials";

/// Either an ID or a name, as Keystone accepts for users, projects and domains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdOrName {
    /// Refer by ID.
    Id(String),
    /// Refer by name.
    Name(String),
}

/// How to prove who we are.
#[derive(Debug, Clone)]
pub enum AuthMethod {
    /// User name (or ID) and password.
    Password {
        /// The user.
        user: IdOrName,
        /// The user's domain; needed when the user is given by name.
        user_domain: Option<IdOrName>,
        /// The password.
        password: SecretString,
    },
    /// An application credential, by ID, or by name together with its user.
    ApplicationCredential {
        /// The credential.
        credential: IdOrName,
        /// Its owner, needed when the credential is given by name.
        user: Option<IdOrName>,
        /// The owner's domain, when the owner is given by name.
        user_domain: Option<IdOrName>,
        /// The credential's secret.
        secret: SecretString,
    },
    /// A token someone else obtained (`v3token`), exchanged for one scoped to our project.
    /// It cannot be renewed: once it expires, so do the tokens made from it.
    Token {
        /// The given token.
        token: SecretString,
    },
}

/// Everything needed to open a session. `Debug` shows no secret (`SecretString` redacts itself).
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Keystone's URL.
    pub auth_url: String,
    /// Password or application credential.
    pub method: AuthMethod,
    /// Project to scope the token to (none for application credentials, which carry their own).
    pub project: Option<IdOrName>,
    /// The project's domain.
    pub project_domain: Option<IdOrName>,
    /// Region to pick endpoints from.
    pub region: Option<String>,
    /// Endpoint interface (public, internal, admin).
    pub interface: String,
    /// Extra CA certificate (PEM).
    pub cacert: Option<PathBuf>,
    /// Verify TLS certificates.
    pub verify: bool,
    /// Where the credentials came from, for messages ("cloud 'x' in /path" or "OS_* variables").
    pub source: String,
}

/// Reads a variable; injectable so that tests need not touch the process environment.
pub type EnvLookup<'a> = &'a (dyn Fn(&str) -> Option<String> + Sync);

/// The process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Credentials {
    /// Loads credentials per `settings`, then the environment, then the standard files.
    pub fn load(settings: &CloudSettings, env: EnvLookup<'_>) -> Result<Credentials, CloudError> {
        let mut creds = match settings.cloud.clone().or_else(|| env("OS_CLOUD")) {
            Some(cloud) => from_clouds_yaml(&cloud, settings, env)?,
            None => from_env(env)?,
        };
        if let Some(region) = &settings.region {
            creds.region = Some(region.clone());
        }
        if let Some(interface) = &settings.interface {
            creds.interface = interface.clone();
        }
        if let Some(cacert) = &settings.cacert {
            creds.cacert = Some(cacert.clone());
        }
        if let Some(verify) = settings.verify {
            creds.verify = verify;
        }
        creds.interface = normalise_interface(&creds.interface)?;
        Ok(creds)
    }
}

fn normalise_interface(raw: &str) -> Result<String, CloudError> {
    let trimmed = raw.trim_end_matches("URL");
    match trimmed {
        "public" | "internal" | "admin" => Ok(trimmed.to_string()),
        other => Err(CloudError::invalid(
            OP,
            "interface",
            format!("unknown endpoint interface {other:?}; use public, internal or admin"),
        )),
    }
}

fn truthy(value: &str) -> bool {
    matches!(
        value.to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

fn from_env(env: EnvLookup<'_>) -> Result<Credentials, CloudError> {
    let auth_url = env("OS_AUTH_URL").ok_or_else(|| {
        CloudError::invalid(
            OP,
            "environment",
            "no cloud configured: set OS_CLOUD (with a clouds.yaml), the recipe's `cloud`, or OS_AUTH_URL and friends",
        )
    })?;
    let mut auth = serde_json::Map::new();
    for (var, key) in [
        ("OS_USERNAME", "username"),
        ("OS_USER_ID", "user_id"),
        ("OS_PASSWORD", "password"),
        ("OS_PROJECT_NAME", "project_name"),
        ("OS_PROJECT_ID", "project_id"),
        ("OS_TENANT_NAME", "project_name"),
        ("OS_TENANT_ID", "project_id"),
        ("OS_TOKEN", "token"),
        ("OS_USER_DOMAIN_NAME", "user_domain_name"),
        ("OS_USER_DOMAIN_ID", "user_domain_id"),
        ("OS_PROJECT_DOMAIN_NAME", "project_domain_name"),
        ("OS_PROJECT_DOMAIN_ID", "project_domain_id"),
        ("OS_DOMAIN_NAME", "domain_name"),
        ("OS_DOMAIN_ID", "domain_id"),
        ("OS_APPLICATION_CREDENTIAL_ID", "application_credential_id"),
        (
            "OS_APPLICATION_CREDENTIAL_NAME",
            "application_credential_name",
        ),
        (
            "OS_APPLICATION_CREDENTIAL_SECRET",
            "application_credential_secret",
        ),
    ] {
        if let Some(value) = env(var) {
            auth.entry(key.to_string()).or_insert(Value::String(value));
        }
    }
    auth.insert("auth_url".into(), Value::String(auth_url));
    let mut cloud = serde_json::Map::new();
    cloud.insert("auth".into(), Value::Object(auth));
    for (var, key) in [
        ("OS_AUTH_TYPE", "auth_type"),
        ("OS_REGION_NAME", "region_name"),
        ("OS_INTERFACE", "interface"),
        ("OS_CACERT", "cacert"),
    ] {
        if let Some(value) = env(var) {
            cloud.insert(key.into(), Value::String(value));
        }
    }
    if let Some(insecure) = env("OS_INSECURE") {
        cloud.insert("verify".into(), Value::Bool(!truthy(&insecure)));
    }
    build(&Value::Object(cloud), "OS_* variables".into())
}

fn standard_dirs(env: EnvLookup<'_>) -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from(".")];
    if let Some(home) = env("HOME") {
        dirs.push(Path::new(&home).join(".config/openstack"));
    }
    dirs.push(PathBuf::from("/etc/openstack"));
    dirs
}

fn read_yaml(path: &Path) -> Result<Value, CloudError> {
    let text = read_to_string_bounded(path, CONFIG_LIMIT).map_err(|e| {
        CloudError::invalid(OP, path.display().to_string(), format!("cannot read: {e}"))
    })?;
    // A parse error of a credentials file may quote the offending line; keep only its position.
    serde_saphyr::from_str::<Value>(&text).map_err(|e| {
        let location = e
            .to_string()
            .lines()
            .find(|l| l.contains("line"))
            .map(str::to_string)
            .unwrap_or_default();
        CloudError::invalid(
            OP,
            path.display().to_string(),
            format!("not valid YAML {location}").trim_end().to_string(),
        )
    })
}

fn from_clouds_yaml(
    name: &str,
    settings: &CloudSettings,
    env: EnvLookup<'_>,
) -> Result<Credentials, CloudError> {
    let explicit = settings
        .clouds_yaml
        .clone()
        .or_else(|| env("OS_CLIENT_CONFIG_FILE").map(PathBuf::from));
    let dirs = standard_dirs(env);
    let path = match explicit {
        Some(path) => path,
        None => dirs
            .iter()
            .flat_map(|d| [d.join("clouds.yaml"), d.join("clouds.yml")])
            .find(|p| p.is_file())
            .ok_or_else(|| {
                CloudError::invalid(
                    OP,
                    format!("cloud {name:?}"),
                    "no clouds.yaml found in ./, ~/.config/openstack/ or /etc/openstack/",
                )
            })?,
    };
    let doc = read_yaml(&path)?;
    let mut cloud = named_entry(&doc, "clouds", name, &path, name, "")?;
    // A profile (`profile:`, or `cloud:` in older files) is the base the entry overrides.
    let profile = text(&cloud, "profile").or_else(|| text(&cloud, "cloud"));
    if let Some(profile) = profile {
        let mut base = public_profile(&profile, &path, &dirs, name)?;
        if let Value::Object(entry) = &mut cloud {
            entry.remove("profile");
            entry.remove("cloud");
        }
        merge(&mut base, &cloud);
        cloud = base;
    }
    let secure_candidates: Vec<PathBuf> = env("OS_CLIENT_SECURE_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(path.parent().map(|d| d.join("secure.yaml")))
        .chain(dirs.iter().map(|d| d.join("secure.yaml")))
        .collect();
    if let Some(secure_path) = secure_candidates.iter().find(|p| p.is_file()) {
        let secure = read_yaml(secure_path)?;
        if let Some(extra) = secure.get("clouds").and_then(|c| c.get(name)) {
            merge(&mut cloud, extra);
        }
    }
    build(&cloud, format!("cloud {name:?} in {}", path.display()))
}

/// The `public-clouds` entry `profile` of the first clouds-public.yaml beside clouds.yaml or in
/// the standard directories. openstacksdk also ships vendor profiles of its own; we do not, so
/// a site writes the vendor's entry into its clouds-public.yaml.
fn public_profile(
    profile: &str,
    clouds_yaml: &Path,
    dirs: &[PathBuf],
    cloud: &str,
) -> Result<Value, CloudError> {
    let candidates: Vec<PathBuf> = clouds_yaml
        .parent()
        .into_iter()
        .chain(dirs.iter().map(PathBuf::as_path))
        .flat_map(|d| [d.join("clouds-public.yaml"), d.join("clouds-public.yml")])
        .collect();
    let Some(public) = candidates.iter().find(|p| p.is_file()) else {
        return Err(CloudError::invalid(
            OP,
            format!("cloud {cloud:?}"),
            format!(
                "its profile {profile:?} needs a clouds-public.yaml beside {} or in ~/.config/openstack/ or /etc/openstack/; none exists (openstacksdk's built-in vendor profiles are not included)",
                clouds_yaml.display()
            ),
        ));
    };
    let doc = read_yaml(public)?;
    named_entry(
        &doc,
        "public-clouds",
        profile,
        public,
        cloud,
        &format!("its profile {profile:?} is "),
    )
}

/// `doc[map][name]`, or an error about `cloud` that lists the names the map has.
fn named_entry(
    doc: &Value,
    map: &str,
    name: &str,
    path: &Path,
    cloud: &str,
    subject: &str,
) -> Result<Value, CloudError> {
    doc.get(map)
        .and_then(|c| c.get(name))
        .cloned()
        .ok_or_else(|| {
            let known: Vec<&str> = doc
                .get(map)
                .and_then(Value::as_object)
                .map(|m| m.keys().map(String::as_str).collect())
                .unwrap_or_default();
            CloudError::new(
                super::error::CloudErrorKind::NotFound,
                OP,
                format!("cloud {cloud:?}"),
                format!(
                    "{subject}not in {} (it has: {})",
                    path.display(),
                    known.join(", ")
                ),
            )
        })
}

/// Deep merge, `extra` winning, as openstacksdk merges secure.yaml over clouds.yaml.
fn merge(base: &mut Value, extra: &Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e.clone(),
    }
}

fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn id_or_name(v: &Value, id_key: &str, name_key: &str) -> Option<IdOrName> {
    text(v, id_key)
        .map(IdOrName::Id)
        .or_else(|| text(v, name_key).map(IdOrName::Name))
}

fn build(cloud: &Value, source: String) -> Result<Credentials, CloudError> {
    let empty = Value::Null;
    let auth = cloud.get("auth").unwrap_or(&empty);
    let missing = |what: &str| CloudError::invalid(OP, source.clone(), format!("missing {what}"));
    let auth_url = text(auth, "auth_url").ok_or_else(|| missing("auth.auth_url"))?;
    // `domain_*` is the fallback for both user and project domains, as in keystoneauth.
    let domain = id_or_name(auth, "domain_id", "domain_name");
    let user_domain =
        id_or_name(auth, "user_domain_id", "user_domain_name").or_else(|| domain.clone());
    let project_domain =
        id_or_name(auth, "project_domain_id", "project_domain_name").or_else(|| domain.clone());
    let user = id_or_name(auth, "user_id", "username");
    let auth_type = text(cloud, "auth_type").unwrap_or_else(|| {
        if text(auth, "application_credential_secret").is_some() {
            "v3applicationcredential".into()
        } else if text(auth, "token").is_some() && text(auth, "password").is_none() {
            "v3token".into()
        } else {
            "password".into()
        }
    });
    let method = match auth_type.as_str() {
        "password" | "v3password" => AuthMethod::Password {
            user: user.ok_or_else(|| missing("auth.username or auth.user_id"))?,
            user_domain,
            password: text(auth, "password")
                .map(SecretString::from)
                .ok_or_else(|| missing("auth.password"))?,
        },
        "v3applicationcredential" | "applicationcredential" => {
            let credential = id_or_name(
                auth,
                "application_credential_id",
                "application_credential_name",
            )
            .ok_or_else(|| missing("auth.application_credential_id"))?;
            if matches!(credential, IdOrName::Name(_)) && user.is_none() {
                return Err(missing(
                    "auth.username or auth.user_id (needed with application_credential_name)",
                ));
            }
            AuthMethod::ApplicationCredential {
                credential,
                user,
                user_domain,
                secret: text(auth, "application_credential_secret")
                    .map(SecretString::from)
                    .ok_or_else(|| missing("auth.application_credential_secret"))?,
            }
        }
        "token" | "v3token" => AuthMethod::Token {
            token: text(auth, "token")
                .map(SecretString::from)
                .ok_or_else(|| missing("auth.token (OS_TOKEN)"))?,
        },
        other => {
            return Err(CloudError::invalid(
                OP,
                source,
                format!(
                    "auth_type {other:?} is not supported; use password, v3applicationcredential or v3token"
                ),
            ));
        }
    };
    let project = match method {
        AuthMethod::ApplicationCredential { .. } => None,
        AuthMethod::Password { .. } | AuthMethod::Token { .. } => {
            id_or_name(auth, "project_id", "project_name")
                .or_else(|| id_or_name(auth, "tenant_id", "tenant_name"))
        }
    };
    let verify = match cloud.get("verify") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => truthy(s),
        _ => true,
    };
    Ok(Credentials {
        auth_url,
        method,
        project,
        project_domain,
        region: text(cloud, "region_name"),
        interface: text(cloud, "interface").unwrap_or_else(|| "public".into()),
        cacert: text(cloud, "cacert").map(PathBuf::from),
        verify,
        source,
    })
}

impl fmt::Display for IdOrName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdOrName::Id(id) => write!(f, "id {id}"),
            IdOrName::Name(name) => write!(f, "{name:?}"),
        }
    }
}
