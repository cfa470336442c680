//! `Cloud` over OpenStack's HTTP APIs.

use std::collections::BTreeMap;
use std::time::SystemTime;

use async_trait::async_trait;
use osauth::ApiVersion;
use reqwest::Method;
use serde_json::{Value, json};

use super::backend::{Cloud, FloatingIp, Named, Network, Port};
use super::credentials::{EnvLookup, process_env};
use super::error::{CloudError, CloudErrorKind};
use super::server::Server;
use super::settings::CloudSettings;
use super::transport::{Api, Call, Service};

/// The OpenStack back end: one authenticated connection, shared by every step of a process.
#[derive(Debug)]
pub struct OpenStack {
    api: Api,
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
        Ok(OpenStack {
            api: Api::connect(settings, env).await?,
        })
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

#[async_trait]
impl Cloud for OpenStack {
    async fn resolve_flavor(&self, name_or_id: &str) -> Result<Named, CloudError> {
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

    async fn resolve_image(&self, name_or_id: &str) -> Result<Named, CloudError> {
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

    async fn resolve_network(&self, name_or_id: &str) -> Result<Network, CloudError> {
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

    async fn resolve_security_group(&self, name_or_id: &str) -> Result<Named, CloudError> {
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
        Ok(self.keypair_public_key(name).await?.is_some())
    }

    fn compute_supports(&self, major: u16, minor: u16) -> bool {
        self.api.compute_supports(ApiVersion(major, minor))
    }

    async fn post_server(&self, name: &str, body: Value) -> Result<String, CloudError> {
        let call = Call::new(
            "create server",
            format!("server {name:?}"),
            Method::POST,
            Service::Compute,
            &["servers"],
        )
        .json(body);
        let reply = self.api.send(call).await?;
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
        Ok(
            absent_ok(self.api.send(call).await)?
                .and_then(|r| Server::from_json(&r.body["server"])),
        )
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
        let call = Call::new(
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
        }}));
        let reply = self.api.send(call).await?;
        Ok(floating_ip(&reply.body["floatingip"]))
    }

    async fn floating_ips_on_port(&self, port_id: &str) -> Result<Vec<FloatingIp>, CloudError> {
        self.floating_ips(Some(port_id)).await
    }

    async fn list_floating_ips(&self) -> Result<Vec<FloatingIp>, CloudError> {
        self.floating_ips(None).await
    }

    async fn delete_floating_ip(&self, id: &str) -> Result<(), CloudError> {
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
        self.api.send(call).await.map(|_| ())
    }

    async fn keypair_public_key(&self, name: &str) -> Result<Option<String>, CloudError> {
        Ok(self
            .show_keypair(name)
            .await?
            .map(|k| text(&k, "public_key")))
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

    async fn volume_exists(&self, id: &str) -> Result<bool, CloudError> {
        let call = Call::new(
            "show volume",
            format!("volume {id}"),
            Method::GET,
            Service::Volume,
            &["volumes", id],
        );
        Ok(absent_ok(self.api.send(call).await)?.is_some())
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
