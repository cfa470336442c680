//! `executor gc`: the leak reaper. gitlab-runner never runs cleanup when it is SIGKILLed or
//! crashes, or when cleanup outlives `cleanup_exec_timeout`; the servers such jobs leave behind
//! (with their per-job key pairs and floating IPs) are found here by their ownership metadata
//! and deleted.
//!
//! "The job is over" cannot be asked of GitLab from here, so it is inferred from the cloud: a
//! server is over when it is older than `--older-than` (which must exceed the longest job
//! timeout plus provisioning), or when Nova shows it ERROR or SHUTOFF (it cannot run a job any
//! more). Servers without our metadata, or with another owner's, are never touched.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use executor_cloud::backend::Cloud;
use executor_cloud::cleanup::{CleanupPolicy, CleanupReport, CleanupTarget, cleanup, kept_volumes};
use executor_cloud::floating_ip::floating_ips_on_server;
use executor_cloud::hold::held_until;
use executor_cloud::keypair::job_keypair_name;
use executor_cloud::ownership::{
    META_JOB, META_PROJECT, Ownership, POOL_PROJECT, created_at, created_by_runner,
};
use executor_cloud::reaper::{
    Leftover, keypairs_of_other_owners, orphaned_floating_ips, orphaned_keypairs,
};
use executor_cloud::server::Server;
use executor_cloud::settings::CloudSettings;
use executor_cloud::{CloudError, OpenStack};
use executor_driver::interpreter::render_block_outside_job;
use executor_driver::recipe::loader::{self, LoadedRecipe};
use executor_driver::steps::cloud_glue::settings_of;
use executor_driver::template::context::Environment;

use super::gc_held::{self, forget_held_key};

const AFTER_HELP: &str = "\
Which servers are reaped:
  Only servers whose metadata carries `executor:runner` equal to the recipe's `cloud.owner`
  (default `executor`) and an `executor:job`. Of those, a server whose job is over:
    - it was created (metadata `executor:created`) longer ago than --older-than, or
    - Nova shows it ERROR or SHUTOFF: it cannot run a job any more.
  Each is deleted with its floating IPs (those carrying its job's marker), its per-job
  key pair and the volumes Nova keeps past termination, exactly as the job's own cleanup
  would have done. The summary counts everything deleted, by kind; --dry-run counts what
  would go, asking the cloud without deleting. Set --older-than above your
  longest job timeout plus provisioning time, so that running jobs are never touched.
  Also reaped, once older than --older-than: per-job key pairs (named
  executor-<owner>-<project id>-<job id>; an owner with characters other than letters, digits,
  - and _ is escaped, as executor_<escaped owner>-..., so that owners never share names)
  that no server of ours still uses, and floating IPs with our marker that are associated
  with nothing. A runner killed between importing the key
  and creating the server leaves such a key pair; a server deleted by hand leaves such an IP.
  Idle VMs of a warm pool (metadata project `pool`) are spared while their daemon runs on
  this host (it holds a lock in its state directory); once it is gone they are reaped like
  any other server.

Servers kept by the debug hold (EXECUTOR_HOLD_FAILED, metadata `executor:hold-until`) are
  left alone, whatever their age or status, until their hold is over; then they are reaped
  with their key pair, floating IPs and the job's key kept on this host. `--held` lists them,
  `--release <server>` deletes one now.

Run it regularly, e.g. from a systemd timer on the runner host:
  # /etc/systemd/system/executor-gc.service
  [Service]
  Type=oneshot
  EnvironmentFile=/etc/executor/env     # OS_CLOUD=..., EXECUTOR_OWNER=...
  ExecStart=/usr/local/bin/executor gc --recipe /etc/executor/openstack.yaml --older-than 3h
  # /etc/systemd/system/executor-gc.timer
  [Timer]
  OnCalendar=hourly
  [Install]
  WantedBy=timers.target
or from a scheduled CI pipeline:
  reap:
    rules: [{ if: '$CI_PIPELINE_SOURCE == \"schedule\"' }]
    script: executor gc --recipe recipes/openstack.yaml --older-than 3h

Exit status: 0 when everything found was deleted (or listed), 1 when a deletion failed,
2 when the recipe or the cloud could not be used.

Examples:
  executor gc --recipe recipes/openstack.yaml --dry-run
  executor gc --recipe recipes/openstack.yaml --older-than 6h
  executor gc --recipe recipes/openstack.yaml --held
  executor gc --recipe recipes/openstack.yaml --release 5c0e0b0e-...";

/// `executor gc`
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct GcArgs {
    /// Anything of ours made longer ago than this is over, e.g. `3h`, `90m`, `0s` (all).
    #[arg(long, default_value = "3h", value_parser = executor_foundation::durations::parse)]
    pub older_than: Duration,
    /// List what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// List the servers kept by the debug hold (EXECUTOR_HOLD_FAILED); delete nothing.
    #[arg(long, conflicts_with = "release")]
    pub held: bool,
    /// Delete this held server (id or exact name) now, with its key pair, floating IPs and
    /// held key. Refuses a server that is not held.
    #[arg(long, value_name = "SERVER")]
    pub release: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("gc needs at least one --recipe")]
    NoRecipe,
    #[error("the recipe has {0} problem(s); run `executor lint` on it")]
    Recipe(usize),
    #[error("{0}")]
    CloudBlock(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Cloud(#[from] CloudError),
}

/// Why a server counts as over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverReason {
    /// Nova shows it ERROR or SHUTOFF.
    Status(String),
    /// Created longer ago than `--older-than`.
    Age(Duration),
    /// A key pair or floating IP whose server is gone, this old.
    Orphaned(Duration),
    /// A server kept by the debug hold, whose hold is over.
    HoldOver,
}

fn whole_seconds(d: &Duration) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_secs(d.as_secs()))
}

