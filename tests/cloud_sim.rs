//! The OpenStack back end against the simulated cloud (engine/sim): whole cycles leave nothing
//! behind, the name-prefix trap, ERROR boots, API faults, the duplicate-image rule, cleanup
//! after a prepare that died, and the real binary running the OpenStack steps.

use std::path::{Path, PathBuf};
use std::time::Duration;

use executor_cloud::*;
use executor_simulator::{Scope, Service, SimCloud, SimOptions, SshMode};

use crate::cloud_support;
use crate::stage_run::StageRun;
use cloud_support::{boot, spec, target, wait_for};

fn opts() -> SimOptions {
    SimOptions {
        ssh_mode: SshMode::Disabled,
        build_delay: Duration::from_millis(200),
        ..SimOptions::default()
    }
}

fn settings() -> CloudSettings {
    CloudSettings {
        retry_delay: Duration::from_millis(20),
        max_retry_delay: Duration::from_secs(2),
        ..CloudSettings::default()
    }
}

async fn connect(sim: &SimCloud) -> OpenStack {
    let env = sim.os_env();
    OpenStack::connect_with_env(&settings(), &move |k| {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    })
    .await
    .expect("connect to the simulator")
}

fn owner(job: &str) -> Ownership {
    Ownership {
        runner: "sim-runner".into(),
        project: "7".into(),
        job: job.into(),
    }
}

fn wait() -> WaitPolicy {
    WaitPolicy {
        timeout: Duration::from_secs(60),
        expected: Duration::from_millis(200),
        min_interval: Duration::from_millis(50),
        max_interval: Duration::from_millis(500),
    }
}

fn quick() -> CleanupPolicy {
    CleanupPolicy {
        timeout: Duration::from_secs(30),
        interval: Duration::from_millis(50),
        ..CleanupPolicy::default()
    }
}

async fn no_op(_: &str) {}

#[tokio::test]
async fn prepare_then_cleanup_leaves_zero_resources() {
    let sim = SimCloud::start(opts()).await.unwrap();
    let os = connect(&sim).await;
    let me = owner("1");
    let key = job_keypair_name(&me);
    import_job_keypair(
        &os,
        &key,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm5LyvG4+rnhq6FQfDUiGr6PbZ2zc0e4mOYOo0y2f4e t",
        true,
    )
    .await
    .unwrap();
    let mut s = spec("ci-1");
    s.key_name = Some(key.clone());
    s.security_groups = vec!["default".into()];
    s.user_data = Some("#cloud-config\n".into());
    s.tags = vec!["ci".into()];
    s.description = Some("job 1".into());
    s.config_drive = Some(true);
    s.boot_volume = Some(BootVolume {
        size_gb: 10,
        volume_type: None,
        delete_on_termination: true,
    });
    let server = boot(&os, &s, &me, &wait()).await.1.unwrap();
    let addr = choose_address(
        &server,
        &AddressPolicy {
            network: Some("private".into()),
            ..AddressPolicy::default()
        },
    )
    .unwrap();
    assert!(addr.ip.to_string().starts_with("127.77."), "{addr:?}");
    let fip = attach_floating_ip(&os, &server.id, "public", None, &me)
        .await
        .unwrap();
    assert!(fip.address.starts_with("127.78."), "{fip:?}");
    let console = os.console_output(&server.id, None).await.unwrap();
    let _ = parse_host_keys(&console);
    let before = sim.counts();
    assert_eq!(
        (before.servers, before.floating_ips, before.keypairs),
        (1, 1, 1)
    );
    assert!(before.ports >= 1 && before.volumes == 1, "{before:?}");

    let mut t = target(&me, "ci-1", Some(server.id.clone()));
    t.keypair_name = Some(key);
    cleanup(&os, &t, &quick()).await.unwrap();
    let after = sim.counts();
    assert_eq!(
        (
            after.servers,
            after.ports,
            after.floating_ips,
            after.keypairs,
            after.volumes
        ),
        (0, 0, 0, 0, 0),
        "{after:?}"
    );
    // Idempotent.
    cleanup(&os, &t, &quick()).await.unwrap();
    let _ = no_op;
    sim.shutdown().await;
}

