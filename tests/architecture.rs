//! The layer rules of ARCHITECTURE.md, checked: each crate's `Cargo.toml` may name only the
//! crates of ours below it, and the sources under `engine/` may not name what their layer must
//! not know (a back end the steps, a step the interpreter, the driver's core the test tooling).
//!
//! Layers, top down; an arrow never goes up:
//! commands (`engine/cli`) → interpreter → recipe → template → steps → back ends
//! (`engine/cloud`, `engine/ssh`) → foundation. The simulator and the gitlab-runner stand-in are
//! test tooling beside the layers: the driver's crates never depend on them, and they never depend
//! on the driver's crates (the stand-in drives the binary as a process, as gitlab-runner does).
//!
//! The checks read files only, so a broken rule fails here with the file and line that broke it
//! and the rule it broke, before anyone has to notice a tangle in review.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Where a crate of ours sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Part of the driver, at this height (0 = foundation). It may depend only on lower ones.
    Layer(u8),
    /// Test tooling: the simulated cloud and the gitlab-runner stand-in.
    Tooling,
}

/// Every crate of ours: folder, package name, role. A new crate must be placed here.
const CRATES: [(&str, &str, Role); 8] = [
    ("engine/foundation", "executor-foundation", Role::Layer(0)),
    ("engine/cloud", "executor-cloud", Role::Layer(1)),
    ("engine/ssh", "executor-ssh", Role::Layer(1)),
    // The warm pool's settings and claim protocol: a back end the `pool_claim` step calls.
    ("engine/pool", "executor-pool", Role::Layer(1)),
    ("engine/driver", "executor-driver", Role::Layer(2)),
    (".", "executor", Role::Layer(3)),
    ("engine/simulator", "executor-simulator", Role::Tooling),
    (
        "engine/gitlab-runner-standin",
        "gitlab-runner-standin",
        Role::Tooling,
    ),
];

/// Tooling crates may use these of ours: the stand-in starts the simulated cloud for `simulate`,
/// and asks a pool daemon it started (`simulate --pool`) over the pool's socket protocol how
/// many VMs are idle, as a site's monitoring would.
const TOOLING_MAY_USE: [(&str, &str); 2] = [
    ("gitlab-runner-standin", "executor-simulator"),
    ("gitlab-runner-standin", "executor-pool"),
];

/// HTTP servers stay out of the production build.
const SERVER_CRATES: [&str; 1] = ["axum"];

fn role_of(package: &str) -> Option<Role> {
    CRATES
        .iter()
        .find(|(_, p, _)| *p == package)
        .map(|(_, _, r)| *r)
}

fn is_ours(package: &str) -> bool {
    role_of(package).is_some()
}

/// The Rust name a package is imported under.
fn rust_name(package: &str) -> String {
    package.replace('-', "_")
}

// ---------------------------------------------------------------------------------------------
// Cargo.toml, read just enough: the dependency tables and the features.

#[derive(Debug, Clone)]
struct Dep {
    name: String,
    optional: bool,
    line: usize,
}

#[derive(Debug, Default)]
struct Manifest {
    path: PathBuf,
    /// Table name (`dependencies`, `dev-dependencies`, `build-dependencies`) -> entries.
    tables: BTreeMap<String, Vec<Dep>>,
    /// Feature -> what it enables.
    features: BTreeMap<String, Vec<String>>,
}

impl Manifest {
    fn deps(&self, table: &str) -> &[Dep] {
        self.tables.get(table).map(Vec::as_slice).unwrap_or(&[])
    }

    fn normal(&self) -> impl Iterator<Item = &Dep> {
        self.deps("dependencies")
            .iter()
            .chain(self.deps("build-dependencies"))
    }
}

