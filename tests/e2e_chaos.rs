//! The chaos run: at least 200 whole jobs through the stand-in and the real driver with the
//! default recipe, each with faults drawn at random from the simulator's menu. Every job must
//! end with the status its faults justify, and no cloud may hold anything afterwards.
//!
//! Each job gets its own simulated cloud, so that its faults are its own and the expected status
//! follows from them alone (the concurrent-jobs test in e2e_jobs.rs covers jobs sharing one
//! cloud). The seed is printed; replay a run with `EXECUTOR_CHAOS_SEED=<seed>`. Also
//! `EXECUTOR_CHAOS_JOBS` (default 200) and `EXECUTOR_CHAOS_CONCURRENCY` (default 12).

use crate::e2e_support;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::seeded_rng::Rng;
use e2e_support::{Cloud, default_recipe, describe, leaked, settled_counts};
use executor_simulator::Scope;
use gitlab_runner_standin::{Job, JobResult, JobStatus, RunOptions, Runner};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BootErrors {
    None,
    /// The first n creates land in ERROR; boot_attempts (3) absorbs them.
    First(u32),
    /// Every create lands in ERROR: all three prepare attempts fail.
    All,
}

/// One job's faults, drawn from the simulator's menu.
#[derive(Debug, Clone)]
struct Faults {
    /// 503s for the first n API requests (n <= 2: a prepare attempt is left clean).
    api_5xx: u32,
    /// 429s with Retry-After 1 for the first n API requests.
    api_429: u32,
    /// Every API request delayed this long.
    slow_api: Option<Duration>,
    boot_errors: BootErrors,
    /// sshd accepts connections this long after ACTIVE.
    late_sshd: Option<Duration>,
    /// The server's SSH endpoint dies while the build script runs.
    ssh_drop: bool,
    /// Every token is revoked this long after the job starts.
    token_expiry: Option<Duration>,
    /// Not a fault: the script exits 42.
    exit_42: bool,
}

impl Faults {
    fn draw(rng: &mut Rng) -> Faults {
        let boot_errors = match rng.range(0, 99) {
            0..=6 => BootErrors::All,
            7..=21 => BootErrors::First(rng.range(1, 2) as u32),
            _ => BootErrors::None,
        };
        Faults {
            api_5xx: if rng.chance(25) {
                rng.range(1, 2) as u32
            } else {
                0
            },
            api_429: if rng.chance(12) {
                rng.range(1, 2) as u32
            } else {
                0
            },
            slow_api: rng
                .chance(20)
                .then(|| Duration::from_millis(rng.range(10, 60))),
            boot_errors,
            late_sshd: rng
                .chance(25)
                .then(|| Duration::from_millis(rng.range(200, 1500))),
            ssh_drop: rng.chance(8),
            token_expiry: rng
                .chance(25)
                .then(|| Duration::from_millis(rng.range(0, 4000))),
            exit_42: rng.chance(15),
        }
    }

    /// The status these faults justify. Transient API errors, rate limits, slowness, a few
    /// ERROR boots, a late sshd and revoked tokens are all absorbed (retries, boot_attempts,
    /// re-authentication, the SSH probe); a cloud that never boots a server is a system
    /// failure after three prepare attempts; losing the server mid-script is a system failure;
    /// otherwise the script decides.
    fn expected(&self) -> JobStatus {
        if self.boot_errors == BootErrors::All || self.ssh_drop {
            JobStatus::SystemFailure
        } else if self.exit_42 {
            JobStatus::ScriptFailure
        } else {
            JobStatus::Success
        }
    }

