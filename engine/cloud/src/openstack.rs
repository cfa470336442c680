//! `Cloud` over OpenStack's HTTP APIs.
//!
//! Besides the requests, three memories that save requests without changing an answer:
//! - name lookups (flavor, image, network, security group) go through the runner host's
//!   [`LookupCache`](super::lookup_cache::LookupCache); when a create is refused (400 or 404)
//!   while it carries an id the cache gave, those entries are dropped, the names looked up
//!   again and the create sent once more with the fresh ids;
//! - a key pair this connection imported (or saw) in the last half minute is taken to exist,
//!   so the create right after the `keypair` step does not ask again (were it deleted in
//!   between, Nova refuses the create, which fails as the check would);
//! - an ACTIVE server's document, read while waiting for ACTIVE, is kept a few seconds for
//!   [`OpenStack::recent_active_server`] (the address step right after the wait reads it
//!   instead of the server), unless something about the server is changed in between.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use osauth::ApiVersion;
use reqwest::Method;
use serde_json::{Value, json};

use super::backend::{Cloud, FloatingIp, Named, Network, Port};
use super::credentials::{EnvLookup, process_env};
use super::error::{CloudError, CloudErrorKind};
use super::quota::ComputeLimits;
use super::server::Server;
use super::settings::CloudSettings;
use super::transport::{Api, Call, ConnectOptions, Service};

/// How long an ACTIVE server's document may answer the next read of it.
const FRESH_FOR: Duration = Duration::from_secs(5);
/// How long a key pair this connection imported or saw is taken to exist.
const KEYPAIR_KNOWN_FOR: Duration = Duration::from_secs(30);

