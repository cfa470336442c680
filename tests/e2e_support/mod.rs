//! End-to-end harness: the real `executor` binary as the driver, called by the gitlab-runner
//! stand-in exactly as `[runners.custom]` would, against an in-process simulated cloud.
use std::path::{Path, PathBuf};
use std::time::Duration;

use executor_simulator::{CLOUD_NAME, Counts, SimCloud, SimOptions};
use gitlab_runner_standin::{Job, JobResult, RunOptions, Runner, RunnerConfig};

/// The shipped default recipe.
pub fn default_recipe() -> PathBuf {
    repo().join("recipes/openstack.yaml")
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The driver under test: this crate's binary.
pub fn driver() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_executor"))
}

/// Simulator options for end-to-end runs: tiny delays, per-server directories under `dir`
/// (so tests can look at the "VM"'s files). SSH prefers port 22, as the default recipe
/// expects: the simulator publishes another port only once sshd is up, too late for a recipe
/// that reads it when the server turns ACTIVE (see the late-sshd fault of the chaos run).
pub fn sim_options(dir: &Path) -> SimOptions {
    SimOptions {
        build_delay: Duration::from_millis(50),
        delete_delay: Duration::from_millis(20),
        ssh_delay: Duration::ZERO,
        prefer_port_22: true,
        instance_quota: 100,
        state_dir: Some(dir.join("servers")),
        ..SimOptions::default()
    }
}

/// One simulated cloud, its clouds.yaml and a directory for everything else.
pub struct Cloud {
    pub sim: SimCloud,
    pub dir: tempfile::TempDir,
    pub clouds_yaml: PathBuf,
}

impl Cloud {
    pub async fn start() -> Cloud {
        Self::start_with(|_| {}).await
    }

    /// Starts with [`sim_options`] adjusted by `tune`.
    pub async fn start_with(tune: impl FnOnce(&mut SimOptions)) -> Cloud {
        let dir = tempfile::Builder::new()
            .prefix("executor-e2e-")
            .tempdir()
            .expect("temp dir");
        let mut opts = sim_options(dir.path());
        tune(&mut opts);
        let sim = SimCloud::start(opts).await.expect("simulator starts");
        let clouds_yaml = sim.write_clouds_yaml(dir.path()).expect("clouds.yaml");
        Cloud {
            sim,
            dir,
            clouds_yaml,
        }
    }

    /// The runner service's environment that points the driver at this cloud.
    pub fn service_env(&self, owner: &str) -> Vec<(String, String)> {
        vec![
            (
                "OS_CLIENT_CONFIG_FILE".into(),
                self.clouds_yaml.display().to_string(),
            ),
            ("OS_CLOUD".into(), CLOUD_NAME.into()),
            ("EXECUTOR_OWNER".into(), owner.into()),
            ("EXPECTED_BOOT_TIME".into(), "50ms".into()),
            // Simulated servers share this machine's file system: builds stay in this test's
            // directory, one per concurrent slot, as `executor simulate` arranges them.
            (
                "BUILDS_DIR".into(),
                self.dir.path().join("builds").display().to_string(),
            ),
            (
                "CACHE_DIR".into(),
                self.dir.path().join("cache").display().to_string(),
            ),
            ("BUILDS_DIR_IS_SHARED".into(), "true".into()),
            // The driver's name-lookup cache stays in the test's directory, out of /home.
            (
                "XDG_CACHE_HOME".into(),
                self.dir.path().join("cache-home").display().to_string(),
            ),
        ]
    }

    /// A runner whose four stages call `executor --recipe <recipes> <stage>`, with gitlab-runner's
    /// waits shrunk for tests.
    pub fn runner_config(&self, recipes: &[PathBuf], owner: &str) -> RunnerConfig {
        let mut cfg = RunnerConfig::single_binary(
            driver(),
            gitlab_runner_standin::simulate::driver_args(recipes),
        );
        cfg.service_env = self.service_env(owner);
        cfg.preparation_retry_interval = Duration::from_millis(100);
        cfg.graceful_kill_timeout = Duration::from_secs(20);
        cfg.force_kill_timeout = Duration::from_secs(5);
        cfg.cleanup_exec_timeout = Duration::from_secs(120);
        cfg.default_job_timeout = Duration::from_secs(240);
        cfg
    }

