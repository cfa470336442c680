//! A simulated OpenStack cloud, in process, speaking the real HTTP APIs on 127.0.0.1 so that
//! unmodified clients (Python's openstacksdk, the `openstack` crate) drive it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), executor_simulator::SimError> {
//! use executor_simulator::{SimCloud, SimOptions};
//! let sim = SimCloud::start(SimOptions::default()).await?;
//! let dir = tempfile::tempdir()?;
//! let clouds = sim.write_clouds_yaml(dir.path())?; // cloud `sim` (password), `sim-appcred`
//! // ... point OS_CLIENT_CONFIG_FILE at `clouds`, OS_CLOUD=sim, run the client ...
//! assert_eq!(sim.counts().servers, 0); // nothing leaked
//! sim.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Services: Keystone v3 at `<base>/identity/v3`, Nova 2.1 (microversions up to
//! [`MAX_NOVA_MICROVERSION`]) at `<base>/compute/v2.1`, Glance v2 at `<base>/image`, Neutron
//! v2.0 at `<base>/network`, and Cinder v3 (show and delete of boot volumes) at
//! `<base>/volume/v3`. Seeded data: see [`seed`](self) constants (project/user `demo`,
//! password `secret`, flavors `m1.*`, images `cirros-0.6.2` and `ubuntu-24.04` (three, one
//! still queued), networks `private` and external `public`, security group `default`).
//!
//! Servers get a fixed IP from 127.77.0.0/16 and floating IPs come from 127.78.0.0/16 (clear
//! of the real test cloud's 127.42/24 and 127.44/24). Once ACTIVE (plus `ssh_delay`), each
//! server runs an SSH endpoint on its addresses: port 22 when bindable, else a free port. The
//! port is published in the server's metadata key **`ssh_port`** (always, also when it is 22)
//! as soon as the server is ACTIVE; it refuses connections until the endpoint is up.
//!
//! Guests honour cloud-init's `power_state` (`mode: poweroff`) from `#cloud-config` user data:
//! after its delay, counted in [`SimOptions::guest_minute`]s, the server turns SHUTOFF and its
//! SSH endpoint goes away, as a real guest's would.

mod cinder;
mod console_log;
mod endpoints;
mod faults;
mod filter;
mod glance;
mod guest_tools;
mod http;
mod http_error;
mod keystone;
mod neutron;
mod nova;
mod nova_create_request;
mod nova_keypairs;
mod nova_servers;
pub mod openssh_server;
mod options;
mod request_log;
mod seed;
pub mod serve;
mod shared;
mod ssh_endpoints;
mod ssh_server;
mod store;
mod timefmt;
mod tls;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use endpoints::{FIRST_REGION, SECOND_REGION};
pub use faults::{FaultControl, Scope, Service};
pub use nova_servers::NO_VALID_HOST;
pub use options::{SimOptions, SshMode};
pub use request_log::{RequestLog, RequestRecord};
pub use seed::{
    APP_CRED_NAME, APP_CRED_SECRET, DOMAIN_NAME, FIXED_CIDR, FLOATING_CIDR, PROJECT_NAME,
    USER_NAME, USER_PASSWORD,
};
pub use store::Counts;

use shared::Shared;

