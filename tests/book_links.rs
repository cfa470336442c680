//! The book's structure: every chapter is in SUMMARY.md, every chapter SUMMARY.md lists exists,
//! and every link between chapters points at a page and a heading that exist. Heading ids are
//! computed as mdbook computes them, so a renamed heading breaks this test, not the reader.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/book/src");

/// mdbook's id for a heading: lower case; letters, digits, `-` and `_` kept; spaces to `-`.
fn heading_id(text: &str) -> String {
    let plain = strip_links(text).replace('`', "");
    plain
        .trim()
        .chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                Some(c.to_lowercase().next().unwrap_or(c))
            } else if c.is_whitespace() {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

/// `[text](url)` to `text`.
fn strip_links(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find("](").and_then(|close| {
            after[close + 2..]
                .find(')')
                .map(|end| (close, close + 2 + end))
        }) {
            Some((close, end)) => {
                out.push_str(&after[..close]);
                rest = &after[end + 1..];
            }
            None => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Ids of the headings of one chapter (outside code blocks).
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut in_code = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code || !line.starts_with('#') {
            continue;
        }
        let text = line.trim_start_matches('#').trim();
        let id = match text.rfind("{#") {
            Some(i) if text.ends_with('}') => text[i + 2..text.len() - 1].to_string(),
            _ => heading_id(text),
        };
        let n = counts.entry(id.clone()).or_default();
        ids.insert(if *n == 0 { id } else { format!("{id}-{n}") });
        *n += 1;
    }
    ids
}

/// `(target, line)` of every relative link `](target)` outside code blocks.
fn links(markdown: &str) -> Vec<(String, usize)> {
    let mut out = vec![];
    let mut in_code = false;
    for (n, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            let target = &after[..end];
            if !target.contains("://") && !target.starts_with("mailto:") {
                out.push((target.to_string(), n + 1));
            }
            rest = &after[end..];
        }
    }
    out
}

fn chapters() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "md") {
                out.push(p);
            }
        }
    }
    let mut out = vec![];
    walk(Path::new(SRC), &mut out);
    out.sort();
    out
}

#[test]
fn summary_lists_every_chapter_and_only_existing_ones() {
    let summary = std::fs::read_to_string(Path::new(SRC).join("SUMMARY.md")).unwrap();
    let listed: BTreeSet<PathBuf> = links(&summary)
        .into_iter()
        .map(|(t, _)| Path::new(SRC).join(t))
        .collect();
    for page in &listed {
        assert!(
            page.is_file(),
            "SUMMARY.md lists {}, which does not exist",
            page.display()
        );
    }
    for page in chapters() {
        if page.ends_with("SUMMARY.md") {
            continue;
        }
        assert!(
            listed.contains(&page),
            "{} is not in SUMMARY.md, so mdbook would not show it",
            page.display()
        );
    }
}

#[test]
fn every_link_between_chapters_resolves() {
    let pages: BTreeMap<PathBuf, BTreeSet<String>> = chapters()
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, anchors(&text))
        })
        .collect();
    let mut broken = vec![];
    for page in pages.keys() {
        let text = std::fs::read_to_string(page).unwrap();
        for (target, line) in links(&text) {
            let (file, fragment) = match target.split_once('#') {
                Some((f, frag)) => (f, Some(frag)),
                None => (target.as_str(), None),
            };
            let dest = if file.is_empty() {
                page.clone()
            } else {
                normalize(&page.parent().unwrap().join(file))
            };
            let name = format!("{}:{line}: {target}", page.display());
            match pages.get(&dest) {
                None if dest.exists() => {}
                None => broken.push(format!("{name}: no such page")),
                Some(ids) => {
                    if let Some(f) = fragment
                        && !ids.contains(f)
                    {
                        broken.push(format!("{name}: no heading with id `{f}`"));
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[test]
fn heading_ids_follow_mdbook() {
    assert_eq!(heading_id("3. `config.toml`"), "3-configtoml");
    assert_eq!(
        heading_id("Driver settings live in the service's environment"),
        "driver-settings-live-in-the-services-environment"
    );
    assert_eq!(
        heading_id("Private CAs and `verify: false`"),
        "private-cas-and-verify-false"
    );
    let a = anchors("# A\n## Step kinds {#step-kinds}\n```\n# not a heading\n```\n## A\n");
    assert_eq!(
        a,
        ["a", "a-1", "step-kinds"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    assert_eq!(
        links("see [x](a.md#b) and [y](https://e.x)\n```\n[z](c.md)\n```\n"),
        vec![("a.md#b".to_string(), 1)]
    );
}
