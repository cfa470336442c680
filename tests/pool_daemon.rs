//! `executor pool` as a site runs it, against the in-process simulated cloud: adoption after a
//! SIGKILL, claims that go to exactly one job, health checks, gc next to a live and a dead
//! daemon, and a real Prometheus server scraping the metrics.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use executor_pool::{Claim, Owner};
use serde_json::{Map, Value as Json, json};

use crate::e2e_support::{Cloud, driver, repo};
use crate::pool::claimed_names;
use crate::prometheus_support::{Prometheus, first_value, free_port};
use crate::stage_run::StageRun;

const OWNER: &str = "pool-test";

/// A site override of recipes/pooled.yaml: `idle` warm VMs of the simulator's default flavor
/// and image, socket and state in the test's directory.
fn override_recipe(cloud: &Cloud, idle: u32, extra: &str) -> PathBuf {
    let dir = cloud.dir.path();
    let path = dir.join("site.yaml");
    let text = format!(
        "version: 1\nextends: {base}\npool:\n  warm:\n    - key: {{flavor: m1.small, image: ubuntu-24.04}}\n      idle: {idle}\n  socket: {sock}\n  state_dir: {state}\n  create_interval: 100ms\n  failure_backoff: 1s\n{extra}",
        base = repo().join("recipes/pooled.yaml").display(),
        sock = socket(dir).display(),
        state = dir.join("pool-state").display(),
    );
    std::fs::write(&path, text).expect("write override");
    path
}

fn socket(dir: &Path) -> PathBuf {
    dir.join("run").join("pool.sock")
}

struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(cloud: &Cloud, recipe: &Path) -> Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(cloud.dir.path().join("daemon.log"))
            .expect("daemon log");
        let child = Command::new(driver())
            .arg("--recipe")
            .arg(recipe)
            .arg("pool")
            .envs(cloud.service_env(OWNER))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("executor pool starts");
        Daemon { child }
    }

    fn signal(&mut self, sig: i32) {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    async fn wait_exit(&mut self) -> std::process::ExitStatus {
        for _ in 0..600 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the daemon did not exit within a minute");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn daemon_log(cloud: &Cloud) -> String {
    std::fs::read_to_string(cloud.dir.path().join("daemon.log")).unwrap_or_default()
}

async fn wait_idle(cloud: &Cloud, want: u32) {
    for _ in 0..600 {
        if let Ok(executor_pool::PoolStatus { idle, .. }) =
            executor_pool::status(&socket(cloud.dir.path()), Duration::from_secs(1)).await
            && idle >= want
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never {want} idle VMs; daemon log:\n{}", daemon_log(cloud));
}

/// A claim as `pool_claim` makes it, confirmed at once.
async fn claim_vm(
    socket: &Path,
    claim: Claim,
    wait: Duration,
) -> Result<executor_pool::Claimed, executor_pool::ClaimError> {
    executor_pool::claim(socket, claim, wait, Ok).await
}

fn key() -> Map<String, Json> {
    let Json::Object(m) = json!({"flavor": "m1.small", "image": "ubuntu-24.04"}) else {
        unreachable!()
    };
    m
}

fn claim_for(job: u32) -> Claim {
    Claim {
        key: key(),
        owner: Owner {
            runner: OWNER.into(),
            project: "7".into(),
            job: job.to_string(),
        },
    }
}

fn server_ids(cloud: &Cloud) -> HashSet<String> {
    cloud.sim.server_ids().into_iter().collect()
}

fn gc(cloud: &Cloud, recipe: &Path) -> String {
    let out = Command::new(driver())
        .arg("--recipe")
        .arg(recipe)
        .args(["gc", "--older-than", "0s"])
        .envs(cloud.service_env(OWNER))
        .output()
        .expect("gc runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_daemon_is_adopted_on_restart_and_claimed_vms_stay_with_their_jobs() {
    let cloud = Cloud::start().await;
    let recipe = override_recipe(&cloud, 2, "");
    let mut daemon = Daemon::start(&cloud, &recipe);
    wait_idle(&cloud, 2).await;
    let claimed = claim_vm(
        &socket(cloud.dir.path()),
        claim_for(41),
        Duration::from_secs(20),
    )
    .await
    .expect("a hit");
    let claimed_id = claimed.state["server_id"].as_str().unwrap().to_string();
    let meta = cloud
        .sim
        .server_metadata(&claimed_id)
        .expect("claimed server exists");
    assert_eq!(meta["executor:job"], "41", "{meta:?}");
    assert_eq!(meta["executor:project"], "7", "{meta:?}");
    assert!(claimed.private_key.contains("PRIVATE KEY"));
    wait_idle(&cloud, 2).await;
    let before = server_ids(&cloud);
    assert_eq!(before.len(), 3, "two idle and the claimed one");

    daemon.signal(libc::SIGKILL);
    daemon.wait_exit().await;
    let mut daemon = Daemon::start(&cloud, &recipe);
    wait_idle(&cloud, 2).await;
    assert_eq!(
        server_ids(&cloud),
        before,
        "the restart adopted the idle VMs and made none"
    );
    assert!(
        daemon_log(&cloud).contains("adopted idle VM"),
        "{}",
        daemon_log(&cloud)
    );

    // SIGTERM with the default on_shutdown: delete the idle VMs, never the job's.
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit().await.success());
    let left = server_ids(&cloud);
    assert_eq!(
        left,
        HashSet::from([claimed_id.clone()]),
        "{}",
        daemon_log(&cloud)
    );
    assert_eq!(
        cloud.sim.server_metadata(&claimed_id).unwrap()["executor:job"],
        "41"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_get_distinct_vms_and_a_miss_once_the_pool_is_empty() {
    let cloud = Cloud::start().await;
    // No refill during the burst: creates are paced an hour apart after the first ones.
    let recipe = override_recipe(&cloud, 4, "  max_instances: 4\n");
    let _daemon = Daemon::start(&cloud, &recipe);
    wait_idle(&cloud, 4).await;
    let sock = socket(cloud.dir.path());
    let claims = (0..10).map(|job| {
        let sock = sock.clone();
        tokio::spawn(
            async move { claim_vm(&sock, claim_for(100 + job), Duration::from_secs(30)).await },
        )
    });
    let mut hits = vec![];
    let mut misses = 0;
    for c in claims {
        match c.await.unwrap() {
            Ok(vm) => hits.push(vm.state["server_id"].as_str().unwrap().to_string()),
            Err(executor_pool::ClaimError::Miss(_)) => misses += 1,
            Err(e) => panic!("{e}"),
        }
    }
    let distinct: HashSet<_> = hits.iter().collect();
    assert_eq!(hits.len(), 4, "{hits:?}");
    assert_eq!(distinct.len(), 4, "a VM went to two jobs: {hits:?}");
    assert_eq!(misses, 6);
}

/// Another user of the runner host can neither connect to the claim socket (mode 0600, in a
/// directory of the runner's alone) nor plant one: a claim refuses a socket whose directory
/// others may write, before it sends anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_claim_socket_is_the_runner_users_alone() {
    use std::os::unix::fs::PermissionsExt;
    let cloud = Cloud::start().await;
    let recipe = override_recipe(&cloud, 1, "");
    let _daemon = Daemon::start(&cloud, &recipe);
    wait_idle(&cloud, 1).await;
    let sock = socket(cloud.dir.path());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&sock), 0o600, "socket mode");
    assert_eq!(
        mode(sock.parent().unwrap()) & 0o077,
        0,
        "socket directory mode"
    );
    std::fs::set_permissions(
        sock.parent().unwrap(),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    let refused = claim_vm(&sock, claim_for(1), Duration::from_secs(5)).await;
    assert!(
        matches!(refused, Err(executor_pool::ClaimError::Untrusted { .. })),
        "{refused:?}"
    );
    std::fs::set_permissions(
        sock.parent().unwrap(),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let vm = claim_vm(&sock, claim_for(2), Duration::from_secs(30))
        .await
        .expect("a claim once the directory is the runner's again");
    assert!(vm.state["server_id"].is_string());
}

/// A claimed VM's boot volume that Nova keeps past termination changes owner with the server,
/// so that it still proves its job once the server is gone (see cleanup).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_hands_the_vms_kept_volume_to_the_job() {
    use executor_cloud::Cloud as _;
    let cloud = Cloud::start().await;
    let recipe = override_recipe(
        &cloud,
        1,
        "patch:\n  server:\n    boot_volume:\n      size_gb: 10\n      delete_on_termination: false\n",
    );
    let _daemon = Daemon::start(&cloud, &recipe);
    wait_idle(&cloud, 1).await;
    let vm = claim_vm(
        &socket(cloud.dir.path()),
        claim_for(5),
        Duration::from_secs(30),
    )
    .await
    .expect("a claim");
    let volume = vm.state["volume_ids"][0]
        .as_str()
        .expect("the VM's state names its kept volume");
    let metadata = cloud
        .connect()
        .await
        .volume_metadata(volume)
        .await
        .unwrap()
        .expect("the volume exists");
    let job = executor_cloud::Ownership {
        runner: OWNER.into(),
        project: "7".into(),
        job: "5".into(),
    };
    assert!(job.owns(&metadata), "{metadata:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_vm_that_dies_is_replaced_and_never_handed_out() {
    let cloud = Cloud::start().await;
    let recipe = override_recipe(&cloud, 1, "  health_interval: 1s\n");
    let _daemon = Daemon::start(&cloud, &recipe);
    wait_idle(&cloud, 1).await;
    let dead: Vec<String> = cloud.sim.server_ids();
    assert_eq!(dead.len(), 1);
    cloud.sim.crash(&dead[0]);
    // Either the health check or the claim's re-check finds it dead; a job never gets it.
    for _ in 0..300 {
        let ids = server_ids(&cloud);
        if !ids.contains(&dead[0]) && ids.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_idle(&cloud, 1).await;
    let vm = claim_vm(
        &socket(cloud.dir.path()),
        claim_for(7),
        Duration::from_secs(20),
    )
    .await
    .expect("the replacement");
    assert_ne!(vm.state["server_id"].as_str().unwrap(), dead[0]);
    assert!(
        daemon_log(&cloud).contains("health check"),
        "{}",
        daemon_log(&cloud)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_spares_a_live_daemons_idle_vms_and_reaps_them_once_it_is_gone() {
    let cloud = Cloud::start().await;
    let recipe = override_recipe(&cloud, 2, "  on_shutdown: keep\n");
    let mut daemon = Daemon::start(&cloud, &recipe);
    wait_idle(&cloud, 2).await;
    let out = gc(&cloud, &recipe);
    assert!(out.contains("0 server(s)"), "{out}");
    assert_eq!(server_ids(&cloud).len(), 2);
    daemon.signal(libc::SIGKILL);
    daemon.wait_exit().await;
    let out = gc(&cloud, &recipe);
    assert!(out.contains("2 server(s)"), "{out}");
    for _ in 0..100 {
        if cloud.sim.counts().servers == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cloud.sim.counts().servers, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_pool_metrics() {
    let cloud = Cloud::start().await;
    let metrics_port = free_port();
    let Some(prometheus) = Prometheus::start(&cloud.dir.path().join("prometheus"), metrics_port)
    else {
        return;
    };
    let recipe = override_recipe(&cloud, 1, &format!("  metrics: 127.0.0.1:{metrics_port}\n"));
    let _daemon = Daemon::start(&cloud, &recipe);
    wait_idle(&cloud, 1).await;
    let _ = claim_vm(
        &socket(cloud.dir.path()),
        claim_for(5),
        Duration::from_secs(20),
    )
    .await
    .expect("a hit");

    let hits = prometheus
        .query("executor_pool_claims_total{result=\"hit\"} > 0")
        .await;
    assert_eq!(first_value(&hits), "1", "Prometheus saw one hit: {hits}");
    let text = scrape(metrics_port).await;
    for series in [
        "executor_pool_vms{",
        "executor_pool_time_to_ready_seconds_bucket",
        "executor_pool_api_requests_total",
    ] {
        assert!(text.contains(series), "{series} missing from:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_period_that_covers_now_sets_the_idle_count() {
    let cloud = Cloud::start().await;
    let path = cloud.dir.path().join("periods.yaml");
    let base = override_recipe(&cloud, 0, "");
    std::fs::write(
        &path,
        format!(
            "version: 1\nextends: {}\npool:\n  warm:\n    - key: {{flavor: m1.small, image: ubuntu-24.04}}\n      idle: 0\n      periods:\n        - {{from: \"00:00\", to: \"24:00\", timezone: Europe/Berlin, idle: 2}}\n",
            base.display()
        ),
    )
    .unwrap();
    let _daemon = Daemon::start(&cloud, &path);
    wait_idle(&cloud, 2).await;
    assert_eq!(cloud.sim.counts().servers, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provision_that_always_fails_backs_off_and_counts_its_reason() {
    let cloud = Cloud::start().await;
    let metrics_port = free_port();
    let base = override_recipe(&cloud, 1, &format!("  metrics: 127.0.0.1:{metrics_port}\n"));
    // A readiness check that never passes: every VM is made, found wanting and deleted.
    let path = cloud.dir.path().join("broken.yaml");
    std::fs::write(
        &path,
        format!(
            "version: 1\nextends: {}\ninsert:\n  - after: host_key_check\n    steps:\n      - id: never_ready\n        kind: fail\n        message: not today\n",
            base.display()
        ),
    )
    .unwrap();
    let _daemon = Daemon::start(&cloud, &path);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let log = daemon_log(&cloud);
    let attempts = log.matches("could not be made ready").count();
    // 100 ms apart without backoff would be ~60; doubling to 1 s allows about 8.
    assert!((2..=10).contains(&attempts), "{attempts} attempts:\n{log}");
    let text = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            "executor_pool_failures_total{reason=\"other\",step=\"never_ready\",fault=\"\"}"
        ),
        "{text}"
    );
}

async fn scrape(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The series an operator alerts on: a boot that ends in ERROR, with Nova's fault class; a job
/// that booted its own VM (`fallback`, next to the daemon's `miss`); requests by service and
/// status, the provision runs' included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_count_fault_classes_fallbacks_and_requests_by_service_and_status() {
    let cloud = Cloud::start().await;
    let port = free_port();
    // One instance at most: once the warm VM is claimed, the next job finds nothing.
    let recipe = override_recipe(
        &cloud,
        1,
        &format!("  metrics: 127.0.0.1:{port}\n  max_instances: 1\n"),
    );
    cloud.sim.faults().set_create_error_share(1.0);
    let _daemon = Daemon::start(&cloud, &recipe);
    for _ in 0..300 {
        if daemon_log(&cloud).contains("could not be made ready") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cloud.sim.faults().set_create_error_share(0.0);
    wait_idle(&cloud, 1).await;
    claim_vm(
        &socket(cloud.dir.path()),
        claim_for(600),
        Duration::from_secs(20),
    )
    .await
    .expect("the warm VM");

    let dir = cloud.dir.path().join("job-601");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("response.json"),
        r#"{"id": 601, "job_info": {"project_id": 7}}"#,
    )
    .unwrap();
    for stage in ["prepare", "cleanup"] {
        let mut run = StageRun::new(&dir, [stage]).recipe(&recipe);
        for (k, v) in cloud.service_env(OWNER) {
            run = run.env(k, v);
        }
        run.job_var("CI_JOB_ID", "601")
            .job_var("CI_PROJECT_ID", "7")
            .timeout(Duration::from_secs(120))
            .assert()
            .success();
    }

    let mut text = String::new();
    for _ in 0..50 {
        text = scrape(port).await;
        if text.contains("result=\"fallback\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for series in [
        "executor_pool_failures_total{reason=\"boot_error\",step=\"server\",fault=\"no_valid_host\"}",
        "executor_pool_claims_total{result=\"hit\"} 1",
        "executor_pool_claims_total{result=\"miss\"} 1",
        "executor_pool_claims_total{result=\"fallback\"} 1",
        "executor_pool_api_requests_total{service=\"identity\",status=\"201\"}",
        "executor_pool_api_requests_total{service=\"compute\",status=\"202\"}",
        "executor_pool_api_requests_total{service=\"compute\",status=\"200\"}",
    ] {
        assert!(text.contains(series), "{series} missing from:\n{text}");
    }
}

/// The pool's chaos run: jobs keep arriving while the daemon is SIGKILLed and restarted, idle
/// VMs die and the API answers 503s. No job may fail because of the pool, no VM may serve two
/// jobs, and after the daemon stops and `executor gc` runs, the cloud holds nothing.
/// `EXECUTOR_POOL_CHAOS_JOBS` (default 40) sets the number of jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_chaos_no_job_fails_because_of_the_pool_and_nothing_leaks() {
    use gitlab_runner_standin::{Job, JobStatus, RunOptions, Runner};

    let jobs: usize = std::env::var("EXECUTOR_POOL_CHAOS_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let cloud = Cloud::start_with(|o| o.instance_quota = 1000).await;
    let recipe = override_recipe(&cloud, 4, "  max_instances: 40\n  health_interval: 1s\n");
    let mut daemon = Daemon::start(&cloud, &recipe);
    wait_idle(&cloud, 4).await;
    let runner = Runner::new(cloud.runner_config(std::slice::from_ref(&recipe), OWNER));
    let work = {
        let runner = runner.clone();
        tokio::spawn(async move {
            let all = (0..jobs).map(|_| Job::from_script("uname -a")).collect();
            runner.run_jobs(all, 8, RunOptions::default()).await
        })
    };
    // The faults, while the jobs run.
    tokio::time::sleep(Duration::from_secs(2)).await;
    daemon.signal(libc::SIGKILL);
    daemon.wait_exit().await;
    cloud
        .sim
        .faults()
        .http_errors(503, 3, executor_simulator::Scope::any());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut daemon = Daemon::start(&cloud, &recipe);
    tokio::time::sleep(Duration::from_secs(3)).await;
    for id in cloud.sim.server_ids() {
        let pooled = cloud
            .sim
            .server_metadata(&id)
            .is_some_and(|m| m.get("executor:project").map(String::as_str) == Some("pool"));
        if pooled {
            cloud.sim.crash(&id);
            break;
        }
    }
    let results = work.await.expect("jobs ran");

    assert_eq!(results.len(), jobs);
    for r in &results {
        assert_eq!(
            r.status,
            JobStatus::Success,
            "{}",
            crate::e2e_support::explain(r)
        );
    }
    let claimed: Vec<String> = results
        .iter()
        .flat_map(|r| claimed_names(&r.job_log))
        .collect();
    let distinct: HashSet<&String> = claimed.iter().collect();
    assert_eq!(
        distinct.len(),
        claimed.len(),
        "a VM served two jobs: {claimed:?}"
    );
    assert!(!claimed.is_empty(), "no job was served from the pool");

    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit().await.success(), "{}", daemon_log(&cloud));
    let out = gc(&cloud, &recipe);
    let counts = crate::e2e_support::settled_counts(&cloud.sim).await;
    assert_eq!(
        crate::e2e_support::leaked(&counts),
        0,
        "{}\ngc: {out}\ndaemon log:\n{}",
        crate::e2e_support::describe(&counts),
        daemon_log(&cloud)
    );
    eprintln!(
        "pool chaos: {jobs} jobs, {} served warm, gc: {}",
        claimed.len(),
        out.lines().last().unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_whose_job_never_confirms_the_claim_is_deleted() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let cloud = Cloud::start().await;
    let recipe = override_recipe(&cloud, 1, "  max_instances: 1\n");
    let _daemon = Daemon::start(&cloud, &recipe);
    wait_idle(&cloud, 1).await;
    let handed = {
        // A job that reads the reply and dies before it records the VM.
        let conn = tokio::net::UnixStream::connect(socket(cloud.dir.path()))
            .await
            .unwrap();
        let (read, mut write) = conn.into_split();
        let mut line = serde_json::to_vec(&executor_pool::Request::Claim(claim_for(9))).unwrap();
        line.push(b'\n');
        write.write_all(&line).await.unwrap();
        let mut reply = String::new();
        BufReader::new(read).read_line(&mut reply).await.unwrap();
        let reply: Json = serde_json::from_str(&reply).unwrap();
        reply["claimed"]["state"]["server_id"]
            .as_str()
            .expect("a VM was handed out")
            .to_string()
    };
    for _ in 0..300 {
        if cloud.sim.server_status(&handed).is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        cloud.sim.server_status(&handed),
        None,
        "the unconfirmed VM is gone:\n{}",
        daemon_log(&cloud)
    );
    assert!(daemon_log(&cloud).contains("did not take VM"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_stopped_while_vms_boot_deletes_them_before_it_exits() {
    let cloud = Cloud::start_with(|o| o.build_delay = Duration::from_secs(3)).await;
    let recipe = override_recipe(&cloud, 3, "");
    let mut daemon = Daemon::start(&cloud, &recipe);
    // Stop while at least one VM is in BUILD.
    for _ in 0..300 {
        if cloud.sim.counts().servers >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cloud.sim.counts().servers >= 1, "{}", daemon_log(&cloud));
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit().await.success(), "{}", daemon_log(&cloud));
    let counts = crate::e2e_support::settled_counts(&cloud.sim).await;
    assert_eq!(
        crate::e2e_support::leaked(&counts),
        0,
        "{}\n{}",
        crate::e2e_support::describe(&counts),
        daemon_log(&cloud)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_logs_in_once_for_all_the_vms_it_makes() {
    let cloud = Cloud::start().await;
    let recipe = override_recipe(&cloud, 3, "");
    let _daemon = Daemon::start(&cloud, &recipe);
    wait_idle(&cloud, 3).await;
    let log = cloud.sim.request_log();
    assert_eq!(
        log.count("POST", "/identity/v3/auth/tokens"),
        1,
        "{:?}",
        log.counts()
    );
}
