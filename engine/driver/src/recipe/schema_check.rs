//! Validation of a merged recipe against its JSON Schema, turned into problems that point at
//! the exact key or value in the source file.

use std::collections::HashMap;
use std::sync::OnceLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::types::JsonType as PrimitiveType;
use jsonschema::{ValidationError, Validator};
use serde_json::{Map, Value as Json};

use crate::recipe::habits::{self, Place};
use crate::recipe::problem::Problem;
use crate::recipe::spanned_yaml::SpanMap;

pub struct SchemaCheck {
    /// The recipe schema with steps accepted as any mapping; steps are checked one by one.
    outline: Validator,
    /// The schema `outline` was built from, to name the fields an object may have.
    outline_schema: Json,
    /// One schema per step kind: the shared fields plus that kind's arguments.
    kinds: HashMap<String, KindCheck>,
}

/// A step kind's schema, compiled on first use: every stage process validates its recipe, and
/// compiling all kinds' validators was most of a `run` sub-stage's CPU time.
struct KindCheck {
    schema: Json,
    validator: OnceLock<Validator>,
}

const STEP_LISTS: [&str; 4] = ["/provision", "/prepare", "/run", "/cleanup"];

impl SchemaCheck {
    pub fn get() -> &'static SchemaCheck {
        static CHECK: OnceLock<SchemaCheck> = OnceLock::new();
        CHECK.get_or_init(Self::build)
    }

    fn build() -> SchemaCheck {
        let mut schema = crate::recipe::schema::recipe_schema();
        patterns_to_formats(&mut schema);
        // Taken apart rather than cloned: this runs at the start of every stage process.
        let mut defs = match schema["$defs"].take() {
            Json::Object(m) => m,
            _ => Map::new(),
        };
        let mut step = match defs.remove("Step") {
            Some(Json::Object(m)) => m,
            _ => Map::new(),
        };
        defs.insert("Step".into(), serde_json::json!({"type": "object"}));
        let mut outline_schema = schema;
        keep_used_defs(&mut outline_schema, &defs);
        let outline = compile(&outline_schema);

        let branches = match step.remove("oneOf") {
            Some(Json::Array(b)) => b,
            _ => vec![],
        };
        step.remove("unevaluatedProperties");
        step.insert("additionalProperties".into(), Json::Bool(false));
        let mut kinds = HashMap::new();
        for mut branch in branches {
            let Some(kind) = branch["properties"]["kind"]["const"]
                .as_str()
                .map(String::from)
            else {
                continue;
            };
            // One flat object per kind: inside a failing `oneOf` branch nothing counts as
            // evaluated, and every field would be reported as unknown.
            let mut one = step.clone();
            let mut props = one
                .remove("properties")
                .and_then(|p| match p {
                    Json::Object(m) => Some(m),
                    _ => None,
                })
                .unwrap_or_default();
            if let Json::Object(own) = branch["properties"].take() {
                props.extend(own);
            }
            one.insert("properties".into(), Json::Object(props));
            let mut required = match one.remove("required") {
                Some(Json::Array(r)) => r,
                _ => vec![],
            };
            if let Json::Array(own) = branch["required"].take() {
                required.extend(own);
            }
            one.insert("required".into(), Json::Array(required));
            let mut one = Json::Object(one);
            keep_used_defs(&mut one, &defs);
            kinds.insert(
                kind,
                KindCheck {
                    schema: one,
                    validator: OnceLock::new(),
                },
            );
        }
        SchemaCheck {
            outline,
            outline_schema,
            kinds,
        }
    }

    pub fn kinds(&self) -> Vec<&str> {
        let mut k: Vec<&str> = self.kinds.keys().map(|s| s.as_str()).collect();
        k.sort();
        k
    }

    pub fn check_recipe(&self, json: &Json, spans: &SpanMap) -> Vec<Problem> {
        let mut problems = vec![];
        for e in self.outline.iter_errors(json) {
            problems.extend(to_problems(&e, "", spans, &self.outline_schema));
        }
        for list in STEP_LISTS {
            self.check_steps(json, list, spans, &mut problems);
        }
        if let Some(inserts) = json.get("insert").and_then(|i| i.as_array()) {
            for i in 0..inserts.len() {
                self.check_steps(json, &format!("/insert/{i}/steps"), spans, &mut problems);
            }
        }
        problems.sort_by_key(|p| p.loc.map(|l| (l.file, l.start)));
        problems.dedup();
        problems
    }

    fn check_steps(&self, json: &Json, list: &str, spans: &SpanMap, out: &mut Vec<Problem>) {
        let Some(steps) = json.pointer(list).and_then(|s| s.as_array()) else {
            return;
        };
        for (i, step) in steps.iter().enumerate() {
            let at = format!("{list}/{i}");
            let Some(map) = step.as_object() else {
                continue; // the outline already reported a non-mapping step
            };
            out.extend(self.check_step(map, &at, spans));
        }
    }

    /// Check one step's mapping, found at JSON pointer `at`.
    pub fn check_step(&self, map: &Map<String, Json>, at: &str, spans: &SpanMap) -> Vec<Problem> {
        let kind = match map.get("kind") {
            Some(Json::String(k)) => k,
            Some(_) => {
                return vec![Problem::new(
                    "invalid-type",
                    "`kind` must be a string",
                    spans.value_loc(&format!("{at}/kind")),
                )];
            }
            None => {
                return vec![
                    Problem::new(
                        "missing-field",
                        "this step has no `kind`",
                        spans.value_loc(at),
                    )
                    .with_help(format!("step kinds: {}", self.kinds().join(", "))),
                ];
            }
        };
        let Some(check) = self.kinds.get(kind) else {
            let mut p = Problem::new(
                "unknown-step-kind",
                format!("unknown step kind `{kind}`"),
                spans.value_loc(&format!("{at}/kind")),
            );
            p = match did_you_mean(kind, self.kinds()) {
                Some(s) => p.with_help(format!("did you mean `{s}`?")),
                None => p.with_help(format!("step kinds: {}", self.kinds().join(", "))),
            };
            return vec![p];
        };
        let validator = check.validator.get_or_init(|| compile(&check.schema));
        let instance = Json::Object(map.clone());
        validator
            .iter_errors(&instance)
            .flat_map(|e| to_problems(&e, at, spans, &check.schema))
            .collect()
    }
}

