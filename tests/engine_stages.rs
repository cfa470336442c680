//! The real binary driven through all four stages of a generic-steps recipe, with the
//! environment gitlab-runner sets.

use std::path::{Path, PathBuf};

use crate::stage_run::StageRun;

fn recipe() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/recipes/generic.yaml")
}

/// A stage of job 4242 with the generic recipe; `config` sees an empty CI_BUILDS_DIR.
fn stage(dir: &Path, args: &[&str]) -> StageRun {
    StageRun::new(dir, args)
        .recipe(recipe())
        .job_var("CI_JOB_ID", "4242")
        .job_var("CI_BUILDS_DIR", "")
}

#[test]
fn config_prints_exactly_one_json_object() {
    let dir = tempfile::tempdir().unwrap();
    let out = stage(dir.path(), &["config"]).output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is one JSON value");
    assert_eq!(v["builds_dir"], "/builds");
    assert_eq!(v["hostname"], "ci-4242");
    assert_eq!(v["builds_dir_is_shared"], false);
    assert_eq!(v["driver"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["job_env"]["EXECUTOR_JOB_NAME"], "ci-4242");
    assert_eq!(stdout.trim_end().lines().count(), 1);
}

#[test]
fn all_four_stages_share_state_and_map_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    stage(d, &["config"]).assert().success();
    stage(d, &["prepare"])
        .assert()
        .success()
        .stderr(predicates::str::contains("preparing ci-4242 with 40 GiB"));
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("executor-state.json")).unwrap()).unwrap();
    assert_eq!(state["machine"], "ci-4242");
    assert_eq!(state["disk"], 40, "a lone expression keeps its number type");

    let script = d.join("script");
    std::fs::write(&script, "echo hi\n").unwrap();
    // a stale exit-code file from an earlier stage is removed by every run
    std::fs::write(d.join("build_exit_code"), "99\n").unwrap();
    stage(
        d,
        &[
            "run",
            "leading-run-arg",
            script.to_str().unwrap(),
            "step_release",
        ],
    )
    .assert()
    .success()
    .stderr(predicates::str::contains("step_release on ci-4242"));
    assert!(!d.join("build_exit_code").exists());

    stage(d, &["run", script.to_str().unwrap(), "build_script"])
        .job_var("FAIL_WITH", "42")
        .assert()
        .code(11);
    assert_eq!(
        std::fs::read_to_string(d.join("build_exit_code"))
            .unwrap()
            .trim(),
        "42"
    );

    stage(d, &["cleanup"])
        .assert()
        .success()
        .stderr(predicates::str::contains("deleting ci-4242"));
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("executor-state.json")).unwrap()).unwrap();
    assert!(state.get("machine").is_none());
}

fn payload(dir: &Path, job: u64) {
    std::fs::write(
        dir.join("response.json"),
        format!(r#"{{"id": {job}, "token": "glcbt-{job}", "job_info": {{"project_id": 7}}}}"#),
    )
    .unwrap();
}

/// Issue 14, item 2: a state records its job; a stage of another job, or one that cannot say
/// which job it is, refuses it with a system failure instead of using that job's server.
#[test]
fn a_job_state_of_another_job_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    payload(d, 4242);
    stage(d, &["prepare"]).assert().success();
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("executor-state.json")).unwrap()).unwrap();
    assert_eq!(state["_job"]["job"], "4242", "{state}");

    let script = d.join("script");
    std::fs::write(&script, "echo hi\n").unwrap();
    let run = [script.to_str().unwrap(), "build_script"];
    stage(d, &["run", run[0], run[1]]).assert().success();
    payload(d, 4343);
    for args in [&["run", run[0], run[1]][..], &["cleanup"][..]] {
        stage(d, args)
            .assert()
            .code(12)
            .stderr(predicates::str::contains(
                "belongs to job 4242 of project 7, not to this job (job 4343 of project 7)",
            ));
    }
    std::fs::remove_file(d.join("response.json")).unwrap();
    stage(d, &["cleanup"])
        .assert()
        .code(12)
        .stderr(predicates::str::contains("cannot prove it is that job"));

    // EXECUTOR_STATE_DIR no longer moves the state: job 4343 keeps its own, in its own directory.
    let other = tempfile::tempdir().unwrap();
    payload(other.path(), 4343);
    stage(other.path(), &["prepare"])
        .env("EXECUTOR_STATE_DIR", d)
        .assert()
        .success();
    assert!(other.path().join("executor-state.json").exists());
}

#[test]
fn cleanup_is_safe_when_prepare_never_ran() {
    let dir = tempfile::tempdir().unwrap();
    stage(dir.path(), &["cleanup"])
        .assert()
        .success()
        .stderr(predicates::str::contains("deleting nothing"));
}

#[test]
fn a_broken_recipe_is_a_system_failure_with_a_location() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "version: 1\nprepare:\n  - id: x\n    kind: lgo\n").unwrap();
    // the override is layered on the base; its unknown kind is reported at its own line
    let out = stage(dir.path(), &["prepare"])
        .arg("--recipe")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(12));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown step kind `lgo`"), "{err}");
    assert!(err.contains("bad.yaml:4:11"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn undefined_template_names_fail_instead_of_rendering_empty() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path().join("r.yaml");
    std::fs::write(
        &r,
        "version: 1\nprepare:\n  - id: x\n    kind: log\n    message: \"{{ job.NOT_SET }}\"\n",
    )
    .unwrap();
    let out = StageRun::new(dir.path(), ["prepare"])
        .recipe(&r)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(12));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("r.yaml:5:14"), "{err}");
    assert!(err.contains("undefined"), "{err}");
}

#[test]
fn executor_recipe_env_stands_in_for_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    StageRun::new(dir.path(), ["config"])
        .env("EXECUTOR_RECIPE", recipe())
        .job_var("CI_JOB_ID", "5")
        .assert()
        .success()
        .stdout(predicates::str::contains("\"hostname\":\"ci-5\""));
}
