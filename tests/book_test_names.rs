//! Every test the book names exists. The security chapter's threat table, the performance
//! figures and other chapters cite tests as `` `module::test_name` ``; a rename or a removal must
//! fail here, not leave the book pointing at nothing.

use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// `module::name` pairs in backticks whose module is a file of `tests/`.
fn cited_tests(text: &str) -> Vec<(String, String)> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|code| {
            let (module, name) = code.split_once("::")?;
            let word = |s: &str| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            };
            (word(module) && word(name)).then(|| (module.to_string(), name.to_string()))
        })
        .filter(|(module, _)| {
            Path::new(ROOT)
                .join("tests")
                .join(format!("{module}.rs"))
                .is_file()
        })
        .collect()
}

/// Whether `source` defines a function `name`.
fn defines(source: &str, name: &str) -> bool {
    source.match_indices(&format!("fn {name}")).any(|(at, m)| {
        !source[at + m.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
    })
}

#[test]
fn every_test_the_book_names_exists() {
    let src = Path::new(ROOT).join("book/src");
    let mut pages = vec![];
    let mut dirs = vec![src];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                pages.push(path);
            }
        }
    }
    let mut cited = 0;
    let mut missing = vec![];
    for page in pages {
        let text = std::fs::read_to_string(&page).unwrap();
        for (module, name) in cited_tests(&text) {
            cited += 1;
            let source =
                std::fs::read_to_string(Path::new(ROOT).join(format!("tests/{module}.rs")))
                    .unwrap();
            if !defines(&source, &name) {
                missing.push(format!("{}: `{module}::{name}`", page.display()));
            }
        }
    }
    assert!(
        cited >= 20,
        "only {cited} cited tests found: is the reader broken?"
    );
    assert!(
        missing.is_empty(),
        "the book names tests that do not exist:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_reader_finds_citations_and_whole_names_only() {
    let text =
        "see `e2e_gc::gc_reaps_only_our_servers_whose_job_is_over` and `std::fs` and `nope::x`";
    assert_eq!(
        cited_tests(text),
        vec![(
            "e2e_gc".to_string(),
            "gc_reaps_only_our_servers_whose_job_is_over".to_string()
        )]
    );
    assert!(defines("fn abc() {}", "abc"));
    assert!(!defines("fn abcd() {}", "abc"));
}
