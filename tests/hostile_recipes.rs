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

#[path = "bench/big_recipe.rs"]
mod big_recipe;

/// Characters walked by span mapping while `text` is loaded, on this thread.
fn walked_loading(dir: &Path, name: &str, text: &str) -> u64 {
    let path = write(dir, name, text);
    let before = executor_driver::recipe::spanned_yaml::chars_walked();
    let loaded = executor_driver::recipe::loader::load(&[path]);
    assert!(loaded.is_ok(), "{}", loaded.err().unwrap().plain());
    executor_driver::recipe::spanned_yaml::chars_walked() - before
}

/// Issue 14, item 8: mapping saphyr's character positions to bytes walked the text once per
/// node, so a 600 KB non-ASCII recipe took seconds to load in every stage. The work is counted,
/// not timed: a busy CI machine cannot make this test flaky.
#[test]
fn loading_a_non_ascii_recipe_walks_its_text_a_bounded_number_of_times() {
    let d = tempfile::tempdir().unwrap();
    let small = big_recipe::big_recipe(60_000, true);
    let large = big_recipe::big_recipe(600_000, true);
    let chars = |t: &str| t.chars().count() as u64;
    let w_small = walked_loading(d.path(), "small.yaml", &small);
    let w_large = walked_loading(d.path(), "large.yaml", &large);
    // Each file's text is indexed once, whatever its number of nodes.
    assert!(
        w_small <= 2 * chars(&small),
        "{w_small} walked for {}",
        chars(&small)
    );
    assert!(
        w_large <= 2 * chars(&large),
        "{w_large} walked for {}",
        chars(&large)
    );
    // Ten times the text, about ten times the work; quadratic work would be a hundred.
    let ratio = w_large as f64 / w_small as f64;
    assert!(ratio < 15.0, "600 KB walked {ratio:.1}× what 60 KB did");
    // ASCII text needs no index at all.
    let ascii = big_recipe::big_recipe(60_000, false);
    assert_eq!(walked_loading(d.path(), "ascii.yaml", &ascii), 0);
}

/// Found by `recipe_fuzz`: saphyr's loader recurses once per level of block nesting, which it
/// does not bound, so a line of `: : : ...` overflowed the stack (an abort, exit 134) in lint
/// and in every stage, release builds included.
#[test]
fn nesting_past_the_limit_is_a_problem_not_a_stack_overflow() {
    let d = tempfile::tempdir().unwrap();
    let text = format!("version: 1\nvars:\n  a: 1\n{}\n", ": ".repeat(20_000));
    let recipe = write(d.path(), "deep.yaml", &text);
    let out = std::process::Command::new(crate::stage_run::executor())
        .current_dir(d.path())
        .env("NO_COLOR", "1")
        .args(["lint", "deep.yaml"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("nested more than 64 levels") && text.contains("deep.yaml:4:129"),
        "{text}"
    );
    let out = StageRun::new(d.path(), ["config"])
        .recipe(&recipe)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(SYSTEM_FAILURE), "{err}");
    assert!(err.contains("nested more than 64 levels"), "{err}");
}

/// Found by `recipe_fuzz`: minijinja reports a syntax error past column 65535 of a template
/// line by adding one to a column that saturated there, which a debug build (the tests') turns
/// into a panic.
#[test]
fn a_template_error_past_column_65535_is_reported_not_a_panic() {
    let d = tempfile::tempdir().unwrap();
    let text = format!(
        "version: 1\nvars:\n  a: \"{{{{ 1{} + }}}}\"\n",
        " ".repeat(70_000)
    );
    write(d.path(), "t.yaml", &text);
    let out = std::process::Command::new(crate::stage_run::executor())
        .current_dir(d.path())
        .env("NO_COLOR", "1")
        .args(["lint", "t.yaml"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}{err}");
    assert!(text.contains("template syntax error"), "{text}");
    assert!(text.contains("t.yaml:3:"), "{text}");
}
