//! Deleting what a job made: idempotent, safe when nothing exists, and never touching
//! anything that does not carry this job's ownership metadata.
//!
//! gitlab-runner runs cleanup after every failed prepare attempt, so a cleanup may find a
//! server whose id never reached the job state (prepare died during the create), or nothing at
//! all. We therefore look both by the id in the state and by exact name plus ownership, delete,
//! and wait until the servers are really gone (bounded), so that the next prepare attempt does
//! not coexist with a dying server of the same name.
//!
//! Everything cleanup deletes passes an ownership proof. A server carries this job's metadata.
//! A key pair has no metadata: it is this job's by its exact per-job name, or by being the key
//! of a server proven this job's. A floating IP carries this job's marker, or sits on a port of
//! a server proven this job's. A volume kept past termination is attached to a server proven
//! this job's, or carries this job's ownership in its metadata (`create_server` tags it). A
//! recipe, a damaged job state or another owner's cleanup cannot name its way past that.
//!
//! One listing by exact name finds both in the usual case (the server of the state's id has
//! that name); the server is asked for by id only when the listing does not show it. Ports are
//! searched for floating IPs only when one may exist that the state does not name (the
//! policy says so, or a server shows a floating address).

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::backend::Cloud;
use super::create::exact_name_filter;
use super::error::{CloudError, CloudErrorKind};
use super::floating_ip::floating_ips_on_server;
use super::keypair::job_keypair_name;
use super::ownership::Ownership;
use super::server::Server;

/// What to clean up.
#[derive(Debug, Clone)]
pub struct CleanupTarget {
    /// This job.
    pub owner: Ownership,
    /// The server id from the job state, if prepare got that far.
    pub server_id: Option<String>,
    /// The exact server name prepare used.
    pub server_name: Option<String>,
    /// Floating IPs recorded in the job state.
    pub floating_ip_ids: Vec<String>,
    /// The per-job key pair.
    pub keypair_name: Option<String>,
    /// Volumes recorded in the job state (e.g. a boot volume kept past termination).
    pub volume_ids: Vec<String>,
}

/// How long to wait.
#[derive(Debug, Clone)]
pub struct CleanupPolicy {
    /// Upper bound for servers to disappear and volumes to become deletable.
    pub timeout: Duration,
    /// Pause between checks.
    pub interval: Duration,
    /// Look on the servers' ports for floating IPs of this job beyond those the target names
    /// (two requests per server). Needed when a floating IP may have been made whose id was
    /// never saved; a server that shows a floating address is searched in any case.
    pub find_floating_ips: bool,
}

impl Default for CleanupPolicy {
    fn default() -> Self {
        CleanupPolicy {
            timeout: Duration::from_secs(180),
            interval: Duration::from_secs(1),
            find_floating_ips: true,
        }
    }
}

/// What cleanup did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CleanupReport {
    /// Servers deleted (and seen gone).
    pub servers_deleted: Vec<String>,
    /// Servers found by id that lack this job's metadata, and so were left alone.
    pub servers_refused: Vec<String>,
    /// Floating IPs released.
    pub floating_ips_released: Vec<String>,
    /// Whether a key pair was deleted (or already absent).
    pub keypair_deleted: bool,
    /// A key pair the target named that is not provably this job's, and so was left alone.
    pub keypair_refused: Option<String>,
    /// Floating IPs the target named that are not provably this job's, left alone.
    pub floating_ips_refused: Vec<String>,
    /// Volumes the target named that are not provably this job's, left alone.
    pub volumes_refused: Vec<String>,
    /// Volumes deleted.
    pub volumes_deleted: Vec<String>,
}

/// Gone means 404: a server still shown as DELETED may hold its ports and volumes a moment
/// longer, and a next prepare attempt must not meet them.
async fn gone(cloud: &dyn Cloud, id: &str) -> Result<bool, CloudError> {
    Ok(cloud.get_server(id).await?.is_none())
}

/// Cleans up `target`. Errors are collected: everything that can be released is, and the
/// first error is returned at the end.
pub async fn cleanup(
    cloud: &dyn Cloud,
    target: &CleanupTarget,
    policy: &CleanupPolicy,
) -> Result<CleanupReport, CloudError> {
    let mut run = CleanupRun {
        cloud,
        policy,
        report: CleanupReport::default(),
        first_error: None,
    };
    let servers = run.find_servers(target).await;
    // Floating IPs first: released with the port, they would otherwise linger unassociated.
    run.release_floating_ips(target, &servers).await;
    // Which volumes to delete is read from the servers before they are gone.
    let mut kept = kept_volumes(&servers);
    kept.extend(run.proven_named_volumes(target, &kept).await);
    let nova_deletes = volumes_nova_deletes(&servers, &kept);
    run.request_server_deletes(&servers).await;
    let deadline = Instant::now() + policy.timeout;
    run.wait_until_servers_gone(&servers, deadline).await;
    run.delete_keypair(target, &servers).await;
    run.make_sure_nova_deleted(nova_deletes).await;
    run.delete_kept_volumes(kept, deadline).await;
    match run.first_error {
        Some(e) => Err(e),
        None => Ok(run.report),
    }
}

