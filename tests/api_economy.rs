//! API economy: how many OpenStack requests a job costs, per phase, counted in the simulator's
//! request log (issue 12, item 6).
//!
//! A cold job with the shipped recipe runs prepare, one `run` and cleanup as gitlab-runner
//! would; the requests each stage process sends are those the simulator answered while it ran.

use std::path::Path;
use std::time::Duration;

use executor_simulator::{RequestRecord, SimCloud};

use crate::e2e_support::{Cloud, default_recipe};
use crate::stage_run::StageRun;

const OWNER: &str = "economy";
/// The simulated boot, and the recipe's `EXPECTED_BOOT_TIME`.
const BOOT: Duration = Duration::from_secs(3);
const BOOT_TEXT: &str = "3s";

/// What a request is for, in the words of the issue.
fn kind(r: &RequestRecord) -> &'static str {
    let route = r.route.as_str();
    match (r.method.as_str(), route) {
        ("POST", "/identity/v3/auth/tokens") => "token",
        ("GET", p)
            if matches!(
                p.trim_end_matches('/'),
                "/compute"
                    | "/compute/v2.1"
                    | "/image"
                    | "/image/versions"
                    | "/network"
                    | "/volume/v3"
            ) =>
        {
            "discovery"
        }
        ("GET", p)
            if p.ends_with("/flavors")
                || p.ends_with("/images")
                || p.ends_with("/images/{id}")
                || p.ends_with("/networks")
                || p.ends_with("/networks/{id}")
                || p.ends_with("/security-groups")
                || p.ends_with("/security-groups/{id}")
                || p.ends_with("/os-keypairs/{name}") =>
        {
            "lookup"
        }
        ("GET", "/compute/v2.1/servers/{id}") => "server get",
        _ => "other",
    }
}

/// The requests answered since `from`, and a one-line summary of them.
fn since(sim: &SimCloud, from: usize) -> (Vec<RequestRecord>, String) {
    let records: Vec<RequestRecord> = sim.request_log().records.into_iter().skip(from).collect();
    (records.clone(), summary(&records))
}

fn summary(records: &[RequestRecord]) -> String {
    let mut by_kind: std::collections::BTreeMap<&str, usize> = Default::default();
    for r in records {
        *by_kind.entry(kind(r)).or_default() += 1;
    }
    let detail: Vec<String> = records
        .iter()
        .map(|r| format!("{} {} {}", r.method, r.route, r.status))
        .collect();
    format!(
        "{} requests {by_kind:?}\n  {}",
        records.len(),
        detail.join("\n  ")
    )
}

fn count(records: &[RequestRecord], what: &str) -> usize {
    records.iter().filter(|r| kind(r) == what).count()
}

fn stage(cloud: &Cloud, dir: &Path, job: &str, args: &[&str]) -> StageRun {
    let mut run = StageRun::new(dir, args).recipe(default_recipe());
    for (k, v) in cloud.service_env(OWNER) {
        run = run.env(k, v);
    }
    run.env("EXPECTED_BOOT_TIME", BOOT_TEXT)
        .env("XDG_CACHE_HOME", cloud.dir.path().join("cache-home"))
        .job_var("CI_JOB_ID", job)
        .job_var("CI_PROJECT_ID", "7")
        .timeout(Duration::from_secs(180))
}

/// The job's directory (gitlab-runner's per-attempt temp dir), with its payload.
fn job_dir(cloud: &Cloud, job: &str) -> std::path::PathBuf {
    let dir = cloud.dir.path().join(format!("job-{job}"));
    if !dir.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("response.json"),
            format!(r#"{{"id": {job}, "job_info": {{"project_id": 7}}}}"#),
        )
        .unwrap();
    }
    dir
}

