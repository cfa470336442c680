//! `executor lint`: every problem of a recipe in one run.
//!
//! On top of what loading finds (YAML syntax, schema, overrides), lint checks what only makes
//! sense across the recipe: duplicate ids, references to steps that do not exist or come later,
//! template syntax, and names a template reads that nothing defines; then, on a recipe with
//! none of those, what rendering it for the sample job would refuse (`sample_render`).

use std::collections::HashSet;
use std::path::PathBuf;

use serde_json::Value as Json;

use crate::recipe::loader::{self, Document};
use crate::recipe::problem::{Problem, Problems};
use crate::recipe::step_spec::COMMON_KEYS;
use crate::template::Templater;
use crate::template::calls::CallKind;
use crate::template::context::NAMES;
use executor_foundation::stage::Stage;
use serde_json::Map;

/// Lint one recipe (a base and its overrides).
pub fn lint(paths: &[PathBuf]) -> Problems {
    let doc = loader::load_document(paths);
    let mut list = doc.read_problems.clone();
    // A file that could not be read or parsed has nothing more to say.
    if !list
        .iter()
        .any(|p| matches!(p.code, "yaml-syntax" | "unreadable" | "no-recipe"))
    {
        list.extend(loader::validate(&doc.json, &doc.spans));
        list.extend(semantic(&doc));
        list.extend(crate::recipe::taint::check(&doc));
        // Values are worth trying only on a recipe whose shape and names are right; else the
        // same mistake would be reported twice, once by name and once by its effect.
        if !list.iter().any(|p| p.is_error()) {
            list.extend(crate::recipe::sample_render::check(&Templater::new(), &doc));
        }
    }
    list.sort_by_key(|p| p.loc.map(|l| (l.file, l.start)));
    list.dedup();
    Problems {
        sources: doc.sources,
        list,
    }
}

/// (stage, index, step mapping) of every step in the document.
fn steps(doc: &Document) -> Vec<(Stage, usize, &Map<String, Json>)> {
    Stage::WITH_STEPS
        .into_iter()
        .flat_map(|stage| {
            doc.json
                .get(stage.name())
                .and_then(|s| s.as_array())
                .into_iter()
                .flatten()
                .enumerate()
                .filter_map(move |(i, s)| s.as_object().map(|m| (stage, i, m)))
        })
        .collect()
}

