//! Recipes written to hurt the driver (issue 14, items 7 and 8): whatever the text, `lint`,
//! `render` and the stages answer with a diagnostic and their usual exit code, never a panic,
//! and loading costs time linear in the file's size.

use std::path::{Path, PathBuf};

use crate::stage_run::{SYSTEM_FAILURE, StageRun};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A step whose unknown field sits past column 65535 of one flow-mapping line: the column is
/// larger than any width `format!` accepts, which is where the graphical report gave out.
fn past_column_65535(dir: &Path) -> (PathBuf, String) {
    let head = "  - {id: a, kind: log, message: hi,";
    let text = format!(
        "version: 1\nprepare:\n{head}{} bogus: 1}}\n",
        " ".repeat(70_000)
    );
    let column = head.len() + 70_000 + 2;
    (
        write(dir, "long.yaml", &text),
        format!("long.yaml:3:{column}"),
    )
}

/// Issue 14, item 7: a problem past column 65535 made lint, render and every stage exit 101.
#[test]
fn a_problem_past_column_65535_is_reported_not_a_panic() {
    let d = tempfile::tempdir().unwrap();
    let (recipe, at) = past_column_65535(d.path());
    for colour in [true, false] {
        let mut lint = std::process::Command::new(crate::stage_run::executor());
        lint.current_dir(d.path()).arg("lint").arg("long.yaml");
        if colour {
            lint.env("CI", "true").env_remove("NO_COLOR");
        } else {
            lint.env("NO_COLOR", "1");
        }
        let out = lint.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "lint: {err}");
        assert!(text.contains(&at), "lint does not name {at}: {text}");
        assert!(text.contains("bogus"), "{text}");
        // The report quotes a window of the line, not 70,000 spaces.
        assert!(text.len() < 4_000, "{} bytes of report", text.len());
    }

    let out = std::process::Command::new(crate::stage_run::executor())
        .current_dir(d.path())
        .env("NO_COLOR", "1")
        .args(["--recipe", "long.yaml", "render"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "render: {err}");
    assert!(err.contains(&at), "render does not name {at}: {err}");

    let out = StageRun::new(d.path(), ["prepare"])
        .recipe(&recipe)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(SYSTEM_FAILURE), "prepare: {err}");
    assert!(err.contains("bogus"), "{err}");
}
