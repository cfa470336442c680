//! Lint knows what load and render would refuse: every recipe that `executor lint` passes also
//! loads, and renders every stage for the sample job (`executor render` without `--env-file`)
//! without an error.
//!
//! The recipes: the shipped ones and their examples, the test recipes, the book's snippets,
//! and mutants of each, made by a deterministic loop of the edits an author makes by mistake
//! (a line deleted, duplicated or indented differently, two lines swapped, a step copied, a
//! value changed). A mutant that lint refuses proves nothing and is fine; one that lint passes
//! and load or render refuses is a failure. `EXECUTOR_MUTANTS=N` sets how many mutants each
//! recipe gets (default 60); every mutant of a recipe is tried when N is large enough.

use std::path::{Path, PathBuf};

use executor::commands::render::render_stage;
use executor_driver::template::context::Environment;
use executor_foundation::redact::Redactor;
use executor_foundation::stage::Stage;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// What a site's runner environment sets where a recipe demands it: the static key pair
/// example `required`s its key pair and key file, the book's minimal recipe reads its flavor,
/// image, network and user without a default, and the cloud test recipe names its servers after
/// a job variable of its own.
const SITE: [(&str, &str); 8] = [
    ("KEY_PAIR_NAME", "ci-key"),
    ("PRIVATE_KEY_PATH", "/etc/executor/ci-key"),
    ("FLAVOR", "m1.small"),
    ("BUILDER_IMAGE", "ubuntu-24.04"),
    ("NETWORK", "private"),
    ("USERNAME", "ubuntu"),
    ("CUSTOM_ENV_TEST_PREFIX", "lint"),
    ("OS_CLOUD", "ci"),
];

/// Recipes left out, and why.
const LEFT_OUT: [(&str, &str); 1] = [(
    "tests/recipes/wire.yaml",
    "every option it sends is a job variable of the wire test's own",
)];

/// One recipe to check: the layers before the author's file, and the author's file.
struct Case {
    name: String,
    base: Vec<PathBuf>,
    /// The file's text, with a relative `extends:` made absolute so that it can be written
    /// anywhere.
    text: String,
}

/// Where lint and the stages disagree about one recipe.
fn disagreement(layers: &[PathBuf]) -> Option<String> {
    let problems = executor_driver::recipe::lint::lint(layers);
    if !problems.list.is_empty() {
        return None;
    }
    let loaded = match executor_driver::recipe::loader::load(layers) {
        Ok(l) => l,
        Err(p) => return Some(format!("lint passes, load refuses:\n{}", p.plain())),
    };
    let site = SITE.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let environment = Environment::from_pairs(site).with_sample_job();
    let mut stages = vec![Stage::Config, Stage::Prepare, Stage::Run, Stage::Cleanup];
    if !loaded.recipe.provision.is_empty() {
        stages.push(Stage::Provision);
    }
    for stage in stages {
        match render_stage(&loaded, stage, &environment, &Redactor::default()) {
            Ok(r) if !r.failed => {}
            Ok(r) => {
                return Some(format!(
                    "lint passes, rendering {} fails:\n{}",
                    stage.name(),
                    serde_json::to_string_pretty(&r.doc).unwrap_or_default()
                ));
            }
            Err(e) => {
                return Some(format!(
                    "lint passes, rendering {} fails: {e}",
                    stage.name()
                ));
            }
        }
    }
    None
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    out.sort();
    out
}

