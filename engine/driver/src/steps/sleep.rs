use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::steps::StepError;
use crate::steps::context::{Outputs, StepContext};

/// Wait, e.g. to let a service settle. A SIGTERM ends the wait at once.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sleep {
    /// How long, e.g. `5s`.
    #[serde(with = "executor_foundation::durations::text")]
    #[schemars(schema_with = "executor_foundation::durations::duration")]
    pub duration: Duration,
}

impl Sleep {
    pub async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outputs, StepError> {
        tokio::select! {
            _ = tokio::time::sleep(self.duration) => Ok(Outputs::new()),
            _ = cx.cancel.cancelled() => Err(StepError::canceled()),
        }
    }
}
