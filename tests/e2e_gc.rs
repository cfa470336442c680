//! The leak reaper, `executor gc`, against the simulated cloud: what it reaps, what it must
//! never touch, and the case it exists for, a runner SIGKILLed in the middle of a job.

use crate::e2e_support;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use e2e_support::{Cloud, default_recipe, describe, driver, leaked};
use executor_cloud::ownership::{META_CREATED, Ownership};
use executor_cloud::{Cloud as _, OpenStack, job_keypair_name};
use gitlab_runner_standin::{Job, JobStatus, Runner};
use serde_json::json;

const OWNER: &str = "e2e-gc";

/// Boots a server straight through the API, with the given metadata and key pair.
async fn boot(
    os: &OpenStack,
    name: &str,
    metadata: BTreeMap<String, String>,
    key_name: Option<&str>,
) -> String {
    let flavor = os.resolve_flavor("m1.tiny").await.expect("flavor");
    let image = os.resolve_image("cirros-0.6.2").await.expect("image");
    let net = os.resolve_network("private").await.expect("network");
    let mut server = json!({
        "name": name,
        "flavorRef": flavor.id,
        "imageRef": image.id,
        "networks": [{"uuid": net.named.id}],
        "metadata": metadata,
    });
    if let Some(k) = key_name {
        server["key_name"] = json!(k);
    }
    os.post_server(name, json!({ "server": server }))
        .await
        .expect("create")
}

fn ours(job: &str, age: Duration) -> (Ownership, BTreeMap<String, String>) {
    let owner = Ownership {
        runner: OWNER.into(),
        project: "7".into(),
        job: job.into(),
    };
    let meta = owner.metadata(SystemTime::now() - age);
    (owner, meta)
}

fn gc(cloud: &Cloud, args: &[&str]) -> (i32, String, String) {
    cloud.gc(&cloud.service_env(OWNER), args)
}

async fn wait_status(cloud: &Cloud, id: &str, want: &str) {
    for _ in 0..200 {
        if cloud.sim.server_status(id).as_deref() == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "server {id} never {want}: {:?}",
        cloud.sim.server_status(id)
    );
}