/// One cleanup in progress: what it did so far, and the first thing that failed.
struct CleanupRun<'a> {
    cloud: &'a dyn Cloud,
    policy: &'a CleanupPolicy,
    report: CleanupReport,
    first_error: Option<CloudError>,
}

impl CleanupRun<'_> {
    /// A failure does not stop the cleanup: the rest can still be released.
    fn note(&mut self, e: CloudError) {
        tracing::warn!(error = %e, "cleanup step failed");
        if self.first_error.is_none() {
            self.first_error = Some(e);
        }
    }

    /// This job's servers: the one whose id is in the job state (if it carries this job's
    /// ownership), and any other with the exact name and this job's ownership.
    async fn find_servers(&mut self, target: &CleanupTarget) -> Vec<Server> {
        let owner = &target.owner;
        let listed = match &target.server_name {
            Some(name) => self.list_by_exact_name(name).await,
            None => None,
        };
        let mut servers: Vec<Server> = Vec::new();
        if let Some(id) = &target.server_id {
            let by_id = match listed.iter().flatten().find(|s| &s.id == id) {
                Some(s) => Ok(Some(s.clone())),
                None => self.cloud.get_server(id).await,
            };
            match by_id {
                Ok(Some(s)) if owner.owns(&s.metadata) => servers.push(s),
                Ok(Some(s)) => {
                    tracing::warn!(server = %s.id, "server in the job state lacks this job's ownership metadata; not deleting it");
                    self.report.servers_refused.push(s.id);
                }
                Ok(None) => {}
                Err(e) => self.note(e),
            }
        }
        for s in listed.into_iter().flatten() {
            let already = servers.iter().any(|x| x.id == s.id)
                || self.report.servers_refused.iter().any(|id| id == &s.id);
            if !already && owner.owns(&s.metadata) && s.status != "DELETED" {
                servers.push(s);
            }
        }
        servers
    }

    /// The servers named exactly `name`, or `None` when they cannot be listed.
    async fn list_by_exact_name(&mut self, name: &str) -> Option<Vec<Server>> {
        // Nova's name filter is a regex matched as a substring: only the exact name counts.
        match self
            .cloud
            .list_servers(Some(&exact_name_filter(name)))
            .await
        {
            Ok(found) => Some(found.into_iter().filter(|s| s.name == name).collect()),
            Err(e) => {
                self.note(e);
                None
            }
        }
    }

    /// The floating IPs with this job's marker on the servers' ports (looked for only where the
    /// policy or a server's floating address says so), and those the job state names once they
    /// pass the proof: this job's marker, or a port of one of this job's servers.
    async fn release_floating_ips(&mut self, target: &CleanupTarget, servers: &[Server]) {
        let marker = target.owner.marker();
        let mut fips: BTreeSet<String> = BTreeSet::new();
        let mut on_our_ports: BTreeSet<String> = BTreeSet::new();
        let shows_floating = |s: &Server| {
            s.addresses
                .iter()
                .any(|a| a.kind == super::server::AddressKind::Floating)
        };
        for s in servers
            .iter()
            .filter(|s| self.policy.find_floating_ips || shows_floating(s))
        {
            match floating_ips_on_server(self.cloud, &s.id).await {
                Ok(list) => {
                    for f in list {
                        on_our_ports.insert(f.id.clone());
                        if f.description == marker {
                            fips.insert(f.id);
                        }
                    }
                }
                Err(e) => self.note(e),
            }
        }
        let named: Vec<&String> = target
            .floating_ip_ids
            .iter()
            .filter(|id| !fips.contains(*id))
            .collect();
        if !named.is_empty() {
            match self.cloud.list_floating_ips().await {
                Ok(all) => {
                    for id in named {
                        match all.iter().find(|f| &f.id == id) {
                            // Already gone: nothing to release.
                            None => {}
                            Some(f) if f.description == marker || on_our_ports.contains(id) => {
                                fips.insert(id.clone());
                            }
                            Some(_) => {
                                tracing::warn!(floating_ip = %id, "floating IP in the job state is not this job's; not releasing it");
                                self.report.floating_ips_refused.push(id.clone());
                            }
                        }
                    }
                }
                Err(e) => self.note(e),
            }
        }
        for id in fips {
            match self.cloud.delete_floating_ip(&id).await {
                Ok(()) => self.report.floating_ips_released.push(id),
                Err(e) => self.note(e),
            }
        }
    }

    /// The volumes the target names beyond those of this job's servers, once their metadata
    /// shows this job's ownership; a volume already gone needs nothing.
    async fn proven_named_volumes(
        &mut self,
        target: &CleanupTarget,
        of_servers: &BTreeSet<String>,
    ) -> Vec<String> {
        let mut proven = Vec::new();
        for id in target
            .volume_ids
            .iter()
            .filter(|v| !of_servers.contains(*v))
        {
            match self.cloud.volume_metadata(id).await {
                Ok(None) => {}
                Ok(Some(metadata)) if target.owner.owns(&metadata) => proven.push(id.clone()),
                Ok(Some(_)) => {
                    tracing::warn!(volume = %id, "volume in the job state is not this job's; not deleting it");
                    self.report.volumes_refused.push(id.clone());
                }
                Err(e) => self.note(e),
            }
        }
        proven
    }

    async fn request_server_deletes(&mut self, servers: &[Server]) {
        for s in servers {
            if let Err(e) = self.cloud.delete_server(&s.id).await {
                self.note(e);
            }
        }
    }

    /// Polls until every server is gone or `deadline` passes, which is an error naming the
    /// ones still there.
    async fn wait_until_servers_gone(&mut self, servers: &[Server], deadline: Instant) {
        let mut pending: Vec<String> = servers.iter().map(|s| s.id.clone()).collect();
        while !pending.is_empty() {
            let mut still = Vec::new();
            for id in pending {
                match gone(self.cloud, &id).await {
                    Ok(true) => self.report.servers_deleted.push(id),
                    Ok(false) => still.push(id),
                    Err(e) => {
                        self.note(e);
                        still.push(id);
                    }
                }
            }
            pending = still;
            if pending.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                let timeout = Duration::from_secs(self.policy.timeout.as_secs());
                self.note(CloudError::new(
                    CloudErrorKind::Timeout,
                    "delete server",
                    format!("servers {}", pending.join(", ")),
                    format!(
                        "still present {} after the delete request",
                        humantime::format_duration(timeout)
                    ),
                ));
                break;
            }
            tokio::time::sleep(self.policy.interval).await;
        }
    }

    /// Deletes the target's key pair when it is provably this job's: the exact per-job name,
    /// or the key of one of this job's servers (a pool VM's own key pair, named after the VM).
    async fn delete_keypair(&mut self, target: &CleanupTarget, servers: &[Server]) {
        if let Some(name) = &target.keypair_name {
            let ours = *name == job_keypair_name(&target.owner)
                || servers.iter().any(|s| s.key_name.as_deref() == Some(name));
            if !ours {
                tracing::warn!(keypair = %name, "key pair is neither this job's by name nor the key of this job's server; not deleting it");
                self.report.keypair_refused = Some(name.clone());
                return;
            }
            match self.cloud.delete_keypair(name).await {
                Ok(()) => self.report.keypair_deleted = true,
                Err(e) => self.note(e),
            }
        }
    }

    /// Nova deletes these itself; deleting again after the server is gone only makes sure, so
    /// a failure there (or a cloud without Cinder in the catalog) is a warning, not an error.
    async fn make_sure_nova_deleted(&mut self, volumes: BTreeSet<String>) {
        for id in volumes {
            match self.cloud.volume_metadata(&id).await {
                Ok(None) => {}
                Ok(Some(_)) => match self.cloud.delete_volume(&id).await {
                    Ok(()) => self.report.volumes_deleted.push(id),
                    Err(e) => tracing::warn!(error = %e, "volume Nova should have deleted is left"),
                },
                Err(e) => tracing::debug!(error = %e, "cannot check a volume Nova deletes"),
            }
        }
    }

    /// Deletes the volumes that outlive their server, retrying until `deadline` while Cinder
    /// still refuses: a volume stays "in-use"/"detaching" for a moment after its server is gone.
    async fn delete_kept_volumes(&mut self, volumes: BTreeSet<String>, deadline: Instant) {
        for id in volumes {
            loop {
                match self.cloud.delete_volume(&id).await {
                    Ok(()) => {
                        self.report.volumes_deleted.push(id);
                        break;
                    }
                    Err(e)
                        if matches!(e.kind, CloudErrorKind::Invalid | CloudErrorKind::Conflict)
                            && e.status.is_some()
                            && Instant::now() < deadline =>
                    {
                        tokio::time::sleep(self.policy.interval).await;
                    }
                    Err(e) => {
                        self.note(e);
                        break;
                    }
                }
            }
        }
    }
}

/// The volumes of this job's servers kept past termination, which this job must delete itself.
/// A boot volume kept past termination was made for this job, whether or not its id reached
/// the job state before prepare died.
pub fn kept_volumes(servers: &[Server]) -> BTreeSet<String> {
    servers
        .iter()
        .flat_map(|s| s.volumes.iter())
        .filter(|v| !v.delete_on_termination)
        .map(|v| v.id.clone())
        .collect()
}

/// The servers' volumes that Nova deletes with them (and that are not also `kept`).
fn volumes_nova_deletes(servers: &[Server], kept: &BTreeSet<String>) -> BTreeSet<String> {
    servers
        .iter()
        .flat_map(|s| s.volumes.iter())
        .filter(|v| v.delete_on_termination && !kept.contains(&v.id))
        .map(|v| v.id.clone())
        .collect()
}
