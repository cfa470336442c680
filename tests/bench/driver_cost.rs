//! The driver's cost per job, set against floors measured in the same run (issue 8), plus the
//! log-streaming benchmark of the SSH back end (issue 5). Prints a markdown report.
//!
//! `cargo bench --bench driver_cost` (about 5 minutes on 2 cores);
//! `EXECUTOR_BENCH_QUICK=1 cargo bench --bench driver_cost` for a smoke run.
//! `EXECUTOR_BENCH_ONLY=overhead,streaming` runs only the named sections (`overhead`, `economy`,
//! `readiness`, `concurrency`, `streaming`, `lint`); `EXECUTOR_BENCH_EXECUTOR=/path/to/executor`
//! measures that binary's stages (a lean build, an older commit's) instead of the one cargo built.
//!
//! The binary is also the driver the runner stand-in calls (see `stage_wrapper`): it wraps the
//! real `executor` to measure each stage process.

mod mem_sampler;
mod proc_usage;
mod sim_jobs;
mod ssh_stream;
// The integration tests' stage builder; the benchmark needs only part of it.
#[allow(dead_code)]
#[path = "../stage_run.rs"]
mod stage_run;
mod stage_wrapper;
mod stats;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use executor_simulator::SshMode;
use gitlab_runner_standin::{Job, JobArtifacts, JobCache, When};

use sim_jobs::{Batch, Harness, Scenario};
use stats::{median, mib, ms, percentile, verdict};

/// Sizes of each measurement; the quick mode only checks that the harness works.
struct Plan {
    overhead_jobs: usize,
    lint_runs: usize,
    economy_jobs: usize,
    economy_boot: Duration,
    readiness_jobs: usize,
    readiness_concurrency: usize,
    concurrency: Vec<usize>,
    stream_mib: Vec<u64>,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                overhead_jobs: 2,
                lint_runs: 5,
                economy_jobs: 1,
                economy_boot: Duration::from_secs(1),
                readiness_jobs: 2,
                readiness_concurrency: 2,
                concurrency: vec![4],
                stream_mib: vec![16],
            }
        } else {
            Plan {
                overhead_jobs: 7,
                lint_runs: 41,
                economy_jobs: 2,
                economy_boot: Duration::from_secs(3),
                readiness_jobs: 20,
                readiness_concurrency: 5,
                concurrency: vec![10, 50, 100],
                stream_mib: vec![64, 256, 1024],
            }
        }
    }
}

/// One line of the summary table.
struct Row {
    what: String,
    floor: String,
    target: String,
    measured: String,
    ok: Option<bool>,
}

fn main() {
    if let Some(code) = stage_wrapper::run_if_wrapping() {
        std::process::exit(code);
    }
    let quick = std::env::var("EXECUTOR_BENCH_QUICK").is_ok_and(|v| v == "1");
    let plan = Plan::new(quick);
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut rows = vec![];
    let mut details = String::new();
    let load_before = load();

    let only = std::env::var("EXECUTOR_BENCH_ONLY").unwrap_or_default();
    let wanted = |section: &str| only.is_empty() || only.split(',').any(|s| s.trim() == section);
    if wanted("overhead") {
        eprintln!("[1/5] per-job overhead");
        overhead(&rt, &plan, &mut rows, &mut details);
    }
    if wanted("economy") {
        eprintln!("[2/5] API economy");
        economy(&rt, &plan, &mut rows, &mut details);
    }
    if wanted("readiness") {
        eprintln!("[3/5] readiness latency");
        readiness(&rt, &plan, &mut rows, &mut details);
    }
    if wanted("concurrency") {
        eprintln!("[4/5] concurrency");
        concurrency(&rt, &plan, &mut rows, &mut details);
    }
    if wanted("streaming") {
        eprintln!("[5/5] log streaming");
        streaming(&plan, &mut rows, &mut details);
    }
    if wanted("lint") {
        eprintln!("[6] lint");
        lint(&plan, &mut rows, &mut details);
    }

    println!(
        "# executor benchmark{}\n",
        if quick { " (quick)" } else { "" }
    );
    println!("{}", machine(&load_before));
    println!(
        "Driver measured: `{}`.\n",
        sim_jobs::executor_under_test().display()
    );
    println!("| what | floor | target | measured | verdict |\n|---|---|---|---|---|");
    for r in &rows {
        let v = r.ok.map(verdict).unwrap_or("");
        println!(
            "| {} | {} | {} | {} | {} |",
            r.what, r.floor, r.target, r.measured, v
        );
    }
    println!("{details}");
    println!(
        "Whole benchmark: {:.0} s; load average at the end: {}",
        started.elapsed().as_secs_f64(),
        load()
    );
}