/// A floating IP with `marker` whose server was deleted without its cleanup (by hand).
async fn unattached_floating_ip(cloud: &Cloud, os: &OpenStack, marker: &str) {
    let server = boot(os, "deleted-by-hand", BTreeMap::new(), None).await;
    wait_status(cloud, &server, "ACTIVE").await;
    let public = os.resolve_network("public").await.expect("public");
    let port = os.server_ports(&server).await.expect("ports")[0].id.clone();
    os.post_floating_ip(&public.named.id, &port, marker)
        .await
        .expect("floating IP");
    os.delete_server(&server).await.expect("delete");
    for _ in 0..200 {
        if cloud.sim.server_status(&server).is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("server {server} never went away");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_reaps_only_our_servers_whose_job_is_over() {
    let cloud = Cloud::start().await;
    let os = cloud.connect().await;
    let hour = Duration::from_secs(3600);

    // Made four hours ago: an orphaned per-job key pair and floating IP of ours (reaped), the
    // same of another runner's, a site's static key pair, and the key pair of a job that is
    // still running (all left alone).
    let (orphan_owner, _) = ours("201", Duration::ZERO);
    let orphan_keypair = job_keypair_name(&orphan_owner);
    let other_owner = Ownership {
        runner: "someone-else".into(),
        project: "7".into(),
        job: "105".into(),
    };
    let (running_owner, _) = ours("102", Duration::ZERO);
    let running_keypair = job_keypair_name(&running_owner);
    for name in [
        orphan_keypair.as_str(),
        &job_keypair_name(&other_owner),
        "site-static",
        &running_keypair,
    ] {
        os.import_keypair(name, &e2e_public_key())
            .await
            .expect("key pair");
    }
    unattached_floating_ip(&cloud, &os, &orphan_owner.marker()).await;
    unattached_floating_ip(&cloud, &os, &other_owner.marker()).await;
    cloud.sim.backdate(4 * hour);
    // An orphan too young to be sure of: its job may be between key import and server create.
    let (young_owner, _) = ours("202", Duration::ZERO);
    os.import_keypair(&job_keypair_name(&young_owner), &e2e_public_key())
        .await
        .expect("key pair");

    // Ours and old: reaped with its per-job key pair and its floating IP.
    let (old_owner, meta) = ours("101", 4 * hour);
    let keypair = job_keypair_name(&old_owner);
    os.import_keypair(&keypair, &e2e_public_key())
        .await
        .expect("key pair");
    let old = boot(&os, "executor-7-101", meta, Some(&keypair)).await;
    wait_status(&cloud, &old, "ACTIVE").await;
    let public = os.resolve_network("public").await.expect("public");
    let port = os.server_ports(&old).await.expect("ports")[0].id.clone();
    os.post_floating_ip(&public.named.id, &port, &old_owner.marker())
        .await
        .expect("floating IP");

    // Ours and fresh: a running job, left alone with its (old) key pair.
    let (_, meta) = ours("102", Duration::from_secs(60));
    let fresh = boot(&os, "executor-7-102", meta, Some(&running_keypair)).await;
    // Ours, fresh but ERROR: it cannot run a job, reaped.
    cloud.sim.faults().set_create_error_share(1.0);
    let (_, meta) = ours("103", Duration::from_secs(60));
    let broken = boot(&os, "executor-7-103", meta, None).await;
    wait_status(&cloud, &broken, "ERROR").await;
    cloud.sim.faults().set_create_error_share(0.0);
    // Not ours, though old: no metadata; another runner's; a look-alike name and a forged
    // owner without a job key.
    let foreign = boot(&os, "executor-7-104", BTreeMap::new(), None).await;
    let other = boot(
        &os,
        "executor-7-105",
        other_owner.metadata(SystemTime::now() - 4 * hour),
        None,
    )
    .await;
    let forged = boot(
        &os,
        "executor-7-106",
        BTreeMap::from([
            ("executor:runner".to_string(), OWNER.to_string()),
            (
                META_CREATED.to_string(),
                humantime::format_rfc3339_seconds(SystemTime::now() - 4 * hour).to_string(),
            ),
        ]),
        None,
    )
    .await;
    for id in [&fresh, &foreign, &other, &forged] {
        wait_status(&cloud, id, "ACTIVE").await;
    }
    let before = cloud.sim.counts();
    assert_eq!(
        (before.servers, before.keypairs, before.floating_ips),
        (6, 6, 3)
    );

    let (code, out, err) = gc(&cloud, &["--older-than", "3h", "--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("would delete server {old} ")),
        "{out}"
    );
    assert!(
        out.contains(&format!("would delete server {broken} ")),
        "{out}"
    );
    assert!(out.contains("status ERROR"), "{out}");
    assert!(
        out.contains(&format!(
            "would delete key pair {orphan_keypair} of job 201: its server is gone, age 4h"
        )),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("would delete floating IP ")
                // "age 4h", or "4h 1s" on a slow machine
                && l.contains(" of job 201: its server is gone, age 4h")),
        "{out}"
    );
    assert!(
        out.contains("2 server(s), 2 key pair(s), 2 floating IP(s), 0 volume(s) would be deleted"),
        "{out}"
    );
    let after_dry = cloud.sim.counts();
    assert_eq!(
        (
            after_dry.servers,
            after_dry.keypairs,
            after_dry.floating_ips
        ),
        (6, 6, 3),
        "a dry run deletes nothing"
    );

    let (code, out, err) = gc(&cloud, &["--older-than", "3h"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("deleted server {old} (executor-7-101) of job 101")),
        "{out}"
    );
    assert!(
        out.contains(", with its key pair and 1 floating IP(s)"),
        "{out}"
    );
    // Everything deleted counts, by kind: the reaped servers' key pair and floating IP as
    // well as the orphans.
    assert!(
        out.contains("2 server(s), 2 key pair(s), 2 floating IP(s), 0 volume(s) deleted"),
        "{out}"
    );
    let after = e2e_support::settled_counts(&cloud.sim).await;
    let left: Vec<String> = cloud.sim.server_ids();
    for id in [&fresh, &foreign, &other, &forged] {
        assert!(left.contains(id), "{id} survives: {left:?}");
    }
    assert!(!left.contains(&old) && !left.contains(&broken), "{left:?}");
    // Left: the other runner's, the site's, the running job's and the young one's key pairs,
    // and the other runner's floating IP.
    assert_eq!(
        (after.keypairs, after.floating_ips),
        (4, 1),
        "{}",
        describe(&after)
    );
    // Asked on a new connection: `os` imported these key pairs and takes them to exist.
    let fresh = cloud.connect().await;
    for name in ["site-static", running_keypair.as_str()] {
        assert!(fresh.keypair_exists(name).await.unwrap(), "{name} survives");
    }
    assert!(!fresh.keypair_exists(&orphan_keypair).await.unwrap());

    // Nothing over any more: a second run is a no-op.
    let (code, out, _) = gc(&cloud, &["--older-than", "3h"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("0 server(s), 0 key pair(s), 0 floating IP(s), 0 volume(s) deleted"),
        "{out}"
    );
    assert_eq!(cloud.sim.server_ids().len(), 4);
}

#[test]
fn gc_without_a_recipe_or_cloud_is_an_error_not_a_panic() {
    let out = std::process::Command::new(driver())
        .args(["gc"])
        .env_remove("EXECUTOR_RECIPE")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--recipe"));
    let out = std::process::Command::new(driver())
        .arg("gc")
        .arg("--recipe")
        .arg(default_recipe())
        .env("OS_CLIENT_CONFIG_FILE", "/nonexistent/clouds.yaml")
        .env("OS_CLOUD", "nope")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let help = std::process::Command::new(driver())
        .args(["gc", "--help"])
        .output()
        .expect("runs");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--older-than")
            && help.contains("ERROR or SHUTOFF")
            && help.contains("systemd"),
        "{help}"
    );
}

fn gc_as(cloud: &Cloud, owner: &str, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(driver())
        .arg("gc")
        .arg("--recipe")
        .arg(default_recipe())
        .args(args)
        .envs(cloud.service_env(owner))
        .stdin(Stdio::null())
        .output()
        .expect("runs executor gc");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Issue 14, item 6: owners `ci.a` and `ci_a` once shared key-pair names, so `ci_a`'s gc
/// offered to delete the key pair of `ci.a`'s running job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_never_claims_the_key_pairs_of_an_owner_that_differs_only_in_punctuation() {
    let cloud = Cloud::start().await;
    let os = cloud.connect().await;
    let dotted = Ownership {
        runner: "ci.a".into(),
        project: "7".into(),
        job: "301".into(),
    };
    let live = job_keypair_name(&dotted);
    os.import_keypair(&live, &e2e_public_key())
        .await
        .expect("key pair");
    let server = boot(
        &os,
        "executor-7-301",
        dotted.metadata(SystemTime::now()),
        Some(&live),
    )
    .await;
    wait_status(&cloud, &server, "ACTIVE").await;
    // And an orphan of `ci.a`'s, whose server is gone.
    let orphan_owner = Ownership {
        job: "302".into(),
        ..dotted.clone()
    };
    let orphan = job_keypair_name(&orphan_owner);
    os.import_keypair(&orphan, &e2e_public_key())
        .await
        .expect("key pair");
    // A job of `ci.a`'s still running from before names were exact: its key pair has the old
    // name, which is also the one `ci_a` gives its own job 303.
    let before = Ownership {
        job: "303".into(),
        ..dotted.clone()
    };
    let old_name = executor_cloud::keypair::shipped_keypair_name(&before);
    assert_eq!(old_name, "executor-ci_a-7-303");
    os.import_keypair(&old_name, &e2e_public_key())
        .await
        .expect("key pair");
    let older = boot(
        &os,
        "executor-7-303",
        before.metadata(SystemTime::now()),
        Some(&old_name),
    )
    .await;
    wait_status(&cloud, &older, "ACTIVE").await;
    cloud.sim.backdate(Duration::from_secs(4 * 3600));

    let (code, out, err) = gc_as(&cloud, "ci_a", &["--dry-run", "--older-than", "1h"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        !out.contains(&live) && !out.contains(&orphan) && !out.contains(&old_name),
        "ci_a offers ci.a's key pairs: {out}"
    );
    assert!(
        out.contains("0 server(s), 0 key pair(s), 0 floating IP(s), 0 volume(s) would be deleted"),
        "{out}"
    );
    // `ci.a` itself still finds its own orphan, and nothing of its running job.
    let (code, out, err) = gc_as(&cloud, "ci.a", &["--dry-run", "--older-than", "1h"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("would delete key pair {orphan} of job 302")),
        "{out}"
    );
    assert!(!out.contains(&live), "{out}");
}

fn e2e_public_key() -> String {
    let dir = tempfile::tempdir().expect("tmp");
    executor_ssh::generate_job_key(dir.path(), "key", "e2e-gc")
        .expect("key")
        .public_openssh
}

/// The helper process of the SIGKILL test: a runner running one long job against the cloud
/// the parent test started. It only acts when that test starts it (`E2E_CHILD_ENV` set).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper process of runner_killed_with_sigkill_leaves_the_vm_and_gc_removes_it"]
async fn runner_child_for_the_sigkill_test() {
    let Ok(env) = std::env::var("E2E_CHILD_ENV") else {
        return;
    };
    let service_env: Vec<(String, String)> =
        serde_json::from_str(&env).expect("E2E_CHILD_ENV is JSON");
    let mut cfg = gitlab_runner_standin::RunnerConfig::single_binary(
        driver(),
        gitlab_runner_standin::simulate::driver_args(&[default_recipe()]),
    );
    cfg.service_env = service_env;
    let job = Job::from_script("echo started > \"$HOME/started\"\nsleep 300");
    let r = Runner::new(cfg).run_job(&job).await;
    // Reached only if the parent failed to kill us.
    assert_eq!(r.status, JobStatus::Success);
}

/// Runs a job with the default recipe in a runner process of its own, and SIGKILLs that
/// runner once the job's script has started: the runner gets no chance to run cleanup.
/// Returns the job's server id.
async fn runner_killed_mid_job(cloud: &Cloud, extra_env: Vec<(String, String)>) -> String {
    let mut env = cloud.service_env(OWNER);
    env.extend(extra_env);
    let env = serde_json::to_string(&env).expect("json");
    let mut child = tokio::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "e2e_gc::runner_child_for_the_sigkill_test",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("E2E_CHILD_ENV", env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("runner process starts");
    let server_dir = cloud
        .wait_for_server_file("started", Duration::from_secs(120))
        .await;
    child.kill().await.expect("SIGKILL the runner");
    server_dir
        .file_name()
        .expect("dir name")
        .to_string_lossy()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_killed_with_sigkill_leaves_the_vm_and_gc_removes_it() {
    let cloud = Cloud::start().await;
    let server_id = runner_killed_mid_job(&cloud, vec![]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts = cloud.sim.counts();
    assert_eq!(
        (counts.servers, counts.keypairs),
        (1, 1),
        "no cleanup ran: {}",
        describe(&counts)
    );
    assert_eq!(
        cloud
            .sim
            .request_log()
            .count_path_containing("DELETE", "/servers/"),
        0
    );
    assert_eq!(
        cloud.sim.server_status(&server_id).as_deref(),
        Some("ACTIVE")
    );

    // The job is younger than the default 3h: a default run leaves it alone...
    let (code, out, err) = gc(&cloud, &["--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("0 server(s), 0 key pair(s), 0 floating IP(s), 0 volume(s) would be deleted"),
        "{out}"
    );
    // ...and a site that knows the runner is gone reaps everything of its own.
    let (code, out, err) = gc(&cloud, &["--older-than", "0s"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("deleted server {server_id} ")),
        "{out}"
    );
    let counts = e2e_support::settled_counts(&cloud.sim).await;
    assert_eq!(leaked(&counts), 0, "{}", describe(&counts));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_whose_runner_died_powers_off_at_the_job_timeout_and_gc_reaps_it_at_once() {
    // A guest minute of 300 ms: the job's 60-minute timeout (gitlab-runner's default of one
    // hour, with POWEROFF_MARGIN=0) passes 18 s after the server booted.
    let cloud = Cloud::start_with(|o| o.guest_minute = Duration::from_millis(300)).await;
    let server_id =
        runner_killed_mid_job(&cloud, vec![("POWEROFF_MARGIN".into(), "0".into())]).await;
    assert_eq!(
        cloud.sim.server_status(&server_id).as_deref(),
        Some("ACTIVE")
    );

    // Nobody deletes it; the guest powers itself off once the job's timeout has passed.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while cloud.sim.server_status(&server_id).as_deref() != Some("SHUTOFF") {
        assert!(
            std::time::Instant::now() < deadline,
            "never powered off: {:?}",
            cloud.sim.server_status(&server_id)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A SHUTOFF server cannot run a job: gc reaps it without waiting for --older-than.
    let (code, out, err) = gc(&cloud, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("deleted server {server_id} ")) && out.contains("status SHUTOFF"),
        "{out}"
    );
    let counts = e2e_support::settled_counts(&cloud.sim).await;
    assert_eq!(leaked(&counts), 0, "{}", describe(&counts));
}
