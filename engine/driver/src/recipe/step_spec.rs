//! One step as written in a recipe: the fields every step shares, plus its kind and arguments.
//!
//! Arguments stay raw JSON until the step runs, because they may hold templates; they are then
//! rendered and parsed into the kind's own type (`steps::StepKind`).

use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value as Json};

use crate::recipe::retry_policy::RetryPolicy;
use crate::steps::StepKind;

/// What a step's failure means for the stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// An infrastructure failure: gitlab-runner may retry the job (the default).
    #[default]
    System,
    /// A build failure: the job fails and is not retried.
    Build,
    /// Log a warning and carry on.
    Ignore,
}

/// Steps run in a failed step's place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// The recipe's `provision` steps: a VM made for this job alone.
    Provision,
}

/// The fields every step has, whatever its kind.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct StepCommon {
    /// A name unique in the recipe. Later steps of the same stage read this step's outputs as
    /// `steps.<id>.<output>`; overrides patch, remove and insert around steps by id.
    #[schemars(regex(pattern = r"^[a-z_][a-z0-9_]*$"))]
    pub id: String,
    /// A condition (a template expression without braces, e.g. `state.server_id is defined`).
    /// The step is skipped when it is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Retry on the listed error classes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Give up on an attempt after this long, e.g. `10m`.
    #[serde(
        default,
        with = "executor_foundation::durations::optional_text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "executor_foundation::durations::optional_literal_duration")]
    pub timeout: Option<Duration>,
    /// What a failure of this step means: `system` (default), `build` or `ignore`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub on_failure: FailureMode,
    /// When this step fails (whatever the reason), note it and run these steps in its place,
    /// e.g. `provision` after a `pool_claim` that got no warm VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-static" = true))]
    pub fallback: Option<Fallback>,
    /// Run this step even after an earlier step failed or the stage was cancelled.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[schemars(extend("x-static" = true))]
    pub always: bool,
}

fn is_default(m: &FailureMode) -> bool {
    *m == FailureMode::System
}

/// A step as written in a recipe.
#[derive(Debug, Clone)]
pub struct StepSpec {
    pub common: StepCommon,
    pub kind: String,
    /// Everything else in the step's mapping: the kind's arguments, not yet rendered.
    pub args: Map<String, Json>,
}

impl StepSpec {
    pub fn id(&self) -> &str {
        &self.common.id
    }

    /// Arguments plus `kind`, the shape `StepKind` parses after rendering.
    pub fn kind_and_args(&self) -> Json {
        let mut m = Map::new();
        m.insert("kind".into(), Json::String(self.kind.clone()));
        m.extend(self.args.clone());
        Json::Object(m)
    }
}

/// The keys every step may carry whatever its kind: they go to `StepCommon`, the rest of the
/// mapping (but `kind`) is the kind's arguments. Lint needs the same split.
pub(crate) const COMMON_KEYS: [&str; 7] = [
    "id",
    "when",
    "retry",
    "timeout",
    "on_failure",
    "fallback",
    "always",
];

impl<'de> Deserialize<'de> for StepSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut map = Map::<String, Json>::deserialize(d)?;
        let mut common = Map::new();
        for key in COMMON_KEYS {
            if let Some(v) = map.remove(key) {
                common.insert(key.into(), v);
            }
        }
        let common: StepCommon =
            serde_json::from_value(Json::Object(common)).map_err(D::Error::custom)?;
        let kind = match map.remove("kind") {
            Some(Json::String(k)) => k,
            Some(_) => return Err(D::Error::custom("`kind` must be a string")),
            None => return Err(D::Error::missing_field("kind")),
        };
        Ok(StepSpec {
            common,
            kind,
            args: map,
        })
    }
}

impl Serialize for StepSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let mut out = match serde_json::to_value(&self.common).map_err(S::Error::custom)? {
            Json::Object(m) => m,
            _ => Map::new(),
        };
        // `id` first, then `kind`, then the rest, as people write them.
        let id = out.shift_remove("id");
        let mut ordered = Map::new();
        if let Some(id) = id {
            ordered.insert("id".into(), id);
        }
        ordered.insert("kind".into(), Json::String(self.kind.clone()));
        ordered.extend(self.args.clone());
        ordered.extend(out);
        ordered.serialize(s)
    }
}

/// The schema view of a step: the shared fields next to one kind's arguments.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct StepSchema {
    #[serde(flatten)]
    common: StepCommon,
    #[serde(flatten)]
    kind: StepKind,
}

impl JsonSchema for StepSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Step".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        StepSchema::json_schema(generator)
    }
}
