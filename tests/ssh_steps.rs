//! The SSH steps through the real binary, stage by stage, against a real sshd.

use crate::ssh_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use executor_simulator::openssh_server::{OpenSshServer, OpenSshServerConfig};
use ssh_support::{Fixture, loopback};

use crate::stage_run::StageRun;

fn recipe(fx: &Fixture, extra_prepare: &str) -> String {
    format!(
        r##"version: 1
ssh:
  host: "{host}"
  port: {port}
  user: "{user}"
  private_key_file: "{key}"
prepare:
  - id: key
    kind: ssh_generate_key
    comment: "job-{{{{ job.CI_JOB_ID }}}}"
  - id: probe
    kind: ssh_probe
    wait_timeout: 60s
    readiness_command: "true"
  - id: who
    kind: ssh_command
    command: "echo hello-from-probe"
  - id: show
    kind: log
    message: "said {{{{ steps.who.stdout | trim }}}} pub={{{{ steps.key.public_key }}}}"
  - id: put
    kind: ssh_upload
    path: "{remote}/tool.sh"
    content: "#!/bin/sh\necho tool-ran\n"
    mode: "0755"
{extra_prepare}
run:
  - id: script
    kind: ssh_run_script
"##,
        host = fx.server.addr().ip(),
        port = fx.server.port(),
        user = fx.server.user(),
        key = fx.dir.path().join("id_ed25519").display(),
        remote = fx.remote_dir().display(),
    )
}

/// A stage of job 77 with `recipe`.
fn stage(dir: &Path, recipe: &Path, args: &[&str]) -> StageRun {
    StageRun::new(dir, args)
        .recipe(recipe)
        .job_var("CI_JOB_ID", "77")
        .timeout(std::time::Duration::from_secs(120))
}

