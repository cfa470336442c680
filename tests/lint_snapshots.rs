//! Every lint rule, one bad recipe per file under `tests/lint_cases/`, with the rendered
//! diagnostics snapshotted.

use std::path::Path;

#[test]
fn lint_cases() {
    insta::glob!("lint_cases/*.yaml", |path| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let rel = path.strip_prefix(root).unwrap().to_path_buf();
        std::env::set_current_dir(root).unwrap();
        let problems = executor_driver::recipe::lint::lint(&[rel]);
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
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::set_current_dir(root).unwrap();
    let problems = executor_driver::recipe::lint::lint(&["tests/lint_cases/unknown_step_kind.yaml".into()]);
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
    std::env::set_current_dir(root).unwrap();
    for dir in ["recipes", "tests/recipes"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "yaml") {
                let problems = executor_driver::recipe::lint::lint(std::slice::from_ref(&p));
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
