use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::steps::StepError;
use crate::steps::cloud_glue;
use crate::steps::context::{Outputs, StepContext};
use executor_cloud::wait_active::{WaitPolicy, wait_active};

/// Wait until a server is ACTIVE, polling densely around the expected boot time. On ERROR the
/// step fails with class `boot_error` and Nova's fault message. Outputs: `status`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitServer {
    /// Server id; defaults to `state.server_id`.
    #[serde(default)]
    pub server: Option<String>,
    /// Timeout and polling.
    #[serde(default)]
    pub wait: WaitPolicy,
}

impl WaitServer {
    pub async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outputs, StepError> {
        let id = cloud_glue::server_id(cx, &self.server)?;
        let handle = cloud_glue::cloud(cx).await?;
        let log = cx.log;
        let mut on_status = |s: &str| log.info(&format!("server {id} is {s}"));
        let result = wait_active(
            handle.cloud.as_ref(),
            &id,
            &self.wait,
            cx.cancel,
            &mut on_status,
        )
        .await;
        let server = result.inspect_err(|e| {
            if e.kind == executor_cloud::CloudErrorKind::BootError {
                cx.log.error(&e.to_string());
            }
        })?;
        let mut out = Outputs::new();
        out.insert("status".into(), json!(server.status));
        Ok(out)
    }
}