    pub fn runner(&self, owner: &str) -> Runner {
        Runner::new(self.runner_config(&[default_recipe()], owner))
    }

    /// The per-server working directories ("the VM's home"), one per server ever booted.
    pub fn server_dirs(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("servers"))
            .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Waits (bounded) until some server's directory holds `file`; returns that directory.
    pub async fn wait_for_server_file(&self, file: &str, within: Duration) -> PathBuf {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(d) = self
                .server_dirs()
                .into_iter()
                .find(|d| d.join(file).exists())
            {
                return d;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no server ever wrote {file}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The OpenStack back end, logged in to this cloud as the driver would be, for a test to
    /// arrange or inspect the cloud through the real API.
    pub async fn connect(&self) -> executor_cloud::OpenStack {
        let settings = executor_cloud::CloudSettings {
            cloud: Some(CLOUD_NAME.into()),
            clouds_yaml: Some(self.clouds_yaml.clone()),
            ..executor_cloud::CloudSettings::default()
        };
        executor_cloud::OpenStack::connect_with_env(&settings, &|_| None)
            .await
            .expect("connects to the simulator")
    }

    /// `executor gc --recipe <default recipe> <args>` with the runner host's environment `env`:
    /// (exit code, stdout, stderr).
    pub fn gc(&self, env: &[(String, String)], args: &[&str]) -> (i32, String, String) {
        let out = std::process::Command::new(driver())
            .arg("gc")
            .arg("--recipe")
            .arg(default_recipe())
            .args(args)
            .envs(env.iter().cloned())
            .stdin(std::process::Stdio::null())
            .output()
            .expect("runs executor gc");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Counts once deletions that were accepted have settled (bounded wait for all zero).
    pub async fn settled_counts(&self) -> Counts {
        settled_counts(&self.sim).await
    }
}

pub async fn settled_counts(sim: &SimCloud) -> Counts {
    let mut counts = sim.counts();
    for _ in 0..100 {
        if leaked(&counts) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        counts = sim.counts();
    }
    counts
}

/// Servers, ports, floating IPs, key pairs and volumes still held.
pub fn leaked(c: &Counts) -> usize {
    c.servers + c.ports + c.floating_ips + c.keypairs + c.volumes
}

pub fn describe(c: &Counts) -> String {
    format!(
        "{} servers, {} ports, {} floating IPs, {} key pairs, {} volumes",
        c.servers, c.ports, c.floating_ips, c.keypairs, c.volumes
    )
}

/// Runs a job with a hard bound, so that a hang fails the test instead of blocking the suite.
pub async fn run_bounded(runner: &Runner, job: &Job, opts: RunOptions) -> JobResult {
    tokio::time::timeout(Duration::from_secs(300), runner.run_job_with(job, opts))
        .await
        .expect("job did not finish within 300 s")
}

/// Everything a failed assertion should show about a job.
pub fn explain(r: &JobResult) -> String {
    format!(
        "{}\n--- job log ---\n{}\n--- runner log ---\n{}",
        r.summary_line(),
        r.job_log,
        r.runner_log.join("\n")
    )
}

/// Whether a process is gone (absent, or a zombie nobody reaped yet).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}

/// Waits (bounded) until `pid` is gone.
pub async fn wait_gone(pid: u32, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if process_gone(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    process_gone(pid)
}

/// The rest of the first line of `log` that starts with `prefix` (so the echoed command, which
/// starts with `$ `, never matches).
pub fn line_value<'a>(log: &'a str, prefix: &str) -> Option<&'a str> {
    log.lines()
        .find_map(|l| l.strip_prefix(prefix).map(str::trim))
}
