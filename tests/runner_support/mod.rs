//! A fake custom-executor driver for the runner stand-in's tests: a bash script in a temp dir that
//! records, for every invocation, its argv, cwd, environment (in envp order), stdin, pid and pgid,
//! and behaves as the test's hook files tell it.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gitlab_runner_standin::{Job, JobResult, RunOptions, Runner, RunnerConfig};

pub struct FakeDriver {
    pub dir: tempfile::TempDir,
}

/// One recorded invocation.
#[derive(Debug)]
pub struct Call {
    pub name: String,
    pub dir: PathBuf,
}

impl Call {
    pub fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).unwrap_or_default()
    }
    pub fn argv(&self) -> Vec<String> {
        self.read("argv")
            .split('\0')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
    /// The environment as the process received it, in envp order.
    pub fn env_list(&self) -> Vec<(String, String)> {
        self.read("env")
            .split('\0')
            .filter(|s| !s.is_empty())
            .filter_map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
            })
            .collect()
    }
    pub fn env(&self) -> HashMap<String, String> {
        self.env_list().into_iter().collect()
    }
}

const DRIVER: &str = r#"#!/usr/bin/env bash
D=__DIR__
stage="$1"
name="$stage"
[ "$stage" = run ] && name="run_$3"
exec 9>>"$D/lock"
flock 9
n=$(( $(cat "$D/count" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$D/count"
flock -u 9
exec 9>&-
rec="$D/calls/$(printf %04d "$n")_$name"
mkdir -p "$rec"
printf '%s\0' "$@" > "$rec/argv"
pwd > "$rec/cwd"
cat /proc/$$/environ > "$rec/env"
echo $$ > "$rec/pid"
read -r -a st < /proc/$$/stat
echo "${st[4]}" > "$rec/pgid"
readlink /proc/$$/fd/0 > "$rec/stdin"
[ -f "$JOB_RESPONSE_FILE" ] && stat -c %a "$JOB_RESPONSE_FILE" > "$rec/response_mode" && cp "$JOB_RESPONSE_FILE" "$rec/response.json"
if [ "$stage" = run ]; then
  cp "$2" "$rec/script"
  stat -c %a "$2" > "$rec/script_mode"
fi
[ -f "$D/hooks/$name" ] && source "$D/hooks/$name"
case "$stage" in
  config)
    [ -f "$D/config.json" ] && cat "$D/config.json"
    exit 0 ;;
  run)
    rm -f "$BUILD_EXIT_CODE_FILE"
    bash "$2"
    rc=$?
    echo "$rc" > "$rec/exit"
    if [ "$rc" -ne 0 ]; then
      echo "$rc" > "$BUILD_EXIT_CODE_FILE"
      exit "$BUILD_FAILURE_EXIT_CODE"
    fi
    exit 0 ;;
  *) exit 0 ;;
esac
"#;

impl FakeDriver {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("fake-driver")
            .tempdir()
            .expect("temp dir");
        let text = DRIVER.replace("__DIR__", &shell_quote(dir.path()));
        let path = dir.path().join("driver.sh");
        std::fs::write(&path, text).expect("write driver");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::create_dir_all(dir.path().join("hooks")).expect("hooks dir");
        std::fs::create_dir_all(dir.path().join("calls")).expect("calls dir");
        let me = Self { dir };
        // The generated scripts run locally, so the build and cache dirs must be writable.
        me.config_json(&format!(
            r#"{{"builds_dir":"{0}/builds","cache_dir":"{0}/cache","driver":{{"name":"fake","version":"v0.0.1"}}}}"#,
            me.path().display()
        ));
        me
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn program(&self) -> PathBuf {
        self.path().join("driver.sh")
    }

    /// What config prints on stdout (written byte for byte).
    pub fn config_json(&self, text: &str) {
        std::fs::write(self.path().join("config.json"), text).expect("config.json");
    }

    pub fn no_config_json(&self) {
        let _ = std::fs::remove_file(self.path().join("config.json"));
    }

    /// Bash sourced by the driver for the invocation `name` (`config`, `prepare`, `cleanup`,
    /// `run_<stage>`), after recording and before the default behaviour.
    pub fn hook(&self, name: &str, bash: &str) {
        std::fs::write(self.path().join("hooks").join(name), bash).expect("hook");
    }

    pub fn runner_config(&self) -> RunnerConfig {
        let mut c = RunnerConfig::single_binary(self.program(), Vec::<String>::new());
        c.preparation_retry_interval = Duration::from_millis(50);
        c.graceful_kill_timeout = Duration::from_secs(5);
        c.force_kill_timeout = Duration::from_secs(5);
        c.held_pipe_grace = Duration::from_secs(1);
        c
    }

    pub fn runner(&self) -> Runner {
        Runner::new(self.runner_config())
    }

    pub fn calls(&self) -> Vec<Call> {
        let mut entries: Vec<_> = std::fs::read_dir(self.path().join("calls"))
            .expect("calls")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        entries
            .into_iter()
            .map(|dir| {
                let base = dir
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_owned();
                let name = base
                    .split_once('_')
                    .map(|(_, n)| n.to_owned())
                    .unwrap_or(base);
                Call { name, dir }
            })
            .collect()
    }

    pub fn call_names(&self) -> Vec<String> {
        self.calls().into_iter().map(|c| c.name).collect()
    }

    pub fn call(&self, name: &str) -> Call {
        self.calls()
            .into_iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no call {name}: {:?}", self.call_names()))
    }

    /// Waits (bounded) until `file` exists in the driver dir.
    pub async fn wait_for(&self, file: &str) {
        let path = self.path().join(file);
        for _ in 0..600 {
            if path.exists() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{file} never appeared");
    }
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// Runs a job with a hard bound, so that a hang fails the test instead of blocking the suite.
pub async fn run_bounded(runner: &Runner, job: &Job, opts: RunOptions) -> JobResult {
    tokio::time::timeout(Duration::from_secs(90), runner.run_job_with(job, opts))
        .await
        .expect("job did not finish within 90 s")
}

pub fn job(script: &str) -> Job {
    Job::from_script(script)
}
