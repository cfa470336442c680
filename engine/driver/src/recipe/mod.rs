//! The recipe as data: its model (what a recipe may say), and the front end that reads the
//! files, merges overrides, checks the result against the schema and reports problems with
//! file, line and column.
//!
//! Never runs a step and never renders for a job: that is the interpreter's.

pub mod config_block;
pub mod deferred;
pub mod diagnostics;
pub mod habits;
pub mod lint;
pub mod loader;
pub mod model;
pub mod overrides;
pub mod problem;
pub mod retry_policy;
pub mod sample_render;
pub mod schema;
pub mod schema_check;
pub mod source_file;
pub mod spanned_yaml;
pub mod step_spec;
pub mod taint;

pub use loader::LoadedRecipe;
pub use model::{FORMAT_VERSION, Recipe};
