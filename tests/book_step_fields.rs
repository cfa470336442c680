//! Every step field the book's reference lists can be set from a recipe (issue 15). The
//! reference is generated from the schema, but the schema and the types that run a step were
//! once able to disagree: `server_address` documented an address policy under `kind`, the
//! key that names the step's kind, so no recipe could ever set it.
//!
//! For each field of each kind in `book/src/reference/steps.md`, a step with the kind's
//! required fields and that field set to a sample value drawn from its schema must:
//! - pass the recipe schema inside a recipe (what `executor lint` checks), and
//! - become the step's type with the field holding a value (what a stage runs).

use serde_json::{Map, Value as Json, json};

use executor_driver::recipe::loader;
use executor_driver::recipe::spanned_yaml::SpanMap;
use executor_driver::steps::StepKind;

const PAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/book/src/reference/steps.md");

/// (kind, field) rows of the reference's step-kind tables, in page order.
fn reference_fields(page: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    let mut kind: Option<String> = None;
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("### `") {
            kind = rest
                .split_once('`')
                .filter(|(_, tail)| tail.contains("{#kind-"))
                .map(|(k, _)| k.to_string());
        } else if line.starts_with("## ") || line.starts_with("### ") {
            kind = None;
        } else if let (Some(k), Some(row)) = (&kind, line.strip_prefix("| `"))
            && let Some((field, _)) = row.split_once('`')
        {
            out.push((k.clone(), field.to_string()));
        }
    }
    out
}

/// A value the schema `s` accepts, preferring a plain one over a template.
fn sample(s: &Json, defs: &Map<String, Json>) -> Json {
    if let Some(r) = s.get("$ref").and_then(Json::as_str) {
        let name = r.trim_start_matches("#/$defs/");
        if name == "Template" {
            return json!("{{ 'x' }}");
        }
        return sample(&defs[name], defs);
    }
    for alternatives in ["anyOf", "oneOf"] {
        if let Some(list) = s.get(alternatives).and_then(Json::as_array) {
            let plain = list.iter().find(|o| {
                o.get("type") != Some(&json!("null"))
                    && o.get("$ref") != Some(&json!("#/$defs/Template"))
            });
            return sample(plain.unwrap_or(&list[0]), defs);
        }
    }
    if let Some(v) = s.get("const") {
        return v.clone();
    }
    if let Some(v) = s.get("enum").and_then(Json::as_array) {
        return v[0].clone();
    }
    let ty = match s.get("type") {
        Some(Json::Array(types)) => types
            .iter()
            .find(|t| *t != "null")
            .and_then(Json::as_str)
            .unwrap_or("null"),
        Some(Json::String(t)) => t.as_str(),
        _ => return json!("x"),
    };
    match ty {
        "string"
            if s.get("pattern").and_then(Json::as_str)
                == Some(executor_foundation::durations::DURATION_PATTERN) =>
        {
            json!("5s")
        }
        "string" => json!("x"),
        "integer" => json!(s.get("minimum").and_then(Json::as_u64).unwrap_or(1).max(1)),
        "number" => json!(1.0),
        "boolean" => json!(true),
        "array" => {
            let item = s.get("items").map_or(json!("x"), |i| sample(i, defs));
            json!([item])
        }
        "object" => {
            let mut m = Map::new();
            let required = s.get("required").and_then(Json::as_array);
            for name in required.into_iter().flatten().filter_map(Json::as_str) {
                m.insert(name.into(), sample(&s["properties"][name], defs));
            }
            if m.is_empty()
                && let Some(extra) = s.get("additionalProperties").filter(|e| e.is_object())
            {
                m.insert("k".into(), sample(extra, defs));
            }
            Json::Object(m)
        }
        _ => Json::Null,
    }
}

#[test]
fn every_step_field_in_the_reference_can_be_set_from_a_recipe() {
    let page = std::fs::read_to_string(PAGE).expect("the reference page");
    let rows = reference_fields(&page);
    assert!(
        rows.len() > 40,
        "too few fields read from the page: {rows:?}"
    );
    let schema = executor_driver::recipe::schema::recipe_schema();
    let defs = schema["$defs"].as_object().expect("$defs").clone();
    let variants = defs["Step"]["oneOf"]
        .as_array()
        .expect("step kinds")
        .clone();
    let mut failures = vec![];
    for (kind, field) in &rows {
        let Some(variant) = variants
            .iter()
            .find(|v| v["properties"]["kind"]["const"] == json!(kind))
        else {
            failures.push(format!("{kind}: a kind of the book that the schema lacks"));
            continue;
        };
        let Some(field_schema) = variant["properties"].get(field) else {
            failures.push(format!(
                "{kind}.{field}: listed in the book, not in the schema"
            ));
            continue;
        };
        let mut step = Map::new();
        step.insert("kind".into(), json!(kind));
        let required = variant["required"].as_array().cloned().unwrap_or_default();
        for r in required
            .iter()
            .filter_map(Json::as_str)
            .filter(|r| *r != "kind")
        {
            step.insert(r.into(), sample(&variant["properties"][r], &defs));
        }
        let value = sample(field_schema, &defs);
        step.insert(field.clone(), value.clone());

        let mut in_recipe = step.clone();
        in_recipe.insert("id".into(), json!("s"));
        let recipe = json!({"version": 1, "prepare": [in_recipe]});
        let problems = loader::validate(&recipe, &SpanMap::default());
        if !problems.is_empty() {
            let said: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
            failures.push(format!(
                "{kind}.{field} = {value}: refused by the schema: {said:?}"
            ));
            continue;
        }
        match serde_json::from_value::<StepKind>(Json::Object(step)) {
            Err(e) => failures.push(format!(
                "{kind}.{field} = {value}: the step refuses it: {e}"
            )),
            Ok(typed) => {
                let back = serde_json::to_value(&typed).expect("a step serializes");
                if back.get(field).is_none_or(Json::is_null) {
                    failures.push(format!(
                        "{kind}.{field} = {value}: the step dropped it: {back}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_reference_reader_sees_kinds_and_fields() {
    let page = "### `log` {#kind-log}\n\n| field | type |\n|---|---|\n| `message` | string |\n\
                ### Thing {#type-thing}\n\n| `inner` | string |\n";
    assert_eq!(
        reference_fields(page),
        vec![("log".to_string(), "message".to_string())]
    );
}
