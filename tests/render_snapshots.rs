//! `executor render` on input files, one case per file as the lint cases are, with the output
//! snapshotted:
//!
//! - `tests/render_cases/NAME.yaml` is a recipe and `NAME.env` the job's environment (the
//!   `--env-file`), whose first line names the stage: `# executor render --stage prepare`;
//! - `tests/merge_cases/overrides/NAME.yaml` is a site override layered on
//!   `tests/merge_cases/base.yaml`; the snapshot is the merged recipe, as `render` without
//!   `--stage` shows it.
//!
//! A case is added by adding files; `INSTA_UPDATE=always` writes its snapshot for review.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::stage_run::executor;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// What the first line of a case's env file says before the stage's name.
const STAGE_LINE: &str = "# executor render --stage ";

/// Variable names whose values are secrets (as the job log's redaction knows them), with or
/// without the `CUSTOM_ENV_` prefix.
const SECRET_NAMES: [&str; 6] = [
    "PASSWORD",
    "SECRET",
    "TOKEN",
    "PRIVATE_KEY",
    "PASSPHRASE",
    "CREDENTIAL",
];

/// `executor <args>` in the repository root with none of this process's environment, so the
/// output depends on the case's files alone. Returns stdout once the command has succeeded
/// with nothing on stderr.
fn executor_stdout(args: &[&str]) -> String {
    let (ok, stdout, stderr) = executor_bare(args);
    assert!(
        ok && stderr.is_empty(),
        "executor {}: failed\n{stdout}{stderr}",
        args.join(" "),
    );
    stdout
}

/// `path` relative to the repository root, as the commands are shown and run.
fn from_root(path: &Path) -> &str {
    path.strip_prefix(ROOT).unwrap().to_str().unwrap()
}

/// The values of the env file's variables whose names say they are secret.
fn secret_values(env_file: &str) -> Vec<&str> {
    env_file
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .filter(|(name, _)| {
            let name = name.trim().to_ascii_uppercase();
            SECRET_NAMES.iter().any(|s| name.contains(s))
        })
        .map(|(_, value)| value.trim())
        .collect()
}

#[test]
fn render_cases() {
    let mut secrets_checked = 0;
    insta::glob!("render_cases/*.yaml", |recipe| {
        let env_path = recipe.with_extension("env");
        let env = std::fs::read_to_string(&env_path)
            .unwrap_or_else(|e| panic!("{}: {e}", env_path.display()));
        let stage = env
            .lines()
            .next()
            .and_then(|l| l.strip_prefix(STAGE_LINE))
            .unwrap_or_else(|| panic!("{} starts with `{STAGE_LINE}STAGE`", env_path.display()))
            .trim();
        let args = [
            "--recipe",
            from_root(recipe),
            "render",
            "--stage",
            stage,
            "--env-file",
            from_root(&env_path),
        ];
        let rendered = executor_stdout(&args);
        for secret in secret_values(&env) {
            assert!(
                !rendered.contains(secret),
                "{}: a secret of the job's environment is in the output:\n{rendered}",
                recipe.display()
            );
            secrets_checked += 1;
        }
        insta::with_settings!({ description => format!("executor {}", args.join(" ")) }, {
            insta::assert_snapshot!(rendered);
        });
    });
    assert!(
        secrets_checked > 0,
        "no case has a secret in its environment"
    );
}

#[test]
fn merge_cases() {
    let base = Path::new(ROOT).join("tests/merge_cases/base.yaml");
    insta::glob!("merge_cases/overrides/*.yaml", |layer| {
        let args = [
            "--recipe",
            from_root(&base),
            "--recipe",
            from_root(layer),
            "render",
        ];
        let merged = executor_stdout(&args);
        insta::with_settings!({ description => format!("executor {}", args.join(" ")) }, {
            insta::assert_snapshot!(merged);
        });
    });
}

/// `executor <args>` in the repository root with an empty environment: (status, stdout, stderr).
fn executor_bare(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(executor())
        .current_dir(ROOT)
        .env_clear()
        .env("NO_COLOR", "1")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn render_without_an_env_file_shows_a_sample_job_and_says_so() {
    let (ok, stdout, stderr) = executor_bare(&[
        "--recipe",
        "recipes/openstack.yaml",
        "render",
        "--stage",
        "prepare",
    ]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stderr.contains("sample job"), "{stderr}");
    // From the sample payload's project and job ids, as `trusted.*`.
    assert!(stdout.contains("name: executor-42-1234"), "{stdout}");
}

#[test]
fn an_env_file_replaces_the_sample_job() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("job.env");
    std::fs::write(&env, "CUSTOM_ENV_CI_JOB_ID=777\n").unwrap();
    let (ok, stdout, stderr) = executor_bare(&[
        "--recipe",
        "tests/recipes/generic.yaml",
        "render",
        "--stage",
        "prepare",
        "--env-file",
        env.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    assert!(stdout.contains("name: ci-777"), "{stdout}");
    assert!(!stdout.contains("1234"), "{stdout}");
    // Without the file, the sample's job id shows.
    let (ok, stdout, _) = executor_bare(&[
        "--recipe",
        "tests/recipes/generic.yaml",
        "render",
        "--stage",
        "prepare",
    ]);
    assert!(ok && stdout.contains("name: ci-1234"), "{stdout}");
}

/// The book's testing chapter lists the sample job's variables; the list is the code's.
#[test]
fn the_book_lists_the_sample_jobs_variables_as_they_are() {
    let page = std::fs::read_to_string(Path::new(ROOT).join("book/src/testing.md")).unwrap();
    for (name, value) in executor_driver::template::context::SAMPLE_JOB_VARIABLES {
        assert!(
            page.contains(&format!("`{name}` | `{value}`")),
            "testing.md does not give {name} = {value}"
        );
    }
}