const DURATION_FORMAT: &str = "executor-duration";
const LITERAL_DURATION_FORMAT: &str = "executor-literal-duration";
const TEMPLATE_FORMAT: &str = "executor-template";

fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

/// What `DURATION_PATTERN` says, by the parser that reads durations after rendering.
fn is_duration(s: &str) -> bool {
    is_template(s) || executor_foundation::durations::parse(s).is_ok()
}

fn is_literal_duration(s: &str) -> bool {
    executor_foundation::durations::parse(s).is_ok()
}

/// The published schema's patterns, for editors, checked here as formats instead: every
/// validator compiled its own copies of the regexes, a third of each stage process's start.
fn patterns_to_formats(v: &mut Json) {
    match v {
        Json::Object(m) => {
            let format = match m.get("pattern").and_then(Json::as_str) {
                Some(executor_foundation::durations::DURATION_PATTERN) => Some(DURATION_FORMAT),
                Some(executor_foundation::durations::LITERAL_DURATION_PATTERN) => {
                    Some(LITERAL_DURATION_FORMAT)
                }
                Some(crate::recipe::schema::TEMPLATE_PATTERN) => Some(TEMPLATE_FORMAT),
                _ => None,
            };
            if let Some(f) = format {
                m.remove("pattern");
                m.insert("format".into(), Json::String(f.into()));
            }
            m.values_mut().for_each(patterns_to_formats);
        }
        Json::Array(items) => items.iter_mut().for_each(patterns_to_formats),
        _ => {}
    }
}

fn compile(schema: &Json) -> Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .with_format(DURATION_FORMAT, is_duration)
        .with_format(LITERAL_DURATION_FORMAT, is_literal_duration)
        .with_format(TEMPLATE_FORMAT, is_template)
        .build(schema)
        .expect("the recipe schema compiles")
}

/// The `$defs` names `v` refers to, outside its own `$defs`.
fn refs_in(v: &Json, out: &mut Vec<String>) {
    match v {
        Json::Object(m) => {
            if let Some(name) = m
                .get("$ref")
                .and_then(Json::as_str)
                .and_then(|r| r.strip_prefix("#/$defs/"))
            {
                out.push(name.to_string());
            }
            for (k, child) in m {
                if k != "$defs" {
                    refs_in(child, out);
                }
            }
        }
        Json::Array(items) => items.iter().for_each(|i| refs_in(i, out)),
        _ => {}
    }
}

/// Keeps in `doc` only the definitions it uses, directly or through other definitions: a
/// validator compiles (and checks) every definition it is given.
fn keep_used_defs(doc: &mut Json, defs: &Map<String, Json>) {
    let mut todo = vec![];
    refs_in(doc, &mut todo);
    let mut kept = Map::new();
    while let Some(name) = todo.pop() {
        if kept.contains_key(&name) {
            continue;
        }
        if let Some(def) = defs.get(&name) {
            refs_in(def, &mut todo);
            kept.insert(name, def.clone());
        }
    }
    doc["$defs"] = Json::Object(kept);
}

pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    // Transpositions ("lgo") and small typos ("mesage") are the common cases.
    candidates
        .into_iter()
        .map(|c| (strsim::osa_distance(word, c), c))
        .filter(|(d, c)| *d <= 2 && *d < c.len().max(word.len()) / 2 + 1)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `node` with its `$ref`s followed and its `anyOf`/`oneOf`/`allOf` spread out.
fn branches<'a>(root: &'a Json, node: &'a Json) -> Vec<&'a Json> {
    let mut node = node;
    while let Some(target) = node["$ref"].as_str() {
        match target.strip_prefix('#').and_then(|p| root.pointer(p)) {
            Some(n) => node = n,
            None => return vec![],
        }
    }
    let mut out = vec![node];
    for key in ["anyOf", "oneOf", "allOf"] {
        for b in node[key].as_array().into_iter().flatten() {
            out.extend(branches(root, b));
        }
    }
    out
}

/// The fields the schema `root` allows on the object at instance pointer `path`, so that an
/// unknown key in `cloud:` or in a step's `retry:` is compared with its own siblings.
fn known_fields(root: &Json, path: &str) -> Vec<String> {
    let mut node = root;
    for raw in path.split('/').skip(1) {
        let seg = raw.replace("~1", "/").replace("~0", "~");
        let next = branches(root, node).into_iter().find_map(|b| {
            b["properties"].get(&seg).or_else(|| {
                let indexed = seg.parse::<usize>().is_ok();
                b.get("items")
                    .filter(|_| indexed)
                    .or_else(|| b.get("additionalProperties").filter(|a| a.is_object()))
            })
        });
        match next {
            Some(n) => node = n,
            None => return vec![],
        }
    }
    branches(root, node)
        .into_iter()
        .find_map(|b| b["properties"].as_object())
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

fn to_problems(
    e: &ValidationError<'_>,
    prefix: &str,
    spans: &SpanMap,
    schema: &Json,
) -> Vec<Problem> {
    let path = format!("{prefix}{}", e.instance_path().as_str());
    match e.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected }
        | ValidationErrorKind::UnevaluatedProperties { unexpected } => unexpected
            .iter()
            .map(|key| {
                let fields = known_fields(schema, e.instance_path().as_str());
                let at = format!("{path}/{}", crate::template::escape_pointer(key));
                let p = Problem::new(
                    "unknown-field",
                    format!("unknown field `{key}`"),
                    spans.key_loc(&at),
                );
                let place = match (prefix, e.instance_path().as_str()) {
                    ("", "") => Some(Place::Top),
                    (_, "") => Some(Place::Step),
                    _ => None,
                };
                if let Some(advice) = place.and_then(|place| habits::advice(place, key)) {
                    return p.with_help(advice);
                }
                // A field of the base that a patch's new `kind` does not have.
                if let Some(at) = spans.patched.get(&path)
                    && p.loc.is_some_and(|l| l.file != at.file)
                {
                    let base = p.loc;
                    return Problem { loc: Some(*at), ..p }
                        .with_help(format!(
                            "the patch changes the step's kind; `{key}: null` in the patch deletes the field"
                        ))
                        .with_related(base, format!("`{key}` is in the base recipe's step"));
                }
                match did_you_mean(key, fields.iter().map(|s| s.as_str())) {
                    Some(s) => p.with_help(format!("did you mean `{s}`?")),
                    None if !fields.is_empty() => {
                        p.with_help(format!("known fields: {}", fields.join(", ")))
                    }
                    None => p,
                }
            })
            .collect(),
        ValidationErrorKind::Required { property } => {
            // A step's `kind` is what asks for the field; the step's own span would run on
            // to the next step.
            let at = spans
                .values
                .get(&format!("{path}/kind"))
                .copied()
                .or_else(|| spans.value_loc(&path));
            let p = Problem::new("missing-field", format!("missing field {property}"), at);
            vec![blame_the_patch(p, &path, spans)]
        }
        ValidationErrorKind::AnyOf { context } => {
            // The first branch is the typed one. Only a field whose other branch admits a
            // template string may be computed; `retry` is an `anyOf` of a mapping and null.
            let templatable = template_allowed_at(schema, e.instance_path().as_str());
            let inner: Vec<Problem> = context
                .first()
                .into_iter()
                .flatten()
                .flat_map(|c| to_problems(c, prefix, spans, schema))
                .map(|p| match p.code {
                    "invalid-type" if templatable => p.with_help(
                        "a value that is computed can be a template, e.g. \"{{ vars.size }}\"",
                    ),
                    _ => p,
                })
                .collect();
            if inner.is_empty() {
                vec![Problem::new(
                    "invalid-value",
                    e.to_string(),
                    spans.value_loc(&path),
                )]
            } else {
                inner
            }
        }
        ValidationErrorKind::OneOfNotValid { context } => {
            // schemars writes documented string enums as a oneOf of constants.
            let options: Vec<String> = context
                .iter()
                .flatten()
                .filter_map(|c| match c.kind() {
                    ValidationErrorKind::Constant { expected_value } => {
                        expected_value.as_str().map(String::from)
                    }
                    _ => None,
                })
                .collect();
            if options.is_empty() {
                return vec![Problem::new(
                    "invalid-value",
                    e.to_string(),
                    spans.value_loc(&path),
                )];
            }
            let given = e
                .instance()
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| e.instance().to_string());
            let p = Problem::new(
                "invalid-value",
                format!("`{given}` is not one of: {}", options.join(", ")),
                spans.value_loc(&path),
            );
            vec![
                match did_you_mean(&given, options.iter().map(|s| s.as_str())) {
                    Some(s) => p.with_help(format!("did you mean `{s}`?")),
                    None => p,
                },
            ]
        }
        ValidationErrorKind::Type { .. } => {
            let field = field_name(&path);
            let loc = spans.value_loc(&path);
            let formats = formats_at(schema, e.instance_path().as_str());
            if formats.iter().any(|f| f.contains("duration")) {
                let why = match e.instance().as_ref() {
                    Json::Number(_) => ": a number has no unit",
                    _ => "",
                };
                return vec![
                    Problem::new(
                        "bad-duration",
                        format!("{} is not a duration{why}", e.instance()),
                        loc,
                    )
                    .with_help(executor_foundation::durations::DURATION_HELP),
                ];
            }
            // Only the typed branch of a templatable field gets here through `AnyOf`, which
            // adds the template hint; a field that is read before rendering has no such branch.
            match e.instance().as_str() {
                Some(text) if is_template(text) => vec![literal_only(&field, loc, false)],
                _ => vec![Problem::new(
                    "invalid-type",
                    format!("{} is not {}", e.instance(), expected(e)),
                    loc,
                )],
            }
        }
        ValidationErrorKind::Format { format }
            if format == LITERAL_DURATION_FORMAT
                && e.instance().as_str().is_some_and(is_template) =>
        {
            vec![literal_only(
                &field_name(&path),
                spans.value_loc(&path),
                true,
            )]
        }
        ValidationErrorKind::Format { format }
            if format == DURATION_FORMAT || format == LITERAL_DURATION_FORMAT =>
        {
            let text = e.instance().as_str().unwrap_or_default();
            let why = match executor_foundation::durations::parse(text) {
                Err(why) => format!(": {why}"),
                Ok(_) => String::new(),
            };
            vec![
                Problem::new(
                    "bad-duration",
                    format!("{} is not a duration{why}", e.instance()),
                    spans.value_loc(&path),
                )
                .with_help(executor_foundation::durations::DURATION_HELP),
            ]
        }
        _ => vec![Problem::new(
            "invalid-value",
            e.to_string(),
            spans.value_loc(&path),
        )],
    }
}

