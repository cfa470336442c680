//! The run sub-stages: order and skip rules, the generated scripts, exit codes, and the job log.

use crate::runner_support;

use gitlab_runner_standin::{
    Job, JobArtifacts, JobCache, JobStatus, JobVariable, RunOptions, Runner, When,
};
use runner_support::{FakeDriver, job, run_bounded};

fn with_cache_and_artifacts(mut j: Job, when: When) -> Job {
    j.cache = Some(JobCache {
        key: "deps".into(),
        paths: vec!["vendor/".into()],
        when,
    });
    j.artifacts = Some(JobArtifacts {
        paths: vec!["out/".into()],
        when,
    });
    j
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_job_runs_every_sub_stage_in_order() {
    let d = FakeDriver::new();
    let mut j = with_cache_and_artifacts(job("echo hello"), When::OnSuccess);
    j.after_script = vec!["echo after".into()];
    let r = run_bounded(&d.runner(), &j, RunOptions::default()).await;
    assert_eq!(r.status, JobStatus::Success, "{}", r.job_log);
    let expected = [
        "config",
        "prepare",
        "run_prepare_script",
        "run_get_sources",
        "run_restore_cache",
        "run_build_script",
        "run_after_script",
        "run_archive_cache",
        "run_upload_artifacts_on_success",
        "run_cleanup_file_variables",
        "cleanup",
    ];
    assert_eq!(d.call_names(), expected);
    assert_eq!(
        r.stage_names(),
        expected.map(|n| n.strip_prefix("run_").unwrap_or(n))
    );
    assert_eq!((r.attempts, r.cleanup_calls), (1, 1));
    assert!(
        r.job_log.ends_with("\x1b[32;1mJob succeeded\x1b[0;m\n"),
        "{}",
        r.job_log
    );
    assert!(
        r.summary_line().contains("success") && r.summary_line().contains("build_script"),
        "{}",
        r.summary_line()
    );
    assert_eq!(
        d.call("run_after_script").env()["CUSTOM_ENV_CI_JOB_STATUS"],
        "success"
    );
    assert_eq!(
        d.call("run_build_script").env()["CUSTOM_ENV_CI_JOB_STATUS"],
        "running"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cache_artifacts_or_after_script_those_stages_are_not_invoked() {
    let d = FakeDriver::new();
    let r = run_bounded(&d.runner(), &job("true"), RunOptions::default()).await;
    assert_eq!(r.status, JobStatus::Success, "{}", r.job_log);
    assert_eq!(
        d.call_names(),
        [
            "config",
            "prepare",
            "run_prepare_script",
            "run_get_sources",
            "run_build_script",
            "run_cleanup_file_variables",
            "cleanup"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_42_through_build_exit_code_file_is_reported_and_failure_variants_run() {
    let d = FakeDriver::new();
    let mut j = with_cache_and_artifacts(job("echo before\nexit 42\necho never"), When::Always);
    j.after_script = vec!["echo \"status=$CI_JOB_STATUS\"".into()];
    let r = run_bounded(&d.runner(), &j, RunOptions::default()).await;
    assert_eq!(r.status, JobStatus::ScriptFailure, "{}", r.job_log);
    assert_eq!(r.exit_code, Some(42));
    assert!(!r.allowed_to_fail);
    assert!(
        r.job_log.contains("ERROR: Job failed: exit status 42"),
        "{}",
        r.job_log
    );
    assert!(r.job_log.contains("before\n"));
    assert!(
        !r.job_log.contains("never\n"),
        "errexit stops at the failing command"
    );
    assert!(
        r.job_log.contains("status=failed\n"),
        "after_script sees CI_JOB_STATUS: {}",
        r.job_log
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
        d.call("run_archive_cache_on_failure").env()["CUSTOM_ENV_CI_JOB_STATUS"],
        "failed"
    );

    let mut allowed = job("exit 42");
    allowed.allow_failure_exit_codes = vec![3, 42];
    let r = run_bounded(&d.runner(), &allowed, RunOptions::default()).await;
    assert_eq!(
        (r.status, r.exit_code, r.allowed_to_fail),
        (JobStatus::ScriptFailure, Some(42), true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_code_file_without_an_integer_is_a_system_failure() {
    let d = FakeDriver::new();
    d.hook(
        "run_build_script",
        "echo 'not a number' > \"$BUILD_EXIT_CODE_FILE\"; exit 1",
    );
    let r = run_bounded(&d.runner(), &job("true"), RunOptions::default()).await;
    assert_eq!(r.status, JobStatus::SystemFailure, "{}", r.job_log);
    assert_eq!(r.exit_code, None);
    assert!(
        r.job_log.contains(
            "ERROR: Job failed (system failure): unknown Custom executor executable exit code 2"
        ),
        "{}",
        r.job_log
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_prepare_script_ends_the_job_without_further_stages() {
    let d = FakeDriver::new();
    d.hook("run_prepare_script", "exit \"$SYSTEM_FAILURE_EXIT_CODE\"");
    let r = run_bounded(&d.runner(), &job("true"), RunOptions::default()).await;
    assert_eq!(r.status, JobStatus::SystemFailure);
    assert_eq!(
        d.call_names(),
        ["config", "prepare", "run_prepare_script", "cleanup"]
    );
    assert!(r.job_log.contains("prepare environment: exit status 2. Check https://docs.gitlab.com/runner/shells/#shell-profile-loading"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_sources_is_retried_after_clear_worktree_when_attempts_allow() {
    let d = FakeDriver::new();
    d.hook(
        "run_get_sources",
        "if [ ! -f \"$D/failed_once\" ]; then touch \"$D/failed_once\"; exit 1; fi",
    );
    let j = job("true").with_variable(JobVariable::new("GET_SOURCES_ATTEMPTS", "2"));
    let r = run_bounded(&d.runner(), &j, RunOptions::default()).await;
    assert_eq!(r.status, JobStatus::Success, "{}", r.job_log);
    assert_eq!(
        d.call_names()[2..6],
        [
            "run_prepare_script",
            "run_get_sources",
            "run_clear_worktree",
            "run_get_sources"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_have_gitlab_runners_bash_shape() {
    let d = FakeDriver::new();
    let j = job("echo hello\nprintf 'a b\\n' | tr a-z A-Z")
        .with_variable(JobVariable::new("GREETING", "it's \"quoted\" $HOME"));
    let r = run_bounded(&d.runner(), &j, RunOptions::default()).await;
    assert_eq!(r.status, JobStatus::Success, "{}", r.job_log);
    let script = d.call("run_build_script").read("script");
    assert!(
        script.starts_with("#!/usr/bin/env bash\n\ntrap 'exit 1' TERM\n\n"),
        "{script}"
    );
    assert!(script.contains(
        "case \"$(set -o)\" in *\"pipefail\"*) set -o pipefail;; esac; set -o errexit\n"
    ));
    assert!(
        script.contains("set +o noclobber\n(trap 'exit 1' TERM; eval $'"),
        "{script}"
    );
    assert!(script.ends_with("') < /dev/null\nexit 0\n"), "{script}");
    // The body is one ANSI-C quoted string: exports, cd, echoed commands.
    assert!(script.contains("export CI_JOB_ID="), "{script}");
    assert!(
        script.contains(&format!(
            "cd {}/builds/executor/simulate\\n",
            d.path().display()
        )),
        "{script}"
    );
    assert!(
        script.contains("echo $\\'\\\\x1b[32;1m$ echo hello\\\\x1b[0;m\\'\\necho hello\\n"),
        "{script}"
    );
    // And it runs as gitlab-runner's would: the echo lines, the output, exports applied as is.
    assert!(
        r.job_log
            .contains("\x1b[32;1m$ echo hello\x1b[0;m\nhello\n"),
        "{}",
        r.job_log
    );
    assert!(r.job_log.contains("A B\n"));
    let prep = d.call("run_prepare_script").read("script");
    assert!(
        !prep.contains("export "),
        "prepare_script neither exports nor cds"
    );
    assert!(r.job_log.contains("Running on "));
    assert!(r.job_log.contains("WARNING: Starting with version 17.0 the 'build_script' stage will be replaced with 'step_script'"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_variables_survive_quoting() {
    let d = FakeDriver::new();
    let mut raw = JobVariable::new("RAW", "literal $HOME");
    raw.raw = true;
    let j = job("printf '<%s>\\n' \"$GREETING\" \"$RAW\"")
        .with_variable(JobVariable::new("WHO", "world"))
        .with_variable(JobVariable::new(
            "GREETING",
            "it's \"quoted\" $WHO ${NOT_A_JOB_VARIABLE}\tand\\more",
        ))
        .with_variable(raw);
    let r = run_bounded(&d.runner(), &j, RunOptions::default()).await;
    assert_eq!(r.status, JobStatus::Success, "{}", r.job_log);
    assert!(
        r.job_log.contains("<it's \"quoted\" world \tand\\more>\n"),
        "expanded against job variables, then exported verbatim: {}",
        r.job_log
    );
    assert!(
        r.job_log.contains("<literal $HOME>\n"),
        "raw values are not expanded, not even by the shell: {}",
        r.job_log
    );
    assert_eq!(
        d.call("run_build_script").env()["CUSTOM_ENV_GREETING"],
        "it's \"quoted\" world \tand\\more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_has_sections_masks_secrets_and_keeps_cleanup_output_apart() {
    let d = FakeDriver::new();
    d.hook(
        "cleanup",
        "echo \"cleanup sees $CUSTOM_ENV_API_KEY\"; echo 'cleanup err' >&2",
    );
    d.hook("prepare", "echo 'prepare out'; echo 'prepare err' >&2");
    let j = job("echo \"key is $API_KEY\"")
        .with_variable(JobVariable::new("API_KEY", "sup3rs3cr3tvalue").masked());
    let r = run_bounded(&d.runner(), &j, RunOptions::default()).await;
    assert_eq!(r.status, JobStatus::Success, "{}", r.job_log);
    assert!(r.job_log.contains("key is [MASKED]"), "{}", r.job_log);
    assert!(!r.job_log.contains("sup3rs3cr3tvalue"));
    assert_eq!(
        d.call("run_build_script").env()["CUSTOM_ENV_API_KEY"],
        "sup3rs3cr3tvalue",
        "drivers get it in clear"
    );
    assert!(r.job_log.contains("prepare out\n") && r.job_log.contains("prepare err\n"));
    assert!(
        !r.job_log.contains("cleanup sees"),
        "cleanup output is not in the job log"
    );
    assert!(
        r.runner_log
            .iter()
            .any(|l| l.contains("cleanup sees sup3rs3cr3tvalue") && l.contains("cleanup_std=out")),
        "{:?}",
        r.runner_log
    );
    assert!(
        r.runner_log
            .iter()
            .any(|l| l.contains("cleanup err") && l.contains("cleanup_std=err"))
    );
    for section in [
        "prepare_executor",
        "prepare_script",
        "get_sources",
        "step_script",
        "cleanup_file_variables",
    ] {
        let start = r
            .job_log
            .find(&format!(":{section}\r\x1b[0K"))
            .unwrap_or_else(|| panic!("no section for {section}"));
        assert!(
            r.job_log[..start]
                .rsplit('\n')
                .next()
                .unwrap_or("")
                .starts_with("section_start:"),
            "{section} opens first"
        );
        assert!(
            r.job_log.matches(&format!(":{section}\r\x1b[0K")).count() == 2,
            "{section} opens and closes once: {}",
            r.job_log
        );
    }
    assert!(
        r.job_log
            .contains("\x1b[36;1mExecuting \"step_script\" stage of the job script\x1b[0;m")
    );
    assert!(
        r.job_log
            .contains("\x1b[36;1mPreparing the \"custom\" executor\x1b[0;m")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_log_is_capped_but_the_job_goes_on() {
    let d = FakeDriver::new();
    let mut cfg = d.runner_config();
    cfg.output_limit = 4096;
    let r = run_bounded(
        &Runner::new(cfg),
        &job("for i in $(seq 1 2000); do echo line $i; done\necho finished > done.txt"),
        RunOptions::default(),
    )
    .await;
    assert_eq!(r.status, JobStatus::Success);
    assert!(
        r.job_log
            .contains("Job's log exceeded limit of 4096 bytes."),
        "{}",
        r.job_log
    );
    assert!(!r.job_log.contains("line 2000"));
    let done = d.path().join("builds/executor/simulate/done.txt");
    assert_eq!(
        std::fs::read_to_string(done).unwrap_or_default(),
        "finished\n",
        "the job kept running after the cap"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_writer_sees_the_log_as_it_is_written() {
    let d = FakeDriver::new();
    let sink = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let live: gitlab_runner_standin::LiveWriter = sink.clone();
    let r = run_bounded(
        &d.runner(),
        &job("echo live"),
        RunOptions {
            live_log: Some(live),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(r.status, JobStatus::Success);
    let seen = String::from_utf8(sink.lock().unwrap().clone()).unwrap();
    assert_eq!(seen, r.job_log);
    let mut printed = Vec::new();
    gitlab_runner_standin::print_job_log(&r, &mut printed).unwrap();
    assert!(
        String::from_utf8(printed)
            .unwrap()
            .ends_with(&format!("{}\n", r.summary_line()))
    );
}