fn parse_manifest(path: &Path, text: &str) -> Manifest {
    let mut m = Manifest {
        path: path.to_path_buf(),
        ..Manifest::default()
    };
    let mut table = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            table = line
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        // `serde.workspace = true` names `serde`.
        let key = key.trim().trim_matches('"');
        let key = key.split('.').next().unwrap_or(key).to_string();
        match table.as_str() {
            "dependencies" | "dev-dependencies" | "build-dependencies" => {
                // `name = { package = "other", ... }` would hide the real crate; we do not use it.
                let optional = value.replace(' ', "").contains("optional=true");
                m.tables.entry(table.clone()).or_default().push(Dep {
                    name: key,
                    optional,
                    line: i + 1,
                });
            }
            "features" => {
                let items = value
                    .trim()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .split(',')
                    .map(|s| s.trim().trim_matches('"').to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                m.features.insert(key, items);
            }
            _ => {}
        }
    }
    m
}

fn manifest(dir: &str) -> Manifest {
    let path = Path::new(ROOT).join(dir).join("Cargo.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    parse_manifest(&path, &text)
}

fn at(m: &Manifest, d: &Dep) -> String {
    let rel = m.path.strip_prefix(ROOT).unwrap_or(&m.path);
    format!("{}:{}", rel.display(), d.line)
}

/// The rules one crate's manifest breaks.
fn manifest_problems(package: &str, m: &Manifest) -> Vec<String> {
    let mut out = vec![];
    let Some(role) = role_of(package) else {
        return vec![format!(
            "{}: crate `{package}` has no place in the layers: add it to CRATES in tests/architecture.rs \
             (and to ARCHITECTURE.md's code map) with the role it plays",
            m.path.display()
        )];
    };
    for d in m.normal() {
        let Some(dep_role) = role_of(&d.name) else {
            continue;
        };
        let why = match (role, dep_role) {
            (Role::Layer(3), Role::Tooling) if d.optional => continue,
            (Role::Layer(3), Role::Tooling) => Some(
                "the commands may use test tooling only as an optional dependency (feature `simulate`)"
                    .to_string(),
            ),
            (Role::Layer(_), Role::Tooling) => {
                Some("the driver's crates never depend on test tooling".into())
            }
            (Role::Layer(me), Role::Layer(it)) if it >= me => Some(format!(
                "a crate at layer {me} may depend only on lower layers, and `{}` is at layer {it}",
                d.name
            )),
            (Role::Layer(_), Role::Layer(_)) => None,
            (Role::Tooling, _) if TOOLING_MAY_USE.contains(&(package, d.name.as_str())) => None,
            (Role::Tooling, Role::Layer(_)) => Some(
                "test tooling stands in for OpenStack and gitlab-runner, so it may not use the driver's crates"
                    .into(),
            ),
            (Role::Tooling, Role::Tooling) => {
                Some("this tooling crate may not use that one (see TOOLING_MAY_USE)".into())
            }
        };
        if let Some(why) = why {
            out.push(format!(
                "{}: `{package}` depends on `{}`: {why}",
                at(m, d),
                d.name
            ));
        }
    }
    for d in m.deps("dev-dependencies") {
        let Some(dep_role) = role_of(&d.name) else {
            continue;
        };
        let bad = match (role, dep_role) {
            (Role::Layer(me), Role::Layer(it)) => it > me,
            (Role::Tooling, Role::Layer(_)) => {
                !TOOLING_MAY_USE.contains(&(package, d.name.as_str()))
            }
            _ => false,
        };
        if bad {
            out.push(format!(
                "{}: `{package}`'s tests use `{}`, which sits above it",
                at(m, d),
                d.name
            ));
        }
    }
    if role == Role::Layer(3) {
        for (feature, items) in &m.features {
            for item in items {
                let dep = item.trim_start_matches("dep:");
                if role_of(dep) == Some(Role::Tooling) && feature != "simulate" {
                    out.push(format!(
                        "{}: feature `{feature}` enables `{dep}`: only `simulate` may bring in test tooling",
                        m.path.display()
                    ));
                }
            }
        }
    }
    out
}

/// Our crates a build without default features links, and the non-optional dependencies of each.
fn lean_closure(manifests: &BTreeMap<String, Manifest>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec!["executor".to_string()];
    while let Some(p) = todo.pop() {
        if !seen.insert(p.clone()) {
            continue;
        }
        if let Some(m) = manifests.get(&p) {
            for d in m.normal().filter(|d| !d.optional && is_ours(&d.name)) {
                todo.push(d.name.clone());
            }
        }
    }
    seen
}

fn lean_problems(manifests: &BTreeMap<String, Manifest>) -> Vec<String> {
    let mut out = vec![];
    for p in lean_closure(manifests) {
        let Some(m) = manifests.get(&p) else {
            continue;
        };
        if role_of(&p) == Some(Role::Tooling) {
            out.push(format!(
                "`{p}` is in the lean build (`--no-default-features`): it is reached without the `simulate` feature"
            ));
        }
        for d in m.normal().filter(|d| !d.optional) {
            if SERVER_CRATES.contains(&d.name.as_str()) {
                out.push(format!(
                    "{}: `{p}` depends on `{}`, and `{p}` is in the lean build",
                    at(m, d),
                    d.name
                ));
            }
        }
    }
    out
}

fn all_manifests() -> BTreeMap<String, Manifest> {
    let mut out = BTreeMap::new();
    out.insert("executor".to_string(), manifest("."));
    let engine = Path::new(ROOT).join("engine");
    for entry in std::fs::read_dir(&engine).expect("engine/") {
        let dir = entry.expect("engine/ entry").path();
        if !dir.join("Cargo.toml").is_file() {
            continue;
        }
        let rel = format!("engine/{}", dir.file_name().unwrap().to_string_lossy());
        let m = manifest(&rel);
        let text = std::fs::read_to_string(&m.path).unwrap_or_default();
        let name = text
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == "name").then(|| v.trim().trim_matches('"').to_string())
            })
            .unwrap_or(rel);
        out.insert(name, m);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Sources: comments removed, every path into our crates and modules found.

