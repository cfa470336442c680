//! State shared by the HTTP handlers, the server life-cycle tasks and the public handles.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::faults::FaultState;
use super::options::SimOptions;
use super::request_log::RequestRecord;
use super::ssh_endpoints::SshHub;
use super::store::{ServerStatus, Store};

pub(crate) struct Shared {
    pub opts: SimOptions,
    /// `http://127.0.0.1:<port>`
    pub base_url: String,
    /// The catalog's endpoints when each has a listener of its own; empty when `base_url`
    /// serves them all.
    pub split_endpoints: Vec<super::endpoints::Endpoint>,
    pub started: Instant,
    pub shutdown: CancellationToken,
    pub ssh: SshHub,
    /// Parent of the per-server working directories.
    pub root: PathBuf,
    store: Mutex<Store>,
    faults: Mutex<FaultState>,
    log: Mutex<Vec<RequestRecord>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the whole simulated cloud down with it.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub fn new(
        opts: SimOptions,
        base_url: String,
        split_endpoints: Vec<super::endpoints::Endpoint>,
        root: PathBuf,
        store: Store,
    ) -> Shared {
        Shared {
            ssh: SshHub::new(opts.prefer_port_22, opts.ssh_mode),
            opts,
            base_url,
            split_endpoints,
            started: Instant::now(),
            shutdown: CancellationToken::new(),
            root,
            store: Mutex::new(store),
            faults: Mutex::new(FaultState::default()),
            log: Mutex::new(Vec::new()),
        }
    }

    pub fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    pub fn faults(&self) -> MutexGuard<'_, FaultState> {
        lock(&self.faults)
    }

    pub fn log(&self) -> MutexGuard<'_, Vec<RequestRecord>> {
        lock(&self.log)
    }

    /// Removes a server and everything Nova would clean up with it: ports it created (ports
    /// passed in by the user are only detached), floating-IP associations, delete-on-termination
    /// volumes, server-group membership and the SSH endpoint.
    pub fn remove_server_now(&self, server_id: &str) -> bool {
        let existed = {
            let mut st = self.store();
            let Some(server) = st.servers.shift_remove(server_id) else {
                return false;
            };
            let port_ids: Vec<String> = st
                .ports
                .values()
                .filter(|p| p["device_id"] == server_id)
                .filter_map(|p| p["id"].as_str().map(str::to_string))
                .collect();
            for pid in &port_ids {
                for fip in st.floating_ips.values_mut() {
                    if fip["port_id"] == pid.as_str() {
                        fip["port_id"] = serde_json::Value::Null;
                        fip["fixed_ip_address"] = serde_json::Value::Null;
                        fip["router_id"] = serde_json::Value::Null;
                        fip["status"] = "DOWN".into();
                    }
                }
                if st.nova_ports.remove(pid) {
                    st.ports.shift_remove(pid);
                } else if let Some(p) = st.ports.get_mut(pid) {
                    p["device_id"] = "".into();
                    p["device_owner"] = "".into();
                    p["status"] = "DOWN".into();
                }
            }
            for vid in &server.volumes {
                if st.volumes.get(vid).is_some_and(|v| v.delete_on_termination) {
                    st.volumes.shift_remove(vid);
                }
            }
            for g in st.server_groups.values_mut() {
                if let Some(m) = g["members"].as_array_mut() {
                    m.retain(|x| x != server_id);
                }
            }
            true
        };
        self.ssh.stop(server_id);
        let _ = std::fs::remove_dir_all(self.root.join(server_id));
        existed
    }

    /// Stops a server's SSH endpoint without touching the server.
    pub fn drop_ssh(&self, server_id: &str) -> bool {
        self.ssh.stop(server_id)
    }

    /// Status of a server, `None` when it does not exist (any more).
    pub fn server_status(&self, server_id: &str) -> Option<ServerStatus> {
        self.store().servers.get(server_id).map(|s| s.status)
    }
}
