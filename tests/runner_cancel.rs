//! Cancel, abort, timeouts, the kill sequence and drivers that misbehave with their pipes.

use crate::runner_support;

use std::time::Duration;

use gitlab_runner_standin::{
    JobArtifacts, JobCache, JobControl, JobStatus, RunOptions, Runner, When,
};
use runner_support::{FakeDriver, job, run_bounded};

/// The build_script run_exec starts a background helper in its process group and waits; every
/// member records the SIGTERM it gets.
const TERM_RECORDING_RUN: &str = r#"
( trap 'touch "$D/helper_got_term"; exit 0' TERM; while :; do sleep 0.1; done ) >/dev/null 2>&1 &
trap 'touch "$D/driver_got_term"; wait; exit 1' TERM
touch "$D/build_started"
bash "$2" &
wait $!
wait
exit 0
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_cancel_during_build_script_still_runs_after_script_failure_stages_and_cleanup() {
    let d = FakeDriver::new();
    d.hook("run_build_script", TERM_RECORDING_RUN);
    let mut j = job("sleep 60");
    j.after_script = vec!["echo \"after: $CI_JOB_STATUS\"".into()];
    j.cache = Some(JobCache {
        key: "k".into(),
        paths: vec!["c/".into()],
        when: When::Always,
    });
    j.artifacts = Some(JobArtifacts {
        paths: vec!["a/".into()],
        when: When::Always,
    });
    let control = JobControl::new();
    let runner = d.runner();
    let opts = RunOptions {
        control: Some(control.clone()),
        ..Default::default()
    };
    let (r, ()) = tokio::join!(run_bounded(&runner, &j, opts), async {
        d.wait_for("build_started").await;
        control.cancel();
    });
    assert_eq!(r.status, JobStatus::Canceled, "{}", r.job_log);
    assert!(
        d.path().join("driver_got_term").exists(),
        "SIGTERM reached the driver"
    );
    assert!(
        d.path().join("helper_got_term").exists(),
        "SIGTERM reached the whole process group"
    );
    assert_eq!(
        d.call_names()[5..],
        [
            "run_build_script",
            "run_after_script",
            "run_archive_cache_on_failure",
            "run_upload_artifacts_on_failure",
            "run_cleanup_file_variables",
            "cleanup"
        ]
    );
    assert_eq!(
        d.call("run_after_script").env()["CUSTOM_ENV_CI_JOB_STATUS"],
        "canceled"
    );
    assert!(r.job_log.contains("after: canceled\n"), "{}", r.job_log);
    assert!(
        r.job_log.contains("ERROR: Job failed: canceled"),
        "{}",
        r.job_log
    );
    assert_eq!(r.cleanup_calls, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_timeout_stops_the_stage_and_runs_only_cleanup() {
    let d = FakeDriver::new();
    d.hook("run_build_script", "touch \"$D/build_started\"");
    let mut j = job("sleep 60");
    j.after_script = vec!["echo after".into()];
    // Long enough for the earlier stages even on a busy machine.
    j.timeout = Some(Duration::from_secs(4));
    let r = run_bounded(&d.runner(), &j, RunOptions::default()).await;
    assert_eq!(r.status, JobStatus::TimedOut, "{}", r.job_log);
    assert!(d.path().join("build_started").exists());
    let names = d.call_names();
    assert_eq!(names.last().map(String::as_str), Some("cleanup"));
    assert!(
        !names
            .iter()
            .any(|n| n == "run_after_script" || n == "run_cleanup_file_variables"),
        "{names:?}"
    );
    assert!(
        r.job_log
            .contains("ERROR: Job failed: execution took longer than 4s seconds"),
        "{}",
        r.job_log
    );
    assert_eq!(r.cleanup_calls, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_timeout_counts_provisioning() {
    let d = FakeDriver::new();
    d.hook("prepare", "sleep 60");
    let mut j = job("true");
    j.timeout = Some(Duration::from_secs(1));
    let r = run_bounded(&d.runner(), &j, RunOptions::default()).await;
    assert_eq!(r.status, JobStatus::TimedOut, "{}", r.job_log);
    assert_eq!(
        d.call_names(),
        ["config", "prepare", "cleanup"],
        "no retry once the job context ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_during_prepare_is_not_retried() {
    let d = FakeDriver::new();
    d.hook("prepare", "touch \"$D/prepare_started\"; sleep 60");
    let control = JobControl::new();
    let runner = d.runner();
    let opts = RunOptions {
        control: Some(control.clone()),
        ..Default::default()
    };
    let j = job("true");
    let (r, ()) = tokio::join!(run_bounded(&runner, &j, opts), async {
        d.wait_for("prepare_started").await;
        control.cancel();
    });
    assert_eq!(r.status, JobStatus::Canceled, "{}", r.job_log);
    assert_eq!((r.attempts, r.cleanup_calls), (1, 1));
    assert_eq!(d.call_names(), ["config", "prepare", "cleanup"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_is_followed_by_sigkill_after_the_grace_period() {
    let d = FakeDriver::new();
    d.hook("run_build_script", "trap 'touch \"$D/ignored_term\"' TERM; touch \"$D/build_started\"; while :; do sleep 0.1; done");
    let mut cfg = d.runner_config();
    cfg.graceful_kill_timeout = Duration::from_millis(500);
    let control = JobControl::new();
    let runner = Runner::new(cfg);
    let opts = RunOptions {
        control: Some(control.clone()),
        ..Default::default()
    };
    let j = job("true");
    let (r, ()) = tokio::join!(run_bounded(&runner, &j, opts), async {
        d.wait_for("build_started").await;
        control.abort();
    });
    assert_eq!(r.status, JobStatus::Canceled, "{}", r.job_log);
    assert!(d.path().join("ignored_term").exists(), "SIGTERM came first");
    assert!(
        !r.job_log.contains("likely process is dormant"),
        "SIGKILL ended it: {}",
        r.job_log
    );
    let build = r
        .stages
        .iter()
        .find(|s| s.name == "build_script")
        .expect("build_script record");
    assert!(build.error.is_some());
    assert_eq!(
        d.call_names().last().map(String::as_str),
        Some("cleanup"),
        "an abort runs only cleanup"
    );
    assert!(
        !d.call_names()
            .iter()
            .any(|n| n == "run_cleanup_file_variables")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_child_holding_stdout_hangs_the_stage_until_the_job_times_out() {
    let d = FakeDriver::new();
    // The driver exits at once, but `sleep` inherited its stdout.
    d.hook("prepare", "sleep 60 &\nexit 0");
    let mut j = job("true");
    j.timeout = Some(Duration::from_secs(3));
    let r = run_bounded(&d.runner(), &j, RunOptions::default()).await;
    assert_eq!(
        r.status,
        JobStatus::TimedOut,
        "gitlab-runner waits for EOF: {}",
        r.job_log
    );
    assert_eq!(r.held_pipe_stages, ["prepare"]);
    assert!(
        r.job_log.contains("still holds its stdout/stderr open"),
        "{}",
        r.job_log
    );
    assert_eq!(d.call_names(), ["config", "prepare", "cleanup"]);

    // Detaching the child's fds is the fix, and then nothing hangs.
    let d = FakeDriver::new();
    d.hook("prepare", "sleep 60 >/dev/null 2>&1 &\nexit 0");
    let r = run_bounded(&d.runner(), &job("true"), RunOptions::default()).await;
    assert_eq!(r.status, JobStatus::Success, "{}", r.job_log);
    assert!(r.held_pipe_stages.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_has_its_own_timeout_and_its_failure_is_only_a_warning() {
    let d = FakeDriver::new();
    d.hook("cleanup", "sleep 60");
    let mut cfg = d.runner_config();
    cfg.cleanup_exec_timeout = Duration::from_millis(500);
    cfg.graceful_kill_timeout = Duration::from_millis(500);
    let r = run_bounded(&Runner::new(cfg), &job("true"), RunOptions::default()).await;
    assert_eq!(r.status, JobStatus::Success, "{}", r.job_log);
    assert!(
        r.job_log.contains("WARNING: Cleanup script failed: "),
        "{}",
        r.job_log
    );

    let d = FakeDriver::new();
    d.hook("cleanup", "exit 2");
    let r = run_bounded(&d.runner(), &job("exit 3"), RunOptions::default()).await;
    assert_eq!(
        (r.status, r.exit_code),
        (JobStatus::ScriptFailure, Some(3)),
        "cleanup's exit code is ignored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_exec_timeout_is_a_retryable_failure() {
    let d = FakeDriver::new();
    d.hook("prepare", "sleep 60");
    let mut cfg = d.runner_config();
    cfg.prepare_exec_timeout = Duration::from_millis(300);
    cfg.preparation_attempts = 2;
    let r = run_bounded(&Runner::new(cfg), &job("true"), RunOptions::default()).await;
    assert_eq!(r.status, JobStatus::SystemFailure, "{}", r.job_log);
    assert_eq!((r.attempts, r.cleanup_calls), (2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_abort_cleanup_may_start_while_a_stage_ignoring_sigterm_still_runs() {
    let d = FakeDriver::new();
    d.hook(
        "run_build_script",
        "trap '' TERM; echo $$ > \"$D/build_pid\"; touch \"$D/build_started\"; while :; do sleep 0.1; done",
    );
    d.hook(
        "cleanup",
        "if kill -0 \"$(cat \"$D/build_pid\")\" 2>/dev/null; then touch \"$D/build_alive_at_cleanup\"; fi",
    );
    let mut cfg = d.runner_config();
    cfg.graceful_kill_timeout = Duration::from_secs(30);
    cfg.wait_for_build_finish_timeout = Duration::from_millis(300);
    let control = JobControl::new();
    let runner = Runner::new(cfg);
    let opts = RunOptions {
        control: Some(control.clone()),
        ..Default::default()
    };
    let j = job("true");
    let (r, ()) = tokio::join!(run_bounded(&runner, &j, opts), async {
        d.wait_for("build_started").await;
        control.abort();
    });
    // The driver ignores SIGTERM and the runtime's delayed SIGKILL dies with this test, so end
    // the group this test started.
    let pgid: i32 = std::fs::read_to_string(d.path().join("build_pid"))
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0);
    let build_alive = d.path().join("build_alive_at_cleanup").exists();
    if pgid > 0 {
        // SAFETY: kill(2) with the negative pgid of the driver group this test created.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
    assert_eq!(r.status, JobStatus::Canceled, "{}", r.job_log);
    assert!(
        build_alive,
        "cleanup ran while the SIGTERM-ignoring run_exec was alive"
    );
    assert!(r.job_log.contains("still being killed"), "{}", r.job_log);
    assert_eq!(d.call_names().last().map(String::as_str), Some("cleanup"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_stage_lets_a_test_cancel_at_a_precise_point() {
    let d = FakeDriver::new();
    let control = JobControl::new();
    let runner = d.runner();
    let opts = RunOptions {
        control: Some(control.clone()),
        ..Default::default()
    };
    let j = job("sleep 60");
    let (r, ()) = tokio::join!(run_bounded(&runner, &j, opts), async {
        control.wait_for_stage("get_sources").await;
        control.cancel();
    });
    assert_eq!(r.status, JobStatus::Canceled, "{}", r.job_log);
    let names = d.call_names();
    assert!(
        !names.iter().any(|n| n == "run_build_script"),
        "a cancel before the user script ends the job: {names:?}"
    );
    assert_eq!(names.last().map(String::as_str), Some("cleanup"));
}
