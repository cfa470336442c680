//! Reads recipe files, follows `extends:`, applies the layers in order and validates the
//! result against the schema, collecting every problem with its file, line and column.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::recipe::overrides;
use crate::recipe::problem::{Problem, Problems};
use crate::recipe::source_file::{Loc, Sources};
use crate::recipe::spanned_yaml::{self, Node, SpanMap, Tree};
use crate::recipe::{FORMAT_VERSION, Recipe};
use executor_foundation::bounded_read::{RECIPE_LIMIT, read_to_string_bounded};

/// A recipe merged from its layers, with where every value came from.
#[derive(Debug)]
pub struct LoadedRecipe {
    pub recipe: Recipe,
    /// The merged document, as validated.
    pub json: Json,
    pub spans: SpanMap,
    pub sources: Sources,
}

/// The merged document before it is typed, for lint, which wants every problem at once.
pub struct Document {
    pub json: Json,
    pub spans: SpanMap,
    pub sources: Sources,
    /// Problems in reading or merging the files (the document may be partial).
    pub read_problems: Vec<Problem>,
}

/// Load `paths` (base first, overrides after) into one recipe.
pub fn load(paths: &[PathBuf]) -> Result<LoadedRecipe, Problems> {
    let Document {
        json,
        spans,
        sources,
        read_problems,
    } = load_document(paths);
    let mut problems = read_problems;
    if problems.is_empty() {
        problems.extend(validate(&json, &spans));
    }
    if !problems.is_empty() {
        return Err(Problems {
            sources,
            list: problems,
        });
    }
    match serde_json::from_value::<Recipe>(json.clone()) {
        Ok(recipe) => Ok(LoadedRecipe {
            recipe,
            json,
            spans,
            sources,
        }),
        // The schema should have caught it; report what serde says, at the step it is about
        // when one step alone fails, rather than nowhere.
        Err(e) => {
            let loc = first_untyped_step(&json).and_then(|at| spans.value_loc(&at));
            Err(Problems {
                sources,
                list: vec![Problem::new("invalid-recipe", e.to_string(), loc)],
            })
        }
    }
}

/// The JSON pointer of the first step that does not parse as a step by itself.
fn first_untyped_step(json: &Json) -> Option<String> {
    executor_foundation::stage::Stage::WITH_STEPS
        .into_iter()
        .find_map(|stage| {
            let steps = json.get(stage.name())?.as_array()?;
            steps.iter().enumerate().find_map(|(i, step)| {
                serde_json::from_value::<crate::recipe::step_spec::StepSpec>(step.clone())
                    .is_err()
                    .then(|| format!("/{}/{i}", stage.name()))
            })
        })
}

/// Read and merge the layers without validating the result.
pub fn load_document(paths: &[PathBuf]) -> Document {
    let mut sources = Sources::default();
    let mut problems = vec![];
    let mut merged = Node {
        tree: Tree::Map(Default::default()),
        loc: Loc {
            file: 0,
            start: 0,
            end: 0,
        },
        patched_at: None,
    };
    if paths.is_empty() {
        problems.push(Problem::new(
            "no-recipe",
            "no recipe given: pass --recipe FILE or set EXECUTOR_RECIPE",
            None,
        ));
    }
    let mut rank = 0;
    for path in paths {
        let mut chain = vec![];
        load_layers(path, &mut sources, &mut problems, &mut chain);
        for layer in chain {
            sources.files[layer.loc.file].layer = rank;
            rank += 1;
            overrides::apply(&mut merged, &layer, &mut problems);
        }
    }
    let mut spans = SpanMap::default();
    let json = merged.to_json(&mut spans);
    Document {
        json,
        spans,
        sources,
        read_problems: problems,
    }
}

/// One file and the files it extends, base first.
fn load_layers(
    path: &Path,
    sources: &mut Sources,
    problems: &mut Vec<Problem>,
    out: &mut Vec<Node>,
) {
    if out.len() > 16 {
        problems.push(Problem::new(
            "extends-cycle",
            format!("`extends` goes too deep at {}", path.display()),
            None,
        ));
        return;
    }
    let text = match read_to_string_bounded(path, RECIPE_LIMIT) {
        Ok(t) => t,
        Err(e) => {
            problems.push(Problem::new(
                "unreadable",
                format!("cannot read {}: {e}", path.display()),
                None,
            ));
            return;
        }
    };
    let file = sources.add(path, text);
    let node = match spanned_yaml::parse(file, &sources.get(file).text.clone()) {
        Ok(n) => n,
        Err(e) => {
            let p = Problem::new("yaml-syntax", e.message, Some(e.loc));
            problems.push(match e.help {
                Some(h) => p.with_help(h),
                None => p,
            });
            return;
        }
    };
    if let Some((_, ext)) = node.as_map().and_then(|m| m.get("extends")) {
        match ext.as_str() {
            Some(rel) => {
                let base = path.parent().unwrap_or(Path::new(".")).join(rel);
                let seen = sources.files.iter().any(|f| same_file(&f.path, &base));
                if seen {
                    problems.push(Problem::new(
                        "extends-cycle",
                        format!("`extends: {rel}` loads a file that is already loaded"),
                        Some(ext.loc),
                    ));
                } else if !base.exists() {
                    problems.push(Problem::new(
                        "unreadable",
                        format!("`extends: {rel}`: no such file {}", base.display()),
                        Some(ext.loc),
                    ));
                } else {
                    load_layers(&base, sources, problems, out);
                }
            }
            None => problems.push(Problem::new(
                "invalid-type",
                "`extends` must be a path",
                Some(ext.loc),
            )),
        }
    }
    out.push(node);
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Check the merged document against the recipe schema. Steps are checked against their own
/// kind's schema, so that a mistake in one step's arguments is reported at that argument
/// rather than as "matches none of the step kinds".
pub fn validate(json: &Json, spans: &SpanMap) -> Vec<Problem> {
    let mut problems = vec![];
    if let Some(v) = json.get("version") {
        if v.as_u64() != Some(FORMAT_VERSION as u64) {
            problems.push(Problem::new(
                "version",
                format!(
                    "this executor reads recipe format version {FORMAT_VERSION}, the file says {v}"
                ),
                spans.value_loc("/version"),
            ));
        }
    } else {
        problems.push(
            Problem::new(
                "missing-field",
                "missing field `version`",
                spans.value_loc(""),
            )
            .with_help(format!("start the recipe with `version: {FORMAT_VERSION}`")),
        );
    }
    let validator = crate::recipe::schema_check::SchemaCheck::get();
    problems.extend(validator.check_recipe(json, spans));
    problems
}