/// The text with comments blanked out, line numbers kept. String literals stay: attribute
/// strings such as `schema_with = "crate::x"` are paths too.
fn code_of(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_block = false;
    for line in text.lines() {
        let mut kept = String::new();
        let mut rest = line;
        loop {
            if in_block {
                match rest.find("*/") {
                    Some(end) => {
                        rest = &rest[end + 2..];
                        in_block = false;
                    }
                    None => break,
                }
            }
            match comment_start(rest) {
                Some((pos, block)) => {
                    kept.push_str(&rest[..pos]);
                    if block {
                        in_block = true;
                        rest = &rest[pos + 2..];
                    } else {
                        break;
                    }
                }
                None => {
                    kept.push_str(rest);
                    break;
                }
            }
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

/// The first `//` or `/*` outside a string literal: (position, is a block comment).
fn comment_start(line: &str) -> Option<(usize, bool)> {
    let bytes = line.as_bytes();
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'\'' if !in_string && bytes.get(i + 2) == Some(&b'\'') => i += 2,
            b'"' => in_string = !in_string,
            b'/' if !in_string => match bytes.get(i + 1) {
                Some(b'/') => return Some((i, false)),
                Some(b'*') => return Some((i, true)),
                _ => {}
            },
            _ => {}
        }
        i += 1;
    }
    None
}

/// A file's module path inside its crate: `src/steps/sleep.rs` -> `["steps", "sleep"]`.
fn module_of(src_relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = src_relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// Something a source file refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A crate of ours, by its Rust name (`executor_cloud`).
    Crate(String),
    /// A module of this crate, by its path from the crate root (`["steps", "context"]`).
    Module(Vec<String>),
}

/// Every path in `code` that leads into one of our crates or into a module of this crate,
/// with its line number.
fn references(code: &str, module: &[String]) -> Vec<(usize, Target)> {
    let mut names: Vec<String> = CRATES.iter().map(|(_, p, _)| rust_name(p)).collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    let crates = Regex::new(&format!(r"\b({})\b", names.join("|"))).unwrap();
    let local = Regex::new(
        r"\b(crate|super|self)((?:\s*::\s*(?:super|self|[A-Za-z_][A-Za-z0-9_]*))*)(\s*::\s*\{)?",
    )
    .unwrap();
    let line_of = |pos: usize| code[..pos].matches('\n').count() + 1;
    let mut out = vec![];
    for m in crates.find_iter(code) {
        // `executor::` is the binary's own library; a bare `executor` is a word, not a path.
        if m.as_str() == "executor" && !code[m.end()..].trim_start().starts_with("::") {
            continue;
        }
        // Part of a longer path (`foo::executor_cloud`) or a field (`x.executor_cloud`): not ours.
        let before = code[..m.start()].trim_end();
        if before.ends_with("::") || before.ends_with('.') {
            continue;
        }
        out.push((line_of(m.start()), Target::Crate(m.as_str().to_string())));
    }
    for c in local.captures_iter(code) {
        let whole = c.get(0).unwrap();
        // `self` alone (a method receiver) and `x.crate` are not paths.
        let segments: Vec<&str> = c[2]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if &c[1] == "self" && segments.is_empty() && c.get(3).is_none() {
            continue;
        }
        let mut path: Vec<String> = match &c[1] {
            "crate" => vec![],
            "super" => module[..module.len().saturating_sub(1)].to_vec(),
            _ => module.to_vec(),
        };
        for s in &segments {
            match *s {
                "super" => {
                    path.pop();
                }
                "self" => {}
                s => path.push(s.to_string()),
            }
        }
        let line = line_of(whole.start());
        if c.get(3).is_some() {
            // `use crate::{a::b, c}`: each item of the group is a path of its own.
            let open = whole.end();
            for item in group_items(&code[open..]) {
                let mut p = path.clone();
                p.extend(
                    item.split("::")
                        .map(|s| s.trim().to_string())
                        .take_while(|s| !s.is_empty() && !s.starts_with('{'))
                        .filter(|s| s != "self"),
                );
                out.push((line, Target::Module(p)));
            }
        } else {
            out.push((line, Target::Module(path)));
        }
    }
    out
}

/// The top-level items of a `{ ... }` group whose opening brace was just consumed.
fn group_items(after_brace: &str) -> Vec<String> {
    let mut items = vec![];
    let mut depth = 0;
    let mut current = String::new();
    for ch in after_brace.chars() {
        match ch {
            '{' => {
                depth += 1;
                current.push(ch);
            }
            '}' if depth == 0 => break,
            '}' => {
                depth -= 1;
                current.push(ch);
            }
            ',' if depth == 0 => items.push(std::mem::take(&mut current)),
            _ => current.push(ch),
        }
    }
    items.push(current);
    items
        .into_iter()
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
        .collect()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// One source rule: files under `under` (relative to the crate's source root) may not refer to
/// `forbidden`, because `why`.
struct Rule {
    under: &'static str,
    forbidden: Forbidden,
    why: &'static str,
}

enum Forbidden {
    /// Modules of the same crate (first path segment).
    Modules(&'static [&'static str]),
    /// Crates of ours, by Rust name.
    Crates(&'static [&'static str]),
    /// Type names that belong to a layer above.
    Names(&'static [&'static str]),
}

