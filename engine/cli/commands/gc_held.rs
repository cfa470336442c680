//! `executor gc --held` and `--release`: the operator's side of the debug hold. Held servers
//! are found by their metadata (`executor:hold-until`), so the list is the same from any host;
//! the job's key, though, is kept on the runner host that held the server, so release there.

use std::io::Write;
use std::time::{Duration, SystemTime};

use executor_cloud::backend::Cloud;
use executor_cloud::cleanup::{CleanupPolicy, CleanupTarget, cleanup};
use executor_cloud::hold::{META_HOLD_REASON, held_until};
use executor_cloud::keypair::job_keypair_name;
use executor_cloud::ownership::{META_JOB, META_PROJECT, Ownership};
use executor_cloud::reaper::list_runner_servers;
use executor_cloud::server::Server;
use executor_driver::steps::debug_hold::{held_key_dir, held_key_path};

use super::gc::GcError;

/// Removes the job's key kept for a held server, if this host keeps it.
pub fn forget_held_key(server_id: &str) {
    if let Some(path) = held_key_dir().and_then(|d| held_key_path(&d, server_id)) {
        let _ = std::fs::remove_file(path);
    }
}

fn ownership(owner: &str, server: &Server) -> Ownership {
    let text = |k: &str| server.metadata.get(k).cloned().unwrap_or_default();
    Ownership {
        runner: owner.to_string(),
        project: text(META_PROJECT),
        job: text(META_JOB),
    }
}

/// Prints `owner`'s held servers: until when, why, where, and with which key. Exit code 0.
pub async fn list(cloud: &dyn Cloud, owner: &str) -> Result<i32, GcError> {
    let now = SystemTime::now();
    let mut out = std::io::stdout().lock();
    let mut count = 0;
    for server in list_runner_servers(cloud, owner).await? {
        let Some(until) = held_until(&server.metadata) else {
            continue;
        };
        count += 1;
        let left = match until.duration_since(now) {
            Ok(left) => format!(
                "{} left",
                humantime::format_duration(Duration::from_secs(left.as_secs()))
            ),
            Err(_) => "over, deleted by the next gc".to_string(),
        };
        let address = server
            .addresses
            .iter()
            .map(|a| a.ip.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let key = held_key_dir()
            .and_then(|d| held_key_path(&d, &server.id))
            .filter(|p| p.is_file())
            .map_or_else(
                || "not kept on this host".to_string(),
                |p| p.display().to_string(),
            );
        let _ = writeln!(
            out,
            "held server {} ({}) of job {}: {}; until {} ({left}); address {}; key {key}",
            server.id,
            server.name,
            ownership(owner, &server).job,
            server
                .metadata
                .get(META_HOLD_REASON)
                .map_or("no reason given", String::as_str),
            humantime::format_rfc3339_seconds(until),
            if address.is_empty() { "none" } else { &address },
        );
    }
    let _ = writeln!(out, "gc (owner {owner}): {count} held server(s)");
    Ok(0)
}

/// Deletes the held server `which` (id or exact name) of `owner`, as its job's cleanup would
/// have, and the key kept for it. Exit code 0 when released, 1 when there is no such held
/// server or the deletion failed.
pub async fn release(
    cloud: &dyn Cloud,
    owner: &str,
    which: &str,
    dry_run: bool,
    policy: &CleanupPolicy,
) -> Result<i32, GcError> {
    let matches: Vec<Server> = list_runner_servers(cloud, owner)
        .await?
        .into_iter()
        .filter(|s| s.id == which || s.name == which)
        .collect();
    let server = match matches.as_slice() {
        [one] => one,
        [] => {
            eprintln!("error: owner {owner} has no server with id or name {which}");
            return Ok(1);
        }
        _ => {
            eprintln!(
                "error: {} servers are named {which}; give the id",
                matches.len()
            );
            return Ok(1);
        }
    };
    // Release is for held servers only: a running job's server is never deleted by name.
    if held_until(&server.metadata).is_none() {
        eprintln!(
            "error: server {} ({}) is not held; --release deletes held servers only",
            server.id, server.name
        );
        return Ok(1);
    }
    let owned = ownership(owner, server);
    let what = format!(
        "held server {} ({}) of job {}",
        server.id, server.name, owned.job
    );
    if dry_run {
        println!("would release {what}");
        return Ok(0);
    }
    let target = CleanupTarget {
        keypair_name: Some(job_keypair_name(&owned)),
        owner: owned,
        server_id: Some(server.id.clone()),
        server_name: None,
        floating_ip_ids: Vec::new(),
        volume_ids: Vec::new(),
    };
    match cleanup(cloud, &target, policy).await {
        Ok(_) => {
            forget_held_key(&server.id);
            println!("released {what}");
            Ok(0)
        }
        Err(e) => {
            eprintln!("error: FAILED to release {what}: {e}");
            Ok(1)
        }
    }
}
