//! A real Prometheus server (the Debian package) that scrapes one target on loopback, and its
//! query API: the pool's metrics are proven by what Prometheus itself stores, not by our parser.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value as Json;

pub struct Prometheus {
    child: Child,
    port: u16,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

impl Prometheus {
    /// Scrapes `127.0.0.1:<target>` every second, its data in `dir`. `None` when the binary is
    /// missing, which CI never accepts: `.ci/setup` installs it.
    pub fn start(dir: &Path, target: u16) -> Option<Prometheus> {
        let Some(binary) = which("prometheus") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "prometheus is not installed; .ci/setup installs it"
            );
            eprintln!("SKIPPED: prometheus is not installed (apt-get install prometheus)");
            return None;
        };
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: executor-pool\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts");
        Some(Prometheus { child, port })
    }

    /// The first non-empty answer to the instant query `expr` within a minute; the whole
    /// answer, for the assertion's message.
    pub async fn query(&self, expr: &str) -> Json {
        let http = reqwest::Client::new();
        let mut last = Json::Null;
        for _ in 0..300 {
            let reply = http
                .get(format!("http://127.0.0.1:{}/api/v1/query", self.port))
                .query(&[("query", expr)])
                .send()
                .await;
            if let Ok(r) = reply
                && let Ok(body) = r.json::<Json>().await
            {
                if body["data"]["result"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
                {
                    return body;
                }
                last = body;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("Prometheus never had `{expr}`; last answer: {last}");
    }
}

/// The value of the first series of a query's answer.
pub fn first_value(answer: &Json) -> &str {
    answer["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap_or("")
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
