//! The job file subset of `.gitlab-ci.yml`, and concurrent jobs sharing `CI_CONCURRENT_ID` slots.

use crate::runner_support;

use std::time::Duration;

use gitlab_runner_standin::{Job, JobFileError, JobStatus, RunOptions, When};
use runner_support::{FakeDriver, job};

#[test]
fn a_single_job_file_reads_every_supported_key() {
    let jobs = Job::parse_file(
        r#"
script:
  - make build
  - - make test
    - make lint
after_script: echo bye
variables:
  PLAIN: hello
  NUMBER: 3
  SECRET: { value: s3cr3t-value-1, masked: true }
  LITERAL: { value: "$HOME", expand: false }
timeout: 10m 30s
allow_failure:
  exit_codes: [42, 137]
cache:
  key: deps
  paths: [vendor/]
artifacts:
  paths: [out/]
  when: always
"#,
    )
    .expect("valid job file");
    assert_eq!(jobs.len(), 1);
    let j = &jobs[0];
    assert_eq!(j.script, ["make build", "make test", "make lint"]);
    assert_eq!(j.after_script, ["echo bye"]);
    assert_eq!(j.timeout, Some(Duration::from_secs(630)));
    assert_eq!(j.allow_failure_exit_codes, [42, 137]);
    let var = |k: &str| j.variables.iter().find(|v| v.key == k).expect(k).clone();
    assert_eq!(var("NUMBER").value, "3");
    assert!(var("SECRET").masked && !var("SECRET").public);
    assert!(var("LITERAL").raw);
    assert_eq!(j.cache.as_ref().map(|c| c.key.as_str()), Some("deps"));
    assert_eq!(j.artifacts.as_ref().map(|a| a.when), Some(When::Always));
}

#[test]
fn a_pipeline_file_has_named_jobs_global_variables_and_skips_hidden_ones() {
    let jobs = Job::parse_file(
        r#"
stages: [test]
variables:
  GLOBAL: g
  OVERRIDE: global
.template:
  script: echo hidden
.no_script_template:
  image: alpine
unit:
  stage: test
  script: cargo test
  variables:
    OVERRIDE: job
  allow_failure:
    exit_codes: 3
"#,
    )
    .expect("valid pipeline");
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].name, "unit");
    assert_eq!(jobs[0].allow_failure_exit_codes, [3]);
    let last = |k: &str| {
        jobs[0]
            .variables
            .iter()
            .rev()
            .find(|v| v.key == k)
            .map(|v| v.value.clone())
    };
    assert_eq!(last("GLOBAL").as_deref(), Some("g"));
    assert_eq!(
        last("OVERRIDE").as_deref(),
        Some("job"),
        "job variables come later and win"
    );
}

#[test]
fn unsupported_or_broken_job_files_are_errors_not_panics() {
    for bad in [
        "script: [true]\nimage: alpine\n",
        "script: []\n",
        "- a\n- b\n",
        "script: true\ntimeout: soon\n",
        "unit:\n  scrpt: x\n",
        "just text",
        "script: [\n",
        "{}",
    ] {
        assert!(Job::parse_file(bad).is_err(), "{bad:?} should be rejected");
    }
    assert!(matches!(
        Job::parse_file("script: []\n"),
        Err(JobFileError::EmptyScript { .. })
    ));
}

#[test]
fn from_script_makes_one_command_per_line() {
    let j = Job::from_script("make build\n\n  \nmake test\n");
    assert_eq!(j.script, ["make build", "make test"]);
    assert_eq!(j.name, "simulate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_jobs_get_distinct_slots_that_are_reused_afterwards() {
    let d = FakeDriver::new();
    // The fake driver runs the scripts on this machine, so concurrent jobs need the shared
    // builds-dir layout (a directory per slot) or one job's clean-up removes another's files.
    d.config_json(&format!(
        r#"{{"builds_dir":"{0}/builds","cache_dir":"{0}/cache","builds_dir_is_shared":true}}"#,
        d.path().display()
    ));
    // Every job waits until all three are in build_script, so they truly overlap.
    d.hook(
        "run_build_script",
        r#"touch "$D/in_build_$CUSTOM_ENV_CI_JOB_ID"
for _ in $(seq 1 400); do [ "$(ls "$D" | grep -c '^in_build_')" -ge 3 ] && break; sleep 0.05; done"#,
    );
    let runner = d.runner();
    let jobs = vec![job("true"), job("true"), job("true")];
    let results = tokio::time::timeout(
        Duration::from_secs(90),
        runner.run_jobs(jobs, 3, RunOptions::default()),
    )
    .await
    .expect("bounded");
    assert_eq!(results.len(), 3);
    for r in &results {
        assert_eq!(r.status, JobStatus::Success, "{}", r.job_log);
    }
    let mut ids: Vec<u64> = results.iter().map(|r| r.job_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "distinct CI_JOB_IDs");
    let mut slots: Vec<u32> = results.iter().map(|r| r.concurrent_id).collect();
    slots.sort();
    assert_eq!(slots, [0, 1, 2]);
    // Every driver call of a job saw that job's own slot.
    for c in d.calls() {
        let env = c.env();
        let r = results
            .iter()
            .find(|r| r.job_id.to_string() == env["CUSTOM_ENV_CI_JOB_ID"])
            .expect("known job");
        assert_eq!(
            env["CUSTOM_ENV_CI_CONCURRENT_ID"],
            r.concurrent_id.to_string(),
            "{}",
            c.name
        );
        assert_eq!(
            env["CUSTOM_ENV_CI_CONCURRENT_PROJECT_ID"],
            r.concurrent_id.to_string()
        );
    }
    let again = runner.run_job(&job("true")).await;
    assert_eq!(again.concurrent_id, 0, "the lowest free slot is reused");
}