fn script_job() -> Job {
    Job::from_script("true")
}

/// A job with after_script, cache and artifacts: four more run sub-stages than `script_job`.
fn long_job() -> Job {
    let mut j = Job::from_script("true");
    j.after_script = vec!["true".into()];
    j.cache = Some(JobCache {
        key: "bench".into(),
        paths: vec!["cache".into()],
        when: When::OnSuccess,
    });
    j.artifacts = Some(JobArtifacts {
        paths: vec!["out".into()],
        when: When::OnSuccess,
    });
    j
}

const SETUP_STAGES: [&str; 3] = ["config", "prepare", "cleanup"];

fn is_run_stage(stage: &str) -> bool {
    !SETUP_STAGES.contains(&stage)
}

fn overhead(rt: &tokio::runtime::Runtime, plan: &Plan, rows: &mut Vec<Row>, out: &mut String) {
    let batch = rt.block_on(async {
        let h = Harness::start(&Scenario {
            boot: Duration::ZERO,
            ssh_delay: Duration::ZERO,
            ssh_mode: SshMode::OpenSsh,
            floor: true,
        })
        .await;
        let b = h.run(vec![script_job(); plan.overhead_jobs], 1).await;
        h.sim.shutdown().await;
        b
    });
    // stage -> (walls, cpus, rss, requests, ratios wall, ratios cpu, floor walls, floor cpus, floor rss)
    #[derive(Default)]
    struct S {
        wall: Vec<f64>,
        cpu: Vec<f64>,
        rss: u64,
        req: usize,
        n: usize,
        f_wall: Vec<f64>,
        f_cpu: Vec<f64>,
        f_rss: u64,
        r_wall: Vec<f64>,
        r_cpu: Vec<f64>,
    }
    let mut order: Vec<String> = vec![];
    let mut by: BTreeMap<String, S> = BTreeMap::new();
    let floors: BTreeMap<(String, String), &stage_wrapper::Record> = batch
        .records
        .iter()
        .filter(|r| r.floor)
        .map(|r| ((r.job_dir.clone(), r.stage.clone()), r))
        .collect();
    let mut run_requests = 0;
    for job in batch.jobs() {
        for r in job {
            if !order.contains(&r.stage) {
                order.push(r.stage.clone());
            }
            let s = by.entry(r.stage.clone()).or_default();
            let u = &r.usage;
            s.wall.push(ms(u.wall));
            s.cpu.push(ms(u.cpu()));
            s.rss = s.rss.max(u.max_rss_kib);
            let req = batch.requests_of(r).len();
            s.req += req;
            s.n += 1;
            if is_run_stage(&r.stage) {
                run_requests += req;
            }
            if let Some(f) = floors.get(&(r.job_dir.clone(), r.stage.clone())) {
                let fu = &f.usage;
                s.f_wall.push(ms(fu.wall));
                s.f_cpu.push(ms(fu.cpu()));
                s.f_rss = s.f_rss.max(fu.max_rss_kib);
                s.r_wall.push(ms(u.wall) / ms(fu.wall));
                s.r_cpu.push(ms(u.cpu()) / ms(fu.cpu()).max(0.001));
            }
        }
    }
    let jobs = batch.jobs().len().max(1);
    let _ = writeln!(
        out,
        "\n## 1. Per-job overhead\n\n{} jobs of `script: [true]`, one at a time, zero boot delay, a real \
         OpenSSH sshd per server up at once. Median per stage process; peak RSS is the largest. \
         The floor, measured right after each run sub-stage on the same sshd with the job's key, \
         is `ssh -i key -p port user@host true`; ratios are medians of the per-pair ratios. \
         {}/{} jobs succeeded.\n",
        plan.overhead_jobs,
        batch.successes(),
        batch.results.len()
    );
    let _ = writeln!(
        out,
        "| stage | wall ms | CPU ms | peak RSS MiB | API requests | floor wall ms | floor CPU ms | floor RSS MiB | wall ratio | CPU ratio |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    let mut worst_ratio: f64 = 0.0;
    for stage in &order {
        let s = &by[stage];
        let floor_cols = if s.f_wall.is_empty() {
            "| | | | | ".to_string()
        } else {
            worst_ratio = worst_ratio.max(median(&s.r_wall));
            format!(
                "| {:.1} | {:.1} | {:.1} | {:.2}× | {:.2}× ",
                median(&s.f_wall),
                median(&s.f_cpu),
                mib(s.f_rss),
                median(&s.r_wall),
                median(&s.r_cpu)
            )
        };
        let _ = writeln!(
            out,
            "| {stage} | {:.1} | {:.1} | {:.1} | {:.1} {floor_cols}|",
            median(&s.wall),
            median(&s.cpu),
            mib(s.rss),
            s.req as f64 / s.n as f64
        );
    }
    let job_wall: Vec<f64> = batch.results.iter().map(|r| ms(r.duration)).collect();
    let job_cpu: Vec<f64> = batch
        .jobs()
        .iter()
        .map(|j| j.iter().map(|r| ms(r.usage.cpu())).sum())
        .collect();
    let job_rss = batch
        .records
        .iter()
        .filter(|r| !r.floor)
        .map(|r| r.usage.max_rss_kib)
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "| **whole job** | {:.1} | {:.1} | {:.1} | {:.1} | | | | | |",
        median(&job_wall),
        median(&job_cpu),
        mib(job_rss),
        batch.requests.len() as f64 / jobs as f64
    );
    let _ = writeln!(
        out,
        "\nThe whole job's wall time is the runner's, from config to cleanup, including the \
         stand-in's own work between stages; its CPU is the sum over the driver's processes."
    );
    rows.push(Row {
        what: "per-job overhead: each `run` sub-stage, wall time".into(),
        floor: "`ssh -i key host true`, same sshd".into(),
        target: "≤ 1.2×".into(),
        measured: format!(
            "worst sub-stage {worst_ratio:.2}× (whole job {:.0} ms)",
            median(&job_wall)
        ),
        ok: Some(worst_ratio <= 1.2),
    });
    rows.push(Row {
        what: "API requests in `run`".into(),
        floor: "0".into(),
        target: "0".into(),
        measured: format!("{run_requests} in {} jobs", plan.overhead_jobs),
        ok: Some(run_requests == 0),
    });
}

