//! `executor simulate` end to end: the real binary as the driver, through the stand-in, with the
//! embedded simulated cloud. The recipe is the generic test recipe (no cloud steps yet).

use std::path::PathBuf;

use assert_cmd::Command;

fn recipe() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/recipes/generic.yaml")
}

fn simulate() -> Command {
    let mut c = Command::cargo_bin("executor").expect("binary");
    c.arg("simulate").arg("--recipe").arg(recipe()).args([
        "--boot-delay",
        "50ms",
        "--ssh-delay",
        "0s",
        "--retry-interval",
        "50ms",
    ]);
    c.timeout(std::time::Duration::from_secs(120));
    c
}

#[test]
fn a_script_job_runs_every_stage_through_the_real_driver() {
    let out = simulate()
        .args(["--script", "echo hi"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Using Custom executor with driver executor-generic "),
        "{stdout}"
    );
    for stage in [
        "prepare_script",
        "get_sources",
        "build_script",
        "cleanup_file_variables",
    ] {
        assert!(
            stdout.contains(&format!("{stage} on ci-")),
            "the driver saw {stage}: {stdout}"
        );
    }
    assert!(stdout.contains("\x1b[32;1mJob succeeded\x1b[0;m"));
    assert!(
        stdout.contains("success in ") && stdout.contains("cleanup calls 1"),
        "summary line: {stdout}"
    );
    assert!(stdout.contains("simulated cloud after the jobs: 0 servers"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("[runner log]") && stderr.contains("deleting ci-"),
        "cleanup output goes to the runner log: {stderr}"
    );
    assert!(!stdout.contains("deleting ci-"), "and not to the job log");
}

#[test]
fn exit_42_is_reported_and_allow_failure_exit_codes_is_honoured() {
    let dir = tempfile::tempdir().expect("tmp");
    let failing = dir.path().join("fail.yml");
    std::fs::write(&failing, "variables:\n  FAIL_WITH: 42\nscript: make test\n").expect("write");
    let out = simulate()
        .arg("--job")
        .arg(&failing)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("ERROR: Job failed: exit status 42"),
        "{stdout}"
    );
    assert!(stdout.contains("script_failure (exit code 42)"));

    let allowed = dir.path().join("allowed.yml");
    std::fs::write(
        &allowed,
        "variables:\n  FAIL_WITH: 42\nscript: make test\nallow_failure:\n  exit_codes: [42]\n",
    )
    .expect("write");
    let out = simulate()
        .arg("--job")
        .arg(&allowed)
        .arg("--quiet")
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("(exit code 42, allowed to fail)"),
        "{stdout}"
    );
}