    fn script(&self) -> &'static str {
        if self.ssh_drop {
            "touch \"$HOME/ready\"\nsleep 120\necho survived"
        } else if self.exit_42 {
            "echo chaos\nexit 42"
        } else {
            "echo chaos-ok on $(basename \"$HOME\")"
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Runs one job in its own cloud; returns the problems found (empty when all is as expected).
async fn one_job(index: u64, faults: Faults) -> Result<JobResult, String> {
    let cloud = Cloud::start_with(|o| {
        if let Some(d) = faults.late_sshd {
            o.ssh_delay = d;
        }
    })
    .await;
    let sim_faults = cloud.sim.faults();
    if faults.api_5xx > 0 {
        sim_faults.http_errors(503, faults.api_5xx, Scope::any());
    }
    if faults.api_429 > 0 {
        sim_faults.rate_limit(faults.api_429, Duration::from_secs(1), Scope::any());
    }
    if let Some(d) = faults.slow_api {
        sim_faults.slow(d, None, Scope::any());
    }
    match faults.boot_errors {
        BootErrors::None => {}
        BootErrors::First(_) | BootErrors::All => sim_faults.set_create_error_share(1.0),
    }
    let cloud = Arc::new(cloud);
    let done = tokio_util::sync::CancellationToken::new();
    let mut watchers = tokio::task::JoinSet::new();
    if let BootErrors::First(n) = faults.boot_errors {
        let (cloud, done) = (cloud.clone(), done.clone());
        watchers.spawn(async move {
            while !done.is_cancelled() {
                let created = cloud
                    .sim
                    .request_log()
                    .records
                    .iter()
                    .filter(|r| {
                        r.method == "POST" && r.path.ends_with("/servers") && r.status < 300
                    })
                    .count();
                if created >= n as usize {
                    cloud.sim.faults().set_create_error_share(0.0);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
    }
    if faults.ssh_drop {
        let (cloud, done) = (cloud.clone(), done.clone());
        watchers.spawn(async move {
            while !done.is_cancelled() {
                if let Some(dir) = cloud
                    .server_dirs()
                    .into_iter()
                    .find(|d| d.join("ready").exists())
                {
                    let id = dir.file_name().unwrap_or_default().to_string_lossy();
                    cloud.sim.faults().drop_ssh(&id);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
    if let Some(after) = faults.token_expiry {
        let (cloud, done) = (cloud.clone(), done.clone());
        watchers.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(after) => cloud.sim.expire_tokens(),
                _ = done.cancelled() => {}
            }
        });
    }

    let mut cfg = cloud.runner_config(&[default_recipe()], "chaos");
    // The simulated VMs share this machine's file system, and every job here has a runner of
    // its own, so the same concurrency slot: a builds dir per job keeps jobs out of each
    // other's project directories, as separate VMs would.
    let own = cloud.dir.path().join(format!("job-{index}"));
    cfg.service_env.push((
        "BUILDS_DIR".into(),
        own.join("builds").display().to_string(),
    ));
    cfg.service_env
        .push(("CACHE_DIR".into(), own.join("cache").display().to_string()));
    // Far above what any fault here justifies; a job that needs it has hung somewhere.
    cfg.default_job_timeout = Duration::from_secs(150);
    let mut job = Job::from_script(faults.script());
    job.id = Some(10_000 + index);
    job.name = format!("chaos-{index}");
    let runner = Runner::new(cfg);
    let run = runner.run_job_with(&job, RunOptions::default());
    let Ok(r) = tokio::time::timeout(Duration::from_secs(400), run).await else {
        done.cancel();
        return Err(format!(
            "job {index} {faults:?}: did not finish within 400 s"
        ));
    };
    done.cancel();
    while watchers.join_next().await.is_some() {}

    let mut problems = String::new();
    let want = faults.expected();
    if r.status != want {
        let _ = write!(
            problems,
            "status {} (expected {})",
            r.status.as_str(),
            want.as_str()
        );
    }
    if want == JobStatus::ScriptFailure && r.exit_code != Some(42) {
        let _ = write!(problems, "; exit code {:?} (expected 42)", r.exit_code);
    }
    if faults.boot_errors == BootErrors::All && (r.attempts, r.cleanup_calls) != (3, 3) {
        let _ = write!(
            problems,
            "; attempts/cleanups {}/{} (expected 3/3)",
            r.attempts, r.cleanup_calls
        );
    }
    if r.cleanup_calls != r.attempts {
        let _ = write!(
            problems,
            "; {} cleanups for {} attempts",
            r.cleanup_calls, r.attempts
        );
    }
    let log = cloud.sim.request_log();
    let answered = |status: u16| log.records.iter().filter(|r| r.status == status).count();
    if answered(503) != faults.api_5xx as usize {
        let _ = write!(
            problems,
            "; {} 503s injected, {} answered",
            faults.api_5xx,
            answered(503)
        );
    }
    if answered(429) != faults.api_429 as usize {
        let _ = write!(
            problems,
            "; {} 429s injected, {} answered",
            faults.api_429,
            answered(429)
        );
    }
    let counts = settled_counts(&cloud.sim).await;
    if leaked(&counts) > 0 {
        let _ = write!(problems, "; left behind: {}", describe(&counts));
    }
    let cloud = Arc::into_inner(cloud).expect("watchers are done");
    cloud.sim.shutdown().await;
    if problems.is_empty() {
        Ok(r)
    } else {
        Err(format!(
            "job {} {faults:?}: {}\n  {}\n--- job log (tail) ---\n{}\n--- runner log (tail) ---\n{}",
            index,
            problems.trim_start_matches("; "),
            r.summary_line(),
            tail(&r.job_log, 30),
            tail(&r.runner_log.join("\n"), 15),
        ))
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_run_every_job_ends_as_its_faults_justify_and_nothing_leaks() {
    let seed = env_u64("EXECUTOR_CHAOS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let jobs = env_u64("EXECUTOR_CHAOS_JOBS").unwrap_or(200);
    let concurrency = env_u64("EXECUTOR_CHAOS_CONCURRENCY").unwrap_or(12).max(1) as usize;
    let banner = format!(
        "chaos run: {jobs} jobs, {concurrency} at a time, seed {seed} (replay with EXECUTOR_CHAOS_SEED={seed})"
    );
    println!("{banner}");
    eprintln!("{banner}");

    let mut rng = Rng(seed);
    let plan: Vec<Faults> = (0..jobs).map(|_| Faults::draw(&mut rng)).collect();
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (i, faults) in plan.iter().cloned().enumerate() {
        let gate = gate.clone();
        set.spawn(async move {
            let _permit = gate.acquire_owned().await;
            (i, one_job(i as u64, faults).await)
        });
    }
    let mut failures = Vec::new();
    let mut tally: std::collections::BTreeMap<&str, usize> = Default::default();
    let bound = Duration::from_secs(1500);
    while let Some(joined) = tokio::time::timeout(bound, set.join_next())
        .await
        .unwrap_or_else(|_| panic!("{banner}: not done within {bound:?}"))
    {
        let (i, outcome) = joined.expect("job task");
        match outcome {
            Ok(r) => *tally.entry(r.status.as_str()).or_default() += 1,
            Err(e) => {
                *tally.entry("unexpected").or_default() += 1;
                failures.push((i, e));
            }
        }
    }
    let summary = format!(
        "{banner}: finished in {:.0}s: {tally:?}",
        started.elapsed().as_secs_f64()
    );
    println!("{summary}");
    eprintln!("{summary}");
    failures.sort_by_key(|(i, _)| *i);
    assert!(
        failures.is_empty(),
        "{summary}\n{} job(s) did not end as their faults justify:\n{}",
        failures.len(),
        failures
            .iter()
            .map(|(_, e)| e.as_str())
            .collect::<Vec<_>>()
            .join("\n\n")
    );
    assert_eq!(tally.values().sum::<usize>(), jobs as usize);
}