/// The OpenStack back end: one authenticated connection, shared by every step of a process.
#[derive(Debug)]
pub struct OpenStack {
    api: Api,
    /// Key pairs known to exist (imported or seen by this connection, not deleted since), and
    /// since when.
    keypairs: Mutex<HashMap<String, Instant>>,
    /// The last ACTIVE server document read, when, for one more read of it.
    fresh: Mutex<Option<(Instant, Server)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Lookup kinds in the cache.
const FLAVOR: &str = "flavor";
const IMAGE: &str = "image";
const NETWORK: &str = "network";
const SECURITY_GROUP: &str = "security group";

fn named_json(n: &Named) -> Value {
    json!({ "id": n.id, "name": n.name })
}

fn named_of(v: &Value) -> Option<Named> {
    Some(Named {
        id: v.get("id")?.as_str()?.to_string(),
        name: v.get("name")?.as_str()?.to_string(),
    })
}

/// Replaces `old` by `new` where Nova's create body names a flavor, image, network or
/// security group by id (and nowhere else: metadata may hold the same text).
fn replace_id(body: &mut Value, kind: &str, old: &str, new: &str) {
    let server = &mut body["server"];
    let swap = |v: &mut Value| {
        if v.as_str() == Some(old) {
            *v = json!(new);
        }
    };
    match kind {
        FLAVOR => swap(&mut server["flavorRef"]),
        IMAGE => {
            swap(&mut server["imageRef"]);
            if let Some(bdms) = server["block_device_mapping_v2"].as_array_mut() {
                for bdm in bdms {
                    if bdm["source_type"] == "image" {
                        swap(&mut bdm["uuid"]);
                    }
                }
            }
        }
        NETWORK => {
            if let Some(nets) = server["networks"].as_array_mut() {
                for n in nets {
                    swap(&mut n["uuid"]);
                }
            }
        }
        SECURITY_GROUP => {
            if let Some(groups) = server["security_groups"].as_array_mut() {
                for g in groups {
                    swap(&mut g["name"]);
                }
            }
        }
        _ => {}
    }
}

/// Whether a refusal may come from an id that no longer exists.
fn maybe_stale(e: &CloudError) -> bool {
    matches!(e.status, Some(400 | 404))
}

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

fn named(v: &Value) -> Named {
    Named {
        id: text(v, "id"),
        name: text(v, "name"),
    }
}

fn not_found(what: &str, name: &str, detail: &str) -> CloudError {
    CloudError::new(
        CloudErrorKind::NotFound,
        format!("resolve {what}"),
        format!("{what} {name:?}"),
        detail.to_string(),
    )
}

fn ambiguous(what: &str, name: &str, ids: &[String]) -> CloudError {
    CloudError::new(
        CloudErrorKind::Conflict,
        format!("resolve {what}"),
        format!("{what} {name:?}"),
        format!(
            "{} {what}s have this name ({}); use an id",
            ids.len(),
            ids.join(", ")
        ),
    )
}

fn floating_ip(v: &Value) -> FloatingIp {
    FloatingIp {
        id: text(v, "id"),
        address: text(v, "floating_ip_address"),
        port_id: v.get("port_id").and_then(Value::as_str).map(str::to_string),
        description: text(v, "description"),
        created: timestamp(v, "created_at"),
    }
}

/// Nova prints `2026-11-28T08:17:06.123456` (no zone, UTC); Neutron adds a `Z`.
fn timestamp(v: &Value, key: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(v.get(key)?.as_str()?.trim_end_matches('Z')).ok()
}

/// Whether a missing resource is the answer rather than a failure.
fn absent_ok<T>(result: Result<T, CloudError>) -> Result<Option<T>, CloudError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind == CloudErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl OpenStack {
    /// Connects per `settings` and the process environment; authenticates once.
    pub async fn connect(settings: &CloudSettings) -> Result<OpenStack, CloudError> {
        Self::connect_with_env(settings, &process_env).await
    }

    /// Connects with an explicit environment lookup (tests).
    pub async fn connect_with_env(
        settings: &CloudSettings,
        env: EnvLookup<'_>,
    ) -> Result<OpenStack, CloudError> {
        Self::connect_with(settings, env, ConnectOptions::default()).await
    }

    /// Connects starting from what an earlier process of the job saved
    /// ([`OpenStack::saved_session`]): no token or discovery request when that is still good.
    pub async fn connect_with(
        settings: &CloudSettings,
        env: EnvLookup<'_>,
        options: ConnectOptions,
    ) -> Result<OpenStack, CloudError> {
        Ok(OpenStack {
            api: Api::connect_with(settings, env, options).await?,
            keypairs: Mutex::new(HashMap::new()),
            fresh: Mutex::new(None),
        })
    }

    /// The token, catalog and discovered APIs, for the job's later stage processes. A secret.
    pub async fn saved_session(&self) -> Option<Value> {
        self.api.saved_session().await
    }

    /// Changes whenever [`saved_session`](Self::saved_session) has something new to say.
    /// Whether the cloud's TLS certificates are checked (false after `verify: false`).
    pub fn verifies_certificates(&self) -> bool {
        self.api.verifies_certificates()
    }

    pub fn session_generation(&self) -> u64 {
        self.api.session_generation()
    }

    /// The cached answer to a lookup, if the runner host's cache has a young one.
    fn cached(&self, kind: &str, name: &str) -> Option<Value> {
        self.api.lookups().get(kind, name)
    }

    fn remember(&self, kind: &str, name: &str, value: Value) {
        self.api.lookups().put(kind, name, value);
    }

    /// Drops what the cache said about `kind` ids in this process and looks the names up
    /// afresh; returns (old id, new id) for each that changed.
    async fn refresh_stale(
        &self,
        kinds: &[&str],
    ) -> Result<Vec<(String, String, String)>, CloudError> {
        let mut changed = Vec::new();
        for served in self.api.lookups().served() {
            if !kinds.contains(&served.kind.as_str()) {
                continue;
            }
            self.api.lookups().forget(&served.kind, &served.name);
            let fresh = match served.kind.as_str() {
                FLAVOR => self.resolve_flavor(&served.name).await?.id,
                IMAGE => self.resolve_image(&served.name).await?.id,
                NETWORK => self.resolve_network(&served.name).await?.named.id,
                SECURITY_GROUP => self.resolve_security_group(&served.name).await?.id,
                _ => continue,
            };
            tracing::info!(kind = %served.kind, name = %served.name, "a cached id was stale; looked up again");
            if fresh != served.id {
                changed.push((served.kind, served.id, fresh));
            }
        }
        Ok(changed)
    }

    /// The ACTIVE document of server `id` that this connection read within the last few
    /// seconds (waiting for ACTIVE), if nothing was changed since; once. For a step that would
    /// otherwise read the server again right after the wait.
    pub fn recent_active_server(&self, id: &str) -> Option<Server> {
        let (at, server) = lock(&self.fresh).take()?;
        (server.id == id && at.elapsed() < FRESH_FOR).then_some(server)
    }

    /// Forgets the remembered server document (something about the server changed).
    fn stale_server(&self) {
        *lock(&self.fresh) = None;
    }

    /// The underlying connection (request counters, microversion).
    pub fn api(&self) -> &Api {
        &self.api
    }

    async fn paginate(
        &self,
        call: Call,
        collection: &str,
        links: &str,
    ) -> Result<Vec<Value>, CloudError> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        // Bounded so that a misbehaving API cannot keep us here forever.
        for _ in 0..1000 {
            let mut page_call = call.clone();
            if let Some(m) = &marker {
                page_call = page_call.query("marker", m.clone());
            }
            let reply = self.api.send(page_call).await?;
            let items = reply
                .body
                .get(collection)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let has_next = reply
                .body
                .get(links)
                .and_then(Value::as_array)
                .is_some_and(|l| {
                    l.iter()
                        .any(|x| x.get("rel").and_then(Value::as_str) == Some("next"))
                });
            let last = items.last().map(|x| text(x, "id"));
            out.extend(items);
            match (has_next, last) {
                (true, Some(id)) if !id.is_empty() && marker.as_deref() != Some(&id) => {
                    marker = Some(id)
                }
                _ => return Ok(out),
            }
        }
        Ok(out)
    }
}

