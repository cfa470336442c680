//! The shipped default recipe, through the real binary, against the real OpenStack on loopback,
//! as project `demo`: prepare -> run -> cleanup with the SSH steps for real.
//!
//! The fake virt driver boots nothing, so the test plays the VM: once the server is ACTIVE
//! and its address is in the job state, it starts a real OpenSSH sshd on that address (port 22)
//! that accepts the job's own generated key. Gated on EXECUTOR_REALCLOUD=1
//! (tests/realcloud/run.sh).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use executor_simulator::openssh_server::{OpenSshServer, OpenSshServerConfig};

use crate::realcloud_gate::enabled;
use crate::stage_run::StageRun;

fn recipe() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/openstack.yaml")
}

/// A stage of the default recipe as job `job_id` of project 42, with the runner-side settings
/// the default recipe reads and the real cloud's clouds.yaml.
fn stage(dir: &Path, owner: &str, job_id: &str, args: &[&str]) -> StageRun {
    StageRun::new(dir, args)
        .recipe(recipe())
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .env(
            "OS_CLIENT_CONFIG_FILE",
            std::env::var("OS_CLIENT_CONFIG_FILE")
                .unwrap_or_else(|_| "/tmp/realcloud/clouds.yaml".into()),
        )
        .env("OS_CLOUD", "realcloud-demo")
        .env("FLAVOR", "m1.tiny")
        .env("BUILDER_IMAGE", "cirros-fake")
        .env("NETWORK", "private")
        .env(
            "USERNAME",
            executor_simulator::openssh_server::current_user().unwrap(),
        )
        .env("EXECUTOR_OWNER", owner)
        .env("EXPECTED_BOOT_TIME", "3s")
        .job_var("CI_JOB_ID", job_id)
        .job_var("CI_PROJECT_ID", "42")
}

fn state(dir: &Path) -> serde_json::Value {
    std::fs::read(dir.join("executor-state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::json!({}))
}

#[test]
fn default_recipe_prepare_run_cleanup_with_a_real_sshd_playing_the_vm() {
    if !enabled() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let u = uuid::Uuid::new_v4().simple().to_string();
    let job_id = format!("{}", 700000 + u32::from_str_radix(&u[..4], 16).unwrap());
    let owner = format!("default-recipe-{}", &u[..6]);
    std::fs::write(
        d.join("response.json"),
        format!(r#"{{"id": {job_id}, "token": "glcbt-secret", "job_info": {{"project_id": 42}}}}"#),
    )
    .unwrap();

    let mut prepare = stage(d, &owner, &job_id, &["prepare"])
        .command()
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Play the VM: wait until the server's address and the job's key are in the job state.
    let deadline = Instant::now() + Duration::from_secs(300);
    let (address, key_file) = loop {
        let s = state(d);
        if let (Some(a), Some(k)) = (s["server_address"].as_str(), s["ssh_key_file"].as_str()) {
            break (a.to_string(), k.to_string());
        }
        if let Some(status) = prepare.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(prepare.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("prepare ended ({status}) before the server had an address:\n{err}");
        }
        assert!(Instant::now() < deadline, "no server address after 300 s");
        std::thread::sleep(Duration::from_millis(200));
    };
    let key = russh::keys::load_secret_key(&key_file, None).unwrap();
    let mut cfg = OpenSshServerConfig::new(vec![key.public_key().to_openssh().unwrap()]);
    cfg.listen = address.parse().unwrap();
    cfg.port = Some(22);
    let _vm = OpenSshServer::start(&cfg).expect("sshd on the server's address");

    let out = prepare.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "prepare failed:\n{err}");
    assert!(err.contains("is ready at"), "{err}");
    assert!(
        state(d)["ssh_host_key"].is_string(),
        "the host key is pinned"
    );

    let run = |body: &str| {
        let script = d.join("script");
        std::fs::write(&script, body).unwrap();
        stage(
            d,
            &owner,
            &job_id,
            &["run", script.to_str().unwrap(), "build_script"],
        )
        .output()
        .unwrap()
    };
    let out = run("echo job-output-$((6*7)); echo to-stderr >&2\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("job-output-42"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("to-stderr"));

    let out = run("exit 42\n");
    assert_eq!(out.status.code(), Some(11));
    assert_eq!(
        std::fs::read_to_string(d.join("build_exit_code"))
            .unwrap()
            .trim(),
        "42"
    );

    let out = stage(d, &owner, &job_id, &["cleanup"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("deleted server"), "{err}");
    // A second cleanup finds nothing and still succeeds.
    let out = stage(d, &owner, &job_id, &["cleanup"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