fn semantic(l: &Document) -> Vec<Problem> {
    let t = Templater::new();
    let mut problems = vec![];
    let all = steps(l);
    problems.extend(duplicate_ids(l, &all));
    let all_ids: Vec<&str> = all
        .iter()
        .filter_map(|(_, _, step)| step.get("id").and_then(|i| i.as_str()))
        .collect();
    // vars may read the ones above them
    let mut defined_vars: HashSet<String> = HashSet::new();
    // Vars that read the job, directly or through other vars: `provision` may not use them.
    let mut job_vars: HashSet<String> = HashSet::new();
    let empty = Map::new();
    let vars = l
        .json
        .get("vars")
        .and_then(|v| v.as_object())
        .unwrap_or(&empty);
    for (name, raw) in vars {
        let pointer = format!("/vars/{}", crate::template::escape_pointer(name));
        check_templates(
            &t,
            l,
            raw,
            &pointer,
            &Scope {
                vars: &defined_vars,
                job_vars: &job_vars,
                steps: &[],
                all_steps: &all_ids,
                stage: None,
            },
            &mut problems,
        );
        defined_vars.insert(name.clone());
        let reads_job = names_in(&t, raw).iter().any(|n| {
            let mut parts = n.split('.');
            match (parts.next(), parts.next()) {
                (Some("job" | "trusted"), _) => true,
                (Some("vars"), Some(v)) => job_vars.contains(v),
                _ => false,
            }
        });
        if reads_job {
            job_vars.insert(name.clone());
        }
    }
    for block in ["config", "cloud", "ssh"] {
        if let Some(raw) = l.json.get(block) {
            check_templates(
                &t,
                l,
                raw,
                &format!("/{block}"),
                &Scope {
                    vars: &defined_vars,
                    job_vars: &job_vars,
                    steps: &[],
                    all_steps: &all_ids,
                    stage: None,
                },
                &mut problems,
            );
        }
    }
    for stage in Stage::WITH_STEPS {
        let mut earlier: Vec<String> = vec![];
        // `set_vars` adds names for the later steps of its stage only.
        let mut stage_vars = defined_vars.clone();
        for (_, index, step) in all.iter().filter(|(s, _, _)| *s == stage) {
            let pointer = format!("/{}/{index}", stage.name());
            let scope = Scope {
                vars: &stage_vars,
                job_vars: &job_vars,
                steps: &earlier,
                all_steps: &all_ids,
                stage: Some(stage),
            };
            if let Some(cond) = step.get("when").and_then(|w| w.as_str()) {
                let at = format!("{pointer}/when");
                if is_braced(cond) {
                    problems.push(
                        Problem::new(
                            "when-braces",
                            "`when` is already an expression: write it without `{{ }}`",
                            l.spans.value_loc(&at),
                        )
                        .with_help(format!("write `when: \"{}\"`", unbraced(cond))),
                    );
                } else {
                    match t.expression_names(cond) {
                        Ok(names) => {
                            let calls = t.unknown_calls_in_expression(cond);
                            let names = not_called(names, &calls);
                            check_names(&t, l, &names, &at, &scope, &mut problems);
                            unknown_calls(l, &at, cond, calls, &mut problems);
                        }
                        Err(e) => problems.push(Problem::new(
                            "template-syntax",
                            e.message,
                            l.spans.value_loc(&at),
                        )),
                    }
                }
            }
            for (key, value) in step
                .iter()
                .filter(|(k, _)| *k != "kind" && !COMMON_KEYS.contains(&k.as_str()))
            {
                let p = format!("{pointer}/{}", crate::template::escape_pointer(key));
                check_templates(&t, l, value, &p, &scope, &mut problems);
            }
            if let Some(id) = step.get("id").and_then(|i| i.as_str()) {
                earlier.push(id.to_string());
            }
            if step.get("kind").and_then(|k| k.as_str()) == Some("set_vars")
                && let Some(values) = step.get("values").and_then(|v| v.as_object())
            {
                stage_vars.extend(values.keys().cloned());
            }
        }
    }
    problems
}

/// A step id used twice is reported at the use from the latest layer, where the author who
/// added it can rename it, with the other use beside it: an override's `insert` that repeats a
/// base id is the override's mistake even when the merge puts it first.
fn duplicate_ids(l: &Document, all: &[(Stage, usize, &Map<String, Json>)]) -> Vec<Problem> {
    let mut uses: indexmap::IndexMap<&str, Vec<(usize, String)>> = indexmap::IndexMap::new();
    for (order, (stage, index, step)) in all.iter().enumerate() {
        if let Some(id) = step.get("id").and_then(|i| i.as_str()) {
            uses.entry(id)
                .or_default()
                .push((order, format!("/{}/{index}/id", stage.name())));
        }
    }
    let layer = |pointer: &str| {
        l.spans
            .value_loc(pointer)
            .map_or(0, |loc| l.sources.get(loc.file).layer)
    };
    let mut problems = vec![];
    for (id, mut at) in uses {
        if at.len() < 2 {
            continue;
        }
        at.sort_by_key(|(order, pointer)| (layer(pointer), *order));
        let first = &at[0].1;
        let first_loc = l.spans.value_loc(first);
        for (_, pointer) in &at[1..] {
            let loc = l.spans.value_loc(pointer);
            let other_file = match (loc, first_loc) {
                (Some(a), Some(b)) => a.file != b.file,
                _ => false,
            };
            let p = Problem::new("duplicate-id", format!("step id `{id}` is used twice"), loc);
            problems.push(if other_file {
                p.with_help("step ids are unique across the merged recipe; rename this one")
                    .with_related(
                        first_loc,
                        format!("`{id}` is already a step of the base recipe"),
                    )
            } else {
                p.with_help(format!("the first use is at {}", locate(l, first)))
            });
        }
    }
    problems
}