impl std::fmt::Display for OverReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OverReason::Status(s) => write!(f, "status {s}"),
            OverReason::Age(age) => write!(f, "age {}", whole_seconds(age)),
            OverReason::Orphaned(age) => {
                write!(f, "its server is gone, age {}", whole_seconds(age))
            }
            OverReason::HoldOver => write!(f, "its debug hold is over"),
        }
    }
}

/// Whether `server`'s job is over (see the module doc). A server without a readable creation
/// time is only over by its status: its age cannot be proven.
pub fn is_over(server: &Server, older_than: Duration, now: SystemTime) -> Option<OverReason> {
    let status = server.status.to_ascii_uppercase();
    if status == "ERROR" || status == "SHUTOFF" {
        return Some(OverReason::Status(status));
    }
    let age = now.duration_since(created_at(&server.metadata)?).ok()?;
    (age >= older_than).then_some(OverReason::Age(age))
}

/// One thing gc acted on (or would have).
#[derive(Debug, Clone)]
pub struct Reaped {
    pub what: Leftover,
    pub job: String,
    pub reason: OverReason,
    /// `None` on success (or in a dry run).
    pub error: Option<String>,
    /// What went with a server: its key pair, floating IPs and kept volumes.
    pub with: CleanupReport,
}

impl Reaped {
    /// What went with a server, in words (empty when nothing did).
    fn with_words(&self) -> String {
        let w = &self.with;
        let mut parts = Vec::new();
        if w.keypair_deleted {
            parts.push("its key pair".to_string());
        }
        if !w.floating_ips_released.is_empty() {
            parts.push(format!("{} floating IP(s)", w.floating_ips_released.len()));
        }
        if !w.volumes_deleted.is_empty() {
            parts.push(format!("{} volume(s)", w.volumes_deleted.len()));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(", with {}", parts.join(" and "))
        }
    }
}

/// How many things of each kind gc deleted (or would): servers, and everything that went
/// with them or was found orphaned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub servers: usize,
    pub keypairs: usize,
    pub floating_ips: usize,
    pub volumes: usize,
}

impl Tally {
    pub fn of(reaped: &[Reaped]) -> Tally {
        let mut t = Tally::default();
        for r in reaped.iter().filter(|r| r.error.is_none()) {
            match r.what {
                Leftover::Server { .. } => t.servers += 1,
                Leftover::KeyPair { .. } => t.keypairs += 1,
                Leftover::FloatingIp { .. } => t.floating_ips += 1,
            }
            t.keypairs += usize::from(r.with.keypair_deleted);
            t.floating_ips += r.with.floating_ips_released.len();
            t.volumes += r.with.volumes_deleted.len();
        }
        t
    }
}