/// What a `type` error wanted, in words: "an integer", "a list or a mapping". `null` is left
/// out where other types are allowed: it only means the field may be left empty.
fn expected(e: &ValidationError<'_>) -> String {
    let ValidationErrorKind::Type { kind } = e.kind() else {
        return "of the right type".into();
    };
    let types: Vec<PrimitiveType> = match kind {
        TypeKind::Single(t) => vec![*t],
        TypeKind::Multiple(ts) => ts.into_iter().collect(),
    };
    let mut words: Vec<&str> = types
        .iter()
        .filter(|t| types.len() == 1 || !matches!(t, PrimitiveType::Null))
        .map(|t| match t {
            PrimitiveType::Array => "a list",
            PrimitiveType::Boolean => "a boolean (true or false)",
            PrimitiveType::Integer => "an integer",
            PrimitiveType::Null => "empty",
            PrimitiveType::Number => "a number",
            PrimitiveType::Object => "a mapping",
            PrimitiveType::String => "a string",
        })
        .collect();
    words.dedup();
    match words.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => "of the right type".into(),
    }
}

/// A problem in a step that an override's `patch` changed is the patch's doing when it is
/// about the step as a whole (a required field the patch deleted, a kind it changed): it is
/// reported at the patch, with the step as the base has it beside it.
fn blame_the_patch(p: Problem, path: &str, spans: &SpanMap) -> Problem {
    match spans.patched.get(path) {
        Some(at) if Some(at.file) != p.loc.map(|l| l.file) => {
            // The step's id stands for the step: a mapping's span runs on to the next step.
            let base = spans
                .keys
                .get(&format!("{path}/id"))
                .copied()
                .filter(|id| Some(id.file) != Some(at.file))
                .or(p.loc);
            Problem {
                loc: Some(*at),
                ..p
            }
            .with_help("the patch deletes or changes what the step needs")
            .with_related(base, "the step, as the base recipe has it")
        }
        _ => p,
    }
}

