//! Finding what a runner left behind (a SIGKILLed runner never runs cleanup): its servers,
//! and per-job key pairs and floating IPs whose server is already gone.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use super::backend::Cloud;
use super::error::CloudError;
use super::keypair::{job_keypair_name, job_of_keypair_name, shipped_keypair_name};
use super::ownership::{
    META_JOB, META_PROJECT, META_RUNNER, Ownership, created_at, created_by_runner,
};
use super::server::Server;

/// Every server carrying `runner`'s ownership metadata.
pub async fn list_runner_servers(
    cloud: &dyn Cloud,
    runner: &str,
) -> Result<Vec<Server>, CloudError> {
    Ok(cloud
        .list_servers(None)
        .await?
        .into_iter()
        .filter(|s| created_by_runner(&s.metadata, runner))
        .collect())
}

/// The per-job key pair names the servers of every owner but `runner` may use, under today's
/// naming and the one before it. A key pair a server may use is never an orphan, whoever's it
/// is: the names of another owner's servers made before names were exact (`ci.a`'s under the
/// old naming is also `ci_a`'s) must not look orphaned to `runner`.
pub fn keypairs_of_other_owners(servers: &[Server], runner: &str) -> HashSet<String> {
    let mut names = HashSet::new();
    for s in servers {
        let (Some(other), Some(project), Some(job)) = (
            s.metadata.get(META_RUNNER),
            s.metadata.get(META_PROJECT),
            s.metadata.get(META_JOB),
        ) else {
            continue;
        };
        if other == runner {
            continue;
        }
        let owner = Ownership {
            runner: other.clone(),
            project: project.clone(),
            job: job.clone(),
        };
        names.insert(job_keypair_name(&owner));
        names.insert(shipped_keypair_name(&owner));
    }
    names
}

/// Those of `servers` created more than `older_than` before `now`. A server without a
/// readable creation time is never stale: we cannot prove it is old.
pub fn stale(servers: &[Server], older_than: Duration, now: SystemTime) -> Vec<&Server> {
    servers
        .iter()
        .filter(|s| {
            created_at(&s.metadata)
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > older_than)
        })
        .collect()
}

/// Something a job left behind, as the reaper names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leftover {
    Server { id: String, name: String },
    KeyPair { name: String },
    FloatingIp { id: String, address: String },
}

impl std::fmt::Display for Leftover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Leftover::Server { id, name } => write!(f, "server {id} ({name})"),
            Leftover::KeyPair { name } => write!(f, "key pair {name}"),
            Leftover::FloatingIp { id, address } => write!(f, "floating IP {address} ({id})"),
        }
    }
}

/// A per-job key pair or floating IP of `runner`'s that outlived its server.
#[derive(Debug, Clone)]
pub struct Orphan {
    pub what: Leftover,
    pub owner: Ownership,
    pub age: Duration,
}

fn older(created: Option<SystemTime>, older_than: Duration, now: SystemTime) -> Option<Duration> {
    let age = now.duration_since(created?).ok()?;
    (age >= older_than).then_some(age)
}

/// Of the key pair `names` (Nova's listing), `runner`'s per-job key pairs that no server in
/// `in_use` names, made at least `older_than` ago. A key pair is imported before its server is created, so a runner killed in between
/// leaves one with no server to be reaped with.
pub async fn orphaned_keypairs(
    cloud: &dyn Cloud,
    runner: &str,
    names: impl IntoIterator<Item = String>,
    in_use: &HashSet<String>,
    older_than: Duration,
    now: SystemTime,
) -> Result<Vec<Orphan>, CloudError> {
    let mut out = Vec::new();
    for name in names {
        let Some(owner) = job_of_keypair_name(runner, &name) else {
            continue;
        };
        if in_use.contains(&name) {
            continue;
        }
        // Nova lists key pairs without their age; only candidates are shown one by one.
        if let Some(age) = older(cloud.keypair_created(&name).await?, older_than, now) {
            out.push(Orphan {
                what: Leftover::KeyPair { name },
                owner,
                age,
            });
        }
    }
    Ok(out)
}

/// `runner`'s floating IPs (by the marker in their description) that are associated with
/// nothing, made at least `older_than` ago: their server was deleted without its cleanup.
pub async fn orphaned_floating_ips(
    cloud: &dyn Cloud,
    runner: &str,
    older_than: Duration,
    now: SystemTime,
) -> Result<Vec<Orphan>, CloudError> {
    Ok(cloud
        .list_floating_ips()
        .await?
        .into_iter()
        .filter(|f| f.port_id.is_none())
        .filter_map(|f| {
            let owner = Ownership::from_marker(&f.description, runner)?;
            let age = older(f.created, older_than, now)?;
            Some(Orphan {
                what: Leftover::FloatingIp {
                    id: f.id,
                    address: f.address,
                },
                owner,
                age,
            })
        })
        .collect())
}
