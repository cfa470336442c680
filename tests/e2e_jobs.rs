//! Whole CI jobs end to end: the gitlab-runner stand-in calls the real `executor` binary with
//! the shipped default recipe (`recipes/openstack.yaml`), against the simulated cloud with its
//! embedded SSH server (and with real OpenSSH where sshd's behaviour matters).

use crate::e2e_support;

use std::collections::BTreeSet;
use std::time::Duration;

use e2e_support::{Cloud, describe, explain, leaked, line_value, run_bounded, wait_gone};
use executor_simulator::SshMode;
use gitlab_runner_standin::{Job, JobArtifacts, JobControl, JobStatus, RunOptions, When};

const OWNER: &str = "e2e-jobs";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_succeeds_and_leaves_nothing_behind() {
    let cloud = Cloud::start().await;
    let job = Job::from_script("echo hello from $(basename \"$HOME\")\ntest -n \"$CI_JOB_ID\"");
    let r = run_bounded(&cloud.runner(OWNER), &job, RunOptions::default()).await;
    assert_eq!(r.status, JobStatus::Success, "{}", explain(&r));
    assert_eq!((r.attempts, r.cleanup_calls), (1, 1), "{}", explain(&r));
    let id = line_value(&r.job_log, "hello from ")
        .unwrap_or_else(|| panic!("the script ran: {}", explain(&r)))
        .to_string();
    assert!(
        cloud
            .sim
            .request_log()
            .count_path_containing("DELETE", &format!("/servers/{id}"))
            == 1,
        "cleanup deleted the server the script ran on ({id}): {}",
        explain(&r)
    );
    assert_eq!(
        r.stage_names(),
        [
            "config",
            "prepare",
            "prepare_script",
            "get_sources",
            "build_script",
            "cleanup_file_variables",
            "cleanup"
        ]
    );
    let counts = cloud.settled_counts().await;
    assert_eq!(leaked(&counts), 0, "{}", describe(&counts));
    let log = cloud.sim.request_log();
    assert_eq!(log.count_path_containing("POST", "/os-keypairs"), 1);
    assert_eq!(log.count_path_containing("DELETE", "/os-keypairs/"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_exiting_42_is_reported_as_42() {
    let cloud = Cloud::start().await;
    let mut job = Job::from_script("echo before\nexit 42\necho never");
    job.after_script = vec!["echo after status=$CI_JOB_STATUS".into()];
    let r = run_bounded(&cloud.runner(OWNER), &job, RunOptions::default()).await;
    assert_eq!(r.status, JobStatus::ScriptFailure, "{}", explain(&r));
    assert_eq!(r.exit_code, Some(42), "{}", explain(&r));
    assert!(r.job_log.contains("ERROR: Job failed: exit status 42"));
    assert!(!r.job_log.contains("\nnever"), "{}", explain(&r));
    assert!(r.job_log.contains("after status=failed"), "{}", explain(&r));
    assert_eq!(r.cleanup_calls, 1);
    let counts = cloud.settled_counts().await;
    assert_eq!(leaked(&counts), 0, "{}", describe(&counts));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_failure_in_prepare_is_tried_three_times_with_cleanup_after_each() {
    let cloud = Cloud::start().await;
    // Every boot lands in ERROR: each prepare attempt boots three servers (boot_attempts 3).
    cloud.sim.faults().set_create_error_share(1.0);
    let job = Job::from_script("echo never runs");
    let r = run_bounded(&cloud.runner(OWNER), &job, RunOptions::default()).await;
    assert_eq!(r.status, JobStatus::SystemFailure, "{}", explain(&r));
    assert_eq!((r.attempts, r.cleanup_calls), (3, 3), "{}", explain(&r));
    assert_eq!(
        r.stage_names(),
        [
            "config", "prepare", "cleanup", "config", "prepare", "cleanup", "config", "prepare",
            "cleanup"
        ],
        "cleanup follows every failed attempt, and no run stage starts"
    );
    assert!(!r.job_log.contains("never runs\n"));
    let log = cloud.sim.request_log();
    assert_eq!(
        log.count_path_containing("POST", "/servers"),
        9,
        "3 attempts x 3 boots"
    );
    let counts = cloud.settled_counts().await;
    assert_eq!(leaked(&counts), 0, "{}", describe(&counts));
}

/// A job whose build script leaves a long-running process on the server and records its pid
/// there; its after_script reports whether that process is still alive.
fn long_job() -> Job {
    let mut job = Job::from_script(
        "sleep 300 &\necho $! > \"$HOME/build.pid\"\necho started\nwait\necho finished",
    );
    job.after_script = vec![
        "pid=$(cat \"$HOME/build.pid\")".into(),
        // The driver stops the remote group when SIGTERMed; give it a moment to land.
        "for i in $(seq 50); do st=$(awk '{print $3}' /proc/$pid/stat 2>/dev/null || true); if [ -z \"$st\" ] || [ \"$st\" = Z ]; then break; fi; sleep 0.1; done".into(),
        "if [ -z \"$st\" ] || [ \"$st\" = Z ]; then echo build-process=gone; else echo build-process=alive; fi".into(),
        "echo after-script status=$CI_JOB_STATUS".into(),
    ];
    job.artifacts = Some(JobArtifacts {
        paths: vec!["out/".into()],
        when: When::Always,
    });
    job
}

async fn cancel_during_build_script(cloud: &Cloud, runner: &gitlab_runner_standin::Runner) {
    let job = long_job();
    let control = JobControl::new();
    let opts = RunOptions {
        control: Some(control.clone()),
        ..RunOptions::default()
    };
    let running = async {
        let dir = cloud
            .wait_for_server_file("build.pid", Duration::from_secs(120))
            .await;
        let pid: u32 = std::fs::read_to_string(dir.join("build.pid"))
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid");
        control.cancel();
        pid
    };
    let (r, pid) = tokio::join!(run_bounded(runner, &job, opts), running);
    assert_eq!(r.status, JobStatus::Canceled, "{}", explain(&r));
    assert!(
        r.job_log.contains("build-process=gone"),
        "the remote build process was stopped before after_script: {}",
        explain(&r)
    );
    assert!(r.job_log.contains("after-script status=canceled"));
    assert!(!r.job_log.contains("\nfinished"));
    let names = r.stage_names();
    for stage in [
        "build_script",
        "after_script",
        "upload_artifacts_on_failure",
        "cleanup_file_variables",
        "cleanup",
    ] {
        assert!(names.contains(&stage), "{stage} ran: {names:?}");
    }
    assert!(wait_gone(pid, Duration::from_secs(10)).await, "pid {pid}");
    let counts = cloud.settled_counts().await;
    assert_eq!(leaked(&counts), 0, "{}", describe(&counts));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_during_build_script_stops_the_remote_process_and_still_runs_the_failure_stages() {
    let cloud = Cloud::start().await;
    cancel_during_build_script(&cloud, &cloud.runner(OWNER)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_with_real_openssh_stops_the_remote_process() {
    let cloud = Cloud::start_with(|o| o.ssh_mode = SshMode::OpenSsh).await;
    let user = executor_simulator::openssh_server::current_user().expect("current user");
    let mut cfg = cloud.runner_config(&[e2e_support::default_recipe()], OWNER);
    // Real sshd logs in as the user running the simulator.
    cfg.service_env.push(("USERNAME".into(), user));
    cancel_during_build_script(&cloud, &gitlab_runner_standin::Runner::new(cfg)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_timeout_stops_the_script_and_cleanup_still_runs() {
    let cloud = Cloud::start().await;
    let mut job = long_job();
    job.timeout = Some(Duration::from_secs(20));
    let runner = cloud.runner(OWNER);
    let started = async {
        let dir = cloud
            .wait_for_server_file("build.pid", Duration::from_secs(120))
            .await;
        std::fs::read_to_string(dir.join("build.pid"))
            .expect("pid file")
            .trim()
            .parse::<u32>()
            .expect("pid")
    };
    let (r, pid) = tokio::join!(run_bounded(&runner, &job, RunOptions::default()), started);
    assert_eq!(r.status, JobStatus::TimedOut, "{}", explain(&r));
    assert!(wait_gone(pid, Duration::from_secs(10)).await, "pid {pid}");
    let names = r.stage_names();
    assert!(
        !names.contains(&"after_script"),
        "after a job timeout only cleanup follows: {names:?}"
    );
    assert_eq!(names.last(), Some(&"cleanup"));
    assert_eq!(r.cleanup_calls, 1);
    let counts = cloud.settled_counts().await;
    assert_eq!(leaked(&counts), 0, "{}", describe(&counts));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_jobs_reusing_slots_each_use_only_their_own_server() {
    let cloud = Cloud::start().await;
    let mut cfg = cloud.runner_config(&[e2e_support::default_recipe()], OWNER);
    // Twenty debug-build jobs on a busy 2-core machine: the bound is for hangs only.
    cfg.default_job_timeout = Duration::from_secs(600);
    let runner = gitlab_runner_standin::Runner::new(cfg);
    // Each job claims its server: a server that already carries a claim was used before.
    let claim = "\
test ! -e \"$HOME/claimed-by\" || { echo \"server reused: $(cat \"$HOME/claimed-by\")\"; exit 3; }
echo \"$CI_JOB_ID\" > \"$HOME/claimed-by\"
echo \"server-of-job $CI_JOB_ID: $(basename \"$HOME\")\"
sleep 0.$((RANDOM % 10))
test \"$(cat \"$HOME/claimed-by\")\" = \"$CI_JOB_ID\"";
    let jobs: Vec<Job> = (0..20)
        .map(|i| {
            let mut j = Job::from_script(claim);
            j.name = format!("job-{i}");
            j
        })
        .collect();
    // Eight at a time, so slots are released and taken again by later jobs.
    let results = tokio::time::timeout(
        Duration::from_secs(600),
        runner.run_jobs(jobs, 8, RunOptions::default()),
    )
    .await
    .expect("20 jobs within 600 s");
    assert_eq!(results.len(), 20);
    let mut servers = BTreeSet::new();
    let mut job_ids = BTreeSet::new();
    let mut slots = BTreeSet::new();
    for r in &results {
        assert_eq!(r.status, JobStatus::Success, "{}", explain(r));
        let used = line_value(&r.job_log, &format!("server-of-job {}: ", r.job_id))
            .unwrap_or_else(|| panic!("job reported its server: {}", explain(r)))
            .to_string();
        // Cleanup deleted exactly the server the job ran on.
        let deleted: Vec<&String> = r
            .runner_log
            .iter()
            .filter(|l| l.contains("deleted server"))
            .collect();
        assert_eq!(deleted.len(), 1, "{}", explain(r));
        assert!(
            deleted[0].contains(&used),
            "job {} ran on {used} and its cleanup deleted: {}",
            r.job_id,
            deleted[0]
        );
        assert!(servers.insert(used), "two jobs on one server");
        job_ids.insert(r.job_id);
        slots.insert(r.concurrent_id);
    }
    assert_eq!(job_ids.len(), 20);
    assert!(
        slots.len() <= 8,
        "slots are reused: {slots:?} for 20 jobs at 8 at a time"
    );
    let counts = cloud.settled_counts().await;
    assert_eq!(leaked(&counts), 0, "{}", describe(&counts));
    let log = cloud.sim.request_log();
    assert_eq!(log.count_path_containing("POST", "/os-keypairs"), 20);
}

/// `EXECUTOR_EVENTS` writes the driver's own events as JSON lines: one per step and one per
/// stage, with the job, the server and the cloud's request ids; never into the job log, and
/// with no secret in them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_events_are_json_lines_with_job_server_and_request_ids() {
    let cloud = Cloud::start().await;
    let events = cloud.dir.path().join("events.jsonl");
    let mut cfg = cloud.runner_config(&[e2e_support::default_recipe()], OWNER);
    cfg.service_env
        .push(("EXECUTOR_EVENTS".into(), events.display().to_string()));
    let runner = gitlab_runner_standin::Runner::new(cfg);
    let r = run_bounded(&runner, &Job::from_script("echo hi"), RunOptions::default()).await;
    assert_eq!(r.status, JobStatus::Success, "{}", explain(&r));
    assert!(
        !r.job_log.contains("\"event\""),
        "events leaked into the job log"
    );

    let text = std::fs::read_to_string(&events).expect("the events file");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let stages: Vec<&str> = lines
        .iter()
        .filter(|e| e["event"] == "stage")
        .map(|e| e["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages.first(), Some(&"config"), "{text}");
    assert!(
        stages.contains(&"prepare") && stages.contains(&"cleanup"),
        "{text}"
    );
    for e in &lines {
        assert!(e["ts"].is_string() && e["duration_ms"].is_u64(), "{e}");
        assert!(e["pid"].is_u64() && e["job"].is_number(), "{e}");
        assert!(e["outcome"].is_string(), "{e}");
    }
    let create = lines
        .iter()
        .find(|e| e["event"] == "step" && e["kind"] == "create_server")
        .unwrap_or_else(|| panic!("no create_server step event: {text}"));
    assert_eq!(create["stage"], "prepare");
    assert_eq!(create["outcome"], "ok");
    let server = create["server_id"].as_str().expect("the server id");
    assert!(
        create["request_ids"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{create}"
    );
    let delete = lines
        .iter()
        .find(|e| e["event"] == "step" && e["stage"] == "cleanup" && e["kind"] == "delete_server")
        .unwrap_or_else(|| panic!("no delete_server step event: {text}"));
    assert_eq!(delete["server_id"], server, "cleanup names the same server");
    assert!(
        lines
            .iter()
            .any(|e| e["event"] == "stage" && e["sub_stage"] == "build_script"),
        "{text}"
    );
    for secret in [
        executor_simulator::USER_PASSWORD,
        "BEGIN OPENSSH PRIVATE KEY",
    ] {
        assert!(!text.contains(secret), "a secret in the events: {text}");
    }
}