/// Requests per job by (method, route) for one job shape.
struct Shape {
    per_job: BTreeMap<(String, String), f64>,
    run_stages: f64,
    run_requests: usize,
    listing_in_run: usize,
    tokens_per_job: f64,
    api_processes_per_job: f64,
    polls_per_job: f64,
    ok: bool,
}

fn shape(batch: &Batch) -> Shape {
    let jobs = batch.jobs();
    let n = jobs.len().max(1) as f64;
    let mut per_job: BTreeMap<(String, String), f64> = BTreeMap::new();
    for (_, r) in &batch.requests {
        *per_job
            .entry((r.method.clone(), r.route.clone()))
            .or_default() += 1.0 / n;
    }
    let (mut run_stages, mut run_requests, mut listing, mut api_procs, mut polls) = (0, 0, 0, 0, 0);
    for job in &jobs {
        for r in job {
            let reqs = batch.requests_of(r);
            if !reqs.is_empty() {
                api_procs += 1;
            }
            if is_run_stage(&r.stage) {
                run_stages += 1;
                run_requests += reqs.len();
                listing += reqs
                    .iter()
                    .filter(|q| q.method == "GET" && !q.route.contains('{'))
                    .count();
            }
            if r.stage == "prepare" {
                polls += reqs
                    .iter()
                    .filter(|q| q.method == "GET" && q.route.ends_with("/servers/{id}"))
                    .count();
            }
        }
    }
    let tokens = batch
        .requests
        .iter()
        .filter(|(_, q)| q.method == "POST" && q.route.ends_with("/auth/tokens"))
        .count();
    Shape {
        per_job,
        run_stages: run_stages as f64 / n,
        run_requests,
        listing_in_run: listing,
        tokens_per_job: tokens as f64 / n,
        api_processes_per_job: api_procs as f64 / n,
        polls_per_job: polls as f64 / n,
        ok: batch.successes() == batch.results.len(),
    }
}