/// `text` with its `extends:` resolved against `dir`, so the file may be written elsewhere.
fn absolute_extends(text: &str, dir: &Path) -> String {
    text.lines()
        .map(|line| match line.strip_prefix("extends:") {
            Some(rel) => {
                let rel = rel.trim().trim_matches('"');
                format!("extends: {}", dir.join(rel).display())
            }
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn cases(snippet_dir: &Path) -> Vec<Case> {
    let root = Path::new(ROOT);
    let mut out = vec![];
    for dir in [
        "recipes",
        "recipes/examples",
        "tests/recipes",
        "book/src/examples",
    ] {
        for file in yaml_files(&root.join(dir)) {
            let name = file.strip_prefix(root).unwrap().display().to_string();
            if LEFT_OUT.iter().any(|(left, _)| *left == name) {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            out.push(Case {
                name,
                base: vec![],
                text: absolute_extends(&text, file.parent().unwrap()),
            });
        }
    }
    for snippet in crate::book_snippets::recipe_snippets() {
        if snippet.attr("bad").is_some() {
            continue;
        }
        let dir = snippet_dir.join(format!("{}", out.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let layers = crate::book_snippets::layers(&snippet, "", &dir).unwrap();
        let (own, base) = layers.split_last().unwrap();
        let text = snippet.text.clone();
        out.push(Case {
            name: snippet.name(),
            base: base.to_vec(),
            text: absolute_extends(&text, own.parent().unwrap()),
        });
    }
    out
}

/// Values an author might leave in a field by mistake.
const VALUES: [&str; 14] = [
    "",
    "0",
    "-1",
    "true",
    "null",
    "x",
    "600",
    "2M",
    "10m",
    "[a, b]",
    "{}",
    "\"{{ vars.nope }}\"",
    "\"{{ 1 + }}\"",
    "\"{{ env.HOME | lowercase }}\"",
];

/// Every mutant of `text`, in a fixed order.
fn mutants(text: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let join = |v: Vec<&str>| v.join("\n") + "\n";
    let mut out = vec![];
    for i in 0..lines.len() {
        let line = lines[i];
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let mut v = lines.clone();
        v.remove(i);
        out.push((format!("line {} deleted", i + 1), join(v)));
        let mut v = lines.clone();
        v.insert(i, line);
        out.push((format!("line {} duplicated", i + 1), join(v)));
        if i + 1 < lines.len() {
            let mut v = lines.clone();
            v.swap(i, i + 1);
            out.push((format!("lines {} and {} swapped", i + 1, i + 2), join(v)));
        }
        let deeper = format!("  {line}");
        let mut v = lines.clone();
        v[i] = &deeper;
        out.push((format!("line {} indented", i + 1), join(v)));
        if let Some(shallower) = line.strip_prefix("  ") {
            let mut v = lines.clone();
            v[i] = shallower;
            out.push((format!("line {} dedented", i + 1), join(v)));
        }
        if let Some((key, _)) = line.split_once(": ") {
            for value in VALUES {
                let changed = format!("{key}: {value}");
                let mut v = lines.clone();
                v[i] = &changed;
                out.push((format!("line {}: `{}`", i + 1, changed.trim()), join(v)));
            }
        }
        // A step copied whole, as when an author duplicates one to make another.
        if line.trim_start().starts_with("- id:") {
            let indent = line.len() - line.trim_start().len();
            let end = (i + 1..lines.len())
                .find(|&j| {
                    let l = lines[j];
                    !l.trim().is_empty() && l.len() - l.trim_start().len() <= indent
                })
                .unwrap_or(lines.len());
            let mut v = lines.clone();
            let step: Vec<&str> = lines[i..end].to_vec();
            for (k, l) in step.into_iter().enumerate() {
                v.insert(end + k, l);
            }
            out.push((format!("step at line {} copied", i + 1), join(v)));
        }
    }
    out
}

/// `n` of `all`, spread over it by a fixed stride so that every kind of edit and every part of
/// the file get their share.
fn pick<T>(all: Vec<T>, n: usize) -> Vec<T> {
    if all.len() <= n {
        return all;
    }
    // A stride coprime with the length visits distinct mutants.
    let len = all.len();
    let mut stride = (len / n) | 1;
    while gcd(stride, len) != 1 {
        stride += 2;
    }
    let mut taken: Vec<Option<T>> = all.into_iter().map(Some).collect();
    (0..n)
        .filter_map(|k| taken[(k * stride + 7) % len].take())
        .collect()
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[test]
fn what_lint_passes_loads_and_renders_with_the_sample_job() {
    let per_recipe: usize = std::env::var("EXECUTOR_MUTANTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(60);
    let work = tempfile::tempdir().unwrap();
    let all = cases(&work.path().join("snippets"));
    assert!(all.len() >= 20, "only {} recipes found", all.len());
    let mut failures = vec![];
    let mut passed_lint = 0;
    let mut tried = 0;
    for (n, case) in all.iter().enumerate() {
        let file = work.path().join(format!("case{n}.yaml"));
        let mut layers = case.base.clone();
        layers.push(file.clone());
        std::fs::write(&file, &case.text).unwrap();
        if let Some(why) = disagreement(&layers) {
            failures.push(format!("{} as it is: {why}", case.name));
        }
        for (edit, text) in pick(mutants(&case.text), per_recipe) {
            tried += 1;
            std::fs::write(&file, &text).unwrap();
            if executor_driver::recipe::lint::lint(&layers).list.is_empty() {
                passed_lint += 1;
            }
            if let Some(why) = disagreement(&layers) {
                failures.push(format!("{}, {edit}: {why}\n--- mutant:\n{text}", case.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {tried} mutants (and originals) disagree:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    // Mutants that lint refuses prove nothing; a run where it refused them all would be empty.
    assert!(
        passed_lint * 10 >= tried,
        "only {passed_lint} of {tried} mutants pass lint"
    );
}

#[test]
fn a_mutant_that_lint_passes_and_render_refuses_is_caught() {
    // Lint cannot know the job's variables; a template reading one the sample job lacks is
    // refused by render alone, which is the disagreement the property looks for.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("r.yaml");
    std::fs::write(
        &file,
        "version: 1\nprepare:\n  - id: a\n    kind: log\n    message: \"{{ job.NOT_A_SAMPLE }}\"\n",
    )
    .unwrap();
    let why = disagreement(&[file]).expect("a disagreement");
    assert!(why.contains("rendering prepare fails"), "{why}");
}

#[test]
fn mutants_are_many_distinct_and_picked_evenly() {
    let text = "version: 1\nprepare:\n  - id: a\n    kind: log\n    message: hi\n";
    let all = mutants(text);
    assert!(all.len() > 40, "{}", all.len());
    assert!(all.iter().any(|(e, _)| e.contains("copied")));
    let picked = pick((0..100).collect::<Vec<_>>(), 10);
    let mut distinct = picked.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 10, "{picked:?}");
}
