//! `executor simulate`: one or more CI jobs, end to end, on this machine. The embedded simulated
//! OpenStack plays the cloud, the gitlab-runner stand-in plays the runner, and the real
//! `executor` binary (this one) is the driver, called with the given `--recipe` files exactly as
//! `[runners.custom]` would call it.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use executor_simulator::{CLOUD_NAME, Scope, SimCloud, SimOptions};

use super::{Job, JobControl, JobResult, JobStatus, LiveWriter, RunOptions, Runner, RunnerConfig};

/// `executor simulate`
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  executor simulate --recipe recipes/openstack.yaml --script 'uname -a'
  executor simulate --recipe recipes/openstack.yaml --job .gitlab-ci.yml --jobs 5 --api-5xx 3")]
pub struct SimulateArgs {
    /// Job file: a small `.gitlab-ci.yml` subset (script, after_script, variables, timeout,
    /// allow_failure: exit_codes). Every job in it is run.
    #[arg(long, conflicts_with = "script", required_unless_present = "script")]
    pub job: Option<PathBuf>,
    /// The job's script, one command per line.
    #[arg(long)]
    pub script: Option<String>,
    /// How many copies of the job(s) to run at the same time.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=200))]
    pub jobs: u32,
    /// Time a new server spends in BUILD before ACTIVE.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub boot_delay: Duration,
    /// Time between ACTIVE and the server's sshd accepting connections.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub ssh_delay: Duration,
    /// Nova's instance quota of the simulated project (Nova's default is 10): creates beyond
    /// it are refused with Nova's 403, as on a shared project whose quota runs out.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub quota: usize,
    /// Fault: the next N API requests answer 503.
    #[arg(long, default_value_t = 0)]
    pub api_5xx: u32,
    /// Fault: the next N API requests answer 429 with Retry-After: 1.
    #[arg(long, default_value_t = 0)]
    pub api_429: u32,
    /// Fault: every API request is delayed this long.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub slow_api: Option<Duration>,
    /// Fault: this share (0.0 to 1.0) of new servers goes to ERROR instead of ACTIVE.
    #[arg(long, default_value_t = 0.0)]
    pub error_boots: f64,
    /// Fault: every issued token becomes invalid after this long.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub expire_tokens_after: Option<Duration>,
    /// Job timeout when the job file sets none.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// `graceful_kill_timeout` of the runner (gitlab-runner's default is 10m).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub graceful_kill_timeout: Duration,
    /// Pause between prepare attempts (gitlab-runner's is 3s).
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub retry_interval: Duration,
    /// Cancel every job once the driver is invoked for this stage (e.g. `build_script`), as a
    /// user pressing Cancel in GitLab: after_script and the `_on_failure` stages still run.
    #[arg(long, value_name = "STAGE")]
    pub cancel_during: Option<String>,
    /// How long after that stage started to cancel.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub cancel_delay: Duration,
    /// With --cancel-during: a force cancel (abort) instead; only cleanup follows.
    #[arg(long, requires = "cancel_during")]
    pub abort: bool,
    /// Do not mirror the job log while it runs; print only the summary lines.
    #[arg(long)]
    pub quiet: bool,
    /// Run the warm-pool daemon (`executor pool`) beside the runner, wait until it has this
    /// many VMs ready (at most as many as the recipe keeps warm), then start the jobs. The
    /// recipe needs a `pool:` block.
    #[arg(long, value_name = "READY")]
    pub pool: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("simulate needs at least one --recipe")]
    NoRecipe,
    #[error("reading {path}: {source}")]
    ReadJob {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    JobFile(#[from] super::JobFileError),
    #[error("--script is empty")]
    EmptyScript,
    #[error("cannot find this executable to use as the driver: {0}")]
    CurrentExe(std::io::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Sim(#[from] executor_simulator::SimError),
    #[error("writing clouds.yaml: {0}")]
    CloudsYaml(std::io::Error),
}

/// Runs the command; returns the process exit code (0 when every job succeeded or was allowed to
/// fail, 1 when one failed, 3 when the simulated cloud still holds resources afterwards).
pub fn run(recipes: &[PathBuf], args: SimulateArgs) -> i32 {
    match run_inner(recipes, &args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

fn run_inner(recipes: &[PathBuf], args: &SimulateArgs) -> Result<i32, SimulateError> {
    if recipes.is_empty() {
        return Err(SimulateError::NoRecipe);
    }
    let jobs = load_jobs(args)?;
    let driver = std::env::current_exe().map_err(SimulateError::CurrentExe)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(SimulateError::Runtime)?;
    rt.block_on(simulate(driver, recipes, args, jobs))
}

fn load_jobs(args: &SimulateArgs) -> Result<Vec<Job>, SimulateError> {
    match (&args.job, &args.script) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|source| SimulateError::ReadJob {
                path: path.clone(),
                source,
            })?;
            Ok(Job::parse_file(&text)?)
        }
        (None, Some(script)) => {
            let job = Job::from_script(script);
            if job.script.is_empty() {
                return Err(SimulateError::EmptyScript);
            }
            Ok(vec![job])
        }
        (None, None) => Err(SimulateError::EmptyScript),
    }
}

/// The driver invocation `[runners.custom]` would configure: `executor --recipe F... <stage>`.
pub fn driver_args(recipes: &[PathBuf]) -> Vec<OsString> {
    recipes
        .iter()
        .flat_map(|r| [OsString::from("--recipe"), absolute(r).into_os_string()])
        .collect()
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

async fn simulate(
    driver: PathBuf,
    recipes: &[PathBuf],
    args: &SimulateArgs,
    jobs: Vec<Job>,
) -> Result<i32, SimulateError> {
    let sim = SimCloud::start(SimOptions {
        build_delay: args.boot_delay,
        ssh_delay: args.ssh_delay,
        instance_quota: args.quota,
        ..SimOptions::default()
    })
    .await?;
    let dir = tempfile::Builder::new()
        .prefix("executor-simulate-")
        .tempdir()
        .map_err(SimulateError::CloudsYaml)?;
    let clouds = sim
        .write_clouds_yaml(dir.path())
        .map_err(SimulateError::CloudsYaml)?;
    apply_faults(&sim, args);

    let mut cfg = RunnerConfig::single_binary(driver.clone(), driver_args(recipes));
    cfg.service_env = vec![
        ("OS_CLIENT_CONFIG_FILE".into(), clouds.display().to_string()),
        ("OS_CLOUD".into(), CLOUD_NAME.into()),
        // Simulated servers share this machine's file system: keep builds in the simulation's
        // own directory, one per concurrent slot (gitlab-runner's shared-builds-dir layout).
        (
            "BUILDS_DIR".into(),
            dir.path().join("builds").display().to_string(),
        ),
        (
            "CACHE_DIR".into(),
            dir.path().join("cache").display().to_string(),
        ),
        ("BUILDS_DIR_IS_SHARED".into(), "true".into()),
        // A site tunes this to its cloud's usual boot time; the simulator knows it exactly.
        (
            "EXPECTED_BOOT_TIME".into(),
            humantime::format_duration(args.boot_delay).to_string(),
        ),
    ];
    let pool = match args.pool {
        Some(ready) => {
            let daemon = PoolDaemon::start(&driver, &mut cfg, dir.path(), recipes).await?;
            daemon.wait_ready(ready).await;
            Some(daemon)
        }
        None => None,
    };
    cfg.default_job_timeout = args.timeout;
    cfg.graceful_kill_timeout = args.graceful_kill_timeout;
    cfg.preparation_retry_interval = args.retry_interval;
    let runner = Runner::new(cfg);

    let all: Vec<Job> = (0..args.jobs).flat_map(|_| jobs.iter().cloned()).collect();
    let single = all.len() == 1;
    let stdout: LiveWriter = Arc::new(Mutex::new(std::io::stdout()));
    let stderr: LiveWriter = Arc::new(Mutex::new(RunnerLogWriter {
        inner: std::io::stderr(),
        at_line_start: true,
    }));
    let count = all.len();
    let mut handles = Vec::new();
    for job in all {
        let control = JobControl::new();
        if let Some(stage) = args.cancel_during.clone() {
            let (control, delay, abort) = (control.clone(), args.cancel_delay, args.abort);
            tokio::spawn(async move {
                control.wait_for_stage(&stage).await;
                tokio::time::sleep(delay).await;
                if abort {
                    control.abort()
                } else {
                    control.cancel()
                }
            });
        }
        let options = RunOptions {
            control: Some(control),
            live_log: (single && !args.quiet).then(|| stdout.clone()),
            runner_log: (single && !args.quiet).then(|| stderr.clone()),
        };
        let runner = runner.clone();
        handles.push(tokio::spawn(async move {
            runner.run_job_with(&job, options).await
        }));
    }
    let mut results = Vec::new();
    for h in handles {
        if let Ok(r) = h.await {
            results.push(r);
        }
    }

    let mut out = std::io::stdout().lock();
    if !single && !args.quiet {
        for r in &results {
            let _ = writeln!(out, "==== job {} ({}) ====", r.job_id, r.job_name);
            let _ = out.write_all(r.job_log.as_bytes());
        }
    }
    for r in &results {
        let _ = writeln!(out, "{}", r.summary_line());
    }
    if let Some(daemon) = pool {
        daemon.stop().await;
    }
    // Give deletions that were accepted but not yet finished a moment to complete.
    let mut counts = sim.counts();
    for _ in 0..50 {
        if counts.servers == 0
            && counts.ports == 0
            && counts.floating_ips == 0
            && counts.keypairs == 0
            && counts.volumes == 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        counts = sim.counts();
    }
    let leaked =
        counts.servers + counts.ports + counts.floating_ips + counts.keypairs + counts.volumes;
    let _ = writeln!(
        out,
        "simulated cloud after the jobs: {} servers, {} ports, {} floating IPs, {} key pairs, {} volumes",
        counts.servers, counts.ports, counts.floating_ips, counts.keypairs, counts.volumes
    );
    drop(out);
    sim.shutdown().await;
    Ok(exit_code(&results, count, leaked))
}

/// `executor pool` as a child, as a site would run it beside gitlab-runner.
struct PoolDaemon {
    child: tokio::process::Child,
    socket: PathBuf,
}

impl PoolDaemon {
    /// Starts the daemon with the runner's environment, and gives that environment the
    /// daemon's runtime directory, where the stages find its socket.
    async fn start(
        driver: &Path,
        cfg: &mut RunnerConfig,
        dir: &Path,
        recipes: &[PathBuf],
    ) -> Result<PoolDaemon, SimulateError> {
        let run_dir = dir.join("run");
        cfg.service_env
            .push(("XDG_RUNTIME_DIR".into(), run_dir.display().to_string()));
        let child = tokio::process::Command::new(driver)
            .args(driver_args(recipes))
            .arg("pool")
            .envs(
                cfg.service_env
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .env("STATE_DIRECTORY", dir.join("pool-state"))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(SimulateError::CurrentExe)?;
        Ok(PoolDaemon {
            child,
            socket: run_dir.join("executor").join("pool.sock"),
        })
    }

    /// Waits (at most two minutes) until `ready` VMs are idle, or as many as the recipe keeps
    /// warm when that is fewer: the daemon never makes more.
    async fn wait_ready(&self, ready: u32) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        let mut told = false;
        while tokio::time::Instant::now() < deadline {
            if let Ok(s) = executor_pool::status(&self.socket, Duration::from_secs(1)).await {
                if s.wanted < ready && !told {
                    eprintln!(
                        "pool: the recipe keeps {} VM(s) warm, not {ready}; waiting for those",
                        s.wanted
                    );
                    told = true;
                }
                if s.idle >= ready.min(s.wanted) {
                    eprintln!("pool: {} VM(s) ready", s.idle);
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!("pool: fewer than {ready} VM(s) ready after 2 minutes; starting anyway");
    }

    /// SIGTERM, as systemd would send: the daemon deletes its idle VMs and exits.
    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill with a pid we own and a valid signal number.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        let _ = tokio::time::timeout(Duration::from_secs(120), self.child.wait()).await;
    }
}

fn exit_code(results: &[JobResult], expected: usize, leaked: usize) -> i32 {
    if leaked > 0 {
        return 3;
    }
    let ok = results.len() == expected
        && results
            .iter()
            .all(|r| r.status == JobStatus::Success || r.allowed_to_fail);
    if ok { 0 } else { 1 }
}

fn apply_faults(sim: &SimCloud, args: &SimulateArgs) {
    let faults = sim.faults();
    if args.api_5xx > 0 {
        faults.http_errors(503, args.api_5xx, Scope::any());
    }
    if args.api_429 > 0 {
        faults.rate_limit(args.api_429, Duration::from_secs(1), Scope::any());
    }
    if let Some(delay) = args.slow_api {
        faults.slow(delay, None, Scope::any());
    }
    if args.error_boots > 0.0 {
        faults.set_create_error_share(args.error_boots.clamp(0.0, 1.0));
    }
    if let Some(after) = args.expire_tokens_after {
        let faults = faults.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            faults.expire_tokens();
        });
    }
}

/// Cleanup output goes to the runner's own log; on a terminal it is shown apart, prefixed.
struct RunnerLogWriter<W: Write> {
    inner: W,
    at_line_start: bool,
}

impl<W: Write> Write for RunnerLogWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for line in buf.split_inclusive(|b| *b == b'\n') {
            if self.at_line_start {
                self.inner.write_all(b"[runner log] ")?;
            }
            self.inner.write_all(line)?;
            self.at_line_start = line.ends_with(b"\n");
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