fn economy(rt: &tokio::runtime::Runtime, plan: &Plan, rows: &mut Vec<Row>, out: &mut String) {
    let boot = plan.economy_boot;
    let slow_boot = boot * 2;
    let (short, long, slow) = rt.block_on(async {
        let scenario = |boot| Scenario {
            boot,
            ssh_delay: Duration::ZERO,
            ssh_mode: SshMode::Embedded,
            floor: false,
        };
        let h = Harness::start(&scenario(boot)).await;
        let a = h.run(vec![script_job(); plan.economy_jobs], 1).await;
        let b = h.run(vec![long_job(); plan.economy_jobs], 1).await;
        h.sim.shutdown().await;
        let h = Harness::start(&scenario(slow_boot)).await;
        let c = h.run(vec![script_job(); plan.economy_jobs], 1).await;
        h.sim.shutdown().await;
        (shape(&a), shape(&b), shape(&c))
    });
    let _ = writeln!(
        out,
        "\n## 2. API economy\n\nRequests per job by method and route, {} jobs per shape, {} s boot. \
         Shape A is `script` only; shape B adds `after_script`, cache and artifacts.\n",
        plan.economy_jobs,
        boot.as_secs()
    );
    let _ = writeln!(
        out,
        "| method | route | A: {:.0} run sub-stages | B: {:.0} run sub-stages |\n|---|---|---|---|",
        short.run_stages, long.run_stages
    );
    let mut keys: Vec<&(String, String)> =
        short.per_job.keys().chain(long.per_job.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in &keys {
        let _ = writeln!(
            out,
            "| {} | `{}` | {:.1} | {:.1} |",
            k.0,
            k.1,
            short.per_job.get(*k).copied().unwrap_or(0.0),
            long.per_job.get(*k).copied().unwrap_or(0.0)
        );
    }
    let total = |s: &Shape| s.per_job.values().sum::<f64>();
    let _ = writeln!(
        out,
        "| | **total** | {:.1} | {:.1} |\n\nToken requests per job: A {:.1}, B {:.1}; stage processes \
         that used the API per job: A {:.1}, B {:.1}. Server polls in prepare per job: A {:.1}, B \
         {:.1} for a {} s boot.",
        total(&short),
        total(&long),
        short.tokens_per_job,
        long.tokens_per_job,
        short.api_processes_per_job,
        long.api_processes_per_job,
        short.polls_per_job,
        long.polls_per_job,
        boot.as_secs()
    );
    rows.push(Row {
        what: "API requests per job".into(),
        floor: "one token per job: later stages reuse the one in the job state".into(),
        target: "1 token per job; no listing in run; same total for A and B".into(),
        measured: format!(
            "A {:.1}, B {:.1} requests; tokens {:.1}/{:.1} per job; listing in run {}; requests in run {}",
            total(&short),
            total(&long),
            short.tokens_per_job,
            long.tokens_per_job,
            short.listing_in_run + long.listing_in_run,
            short.run_requests + long.run_requests
        ),
        ok: Some(
            short.ok
                && long.ok
                && short.tokens_per_job <= 1.01
                && long.tokens_per_job <= 1.01
                && short.listing_in_run + long.listing_in_run == 0
                && (total(&short) - total(&long)).abs() < 0.01,
        ),
    });
    let slope =
        (slow.polls_per_job - short.polls_per_job) / (slow_boot - boot).as_secs_f64().max(0.001);
    let _ = writeln!(
        out,
        "\nWith a {} s boot instead (shape A): {:.1} requests per job, of which {:.1} server \
         reads in prepare: {slope:.2} more requests per extra second of boot. The server reads \
         in prepare are the ACTIVE polls (the `server_address` step uses the last one).",
        slow_boot.as_secs(),
        total(&slow),
        slow.polls_per_job
    );
    rows.push(Row {
        what: "server polling during boot".into(),
        floor: "1 request per second of boot".into(),
        target: "≤ 1 more request per extra second of boot".into(),
        measured: format!(
            "{slope:.2}/s ({:.0} reads for {} s, {:.0} for {} s)",
            short.polls_per_job,
            boot.as_secs(),
            slow.polls_per_job,
            slow_boot.as_secs()
        ),
        ok: Some(slow.ok && slope <= 1.0),
    });
}

fn readiness(rt: &tokio::runtime::Runtime, plan: &Plan, rows: &mut Vec<Row>, out: &mut String) {
    let boot = Duration::from_secs(5);
    let ssh = Duration::from_secs(2);
    let batch = rt.block_on(async {
        let h = Harness::start(&Scenario {
            boot,
            ssh_delay: ssh,
            ssh_mode: SshMode::Embedded,
            floor: false,
        })
        .await;
        let b = h
            .run(
                vec![script_job(); plan.readiness_jobs],
                plan.readiness_concurrency,
            )
            .await;
        h.sim.shutdown().await;
        b
    });
    let floor = ms(boot + ssh);
    let late: Vec<f64> = batch
        .records
        .iter()
        .filter(|r| !r.floor && r.stage == "prepare" && r.usage.code == 0)
        .map(|r| ms(r.usage.wall) - floor)
        .collect();
    let (med, p95) = (median(&late), percentile(&late, 0.95));
    let _ = writeln!(
        out,
        "\n## 3. Readiness latency\n\n{} jobs, {} at a time: 5 s boot, the server's SSH port \
         published at ACTIVE but refusing connections until 2 s later. `prepare` wall time minus \
         7 s: median {:.0} ms, p95 {:.0} ms, max {:.0} ms ({}/{} jobs succeeded).",
        plan.readiness_jobs,
        plan.readiness_concurrency,
        med,
        p95,
        percentile(&late, 1.0),
        batch.successes(),
        batch.results.len()
    );
    rows.push(Row {
        what: "readiness latency: `prepare` − 7 s (5 s boot + 2 s sshd)".into(),
        floor: "the simulator's own delays".into(),
        target: "< 500 ms".into(),
        measured: format!("median {med:.0} ms, p95 {p95:.0} ms"),
        ok: Some(p95 < 500.0 && batch.successes() == batch.results.len()),
    });
}

fn self_cpu() -> Duration {
    // SAFETY: getrusage fills a plain C struct.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn concurrency(rt: &tokio::runtime::Runtime, plan: &Plan, rows: &mut Vec<Row>, out: &mut String) {
    let _ = writeln!(
        out,
        "\n## 4. Concurrency\n\nN jobs of `script: [true]` started at once, 2 s boot, SSH 1 s after \
         ACTIVE (embedded SSH server). CPU per job is the driver's processes (user+sys); the \
         stand-in and simulator share one process, shown apart. Peak memory is the largest sum \
         of the RSS of all live `executor` processes, sampled every 100 ms.\n\n\
         | jobs | wall s | driver CPU per job ms | stand-in + simulator CPU per job ms | peak driver memory MiB (processes) | successes | leaked |\n|---|---|---|---|---|---|---|"
    );
    for &n in &plan.concurrency {
        let (batch, peaks, leaked, cpu_self) = rt.block_on(async {
            let h = Harness::start(&Scenario {
                boot: Duration::from_secs(2),
                ssh_delay: Duration::from_secs(1),
                ssh_mode: SshMode::Embedded,
                floor: false,
            })
            .await;
            let cpu0 = self_cpu();
            let sampler = mem_sampler::Sampler::start(Duration::from_millis(100));
            let b = h.run(vec![script_job(); n], n).await;
            let peaks = sampler.finish();
            let cpu_self = self_cpu() - cpu0;
            let leaked = h.leaked().await;
            h.sim.shutdown().await;
            (b, peaks, leaked, cpu_self)
        });
        let cpu: Duration = batch.records.iter().map(|r| r.usage.cpu()).sum();
        let _ = writeln!(
            out,
            "| {n} | {:.1} | {:.0} | {:.0} | {:.0} ({}) | {} | {leaked} |",
            batch.wall.as_secs_f64(),
            ms(cpu) / n as f64,
            ms(cpu_self) / n as f64,
            mib(peaks.driver_kib),
            peaks.driver_processes,
            batch.successes()
        );
        if n == *plan.concurrency.iter().max().unwrap_or(&n) {
            rows.push(Row {
                what: format!("{n} concurrent jobs"),
                floor: "".into(),
                target: format!("{n} successes, 0 leaked"),
                measured: format!(
                    "{} successes, {leaked} leaked; {:.1} s wall, {:.0} ms driver CPU per job, peak {:.0} MiB",
                    batch.successes(),
                    batch.wall.as_secs_f64(),
                    ms(cpu) / n as f64,
                    mib(peaks.driver_kib)
                ),
                ok: Some(batch.successes() == n && leaked == 0),
            });
        }
    }
}

fn streaming(plan: &Plan, rows: &mut Vec<Row>, out: &mut String) {
    let s = ssh_stream::measure(&plan.stream_mib);
    let _ = writeln!(
        out,
        "\n## 5. Log streaming\n\n`head -c N /dev/zero` on the server, streamed to /dev/null through \
         `executor run` (process start, state, connect, auth, exec included) and through the \
         OpenSSH client, on one loopback sshd ({}).\n\n\
         | MiB | OpenSSH MiB/s | executor MiB/s | throughput ratio | OpenSSH RSS MiB | executor RSS MiB | OpenSSH CPU s | executor CPU s |\n|---|---|---|---|---|---|---|---|",
        s.sshd
    );
    let mut worst: f64 = f64::MAX;
    let mut rss: u64 = 0;
    for r in &s.sizes {
        let rate = |d: Duration| r.mib as f64 / d.as_secs_f64();
        let ratio = r.openssh.wall.as_secs_f64() / r.ours.wall.as_secs_f64();
        worst = worst.min(ratio);
        rss = rss.max(r.ours.max_rss_kib);
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.0} | {:.2}× | {:.1} | {:.1} | {:.2} | {:.2} |",
            r.mib,
            rate(r.openssh.wall),
            rate(r.ours.wall),
            ratio,
            mib(r.openssh.max_rss_kib),
            mib(r.ours.max_rss_kib),
            r.openssh.cpu().as_secs_f64(),
            r.ours.cpu().as_secs_f64()
        );
    }
    let p = &s.phases;
    let _ = writeln!(
        out,
        "\nPer connection (median of 9, in process): TCP {:.2} ms, handshake {:.2} ms, auth {:.2} \
         ms, exec `true` {:.2} ms; OpenSSH `ssh host true` whole process {:.2} ms.",
        ms(p.tcp),
        ms(p.handshake),
        ms(p.auth),
        ms(p.exec_true),
        ms(p.openssh_true)
    );
    let largest = s.sizes.last().map(|r| r.mib).unwrap_or(0);
    rows.push(Row {
        what: format!("log streaming, {largest} MiB: throughput"),
        floor: "OpenSSH client, same sshd".into(),
        target: "≥ 1.0×".into(),
        measured: format!("worst size {worst:.2}×"),
        ok: Some(worst >= 1.0),
    });
    rows.push(Row {
        what: "log streaming: peak RSS of `executor run`".into(),
        floor: "".into(),
        target: "< 32 MiB".into(),
        measured: format!("{:.1} MiB", mib(rss)),
        ok: Some(mib(rss) < 32.0),
    });
}