/// The module rules inside `engine/driver/src`: interpreter → recipe → template → steps.
const DRIVER_RULES: [Rule; 4] = [
    Rule {
        under: "steps",
        forbidden: Forbidden::Modules(&["interpreter", "recipe", "template"]),
        why: "steps sit below the interpreter, the recipe and templating: they get rendered, typed arguments",
    },
    Rule {
        under: "template",
        forbidden: Forbidden::Modules(&["recipe", "interpreter"]),
        why: "templating renders values for whoever asks; it knows no recipe and runs nothing",
    },
    Rule {
        under: "recipe",
        forbidden: Forbidden::Modules(&["interpreter"]),
        why: "the recipe is data that the interpreter runs; it never runs anything itself",
    },
    Rule {
        under: "interpreter",
        forbidden: Forbidden::Crates(&["executor_cloud", "executor_ssh", "executor_pool"]),
        why: "the interpreter knows steps only as `StepKind::run`; back ends are the steps' business",
    },
];

/// What the back ends may not name even in passing: the step API and the job's state and log,
/// which the steps own.
const BACK_END_FORBIDDEN_NAMES: &[&str] = &[
    "StepContext",
    "StepError",
    "StepKind",
    "Services",
    "Interpreter",
    "JobState",
    "JobLog",
];

