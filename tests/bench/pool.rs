//! The warm pool's benchmark (issue 12): a burst of jobs against a pool whose idle count is
//! smaller than the burst, on the simulator with a production-like boot (30 s BUILD, sshd 5 s
//! after ACTIVE). The first jobs hit (prepare claims a ready VM); the rest miss and provision
//! inline. Prints a markdown report: prepare on a hit, prepare on a miss minus the boot,
//! successes, VMs claimed twice, leaks.
//!
//! `cargo bench --bench pool` (about 2 minutes); `EXECUTOR_BENCH_QUICK=1` for a smoke run;
//! `EXECUTOR_BENCH_POOL_JOBS=10` for a burst no larger than the pool (hits only);
//! `EXECUTOR_BENCH_POOL_IDLE=N` sets the idle count (10).

#[path = "stats.rs"]
#[allow(dead_code)]
mod stats;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use executor_simulator::{CLOUD_NAME, SimCloud, SimOptions};
use gitlab_runner_standin::{Job, JobResult, JobStatus, RunOptions, Runner, RunnerConfig};
use stats::percentile;

struct Plan {
    boot: Duration,
    sshd_after_active: Duration,
    idle: u32,
    jobs: usize,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn prepare_seconds(r: &JobResult) -> f64 {
    r.stages
        .iter()
        .filter(|s| s.name == "prepare")
        .map(|s| s.duration.as_secs_f64())
        .sum()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::var_os("EXECUTOR_BENCH_QUICK").is_some();
    let plan = if quick {
        Plan {
            boot: Duration::from_secs(2),
            sshd_after_active: Duration::from_millis(500),
            idle: 2,
            jobs: 6,
        }
    } else {
        Plan {
            boot: Duration::from_secs(30),
            sshd_after_active: Duration::from_secs(5),
            idle: 10,
            jobs: 50,
        }
    };
    let mut plan = plan;
    let number = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
    if let Some(n) = number("EXECUTOR_BENCH_POOL_JOBS") {
        plan.jobs = n;
    }
    if let Some(n) = number("EXECUTOR_BENCH_POOL_IDLE") {
        plan.idle = n as u32;
    }
    let dir = tempfile::Builder::new()
        .prefix("executor-bench-pool-")
        .tempdir()
        .expect("temp dir");
    let sim = SimCloud::start(SimOptions {
        build_delay: plan.boot,
        ssh_delay: plan.sshd_after_active,
        delete_delay: Duration::from_millis(20),
        prefer_port_22: true,
        instance_quota: 1000,
        state_dir: Some(dir.path().join("servers")),
        ..SimOptions::default()
    })
    .await
    .expect("simulator");
    let clouds = sim.write_clouds_yaml(dir.path()).expect("clouds.yaml");
    let recipe = write_recipe(dir.path(), &plan);
    let env: Vec<(String, String)> = vec![
        ("OS_CLIENT_CONFIG_FILE".into(), clouds.display().to_string()),
        ("OS_CLOUD".into(), CLOUD_NAME.into()),
        ("EXECUTOR_OWNER".into(), "bench".into()),
        (
            "EXPECTED_BOOT_TIME".into(),
            humantime::format_duration(plan.boot).to_string(),
        ),
        (
            "BUILDS_DIR".into(),
            dir.path().join("builds").display().to_string(),
        ),
        (
            "CACHE_DIR".into(),
            dir.path().join("cache").display().to_string(),
        ),
        ("BUILDS_DIR_IS_SHARED".into(), "true".into()),
    ];
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_executor"));
    let mut daemon = Command::new(&exe)
        .arg("--recipe")
        .arg(&recipe)
        .arg("pool")
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("daemon.log")).expect("log"))
        .spawn()
        .expect("executor pool");
    let socket = dir.path().join("run").join("pool.sock");
    let warm_up = std::time::Instant::now();
    loop {
        if let Ok(executor_pool::PoolStatus { idle, .. }) =
            executor_pool::status(&socket, Duration::from_secs(1)).await
            && idle >= plan.idle
        {
            break;
        }
        if let Ok(Some(status)) = daemon.try_wait() {
            panic!(
                "the daemon exited ({status}): {}",
                std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default()
            );
        }
        assert!(
            warm_up.elapsed() < Duration::from_secs(600),
            "the pool never filled"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let warm_up = warm_up.elapsed();

    let mut cfg = RunnerConfig::single_binary(
        exe.clone(),
        gitlab_runner_standin::simulate::driver_args(&[recipe]),
    );
    cfg.service_env = env;
    cfg.default_job_timeout = Duration::from_secs(600);
    let runner = Runner::new(cfg);
    let jobs = (0..plan.jobs).map(|_| Job::from_script("true")).collect();
    let results = runner
        .run_jobs(jobs, plan.jobs, RunOptions::default())
        .await;

    // SAFETY: a signal to our own child.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let _ = daemon.wait();
    let mut leaked = usize::MAX;
    for _ in 0..100 {
        let c = sim.counts();
        leaked = c.servers + c.ports + c.floating_ips + c.keypairs + c.volumes;
        if leaked == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (hits, misses): (Vec<&JobResult>, Vec<&JobResult>) = results
        .iter()
        .partition(|r| r.job_log.contains("claimed warm VM"));
    let hit_prepare: Vec<f64> = hits.iter().map(|r| prepare_seconds(r)).collect();
    let boot = (plan.boot + plan.sshd_after_active).as_secs_f64();
    let miss_extra: Vec<f64> = misses.iter().map(|r| prepare_seconds(r) - boot).collect();
    let claimed: Vec<String> = results
        .iter()
        .flat_map(|r| {
            r.job_log
                .lines()
                .filter_map(|l| l.split("claimed warm VM ").nth(1))
                .filter_map(|rest| rest.split_whitespace().next().map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect();
    let twice = claimed.len() - claimed.iter().collect::<HashSet<_>>().len();
    let ok = results
        .iter()
        .filter(|r| r.status == JobStatus::Success)
        .count();

    println!(
        "## Warm pool (simulator: {}s BUILD, sshd {}s after ACTIVE)\n",
        plan.boot.as_secs(),
        plan.sshd_after_active.as_secs_f64()
    );
    println!(
        "Pool of {} idle VMs filled in {:.1}s; a burst of {} jobs at once.\n",
        plan.idle,
        warm_up.as_secs_f64(),
        plan.jobs
    );
    println!("| measure | p50 | p95 | max | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| prepare on a hit ({} jobs) | {:.3}s | {:.3}s | {:.3}s | p95 ≤ 0.3 s |",
        hit_prepare.len(),
        percentile(&hit_prepare, 0.5),
        percentile(&hit_prepare, 0.95),
        percentile(&hit_prepare, 1.0)
    );
    println!(
        "| prepare on a miss minus the boot ({} jobs) | {:.3}s | {:.3}s | {:.3}s | ≤ 0.4 s |",
        miss_extra.len(),
        percentile(&miss_extra, 0.5),
        percentile(&miss_extra, 0.95),
        percentile(&miss_extra, 1.0)
    );
    println!(
        "\nJobs succeeded: {ok}/{}; VMs claimed twice: {twice}; resources left after the daemon stopped: {leaked}.",
        plan.jobs
    );
    if ok != plan.jobs || twice != 0 || leaked != 0 {
        eprintln!("daemon log: {}", dir.path().join("daemon.log").display());
        let _ = dir.keep();
        std::process::exit(1);
    }
}

fn write_recipe(dir: &Path, plan: &Plan) -> PathBuf {
    let path = dir.join("bench-pool.yaml");
    let text = format!(
        "version: 1\nextends: {}\npool:\n  warm:\n    - key: {{flavor: m1.small, image: ubuntu-24.04}}\n      idle: {}\n  max_instances: {}\n  create_interval: 200ms\n  socket: {}\n  state_dir: {}\n",
        repo().join("recipes/pooled.yaml").display(),
        plan.idle,
        plan.idle as usize + plan.jobs,
        dir.join("run").join("pool.sock").display(),
        dir.join("pool-state").display(),
    );
    std::fs::write(&path, text).expect("recipe");
    path
}
