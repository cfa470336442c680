use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::steps::StepError;
use crate::steps::context::{Outputs, StepContext};

/// Stop the stage with a message. Its `on_failure` says whether that is a system or a build
/// failure; `exit_code` makes it a build failure with that job exit code.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fail {
    /// Why the stage stops (templated).
    pub message: String,
    /// Report the failure as the job script's own exit status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 255))]
    pub exit_code: Option<i32>,
}

impl Fail {
    pub async fn run(&self, _cx: &mut StepContext<'_>) -> Result<Outputs, StepError> {
        Err(match self.exit_code {
            Some(code) => StepError {
                message: self.message.clone(),
                ..StepError::script(code)
            },
            None => StepError::other(self.message.clone()),
        })
    }
}
