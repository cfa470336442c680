//! `executor lint` output: a miette report for people, JSON for tools, and GitLab's Code
//! Quality format so that recipe problems show up in merge requests.

use std::path::PathBuf;

use serde_json::json;

use crate::cli::LintFormat;
use executor_driver::recipe::diagnostics;
use executor_driver::recipe::problem::Problems;

pub fn run(files: &[PathBuf], format: LintFormat) -> i32 {
    let results: Vec<Problems> = files
        .iter()
        .map(|f| executor_driver::recipe::lint::lint(std::slice::from_ref(f)))
        .collect();
    let count: usize = results.iter().map(|p| p.list.len()).sum();
    // Warnings are shown but do not fail the check: the recipe runs as written.
    let errors: usize = results
        .iter()
        .map(|p| p.list.iter().filter(|x| x.is_error()).count())
        .sum();
    match format {
        LintFormat::Human => {
            for problems in &results {
                print!(
                    "{}",
                    diagnostics::render(problems, diagnostics::use_color())
                );
            }
            if count == 0 {
                eprintln!("{} file(s) checked, no problems", files.len());
            } else {
                let warnings = count - errors;
                eprintln!(
                    "{count} problem(s) in {} file(s){}",
                    results.iter().filter(|p| !p.list.is_empty()).count(),
                    if warnings > 0 {
                        format!(": {errors} error(s), {warnings} warning(s)")
                    } else {
                        String::new()
                    }
                );
            }
        }
        LintFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json_report(&results)).unwrap_or_default()
        ),
        LintFormat::Gitlab => println!(
            "{}",
            serde_json::to_string_pretty(&gitlab_report(&results)).unwrap_or_default()
        ),
    }
    i32::from(errors > 0)
}

struct Entry {
    file: String,
    line: usize,
    column: usize,
    code: &'static str,
    message: String,
    help: Option<String>,
    warning: bool,
    /// (file, line, column, message) of each related place.
    related: Vec<serde_json::Value>,
}

fn entries(results: &[Problems]) -> Vec<Entry> {
    results
        .iter()
        .flat_map(|problems| {
            problems.list.iter().map(move |p| {
                let (file, line, column) = match p.loc {
                    Some(loc) => {
                        let (l, c) = problems.sources.line_col(loc);
                        (problems.sources.get(loc.file).name.clone(), l, c)
                    }
                    None => (
                        problems
                            .sources
                            .files
                            .first()
                            .map(|f| f.name.clone())
                            .unwrap_or_default(),
                        1,
                        1,
                    ),
                };
                Entry {
                    file,
                    line,
                    column,
                    code: p.code,
                    message: p.message.clone(),
                    help: p.help.clone(),
                    warning: !p.is_error(),
                    related: p
                        .related
                        .iter()
                        .map(|r| {
                            let (line, column) = problems.sources.line_col(r.loc);
                            json!({
                                "file": problems.sources.get(r.loc.file).name,
                                "line": line,
                                "column": column,
                                "message": r.message,
                            })
                        })
                        .collect(),
                }
            })
        })
        .collect()
}

pub fn json_report(results: &[Problems]) -> serde_json::Value {
    json!(entries(results)
        .into_iter()
        .map(|e| json!({"file": e.file, "line": e.line, "column": e.column, "code": e.code, "message": e.message, "help": e.help, "severity": if e.warning { "warning" } else { "error" }, "related": e.related}))
        .collect::<Vec<_>>())
}

/// GitLab Code Quality report entries (a JSON array of issues).
pub fn gitlab_report(results: &[Problems]) -> serde_json::Value {
    json!(entries(results)
        .into_iter()
        .map(|e| {
            let description = match &e.help {
                Some(h) => format!("{} ({h})", e.message),
                None => e.message.clone(),
            };
            json!({
                "description": description,
                "check_name": e.code,
                "fingerprint": fingerprint(&format!("{}|{}|{}|{}", e.file, e.line, e.code, e.message)),
                "severity": if e.warning { "minor" } else { "major" },
                "location": {"path": e.file, "lines": {"begin": e.line}},
            })
        })
        .collect::<Vec<_>>())
}

/// A stable id per problem, so GitLab can tell new problems from old ones across pipelines.
fn fingerprint(s: &str) -> String {
    let fnv = |seed: u64| {
        s.bytes()
            .fold(seed, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3))
    };
    format!(
        "{:016x}{:016x}",
        fnv(0xcbf29ce484222325),
        fnv(0x84222325cbf29ce4)
    )
}