/// Every name a value's templates read, through arrays and maps.
pub(crate) fn names_in(t: &Templater, v: &Json) -> Vec<String> {
    match v {
        Json::String(s) => t.referenced_names(s).unwrap_or_default(),
        Json::Array(items) => items.iter().flat_map(|i| names_in(t, i)).collect(),
        Json::Object(map) => map.values().flat_map(|i| names_in(t, i)).collect(),
        _ => vec![],
    }
}

/// A condition written as a template, `{{ job.X == '1' }}`, as GitHub Actions' `if:` allows.
fn is_braced(cond: &str) -> bool {
    let t = cond.trim();
    t.starts_with("{{") && t.ends_with("}}")
}

fn unbraced(cond: &str) -> &str {
    let t = cond.trim();
    t[2..t.len() - 2].trim()
}

struct Scope<'a> {
    vars: &'a HashSet<String>,
    /// Vars that read `job` or `trusted`, directly or through other vars.
    job_vars: &'a HashSet<String>,
    /// Ids of the steps before this one in the same stage.
    steps: &'a [String],
    /// Every step id of the recipe, to suggest one for a misspelled reference.
    all_steps: &'a [&'a str],
    stage: Option<Stage>,
}

fn locate(l: &Document, pointer: &str) -> String {
    match l.spans.value_loc(pointer) {
        Some(loc) => {
            let (line, col) = l.sources.line_col(loc);
            format!("{}:{line}:{col}", l.sources.get(loc.file).name)
        }
        None => pointer.to_string(),
    }
}

fn check_templates(
    t: &Templater,
    l: &Document,
    v: &Json,
    pointer: &str,
    scope: &Scope,
    out: &mut Vec<Problem>,
) {
    match v {
        Json::String(s) => match t.referenced_names(s) {
            Ok(names) => {
                let calls = t.unknown_calls(s);
                check_names(t, l, &not_called(names, &calls), pointer, scope, out);
                unknown_calls(l, pointer, s, calls, out);
            }
            Err(e) => {
                let loc = l
                    .spans
                    .value_loc(pointer)
                    .map(|loc| narrow(l, loc, s, e.range.clone()));
                out.push(Problem::new("template-syntax", e.message, loc));
            }
        },
        Json::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_templates(t, l, item, &format!("{pointer}/{i}"), scope, out);
            }
        }
        Json::Object(map) => {
            for (k, item) in map {
                check_templates(
                    t,
                    l,
                    item,
                    &format!("{pointer}/{}", crate::template::escape_pointer(k)),
                    scope,
                    out,
                );
            }
        }
        _ => {}
    }
}

/// A misspelled function is also an undeclared name; saying it once, as a function, is enough.
fn not_called(names: Vec<String>, calls: &[crate::template::calls::UnknownCall]) -> Vec<String> {
    names
        .into_iter()
        .filter(|n| {
            !calls
                .iter()
                .any(|c| c.kind == CallKind::Function && c.name == *n)
        })
        .collect()
}

/// A filter, test or function the environment lacks fails a job only when a render reaches
/// it; lint names it wherever it is.
fn unknown_calls(
    l: &Document,
    pointer: &str,
    s: &str,
    calls: Vec<crate::template::calls::UnknownCall>,
    out: &mut Vec<Problem>,
) {
    for c in calls {
        let code = match c.kind {
            CallKind::Filter => "unknown-filter",
            CallKind::Test => "unknown-test",
            CallKind::Function => "unknown-function",
        };
        let loc = l
            .spans
            .value_loc(pointer)
            .map(|loc| narrow(l, loc, s, c.range.clone()));
        let p = Problem::new(code, format!("unknown {} `{}`", c.kind.noun(), c.name), loc);
        out.push(match c.suggestion {
            Some(s) => p.with_help(format!("did you mean `{s}`?")),
            None => p.with_help(format!(
                "the {}s a recipe can use are listed in the book's templating chapter",
                c.kind.noun()
            )),
        });
    }
}

