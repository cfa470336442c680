//! The warm pool against the real OpenStack on loopback: `executor pool` provisions with the
//! shipped pooled recipe, a real OpenSSH sshd plays each VM, a job's stages claim one, run a
//! script on it and delete it; a real Prometheus scrapes the daemon; a SIGKILLed daemon's idle
//! VM is adopted by the next start.
//! Gated on EXECUTOR_REALCLOUD=1 (tests/realcloud/run.sh).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use executor_simulator::openssh_server::{OpenSshServer, OpenSshServerConfig, current_user};

use crate::prometheus_support::{Prometheus, first_value, free_port};
use crate::realcloud_gate::enabled;
use crate::stage_run::StageRun;

fn clouds_yaml() -> String {
    std::env::var("OS_CLIENT_CONFIG_FILE").unwrap_or_else(|_| "/tmp/realcloud/clouds.yaml".into())
}

/// The runner-side environment, shared by the daemon and the job's stages.
fn runner_env(owner: &str) -> Vec<(String, String)> {
    [
        ("HOME", std::env::var("HOME").unwrap_or_default()),
        ("OS_CLIENT_CONFIG_FILE", clouds_yaml()),
        ("OS_CLOUD", "realcloud-demo".into()),
        ("FLAVOR", "m1.tiny".into()),
        ("BUILDER_IMAGE", "cirros-fake".into()),
        ("NETWORK", "private".into()),
        ("USERNAME", current_user().unwrap()),
        ("EXECUTOR_OWNER", owner.into()),
        ("EXPECTED_BOOT_TIME", "3s".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn write_recipe(dir: &Path, metrics_port: u16) -> PathBuf {
    let path = dir.join("site.yaml");
    std::fs::write(
        &path,
        format!(
            "version: 1\nextends: {}\npool:\n  warm:\n    - key: {{flavor: m1.tiny, image: cirros-fake}}\n      idle: 1\n  max_instances: 2\n  create_interval: 100ms\n  health_interval: 1h\n  socket: {}\n  state_dir: {}\n  metrics: 127.0.0.1:{metrics_port}\n",
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("recipes/pooled.yaml")
                .display(),
            dir.join("run").join("pool.sock").display(),
            dir.join("pool-state").display(),
        ),
    )
    .unwrap();
    path
}

fn start_daemon(dir: &Path, recipe: &Path, owner: &str) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("daemon.log"))
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_executor"))
        .arg("--recipe")
        .arg(recipe)
        .arg("pool")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(runner_env(owner))
        .stdin(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Starts a real sshd on the address of every VM the daemon has made, with that VM's key,
/// as the VM would have booted.
fn play_vms(dir: &Path, vms: &mut HashMap<String, OpenSshServer>) {
    let Ok(entries) = std::fs::read_dir(dir.join("pool-state")) else {
        return;
    };
    for e in entries.flatten() {
        let state: serde_json::Value = std::fs::read(e.path().join("executor-state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let (Some(address), Some(key)) = (
            state["server_address"].as_str(),
            state["ssh_key_file"].as_str(),
        ) else {
            continue;
        };
        if vms.contains_key(address) {
            continue;
        }
        let key = russh::keys::load_secret_key(key, None).unwrap();
        let mut cfg = OpenSshServerConfig::new(vec![key.public_key().to_openssh().unwrap()]);
        cfg.listen = address.parse().unwrap();
        cfg.port = Some(22);
        vms.insert(
            address.to_string(),
            OpenSshServer::start(&cfg).expect("sshd on the VM's address"),
        );
    }
}

fn idle_now(dir: &Path) -> u32 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(executor_pool::status(
        &dir.join("run").join("pool.sock"),
        Duration::from_secs(1),
    ))
    .map(|s| s.idle)
    .unwrap_or(0)
}

fn wait_idle(dir: &Path, vms: &mut HashMap<String, OpenSshServer>) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while idle_now(dir) < 1 {
        play_vms(dir, vms);
        let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
        assert!(Instant::now() < deadline, "no idle VM after 300 s:\n{log}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn stop(child: &mut Child, signal: i32) {
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as i32, signal) };
    let _ = child.wait();
}

#[test]
fn a_pooled_job_claims_a_warm_vm_on_the_real_cloud_and_a_restart_adopts_the_idle_one() {
    if !enabled() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let u = uuid::Uuid::new_v4().simple().to_string();
    let owner = format!("pool-real-{}", &u[..6]);
    let job_id = format!("{}", 800000 + u32::from_str_radix(&u[..4], 16).unwrap());
    let metrics_port = free_port();
    let recipe = write_recipe(d, metrics_port);
    let mut vms = HashMap::new();
    let mut daemon = start_daemon(d, &recipe, &owner);
    wait_idle(d, &mut vms);

    let job = d.join("job");
    std::fs::create_dir_all(&job).unwrap();
    std::fs::write(
        job.join("response.json"),
        format!(r#"{{"id": {job_id}, "token": "glcbt-secret", "job_info": {{"project_id": 42}}}}"#),
    )
    .unwrap();
    let stage = |args: &[&str]| {
        let mut s = StageRun::new(&job, args).recipe(&recipe);
        for (k, v) in runner_env(&owner) {
            s = s.env(k, v);
        }
        s.job_var("CI_JOB_ID", &job_id)
            .job_var("CI_PROJECT_ID", "42")
    };
    let started = Instant::now();
    let out = stage(&["prepare"]).output().unwrap();
    let prepare = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "prepare failed:\n{err}");
    assert!(err.contains("claimed warm VM"), "{err}");
    eprintln!(
        "pooled prepare on the real cloud: {:.3}s",
        prepare.as_secs_f64()
    );

    let script = job.join("script");
    std::fs::write(&script, "echo pooled-$((6*7))\n").unwrap();
    let out = stage(&["run", script.to_str().unwrap(), "build_script"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("pooled-42"));

    let out = stage(&["cleanup"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("deleted server"), "{err}");

    // A real Prometheus scrapes the daemon: the hit, and the real Nova's and Keystone's
    // answers by service and status.
    if let Some(prometheus) = Prometheus::start(&d.join("prometheus"), metrics_port) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let hits = rt.block_on(prometheus.query("executor_pool_claims_total{result=\"hit\"} > 0"));
        assert_eq!(first_value(&hits), "1", "{hits}");
        for expr in [
            "executor_pool_api_requests_total{service=\"identity\",status=\"201\"}",
            "executor_pool_api_requests_total{service=\"compute\",status=\"202\"}",
            "executor_pool_time_to_ready_seconds_count",
        ] {
            let answer = rt.block_on(prometheus.query(&format!("{expr} > 0")));
            eprintln!("{expr} = {}", first_value(&answer));
        }
    }

    // The daemon refills; SIGKILL it and let the next start adopt the idle VM.
    wait_idle(d, &mut vms);
    stop(&mut daemon, libc::SIGKILL);
    let mut daemon = start_daemon(d, &recipe, &owner);
    wait_idle(d, &mut vms);
    let log = std::fs::read_to_string(d.join("daemon.log")).unwrap();
    assert!(log.contains("adopted idle VM"), "{log}");
    stop(&mut daemon, libc::SIGTERM);
    let log = std::fs::read_to_string(d.join("daemon.log")).unwrap();
    assert!(log.contains("stopping; deleting 1 idle VM(s)"), "{log}");
}
