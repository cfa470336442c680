//! The committed schema is what editors and `executor lint` users see; it must match the types.

#[test]
fn committed_schema_matches_the_types() {
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schema/recipe.schema.json"
    ))
    .expect("schema/recipe.schema.json is committed");
    let generated = executor_driver::recipe::schema::recipe_schema_text();
    assert!(
        committed == generated,
        "schema/recipe.schema.json is stale: run `cargo run -- schema > schema/recipe.schema.json`"
    );
}

#[test]
fn every_recipe_starts_with_the_schema_comment() {
    for dir in ["recipes", "tests/recipes"] {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let Ok(entries) = std::fs::read_dir(&root) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(
                    text.starts_with("# yaml-language-server: $schema="),
                    "{} lacks the schema comment",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn no_step_kind_has_an_argument_named_like_a_shared_step_field() {
    // A kind's own `timeout` would be swallowed by the shared step field of that name.
    let schema = executor_driver::recipe::schema::recipe_schema();
    let step = &schema["$defs"]["Step"];
    let shared: Vec<&String> = step["properties"].as_object().unwrap().keys().collect();
    for branch in step["oneOf"].as_array().unwrap() {
        let kind = branch["properties"]["kind"]["const"].as_str().unwrap();
        for field in branch["properties"].as_object().unwrap().keys() {
            assert!(
                field == "kind" || !shared.contains(&field),
                "step kind `{kind}` has an argument `{field}`, which is also a shared step field"
            );
        }
    }
}