impl OpenStack {
    /// The project's floating IPs, or only those on one port.
    async fn floating_ips(&self, port_id: Option<&str>) -> Result<Vec<FloatingIp>, CloudError> {
        let resource = port_id.map_or("floating IPs".into(), |p| {
            format!("floating IPs of port {p}")
        });
        let mut call = Call::new(
            "list floating IPs",
            resource,
            Method::GET,
            Service::Network,
            &["floatingips"],
        );
        if let Some(p) = port_id {
            call = call.query("port_id", p);
        }
        let reply = self.api.send(call).await?;
        Ok(reply.body["floatingips"]
            .as_array()
            .into_iter()
            .flatten()
            .map(floating_ip)
            .collect())
    }

    /// A key pair's document, `None` when there is none by that name.
    async fn show_keypair(&self, name: &str) -> Result<Option<Value>, CloudError> {
        let call = Call::new(
            "show key pair",
            format!("key pair {name:?}"),
            Method::GET,
            Service::Compute,
            &["os-keypairs", name],
        );
        Ok(absent_ok(self.api.send(call).await)?.map(|r| r.body["keypair"].clone()))
    }
}

impl OpenStack {
    async fn lookup_flavor(&self, name_or_id: &str) -> Result<Named, CloudError> {
        let all = self
            .paginate(
                Call::new(
                    "resolve flavor",
                    format!("flavor {name_or_id:?}"),
                    Method::GET,
                    Service::Compute,
                    &["flavors"],
                ),
                "flavors",
                "flavors_links",
            )
            .await?;
        if let Some(f) = all.iter().find(|f| text(f, "id") == name_or_id) {
            return Ok(named(f));
        }
        let matches: Vec<&Value> = all
            .iter()
            .filter(|f| text(f, "name") == name_or_id)
            .collect();
        match matches.as_slice() {
            [one] => Ok(named(one)),
            [] => Err(not_found(
                "flavor",
                name_or_id,
                "no flavor has this id or name",
            )),
            many => Err(ambiguous(
                "flavor",
                name_or_id,
                &many.iter().map(|f| text(f, "id")).collect::<Vec<_>>(),
            )),
        }
    }

    async fn lookup_image(&self, name_or_id: &str) -> Result<Named, CloudError> {
        let resource = format!("image {name_or_id:?}");
        if is_uuid(name_or_id) {
            let call = Call::new(
                "resolve image",
                resource.clone(),
                Method::GET,
                Service::Image,
                &["images", name_or_id],
            );
            if let Some(reply) = absent_ok(self.api.send(call).await)? {
                let status = text(&reply.body, "status");
                if status != "active" {
                    return Err(CloudError::invalid(
                        "resolve image",
                        resource,
                        format!("the image is {status}, not active"),
                    ));
                }
                return Ok(named(&reply.body));
            }
        }
        // Glance reads a leading "in:" as an operator, so such names are filtered here only.
        let mut call = Call::new(
            "resolve image",
            resource,
            Method::GET,
            Service::Image,
            &["images"],
        )
        .query("status", "active");
        if !name_or_id.starts_with("in:") {
            call = call.query("name", name_or_id);
        }
        let images = self.paginate_images(call).await?;
        let mut candidates: Vec<&Value> = images
            .iter()
            .filter(|i| text(i, "name") == name_or_id && text(i, "status") == "active")
            .collect();
        // The documented rule: newest `created_at` wins, ties broken by the larger id so that
        // the choice does not depend on the API's order. RFC 3339 UTC strings sort as times.
        candidates.sort_by(|a, b| {
            (text(b, "created_at"), text(b, "id")).cmp(&(text(a, "created_at"), text(a, "id")))
        });
        candidates
            .first()
            .map(|i| named(i))
            .ok_or_else(|| not_found("image", name_or_id, "no active image has this id or name"))
    }

