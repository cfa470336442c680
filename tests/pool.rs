//! The warm pool end to end: `executor simulate --pool` runs the real `executor pool` daemon
//! beside the stand-in and the simulated cloud; jobs claim its VMs through the real driver.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use assert_cmd::Command;

fn pooled_recipe() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("recipes/pooled.yaml")
}

fn simulate(extra: &[&str]) -> (i32, String, String) {
    let mut c = Command::cargo_bin("executor").expect("binary");
    c.arg("simulate")
        .arg("--recipe")
        .arg(pooled_recipe())
        .args([
            "--boot-delay",
            "1s",
            "--ssh-delay",
            "300ms",
            "--retry-interval",
            "100ms",
            "--script",
            "uname -a",
        ])
        .args(extra)
        .env("NO_COLOR", "1")
        .timeout(Duration::from_secs(300));
    let out = c.output().expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The names in "claimed warm VM <name>" lines of the job logs.
pub fn claimed_names(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.split("claimed warm VM ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn a_job_on_a_warm_pool_claims_a_ready_vm_and_nothing_leaks() {
    let (code, stdout, stderr) = simulate(&["--pool", "2"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let claimed = claimed_names(&stdout);
    assert_eq!(claimed.len(), 1, "one claim in {stdout}");
    assert!(claimed[0].starts_with("executor-pool-"), "{claimed:?}");
    assert!(
        !stdout.contains("gave way to `provision`"),
        "a hit must not provision: {stdout}"
    );
    assert!(stdout.contains("simulated cloud after the jobs: 0 servers, 0 ports, 0 floating IPs, 0 key pairs, 0 volumes"), "{stdout}");
    assert!(stderr.contains("stopping; deleting"), "{stderr}");
}

/// `--pool N` above what the recipe keeps warm waits for what the recipe keeps, and says so,
/// rather than two minutes for VMs the daemon will never make.
#[test]
fn asking_for_more_ready_vms_than_the_recipe_keeps_waits_for_the_recipes_count() {
    let (code, stdout, stderr) = simulate(&["--pool", "5"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("the recipe keeps 2 VM(s) warm, not 5"),
        "{stderr}"
    );
    assert!(stderr.contains("pool: 2 VM(s) ready"), "{stderr}");
    assert_eq!(claimed_names(&stdout).len(), 1, "{stdout}");
}

#[test]
fn a_burst_larger_than_the_pool_gives_every_vm_to_one_job_and_the_rest_provision_cold() {
    let (code, stdout, stderr) = simulate(&["--pool", "2", "--jobs", "6"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let claimed = claimed_names(&stdout);
    let unique: HashSet<_> = claimed.iter().collect();
    assert_eq!(
        unique.len(),
        claimed.len(),
        "a VM claimed twice: {claimed:?}"
    );
    assert!(
        claimed.len() >= 2,
        "the two warm VMs were used: {claimed:?}"
    );
    let cold = stdout.matches("gave way to `provision`").count();
    assert_eq!(
        claimed.len() + cold,
        6,
        "every job got a VM one way: {stdout}"
    );
    assert_eq!(stdout.matches(": success in").count(), 6, "{stdout}");
    assert!(stdout.contains("simulated cloud after the jobs: 0 servers, 0 ports, 0 floating IPs, 0 key pairs, 0 volumes"), "{stdout}");
}

#[test]
fn without_a_daemon_the_pooled_recipe_provisions_inline_and_the_job_succeeds() {
    let (code, stdout, stderr) = simulate(&[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("gave way to `provision`"), "{stdout}");
    assert!(stdout.contains("no pool daemon answers"), "{stdout}");
    assert!(claimed_names(&stdout).is_empty());
    assert!(
        stdout.contains("simulated cloud after the jobs: 0 servers"),
        "{stdout}"
    );
}
