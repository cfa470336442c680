//! A recipe block rendered outside any job, for `executor gc`: gc must reach the cloud the
//! recipe describes, but it runs from a timer, with no job variables and no job state. It uses
//! the interpreter's own var evaluation so that a recipe means the same thing to both.

use serde_json::{Map, Value as Json};

use super::{block_context, evaluate_vars_in_order};
use crate::recipe::loader::LoadedRecipe;
use crate::template::context::Environment;
use crate::template::{TemplateError, Templater};
use executor_foundation::job_state::JobState;
use executor_foundation::stage::Stage;

/// The recipe's top-level `block` (`cloud`, `ssh`) rendered as the cleanup stage would see it
/// with an empty job state. A var that needs what only a job has is left out rather than
/// failing: the block may not read it. `Ok(None)` when the recipe has no such block; an error
/// carries the JSON pointer inside the block.
pub fn render_block_outside_job(
    loaded: &LoadedRecipe,
    environment: &Environment,
    block: &str,
) -> Result<Option<Json>, (String, TemplateError)> {
    let templater = Templater::new();
    let state = JobState::in_memory(Map::new());
    let stage = Stage::Cleanup;
    let vars = evaluate_vars_in_order(
        &templater,
        environment,
        loaded,
        &state,
        None,
        stage,
        |_, _, _| Ok(()),
    )?;
    let Some(raw) = loaded.json.get(block) else {
        return Ok(None);
    };
    let ctx = block_context(environment, &vars, &state, stage);
    templater.render_value(raw, &ctx).map(Some)
}