fn rule_problems(file_label: &str, code: &str, module: &[String], rule: &Rule) -> Vec<String> {
    let mut out = vec![];
    match rule.forbidden {
        Forbidden::Names(names) => {
            for name in names {
                let re = Regex::new(&format!(r"\b{name}\b")).unwrap();
                for m in re.find_iter(code) {
                    let line = code[..m.start()].matches('\n').count() + 1;
                    out.push(format!("{file_label}:{line}: names `{name}`: {}", rule.why));
                }
            }
        }
        Forbidden::Crates(crates) => {
            for (line, t) in references(code, module) {
                if let Target::Crate(c) = t
                    && crates.contains(&c.as_str())
                {
                    out.push(format!("{file_label}:{line}: uses `{c}`: {}", rule.why));
                }
            }
        }
        Forbidden::Modules(mods) => {
            for (line, t) in references(code, module) {
                if let Target::Module(p) = t
                    && let Some(first) = p.first()
                    && mods.contains(&first.as_str())
                {
                    out.push(format!(
                        "{file_label}:{line}: uses `crate::{}`: {}",
                        p.join("::"),
                        rule.why
                    ));
                }
            }
        }
    }
    out
}

/// Crates of ours a crate's sources name that its manifest does not allow, and, for back ends
/// and the foundation, the names of the layers above.
fn crate_source_problems(dir: &str, package: &str, m: &Manifest) -> Vec<String> {
    let role = role_of(package);
    let allowed: BTreeSet<String> = m
        .normal()
        .chain(m.deps("dev-dependencies"))
        .map(|d| rust_name(&d.name))
        .chain([rust_name(package)])
        .collect();
    let src = if dir == "." {
        Path::new(ROOT).join("engine/cli")
    } else {
        Path::new(ROOT).join(dir).join("src")
    };
    let mut out = vec![];
    for file in rust_files(&src) {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let code = code_of(&text);
        let rel = file.strip_prefix(&src).unwrap_or(&file);
        let label = file
            .strip_prefix(ROOT)
            .unwrap_or(&file)
            .display()
            .to_string();
        let module = module_of(rel);
        for (line, t) in references(&code, &module) {
            if let Target::Crate(c) = t
                && !allowed.contains(&c)
            {
                out.push(format!(
                    "{label}:{line}: names `{c}`, which `{package}` does not depend on (its layer may not)"
                ));
            }
        }
        if matches!(role, Some(Role::Layer(0 | 1))) {
            let rule = Rule {
                under: "",
                forbidden: Forbidden::Names(BACK_END_FORBIDDEN_NAMES),
                why: "back ends and the foundation are libraries the steps call; the step API, the \
                      interpreter and the job's state and log belong to the layers above",
            };
            // The foundation defines JobState and JobLog; only the back ends may not name them.
            if role == Some(Role::Layer(1)) {
                out.extend(rule_problems(&label, &code, &module, &rule));
            } else {
                let rule = Rule {
                    forbidden: Forbidden::Names(&[
                        "StepContext",
                        "StepError",
                        "StepKind",
                        "Services",
                        "Interpreter",
                    ]),
                    ..rule
                };
                out.extend(rule_problems(&label, &code, &module, &rule));
            }
        }
    }
    out
}

fn driver_module_problems() -> Vec<String> {
    let src = Path::new(ROOT).join("engine/driver/src");
    let mut out = vec![];
    for rule in &DRIVER_RULES {
        for file in rust_files(&src.join(rule.under)) {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let rel = file.strip_prefix(&src).unwrap_or(&file);
            let label = file
                .strip_prefix(ROOT)
                .unwrap_or(&file)
                .display()
                .to_string();
            out.extend(rule_problems(
                &label,
                &code_of(&text),
                &module_of(rel),
                rule,
            ));
        }
    }
    out
}

