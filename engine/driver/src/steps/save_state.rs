use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::steps::StepError;
use crate::steps::context::{Outputs, StepContext};

/// Save values into the job state, where later stages (separate processes) read them as
/// `state.<name>`. The file is written at once, so a killed stage keeps what it saved.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveState {
    /// Names and values (templated). `null` removes a name.
    pub values: IndexMap<String, Json>,
}

impl SaveState {
    pub async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outputs, StepError> {
        for (k, v) in &self.values {
            if v.is_null() {
                cx.state.remove(k);
            } else {
                cx.state.set(k, v.clone());
            }
        }
        cx.state
            .save()
            .map_err(|e| StepError::other(format!("cannot save the job state: {e}")))?;
        Ok(Outputs::new())
    }
}
