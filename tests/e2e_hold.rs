//! The debug hold end to end on the simulated cloud (issue 14): with `EXECUTOR_HOLD_FAILED` on
//! the runner host, a failed job's server outlives its cleanup, marked in its metadata, with
//! the job's key kept on the runner host; `executor gc --held` lists it, `--release` deletes it
//! and plain `gc` reaps it once its hold is over. Off by default, and never for a job that
//! succeeded.

use crate::e2e_support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use e2e_support::{Cloud, default_recipe, describe, explain, leaked, run_bounded};
use executor_cloud::hold::{META_HOLD_REASON, META_HOLD_UNTIL};
use executor_cloud::{Cloud as _, OpenStack, Ownership};
use gitlab_runner_standin::{Job, JobStatus, JobVariable, RunOptions, Runner};
use serde_json::json;

const OWNER: &str = "e2e-hold";

fn held_dir(cloud: &Cloud) -> PathBuf {
    cloud.dir.path().join("held")
}

/// The runner host's environment, with the debug hold set to `hold` (`None`: not set at all).
fn host_env(cloud: &Cloud, hold: Option<&str>) -> Vec<(String, String)> {
    let mut env = cloud.service_env(OWNER);
    env.push((
        "EXECUTOR_HOLD_DIR".into(),
        held_dir(cloud).display().to_string(),
    ));
    if let Some(h) = hold {
        env.push(("EXECUTOR_HOLD_FAILED".into(), h.into()));
    }
    env
}

fn runner(cloud: &Cloud, hold: Option<&str>) -> Runner {
    let mut cfg = cloud.runner_config(&[default_recipe()], OWNER);
    cfg.service_env = host_env(cloud, hold);
    Runner::new(cfg)
}

fn gc(cloud: &Cloud, args: &[&str]) -> (i32, String, String) {
    cloud.gc(&host_env(cloud, None), args)
}

/// The one server left in the cloud.
async fn only_server(os: &OpenStack) -> String {
    let servers = os.list_servers(None).await.expect("servers");
    assert_eq!(servers.len(), 1, "{servers:?}");
    servers[0].id.clone()
}

