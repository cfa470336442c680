//! Validation of a merged recipe against its JSON Schema, turned into problems that point at
//! the exact key or value in the source file.

use std::collections::HashMap;
use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;
use jsonschema::{ValidationError, Validator};
use serde_json::{Map, Value as Json};

use crate::problem::Problem;
use crate::spanned_yaml::SpanMap;

pub struct SchemaCheck {
    /// The recipe schema with steps accepted as any mapping; steps are checked one by one.
    outline: Validator,
    /// The schema `outline` was built from, to name the fields an object may have.
    outline_schema: Json,
    /// One validator per step kind, with its schema: the shared fields plus that kind's
    /// arguments.
    kinds: HashMap<String, (Validator, Json)>,
}

const STEP_LISTS: [&str; 3] = ["/prepare", "/run", "/cleanup"];

impl SchemaCheck {
    pub fn get() -> &'static SchemaCheck {
        static CHECK: OnceLock<SchemaCheck> = OnceLock::new();
        CHECK.get_or_init(Self::build)
    }

    fn build() -> SchemaCheck {
        let schema = crate::schema::recipe_schema();
        let defs = schema["$defs"].clone();
        let step = defs["Step"].clone();
        let mut outline = schema.clone();
        outline["$defs"]["Step"] = serde_json::json!({"type": "object"});
        let outline_schema = outline.clone();
        let outline = jsonschema::validator_for(&outline).expect("the recipe schema compiles");
        let mut kinds = HashMap::new();
        for branch in step["oneOf"].as_array().into_iter().flatten() {
            let Some(kind) = branch["properties"]["kind"]["const"].as_str() else {
                continue;
            };
            // One flat object per kind: inside a failing `oneOf` branch nothing counts as
            // evaluated, and every field would be reported as unknown.
            let mut one = step.clone();
            let obj = one.as_object_mut().expect("a step schema is an object");
            obj.remove("oneOf");
            obj.remove("unevaluatedProperties");
            obj.insert("additionalProperties".into(), Json::Bool(false));
            let mut props = step["properties"].as_object().cloned().unwrap_or_default();
            props.extend(
                branch["properties"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            );
            obj.insert("properties".into(), Json::Object(props));
            let mut required: Vec<Json> = step["required"].as_array().cloned().unwrap_or_default();
            required.extend(branch["required"].as_array().cloned().unwrap_or_default());
            obj.insert("required".into(), Json::Array(required));
            obj.insert("$defs".into(), defs.clone());
            let v = jsonschema::validator_for(&one).expect("a step schema compiles");
            kinds.insert(kind.to_string(), (v, one));
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
        let Some((validator, schema)) = self.kinds.get(kind) else {
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
        let instance = Json::Object(map.clone());
        validator
            .iter_errors(&instance)
            .flat_map(|e| to_problems(&e, at, spans, schema))
            .collect()
    }
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
                match did_you_mean(key, fields.iter().map(|s| s.as_str())) {
                    Some(s) => p.with_help(format!("did you mean `{s}`?")),
                    None if !fields.is_empty() => {
                        p.with_help(format!("known fields: {}", fields.join(", ")))
                    }
                    None => p,
                }
            })
            .collect(),
        ValidationErrorKind::Required { property } => vec![Problem::new(
            "missing-field",
            format!("missing field {property}"),
            spans.value_loc(&path),
        )],
        ValidationErrorKind::AnyOf { context } => {
            // The first branch is the typed one; the second only admits a template string.
            let inner: Vec<Problem> = context
                .first()
                .into_iter()
                .flatten()
                .flat_map(|c| to_problems(c, prefix, spans, schema))
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
        ValidationErrorKind::Type { .. } => vec![
            Problem::new("invalid-type", e.to_string(), spans.value_loc(&path))
                .with_help("a value that is computed can be a template, e.g. \"{{ vars.size }}\""),
        ],
        ValidationErrorKind::Pattern { pattern } if pattern == crate::schema::DURATION_PATTERN => {
            vec![
                Problem::new(
                    "bad-duration",
                    format!("{} is not a duration", e.instance()),
                    spans.value_loc(&path),
                )
                .with_help("write durations like `90s`, `10m` or `1h 30m`"),
            ]
        }
        _ => vec![Problem::new(
            "invalid-value",
            e.to_string(),
            spans.value_loc(&path),
        )],
    }
}
