//! The recipe's JSON Schema, generated from the same types that parse recipes.
//!
//! Any value that is not a string in the Rust type may also be a template string, because it is
//! only typed after rendering: `size: "{{ vars.disk }}"` is valid where `size` is a number.

use schemars::generate::SchemaSettings;
use schemars::transform::{Transform, transform_subschemas};
use schemars::{Schema, json_schema};
use serde_json::{Map, Value as Json};

use crate::recipe::model::Recipe;
use crate::steps::ssh_connection::SshConnectionArgs;
use executor_cloud::CloudSettings;

/// A string with a template in it.
pub const TEMPLATE_PATTERN: &str = r"\{\{|\{%";
pub const SCHEMA_ID: &str = "https://executor.invalid/recipe.schema.json";
const TEMPLATE_DEF: &str = "Template";

/// The schema, as committed in `schema/recipe.schema.json`.
pub fn recipe_schema() -> Json {
    let mut generator = SchemaSettings::draft2020_12()
        .with_transform(AllowTemplates)
        .into_generator();
    // The recipe keeps these blocks as plain data (the interpreter hands them to the back ends
    // untouched); the schema still types them, so editors and lint know their keys.
    let blocks = [
        ("cloud", generator.subschema_for::<CloudSettings>()),
        ("ssh", generator.subschema_for::<SshConnectionArgs>()),
    ];
    let mut schema = generator.into_root_schema_for::<Recipe>();
    if let Some(props) = schema.get_mut("properties").and_then(Json::as_object_mut) {
        for (name, block) in blocks {
            if let Some(Json::Object(prop)) = props.get_mut(name) {
                let description = prop.remove("description");
                prop.clear();
                prop.insert(
                    "anyOf".into(),
                    serde_json::json!([block.to_value(), {"type": "null"}]),
                );
                if let Some(d) = description {
                    prop.insert("description".into(), d);
                }
            }
        }
    }
    if let Some(obj) = schema.as_object_mut() {
        let defs = obj
            .entry("$defs")
            .or_insert_with(|| Json::Object(Map::new()));
        if let Some(defs) = defs.as_object_mut() {
            defs.insert(
                TEMPLATE_DEF.into(),
                json_schema!({
                    "description": "A template expression, e.g. \"{{ vars.size }}\", typed after rendering.",
                    "type": "string",
                    "pattern": TEMPLATE_PATTERN
                })
                .to_value(),
            );
        }
    }
    schema.to_value()
}

/// The schema as pretty JSON with a trailing newline, the committed file's exact text.
pub fn recipe_schema_text() -> String {
    let mut s = serde_json::to_string_pretty(&recipe_schema()).unwrap_or_default();
    s.push('\n');
    s
}

#[derive(Clone)]
struct AllowTemplates;

const TYPED_KEYWORDS: [&str; 12] = [
    "type",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "format",
    "items",
    "minItems",
    "maxItems",
    "additionalProperties",
    "propertyNames",
    "uniqueItems",
];

impl Transform for AllowTemplates {
    fn transform(&mut self, schema: &mut Schema) {
        transform_subschemas(self, schema);
        let Some(obj) = schema.as_object_mut() else {
            return;
        };
        // Structure the interpreter reads before rendering (stages, step ids, retry) is marked
        // static and stays strictly typed.
        if obj.remove("x-static").is_some() {
            return;
        }
        let types: Vec<&str> = match obj.get("type") {
            Some(Json::String(t)) => vec![t.as_str()],
            Some(Json::Array(ts)) => ts.iter().filter_map(|t| t.as_str()).collect(),
            _ => return,
        };
        let templatable = types.iter().any(|t| match *t {
            "integer" | "number" | "boolean" | "array" => true,
            // Free-form maps (metadata, vars) may come whole from a template; structs may not,
            // or a step's arguments could hide behind one string.
            "object" => !obj.contains_key("properties"),
            _ => false,
        });
        if !templatable || types.contains(&"string") {
            return;
        }
        let mut typed = Map::new();
        for k in TYPED_KEYWORDS {
            if let Some(v) = obj.remove(k) {
                typed.insert(k.into(), v);
            }
        }
        obj.insert(
            "anyOf".into(),
            Json::Array(vec![
                Json::Object(typed),
                serde_json::json!({"$ref": format!("#/$defs/{TEMPLATE_DEF}")}),
            ]),
        );
    }
}

/// The names of every step kind, from the schema, so the list cannot drift from the enum.
pub fn step_kinds() -> Vec<String> {
    let schema = recipe_schema();
    let mut kinds = vec![];
    collect_kind_consts(&schema["$defs"]["Step"], &mut kinds);
    kinds.sort();
    kinds.dedup();
    kinds
}

fn collect_kind_consts(v: &Json, out: &mut Vec<String>) {
    match v {
        Json::Object(m) => {
            if let Some(k) = m
                .get("properties")
                .and_then(|p| p.get("kind"))
                .and_then(|k| k.get("const"))
                .and_then(|c| c.as_str())
            {
                out.push(k.to_string());
            }
            for child in m.values() {
                collect_kind_consts(child, out);
            }
        }
        Json::Array(items) => items.iter().for_each(|i| collect_kind_consts(i, out)),
        _ => {}
    }
}