/// Whether the schema lets the value at instance pointer `path` be a template string.
fn template_allowed_at(root: &Json, path: &str) -> bool {
    formats_at(root, path).iter().any(|f| f == TEMPLATE_FORMAT)
}

/// The last segment of a JSON pointer, `timeout` for `/prepare/0/timeout`.
fn field_name(path: &str) -> String {
    let last = path.rsplit('/').next().unwrap_or_default();
    last.replace("~1", "/").replace("~0", "~")
}

/// A template in a field the interpreter reads before it renders anything.
fn literal_only(
    field: &str,
    loc: Option<crate::recipe::source_file::Loc>,
    duration: bool,
) -> Problem {
    let write = if duration {
        "write a fixed duration such as `600s` or `10m`"
    } else {
        "write a fixed value"
    };
    Problem::new(
        "template-not-allowed",
        format!("`{field}` cannot be a template"),
        loc,
    )
    .with_help(format!(
        "this field is read when the recipe is loaded, before anything is rendered; {write}"
    ))
}

/// The `format`s the schema gives the value at instance pointer `path`, through `$ref`s and
/// `anyOf`s.
fn formats_at(root: &Json, path: &str) -> Vec<String> {
    let mut nodes = vec![root];
    for raw in path.split('/').skip(1) {
        let seg = raw.replace("~1", "/").replace("~0", "~");
        let indexed = seg.parse::<usize>().is_ok();
        nodes = nodes
            .into_iter()
            .flat_map(|n| branches(root, n))
            .filter_map(|b| {
                b["properties"].get(&seg).or_else(|| {
                    b.get("items")
                        .filter(|_| indexed)
                        .or_else(|| b.get("additionalProperties").filter(|a| a.is_object()))
                })
            })
            .collect();
    }
    nodes
        .into_iter()
        .flat_map(|n| branches(root, n))
        .filter_map(|b| b["format"].as_str().map(String::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_what_the_runtime_parser_reads_or_templates() {
        for ok in [
            "90s",
            " 10m ",
            "1h 30m",
            "1h30m",
            "250ms",
            "{{ vars.t }}",
            "{{ env.T }}s",
        ] {
            assert!(is_duration(ok), "{ok}");
        }
        for bad in ["", "10", "ten minutes", "5 parsecs", "-1s", "2M", "1.5h"] {
            assert!(!is_duration(bad), "{bad}");
        }
    }

    #[test]
    fn the_published_pattern_agrees_with_the_parser() {
        let pattern = jsonschema::validator_for(&serde_json::json!({
            "type": "string",
            "pattern": executor_foundation::durations::DURATION_PATTERN,
        }))
        .unwrap();
        for text in [
            "90s",
            " 10m ",
            "1h 30m",
            "1h30m",
            "250ms",
            "2 minutes",
            "1d",
            "2M",
            "600",
            "",
            "1.5h",
            "3y",
            "5 parsecs",
            "-1s",
            "10 M",
            "1w",
            "1hr 2mins",
            "10mo",
            "2h 2H",
        ] {
            let by_parser = executor_foundation::durations::parse(text).is_ok();
            assert_eq!(
                pattern.is_valid(&serde_json::json!(text)),
                by_parser,
                "{text:?}"
            );
        }
    }

    #[test]
    fn step_kinds_carry_only_the_definitions_they_use() {
        let check = SchemaCheck::get();
        let log = &check.kinds["log"].schema;
        assert!(log["$defs"].get("BootVolume").is_none(), "{log}");
        let create = &check.kinds["create_server"].schema;
        assert!(create["$defs"].get("BootVolume").is_some());
        assert!(check.outline_schema["$defs"].get("CloudSettings").is_some());
    }
}