/// The highest compute microversion the simulator accepts.
pub const MAX_NOVA_MICROVERSION: &str = "2.96";
/// Cloud name, in the written clouds.yaml, of the password login.
pub const CLOUD_NAME: &str = "sim";
/// Cloud name, in the written clouds.yaml, of the application-credential login.
pub const APPCRED_CLOUD_NAME: &str = "sim-appcred";

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Binding the listener or creating the state directory failed.
    #[error("simulated cloud: {0}")]
    Io(#[from] std::io::Error),
    /// HTTPS was asked for and the test CA could not be made.
    #[error("simulated cloud: {0}")]
    Tls(#[from] tls::TlsError),
}

/// A running simulated cloud. Dropping it stops it (use [`SimCloud::shutdown`] to wait).
pub struct SimCloud {
    shared: Arc<Shared>,
    servers: Vec<tokio::task::JoinHandle<()>>,
    /// The test CA, PEM, when serving HTTPS.
    ca_pem: Option<String>,
    _tempdir: Option<tempfile::TempDir>,
}

impl SimCloud {
    /// Binds 127.0.0.1 on a random port and starts serving. Must run inside a tokio runtime.
    pub async fn start(opts: SimOptions) -> Result<SimCloud, SimError> {
        let pki = if opts.tls {
            Some(tls::TestPki::generate()?)
        } else {
            None
        };
        let scheme = if pki.is_some() { "https" } else { "http" };
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let base_url = format!("{scheme}://{}", listener.local_addr()?);
        // The main listener is the first region's public endpoint; the others get their own.
        let mut listeners = vec![listener];
        let mut bases = vec![base_url.clone()];
        if opts.two_regions {
            while listeners.len() < endpoints::TWO_REGION_LISTENERS {
                let l = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
                bases.push(format!("{scheme}://{}", l.local_addr()?));
                listeners.push(l);
            }
        }
        let split = if opts.two_regions {
            endpoints::two_regions(&bases)
        } else {
            Vec::new()
        };
        let (root, tempdir) = match &opts.state_dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                (d.clone(), None)
            }
            None => {
                let t = tempfile::Builder::new().prefix("executor-sim-").tempdir()?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let store = seed::seeded_store(opts.instance_quota);
        let labels: Vec<Option<String>> = if split.is_empty() {
            vec![None]
        } else {
            split.iter().map(|e| Some(e.label())).collect()
        };
        let ca_pem = pki.as_ref().map(|p| p.ca_pem.clone());
        let shared = Arc::new(Shared::new(opts, base_url, split, root, store));
        let mut servers = Vec::new();
        for ((listener, base), label) in listeners.into_iter().zip(bases).zip(labels) {
            let app = http::app(shared.clone(), endpoints::Listener { base, label });
            let stop = shared.shutdown.clone();
            let server = match &pki {
                Some(p) => {
                    let tls = tls::TlsListener::new(listener, p.acceptor.clone(), stop.clone());
                    tokio::spawn(async move {
                        let _ = axum::serve(tls, app)
                            .with_graceful_shutdown(stop.cancelled_owned())
                            .await;
                    })
                }
                None => tokio::spawn(async move {
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(stop.cancelled_owned())
                        .await;
                }),
            };
            servers.push(server);
        }
        Ok(SimCloud {
            shared,
            servers,
            ca_pem,
            _tempdir: tempdir,
        })
    }

    /// The CA that signed the simulator's certificate (PEM), when it serves HTTPS
    /// ([`SimOptions::tls`]). Made at start-up; a client trusts it only if given it.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// Writes the test CA as `ca.pem` into `dir` and returns its path; `None` without HTTPS.
    pub fn write_ca(&self, dir: &Path) -> std::io::Result<Option<PathBuf>> {
        let Some(pem) = &self.ca_pem else {
            return Ok(None);
        };
        let path = dir.join("ca.pem");
        std::fs::write(&path, pem)?;
        Ok(Some(path))
    }

    /// `http://127.0.0.1:<port>` (`https://` with [`SimOptions::tls`])
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    /// Keystone's v3 URL, e.g. `http://127.0.0.1:40123/identity/v3`.
    pub fn auth_url(&self) -> String {
        format!("{}/identity/v3", self.shared.base_url)
    }

    /// The id of the seeded application credential (name [`APP_CRED_NAME`], secret
    /// [`APP_CRED_SECRET`]).
    pub fn app_credential_id(&self) -> String {
        self.shared
            .store()
            .app_creds
            .first()
            .map(|a| a.id.clone())
            .unwrap_or_default()
    }

    /// The id of project `demo`.
    pub fn project_id(&self) -> String {
        self.shared.store().project_id.clone()
    }

    /// A clouds.yaml with two clouds: [`CLOUD_NAME`] (password) and [`APPCRED_CLOUD_NAME`].
    pub fn clouds_yaml(&self) -> String {
        let auth = self.auth_url();
        let ac = self.app_credential_id();
        format!(
            "clouds:\n  {CLOUD_NAME}:\n    auth:\n      auth_url: {auth}\n      username: {USER_NAME}\n      password: {USER_PASSWORD}\n      project_name: {PROJECT_NAME}\n      user_domain_name: {DOMAIN_NAME}\n      project_domain_name: {DOMAIN_NAME}\n    region_name: RegionOne\n    identity_api_version: 3\n    interface: public\n  {APPCRED_CLOUD_NAME}:\n    auth_type: v3applicationcredential\n    auth:\n      auth_url: {auth}\n      application_credential_id: {ac}\n      application_credential_secret: {APP_CRED_SECRET}\n    region_name: RegionOne\n    identity_api_version: 3\n    interface: public\n"
        )
    }

    /// Writes `clouds.yaml` (mode 0600) into `dir` and returns its path.
    pub fn write_clouds_yaml(&self, dir: &Path) -> std::io::Result<PathBuf> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join("clouds.yaml");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)?;
        f.write_all(self.clouds_yaml().as_bytes())?;
        Ok(path)
    }

    /// `OS_*` variables for a password login (what `openrc` would export).
    pub fn os_env(&self) -> Vec<(String, String)> {
        [
            ("OS_AUTH_URL", self.auth_url()),
            ("OS_AUTH_TYPE", "password".into()),
            ("OS_USERNAME", USER_NAME.into()),
            ("OS_PASSWORD", USER_PASSWORD.into()),
            ("OS_PROJECT_NAME", PROJECT_NAME.into()),
            ("OS_USER_DOMAIN_NAME", DOMAIN_NAME.into()),
            ("OS_PROJECT_DOMAIN_NAME", DOMAIN_NAME.into()),
            ("OS_REGION_NAME", "RegionOne".into()),
            ("OS_IDENTITY_API_VERSION", "3".into()),
            ("OS_INTERFACE", "public".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// How many servers, ports, floating IPs, key pairs, volumes, ... exist now.
    pub fn counts(&self) -> Counts {
        self.shared.store().counts()
    }

    /// A snapshot of every request answered so far.
    pub fn request_log(&self) -> RequestLog {
        RequestLog {
            records: self.shared.log().clone(),
        }
    }

    /// The fault-injection handle.
    pub fn faults(&self) -> FaultControl {
        FaultControl {
            shared: self.shared.clone(),
        }
    }

    /// Makes every issued token invalid (401) now; see [`FaultControl::expire_tokens`].
    pub fn expire_tokens(&self) {
        self.faults().expire_tokens();
    }

    /// Status word (`BUILD`, `ACTIVE`, `ERROR`, `DELETED`) of a server, `None` once gone.
    pub fn server_status(&self, server_id: &str) -> Option<String> {
        self.shared
            .server_status(server_id)
            .map(|s| s.as_str().to_string())
    }

    /// The SSH port of a server whose endpoint is up.
    pub fn ssh_port(&self, server_id: &str) -> Option<u16> {
        self.shared.ssh.port(server_id)
    }

    /// A server's metadata, `None` once it is gone.
    pub fn server_metadata(&self, server_id: &str) -> Option<indexmap::IndexMap<String, String>> {
        self.shared
            .store()
            .servers
            .get(server_id)
            .map(|s| s.metadata.clone())
    }

    /// The guest of a server dies, as a crashed VM does: Nova shows it SHUTOFF and its SSH
    /// endpoint goes away.
    pub fn crash(&self, server_id: &str) {
        if let Some(s) = self.shared.store().servers.get_mut(server_id) {
            s.status = store::ServerStatus::Shutoff;
        }
        self.shared.ssh.stop(server_id);
    }

    /// Ids of the servers that exist now (any status), oldest first.
    pub fn server_ids(&self) -> Vec<String> {
        self.shared.store().servers.keys().cloned().collect()
    }

    /// Makes the servers, key pairs and floating IPs that exist now look `age` older, as if
    /// made that long ago: the reaper's tests need old leftovers without waiting for them.
    pub fn backdate(&self, age: Duration) {
        let mut st = self.shared.store();
        for s in st.servers.values_mut() {
            s.created -= age;
        }
        for k in st.keypairs.values_mut() {
            k.created -= age;
        }
        let then = timefmt::seconds(std::time::SystemTime::now() - age);
        for f in st.floating_ips.values_mut() {
            f["created_at"] = then.clone().into();
        }
    }

    /// Stops the HTTP listener and every SSH endpoint, and waits (briefly) for the listener.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.cancel();
        self.shared.ssh.stop_all();
        for h in std::mem::take(&mut self.servers) {
            let _ = tokio::time::timeout(Duration::from_secs(2), h).await;
        }
    }
}

impl Drop for SimCloud {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
        self.shared.ssh.stop_all();
        for h in self.servers.drain(..) {
            h.abort();
        }
    }
}