/// Requests of prepare, run and cleanup of one cold job, in that order.
async fn cold_job(cloud: &Cloud, job: &str) -> [Vec<RequestRecord>; 3] {
    let dir = job_dir(cloud, job);
    let script = dir.join("script.sh");
    std::fs::write(&script, "true\n").unwrap();
    let mut phases: Vec<Vec<RequestRecord>> = Vec::new();
    let stages: [Vec<String>; 3] = [
        vec!["prepare".into()],
        vec![
            "run".into(),
            script.display().to_string(),
            "build_script".into(),
        ],
        vec!["cleanup".into()],
    ];
    for args in stages {
        let before = cloud.sim.request_log().len();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = stage(cloud, &dir, job, &args);
        let out = tokio::task::spawn_blocking(move || run.output().unwrap())
            .await
            .unwrap();
        let (records, text) = since(&cloud.sim, before);
        assert!(
            out.status.success(),
            "{}: {}\n{text}",
            args[0],
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("job {job} {}: {text}", args[0]);
        phases.push(records);
    }
    phases.try_into().unwrap()
}

/// The `(stage)` a request's `User-Agent` names (`executor/0.1.0 (prepare)` → `prepare`).
fn sent_by(r: &RequestRecord) -> Option<&str> {
    let ua = r.user_agent.as_deref()?;
    let rest = ua.strip_prefix("executor/")?;
    rest.split_once(" (").and_then(|(_, p)| p.strip_suffix(')'))
}

fn is_server_get(r: &RequestRecord) -> bool {
    kind(r) == "server get"
}

/// Requests of a phase that are not polls of one server (`GET /servers/{id}`).
fn fixed(records: &[RequestRecord]) -> usize {
    records.iter().filter(|r| !is_server_get(r)).count()
}

/// Cleanup's requests after its DELETE of the server that are reads of it: the deletion wait.
fn deletion_wait(records: &[RequestRecord]) -> usize {
    records
        .iter()
        .skip_while(|r| !(r.method == "DELETE" && r.route == "/compute/v2.1/servers/{id}"))
        .filter(|r| is_server_get(r))
        .count()
}

fn state_of(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("executor-state.json")).unwrap()).unwrap()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Checks a cold job's phases against the budget; `fresh_host`: the runner host's lookup cache
/// was empty. Returns the job's request count without polls and deletion wait.
fn check_cold_budget(job: &str, phases: &[Vec<RequestRecord>; 3], fresh_host: bool) -> usize {
    let [prepare, run, cleanup] = phases;
    let all = || prepare.iter().chain(run).chain(cleanup);
    let explain = format!(
        "job {job}\nprepare: {}\ncleanup: {}",
        summary(prepare),
        summary(cleanup)
    );
    assert!(run.is_empty(), "run makes no request: {explain}");
    assert!(
        prepare.iter().all(|r| sent_by(r) == Some("prepare"))
            && cleanup.iter().all(|r| sent_by(r) == Some("cleanup")),
        "each stage names itself in its User-Agent: {explain}"
    );
    assert_eq!(count(prepare, "token"), 1, "{explain}");
    assert_eq!(
        count(cleanup, "token"),
        0,
        "cleanup reuses prepare's token: {explain}"
    );
    assert_eq!(
        all().filter(|r| kind(r) == "discovery").count(),
        usize::from(fresh_host),
        "compute is discovered once per host and ten minutes, nothing else: {explain}"
    );
    assert_eq!(
        count(prepare, "lookup"),
        if fresh_host { 4 } else { 0 },
        "flavor, image, network and security group, once per host and ten minutes: {explain}"
    );
    assert_eq!(count(cleanup, "lookup"), 0, "{explain}");
    // The boot is polled at most once a second; the address step reads no server again.
    let polls = prepare.iter().filter(|r| is_server_get(r)).count();
    assert!(
        polls as u64 <= BOOT.as_secs() + 1,
        "{polls} polls for a {BOOT:?} boot: {explain}"
    );
    let cleanup_fixed = cleanup.len() - deletion_wait(cleanup);
    assert!(
        cleanup_fixed <= 3,
        "cleanup: one listing, the delete and the key pair: {explain}"
    );
    let total = fixed(prepare) + cleanup_fixed;
    assert!(
        total <= if fresh_host { 12 } else { 7 },
        "{total} requests beyond polls: {explain}"
    );
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_job_makes_at_most_twelve_requests_plus_a_poll_a_second_of_boot() {
    let cloud = Cloud::start_with(|o| o.build_delay = BOOT).await;
    let first = cold_job(&cloud, "101").await;
    let first_total = check_cold_budget("101", &first, true);
    // The job's state carries the session between its stages, private to the runner's user;
    // the host's lookup cache too.
    let state_dir = cloud.dir.path().join("job-101");
    assert_eq!(mode(&state_dir.join("executor-state.json")), 0o600);
    let cache_dir = cloud.dir.path().join("cache-home/executor");
    assert_eq!(mode(&cache_dir), 0o700);
    assert_eq!(mode(&cache_dir.join("lookups.json")), 0o600);

    // The next job on this host finds every name in the cache.
    let second = cold_job(&cloud, "102").await;
    let second_total = check_cold_budget("102", &second, false);
    eprintln!(
        "requests beyond polls and the deletion wait: {first_total} (first job on the host), \
         {second_total} (next job)"
    );
    let counts = crate::e2e_support::settled_counts(&cloud.sim).await;
    assert_eq!(crate::e2e_support::leaked(&counts), 0, "{counts:?}");
}

/// Runs one stage of a cold job, returning its requests.
async fn one_stage(
    cloud: &Cloud,
    job: &str,
    args: &[&str],
    extra: &[(&str, &str)],
) -> Vec<RequestRecord> {
    let dir = job_dir(cloud, job);
    let before = cloud.sim.request_log().len();
    let mut run = stage(cloud, &dir, job, args);
    for (k, v) in extra {
        run = run.env(k, v);
    }
    let name = args[0].to_string();
    let out = tokio::task::spawn_blocking(move || run.output().unwrap())
        .await
        .unwrap();
    let (records, text) = since(&cloud.sim, before);
    assert!(
        out.status.success(),
        "{name}: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_token_near_its_expiry_or_revoked_is_replaced_once() {
    let cloud = Cloud::start().await;
    // Expiring in four minutes: too close to reuse.
    one_stage(&cloud, "201", &["prepare"], &[]).await;
    let dir = job_dir(&cloud, "201");
    let mut state = state_of(&dir);
    let soon = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 240;
    state["_cloud_session"]["valid_until"] = serde_json::json!(soon);
    std::fs::write(
        dir.join("executor-state.json"),
        serde_json::to_vec(&state).unwrap(),
    )
    .unwrap();
    let cleanup = one_stage(&cloud, "201", &["cleanup"], &[]).await;
    assert_eq!(count(&cleanup, "token"), 1, "{}", summary(&cleanup));
    assert!(
        cleanup.iter().all(|r| r.status != 401),
        "{}",
        summary(&cleanup)
    );

    // Revoked (every token invalid): one 401, one new token, and the cleanup succeeds.
    one_stage(&cloud, "202", &["prepare"], &[]).await;
    cloud.sim.expire_tokens();
    let cleanup = one_stage(&cloud, "202", &["cleanup"], &[]).await;
    assert_eq!(count(&cleanup, "token"), 1, "{}", summary(&cleanup));
    assert_eq!(
        cleanup.iter().filter(|r| r.status == 401).count(),
        1,
        "{}",
        summary(&cleanup)
    );
    let counts = crate::e2e_support::settled_counts(&cloud.sim).await;
    assert_eq!(crate::e2e_support::leaked(&counts), 0, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_cached_id_is_dropped_and_looked_up_again() {
    let cloud = Cloud::start().await;
    one_stage(&cloud, "301", &["prepare"], &[]).await;
    one_stage(&cloud, "301", &["cleanup"], &[]).await;
    // The flavor's cached id no longer exists (the flavor was replaced).
    let path = cloud.dir.path().join("cache-home/executor/lookups.json");
    let mut cache: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let mut real = String::new();
    for entries in cache.as_object_mut().unwrap().values_mut() {
        for (key, entry) in entries.as_object_mut().unwrap() {
            if key.starts_with("flavor") {
                real = entry["value"]["id"].as_str().unwrap().to_string();
                entry["value"]["id"] = serde_json::json!("0b5e1e55-0000-4000-8000-000000000000");
            }
        }
    }
    assert!(!real.is_empty(), "the flavor was cached: {cache}");
    std::fs::write(&path, serde_json::to_vec(&cache).unwrap()).unwrap();

    let prepare = one_stage(&cloud, "302", &["prepare"], &[]).await;
    let creates: Vec<u16> = prepare
        .iter()
        .filter(|r| r.method == "POST" && r.route == "/compute/v2.1/servers")
        .map(|r| r.status)
        .collect();
    assert_eq!(creates, [400, 202], "{}", summary(&prepare));
    assert_eq!(
        prepare
            .iter()
            .filter(|r| r.route.ends_with("/flavors"))
            .count(),
        1,
        "{}",
        summary(&prepare)
    );
    let cached = std::fs::read_to_string(&path).unwrap();
    assert!(
        cached.contains(&real) && !cached.contains("0b5e1e55"),
        "{cached}"
    );
    one_stage(&cloud, "302", &["cleanup"], &[]).await;
    let counts = crate::e2e_support::settled_counts(&cloud.sim).await;
    assert_eq!(crate::e2e_support::leaked(&counts), 0, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_saved_token_reaches_no_log_and_no_template() {
    let cloud = Cloud::start().await;
    // A site's recipe that prints the whole state, as a careless recipe might.
    let recipe = cloud.dir.path().join("dump-state.yaml");
    std::fs::write(
        &recipe,
        format!(
            "version: 1\nextends: {}\ninsert:\n  - after: ready\n    steps:\n      - id: dump\n        kind: log\n        message: \"state is {{{{ state }}}}\"\n",
            default_recipe().display()
        ),
    )
    .unwrap();
    let dir = job_dir(&cloud, "401");
    let mut logs = String::new();
    for args in [&["prepare"][..], &["cleanup"][..]] {
        let mut run = StageRun::new(&dir, args).recipe(&recipe);
        for (k, v) in cloud.service_env(OWNER) {
            run = run.env(k, v);
        }
        let run = run
            .env("XDG_CACHE_HOME", cloud.dir.path().join("cache-home"))
            .env("EXECUTOR_LOG", "trace")
            .job_var("CI_JOB_ID", "401")
            .job_var("CI_PROJECT_ID", "7")
            .timeout(Duration::from_secs(180));
        let out = tokio::task::spawn_blocking(move || run.output().unwrap())
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{}: {stderr}", args[0]);
        logs.push_str(&stderr);
        logs.push_str(&String::from_utf8_lossy(&out.stdout));
        if args[0] == "prepare" {
            let state = state_of(&dir);
            let token = state["_cloud_session"]["token"]
                .as_str()
                .expect("prepare saved its token for cleanup")
                .to_string();
            assert!(token.len() > 8);
            assert!(logs.contains("state is {"), "the dump step ran: {logs}");
            assert!(logs.contains("server_id"), "{logs}");
            assert!(!logs.contains("_cloud_session"), "{logs}");
            assert!(!logs.contains(&token), "the token is in prepare's log");
            logs.clear();
            logs.push_str(&token);
            logs.push('\n');
        }
    }
    let (token, rest) = logs.split_once('\n').unwrap();
    assert!(rest.contains("executor_cloud"), "trace was on: {rest}");
    assert!(!rest.contains(token), "the token is in cleanup's log");
}

fn pooled_recipe() -> std::path::PathBuf {
    crate::e2e_support::repo().join("recipes/pooled.yaml")
}

/// `executor pool` beside the stages, as a site runs it; SIGTERM on drop.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: kill with a pid we own and a valid signal number.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_job_makes_at_most_three_requests_in_prepare_and_cleanup() {
    let cloud = Cloud::start_with(|o| o.build_delay = Duration::from_millis(300)).await;
    let run_dir = cloud.dir.path().join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    let env: Vec<(String, String)> = cloud
        .service_env(OWNER)
        .into_iter()
        .chain([
            ("XDG_RUNTIME_DIR".into(), run_dir.display().to_string()),
            (
                "XDG_CACHE_HOME".into(),
                cloud.dir.path().join("cache-home").display().to_string(),
            ),
        ])
        .collect();
    let daemon = Daemon(
        std::process::Command::new(crate::e2e_support::driver())
            .arg("--recipe")
            .arg(pooled_recipe())
            .arg("pool")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("STATE_DIRECTORY", cloud.dir.path().join("pool-state"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("executor pool starts"),
    );
    let socket = run_dir.join("executor/pool.sock");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(executor_pool::PoolStatus { idle, .. }) =
            executor_pool::status(&socket, Duration::from_secs(1)).await
            && idle >= 1
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no warm VM within 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let job = "501";
    let dir = job_dir(&cloud, job);
    let script = dir.join("script.sh");
    std::fs::write(&script, "true\n").unwrap();
    let before = cloud.sim.request_log().len();
    let mut server_id = String::new();
    for args in [
        vec!["prepare".to_string()],
        vec![
            "run".into(),
            script.display().to_string(),
            "build_script".into(),
        ],
        vec!["cleanup".into()],
    ] {
        let mut run = StageRun::new(&dir, &args).recipe(pooled_recipe());
        for (k, v) in &env {
            run = run.env(k, v);
        }
        let run = run
            .job_var("CI_JOB_ID", job)
            .job_var("CI_PROJECT_ID", "7")
            .timeout(Duration::from_secs(180));
        let out = tokio::task::spawn_blocking(move || run.output().unwrap())
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {stderr}", args[0]);
        if args[0] == "prepare" {
            assert!(stderr.contains("claimed warm VM"), "a hit: {stderr}");
            server_id = state_of(&dir)["server_id"].as_str().unwrap().to_string();
        }
    }
    let records: Vec<RequestRecord> = cloud
        .sim
        .request_log()
        .records
        .into_iter()
        .skip(before)
        .collect();
    let of = |stage: &str| -> Vec<RequestRecord> {
        records
            .iter()
            .filter(|r| sent_by(r) == Some(stage))
            .cloned()
            .collect()
    };
    let (prepare, run, cleanup) = (of("prepare"), of("run"), of("cleanup"));
    // The daemon's own part of the claim: the job's ownership metadata on the server.
    let claim: Vec<RequestRecord> = records
        .iter()
        .filter(|r| sent_by(r).is_none() && r.path.contains(&server_id))
        .cloned()
        .collect();
    let explain = format!(
        "prepare: {}\ncleanup: {}\nthe daemon, on the claimed server: {}",
        summary(&prepare),
        summary(&cleanup),
        summary(&claim)
    );
    assert!(run.is_empty(), "{explain}");
    let cleanup_fixed = cleanup.len() - deletion_wait(&cleanup);
    assert_eq!(
        count(&cleanup, "token"),
        0,
        "the claim brought a token: {explain}"
    );
    assert!(
        claim.len() <= 1,
        "the daemon writes the job's ownership once: {explain}"
    );
    assert!(
        prepare.len() + cleanup_fixed <= 3,
        "{} requests: {explain}",
        prepare.len() + cleanup_fixed
    );
    eprintln!(
        "pooled job: prepare {}, cleanup {} (+{} deletion wait), the daemon's claim {}",
        prepare.len(),
        cleanup_fixed,
        deletion_wait(&cleanup),
        claim.len()
    );
    drop(daemon);
}
