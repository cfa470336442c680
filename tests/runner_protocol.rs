//! The stand-in invokes a driver the way gitlab-runner does: argv, cwd, TMPDIR, environment
//! precedence, stdin, process groups, `response.json`, config JSON strictness and retries.

use crate::runner_support;

use gitlab_runner_standin::{JobStatus, JobVariable, RunOptions};
use runner_support::{FakeDriver, job, run_bounded};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stage_gets_the_protocol_environment_argv_cwd_stdin_and_own_process_group() {
    let d = FakeDriver::new();
    d.config_json(&format!(
        r#"{{"builds_dir":"{0}/builds","cache_dir":"{0}/cache","job_env":{{"FOO":"Hello","BUILD_FAILURE_EXIT_CODE":"7","CUSTOM_ENV_CI_JOB_ID":"shadow"}}}}"#,
        d.path().display()
    ));
    let mut runner_cfg = d.runner_config();
    runner_cfg.environment = vec![("RUNNER_ENV_VAR".into(), "from-runner".into())];
    let runner = gitlab_runner_standin::Runner::new(runner_cfg);
    let j = job("echo hi")
        .with_variable(JobVariable::new("DUP", "first"))
        .with_variable(JobVariable::new("DUP", "second"));
    let r = run_bounded(&runner, &j, RunOptions::default()).await;
    assert_eq!(r.status, JobStatus::Success, "{}", r.job_log);

    let calls = d.calls();
    let tmp = std::path::PathBuf::from(calls[0].read("cwd").trim());
    assert!(
        tmp.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("custom-executor"),
        "{tmp:?}"
    );
    assert_eq!(tmp.parent(), Some(std::env::temp_dir().as_path()));
    assert!(!tmp.exists(), "the attempt dir is removed after cleanup");

    for c in &calls {
        let env = c.env();
        assert_eq!(
            c.read("cwd").trim(),
            tmp.to_str().unwrap(),
            "{} cwd",
            c.name
        );
        assert_eq!(env["TMPDIR"], tmp.to_str().unwrap(), "{} TMPDIR", c.name);
        assert_eq!(env["SYSTEM_FAILURE_EXIT_CODE"], "2");
        assert_eq!(
            env["BUILD_EXIT_CODE_FILE"],
            format!("{}/build_exit_code", tmp.display())
        );
        assert_eq!(
            env["JOB_RESPONSE_FILE"],
            format!("{}/response.json", tmp.display())
        );
        assert_eq!(env["CUSTOM_ENV_CI_JOB_SERVICES"], "");
        assert_eq!(env["CUSTOM_ENV_DUP"], "second", "the last duplicate wins");
        assert_eq!(env["CUSTOM_ENV_RUNNER_ENV_VAR"], "from-runner");
        assert_eq!(env["CUSTOM_ENV_CI_SERVER"], "yes");
        assert_eq!(env["CUSTOM_ENV_CI_SHARED_ENVIRONMENT"], "true");
        assert_eq!(
            env["CUSTOM_ENV_CI_JOB_ID"],
            r.job_id.to_string(),
            "job_env cannot shadow CUSTOM_ENV_*"
        );
        assert_eq!(
            env.get("PATH"),
            std::env::var("PATH").ok().as_ref(),
            "the parent environment is passed"
        );
        assert_eq!(c.read("stdin").trim(), "/dev/null", "{} stdin", c.name);
        assert_eq!(
            c.read("pgid").trim(),
            c.read("pid").trim(),
            "{} leads its own process group",
            c.name
        );
        assert_eq!(c.read("response_mode").trim(), "600");
        if c.name == "config" {
            assert_eq!(
                env.get("FOO"),
                None,
                "job_env is not known before config ran"
            );
            assert_eq!(env["BUILD_FAILURE_EXIT_CODE"], "1");
            assert_eq!(env["CUSTOM_ENV_CI_BUILDS_DIR"], "", "empty during config");
            assert_eq!(env["CUSTOM_ENV_CI_PROJECT_DIR"], "", "empty during config");
            assert_eq!(env["CUSTOM_ENV_RUNNER_TEMP_PROJECT_DIR"], ".tmp");
        } else {
            assert_eq!(env["FOO"], "Hello", "{} gets job_env unprefixed", c.name);
            assert_eq!(
                env["BUILD_FAILURE_EXIT_CODE"], "7",
                "job_env shadows the defaults"
            );
            assert_eq!(
                env["CUSTOM_ENV_CI_BUILDS_DIR"],
                format!("{}/builds", d.path().display())
            );
            assert_eq!(
                env["CUSTOM_ENV_CI_PROJECT_DIR"],
                format!("{}/builds/executor/simulate", d.path().display())
            );
        }
    }

    let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.first(), Some(&"config"));
    assert_eq!(names.last(), Some(&"cleanup"));
    assert_eq!(calls[0].argv(), ["config"]);
    let build = d.call("run_build_script");
    let argv = build.argv();
    assert_eq!(argv.len(), 3, "{argv:?}");
    assert_eq!(argv[0], "run");
    assert_eq!(argv[2], "build_script");
    let script = std::path::Path::new(&argv[1]);
    assert!(
        script.is_absolute() && script.file_name().unwrap() == "script",
        "{script:?}"
    );
    assert!(
        script
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("script")
    );
    assert_eq!(script.parent().unwrap().parent(), Some(tmp.as_path()));
    assert_eq!(build.read("script_mode").trim(), "700");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envp_keeps_the_protocol_order_with_duplicates_at_their_last_position() {
    let d = FakeDriver::new();
    d.config_json(&format!(
        r#"{{"builds_dir":"{0}/builds","cache_dir":"{0}/cache","job_env":{{"AAA_JOB_ENV":"x","TMPDIR":"/shadowed"}}}}"#,
        d.path().display()
    ));
    let r = run_bounded(&d.runner(), &job("true"), RunOptions::default()).await;
    assert_eq!(r.status, JobStatus::Success, "{}", r.job_log);
    let keys: Vec<String> = d
        .call("prepare")
        .env_list()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let pos = |k: &str| {
        keys.iter()
            .position(|x| x == k)
            .unwrap_or_else(|| panic!("{k} missing"))
    };
    let env = d.call("prepare").env();
    assert_eq!(
        env["TMPDIR"], "/shadowed",
        "job_env comes after TMPDIR and wins"
    );
    assert!(pos("BUILD_FAILURE_EXIT_CODE") < pos("JOB_RESPONSE_FILE"));
    assert!(
        pos("JOB_RESPONSE_FILE") < pos("AAA_JOB_ENV"),
        "job_env after the protocol variables: {keys:?}"
    );
    assert!(pos("AAA_JOB_ENV") < pos("CUSTOM_ENV_FF_TIMESTAMPS"));
    assert!(pos("CUSTOM_ENV_FF_TIMESTAMPS") < pos("CUSTOM_ENV_CI_RUNNER_SHORT_TOKEN"));
    assert!(pos("CUSTOM_ENV_CI_RUNNER_SHORT_TOKEN") < pos("CUSTOM_ENV_CI_BUILDS_DIR"));
    assert!(pos("CUSTOM_ENV_CI_CONCURRENT_ID") < pos("CUSTOM_ENV_CI_JOB_ID"));
    assert!(pos("CUSTOM_ENV_CI_JOB_ID") < pos("CUSTOM_ENV_CI_SHARED_ENVIRONMENT"));
    assert!(pos("CUSTOM_ENV_RUNNER_TEMP_PROJECT_DIR") < pos("CUSTOM_ENV_CI_JOB_SERVICES"));
    assert_eq!(
        keys.last().map(String::as_str),
        Some("CUSTOM_ENV_CI_JOB_SERVICES")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_json_holds_a_realistic_payload() {
    let d = FakeDriver::new();
    let mut j = job("echo building");
    j.after_script = vec!["echo done".into()];
    j.timeout = Some(std::time::Duration::from_secs(600));
    let r = run_bounded(&d.runner(), &j, RunOptions::default()).await;
    assert_eq!(r.status, JobStatus::Success, "{}", r.job_log);
    let v: serde_json::Value =
        serde_json::from_str(&d.call("config").read("response.json")).expect("valid JSON");
    assert_eq!(v["id"], r.job_id);
    let token = v["token"].as_str().expect("token");
    assert!(!token.is_empty());
    assert_eq!(
        d.call("config").env()["CUSTOM_ENV_CI_JOB_TOKEN"],
        token,
        "secrets reach the driver in clear"
    );
    assert!(!r.job_log.contains(token), "but never the job log");
    assert_eq!(v["runner_info"]["timeout"], 600);
    assert_eq!(v["job_info"]["project_full_path"], "executor/simulate");
    assert!(v["git_info"]["sha"].is_string());
    let steps = v["steps"].as_array().expect("steps");
    assert_eq!(steps[0]["name"], "script");
    assert_eq!(steps[0]["script"][0], "echo building");
    assert_eq!(steps[1]["name"], "after_script");
    let vars = v["variables"].as_array().expect("variables");
    assert!(
        vars.iter().any(|x| x["key"] == "CI_JOB_ID"
            && x["value"].as_str() == Some(r.job_id.to_string().as_str()))
    );
    assert!(
        vars.iter()
            .all(|x| x["key"].is_string() && x["value"].is_string() && x["masked"].is_boolean())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_stdout_is_parsed_not_logged_and_names_the_driver() {
    let d = FakeDriver::new();
    d.config_json(&format!(
        r#"{{"BUILDS_DIR":"{0}/builds","cache_dir":"{0}/cache","unknown_key":[1,2],"hostname":null,"Driver":{{"Name":"fake driver","VERSION":"v0.0.1"}}}}"#,
        d.path().display()
    ));
    d.hook("config", "echo 'config says hi on stderr' >&2");
    let r = run_bounded(&d.runner(), &job("true"), RunOptions::default()).await;
    assert_eq!(r.status, JobStatus::Success, "{}", r.job_log);
    assert!(
        r.job_log
            .contains("Using Custom executor with driver fake driver v0.0.1...\n"),
        "{}",
        r.job_log
    );
    assert!(r.job_log.contains("config says hi on stderr"));
    assert!(
        !r.job_log.contains("unknown_key"),
        "config stdout is not logged"
    );

    let d = FakeDriver::new();
    d.no_config_json();
    let mut cfg = d.runner_config();
    cfg.builds_dir = Some(format!("{}/builds", d.path().display()));
    cfg.cache_dir = Some(format!("{}/cache", d.path().display()));
    let r = run_bounded(
        &gitlab_runner_standin::Runner::new(cfg),
        &job("true"),
        RunOptions::default(),
    )
    .await;
    assert_eq!(
        r.status,
        JobStatus::Success,
        "empty stdout means no overrides: {}",
        r.job_log
    );
    assert!(r.job_log.contains("Using Custom executor...\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_config_json_is_retried_three_times_with_cleanup_after_each() {
    for bad in [
        "\n",
        "starting up\n{}",
        r#"{"builds_dir_is_shared":"true"}"#,
    ] {
        let d = FakeDriver::new();
        d.config_json(bad);
        let r = run_bounded(&d.runner(), &job("true"), RunOptions::default()).await;
        assert_eq!(r.status, JobStatus::SystemFailure, "{bad:?}: {}", r.job_log);
        assert_eq!(r.attempts, 3);
        assert_eq!(r.cleanup_calls, 3);
        assert_eq!(
            d.call_names(),
            [
                "config", "cleanup", "config", "cleanup", "config", "cleanup"
            ]
        );
        assert_eq!(
            r.job_log
                .matches("Preparation failed: error while parsing JSON output")
                .count(),
            3,
            "{}",
            r.job_log
        );
        assert!(r.job_log.contains("Will be retried in 50ms ..."));
        let dirs: std::collections::HashSet<_> = d.calls().iter().map(|c| c.read("cwd")).collect();
        assert_eq!(dirs.len(), 3, "a new temp dir per attempt");
        assert!(
            r.temp_dirs.iter().all(|t| !t.exists()),
            "all attempt dirs removed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_builds_dir_is_a_configuration_error_that_is_not_retried() {
    let d = FakeDriver::new();
    d.config_json(r#"{"builds_dir":"","cache_dir":"/cache"}"#);
    let r = run_bounded(&d.runner(), &job("true"), RunOptions::default()).await;
    assert_eq!(r.status, JobStatus::ConfigurationError, "{}", r.job_log);
    assert_eq!(r.attempts, 1);
    assert_eq!(d.call_names(), ["config", "cleanup"]);
    assert!(
        r.job_log
            .contains("ERROR: Job failed: the builds_dir is not configured"),
        "{}",
        r.job_log
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_system_failure_is_retried_three_times_with_cleanup_after_each() {
    let d = FakeDriver::new();
    d.hook(
        "prepare",
        "echo 'no capacity' >&2; exit \"$SYSTEM_FAILURE_EXIT_CODE\"",
    );
    let r = run_bounded(&d.runner(), &job("true"), RunOptions::default()).await;
    assert_eq!(r.status, JobStatus::SystemFailure, "{}", r.job_log);
    assert_eq!((r.attempts, r.cleanup_calls), (3, 3));
    assert_eq!(
        d.call_names(),
        [
            "config", "prepare", "cleanup", "config", "prepare", "cleanup", "config", "prepare",
            "cleanup"
        ]
    );
    assert!(
        r.job_log.contains("no capacity"),
        "prepare stderr reaches the job log"
    );
    assert!(
        r.job_log
            .contains("ERROR: Job failed (system failure): exit status 2"),
        "{}",
        r.job_log
    );
    assert!(r.temp_dirs.iter().all(|t| !t.exists()));

    // An unknown exit code is a system failure too, and retried.
    let d = FakeDriver::new();
    d.hook("prepare", "exit 3");
    let r = run_bounded(&d.runner(), &job("true"), RunOptions::default()).await;
    assert_eq!((r.status, r.attempts), (JobStatus::SystemFailure, 3));
    assert!(
        r.job_log
            .contains("unknown Custom executor executable exit code 3"),
        "{}",
        r.job_log
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_build_failure_is_not_retried() {
    let d = FakeDriver::new();
    d.hook("prepare", "exit \"$BUILD_FAILURE_EXIT_CODE\"");
    let r = run_bounded(&d.runner(), &job("true"), RunOptions::default()).await;
    assert_eq!(r.status, JobStatus::ScriptFailure, "{}", r.job_log);
    assert_eq!(r.exit_code, Some(1));
    assert_eq!(d.call_names(), ["config", "prepare", "cleanup"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_that_cannot_start_is_a_system_failure() {
    let mut cfg = gitlab_runner_standin::RunnerConfig::single_binary(
        "/nonexistent/driver",
        ["--recipe", "x.yaml"],
    );
    cfg.preparation_retry_interval = std::time::Duration::from_millis(10);
    let r = run_bounded(
        &gitlab_runner_standin::Runner::new(cfg),
        &job("true"),
        RunOptions::default(),
    )
    .await;
    assert_eq!(r.status, JobStatus::SystemFailure);
    assert_eq!(r.attempts, 3);
    assert!(
        r.job_log.contains("failed to start command"),
        "{}",
        r.job_log
    );
}