#[test]
fn several_concurrent_jobs_each_get_a_summary() {
    let out = simulate()
        .args(["--script", "true", "--jobs", "3", "--quiet"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let summaries: Vec<&str> = stdout.lines().filter(|l| l.starts_with("job ")).collect();
    assert_eq!(summaries.len(), 3, "{stdout}");
    let mut ids: Vec<&str> = summaries
        .iter()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);
}

#[test]
fn simulate_without_a_recipe_or_job_is_a_usage_error() {
    let out = Command::cargo_bin("executor")
        .expect("binary")
        .args(["simulate", "--script", "true"])
        .output()
        .expect("runs");
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--recipe"));
    let out = Command::cargo_bin("executor")
        .expect("binary")
        .arg("simulate")
        .arg("--recipe")
        .arg(recipe())
        .output()
        .expect("runs");
    assert_ne!(out.status.code(), Some(0), "a job or a script is required");
}

fn openstack_job(dir: &std::path::Path) -> PathBuf {
    let job = dir.join("job.yml");
    std::fs::write(&job, "variables:\n  TEST_PREFIX: sim\n  TEST_OWNER: simulate-test\n  TEST_IMAGE: cirros-0.6.2\nscript: uname -a\n")
        .expect("write");
    job
}

fn simulate_openstack() -> Command {
    let mut c = Command::cargo_bin("executor").expect("binary");
    let recipe =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/recipes/openstack-realcloud.yaml");
    c.arg("simulate").arg("--recipe").arg(recipe).args([
        "--boot-delay",
        "200ms",
        "--ssh-delay",
        "0s",
        "--retry-interval",
        "100ms",
        "--quiet",
    ]);
    c.timeout(std::time::Duration::from_secs(240));
    c
}

#[test]
fn concurrent_jobs_provision_and_delete_their_own_servers_in_the_simulated_cloud() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = simulate_openstack()
        .arg("--job")
        .arg(openstack_job(dir.path()))
        .args(["--jobs", "2"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches("): success in ").count(), 2, "{stdout}");
    assert!(stdout.contains("simulated cloud after the jobs: 0 servers, 0 ports, 0 floating IPs, 0 key pairs, 0 volumes"), "{stdout}");
}

#[test]
fn boots_that_always_fail_give_three_attempts_with_cleanup_after_each_and_no_leak() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = simulate_openstack()
        .arg("--job")
        .arg(openstack_job(dir.path()))
        .args(["--error-boots", "1.0"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("runner_system_failure") && stdout.contains("attempts 3, cleanup calls 3"),
        "{stdout}"
    );
    assert!(stdout.contains("simulated cloud after the jobs: 0 servers, 0 ports, 0 floating IPs, 0 key pairs, 0 volumes"), "{stdout}");
}

/// The README's main command: the shipped recipe, a fresh server, the script over SSH.
#[test]
fn the_shipped_recipe_runs_a_whole_job_and_reports_the_scripts_exit_code() {
    let recipe = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("recipes/openstack.yaml");
    let run = |script: &str| {
        let mut c = Command::cargo_bin("executor").expect("binary");
        c.arg("simulate").arg("--recipe").arg(&recipe).args([
            "--boot-delay",
            "200ms",
            "--ssh-delay",
            "0s",
            "--script",
            script,
        ]);
        c.timeout(std::time::Duration::from_secs(240));
        c.output().expect("runs")
    };
    let out = run("echo hello from the job");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("\x1b[32;1m$ echo hello from the job\x1b[0;m\nhello from the job\n"),
        "{stdout}"
    );
    assert!(stdout.contains("Job succeeded"));
    assert!(
        stdout.contains("0 servers, 0 ports, 0 floating IPs, 0 key pairs, 0 volumes"),
        "{stdout}"
    );

    let out = run("echo before; exit 42");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("ERROR: Job failed: exit status 42"),
        "{stdout}"
    );
    assert!(
        stdout.contains("0 servers, 0 ports, 0 floating IPs, 0 key pairs, 0 volumes"),
        "{stdout}"
    );
}

#[test]
fn cancel_during_build_script_still_runs_after_script_and_cleanup_with_the_shipped_recipe() {
    let dir = tempfile::tempdir().expect("tmp");
    let job = dir.path().join("job.yml");
    std::fs::write(
        &job,
        "script: sleep 60\nafter_script: 'echo \"after $CI_JOB_STATUS\"'\n",
    )
    .expect("write");
    let recipe = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("recipes/openstack.yaml");
    let run = |extra: &[&str]| {
        let mut c = Command::cargo_bin("executor").expect("binary");
        c.arg("simulate")
            .arg("--recipe")
            .arg(&recipe)
            .arg("--job")
            .arg(&job);
        c.args([
            "--boot-delay",
            "200ms",
            "--ssh-delay",
            "0s",
            "--cancel-during",
            "build_script",
            "--cancel-delay",
            "500ms",
        ]);
        c.args(extra).timeout(std::time::Duration::from_secs(240));
        c.output().expect("runs")
    };
    let out = run(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("after canceled\n"),
        "after_script ran with CI_JOB_STATUS=canceled: {stdout}"
    );
    assert!(stdout.contains("ERROR: Job failed: canceled"));
    assert!(
        stdout.contains("cleanup_file_variables") && stdout.contains("cleanup calls 1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("0 servers, 0 ports, 0 floating IPs, 0 key pairs, 0 volumes"),
        "{stdout}"
    );

    let out = run(&["--abort"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        !stdout.contains("after canceled"),
        "an abort runs no further stage: {stdout}"
    );
    assert!(
        stdout.contains("canceled in ") && stdout.contains("cleanup calls 1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("0 servers, 0 ports, 0 floating IPs, 0 key pairs, 0 volumes"),
        "{stdout}"
    );
}
