//! How a duration is written in a recipe, and its JSON Schema, for every crate whose types hold one.

use schemars::{Schema, json_schema};

/// humantime's syntax (`90s`, `10m`, `1h 30m`), or a string with a template in it
/// (`"{{ env.SSH_TIMEOUT }}s"`), which is only checked once rendered.
pub const DURATION_PATTERN: &str = r"^\s*(.*(\{\{|\{%).*|([0-9]+\s*(nsec|ns|usec|us|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|w)\s*)+)\s*$";

/// Schema of a duration field: `#[schemars(schema_with = "executor_foundation::durations::duration")]`.
pub fn duration(_: &mut schemars::SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "pattern": DURATION_PATTERN})
}

/// Schema of an optional duration field.
pub fn optional_duration(_: &mut schemars::SchemaGenerator) -> Schema {
    json_schema!({"type": ["string", "null"], "pattern": DURATION_PATTERN})
}
