//! Lint's taint check (issue 14, item 5). A pipeline sets its job's variables (`job.*`), so a
//! recipe that passes one to a cloud request or a shell hands that choice to whoever can push to
//! the project. The check follows `job.*` through `vars`, `set_vars` and `save_state` (read back
//! as `state.*`) into the fields where it matters, and warns where it arrives without the guard
//! that fits:
//!
//! - what the server is made of (image, flavor, networks, security groups, boot volume, and the
//!   `allowed_*` lists that guard them): only an allow-list, `job_override(...)`, makes a job's
//!   value safe there; quoting does not change which image boots;
//! - a shell command, or user data (cloud-init runs it as root): `job_override(...)` or
//!   `| shell_quote`;
//! - a file of the runner host that a step reads: only `job_override(...)`.
//!
//! A warning, not an error: the recipe still runs, and a site may mean it (a test cloud whose
//! pipelines pick anything). The warning points at the read inside the template.

use std::collections::HashMap;

use serde_json::Value as Json;

use crate::recipe::loader::Document;
use crate::recipe::problem::Problem;
use crate::recipe::source_file::Loc;
use crate::template::flow::{Reach, Treatment, reaching};
use executor_foundation::stage::Stage;

/// Where a job's value is dangerous, and which guard makes it safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sink {
    /// Chooses what the cloud makes: only an allow-list helps.
    Choice,
    /// Run by a shell: an allow-list or quoting helps.
    Shell,
    /// Names a file of the runner host that the step reads and sends on.
    LocalFile,
}

/// (step kind, field, sink). A field holding a list or a mapping is a sink as a whole.
const SINKS: &[(&str, &str, Sink)] = &[
    ("create_server", "image", Sink::Choice),
    ("create_server", "flavor", Sink::Choice),
    ("create_server", "networks", Sink::Choice),
    ("create_server", "security_groups", Sink::Choice),
    ("create_server", "boot_volume", Sink::Choice),
    ("create_server", "allowed_images", Sink::Choice),
    ("create_server", "allowed_flavors", Sink::Choice),
    ("create_server", "allowed_networks", Sink::Choice),
    ("create_server", "user_data", Sink::Shell),
    ("ssh_command", "command", Sink::Shell),
    ("ssh_probe", "readiness_command", Sink::Shell),
    ("ssh_run_script", "script", Sink::LocalFile),
    ("ssh_upload", "source", Sink::LocalFile),
];

/// A job variable that a name carries, and whether it was quoted for a shell on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    job: String,
    shell_safe: bool,
}

/// What each `vars.X` or `state.X` carries from the job.
#[derive(Default)]
struct Carried(HashMap<String, Vec<Origin>>);

impl Carried {
    /// The job variables one read brings along.
    fn origins(&self, reach: &Reach) -> Vec<Origin> {
        let mut parts = reach.path.split('.');
        let (root, name) = (parts.next().unwrap_or_default(), parts.next());
        let through = |o: &Origin| Origin {
            job: o.job.clone(),
            shell_safe: match reach.treatment {
                Treatment::Unchanged => o.shell_safe,
                Treatment::ShellSafe => true,
                Treatment::Rewritten => false,
            },
        };
        match (root, name) {
            ("job", _) => vec![Origin {
                job: reach.path.clone(),
                shell_safe: reach.treatment == Treatment::ShellSafe,
            }],
            ("vars" | "state", Some(name)) => self
                .0
                .get(&format!("{root}.{name}"))
                .map(|v| v.iter().map(through).collect())
                .unwrap_or_default(),
            // The whole map at once (`vars | tojson`).
            ("vars" | "state", None) => self
                .0
                .iter()
                .filter(|(k, _)| k.starts_with(root))
                .flat_map(|(_, v)| v.iter().map(through))
                .collect(),
            _ => vec![],
        }
    }

    /// Everything a value carries from the job, through all its strings.
    fn of_value(&self, v: &Json) -> Vec<Origin> {
        let mut out = vec![];
        strings(v, "", &mut |_, s| {
            for reach in reaching(s) {
                out.extend(self.origins(&reach));
            }
        });
        out.dedup();
        out
    }

    fn set(&mut self, name: String, origins: Vec<Origin>) {
        if origins.is_empty() {
            self.0.remove(&name);
        } else {
            self.0.insert(name, origins);
        }
    }
}

/// Every string inside a value, with its JSON pointer below the value.
fn strings(v: &Json, pointer: &str, f: &mut dyn FnMut(&str, &str)) {
    match v {
        Json::String(s) => f(pointer, s),
        Json::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                strings(item, &format!("{pointer}/{i}"), f);
            }
        }
        Json::Object(map) => {
            for (k, item) in map {
                let p = format!("{pointer}/{}", crate::template::escape_pointer(k));
                strings(item, &p, f);
            }
        }
        _ => {}
    }
}

