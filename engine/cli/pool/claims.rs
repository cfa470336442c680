//! The socket side of a claim: each VM goes to exactly one job.
//!
//! A VM is taken out of the idle set under the lock before anything slow happens, so two
//! claims can never both get it. It is then re-checked (one SSH round trip), made the job's in
//! the server's metadata, and its state and key are sent. A VM that fails any of that is
//! deleted and the next one is tried.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value as Json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use executor_cloud::ownership::{META_JOB, META_PROJECT, META_RUNNER, Ownership};
use executor_driver::steps::ssh_connection::STATE_KEY_FILE;
use executor_pool::{Claim, Claimed, Reply, Request};

use super::daemon::Daemon;
use super::metrics::StageLabels;
use super::vm::{Phase, Vm, same_key};

pub async fn serve(daemon: Arc<Daemon>, listener: UnixListener) {
    loop {
        let conn = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((c, _)) => c,
                Err(_) => continue,
            },
            _ = daemon.stop.cancelled() => return,
        };
        let daemon = daemon.clone();
        tokio::spawn(async move { answer(daemon, conn).await });
    }
}

async fn answer(daemon: Arc<Daemon>, conn: UnixStream) {
    let (read, mut write) = conn.into_split();
    let mut line = String::new();
    // A request is a few hundred bytes; a client that sends more is not ours.
    let mut reader = BufReader::new(read.take(64 * 1024));
    if reader.read_line(&mut line).await.is_err() {
        return;
    }
    let request: Request = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(e) => {
            let _ = send(&mut write, &Reply::Miss(format!("bad request: {e}"))).await;
            return;
        }
    };
    match request {
        Request::Report(r) => {
            daemon
                .metrics
                .stage_seconds
                .get_or_create(&StageLabels {
                    stage: r.stage,
                    outcome: r.outcome,
                })
                .observe(r.seconds);
            let _ = send(&mut write, &Reply::Noted).await;
        }
        Request::Fallback(f) => {
            daemon.metrics.claim("fallback");
            daemon
                .log
                .info(&format!("job {} boots its own VM ({})", f.job, f.why));
            let _ = send(&mut write, &Reply::Noted).await;
        }
        Request::Status => {
            let (idle, booting) = {
                let vms = daemon.vms.lock().unwrap_or_else(|p| p.into_inner());
                let count = |phase| vms.iter().filter(|v| v.phase == phase).count() as u32;
                (count(Phase::Idle), count(Phase::Booting))
            };
            let wanted = daemon.settings.warm.iter().map(|w| w.idle_now()).sum();
            let _ = send(
                &mut write,
                &Reply::Status {
                    idle,
                    booting,
                    wanted,
                },
            )
            .await;
        }
        Request::Claim(claim) => {
            let Some((vm, claimed)) = hand_out(&daemon, &claim).await else {
                daemon.metrics.claim("miss");
                let _ = send(&mut write, &Reply::Miss("no ready VM for this key".into())).await;
                return;
            };
            let confirmed = send(&mut write, &Reply::Claimed(Box::new(claimed)))
                .await
                .is_ok()
                && confirmation(&mut reader).await;
            if !confirmed {
                // The job gave up waiting (or could not record the VM) and provisions its own:
                // this one is nobody's. Its metadata is the job's by now.
                daemon.metrics.claim("abandoned");
                daemon.log.warn(&format!(
                    "job {} did not take VM {}; deleting the VM",
                    claim.owner.job, vm.id
                ));
                daemon.delete_as(&vm, job_owner(&claim.owner)).await;
                return;
            }
            daemon.metrics.claim("hit");
            if let Some(id) = vm.server_id() {
                daemon
                    .claimed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id.to_string());
            }
            // The job has the key now; the daemon keeps nothing of a VM it gave away.
            let _ = std::fs::remove_dir_all(&vm.dir);
        }
    }
}

