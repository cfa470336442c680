//! The book's recipe reference (`book/src/reference/steps.md`) is generated from the recipe JSON
//! Schema, which is itself generated from the types that parse recipes. This test regenerates the
//! page and fails when the committed copy differs, so the reference cannot drift from the code.
//!
//! Refresh it with `BOOK_REFERENCE_UPDATE=1 cargo test --test integration book_reference`.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::{Map, Value as Json};

const PAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/book/src/reference/steps.md");

/// Definitions that are not worth a section of their own.
const INLINE_DEFS: [&str; 2] = ["Step", "Template"];

#[test]
fn committed_step_reference_matches_the_schema() {
    let generated = render(&executor_driver::recipe::schema::recipe_schema());
    if std::env::var_os("BOOK_REFERENCE_UPDATE").is_some() {
        std::fs::write(PAGE, &generated).expect("write the reference page");
        return;
    }
    let committed = std::fs::read_to_string(PAGE).unwrap_or_default();
    assert!(
        committed == generated,
        "book/src/reference/steps.md is stale: run `BOOK_REFERENCE_UPDATE=1 cargo test --test integration book_reference`"
    );
}

#[test]
fn every_step_kind_has_a_section() {
    let page = render(&executor_driver::recipe::schema::recipe_schema());
    let kinds = executor_driver::recipe::schema::step_kinds();
    assert!(
        kinds.len() >= 5,
        "expected the generic kinds at least: {kinds:?}"
    );
    for kind in kinds {
        assert!(
            page.contains(&format!("### `{kind}` {{#kind-{kind}}}")),
            "no section for step kind `{kind}`"
        );
    }
}

#[test]
fn field_types_are_readable() {
    let mut seen = BTreeSet::new();
    let mut ty = |v: Json| type_text(&v, &mut seen);
    assert_eq!(
        ty(serde_json::json!({"type": ["string", "null"]})),
        "string"
    );
    assert_eq!(
        ty(
            serde_json::json!({"anyOf": [{"type": ["integer", "null"]}, {"$ref": "#/$defs/Template"}]})
        ),
        "integer or template"
    );
    assert_eq!(
        ty(serde_json::json!({"type": "array", "items": {"$ref": "#/$defs/Thing"}})),
        "list of [Thing](#type-thing)"
    );
    assert_eq!(
        ty(
            serde_json::json!({"type": "string", "pattern": executor_foundation::durations::DURATION_PATTERN})
        ),
        "duration"
    );
    assert_eq!(ty(serde_json::json!({})), "any");
    assert!(seen.contains("Thing"));
}

