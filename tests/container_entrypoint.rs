//! The container entrypoint, run without a container: a fake `gitlab-runner` on PATH records how
//! it was called and which signal it got, and takes a moment to "clean up" after SIGTERM, as the
//! real one does while it deletes the jobs' VMs. The signal goes to the entrypoint's own pid, as
//! the container's init sends it, and must reach the runner, and the process must not end before
//! the runner's cleanup has.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const ENTRYPOINT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/container/entrypoint.sh");

const FAKE_RUNNER: &str = r#"#!/bin/sh
log="$FAKE_LOG"
case "$1" in
register)
    echo "register $*" >> "$log"
    while [ $# -gt 0 ]; do
        if [ "$1" = --config ]; then shift; printf 'concurrent = 1\n[[runners]]\n' > "$1"; fi
        shift
    done
    ;;
run)
    echo "run $*" >> "$log"
    trap 'echo "got TERM" >> "$log"; sleep 0.5; echo "cleanup done" >> "$log"; exit 0' TERM
    trap 'echo "got QUIT" >> "$log"; exit 0' QUIT
    echo started >> "$log"
    while :; do sleep 0.05; done
    ;;
*)
    echo "unexpected $*" >> "$log"
    exit 3
    ;;
esac
"#;

struct Harness {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let fake = bin.join("gitlab-runner");
        std::fs::write(&fake, FAKE_RUNNER).unwrap();
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&fake)
            .status()
            .unwrap();
        std::fs::create_dir(dir.path().join("config")).unwrap();
        Harness { dir, child: None }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("config/config.toml")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("fake.log")).unwrap_or_default()
    }

    fn start(&mut self, env: &[(&str, &str)]) {
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new("sh");
        cmd.arg(ENTRYPOINT)
            .env_clear()
            .env("PATH", path)
            .env("FAKE_LOG", self.dir.path().join("fake.log"))
            .env("RUNNER_CONFIG_DIR", self.dir.path().join("config"))
            .env("RUNNER_WORKDIR", self.dir.path())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own group, so that a failing test can take the whole tree down.
            .process_group(0);
        self.child = Some(cmd.spawn().unwrap());
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "`{needle}` never appeared; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_exit(&mut self) -> (ExitStatus, String) {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                use std::io::Read;
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return (status, err);
            }
            assert!(Instant::now() < deadline, "the entrypoint did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with a pid we spawned and a valid signal number.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child
            && child.try_wait().ok().flatten().is_none()
        {
            // SAFETY: the group we created for this child.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
        }
    }
}

fn line_index(log: &str, needle: &str) -> usize {
    log.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` not in log:\n{log}"))
}

#[test]
fn registers_once_then_forwards_sigterm_and_waits_for_the_runner() {
    let mut h = Harness::new();
    h.start(&[
        ("CI_SERVER_URL", "http://127.0.0.1:9"),
        ("RUNNER_TOKEN", "glrt-test-token"),
        ("CONCURRENT", "4"),
    ]);
    h.wait_for_log("started");
    let log = h.log();
    let register = log.lines().find(|l| l.starts_with("register")).unwrap();
    assert!(register.contains("--token glrt-test-token"), "{register}");
    assert!(register.contains("--executor custom"), "{register}");
    assert!(register.contains("--template-config"), "{register}");
    assert!(register.contains("--non-interactive"), "{register}");
    assert!(
        std::fs::read_to_string(h.config())
            .unwrap()
            .contains("concurrent = 4")
    );

    h.signal(libc::SIGTERM);
    let (status, stderr) = h.wait_exit();
    let log = h.log();
    // The script exits only once the runner has finished its cleanup, with the runner's status.
    assert!(
        log.contains("cleanup done"),
        "exited before the runner: {log}"
    );
    assert!(line_index(&log, "got TERM") < line_index(&log, "cleanup done"));
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
}

#[test]
fn an_existing_config_is_used_without_registering_again() {
    let mut h = Harness::new();
    std::fs::write(h.config(), "concurrent = 2\n[[runners]]\n").unwrap();
    h.start(&[("RUNNER_TOKEN", "glrt-must-not-be-used")]);
    h.wait_for_log("started");
    let log = h.log();
    assert!(!log.contains("register"), "registered again: {log}");
    let run = log.lines().find(|l| l.starts_with("run ")).unwrap();
    assert!(
        run.contains(&format!("--config {}", h.config().display())),
        "{run}"
    );
    h.signal(libc::SIGTERM);
    let (status, _) = h.wait_exit();
    assert!(h.log().contains("cleanup done"));
    assert!(status.success());
    assert_eq!(
        std::fs::read_to_string(h.config()).unwrap(),
        "concurrent = 2\n[[runners]]\n",
        "a mounted config.toml is never rewritten"
    );
}

#[test]
fn a_quit_stop_signal_reaches_the_runner_too() {
    // `podman run --stop-signal SIGQUIT`: let running jobs finish instead of aborting them.
    let mut h = Harness::new();
    std::fs::write(h.config(), "concurrent = 1\n").unwrap();
    h.start(&[]);
    h.wait_for_log("started");
    h.signal(libc::SIGQUIT);
    let (status, _) = h.wait_exit();
    let log = h.log();
    assert!(
        log.contains("got QUIT") && !log.contains("got TERM"),
        "{log}"
    );
    assert!(status.success());
}

#[test]
fn without_config_or_token_it_fails_with_a_clear_message() {
    let mut h = Harness::new();
    h.start(&[("CI_SERVER_URL", "http://127.0.0.1:9")]);
    let (status, stderr) = h.wait_exit();
    assert!(!status.success());
    assert!(stderr.contains("RUNNER_TOKEN"), "{stderr}");
    assert_eq!(h.log(), "", "gitlab-runner must not be called");
    assert!(!Path::new(&h.config()).exists());
}

#[test]
fn the_registration_template_calls_executor_for_all_four_stages() {
    let template = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/container/runner-template.toml"
    ))
    .unwrap();
    for stage in ["config", "prepare", "run", "cleanup"] {
        assert!(
            template.contains(&format!("{stage}_exec = \"/usr/local/bin/executor\"")),
            "{stage}_exec"
        );
        assert!(
            template.contains(&format!("{stage}_args = [\"{stage}\"]")),
            "{stage}_args"
        );
    }
    // The entrypoint's default template path is where the Containerfile puts it.
    let containerfile =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Containerfile")).unwrap();
    assert!(containerfile.contains("/etc/executor/runner-template.toml"));
    assert!(
        std::fs::read_to_string(ENTRYPOINT)
            .unwrap()
            .contains("/etc/executor/runner-template.toml")
    );
}