/// Finds `owner`'s servers whose job is over and deletes them with their floating IPs and
/// per-job key pairs, then the key pairs and floating IPs older than `older_than` whose
/// server is already gone (unless `dry_run`). Everything else is left alone.
pub async fn reap(
    cloud: &dyn Cloud,
    owner: &str,
    older_than: Duration,
    dry_run: bool,
    spare_pool: bool,
    policy: &CleanupPolicy,
) -> Result<Vec<Reaped>, CloudError> {
    let now = SystemTime::now();
    let mut out = Vec::new();
    let servers = cloud.list_servers(None).await?;
    let mut in_use = keypairs_of_other_owners(&servers, owner);
    // Listed once: the summary counts a key pair only when there was one to delete, and what
    // is left of the listing afterwards is searched for orphans.
    let mut keypairs: std::collections::BTreeSet<String> =
        cloud.list_keypair_names().await?.into_iter().collect();
    let ours = servers
        .into_iter()
        .filter(|s| created_by_runner(&s.metadata, owner));
    for server in ours {
        let text = |k: &str| server.metadata.get(k).cloned().unwrap_or_default();
        let ownership = Ownership {
            runner: owner.to_string(),
            project: text(META_PROJECT),
            job: text(META_JOB),
        };
        // The name is derived from the owner, so a site's static key pair never matches it.
        let keypair_name = job_keypair_name(&ownership);
        // A live pool daemon looks after its own idle VMs (it replaces them by age itself).
        let spared = spare_pool && ownership.project == POOL_PROJECT;
        // A held server is kept, whatever its age or status (the guest may have powered itself
        // off), until its hold is over; then nothing else need be over.
        let reason = match held_until(&server.metadata) {
            Some(until) if until > now => None,
            Some(_) => Some(OverReason::HoldOver),
            None => is_over(&server, older_than, now),
        };
        let Some(reason) = reason.filter(|_| !spared) else {
            in_use.insert(keypair_name);
            continue;
        };
        let mut reaped = Reaped {
            what: Leftover::Server {
                id: server.id.clone(),
                name: server.name.clone(),
            },
            job: ownership.job.clone(),
            reason,
            error: None,
            with: CleanupReport::default(),
        };
        let keypair = keypairs
            .contains(&keypair_name)
            .then(|| keypair_name.clone());
        if !dry_run {
            let target = CleanupTarget {
                keypair_name: keypair,
                owner: ownership,
                server_id: Some(server.id.clone()),
                server_name: None,
                floating_ip_ids: Vec::new(),
                volume_ids: Vec::new(),
            };
            match cleanup(cloud, &target, policy).await {
                Ok(report) => {
                    if reaped.reason == OverReason::HoldOver {
                        forget_held_key(&server.id);
                    }
                    if report.keypair_deleted {
                        keypairs.remove(&keypair_name);
                    }
                    reaped.with = report;
                }
                Err(e) => {
                    reaped.error = Some(e.to_string());
                    in_use.insert(keypair_name);
                }
            }
        } else {
            reaped.with = would_go_with(cloud, &server, &ownership, keypair.is_some()).await;
            in_use.insert(keypair_name);
        }
        out.push(reaped);
    }
    let mut orphans = orphaned_keypairs(cloud, owner, keypairs, &in_use, older_than, now).await?;
    orphans.extend(orphaned_floating_ips(cloud, owner, older_than, now).await?);
    for orphan in orphans {
        let mut reaped = Reaped {
            what: orphan.what,
            job: orphan.owner.job,
            reason: OverReason::Orphaned(orphan.age),
            error: None,
            with: CleanupReport::default(),
        };
        if !dry_run {
            let deleted = match &reaped.what {
                Leftover::KeyPair { name } => cloud.delete_keypair(name).await,
                Leftover::FloatingIp { id, .. } => cloud.delete_floating_ip(id).await,
                Leftover::Server { .. } => Ok(()),
            };
            reaped.error = deleted.err().map(|e| e.to_string());
        }
        out.push(reaped);
    }
    Ok(out)
}

/// What a cleanup of `server` would delete with it, asked without deleting anything: its key
/// pair, the floating IPs with its job's marker on its ports, and its volumes kept past
/// termination. A dry run's counts then match the real run's.
async fn would_go_with(
    cloud: &dyn Cloud,
    server: &Server,
    owner: &Ownership,
    keypair: bool,
) -> CleanupReport {
    let marker = owner.marker();
    let floating_ips = floating_ips_on_server(cloud, &server.id)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f.description == marker)
        .map(|f| f.id)
        .collect();
    CleanupReport {
        keypair_deleted: keypair,
        floating_ips_released: floating_ips,
        volumes_deleted: kept_volumes(std::slice::from_ref(server))
            .into_iter()
            .collect(),
        ..CleanupReport::default()
    }
}