fn render(schema: &Json) -> String {
    let defs = schema["$defs"].as_object().cloned().unwrap_or_default();
    let mut seen = BTreeSet::new();
    let mut out = String::new();
    out.push_str("# Recipe reference\n\n");
    out.push_str(
        "<!-- Generated from the recipe schema by tests/book_reference.rs; do not edit by hand.\n     \
         Refresh: BOOK_REFERENCE_UPDATE=1 cargo test --test integration book_reference -->\n\n",
    );
    out.push_str(
        "Every field a recipe may hold, generated from `schema/recipe.schema.json` (which \
         `executor schema` prints). A field typed \"or template\" may also be a string that is \
         exactly one `{{ expression }}`; it is typed after rendering, and a string field may \
         hold templates anywhere. A field without \"or template\" (a number, a list, a \
         `fixed duration`) is read when the recipe is loaded, before anything is rendered: write \
         it as it is, `executor lint` refuses a template there.\n\n\
         **Durations** are whole numbers, each with a unit: `ms`, `s` (`sec`, `seconds`), `m` \
         (`min`, `minutes`), `h` (`hr`, `hours`) or `d` (`day`, `days`), several in a row \
         with or without spaces: `600s`, `10m`, `1h 30m`. Units are lowercase: `M` is refused, \
         because other tools read it as months, and so are fractions (`1.5h`: write `90m`) \
         and a number without a unit. A `duration` may also be a template \
         (`\"{{ env.T }}s\"`), checked once rendered; a `fixed duration` may not. Schema, \
         lint, loading and the steps all read this one grammar.\n\n",
    );

    out.push_str("## Top-level fields {#top-level}\n\n");
    paragraph(&mut out, schema);
    field_table(&mut out, schema, &mut seen);

    let step = &defs["Step"];
    out.push_str("## Fields every step has {#step-fields}\n\n");
    out.push_str(
        "A step is one mapping: these shared fields, `kind`, and the arguments of its kind \
         (listed under [Step kinds](#step-kinds)).\n\n",
    );
    field_table(&mut out, step, &mut seen);

    out.push_str("## Step kinds {#step-kinds}\n\n");
    let variants = step["oneOf"].as_array().cloned().unwrap_or_default();
    let kinds: Vec<String> = variants.iter().filter_map(kind_name).collect();
    out.push_str("| kind | what it does |\n|---|---|\n");
    for v in &variants {
        if let Some(kind) = kind_name(v) {
            let _ = writeln!(
                out,
                "| [`{kind}`](#kind-{kind}) | {} |",
                cell(first_sentence(description(v)))
            );
        }
    }
    out.push('\n');
    for (v, kind) in variants.iter().zip(&kinds) {
        let _ = writeln!(out, "### `{kind}` {{#kind-{kind}}}\n");
        paragraph(&mut out, v);
        let has_args = v["properties"]
            .as_object()
            .is_some_and(|p| p.keys().any(|k| k != "kind"));
        if has_args {
            field_table(&mut out, v, &mut seen);
        } else {
            out.push_str("No arguments.\n\n");
        }
    }

    out.push_str("## Types {#types}\n\n");
    out.push_str("Types that fields above refer to.\n\n");
    let mut done = BTreeSet::new();
    // Rendering a type may reveal more types; keep going until none is new.
    loop {
        let pending: Vec<String> = seen
            .iter()
            .filter(|n| !done.contains(*n) && !INLINE_DEFS.contains(&n.as_str()))
            .cloned()
            .collect();
        if pending.is_empty() {
            break;
        }
        for name in pending {
            done.insert(name.clone());
            let Some(def) = defs.get(&name) else { continue };
            let _ = writeln!(out, "### {name} {{#type-{}}}\n", anchor(&name));
            paragraph(&mut out, def);
            if let Some(values) = enum_values(def) {
                for (value, desc) in values {
                    match desc {
                        Some(d) => {
                            let _ = writeln!(out, "- `{value}`: {}", flatten(&d));
                        }
                        None => {
                            let _ = writeln!(out, "- `{value}`");
                        }
                    }
                }
                out.push('\n');
            } else if def.get("properties").is_some() {
                field_table(&mut out, def, &mut seen);
            } else {
                let _ = writeln!(out, "A value of type {}.\n", type_text(def, &mut seen));
            }
        }
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

fn kind_name(variant: &Json) -> Option<String> {
    variant["properties"]["kind"]["const"]
        .as_str()
        .map(str::to_string)
}

fn description(v: &Json) -> &str {
    v.get("description").and_then(Json::as_str).unwrap_or("")
}

/// A doc comment as a paragraph: wrapped lines joined, paragraph breaks kept.
fn paragraph(out: &mut String, v: &Json) {
    let d = description(v);
    if !d.is_empty() {
        let text: Vec<String> = d.split("\n\n").map(flatten).collect();
        out.push_str(&text.join("\n\n"));
        out.push_str("\n\n");
    }
}

fn flatten(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn first_sentence(s: &str) -> String {
    let flat = flatten(s);
    let end = flat.match_indices(". ").map(|(i, _)| i).find(|&i| {
        let before = &flat[..i];
        !(before.ends_with("e.g") || before.ends_with("i.e"))
    });
    match end {
        Some(i) => flat[..=i].to_string(),
        None => flat,
    }
}

fn cell(s: String) -> String {
    s.replace('|', "\\|")
}

fn anchor(name: &str) -> String {
    name.to_ascii_lowercase()
}

fn field_table(out: &mut String, obj: &Json, seen: &mut BTreeSet<String>) {
    let empty = Map::new();
    let props = obj["properties"].as_object().unwrap_or(&empty);
    let required: BTreeSet<&str> = obj["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Json::as_str)
        .collect();
    out.push_str("| field | type | required | default | description |\n|---|---|---|---|---|\n");
    for (name, p) in props {
        if name == "kind" {
            continue;
        }
        let default = match p.get("default") {
            Some(d) => format!("`{}`", serde_json::to_string(d).unwrap_or_default()),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "| `{name}` | {} | {} | {} | {} |",
            cell(type_text(p, seen)),
            if required.contains(name.as_str()) {
                "yes"
            } else {
                ""
            },
            cell(default),
            cell(flatten(description(p)))
        );
    }
    out.push('\n');
}

fn enum_values(def: &Json) -> Option<Vec<(String, Option<String>)>> {
    if let Some(values) = def.get("enum").and_then(Json::as_array) {
        return Some(
            values
                .iter()
                .map(|v| {
                    (
                        v.as_str().map_or_else(|| v.to_string(), str::to_string),
                        None,
                    )
                })
                .collect(),
        );
    }
    let variants = def.get("oneOf")?.as_array()?;
    variants
        .iter()
        .map(|v| {
            let c = v.get("const")?;
            Some((
                c.as_str().map_or_else(|| c.to_string(), str::to_string),
                v.get("description")
                    .and_then(Json::as_str)
                    .map(str::to_string),
            ))
        })
        .collect()
}

/// A field's type in words, e.g. "list of [ErrorClass](#type-errorclass)" or "integer or template".
fn type_text(v: &Json, seen: &mut BTreeSet<String>) -> String {
    if let Some(r) = v.get("$ref").and_then(Json::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r).to_string();
        if name == "Template" {
            return "template".into();
        }
        if name == "Step" {
            return "[step](#step-fields)".into();
        }
        seen.insert(name.clone());
        return format!("[{name}](#type-{})", anchor(&name));
    }
    if let Some(alts) = v
        .get("anyOf")
        .or_else(|| v.get("oneOf"))
        .and_then(Json::as_array)
    {
        if v.get("oneOf").is_some() && alts.iter().all(|a| a.get("const").is_some()) {
            return consts(alts.iter().filter_map(|a| a.get("const")));
        }
        let mut parts: Vec<String> = alts
            .iter()
            .filter(|a| a.get("type").and_then(Json::as_str) != Some("null"))
            .map(|a| type_text(a, seen))
            .collect();
        parts.dedup();
        return parts.join(" or ");
    }
    if let Some(values) = v.get("enum").and_then(Json::as_array) {
        return consts(values.iter());
    }
    if let Some(c) = v.get("const") {
        return consts(std::iter::once(c));
    }
    let types: Vec<&str> = match v.get("type") {
        Some(Json::String(t)) => vec![t.as_str()],
        Some(Json::Array(ts)) => ts
            .iter()
            .filter_map(Json::as_str)
            .filter(|t| *t != "null")
            .collect(),
        _ => return "any".into(),
    };
    let words: Vec<String> = types
        .iter()
        .map(|t| match *t {
            "string"
                if v.get("pattern").and_then(Json::as_str)
                    == Some(executor_foundation::durations::DURATION_PATTERN) =>
            {
                "duration".to_string()
            }
            "string"
                if v.get("pattern").and_then(Json::as_str)
                    == Some(executor_foundation::durations::LITERAL_DURATION_PATTERN) =>
            {
                "fixed duration".to_string()
            }
            "array" => match v.get("items") {
                Some(items) => format!("list of {}", type_text(items, seen)),
                None => "list".into(),
            },
            "object" => match v.get("additionalProperties") {
                Some(Json::Object(inner)) if !inner.is_empty() => {
                    format!("map of {}", type_text(&Json::Object(inner.clone()), seen))
                }
                _ => "map".into(),
            },
            other => other.to_string(),
        })
        .collect();
    words.join(" or ")
}

fn consts<'a>(values: impl Iterator<Item = &'a Json>) -> String {
    values
        .map(|c| {
            format!(
                "`{}`",
                c.as_str().map_or_else(|| c.to_string(), str::to_string)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}