/// Point inside a scalar at the template's own range when the scalar is written plainly.
fn narrow(
    l: &Document,
    loc: crate::recipe::source_file::Loc,
    s: &str,
    range: Option<std::ops::Range<usize>>,
) -> crate::recipe::source_file::Loc {
    let text = &l.sources.get(loc.file).text;
    let Some(r) = range else { return loc };
    let raw = &text[loc.start.min(text.len())..loc.end.min(text.len())];
    // Quoted or folded scalars do not map byte for byte; find the value's text instead.
    match raw.find(s) {
        Some(off) => crate::recipe::source_file::Loc {
            file: loc.file,
            start: loc.start + off + r.start,
            end: loc.start + off + r.end,
        },
        None => loc,
    }
}

fn check_names(
    t: &Templater,
    l: &Document,
    names: &[String],
    pointer: &str,
    scope: &Scope,
    out: &mut Vec<Problem>,
) {
    let loc = l.spans.value_loc(pointer);
    for name in names {
        let mut parts = name.split('.');
        let root = parts.next().unwrap_or_default();
        let first = parts.next();
        if t.is_builtin_name(root) {
            continue;
        }
        if !NAMES.contains(&root) {
            let mut p = Problem::new("undefined-name", format!("`{root}` is not defined"), loc);
            p = match crate::recipe::schema_check::did_you_mean(root, NAMES) {
                Some(s) => p.with_help(format!("did you mean `{s}`?")),
                None => p.with_help(format!("templates can read: {}", NAMES.join(", "))),
            };
            out.push(p);
            continue;
        }
        if scope.stage == Some(Stage::Provision) {
            let through = match (root, first) {
                ("job" | "trusted", _) => Some(format!("`{root}`")),
                ("vars", Some(v)) if scope.job_vars.contains(v) => {
                    Some(format!("`vars.{v}`, which depends on the job"))
                }
                _ => None,
            };
            if let Some(through) = through {
                out.push(
                    Problem::new(
                        "job-in-provision",
                        format!("a `provision` step reads {through}"),
                        loc,
                    )
                    .with_help(
                        "provision makes VMs before any job exists (the pool daemon runs it); \
                         read what a job may choose from `pool.<key>`, set by `pool.key`",
                    ),
                );
                continue;
            }
        }
        match (root, first) {
            ("vars", Some(v)) if !scope.vars.contains(v) => {
                let known: Vec<&str> = scope.vars.iter().map(|s| s.as_str()).collect();
                let mut p = Problem::new(
                    "undefined-var",
                    format!("`vars.{v}` is not defined (or only later)"),
                    loc,
                );
                if let Some(s) = crate::recipe::schema_check::did_you_mean(v, known) {
                    p = p.with_help(format!("did you mean `vars.{s}`?"));
                }
                out.push(p);
            }
            ("steps", Some(id)) if !scope.steps.iter().any(|s| s == id) => {
                let where_ = if scope.stage.is_none() {
                    "steps are not available here".to_string()
                } else {
                    format!("no earlier step of this stage has id `{id}`")
                };
                let p = Problem::new("unknown-step-ref", format!("`steps.{id}`: {where_}"), loc);
                let earlier = scope.steps.iter().map(String::as_str);
                let known = scope.all_steps.contains(&id);
                out.push(match crate::recipe::schema_check::did_you_mean(id, earlier) {
                    Some(s) if !known => p.with_help(format!("did you mean `steps.{s}`?")),
                    _ => p.with_help("a step reads outputs of steps before it in the same stage; across stages use `save_state` and `state.<name>`"),
                });
            }
            ("run", _) if scope.stage != Some(Stage::Run) && scope.stage.is_some() => {
                out.push(Problem::new(
                    "run-outside-run",
                    "`run` is only defined in the run stage",
                    loc,
                ));
            }
            _ => {}
        }
    }
}