/// Runs the command; returns the process exit code.
pub fn run(recipes: &[PathBuf], args: GcArgs) -> i32 {
    match run_inner(recipes, &args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

fn run_inner(recipes: &[PathBuf], args: &GcArgs) -> Result<i32, GcError> {
    if recipes.is_empty() {
        return Err(GcError::NoRecipe);
    }
    let loaded = loader::load(recipes).map_err(|problems| {
        eprint!(
            "{}",
            executor_driver::recipe::diagnostics::render(
                &problems,
                executor_driver::recipe::diagnostics::use_color()
            )
        );
        GcError::Recipe(problems.list.len())
    })?;
    let settings = cloud_settings(&loaded, &Environment::from_process())?;
    let owner = settings.owner.clone().unwrap_or_else(|| "executor".into());
    // Only a daemon on this host can be asked; run gc where the daemon runs.
    let spare_pool = loaded
        .recipe
        .pool
        .as_ref()
        .is_some_and(|p| executor_pool::daemon_alive(&p.state_root()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(GcError::Runtime)?;
    if args.held || args.release.is_some() {
        return runtime.block_on(async {
            let cloud = OpenStack::connect(&settings).await?;
            match &args.release {
                Some(server) => {
                    gc_held::release(
                        &cloud,
                        &owner,
                        server,
                        args.dry_run,
                        &CleanupPolicy::default(),
                    )
                    .await
                }
                None => gc_held::list(&cloud, &owner).await,
            }
        });
    }
    let reaped = runtime.block_on(async {
        let cloud = OpenStack::connect(&settings).await?;
        reap(
            &cloud,
            &owner,
            args.older_than,
            args.dry_run,
            spare_pool,
            &CleanupPolicy::default(),
        )
        .await
    })?;
    let mut out = std::io::stdout().lock();
    let mut failed = 0;
    for r in &reaped {
        let verb = match (&r.error, args.dry_run) {
            (_, true) => "would delete",
            (None, false) => "deleted",
            (Some(_), false) => "FAILED to delete",
        };
        let _ = writeln!(
            out,
            "{verb} {} of job {}: {}{}",
            r.what,
            r.job,
            r.reason,
            r.with_words()
        );
        if let Some(e) = &r.error {
            failed += 1;
            eprintln!("error: {}: {e}", r.what);
        }
    }
    let t = Tally::of(&reaped);
    let _ = writeln!(
        out,
        "gc (owner {owner}, older than {}): {} server(s), {} key pair(s), {} floating IP(s), {} volume(s) {}{}",
        humantime::format_duration(args.older_than),
        t.servers,
        t.keypairs,
        t.floating_ips,
        t.volumes,
        if args.dry_run {
            "would be deleted"
        } else {
            "deleted"
        },
        if failed > 0 {
            format!(", {failed} failed")
        } else {
            String::new()
        }
    );
    Ok(if failed > 0 { 1 } else { 0 })
}

/// The recipe's `cloud` block rendered without a job: gc runs outside any job, so a var that
/// needs job variables is simply left out; only the `cloud` block must render.
pub fn cloud_settings(
    loaded: &LoadedRecipe,
    environment: &Environment,
) -> Result<CloudSettings, GcError> {
    let rendered =
        render_block_outside_job(loaded, environment, "cloud").map_err(|(inner, e)| {
            GcError::CloudBlock(format!(
                "the recipe's `cloud{inner}` block needs what only a job has: {}",
                e.message
            ))
        })?;
    match rendered {
        None => Ok(CloudSettings::default()),
        Some(rendered) => settings_of(rendered).map_err(|e| GcError::CloudBlock(e.message)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use executor_cloud::ownership::META_CREATED;

    fn server(status: &str, created: Option<SystemTime>) -> Server {
        let mut metadata = BTreeMap::new();
        if let Some(t) = created {
            metadata.insert(
                META_CREATED.to_string(),
                humantime::format_rfc3339_seconds(t).to_string(),
            );
        }
        Server {
            id: "id".into(),
            name: "n".into(),
            status: status.into(),
            fault: None,
            metadata,
            addresses: Vec::new(),
            volumes: Vec::new(),
            key_name: None,
        }
    }

    #[test]
    fn age_and_broken_status_make_a_job_over() {
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        let old = Some(now - 4 * hour);
        let fresh = Some(now - Duration::from_secs(60));
        assert!(matches!(
            is_over(&server("ACTIVE", old), 3 * hour, now),
            Some(OverReason::Age(_))
        ));
        assert_eq!(is_over(&server("ACTIVE", fresh), 3 * hour, now), None);
        assert_eq!(
            is_over(&server("error", fresh), 3 * hour, now),
            Some(OverReason::Status("ERROR".into()))
        );
        assert!(is_over(&server("SHUTOFF", None), 3 * hour, now).is_some());
        assert_eq!(
            is_over(&server("ACTIVE", None), Duration::ZERO, now),
            None,
            "no creation time: age unknown, never over by age"
        );
        assert!(is_over(&server("BUILD", fresh), Duration::ZERO, now).is_some());
    }
}