fn assert_none(what: &str, problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{what}: {} broken rule(s) (see ARCHITECTURE.md):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------------
// The rules.

#[test]
fn every_crate_has_a_place_and_depends_only_downwards() {
    let manifests = all_manifests();
    let mut problems = vec![];
    for (package, m) in &manifests {
        problems.extend(manifest_problems(package, m));
    }
    for (dir, package, _) in CRATES {
        if !manifests.contains_key(package) {
            problems.push(format!(
                "{dir}: no crate `{package}` there any more; update CRATES"
            ));
        }
    }
    assert_none("Cargo.toml layer rules", problems);
}

#[test]
fn sources_name_only_the_crates_their_layer_may_use() {
    let manifests = all_manifests();
    let mut problems = vec![];
    for (dir, package, _) in CRATES {
        if let Some(m) = manifests.get(package) {
            problems.extend(crate_source_problems(dir, package, m));
        }
    }
    assert_none("source layer rules", problems);
}

#[test]
fn the_driver_modules_point_only_down() {
    assert_none("engine/driver/src module rules", driver_module_problems());
}

#[test]
fn the_lean_build_links_no_test_tooling_and_no_http_server() {
    assert_none("lean build (Cargo.toml)", lean_problems(&all_manifests()));
    // The resolved graph too, which also sees what other registries' crates pull in.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(ROOT)
        .args(["tree", "--offline", "--locked", "--package", "executor"])
        .args(["--no-default-features", "--edges", "normal,build"])
        .args(["--prefix", "none", "--format", "{p}"])
        .output()
        .expect("cargo tree runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("executor-driver"),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unwanted: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| SERVER_CRATES.contains(name) || role_of(name) == Some(Role::Tooling))
        .collect();
    assert!(
        unwanted.is_empty(),
        "`cargo build --no-default-features` would link {unwanted:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The checker itself, on sources made up to break each rule.

fn steps_file_problems(text: &str) -> Vec<String> {
    rule_problems(
        "steps/x.rs",
        &code_of(text),
        &["steps".to_string(), "x".to_string()],
        &DRIVER_RULES[0],
    )
}

#[test]
fn the_checker_sees_every_spelling_of_a_forbidden_path() {
    for bad in [
        "use crate::interpreter::Interpreter;",
        "use crate::{steps::StepError, template::Templater};",
        "use crate :: recipe :: model;",
        "fn f() { let _ = super::super::interpreter::run; }",
        "#[schemars(schema_with = \"crate::template::x\")]",
        "pub use crate::{\n    recipe::{self, loader},\n};",
    ] {
        assert_eq!(steps_file_problems(bad).len(), 1, "not caught: {bad}");
    }
    for fine in [
        "use crate::steps::context::StepContext;",
        "// use crate::interpreter::Interpreter;",
        "/* crate::recipe */ use super::context::Outputs;",
        "let url = \"http://x\"; // crate::template",
        "fn f(&self) -> u8 { self.x }",
    ] {
        assert_eq!(steps_file_problems(fine), Vec::<String>::new(), "{fine}");
    }
}

#[test]
fn the_checker_reads_manifests_as_cargo_does() {
    let m = parse_manifest(
        Path::new("engine/cloud/Cargo.toml"),
        "[package]\nname = \"executor-cloud\"\n[dependencies]\nexecutor-foundation = { path = \"../foundation\" }\n\
         executor-driver = { path = \"../driver\" }\nserde = { workspace = true }\n[dev-dependencies]\n\
         executor-simulator = { path = \"../simulator\" }\n",
    );
    let problems = manifest_problems("executor-cloud", &m);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("executor-driver"), "{problems:?}");

    let root = parse_manifest(
        Path::new("Cargo.toml"),
        "[features]\ndefault = [\"simulate\"]\nsimulate = [\"dep:executor-simulator\"]\n\
         [dependencies]\nexecutor-driver = { path = \"engine/driver\" }\n\
         executor-simulator = { path = \"engine/simulator\" }\n",
    );
    let problems = manifest_problems("executor", &root);
    assert!(
        problems.len() == 1 && problems[0].contains("optional"),
        "{problems:?}"
    );
    let mut set = BTreeMap::new();
    set.insert("executor".to_string(), root);
    set.insert(
        "executor-simulator".to_string(),
        parse_manifest(
            Path::new("engine/simulator/Cargo.toml"),
            "[dependencies]\naxum = { workspace = true }\n",
        ),
    );
    assert_eq!(lean_problems(&set).len(), 2, "{:?}", lean_problems(&set));
}
