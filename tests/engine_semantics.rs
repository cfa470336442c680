//! Step semantics through the real binary: retries, timeouts, failure modes, `always` steps,
//! site overrides, and SIGTERM.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use assert_cmd::Command;

use crate::stage_run::StageRun;

/// `executor render --stage prepare` of `recipe` for the job of `env_file`: its stdout, once
/// it has succeeded.
fn render_prepare(recipe: &Path, env_file: &Path) -> String {
    let out = Command::cargo_bin("executor")
        .unwrap()
        .arg("--recipe")
        .arg(recipe)
        .args(["render", "--stage", "prepare", "--env-file"])
        .arg(env_file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn prepare(dir: &Path, recipes: &[&Path]) -> std::process::Output {
    // Plain text whatever the surrounding CI says: a `CI` variable turns colour on.
    StageRun::new(dir, ["prepare"])
        .recipes(recipes)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

#[test]
fn retries_are_logged_and_bounded() {
    let d = tempfile::tempdir().unwrap();
    let r = write(
        d.path(),
        "r.yaml",
        "version: 1\nprepare:\n  - id: flaky\n    kind: fail\n    message: nope\n    retry: {attempts: 3, delay: 10ms, on: [other]}\n",
    );
    let out = prepare(d.path(), &[&r]);
    assert_eq!(out.status.code(), Some(12));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("attempt 1/3 failed (other)"), "{err}");
    assert!(err.contains("attempt 2/3 failed (other)"), "{err}");
    assert!(!err.contains("attempt 3/3"), "{err}");
    assert!(err.contains("step `flaky` failed: nope"), "{err}");
}

#[test]
fn a_class_not_listed_is_not_retried() {
    let d = tempfile::tempdir().unwrap();
    let r = write(
        d.path(),
        "r.yaml",
        "version: 1\nprepare:\n  - id: flaky\n    kind: fail\n    message: nope\n    retry: {attempts: 3, delay: 10ms, on: [quota]}\n",
    );
    let err = String::from_utf8_lossy(&prepare(d.path(), &[&r]).stderr).to_string();
    assert!(!err.contains("attempt 1/3"), "{err}");
}

#[test]
fn timeouts_failure_modes_and_always_steps() {
    let d = tempfile::tempdir().unwrap();
    let r = write(
        d.path(),
        "r.yaml",
        "version: 1\nprepare:\n  - id: slow\n    kind: sleep\n    duration: 30s\n    timeout: 50ms\n    on_failure: ignore\n  - id: bad\n    kind: fail\n    message: build broke\n    on_failure: build\n  - id: skipped\n    kind: log\n    message: SHOULD-NOT-APPEAR\n  - id: finally\n    kind: log\n    message: always-ran\n    always: true\n",
    );
    let out = prepare(d.path(), &[&r]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(11), "{err}");
    assert!(
        err.contains("step `slow` failed, ignored: gave up after 50ms"),
        "{err}"
    );
    assert!(!err.contains("SHOULD-NOT-APPEAR"), "{err}");
    assert!(err.contains("always-ran"), "{err}");
}

#[test]
fn a_site_override_changes_vars_and_steps_without_copying_the_base() {
    let d = tempfile::tempdir().unwrap();
    let base = write(
        d.path(),
        "base.yaml",
        "version: 1\nvars:\n  flavor: small\nprepare:\n  - id: create\n    kind: log\n    message: \"create {{ vars.flavor }}\"\n  - id: noisy\n    kind: log\n    message: NOISY\n",
    );
    let site = write(
        d.path(),
        "site.yaml",
        "version: 1\nvars:\n  flavor: large\npatch:\n  create:\n    level: warning\nremove: [noisy]\ninsert:\n  - after: create\n    steps:\n      - id: site_step\n        kind: log\n        message: \"site hook for {{ vars.flavor }}\"\n",
    );
    for recipes in [vec![base.as_path(), site.as_path()], vec![]] {
        let out = if recipes.is_empty() {
            // the same override through `extends:`
            let ext = write(
                d.path(),
                "ext.yaml",
                &format!(
                    "extends: base.yaml\n{}",
                    std::fs::read_to_string(&site).unwrap()
                ),
            );
            prepare(d.path(), &[&ext])
        } else {
            prepare(d.path(), &recipes)
        };
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(err.contains("WARNING: create large"), "{err}");
        assert!(err.contains("site hook for large"), "{err}");
        assert!(!err.contains("NOISY"), "{err}");
        let create = err.find("create large").unwrap();
        assert!(err.find("site hook").unwrap() > create);
    }
}

#[test]
fn sigterm_cancels_the_running_step_and_still_runs_always_steps() {
    let d = tempfile::tempdir().unwrap();
    let r = write(
        d.path(),
        "r.yaml",
        "version: 1\nprepare:\n  - id: started\n    kind: log\n    message: STARTED\n  - id: long\n    kind: sleep\n    duration: 120s\n  - id: after\n    kind: log\n    message: NOT-AFTER-CANCEL\n  - id: finally\n    kind: log\n    message: released\n    always: true\n",
    );
    let mut child = StageRun::new(d.path(), ["prepare"])
        .recipe(&r)
        .command()
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The signal handler is in place before the first step logs, so wait for that line.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut err = String::new();
    while !err.contains("STARTED") {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() == 0 {
            break;
        }
        err.push_str(&line);
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    // bounded wait: a stage that ignored SIGTERM would be killed here and fail the assertion
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "prepare ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    std::io::Read::read_to_string(&mut stderr, &mut err).unwrap();
    assert_eq!(status.code(), Some(12), "{err}");
    assert!(err.contains("released"), "{err}");
    assert!(!err.contains("NOT-AFTER-CANCEL"), "{err}");
}

#[test]
fn render_shows_merged_recipe_and_rendered_steps_with_placeholders() {
    let d = tempfile::tempdir().unwrap();
    let r = write(
        d.path(),
        "r.yaml",
        "version: 1\nvars:\n  name: \"ci-{{ job.CI_JOB_ID }}\"\nprepare:\n  - id: a\n    kind: log\n    message: \"make {{ vars.name }}\"\n  - id: b\n    kind: log\n    message: \"got {{ steps.a.id }}\"\n  - id: c\n    kind: log\n    message: \"{{ steps.a.id | int }}\"\n",
    );
    let env = write(
        d.path(),
        "job.env",
        "CUSTOM_ENV_CI_JOB_ID=7\nOS_PASSWORD=hunter2hunter2\n",
    );
    let text = render_prepare(&r, &env);
    assert!(text.contains("make ci-7"), "{text}");
    assert!(text.contains("got <steps.a.id>"), "{text}");
    // A filter cannot convert a placeholder; the field is shown as its template instead.
    assert!(
        text.contains("message: \"{{ steps.a.id | int }}\""),
        "{text}"
    );
    assert!(!text.contains("hunter2hunter2"));
}

/// Issue 14, item 4: `trusted` holds only what GitLab sets and a pipeline cannot, URLs lose
/// their credentials, and `render --env-file` masks the job token of the payload it names.
#[test]
fn trusted_is_an_allow_list_and_render_never_prints_the_job_token() {
    let d = tempfile::tempdir().unwrap();
    let token = "glcbt-64_s3cr3tjobtoken";
    let repo = format!("https://gitlab-ci-token:{token}@gitlab.example/group/project.git");
    let payload = serde_json::json!({
        "id": 9001,
        "token": token,
        "job_info": {"id": 9001, "name": "pipeline-chose-this-name", "stage": "test",
                     "project_id": 7, "project_full_path": "group/project", "pipeline_id": 55},
        "git_info": {"repo_url": repo, "ref": "pipeline-ref", "protected": true},
        "runner_info": {"timeout": 3600},
        "image": {"name": "pipeline-image"},
        "steps": [{"name": "script", "script": ["pipeline-script"]}],
        "dependencies": [{"id": 1, "name": "build", "token": "glcbt-dependency-token"}],
        "variables": [{"key": "CI_REPOSITORY_URL", "value": repo, "masked": false}],
    });
    let response = write(d.path(), "response.json", &payload.to_string());
    let r = write(
        d.path(),
        "r.yaml",
        "version: 1\nprepare:\n  - id: a\n    kind: log\n    message: \"T={{ trusted | tojson }} R={{ job.CI_REPOSITORY_URL }}\"\n",
    );
    let env = write(
        d.path(),
        "job.env",
        &format!(
            "JOB_RESPONSE_FILE={}\nCUSTOM_ENV_CI_REPOSITORY_URL={repo}\n",
            response.display()
        ),
    );
    let text = render_prepare(&r, &env);
    for secret in [token, "glcbt-dependency-token"] {
        assert!(!text.contains(secret), "{secret} printed: {text}");
    }
    for chosen_by_the_pipeline in [
        "pipeline-chose-this-name",
        "pipeline-ref",
        "pipeline-image",
        "pipeline-script",
    ] {
        assert!(
            !text.contains(chosen_by_the_pipeline),
            "{chosen_by_the_pipeline} is in trusted: {text}"
        );
    }
    // The log message is JSON inside YAML: compare without YAML's escapes and tojson's spaces.
    let flat = text.replace('\\', "").replace(": ", ":");
    for kept in [
        r#""id":9001"#,
        r#""project_id":7"#,
        r#""timeout":3600"#,
        r#""repo_url":"https://gitlab.example/group/project.git""#,
    ] {
        assert!(flat.contains(kept), "{kept} missing: {text}");
    }
}

/// A job variable is data, never a template: `{{ ... }}` in a value the pipeline sets reaches
/// the step as those characters, so a pipeline cannot make the driver evaluate anything, such
/// as the runner's own environment.
#[test]
fn a_job_variable_that_looks_like_a_template_is_never_evaluated() {
    let d = tempfile::tempdir().unwrap();
    let r = write(
        d.path(),
        "r.yaml",
        "version: 1\nprepare:\n  - id: a\n    kind: log\n    message: \"got {{ job.EVIL }}\"\n",
    );
    let env = write(
        d.path(),
        "job.env",
        "RUNNER_SECRET_PLACE=runner-only-value\nCUSTOM_ENV_EVIL={{ env.RUNNER_SECRET_PLACE }}{% if true %}ran{% endif %}\n",
    );
    let text = render_prepare(&r, &env);
    assert!(!text.contains("runner-only-value"), "evaluated: {text}");
    assert!(
        text.contains("{{ env.RUNNER_SECRET_PLACE }}{% if true %}ran{% endif %}"),
        "the value did not arrive as written: {text}"
    );
}

#[test]
fn the_default_recipe_refuses_a_host_key_the_console_did_not_print() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let loaded =
        executor_driver::recipe::loader::load(&[root.join("recipes/openstack.yaml")]).unwrap();
    let check = loaded
        .recipe
        .prepare
        .iter()
        .find(|s| s.id() == "host_key_check")
        .unwrap();
    let when = check.common.when.as_deref().unwrap();
    let t = executor_driver::template::Templater::new();
    let ctx = |console: serde_json::Value| {
        executor_driver::template::to_value(&serde_json::json!({
            "steps": {"ssh": {"host_key": "ssh-ed25519 AAAAgood"}, "console": console}
        }))
    };
    let fails = |console| t.condition(when, &ctx(console)).unwrap();
    assert!(fails(
        serde_json::json!({"host_keys": ["ssh-ed25519 AAAAother root@vm"]})
    ));
    assert!(!fails(
        serde_json::json!({"host_keys": ["ssh-rsa AAAAx root@vm", "ssh-ed25519 AAAAgood root@vm"]})
    ));
    assert!(
        !fails(serde_json::json!({"host_keys": []})),
        "no keys on the console: keep the pin"
    );
    let no_console = executor_driver::template::to_value(
        &serde_json::json!({"steps": {"ssh": {"host_key": "k"}}}),
    );
    assert!(
        !t.condition(when, &no_console).unwrap(),
        "console step failed: keep the pin"
    );
}

#[test]
fn warnings_are_yellow_in_ci_logs_unless_no_color_is_set() {
    let d = tempfile::tempdir().unwrap();
    let r = write(
        d.path(),
        "r.yaml",
        "version: 1\nprepare:\n  - id: w\n    kind: log\n    level: warning\n    message: careful\n",
    );
    let run = |no_color: Option<&str>| {
        // The stage's environment starts empty: no NO_COLOR from this process's own.
        let mut stage = StageRun::new(d.path(), ["prepare"])
            .recipe(&r)
            .env("CI", "true");
        if let Some(v) = no_color {
            stage = stage.env("NO_COLOR", v);
        }
        let out = stage.output().unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let coloured = run(None);
    assert!(
        coloured.contains("\x1b[0;33mWARNING:\x1b[0m careful"),
        "{coloured:?}"
    );
    let plain = run(Some("1"));
    assert!(plain.contains("WARNING: careful"), "{plain:?}");
    assert!(!plain.contains('\x1b'), "{plain:?}");
}

/// `extends: /dev/zero` (or any runaway file) ends in a clear error at the ceiling, in `lint`
/// and in a stage, instead of a process that grows until the host kills it.
#[test]
fn an_endless_file_is_refused_not_read() {
    let d = tempfile::tempdir().unwrap();
    let r = write(d.path(), "r.yaml", "version: 1\nextends: /dev/zero\n");
    let out = Command::new(crate::stage_run::executor())
        .arg("lint")
        .arg(&r)
        .env("NO_COLOR", "1")
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stdout).replace(['\n', '│'], " ");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot read /dev/zero") && err.contains("more than 8 MiB"),
        "{err}"
    );

    let out = prepare(d.path(), &[&r]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("more than 8 MiB"), "{err}");

    // gitlab-runner's job response is read the same way.
    let ok = write(
        d.path(),
        "ok.yaml",
        "version: 1\nprepare:\n  - id: hi\n    kind: log\n    message: hi\n",
    );
    let out = StageRun::new(d.path(), ["prepare"])
        .recipe(&ok)
        .env("JOB_RESPONSE_FILE", "/dev/zero")
        .env("NO_COLOR", "1")
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert!(out.status.code().is_some(), "killed: {out:?}");
}