/// The warnings of one merged recipe document.
pub fn check(doc: &Document) -> Vec<Problem> {
    let mut carried = Carried::default();
    if let Some(vars) = doc.json.get("vars").and_then(|v| v.as_object()) {
        for (name, raw) in vars {
            let origins = carried.of_value(raw);
            carried.set(format!("vars.{name}"), origins);
        }
    }
    let mut problems = vec![];
    // `provision` runs before any job exists: lint already refuses `job` there
    // (`job-in-provision`), and saying it twice helps nobody.
    for stage in Stage::WITH_STEPS
        .into_iter()
        .filter(|s| *s != Stage::Provision)
    {
        let Some(steps) = doc.json.get(stage.name()).and_then(|s| s.as_array()) else {
            continue;
        };
        // `set_vars` speaks for the later steps of its own stage only.
        let vars_before = carried.0.clone();
        for (index, step) in steps.iter().enumerate() {
            let Some(step) = step.as_object() else {
                continue;
            };
            let kind = step
                .get("kind")
                .and_then(|k| k.as_str())
                .unwrap_or_default();
            for (_, field, sink) in SINKS.iter().filter(|(k, _, _)| *k == kind) {
                if let Some(value) = step.get(*field) {
                    let at = format!("/{}/{index}/{field}", stage.name());
                    warn_at(doc, &carried, value, &at, kind, field, *sink, &mut problems);
                }
            }
            let values = step.get("values").and_then(|v| v.as_object());
            match (kind, values) {
                ("set_vars", Some(values)) => {
                    for (name, raw) in values {
                        let origins = carried.of_value(raw);
                        carried.set(format!("vars.{name}"), origins);
                    }
                }
                ("save_state", Some(values)) => {
                    for (name, raw) in values {
                        let origins = carried.of_value(raw);
                        carried.set(format!("state.{name}"), origins);
                    }
                }
                _ => {}
            }
        }
        let state: Vec<(String, Vec<Origin>)> = carried
            .0
            .iter()
            .filter(|(k, _)| k.starts_with("state."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        carried.0 = vars_before;
        carried.0.extend(state);
    }
    problems
}

#[allow(clippy::too_many_arguments)]
fn warn_at(
    doc: &Document,
    carried: &Carried,
    value: &Json,
    at: &str,
    kind: &str,
    field: &str,
    sink: Sink,
    out: &mut Vec<Problem>,
) {
    strings(value, "", &mut |below, s| {
        let pointer = format!("{at}{below}");
        let mut seen: Vec<(std::ops::Range<usize>, String)> = vec![];
        for reach in reaching(s) {
            for origin in carried.origins(&reach) {
                let unsafe_here = match sink {
                    Sink::Choice | Sink::LocalFile => true,
                    Sink::Shell => !origin.shell_safe,
                };
                let key = (reach.range.clone(), origin.job.clone());
                if !unsafe_here || seen.contains(&key) {
                    continue;
                }
                seen.push(key);
                let loc = doc
                    .spans
                    .value_loc(&pointer)
                    .map(|loc| narrow(doc, loc, s, reach.range.clone()));
                out.push(warning(&reach, &origin, kind, field, sink, loc));
            }
        }
    });
}

fn warning(
    reach: &Reach,
    origin: &Origin,
    kind: &str,
    field: &str,
    sink: Sink,
    loc: Option<Loc>,
) -> Problem {
    let job = &origin.job;
    let what = if reach.path == *job {
        format!("`{job}`, which the pipeline sets,")
    } else {
        format!(
            "`{}` carries `{job}`, which the pipeline sets, and",
            reach.path
        )
    };
    let allow_list = format!(
        "`job_override({job} | default(''), <the runner's default>, allowed=<the runner's list>)`"
    );
    let (message, help) = match sink {
        Sink::Choice => (
            format!("{what} reaches `{field}` of `{kind}` without an allow-list"),
            format!(
                "a job may choose what the cloud makes only from the runner's list: use {allow_list}"
            ),
        ),
        Sink::Shell => (
            format!(
                "{what} reaches the {} of `{kind}` unquoted",
                if field == "user_data" {
                    "user data (run by cloud-init as root)".to_string()
                } else {
                    format!("shell command `{field}`")
                }
            ),
            format!(
                "quote it with `| shell_quote`, or let the job choose from a list with {allow_list}"
            ),
        ),
        Sink::LocalFile => (
            format!("{what} names the runner-host file that `{kind}` reads (`{field}`)"),
            format!("a job must not pick files of the runner host: use {allow_list}"),
        ),
    };
    Problem::new("job-value-unchecked", message, loc)
        .with_help(help)
        .warning()
}

/// The read's own place inside the scalar. The scalar's text is found line by line in the
/// file, so that a block scalar (`|`), whose lines the file indents, still points at the read;
/// the whole scalar when a line is not there as written (escapes, folding).
fn narrow(doc: &Document, loc: Loc, s: &str, range: std::ops::Range<usize>) -> Loc {
    let text = &doc.sources.get(loc.file).text;
    let raw = &text[loc.start.min(text.len())..loc.end.min(text.len())];
    let target = s[..range.start].matches('\n').count();
    let mut line_start = 0;
    let mut cursor = 0;
    for (i, line) in s.split('\n').enumerate() {
        let Some(found) = raw[cursor..].find(line) else {
            return loc;
        };
        let at = cursor + found;
        if i == target {
            let start = loc.start + at + (range.start - line_start);
            return Loc {
                file: loc.file,
                start,
                end: (start + range.len()).min(loc.end),
            };
        }
        cursor = at + line.len();
        line_start += line.len() + 1;
    }
    loc
}
