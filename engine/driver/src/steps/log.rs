use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::steps::StepError;
use crate::steps::context::{Outputs, StepContext};

/// Print a line in the job log.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// The text to print (templated).
    pub message: String,
    /// `info` (default) or `warning`.
    #[serde(default)]
    pub level: LogLevel,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    #[default]
    Info,
    Warning,
}

impl Log {
    pub async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outputs, StepError> {
        match self.level {
            LogLevel::Info => cx.log.info(&self.message),
            LogLevel::Warning => cx.log.warn(&self.message),
        }
        Ok(Outputs::new())
    }
}