#[test]
fn prepare_pins_the_host_key_and_run_maps_exit_codes() {
    let mut fx = Fixture::start();
    let job = tempfile::tempdir().unwrap();
    let d = job.path();
    let recipe_path = d.join("recipe.yaml");
    std::fs::write(&recipe_path, recipe(&fx, "")).unwrap();

    let out = stage(d, &recipe_path, &["prepare"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "prepare failed: {stderr}");
    assert!(
        stderr.contains("said hello-from-probe pub=ssh-ed25519 AAAA"),
        "{stderr}"
    );
    assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("executor-state.json")).unwrap()).unwrap();
    assert!(
        state["ssh_host_key"]
            .as_str()
            .unwrap()
            .starts_with("ssh-ed25519 ")
    );
    let key_file = state["ssh_key_file"].as_str().unwrap();
    assert_eq!(
        std::fs::metadata(key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let tool = fx.remote_dir().join("tool.sh");
    assert_eq!(
        std::fs::read_to_string(&tool).unwrap(),
        "#!/bin/sh\necho tool-ran\n"
    );

    let script = d.join("script");
    for (code, expect_exit, expect_file) in [
        (0, 0, None),
        (1, 11, Some("1")),
        (42, 11, Some("42")),
        (255, 11, Some("255")),
    ] {
        std::fs::write(
            &script,
            format!("'{}'\nprintf '\\377raw\\n'\nexit {code}\n", tool.display()),
        )
        .unwrap();
        let out = stage(
            d,
            &recipe_path,
            &["run", script.to_str().unwrap(), "build_script"],
        )
        .output()
        .unwrap();
        assert_eq!(
            out.status.code(),
            Some(expect_exit),
            "exit {code}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, b"tool-ran\n\xffraw\n");
        let file = std::fs::read_to_string(d.join("build_exit_code")).ok();
        assert_eq!(file.as_deref().map(str::trim), expect_file, "exit {code}");
    }

    // The VM is replaced by an impostor on the same address: run refuses, the script never runs.
    let marker = fx.remote_dir().join("ran");
    std::fs::write(&script, format!("touch '{}'\n", marker.display())).unwrap();
    let mut config = OpenSshServerConfig::new(vec![fx.public.clone()]);
    config.listen = fx.server.addr().ip();
    config.port = Some(fx.server.port());
    fx.server.kill();
    let _impostor = OpenSshServer::start(&config).unwrap();
    let out = stage(
        d,
        &recipe_path,
        &["run", script.to_str().unwrap(), "build_script"],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(12), "{stderr}");
    assert!(stderr.contains("host key"), "{stderr}");
    assert!(!marker.exists(), "the script reached the impostor");
}

/// Issue 14, item 1: once the job state holds a pin (from prepare's probe, or from a warm-pool
/// claim), a probe in a later stage checks against it instead of learning the key again.
#[test]
fn a_later_probe_checks_the_pin_instead_of_learning_the_key_again() {
    let mut fx = Fixture::start();
    let job = tempfile::tempdir().unwrap();
    let d = job.path();
    let recipe_path = d.join("recipe.yaml");
    // `run` probes again first, as a recipe that reboots the server would.
    let text = recipe(&fx, "").replace(
        "run:\n",
        "run:\n  - id: again\n    kind: ssh_probe\n    wait_timeout: 20s\n",
    );
    std::fs::write(&recipe_path, text).unwrap();
    let out = stage(d, &recipe_path, &["prepare"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read_pin = || {
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.join("executor-state.json")).unwrap()).unwrap();
        state["ssh_host_key"].as_str().unwrap().to_string()
    };
    let pinned = read_pin();

    let marker = fx.remote_dir().join("ran");
    let script = d.join("script");
    std::fs::write(&script, format!("touch '{}'\n", marker.display())).unwrap();
    let mut config = OpenSshServerConfig::new(vec![fx.public.clone()]);
    config.listen = fx.server.addr().ip();
    config.port = Some(fx.server.port());
    fx.server.kill();
    let _impostor = OpenSshServer::start(&config).unwrap();
    let out = stage(
        d,
        &recipe_path,
        &["run", script.to_str().unwrap(), "build_script"],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(12), "{stderr}");
    assert!(stderr.contains("host key"), "{stderr}");
    assert!(!marker.exists(), "the script reached the impostor");
    assert_eq!(read_pin(), pinned, "the pin was replaced");
}

/// Issue 14, item 1, the warm pool's side: `pool_claim` writes the pool probe's pin into the job
/// state in prepare; a probe after it checks the server against that pin.
#[test]
fn a_probe_after_a_claim_checks_the_claimed_pin() {
    let fx = Fixture::start();
    let job = tempfile::tempdir().unwrap();
    let d = job.path();
    let recipe_path = d.join("recipe.yaml");
    std::fs::write(&recipe_path, recipe(&fx, "")).unwrap();
    // What a claim of another server would have left: a pin that is not this server's key.
    let other = executor_ssh::generate_job_key(d, "other", "other").unwrap();
    let state = d.join("executor-state.json");
    std::fs::write(
        &state,
        serde_json::json!({"ssh_host_key": other.public_openssh.trim()}).to_string(),
    )
    .unwrap();
    let out = stage(d, &recipe_path, &["prepare"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(12), "{stderr}");
    assert!(stderr.contains("host key"), "{stderr}");
    assert!(!stderr.contains("said hello-from-probe"), "{stderr}");
}

/// Issue 14, item 12: within a stage, a session is reused only under the same host-key policy;
/// one checked against the right fingerprint is not handed to a step that trusts another.
#[test]
fn a_session_is_not_reused_under_another_fingerprint_list() {
    let fx = Fixture::start();
    let job = tempfile::tempdir().unwrap();
    let d = job.path();
    let good = fx
        .server
        .host_key()
        .fingerprint(russh::keys::HashAlg::Sha256)
        .to_string();
    let wrong = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";
    let step = |id: &str, fingerprint: &str| {
        format!(
            "  - id: {id}\n    kind: ssh_command\n    command: \"echo {id}-ran\"\n    ssh:\n      \
             host_key: fingerprints\n      fingerprints: [\"{fingerprint}\"]\n"
        )
    };
    let recipe_path = d.join("recipe.yaml");
    let text = format!(
        "version: 1\nssh:\n  host: \"{host}\"\n  port: {port}\n  user: \"{user}\"\n  \
         private_key_file: \"{key}\"\nprepare:\n{first}{second}",
        host = fx.server.addr().ip(),
        port = fx.server.port(),
        user = fx.server.user(),
        key = fx.dir.path().join("id_ed25519").display(),
        first = step("trusted", &good),
        second = step("untrusted", wrong),
    );
    std::fs::write(&recipe_path, text).unwrap();
    let out = stage(d, &recipe_path, &["prepare"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(12), "{stderr}");
    assert!(stderr.contains("host key"), "{stderr}");
}

#[test]
fn insecure_mode_warns_and_missing_pin_is_refused() {
    let fx = Fixture::start_with(|c| c.listen = loopback());
    let job = tempfile::tempdir().unwrap();
    let d = job.path();
    let recipe_path = d.join("recipe.yaml");
    let text = recipe(&fx, "").replace(
        "  private_key_file:",
        "  host_key: insecure\n  private_key_file:",
    );
    std::fs::write(&recipe_path, &text).unwrap();
    let out = stage(d, &recipe_path, &["prepare"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("host-key checking is OFF"), "{stderr}");

    // Pinned mode without a probe having run: refused rather than trusting on the spot.
    let fresh = tempfile::tempdir().unwrap();
    let recipe_path = fresh.path().join("recipe.yaml");
    std::fs::write(&recipe_path, recipe(&fx, "")).unwrap();
    let script = fresh.path().join("script");
    std::fs::write(&script, "echo hi\n").unwrap();
    let out = stage(
        fresh.path(),
        &recipe_path,
        &["run", script.to_str().unwrap(), "build_script"],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(12), "{stderr}");
    assert!(stderr.contains("no pinned SSH host key"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn sigterm_during_run_stops_every_remote_process_of_the_script() {
    let fx = Fixture::start();
    let job = tempfile::tempdir().unwrap();
    let d = job.path();
    let recipe_path = d.join("recipe.yaml");
    std::fs::write(&recipe_path, recipe(&fx, "")).unwrap();
    let out = stage(d, &recipe_path, &["prepare"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let remote = fx.remote_dir();
    let (shell, child, grandchild) = (
        remote.join("shell"),
        remote.join("child"),
        remote.join("grandchild"),
    );
    let script = d.join("script");
    std::fs::write(
        &script,
        format!(
            "echo $$ > '{}'\n\
             sh -c 'trap \"\" TERM HUP; echo $$ > \"{}\"; sleep 300 & echo $! > \"{}\"; while :; do sleep 1; done' &\n\
             sleep 300\n",
            shell.display(),
            child.display(),
            grandchild.display()
        ),
    )
    .unwrap();
    let mut cmd = stage(
        d,
        &recipe_path,
        &["run", script.to_str().unwrap(), "build_script"],
    )
    .command();
    let mut running = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !(grandchild.exists() && std::fs::metadata(&grandchild).unwrap().len() > 0) {
        assert!(
            std::time::Instant::now() < deadline,
            "the script never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // gitlab-runner's cancel: SIGTERM to the driver.
    unsafe { libc::kill(running.id() as i32, libc::SIGTERM) };
    let status = wait_bounded(&mut running, std::time::Duration::from_secs(60));
    let mut stderr = String::new();
    std::io::Read::read_to_string(running.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    for file in [&shell, &child, &grandchild] {
        let pid: i32 = std::fs::read_to_string(file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            rt.block_on(ssh_support::gone(pid)),
            "remote pid {pid} ({}) survived SIGTERM: {stderr}",
            file.display()
        );
    }
}

fn wait_bounded(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the stage did not end after SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