/// Takes the oldest idle VM of the claim's key that is still alive and makes it the job's.
async fn hand_out(daemon: &Daemon, claim: &Claim) -> Option<(Vm, Claimed)> {
    loop {
        let vm = take_idle(daemon, &claim.key)?;
        // The re-check and the change of owner go out together: a claim costs the longer of an
        // SSH round trip and one Nova request, not their sum.
        let make_the_jobs = async {
            match vm.server_id() {
                Some(id) => {
                    let items = BTreeMap::from([
                        (META_RUNNER.to_string(), claim.owner.runner.clone()),
                        (META_PROJECT.to_string(), claim.owner.project.clone()),
                        (META_JOB.to_string(), claim.owner.job.clone()),
                    ]);
                    daemon.cloud.set_server_metadata(id, &items).await?;
                    // Volumes kept past termination prove their job by their own metadata once
                    // the server is gone (see cleanup); only pools that keep them pay for this.
                    for volume in vm
                        .state
                        .get(executor_driver::steps::cloud_glue::STATE_VOLUMES)
                        .and_then(serde_json::Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(serde_json::Value::as_str)
                    {
                        daemon.cloud.set_volume_metadata(volume, &items).await?;
                    }
                    Ok(())
                }
                None => Err(executor_cloud::CloudError::invalid(
                    "claim",
                    format!("VM {}", vm.id),
                    "its state has no server id",
                )),
            }
        };
        let (alive, made_the_jobs) = tokio::join!(daemon.alive(&vm), make_the_jobs);
        if let Err(why) = alive {
            daemon.metrics.claim("dead");
            daemon.log.warn(&format!(
                "VM {} failed its re-check at claim ({why}); deleting it and trying the next",
                vm.id
            ));
            // Its metadata may be the job's already.
            daemon.delete_as(&vm, job_owner(&claim.owner)).await;
            daemon.delete(&vm).await;
            continue;
        }
        let key = daemon.private_key(&vm);
        match (made_the_jobs, key) {
            (Ok(()), Ok(private_key)) => {
                let mut state: Map<String, Json> = vm.state.clone();
                state.remove(STATE_KEY_FILE);
                let idle_seconds = vm
                    .ready_at
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                daemon.log.info(&format!(
                    "VM {} ({}) claimed by job {} of project {}",
                    vm.id,
                    vm.key_label(),
                    claim.owner.job,
                    claim.owner.project
                ));
                return Some((
                    vm,
                    Claimed {
                        state,
                        private_key,
                        idle_seconds,
                    },
                ));
            }
            (Err(e), _) => {
                daemon.metrics.failure("claim_metadata");
                daemon
                    .log
                    .warn(&format!("cannot hand VM {} to the job: {e}", vm.id));
                // Whether the update reached Nova is unknown: delete under either owner.
                daemon.delete_as(&vm, job_owner(&claim.owner)).await;
                daemon.delete(&vm).await;
            }
            (_, Err(e)) => {
                daemon.metrics.failure("claim_key");
                daemon
                    .log
                    .warn(&format!("cannot hand VM {} to the job: {e}", vm.id));
                daemon.delete_as(&vm, job_owner(&claim.owner)).await;
            }
        }
    }
}

/// Removes the oldest idle VM of `key` from the set, under the lock: from here on it is this
/// claim's alone.
fn take_idle(daemon: &Daemon, key: &Map<String, Json>) -> Option<Vm> {
    let mut vms = daemon.vms.lock().unwrap_or_else(|p| p.into_inner());
    let index = vms
        .iter()
        .enumerate()
        .filter(|(_, v)| v.phase == Phase::Idle && same_key(&v.key, key))
        .min_by_key(|(_, v)| v.ready_at)
        .map(|(i, _)| i)?;
    Some(vms.remove(index))
}

/// Waits (bounded) for the client's `{"ack":true}`, sent once it recorded the VM.
async fn confirmation<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> bool {
    let mut line = String::new();
    match tokio::time::timeout(Duration::from_secs(30), reader.read_line(&mut line)).await {
        Ok(Ok(n)) if n > 0 => serde_json::from_str::<serde_json::Value>(&line)
            .is_ok_and(|v| v["ack"] == serde_json::Value::Bool(true)),
        _ => false,
    }
}

fn job_owner(owner: &executor_pool::Owner) -> Ownership {
    Ownership {
        runner: owner.runner.clone(),
        project: owner.project.clone(),
        job: owner.job.clone(),
    }
}

async fn send(write: &mut tokio::net::unix::OwnedWriteHalf, reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).unwrap_or_default();
    line.push(b'\n');
    write.write_all(&line).await?;
    write.flush().await
}