#[tokio::test]
async fn cleanup_of_ci_1_spares_ci_10_ci_1_x_and_unowned_servers() {
    let sim = SimCloud::start(opts()).await.unwrap();
    let os = connect(&sim).await;
    let me = owner("1");
    let mut ids = vec![];
    for (name, who) in [
        ("ci-1", owner("1")),
        ("ci-10", owner("10")),
        ("ci-1-x", owner("1")),
        ("ci-1", owner("other")),
    ] {
        ids.push(
            create_server(&os, &spec(name), &who, &CreateOptions::default())
                .await
                .unwrap()
                .server_id,
        );
    }
    let report = cleanup(&os, &target(&me, "ci-1", None), &quick())
        .await
        .unwrap();
    assert_eq!(report.servers_deleted, vec![ids[0].clone()]);
    let left = sim.server_ids();
    for id in &ids[1..] {
        assert!(left.contains(id), "{id} was deleted");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn an_error_boot_shows_the_fault_and_a_new_boot_recovers() {
    let sim = SimCloud::start(opts()).await.unwrap();
    let os = connect(&sim).await;
    let me = owner("1");
    sim.faults().set_create_error_share(1.0);
    let (id, waited) = boot(&os, &spec("ci-1"), &me, &wait()).await;
    let err = waited.unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::BootError);
    assert!(
        err.message.contains(executor_simulator::NO_VALID_HOST),
        "{err}"
    );
    cleanup(&os, &target(&me, "ci-1", Some(id)), &quick())
        .await
        .unwrap();
    sim.faults().set_create_error_share(0.0);
    boot(&os, &spec("ci-1"), &me, &wait()).await.1.unwrap();
    assert_eq!(sim.counts().servers, 1, "no ERROR server left");
    sim.shutdown().await;
}

#[tokio::test]
async fn api_faults_are_survived_and_401_reauthenticates_once() {
    let sim = SimCloud::start(opts()).await.unwrap();
    let os = connect(&sim).await;
    let me = owner("1");
    let created = create_server(&os, &spec("ci-1"), &me, &CreateOptions::default())
        .await
        .unwrap();
    let id = created.server_id.clone();
    let scope = || {
        Scope::service(Service::Compute)
            .method("GET")
            .path("/servers/")
    };
    sim.faults().http_errors(500, 1, scope());
    sim.faults().http_errors(503, 1, scope());
    sim.faults().rate_limit(1, Duration::from_secs(1), scope());
    sim.faults()
        .slow(Duration::from_millis(300), Some(2), scope());
    wait_for(&os, &id, &wait()).await.unwrap();
    assert_eq!(os.api().tokens_issued(), 1);
    sim.faults().expire_tokens();
    assert!(os.get_server(&id).await.unwrap().is_some());
    assert_eq!(os.api().tokens_issued(), 2, "exactly one re-authentication");
    // A create answered 500 is looked for before it is sent again.
    sim.faults().http_errors(
        500,
        1,
        Scope::service(Service::Compute)
            .method("POST")
            .path("/servers"),
    );
    let again = create_server(
        &os,
        &spec("ci-2"),
        &me,
        &CreateOptions {
            attempts: 3,
            lookup_delay: Duration::from_millis(10),
        },
    )
    .await
    .unwrap();
    assert_eq!(again.requests, 2);
    assert_eq!(sim.counts().servers, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn quota_errors_name_the_quota() {
    let sim = SimCloud::start(opts()).await.unwrap();
    let os = connect(&sim).await;
    sim.faults().set_instance_quota(0);
    let err = create_server(&os, &spec("ci-1"), &owner("1"), &CreateOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::Quota, "{err}");
    assert!(err.to_string().contains("instances"), "{err}");
    sim.shutdown().await;
}

#[tokio::test]
async fn duplicate_image_names_resolve_to_the_newest_active() {
    let sim = SimCloud::start(opts()).await.unwrap();
    let os = connect(&sim).await;
    let chosen = os.resolve_image("ubuntu-24.04").await.unwrap();
    // The seed has three: two active (older and newer) and a newest one still queued.
    let api = os.api();
    let all = api
        .send(
            transport::Call::new(
                "list",
                "images",
                reqwest::Method::GET,
                transport::Service::Image,
                &["images"],
            )
            .query("name", "ubuntu-24.04"),
        )
        .await
        .unwrap();
    let mut active: Vec<(String, String)> = all.body["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == "active")
        .map(|i| {
            (
                i["created_at"].as_str().unwrap().to_string(),
                i["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    active.sort();
    assert_eq!(active.len(), 2);
    assert_eq!(
        chosen.id, active[1].1,
        "the newer active one, not the queued newest"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn cleanup_after_a_prepare_that_died_before_or_during_create() {
    let sim = SimCloud::start(opts()).await.unwrap();
    let os = connect(&sim).await;
    let me = owner("1");
    // Died before create: nothing exists, cleanup succeeds.
    cleanup(&os, &target(&me, "ci-1", None), &quick())
        .await
        .unwrap();
    // Died during create: the server exists but its id never reached the state.
    create_server(&os, &spec("ci-1"), &me, &CreateOptions::default())
        .await
        .unwrap();
    let report = cleanup(&os, &target(&me, "ci-1", None), &quick())
        .await
        .unwrap();
    assert_eq!(report.servers_deleted.len(), 1);
    assert_eq!(sim.counts().servers, 0);
    // The same with a boot volume that Nova keeps past termination: it was made for this
    // job, so it goes too, although its id never reached the state either.
    let mut kept = spec("ci-1");
    kept.boot_volume = Some(BootVolume {
        size_gb: 10,
        volume_type: None,
        delete_on_termination: false,
    });
    create_server(&os, &kept, &me, &CreateOptions::default())
        .await
        .unwrap();
    assert_eq!(sim.counts().volumes, 1);
    let report = cleanup(&os, &target(&me, "ci-1", None), &quick())
        .await
        .unwrap();
    assert_eq!(report.volumes_deleted.len(), 1, "{report:?}");
    assert_eq!((sim.counts().servers, sim.counts().volumes), (0, 0));
    sim.shutdown().await;
}

/// A floating IP the job state names is released only when it is provably this job's: it bears
/// this job's marker, or it sits on a port of this job's server. Another job's, named by a
/// damaged or edited state, stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_releases_only_floating_ips_it_can_prove_are_this_jobs() {
    let sim = SimCloud::start(opts()).await.unwrap();
    let os = connect(&sim).await;
    let (me, them) = (owner("1"), owner("2"));
    let public = os.resolve_network("public").await.unwrap().named.id;
    let mine = boot(&os, &spec("ci-1"), &me, &wait()).await.0;
    let theirs = boot(&os, &spec("ci-2"), &them, &wait()).await.0;
    let port_of = |id: String| {
        let os = &os;
        async move { os.server_ports(&id).await.unwrap()[0].id.clone() }
    };
    let (my_port, their_port) = (port_of(mine.clone()).await, port_of(theirs.clone()).await);
    // Unmarked, but on this job's server: proven by the port.
    let unmarked = os.post_floating_ip(&public, &my_port, "").await.unwrap().id;
    // Another job's, on that job's server.
    let foreign = os
        .post_floating_ip(&public, &their_port, &them.marker())
        .await
        .unwrap()
        .id;
    let mut t = target(&me, "ci-1", Some(mine));
    t.floating_ip_ids = vec![unmarked.clone(), foreign.clone()];
    let report = cleanup(&os, &t, &quick()).await.unwrap();
    assert_eq!(report.floating_ips_released, vec![unmarked]);
    assert_eq!(report.floating_ips_refused, vec![foreign.clone()]);
    let left: Vec<String> = os
        .list_floating_ips()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.id)
        .collect();
    assert_eq!(left, vec![foreign]);
    sim.shutdown().await;
}

/// A volume kept past termination that outlived its server (an earlier cleanup deleted the
/// server, then stopped) is deleted on the job state's word only when its metadata carries this
/// job's ownership; `create_server` puts it there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_volume_whose_server_is_gone_is_deleted_only_with_the_jobs_ownership() {
    let sim = SimCloud::start(opts()).await.unwrap();
    let os = connect(&sim).await;
    let me = owner("1");
    let mut kept = spec("ci-1");
    kept.boot_volume = Some(BootVolume {
        size_gb: 10,
        volume_type: None,
        delete_on_termination: false,
    });
    let created = create_server(&os, &kept, &me, &CreateOptions::default())
        .await
        .unwrap();
    let server = wait_for(&os, &created.server_id, &wait()).await.unwrap();
    let volume = server.volumes[0].id.clone();
    os.delete_server(&created.server_id).await.unwrap();
    while os.get_server(&created.server_id).await.unwrap().is_some() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut t = target(&me, "ci-1", None);
    t.volume_ids = vec![volume.clone()];
    let now = std::time::SystemTime::now();
    for tag in [None, Some(owner("2"))] {
        if let Some(other) = &tag {
            os.set_volume_metadata(&volume, &other.metadata(now))
                .await
                .unwrap();
        }
        let report = cleanup(&os, &t, &quick()).await.unwrap();
        assert_eq!(report.volumes_refused, vec![volume.clone()], "tag {tag:?}");
        assert_eq!(sim.counts().volumes, 1, "tag {tag:?}");
    }
    os.set_volume_metadata(&volume, &me.metadata(now))
        .await
        .unwrap();
    let report = cleanup(&os, &t, &quick()).await.unwrap();
    assert_eq!(report.volumes_deleted, vec![volume]);
    assert_eq!(sim.counts().volumes, 0);

    // The step tags what it keeps: prepare of a job whose boot volume outlives the server.
    let root = tempfile::tempdir().unwrap();
    let clouds = sim.write_clouds_yaml(root.path()).unwrap();
    let j = SmallJob::new(root.path(), &clouds, "61", |r| {
        r.replace(
            "    image: cirros-0.6.2\n",
            "    image: cirros-0.6.2\n    boot_volume:\n      size_gb: 10\n      delete_on_termination: false\n",
        )
    });
    let out = j.stage("prepare").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(j.state()).unwrap()).unwrap();
    let id = state["volume_ids"][0]
        .as_str()
        .expect("the kept volume is in the state");
    let tagged = os
        .volume_metadata(id)
        .await
        .unwrap()
        .expect("the volume exists");
    let job = Ownership {
        runner: "sim-damaged".into(),
        project: "7".into(),
        job: "61".into(),
    };
    assert!(job.owns(&tagged), "{tagged:?}");
    sim.shutdown().await;
}

fn recipe() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/recipes/openstack-realcloud.yaml")
}

/// A stage of job 31 with the realcloud test recipe, pointed at the simulator's clouds.yaml.
fn stage(dir: &Path, clouds: &Path, args: &[&str], extra: &[(&str, &str)]) -> StageRun {
    StageRun::new(dir, args)
        .recipe(recipe())
        .env("OS_CLIENT_CONFIG_FILE", clouds)
        .env("OS_CLOUD", "sim")
        .job_var("CI_JOB_ID", "31")
        .job_var("TEST_PREFIX", "sim")
        .job_var("TEST_OWNER", "sim-stages")
        .job_var("TEST_IMAGE", "cirros-0.6.2")
        .job_vars(extra)
        .timeout(Duration::from_secs(120))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_the_openstack_steps_and_run_makes_no_api_requests() {
    let sim = SimCloud::start(opts()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let clouds = sim.write_clouds_yaml(&d).unwrap();
    std::fs::write(
        d.join("response.json"),
        r#"{"id": 31, "job_info": {"project_id": 7}}"#,
    )
    .unwrap();
    // One create before the job, so that with a 50 % error share the job's first boot fails
    // and its second succeeds (boot_attempts: 2).
    let os = connect(&sim).await;
    sim.faults().set_create_error_share(0.5);
    create_server(
        &os,
        &spec("warm-up"),
        &owner("0"),
        &CreateOptions::default(),
    )
    .await
    .unwrap();

    let (d2, c2) = (d.clone(), clouds.clone());
    let out = tokio::task::spawn_blocking(move || {
        stage(&d2, &c2, &["prepare"], &[("TEST_BOOTS", "2")])
            .env("EXECUTOR_LOG", "trace")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "prepare: {stderr}");
    assert!(
        stderr.contains(executor_simulator::NO_VALID_HOST),
        "the fault is in the job log: {stderr}"
    );
    assert!(stderr.contains("booting again"), "{stderr}");
    assert!(
        stderr.contains("osauth") || stderr.contains("executor_cloud"),
        "trace is on"
    );
    // Even at trace level: no password, no token.
    assert!(
        !stderr.contains(executor_simulator::USER_PASSWORD),
        "password in the log"
    );
    assert!(
        !stderr.to_ascii_lowercase().contains("x-subject-token:"),
        "{stderr}"
    );
    assert!(
        !stderr.to_ascii_lowercase().contains("x-auth-token:"),
        "{stderr}"
    );
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("executor-state.json")).unwrap()).unwrap();
    assert!(
        state["server_address"]
            .as_str()
            .unwrap()
            .starts_with("127.77."),
        "{state}"
    );
    // `address_kind: floating` picked the floating IP out of the server's addresses.
    assert_eq!(
        state["floating_seen"].as_str().unwrap(),
        format!("{} floating", state["fip"].as_str().unwrap()),
        "{state}"
    );

    let before = sim.request_log().len();
    let script = d.join("script.sh");
    std::fs::write(&script, "true\n").unwrap();
    let (d2, c2, s2) = (d.clone(), clouds.clone(), script.clone());
    let out = tokio::task::spawn_blocking(move || {
        stage(
            &d2,
            &c2,
            &["run", s2.to_str().unwrap(), "build_script"],
            &[],
        )
        .output()
        .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sim.request_log().len(), before, "run makes no API requests");

    let (d2, c2) = (d.clone(), clouds.clone());
    let out =
        tokio::task::spawn_blocking(move || stage(&d2, &c2, &["cleanup"], &[]).output().unwrap())
            .await
            .unwrap();
    assert!(
        out.status.success(),
        "cleanup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counts = sim.counts();
    // Only the warm-up server remains: no ERROR server, port, floating IP or key pair of the job.
    assert_eq!(
        (counts.servers, counts.floating_ips, counts.keypairs),
        (1, 0, 0),
        "{counts:?}"
    );
    sim.shutdown().await;
}

/// Job `job` of project 7, in its own directory under `root`, whose recipe is
/// `tests/recipes/damaged-state.yaml` (a per-job key pair and a server) as `edit` changes it.
struct SmallJob {
    dir: PathBuf,
    recipe: PathBuf,
    clouds: PathBuf,
}

impl SmallJob {
    fn new(root: &Path, clouds: &Path, job: &str, edit: impl Fn(String) -> String) -> SmallJob {
        let dir = root.join(format!("job-{job}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("response.json"),
            format!(r#"{{"id": {job}, "job_info": {{"project_id": 7}}}}"#),
        )
        .unwrap();
        let base = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/recipes/damaged-state.yaml"),
        )
        .unwrap();
        let recipe = dir.join("recipe.yaml");
        std::fs::write(&recipe, edit(base)).unwrap();
        SmallJob {
            dir,
            recipe,
            clouds: clouds.to_path_buf(),
        }
    }

    /// Runs `stage` against the simulator: its output.
    async fn stage(&self, stage: &'static str) -> std::process::Output {
        let run = StageRun::new(&self.dir, [stage])
            .recipe(&self.recipe)
            .env("OS_CLIENT_CONFIG_FILE", &self.clouds)
            .env("OS_CLOUD", "sim")
            .timeout(Duration::from_secs(120));
        tokio::task::spawn_blocking(move || run.output().unwrap())
            .await
            .unwrap()
    }

    fn state(&self) -> PathBuf {
        self.dir.join("executor-state.json")
    }
}

/// Issue 14, item 10: a job state that is truncated, not an object, or gone still lets cleanup
/// find the job's server (by exact name and ownership) and its per-job key pair (whose name
/// follows from the ownership).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_with_a_damaged_or_missing_state_deletes_the_server_and_the_key_pair() {
    let sim = SimCloud::start(opts()).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let clouds = sim.write_clouds_yaml(root.path()).unwrap();
    for (job, damage) in [
        ("41", Some("{\"server_id\": \"ab")),
        ("42", Some("[]")),
        ("43", None),
    ] {
        let j = SmallJob::new(root.path(), &clouds, job, |r| r);
        let out = j.stage("prepare").await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!((sim.counts().servers, sim.counts().keypairs), (1, 1));
        match damage {
            Some(text) => std::fs::write(j.state(), text).unwrap(),
            None => std::fs::remove_file(j.state()).unwrap(),
        }
        let out = j.stage("cleanup").await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "job {job}: {stderr}");
        assert_eq!(
            (sim.counts().servers, sim.counts().keypairs),
            (0, 0),
            "job {job} leaked: {stderr}"
        );
    }
    sim.shutdown().await;
}

/// A `keypair` step with a chosen name: a key pair that was there before the job (a site's
/// shared one, same public key) is used and survives the job's cleanup, though the job's server
/// used it; one the job made itself goes with the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_key_pair_that_was_there_before_the_job_survives_its_cleanup() {
    let sim = SimCloud::start(opts()).await.unwrap();
    connect(&sim)
        .await
        .import_keypair("site-shared", cloud_support::PUBLIC_KEY)
        .await
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let clouds = sim.write_clouds_yaml(root.path()).unwrap();
    for (job, name, kept) in [("51", "site-shared", true), ("52", "job-made", false)] {
        let j = SmallJob::new(root.path(), &clouds, job, |r| {
            r.replace(
                "    kind: keypair\n",
                &format!("    kind: keypair\n    name: {name}\n"),
            )
        });
        let mut log = String::new();
        for stage in ["prepare", "cleanup"] {
            let out = j.stage(stage).await;
            log.push_str(&String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success(), "job {job} {stage}: {log}");
        }
        assert_eq!(sim.counts().servers, 0, "{log}");
        let left = connect(&sim).await.list_keypair_names().await.unwrap();
        assert_eq!(
            left.contains(&name.to_string()),
            kept,
            "job {job}: {left:?}\n{log}"
        );
        assert_eq!(log.contains("was there before this job"), kept, "{log}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_boot_wait_outlasts_an_api_outage_longer_than_the_retries() {
    let sim = SimCloud::start(opts()).await.unwrap();
    let os = connect(&sim).await;
    let created = create_server(&os, &spec("ci-1"), &owner("1"), &CreateOptions::default())
        .await
        .unwrap();
    // More failures in a row than one call's retries (5): the wait polls on until its deadline.
    sim.faults().http_errors(
        503,
        12,
        Scope::service(Service::Compute)
            .method("GET")
            .path("/servers/"),
    );
    let server = wait_for(&os, &created.server_id, &wait()).await.unwrap();
    assert_eq!(server.status, "ACTIVE");
    sim.shutdown().await;
}

#[tokio::test]
async fn an_unavailable_keystone_is_retried_but_a_wrong_password_is_not() {
    let sim = SimCloud::start(opts()).await.unwrap();
    sim.faults()
        .http_errors(503, 2, Scope::service(Service::Identity));
    sim.faults()
        .rate_limit(1, Duration::from_secs(1), Scope::service(Service::Identity));
    let os = connect(&sim).await;
    assert_eq!(os.api().tokens_issued(), 1);

    let env: Vec<(String, String)> = sim
        .os_env()
        .into_iter()
        .map(|(k, v)| {
            if k == "OS_PASSWORD" {
                (k, "wrong".to_string())
            } else {
                (k, v)
            }
        })
        .collect();
    let before = sim.request_log().len();
    let err = OpenStack::connect_with_env(&settings(), &move |k| {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    })
    .await
    .unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::Auth, "{err}");
    assert!(err.to_string().contains("HTTP 401"), "{err}");
    assert_eq!(
        sim.request_log().len(),
        before + 1,
        "a refused password is asked once"
    );
    sim.shutdown().await;
}
