use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::steps::StepError;
use crate::steps::context::{Outputs, StepContext};

/// Set or change `vars` for the later steps of this stage.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetVars {
    /// Names and values (templated).
    pub values: IndexMap<String, Json>,
}

impl SetVars {
    pub async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outputs, StepError> {
        let mut out = Outputs::new();
        for (k, v) in &self.values {
            cx.vars.insert(k.clone(), v.clone());
            out.insert(k.clone(), v.clone());
        }
        Ok(out)
    }
}
