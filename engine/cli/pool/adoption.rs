//! What a restarted daemon finds: its earlier run's idle VMs, adopted when they can still
//! serve, deleted otherwise. A SIGKILLed daemon leaves nothing behind for long.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value as Json;

use executor_cloud::keypair::job_keypair_name;
use executor_cloud::ownership::{META_JOB, META_PROJECT, POOL_PROJECT};
use executor_cloud::reaper::list_runner_servers;
use executor_foundation::job_state::JobState;

use super::daemon::{Daemon, warm_key};
use super::vm::{Phase, Vm, same_key};

impl Daemon {
    /// On start: the idle VMs an earlier run of this daemon left (it was killed, or stopped
    /// with `on_shutdown: keep`) are adopted when their state is on disk and they answer, and
    /// deleted otherwise. Only servers whose metadata says they are this runner's and still
    /// the pool's are looked at: claimed VMs belong to their jobs, other runners' to them.
    pub(super) async fn adopt_leftovers(self: &Arc<Self>) {
        let servers = match list_runner_servers(self.cloud.as_ref(), &self.runner).await {
            Ok(s) => s,
            Err(e) => {
                self.log.warn(&format!("cannot list earlier pool VMs: {e}"));
                return;
            }
        };
        // A claimed VM is its job's now, but its name still carries its pool id: its key pair
        // is the job's to delete.
        let names: Vec<String> = servers.iter().map(|s| s.name.clone()).collect();
        let mut seen = HashSet::new();
        for server in servers
            .into_iter()
            .filter(|s| s.metadata.get(META_PROJECT).map(String::as_str) == Some(POOL_PROJECT))
        {
            let Some(id) = server.metadata.get(META_JOB).cloned() else {
                continue;
            };
            seen.insert(id.clone());
            let dir = self.root.join(&id);
            let state = JobState::load(&dir)
                .map(|s| s.values().clone())
                .unwrap_or_default();
            let record = Vm::load_record(&dir);
            let vm = Vm {
                id: id.clone(),
                key: record.as_ref().map(|r| r.key.clone()).unwrap_or_default(),
                dir,
                phase: Phase::Idle,
                state,
                ready_at: record
                    .as_ref()
                    .map(|r| SystemTime::UNIX_EPOCH + Duration::from_secs(r.ready_at)),
            };
            let wanted = self
                .settings
                .warm
                .iter()
                .any(|w| same_key(&vm.key, &warm_key(w)));
            let fits = record.is_some()
                && wanted
                && server.status == "ACTIVE"
                && vm.server_id() == Some(server.id.as_str())
                && self.alive(&vm).await.is_ok();
            if fits {
                self.log
                    .info(&format!("adopted idle VM {} ({})", vm.id, vm.key_label()));
                self.vms.lock().unwrap_or_else(|p| p.into_inner()).push(vm);
            } else {
                self.log
                    .info(&format!("deleting VM {} left by an earlier run", id));
                let vm = Vm {
                    state: {
                        let mut s = vm.state.clone();
                        s.insert("server_id".into(), Json::String(server.id.clone()));
                        s
                    },
                    ..vm
                };
                self.delete(&vm).await;
            }
        }
        // Directories of VMs that no longer exist hold only keys of the dead.
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if e.path().is_dir() && !seen.contains(&name) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        self.delete_orphaned_keypairs(&names).await;
    }

    /// Key pairs of VMs that never got a server: the daemon died between importing the key
    /// and creating the server. Named after the pool's ownership, so only this runner's pool
    /// key pairs can match.
    async fn delete_orphaned_keypairs(&self, server_names: &[String]) {
        let prefix = job_keypair_name(&self.pool_owner(""));
        let Ok(names) = self.cloud.list_keypair_names().await else {
            return;
        };
        for name in names {
            let Some(vm) = name.strip_prefix(&prefix) else {
                continue;
            };
            if !vm.is_empty() && !server_names.iter().any(|n| n.ends_with(vm)) {
                self.log.info(&format!(
                    "deleting key pair {name} of a VM that never booted"
                ));
                let _ = self.cloud.delete_keypair(&name).await;
            }
        }
    }
}