/// Runs a failing job with the hold on; returns its server's id, which is held.
async fn held_failed_job(cloud: &Cloud) -> String {
    let job = Job::from_script("echo about to fail\nexit 3");
    let r = run_bounded(&runner(cloud, Some("1h")), &job, RunOptions::default()).await;
    assert_eq!(r.status, JobStatus::ScriptFailure, "{}", explain(&r));
    let os = cloud.connect().await;
    let id = only_server(&os).await;
    let meta = cloud
        .sim
        .server_metadata(&id)
        .expect("server is still there");
    let until = humantime::parse_rfc3339(&meta[META_HOLD_UNTIL]).expect("an RFC 3339 time");
    let left = until
        .duration_since(SystemTime::now())
        .expect("in the future");
    assert!(left > Duration::from_secs(3500), "{left:?}");
    assert_eq!(meta[META_HOLD_REASON], "build_script failed", "{meta:?}");
    // The job's key, kept where only the runner's user can read it, and the way in, logged.
    let key = held_dir(cloud).join(format!("{id}.key"));
    let mode = std::fs::metadata(&key)
        .expect("key kept")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let dir_mode = std::fs::metadata(held_dir(cloud))
        .expect("dir")
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    let private = std::fs::read_to_string(&key).expect("key readable");
    assert!(private.contains("PRIVATE KEY"), "not a key");
    assert!(
        r.job_log.contains(&format!("ssh -i {} -p ", key.display()))
            && r.job_log.contains(&format!("executor gc --release {id}")),
        "{}",
        explain(&r)
    );
    let body: String = private
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(!r.job_log.contains(&body[..40]), "the key reached the log");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_with_the_hold_on_is_kept_listed_and_released() {
    let cloud = Cloud::start().await;
    let id = held_failed_job(&cloud).await;

    let (code, out, err) = gc(&cloud, &["--held"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("held server {id} "))
            && out.contains("build_script failed")
            && out.contains(&format!("{id}.key"))
            && out.contains("1 held server(s)"),
        "{out}"
    );
    // Held means held: not even `--older-than 0s`, which reaps every other server, takes it.
    let (code, out, err) = gc(&cloud, &["--older-than", "0s"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 server(s)"), "{out}");
    assert!(cloud.sim.server_metadata(&id).is_some());

    let (code, out, err) = gc(&cloud, &["--release", &id]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("released held server {id} ")),
        "{out}"
    );
    assert!(!held_dir(&cloud).join(format!("{id}.key")).exists());
    let counts = cloud.settled_counts().await;
    assert_eq!(leaked(&counts), 0, "{}", describe(&counts));
    let (code, out, _) = gc(&cloud, &["--held"]);
    assert_eq!(code, 0);
    assert!(out.contains("0 held server(s)"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_hold_is_reaped_by_plain_gc_and_release_refuses_a_server_not_held() {
    let cloud = Cloud::start().await;
    let id = held_failed_job(&cloud).await;
    let os = cloud.connect().await;
    // --release deletes held servers only: never a running job's, nor a name it does not know.
    let running = boot_ours(&os, "executor-7-2002").await;
    let (code, _, err) = gc(&cloud, &["--release", &running]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is not held"), "{err}");
    assert!(cloud.sim.server_metadata(&running).is_some());
    let (code, _, err) = gc(&cloud, &["--release", "no-such-server"]);
    assert_eq!(code, 1, "{err}");

    // The hold passes (as it would an hour later).
    let over = BTreeMap::from([(
        META_HOLD_UNTIL.to_string(),
        humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(1)).to_string(),
    )]);
    os.set_server_metadata(&id, &over).await.expect("metadata");

    // The default --older-than (3h) would spare a one-minute-old server; an expired hold does not.
    let (code, out, err) = gc(&cloud, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("deleted server {id} ")) && out.contains("its debug hold is over"),
        "{out}"
    );
    assert!(!held_dir(&cloud).join(format!("{id}.key")).exists());
    // The running job's server, fresh and not held, is left alone.
    assert!(!out.contains(&running), "{out}");
    assert!(cloud.sim.server_metadata(&running).is_some());
}

/// A server of this owner's, as a job that is still running has it.
async fn boot_ours(os: &OpenStack, name: &str) -> String {
    let owner = Ownership {
        runner: OWNER.into(),
        project: "7".into(),
        job: "2002".into(),
    };
    let flavor = os.resolve_flavor("m1.tiny").await.expect("flavor");
    let image = os.resolve_image("cirros-0.6.2").await.expect("image");
    let net = os.resolve_network("private").await.expect("network");
    let body = json!({ "server": {
        "name": name,
        "flavorRef": flavor.id,
        "imageRef": image.id,
        "networks": [{"uuid": net.named.id}],
        "metadata": owner.metadata(SystemTime::now()),
    }});
    os.post_server(name, body).await.expect("create")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_held_by_default_nor_after_a_successful_job() {
    let cloud = Cloud::start().await;
    // The default: no hold; the failed job's server is deleted at cleanup as always.
    let r = run_bounded(
        &runner(&cloud, None),
        &Job::from_script("exit 3"),
        RunOptions::default(),
    )
    .await;
    assert_eq!(r.status, JobStatus::ScriptFailure, "{}", explain(&r));
    assert!(!r.job_log.contains("debug hold"), "{}", explain(&r));
    let counts = cloud.settled_counts().await;
    assert_eq!(leaked(&counts), 0, "{}", describe(&counts));

    // With the hold on, a job that succeeds (its after_script failing does not fail a job) is
    // not held.
    let mut job = Job::from_script("echo fine");
    job.after_script = vec!["exit 5".into()];
    let r = run_bounded(&runner(&cloud, Some("1h")), &job, RunOptions::default()).await;
    assert_eq!(r.status, JobStatus::Success, "{}", explain(&r));
    assert!(!r.job_log.contains("debug hold"), "{}", explain(&r));
    let counts = cloud.settled_counts().await;
    assert_eq!(leaked(&counts), 0, "{}", describe(&counts));
    assert!(
        std::fs::read_dir(held_dir(&cloud)).map_or(true, |mut d| d.next().is_none()),
        "a key was kept"
    );
}

/// The hold is the operator's: a pipeline that sets the same names as job variables (they reach
/// the driver as `CUSTOM_ENV_EXECUTOR_HOLD_FAILED`, ...) keeps nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_variable_cannot_turn_the_hold_on() {
    let cloud = Cloud::start().await;
    let elsewhere = cloud.dir.path().join("job-chose-this");
    let job = Job::from_script("exit 3")
        .with_variable(JobVariable::new("EXECUTOR_HOLD_FAILED", "1h"))
        .with_variable(JobVariable::new(
            "EXECUTOR_HOLD_DIR",
            elsewhere.display().to_string(),
        ));
    let r = run_bounded(&runner(&cloud, None), &job, RunOptions::default()).await;
    assert_eq!(r.status, JobStatus::ScriptFailure, "{}", explain(&r));
    assert!(!r.job_log.contains("debug hold"), "{}", explain(&r));
    let counts = cloud.settled_counts().await;
    assert_eq!(leaked(&counts), 0, "{}", describe(&counts));
    assert!(!elsewhere.exists() && !held_dir(&cloud).exists());
}
