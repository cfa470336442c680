//! Every recipe shown in the book must pass `executor lint`, and every recipe the book shows as
//! wrong must fail it, so that readers never copy a snippet that does not work.
//!
//! A ```yaml block is a recipe when a line starts with `version:`. Fence attributes, after a comma:
//! - `bad` or `bad=CODE`: the snippet is deliberately wrong and must fail lint (with that code);
//! - `base=PATH`: the snippet is an override of PATH (relative to the repository): it is linted
//!   layered on it, and a snippet that says `extends: NAME` finds PATH under NAME;
//! - `nolint`: not checked.
//!
//! `{{#include FILE}}` lines are expanded relative to the chapter, as mdbook does.

use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[derive(Debug)]
pub(crate) struct Snippet {
    chapter: PathBuf,
    number: usize,
    line: usize,
    pub(crate) text: String,
    attrs: Vec<String>,
}

impl Snippet {
    pub(crate) fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.iter().find_map(|a| {
            if a == key {
                Some("")
            } else {
                a.strip_prefix(key)?.strip_prefix('=')
            }
        })
    }

    fn is_recipe(&self) -> bool {
        self.attr("nolint").is_none()
            && (self.attr("bad").is_some() || self.text.lines().any(|l| l.starts_with("version:")))
    }

    pub(crate) fn name(&self) -> String {
        format!(
            "{} snippet #{} (line {})",
            self.chapter.display(),
            self.number,
            self.line
        )
    }
}

/// The fenced yaml blocks of one chapter, with includes expanded.
fn yaml_blocks(chapter: &Path, markdown: &str) -> Vec<Snippet> {
    let dir = chapter.parent().unwrap_or(Path::new("."));
    let mut out = vec![];
    let mut open: Option<(usize, usize, Vec<String>, String)> = None;
    let mut number = 0;
    for (i, raw) in markdown.lines().enumerate() {
        let indent = raw.len() - raw.trim_start().len();
        let line = raw.trim_start();
        match &mut open {
            None => {
                if let Some(info) = line.strip_prefix("```") {
                    let mut parts = info.split(',').map(|p| p.trim().to_string());
                    let lang = parts.next().unwrap_or_default();
                    if lang == "yaml" || lang == "yml" {
                        number += 1;
                        open = Some((i + 1, indent, parts.collect(), String::new()));
                    } else {
                        // Another language's block: skip to its end.
                        open = Some((i + 1, usize::MAX, vec![], String::new()));
                    }
                }
            }
            Some((start, ind, attrs, text)) => {
                if line.starts_with("```") {
                    if *ind != usize::MAX {
                        out.push(Snippet {
                            chapter: chapter.to_path_buf(),
                            number,
                            line: *start,
                            text: std::mem::take(text),
                            attrs: std::mem::take(attrs),
                        });
                    }
                    open = None;
                } else if *ind != usize::MAX {
                    let body = raw.get((*ind).min(indent)..).unwrap_or("");
                    match body
                        .trim()
                        .strip_prefix("{{#include ")
                        .and_then(|r| r.strip_suffix("}}"))
                    {
                        Some(file) => {
                            let included = std::fs::read_to_string(dir.join(file.trim()))
                                .unwrap_or_else(|e| {
                                    panic!("{}: include {file}: {e}", chapter.display())
                                });
                            text.push_str(&included);
                        }
                        None => {
                            text.push_str(body);
                            text.push('\n');
                        }
                    }
                }
            }
        }
    }
    out
}

/// Writes `text` as the snippet's file in `dir`, with its base where the snippet's `base=` and
/// `extends:` say, and returns the `--recipe` layers to load, the snippet's own file last.
pub(crate) fn layers(snippet: &Snippet, text: &str, dir: &Path) -> Result<Vec<PathBuf>, String> {
    let file = dir.join(format!("snippet{}.yaml", snippet.number));
    std::fs::write(&file, text).map_err(|e| e.to_string())?;
    let mut paths = vec![];
    if let Some(base) = snippet.attr("base") {
        let base = Path::new(ROOT).join(base);
        let extends = snippet.text.lines().find_map(|l| {
            l.strip_prefix("extends:")
                .map(|v| v.trim().trim_matches('"').to_string())
        });
        match extends {
            Some(name) => {
                let target = dir.join(name);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
                std::fs::copy(&base, &target)
                    .map_err(|e| format!("copy {}: {e}", base.display()))?;
            }
            None => paths.push(base),
        }
    }
    paths.push(file);
    Ok(paths)
}

