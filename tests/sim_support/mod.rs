//! Raw-HTTP helpers shared by the simulator tests (no SDK in between, so the tests see the
//! exact status codes, headers and bodies).

pub mod ssh_client;

use std::time::Duration;

use executor_simulator::{SimCloud, SimOptions};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

pub struct Api {
    pub sim: SimCloud,
    pub http: reqwest::Client,
    pub token: String,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

pub async fn start(opts: SimOptions) -> Api {
    let sim = SimCloud::start(opts).await.expect("simulator starts");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut api = Api {
        sim,
        http,
        token: String::new(),
    };
    api.token = api.login().await;
    api
}

pub fn password_auth() -> Value {
    json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "demo", "domain": {"name": "Default"}, "password": "secret"}}},
        "scope": {"project": {"name": "demo", "domain": {"name": "Default"}}}}})
}

impl Api {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.base_url())
    }

    pub async fn login(&self) -> String {
        let r = self
            .http
            .post(self.url("/identity/v3/auth/tokens"))
            .json(&password_auth())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        r.headers()["x-subject-token"].to_str().unwrap().to_string()
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut rb = self
            .http
            .request(method.parse().unwrap(), self.url(path))
            .header("x-auth-token", &self.token);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send("POST", path, Some(body), &[]).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send("DELETE", path, None, &[]).await
    }

    pub async fn first_id(&self, path: &str, key: &str) -> String {
        let r = self.get(path).await;
        assert_eq!(r.status, 200, "{path}: {:?}", r.body);
        r.body[key][0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{path}: no id in {:?}", r.body))
            .to_string()
    }

    pub async fn image_id(&self, name: &str) -> String {
        self.first_id(
            &format!("/image/v2/images?name={name}&status=active"),
            "images",
        )
        .await
    }

    pub async fn network_id(&self, name: &str) -> String {
        self.first_id(&format!("/network/v2.0/networks?name={name}"), "networks")
            .await
    }

    /// Creates a server on `private` from cirros with flavor 1, merging `extra` into the body.
    pub async fn create_server(&self, name: &str, extra: Value) -> Reply {
        let image = self.image_id("cirros-0.6.2").await;
        let net = self.network_id("private").await;
        let mut server = json!({"name": name, "flavorRef": "1", "imageRef": image,
            "networks": [{"uuid": net}]});
        let mut body = json!({});
        if let (Some(s), Some(e)) = (server.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                // Scheduler hints sit next to `server`, not inside it.
                if k == "os:scheduler_hints" {
                    body[k] = v.clone();
                } else {
                    s.insert(k.clone(), v.clone());
                }
            }
        }
        body["server"] = server;
        self.send(
            "POST",
            "/compute/v2.1/servers",
            Some(body),
            &[("OpenStack-API-Version", "compute 2.79")],
        )
        .await
    }

    pub async fn create_ok(&self, name: &str, extra: Value) -> String {
        let r = self.create_server(name, extra).await;
        assert_eq!(r.status, 202, "create {name}: {:?}", r.body);
        r.body["server"]["id"].as_str().unwrap().to_string()
    }

    pub async fn server(&self, id: &str) -> Reply {
        self.send(
            "GET",
            &format!("/compute/v2.1/servers/{id}"),
            None,
            &[("OpenStack-API-Version", "compute 2.79")],
        )
        .await
    }

    /// Polls until the server has `status` (bounded, generous for a busy machine).
    pub async fn wait_status(&self, id: &str, status: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.server(id).await;
            if r.status == 200 && r.body["server"]["status"] == status {
                return r.body["server"].clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "server {id} never reached {status}: {:?}",
                r.body
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls until GET answers 404.
    pub async fn wait_gone(&self, id: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.server(id).await.status != 404 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "server {id} never went away"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls until the server's metadata has `ssh_port` and its endpoint accepts connections.
    pub async fn wait_ssh_port(&self, id: &str) -> (String, u16) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.server(id).await.body["server"].clone();
            if let Some(p) = s["metadata"]["ssh_port"].as_str()
                && self.sim.ssh_port(id).is_some()
            {
                let addr = s["addresses"]["private"][0]["addr"]
                    .as_str()
                    .unwrap()
                    .to_string();
                return (addr, p.parse().unwrap());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "server {id} never got an SSH endpoint"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Fast delays for tests; SSH off unless a test needs it.
pub fn api_opts() -> SimOptions {
    SimOptions {
        build_delay: Duration::from_millis(50),
        delete_delay: Duration::from_millis(50),
        ssh_mode: executor_simulator::SshMode::Disabled,
        ..SimOptions::default()
    }
}
