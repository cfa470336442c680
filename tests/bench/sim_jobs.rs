//! Whole jobs through the gitlab-runner stand-in against the simulated cloud, with the default
//! recipe, every stage process measured by the wrapper, and every API request logged.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use executor_simulator::{CLOUD_NAME, Counts, RequestRecord, SimCloud, SimOptions, SshMode};
use gitlab_runner_standin::simulate::driver_args;
use gitlab_runner_standin::{Job, JobResult, JobStatus, RunOptions, Runner, RunnerConfig};

use super::proc_usage::unix_ns;
use super::stage_wrapper::{self, Record};

pub struct Scenario {
    pub boot: Duration,
    pub ssh_delay: Duration,
    pub ssh_mode: SshMode,
    /// Measure the OpenSSH floor after each run sub-stage.
    pub floor: bool,
}

pub struct Harness {
    pub sim: SimCloud,
    runner: Runner,
    /// Unix time (ns) of the simulator's start, to place its request log on the wrapper's clock.
    epoch_ns: u128,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// What one batch of jobs produced.
pub struct Batch {
    pub results: Vec<JobResult>,
    pub wall: Duration,
    pub records: Vec<Record>,
    /// (unix ns, request)
    pub requests: Vec<(u128, RequestRecord)>,
}

impl Batch {
    pub fn successes(&self) -> usize {
        self.results
            .iter()
            .filter(|r| r.status == JobStatus::Success)
            .count()
    }

    /// Stage records (not floors) grouped by job attempt, in start order.
    pub fn jobs(&self) -> Vec<Vec<&Record>> {
        let mut by: std::collections::BTreeMap<&str, Vec<&Record>> = Default::default();
        for r in self.records.iter().filter(|r| !r.floor) {
            by.entry(&r.job_dir).or_default().push(r);
        }
        let mut out: Vec<Vec<&Record>> = by.into_values().collect();
        for j in &mut out {
            j.sort_by_key(|r| r.usage.start_ns);
        }
        out
    }

    /// Requests answered while this stage process was alive.
    pub fn requests_of(&self, r: &Record) -> Vec<&RequestRecord> {
        self.requests
            .iter()
            .filter(|(t, _)| *t >= r.usage.start_ns && *t <= r.usage.end_ns)
            .map(|(_, q)| q)
            .collect()
    }
}

/// Names another `executor` binary to measure (a lean build, an older commit's) instead of the
/// one cargo built with the benchmark.
pub const EXECUTOR_ENV: &str = "EXECUTOR_BENCH_EXECUTOR";

/// The `executor` binary whose stages are measured.
pub fn executor_under_test() -> PathBuf {
    std::env::var_os(EXECUTOR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_executor")))
}

pub fn recipe() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/openstack.yaml")
}

impl Harness {
    pub async fn start(sc: &Scenario) -> Harness {
        let epoch_ns = unix_ns();
        let sim = SimCloud::start(SimOptions {
            build_delay: sc.boot,
            ssh_delay: sc.ssh_delay,
            ssh_mode: sc.ssh_mode,
            // As a non-root simulator would: each server's SSH port is a free one, published
            // in its metadata, which the recipe must read.
            prefer_port_22: false,
            instance_quota: 1000,
            ..SimOptions::default()
        })
        .await
        .expect("simulated cloud starts");
        let dir = tempfile::Builder::new()
            .prefix("executor-bench-")
            .tempdir()
            .expect("tempdir");
        let clouds = sim.write_clouds_yaml(dir.path()).expect("clouds.yaml");
        let log = dir.path().join("stages.tsv");
        // The simulated servers share this machine's file system, so jobs of one project would
        // share `/home/<user>/builds` and remove each other's files; a real VM has its own
        // disk. A site override gives each job its own directories instead.
        let vm = dir.path().join("vm");
        let site = dir.path().join("site.yaml");
        std::fs::write(
            &site,
            format!(
                "version: 1
config:
  builds_dir: \"{vm}/{{{{ vars.job_id }}}}/builds\"\n  cache_dir: \"{vm}/{{{{ vars.job_id }}}}/cache\"\n",
                vm = vm.display()
            ),
        )
        .expect("site override");
        let me = std::env::current_exe().expect("bench binary");
        let mut cfg = RunnerConfig::single_binary(me, driver_args(&[recipe(), site]));
        let user = executor_simulator::openssh_server::current_user().expect("current user");
        cfg.service_env = vec![
            ("OS_CLIENT_CONFIG_FILE".into(), clouds.display().to_string()),
            ("OS_CLOUD".into(), CLOUD_NAME.into()),
            (
                "EXPECTED_BOOT_TIME".into(),
                humantime::format_duration(sc.boot).to_string(),
            ),
            // A real sshd lets in only the user the simulator runs as.
            ("USERNAME".into(), user),
            (
                stage_wrapper::DRIVER_ENV.into(),
                executor_under_test().display().to_string(),
            ),
            (stage_wrapper::LOG_ENV.into(), log.display().to_string()),
            (
                stage_wrapper::FLOOR_ENV.into(),
                if sc.floor { "1" } else { "0" }.into(),
            ),
        ];
        cfg.preparation_retry_interval = Duration::from_secs(1);
        Harness {
            sim,
            runner: Runner::new(cfg),
            epoch_ns,
            log,
            _dir: dir,
        }
    }

    /// Runs `jobs` with at most `concurrency` at once; returns only this batch's records.
    pub async fn run(&self, jobs: Vec<Job>, concurrency: usize) -> Batch {
        let before_records = stage_wrapper::read_log(&self.log).len();
        let before_requests = self.sim.request_log().len();
        let started = Instant::now();
        let results = self
            .runner
            .run_jobs(jobs, concurrency, RunOptions::default())
            .await;
        let wall = started.elapsed();
        let records = stage_wrapper::read_log(&self.log)
            .into_iter()
            .skip(before_records)
            .collect();
        let requests = self
            .sim
            .request_log()
            .records
            .into_iter()
            .skip(before_requests)
            .map(|r| (self.epoch_ns + r.at.as_nanos(), r))
            .collect();
        for r in results.iter().filter(|r| r.status != JobStatus::Success) {
            eprintln!("job {} failed: {:?}\n{}", r.job_id, r.error, r.job_log);
        }
        Batch {
            results,
            wall,
            records,
            requests,
        }
    }

    /// Resources left in the cloud, after giving accepted deletions a moment to finish.
    pub async fn leaked(&self) -> usize {
        let total = |c: Counts| c.servers + c.ports + c.floating_ips + c.keypairs + c.volumes;
        for _ in 0..50 {
            if total(self.sim.counts()) == 0 {
                return 0;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        total(self.sim.counts())
    }
}