/// Lint one snippet; `Err` explains why it is not what the book claims.
fn check(snippet: &Snippet) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let paths = layers(snippet, &snippet.text, dir.path())?;
    let problems = executor_driver::recipe::lint::lint(&paths);
    match snippet.attr("bad") {
        None if problems.list.is_empty() => Ok(()),
        None => Err(format!("fails lint:\n{}", problems.plain())),
        Some(_) if problems.list.is_empty() => Err("is marked bad but passes lint".into()),
        Some("") => Ok(()),
        Some(code) if problems.list.iter().any(|p| p.code == code) => Ok(()),
        Some(code) => Err(format!(
            "is marked bad={code} but lint reports:\n{}",
            problems.plain()
        )),
    }
}

fn chapters(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            chapters(&path, out);
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
}

/// Every recipe snippet of the book, named by its chapter's path from the repository.
pub(crate) fn recipe_snippets() -> Vec<Snippet> {
    let src = Path::new(ROOT).join("book/src");
    let mut files = vec![];
    chapters(&src, &mut files);
    files.sort();
    let mut out = vec![];
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let rel = file.strip_prefix(ROOT).unwrap_or(file);
        for snippet in yaml_blocks(file, &text) {
            if snippet.is_recipe() {
                out.push(Snippet {
                    chapter: rel.to_path_buf(),
                    ..snippet
                });
            }
        }
    }
    out
}

#[test]
fn every_recipe_snippet_in_the_book_lints_as_claimed() {
    let mut checked = 0;
    let mut bad_checked = 0;
    let mut failures = vec![];
    for snippet in recipe_snippets() {
        checked += 1;
        bad_checked += usize::from(snippet.attr("bad").is_some());
        if let Err(why) = check(&snippet) {
            failures.push(format!("{} {why}", snippet.name()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} book snippets are wrong:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    // The book teaches with recipes; finding none means the extraction broke.
    assert!(checked >= 10, "only {checked} recipe snippets found");
    assert!(
        bad_checked >= 3,
        "only {bad_checked} deliberately wrong snippets found"
    );
}

fn snippets_of(markdown: &str) -> Vec<Snippet> {
    yaml_blocks(Path::new(ROOT).join("book/src/x.md").as_path(), markdown)
        .into_iter()
        .filter(Snippet::is_recipe)
        .collect()
}

#[test]
fn the_extractor_finds_recipes_and_their_marks() {
    let md = "Intro\n\n```yaml\nversion: 1\nprepare:\n  - {id: a, kind: log, message: hi}\n```\n\n\
              ```toml\nversion = 1\n```\n\n```yaml\nclouds:\n  x: {}\n```\n\n\
              ```yaml,bad=unknown-step-kind\nversion: 1\nprepare:\n  - {id: a, kind: lgo, message: hi}\n```\n\n\
              - a list item:\n  ```yaml\n  version: 1\n  ```\n";
    let s = snippets_of(md);
    assert_eq!(s.len(), 3, "{s:?}");
    assert_eq!(s[0].number, 1);
    assert_eq!(
        s[1].number, 3,
        "numbers count every yaml block, as a reader does"
    );
    assert_eq!(s[1].attr("bad"), Some("unknown-step-kind"));
    assert_eq!(s[2].text, "version: 1\n", "indented blocks are dedented");
    assert!(check(&s[0]).is_ok());
    assert!(
        check(&s[1]).is_ok(),
        "the right error is what a bad snippet claims"
    );
}

#[test]
fn a_wrong_snippet_or_a_wrong_claim_is_reported() {
    let md = "```yaml\nversion: 1\nprepare:\n  - {id: a, kind: lgo, message: hi}\n```\n\n\
              ```yaml,bad\nversion: 1\n```\n\n\
              ```yaml,bad=duplicate-id\nversion: 1\nprepare:\n  - {id: a, kind: lgo, message: hi}\n```\n";
    let s = snippets_of(md);
    assert_eq!(s.len(), 3);
    let e = check(&s[0]).unwrap_err();
    assert!(e.contains("lgo"), "{e}");
    assert!(check(&s[1]).unwrap_err().contains("passes lint"));
    assert!(check(&s[2]).unwrap_err().contains("bad=duplicate-id"));
}

#[test]
fn an_override_snippet_is_linted_on_its_base() {
    let md = "```yaml,base=tests/recipes/generic.yaml\nversion: 1\nextends: openstack.yaml\npatch:\n  hello: {message: hi}\n```\n\n\
              ```yaml,base=tests/recipes/generic.yaml\nversion: 1\npatch:\n  nope: {message: hi}\n```\n";
    let s = snippets_of(md);
    assert!(check(&s[0]).is_ok(), "{:?}", check(&s[0]));
    assert!(check(&s[1]).unwrap_err().contains("nope"));
}