/// Wall time of one `executor` process with `args`, which must succeed.
fn timed(args: &[&std::ffi::OsStr]) -> Duration {
    let started = Instant::now();
    let status = std::process::Command::new(sim_jobs::executor_under_test())
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("executor starts");
    let took = started.elapsed();
    assert!(status.success(), "executor {args:?}: {status}");
    took
}

/// `executor lint` on the shipped recipe, as an author or a CI job runs it: a whole process,
/// set against `executor --version`, the same process doing nothing.
fn lint(plan: &Plan, rows: &mut Vec<Row>, out: &mut String) {
    let recipe = sim_jobs::recipe();
    let lint_args = [std::ffi::OsStr::new("lint"), recipe.as_os_str()];
    let version_args = [std::ffi::OsStr::new("--version")];
    // One of each first, so that the binary and the recipe are in the page cache.
    timed(&lint_args);
    timed(&version_args);
    let mut lint_ms = vec![];
    let mut floor_ms = vec![];
    for _ in 0..plan.lint_runs {
        lint_ms.push(ms(timed(&lint_args)));
        floor_ms.push(ms(timed(&version_args)));
    }
    let median_ms = median(&lint_ms);
    let _ = writeln!(
        out,
        "\n## 6. Lint\n\n`executor lint recipes/openstack.yaml`, {} runs, each a whole process; \
         `executor --version` alternating with it as the floor.\n\n\
         | | median ms | p95 ms | min ms |\n|---|---|---|---|\n\
         | `executor lint` | {median_ms:.1} | {:.1} | {:.1} |\n\
         | `executor --version` | {:.1} | {:.1} | {:.1} |",
        plan.lint_runs,
        percentile(&lint_ms, 0.95),
        lint_ms.iter().copied().fold(f64::MAX, f64::min),
        median(&floor_ms),
        percentile(&floor_ms, 0.95),
        floor_ms.iter().copied().fold(f64::MAX, f64::min),
    );
    rows.push(Row {
        what: "`executor lint` on the shipped recipe, wall (median)".into(),
        floor: format!("`executor --version` {:.1} ms", median(&floor_ms)),
        target: "< 20 ms".into(),
        measured: format!("{median_ms:.1} ms"),
        ok: Some(median_ms < 20.0),
    });
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn machine(load_before: &str) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let date = std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "Machine: {} CPUs ({cpu}), {:.1} GiB memory; {date}; load average at the start: {load_before}.\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        mib(mem) / 1024.0
    )
}