    async fn lookup_network(&self, name_or_id: &str) -> Result<Network, CloudError> {
        let resource = format!("network {name_or_id:?}");
        let to_network = |v: &Value| Network {
            named: named(v),
            external: v
                .get("router:external")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        };
        if is_uuid(name_or_id) {
            let call = Call::new(
                "resolve network",
                resource.clone(),
                Method::GET,
                Service::Network,
                &["networks", name_or_id],
            );
            if let Some(reply) = absent_ok(self.api.send(call).await)? {
                return Ok(to_network(&reply.body["network"]));
            }
        }
        let call = Call::new(
            "resolve network",
            resource,
            Method::GET,
            Service::Network,
            &["networks"],
        )
        .query("name", name_or_id);
        let reply = self.api.send(call).await?;
        let found: Vec<&Value> = reply.body["networks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| text(n, "name") == name_or_id)
            .collect();
        match found.as_slice() {
            [one] => Ok(to_network(one)),
            [] => Err(not_found(
                "network",
                name_or_id,
                "no network has this id or name",
            )),
            many => Err(ambiguous(
                "network",
                name_or_id,
                &many.iter().map(|n| text(n, "id")).collect::<Vec<_>>(),
            )),
        }
    }

    async fn lookup_security_group(&self, name_or_id: &str) -> Result<Named, CloudError> {
        let resource = format!("security group {name_or_id:?}");
        if is_uuid(name_or_id) {
            let call = Call::new(
                "resolve security group",
                resource.clone(),
                Method::GET,
                Service::Network,
                &["security-groups", name_or_id],
            );
            if let Some(reply) = absent_ok(self.api.send(call).await)? {
                return Ok(named(&reply.body["security_group"]));
            }
        }
        let call = Call::new(
            "resolve security group",
            resource,
            Method::GET,
            Service::Network,
            &["security-groups"],
        )
        .query("name", name_or_id);
        let reply = self.api.send(call).await?;
        let all: Vec<&Value> = reply.body["security_groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|g| text(g, "name") == name_or_id)
            .collect();
        // An admin sees every project's "default"; ours is the one meant.
        let project = self.api.project_id().await;
        let own: Vec<&Value> = all
            .iter()
            .copied()
            .filter(|g| {
                project
                    .as_deref()
                    .is_some_and(|p| text(g, "project_id") == p || text(g, "tenant_id") == p)
            })
            .collect();
        let pick = if own.is_empty() { all } else { own };
        match pick.as_slice() {
            [one] => Ok(named(one)),
            [] => Err(not_found(
                "security group",
                name_or_id,
                "no security group has this id or name",
            )),
            many => Err(ambiguous(
                "security group",
                name_or_id,
                &many.iter().map(|g| text(g, "id")).collect::<Vec<_>>(),
            )),
        }
    }
}

#[async_trait]
impl Cloud for OpenStack {
    async fn resolve_flavor(&self, name_or_id: &str) -> Result<Named, CloudError> {
        if let Some(found) = self.cached(FLAVOR, name_or_id).as_ref().and_then(named_of) {
            return Ok(found);
        }
        let found = self.lookup_flavor(name_or_id).await?;
        self.remember(FLAVOR, name_or_id, named_json(&found));
        Ok(found)
    }

    async fn resolve_image(&self, name_or_id: &str) -> Result<Named, CloudError> {
        if let Some(found) = self.cached(IMAGE, name_or_id).as_ref().and_then(named_of) {
            return Ok(found);
        }
        let found = self.lookup_image(name_or_id).await?;
        self.remember(IMAGE, name_or_id, named_json(&found));
        Ok(found)
    }

    async fn resolve_network(&self, name_or_id: &str) -> Result<Network, CloudError> {
        if let Some(v) = self.cached(NETWORK, name_or_id)
            && let Some(named) = named_of(&v)
        {
            let external = v.get("external").and_then(Value::as_bool).unwrap_or(false);
            return Ok(Network { named, external });
        }
        let found = self.lookup_network(name_or_id).await?;
        let mut v = named_json(&found.named);
        v["external"] = json!(found.external);
        self.remember(NETWORK, name_or_id, v);
        Ok(found)
    }

    async fn resolve_security_group(&self, name_or_id: &str) -> Result<Named, CloudError> {
        if let Some(found) = self
            .cached(SECURITY_GROUP, name_or_id)
            .as_ref()
            .and_then(named_of)
        {
            return Ok(found);
        }
        let found = self.lookup_security_group(name_or_id).await?;
        self.remember(SECURITY_GROUP, name_or_id, named_json(&found));
        Ok(found)
    }

    async fn resolve_server_group(&self, name_or_id: &str) -> Result<Named, CloudError> {
        let resource = format!("server group {name_or_id:?}");
        let call = Call::new(
            "resolve server group",
            resource,
            Method::GET,
            Service::Compute,
            &["os-server-groups"],
        );
        let reply = self.api.send(call).await?;
        let groups: Vec<&Value> = reply.body["server_groups"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        if let Some(g) = groups.iter().find(|g| text(g, "id") == name_or_id) {
            return Ok(named(g));
        }
        let found: Vec<&&Value> = groups
            .iter()
            .filter(|g| text(g, "name") == name_or_id)
            .collect();
        match found.as_slice() {
            [one] => Ok(named(one)),
            [] => Err(not_found(
                "server group",
                name_or_id,
                "no server group has this id or name",
            )),
            many => Err(ambiguous(
                "server group",
                name_or_id,
                &many.iter().map(|g| text(g, "id")).collect::<Vec<_>>(),
            )),
        }
    }

    async fn keypair_exists(&self, name: &str) -> Result<bool, CloudError> {
        if lock(&self.keypairs)
            .get(name)
            .is_some_and(|at| at.elapsed() < KEYPAIR_KNOWN_FOR)
        {
            return Ok(true);
        }
        Ok(self.keypair_public_key(name).await?.is_some())
    }

    fn compute_supports(&self, major: u16, minor: u16) -> bool {
        self.api.compute_supports(ApiVersion(major, minor))
    }

    async fn post_server(&self, name: &str, body: Value) -> Result<String, CloudError> {
        let call = |body: Value| {
            Call::new(
                "create server",
                format!("server {name:?}"),
                Method::POST,
                Service::Compute,
                &["servers"],
            )
            .json(body)
        };
        let reply = match self.api.send(call(body.clone())).await {
            Ok(reply) => reply,
            // A refused create made nothing: with ids from the cache, they may be what Nova
            // no longer knows. Look them up again and send it once more.
            Err(e) if maybe_stale(&e) => {
                let changed = self
                    .refresh_stale(&[FLAVOR, IMAGE, NETWORK, SECURITY_GROUP])
                    .await?;
                if changed.is_empty() {
                    return Err(e);
                }
                let mut body = body;
                for (kind, old, new) in &changed {
                    replace_id(&mut body, kind, old, new);
                }
                self.api.send(call(body)).await?
            }
            Err(e) => return Err(e),
        };
        let id = text(&reply.body["server"], "id");
        if id.is_empty() {
            return Err(CloudError {
                request_id: reply.request_id,
                status: Some(reply.status),
                ..CloudError::invalid(
                    "create server",
                    format!("server {name:?}"),
                    "the answer has no server id",
                )
            });
        }
        Ok(id)
    }

    async fn get_server(&self, id: &str) -> Result<Option<Server>, CloudError> {
        let call = Call::new(
            "show server",
            format!("server {id}"),
            Method::GET,
            Service::Compute,
            &["servers", id],
        );
        let server = absent_ok(self.api.send(call).await)?
            .and_then(|r| Server::from_json(&r.body["server"]));
        if let Some(s) = server.as_ref().filter(|s| s.status == "ACTIVE") {
            *lock(&self.fresh) = Some((Instant::now(), s.clone()));
        }
        Ok(server)
    }

    async fn list_servers(&self, name_filter: Option<&str>) -> Result<Vec<Server>, CloudError> {
        let mut call = Call::new(
            "list servers",
            name_filter
                .map(|n| format!("servers named {n:?}"))
                .unwrap_or_else(|| "servers".into()),
            Method::GET,
            Service::Compute,
            &["servers", "detail"],
        );
        if let Some(name) = name_filter {
            call = call.query("name", name);
        }
        let all = self.paginate(call, "servers", "servers_links").await?;
        Ok(all.iter().filter_map(Server::from_json).collect())
    }

    async fn delete_server(&self, id: &str) -> Result<(), CloudError> {
        self.stale_server();
        let call = Call::new(
            "delete server",
            format!("server {id}"),
            Method::DELETE,
            Service::Compute,
            &["servers", id],
        );
        absent_ok(self.api.send(call).await).map(|_| ())
    }

    async fn set_server_metadata(
        &self,
        id: &str,
        items: &BTreeMap<String, String>,
    ) -> Result<(), CloudError> {
        self.stale_server();
        let call = Call::new(
            "set server metadata",
            format!("server {id}"),
            Method::POST,
            Service::Compute,
            &["servers", id, "metadata"],
        )
        .json(json!({ "metadata": items }))
        .idempotent();
        self.api.send(call).await.map(|_| ())
    }

    async fn console_output(&self, id: &str, lines: Option<u32>) -> Result<String, CloudError> {
        let args = match lines {
            Some(n) => json!({ "length": n }),
            None => json!({}),
        };
        let call = Call::new(
            "fetch console log",
            format!("server {id}"),
            Method::POST,
            Service::Compute,
            &["servers", id, "action"],
        )
        .json(json!({ "os-getConsoleOutput": args }))
        .idempotent();
        let reply = self.api.send(call).await?;
        Ok(text(&reply.body, "output"))
    }

    async fn server_ports(&self, server_id: &str) -> Result<Vec<Port>, CloudError> {
        let call = Call::new(
            "list ports",
            format!("ports of server {server_id}"),
            Method::GET,
            Service::Network,
            &["ports"],
        )
        .query("device_id", server_id);
        let reply = self.api.send(call).await?;
        Ok(reply.body["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| Port {
                id: text(p, "id"),
                network_id: text(p, "network_id"),
            })
            .collect())
    }

    async fn post_floating_ip(
        &self,
        network_id: &str,
        port_id: &str,
        description: &str,
    ) -> Result<FloatingIp, CloudError> {
        self.stale_server();
        let call = |network_id: &str| {
            Call::new(
                "allocate floating IP",
                format!("floating IP on network {network_id} for port {port_id}"),
                Method::POST,
                Service::Network,
                &["floatingips"],
            )
            .json(json!({ "floatingip": {
                "floating_network_id": network_id,
                "port_id": port_id,
                "description": description,
            }}))
        };
        let reply = match self.api.send(call(network_id)).await {
            Ok(reply) => reply,
            Err(e) if maybe_stale(&e) => {
                let changed = self.refresh_stale(&[NETWORK]).await?;
                match changed.iter().find(|(_, old, _)| old == network_id) {
                    Some((_, _, new)) => self.api.send(call(new)).await?,
                    None => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        Ok(floating_ip(&reply.body["floatingip"]))
    }

    async fn floating_ips_on_port(&self, port_id: &str) -> Result<Vec<FloatingIp>, CloudError> {
        self.floating_ips(Some(port_id)).await
    }

    async fn list_floating_ips(&self) -> Result<Vec<FloatingIp>, CloudError> {
        self.floating_ips(None).await
    }

    async fn delete_floating_ip(&self, id: &str) -> Result<(), CloudError> {
        self.stale_server();
        let call = Call::new(
            "release floating IP",
            format!("floating IP {id}"),
            Method::DELETE,
            Service::Network,
            &["floatingips", id],
        );
        absent_ok(self.api.send(call).await).map(|_| ())
    }

    async fn import_keypair(&self, name: &str, public_key: &str) -> Result<(), CloudError> {
        let mut keypair = json!({ "name": name, "public_key": public_key });
        if self.api.compute_supports(ApiVersion(2, 2)) {
            keypair["type"] = json!("ssh");
        }
        let call = Call::new(
            "import key pair",
            format!("key pair {name:?}"),
            Method::POST,
            Service::Compute,
            &["os-keypairs"],
        )
        .json(json!({ "keypair": keypair }));
        self.api.send(call).await?;
        lock(&self.keypairs).insert(name.to_string(), Instant::now());
        Ok(())
    }

    async fn keypair_public_key(&self, name: &str) -> Result<Option<String>, CloudError> {
        let key = self
            .show_keypair(name)
            .await?
            .map(|k| text(&k, "public_key"));
        match key {
            Some(_) => lock(&self.keypairs).insert(name.to_string(), Instant::now()),
            None => lock(&self.keypairs).remove(name),
        };
        Ok(key)
    }

    async fn list_keypair_names(&self) -> Result<Vec<String>, CloudError> {
        let call = Call::new(
            "list key pairs",
            "key pairs".to_string(),
            Method::GET,
            Service::Compute,
            &["os-keypairs"],
        );
        let reply = self.api.send(call).await?;
        Ok(reply.body["keypairs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|k| text(&k["keypair"], "name"))
            .filter(|n| !n.is_empty())
            .collect())
    }

    async fn keypair_created(&self, name: &str) -> Result<Option<SystemTime>, CloudError> {
        Ok(self
            .show_keypair(name)
            .await?
            .and_then(|k| timestamp(&k, "created_at")))
    }

    async fn delete_keypair(&self, name: &str) -> Result<(), CloudError> {
        lock(&self.keypairs).remove(name);
        let call = Call::new(
            "delete key pair",
            format!("key pair {name:?}"),
            Method::DELETE,
            Service::Compute,
            &["os-keypairs", name],
        );
        absent_ok(self.api.send(call).await).map(|_| ())
    }

    async fn delete_volume(&self, id: &str) -> Result<(), CloudError> {
        let call = Call::new(
            "delete volume",
            format!("volume {id}"),
            Method::DELETE,
            Service::Volume,
            &["volumes", id],
        );
        absent_ok(self.api.send(call).await).map(|_| ())
    }

    async fn volume_metadata(
        &self,
        id: &str,
    ) -> Result<Option<BTreeMap<String, String>>, CloudError> {
        let call = Call::new(
            "show volume",
            format!("volume {id}"),
            Method::GET,
            Service::Volume,
            &["volumes", id],
        );
        Ok(absent_ok(self.api.send(call).await)?.map(|reply| {
            reply.body["volume"]["metadata"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        }))
    }

    async fn set_volume_metadata(
        &self,
        id: &str,
        items: &BTreeMap<String, String>,
    ) -> Result<(), CloudError> {
        let call = Call::new(
            "set volume metadata",
            format!("volume {id}"),
            Method::POST,
            Service::Volume,
            &["volumes", id, "metadata"],
        )
        .json(json!({ "metadata": items }))
        .idempotent();
        self.api.send(call).await.map(|_| ())
    }

    async fn compute_limits(&self) -> Result<ComputeLimits, CloudError> {
        let call = Call::new(
            "show limits",
            "compute limits",
            Method::GET,
            Service::Compute,
            &["limits"],
        );
        let reply = self.api.send(call).await?;
        ComputeLimits::from_json(&reply.body).ok_or_else(|| {
            CloudError::invalid(
                "show limits",
                "compute limits",
                "the answer has no absolute limits",
            )
        })
    }

    fn requests_sent(&self) -> u64 {
        self.api.requests_sent()
    }
}

impl OpenStack {
    async fn paginate_images(&self, call: Call) -> Result<Vec<Value>, CloudError> {
        // Glance pages by a `next` URL holding the marker; the first page is the newest and a
        // name rarely spans pages, but follow them so that the rule holds anyway.
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..100 {
            let mut c = call.clone();
            if let Some(m) = &marker {
                c = c.query("marker", m.clone());
            }
            let reply = self.api.send(c).await?;
            let items = reply.body["images"].as_array().cloned().unwrap_or_default();
            let last = items.last().map(|i| text(i, "id"));
            out.extend(items);
            match (reply.body.get("next").and_then(Value::as_str), last) {
                (Some(_), Some(id)) if marker.as_deref() != Some(&id) => marker = Some(id),
                _ => break,
            }
        }
        Ok(out)
    }
}
