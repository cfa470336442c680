//! Every lint rule, one bad recipe per file under `tests/lint_cases/`, with the rendered
//! diagnostics snapshotted.

use std::path::Path;

use executor_driver::recipe::problem::Problems;

/// Lints `rel` (relative to the repository root) and names every file in the report by its
/// path from the root, as `executor lint` run there would. The tests' working directory is
/// left alone: they are threads of one process.
fn lint(rel: &str) -> Problems {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut problems = executor_driver::recipe::lint::lint(&[root.join(rel)]);
    let prefix = format!("{}/", root.display());
    let from_root = |text: &mut String| *text = text.replace(&prefix, "");
    for file in &mut problems.sources.files {
        from_root(&mut file.name);
    }
    for problem in &mut problems.list {
        from_root(&mut problem.message);
        if let Some(help) = &mut problem.help {
            from_root(help);
        }
    }
    problems
}

#[test]
fn lint_cases() {
    insta::glob!("lint_cases/*.yaml", |path| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let rel = path.strip_prefix(root).unwrap().to_str().unwrap();
        let problems = lint(rel);
        assert!(
            !problems.list.is_empty(),
            "{} should have problems",
            path.display()
        );
        let rendered = executor_driver::recipe::diagnostics::render(&problems, false);
        insta::assert_snapshot!(rendered);
    });
}

#[test]
fn the_json_and_gitlab_formats_carry_file_line_and_column() {
    let problems = lint("tests/lint_cases/unknown_step_kind.yaml");
    let json = executor::commands::lint::json_report(std::slice::from_ref(&problems));
    assert_eq!(json[0]["file"], "tests/lint_cases/unknown_step_kind.yaml");
    assert_eq!(json[0]["line"], 4);
    assert_eq!(json[0]["column"], 11);
    assert_eq!(json[0]["code"], "unknown-step-kind");
    let gl = executor::commands::lint::gitlab_report(std::slice::from_ref(&problems));
    assert_eq!(
        gl[0]["location"]["path"],
        "tests/lint_cases/unknown_step_kind.yaml"
    );
    assert_eq!(gl[0]["location"]["lines"]["begin"], 4);
    assert_eq!(gl[0]["severity"], "major");
    assert_eq!(gl[0]["fingerprint"].as_str().unwrap().len(), 32);
}

#[test]
fn the_shipped_and_test_recipes_are_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["recipes", "tests/recipes"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "yaml") {
                let mut problems = executor_driver::recipe::lint::lint(std::slice::from_ref(&p));
                // The test recipes let the tests pick images and networks through job
                // variables on purpose; `lint_taint` holds their warnings to that.
                if dir == "tests/recipes" {
                    problems.list.retain(|p| p.is_error());
                }
                assert!(
                    problems.list.is_empty(),
                    "{}:\n{}",
                    p.display(),
                    problems.plain()
                );
            }
        }
    }
}
