//! The recipe: what each stage does, as data.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::recipe::config_block::ConfigBlock;
use crate::recipe::deferred::Deferred;
use crate::recipe::step_spec::StepSpec;
use executor_foundation::stage::Stage;

/// The format version this build reads.
pub const FORMAT_VERSION: u32 = 1;

/// An executor recipe, or a site override layered on one.
///
/// A full recipe lists the steps of the `prepare`, `run` and `cleanup` stages; an override file
/// (`extends:` or a later `--recipe`) changes vars and step arguments with `patch`, drops steps
/// with `remove`, adds steps with `insert`, or replaces a whole stage by listing it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "executor recipe")]
pub struct Recipe {
    /// Recipe format version. Always `1` for now.
    #[schemars(range(min = 1, max = 1))]
    #[schemars(extend("x-static" = true))]
    pub version: u32,
    /// Another recipe this file overrides, relative to this file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    /// What this recipe is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Named values, templated and evaluated in order; each may use the ones above it as
    /// `vars.<name>`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(extend("x-static" = true))]
    pub vars: IndexMap<String, Json>,
    /// OpenStack connection settings (templated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<Json>,
    /// Defaults for every SSH step (templated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<Json>,
    /// What the config stage prints for gitlab-runner (templated).
    #[serde(default)]
    pub config: Deferred<ConfigBlock>,
    /// The warm pool: which VMs `executor pool` keeps ready, and its limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<executor_pool::PoolSettings>,
    /// Job-independent steps that make a VM ready (key, create, wait, address, probe). The pool
    /// daemon runs them ahead of jobs; a `prepare` step with `fallback: provision` runs them
    /// inline when it gets no warm VM. They may not read `job` or `trusted`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-static" = true))]
    pub provision: Vec<StepSpec>,
    /// Steps that provision the job's machine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-static" = true))]
    pub prepare: Vec<StepSpec>,
    /// Steps run for every script gitlab-runner hands over (`run.script`, `run.stage`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-static" = true))]
    pub run: Vec<StepSpec>,
    /// Steps that tear everything down. They must be safe when nothing was created.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-static" = true))]
    pub cleanup: Vec<StepSpec>,
    /// Override only: a mapping from step id to the fields to merge into that step, e.g.
    /// `patch: {console: {on_failure: ignore}}`. Each entry is itself a mapping: its mappings
    /// merge key by key, any other value replaces, and `null` deletes a key. To drop a step,
    /// use `remove`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(extend("x-static" = true))]
    pub patch: IndexMap<String, Json>,
    /// Override only: a list of the ids of the steps to drop, e.g. `remove: [console]` (a list
    /// even for one id).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-static" = true))]
    pub remove: Vec<String>,
    /// Override only: a list of insertions, each adding steps before or after a step of the
    /// base recipe: `insert: [{after: server, steps: [...]}]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-static" = true))]
    pub insert: Vec<Insertion>,
}

/// Steps to add next to an existing one: exactly one of `before` and `after`, naming one step
/// id, and `steps`, a list of steps as in a stage.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Insertion {
    /// Insert in front of the step with this id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// Insert behind the step with this id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// The steps to insert.
    #[schemars(extend("x-static" = true))]
    pub steps: Vec<StepSpec>,
}

impl Recipe {
    pub fn stage(&self, stage: Stage) -> &[StepSpec] {
        match stage {
            Stage::Prepare => &self.prepare,
            Stage::Run => &self.run,
            Stage::Cleanup => &self.cleanup,
            Stage::Provision => &self.provision,
            Stage::Config => &[],
        }
    }

    pub fn all_steps_indexed(&self) -> impl Iterator<Item = (Stage, usize, &StepSpec)> {
        Stage::WITH_STEPS.into_iter().flat_map(move |st| {
            self.stage(st)
                .iter()
                .enumerate()
                .map(move |(i, s)| (st, i, s))
        })
    }

    pub fn all_steps(&self) -> impl Iterator<Item = (Stage, &StepSpec)> {
        Stage::WITH_STEPS
            .into_iter()
            .flat_map(move |st| self.stage(st).iter().map(move |s| (st, s)))
    }
}
