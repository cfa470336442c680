use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::steps::StepError;
use crate::steps::cloud_glue::{
    self, STATE_ADDRESS, STATE_FLOATING_IP, STATE_FLOATING_IP_ID, STATE_FLOATING_IP_REQUESTED,
};
use crate::steps::context::{Outputs, StepContext};
use executor_cloud::floating_ip::attach_floating_ip;

/// Allocate a NEW floating IP from an external network and associate it with the server in
/// the same request (never reuse a "free-looking" one). Saves `state.floating_ip_id`,
/// `state.floating_ip` and, unless `use_for_ssh: false`, `state.server_address`. Released by
/// `delete_server`. Outputs: `id`, `address`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FloatingIp {
    /// The external network (name or id) to allocate from.
    pub network: String,
    /// Server id; defaults to `state.server_id`.
    #[serde(default)]
    pub server: Option<String>,
    /// The server's network whose port gets the address, when it has several ports.
    #[serde(default)]
    pub port_network: Option<String>,
    /// Make this the address SSH uses (default true).
    #[serde(default = "yes")]
    pub use_for_ssh: bool,
}

fn yes() -> bool {
    true
}

impl FloatingIp {
    pub async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outputs, StepError> {
        let id = cloud_glue::server_id(cx, &self.server)?;
        let handle = cloud_glue::cloud(cx).await?;
        let owner = cloud_glue::owner(cx, &handle.settings)?;
        // Before the request: a stage killed before the id is saved leaves cleanup a reason to
        // look for the address on the server's ports.
        cloud_glue::save(cx, STATE_FLOATING_IP_REQUESTED, json!(true))?;
        let fip = attach_floating_ip(
            handle.cloud.as_ref(),
            &id,
            &self.network,
            self.port_network.as_deref(),
            &owner,
        )
        .await?;
        cloud_glue::save(cx, STATE_FLOATING_IP_ID, json!(fip.id))?;
        cloud_glue::save(cx, STATE_FLOATING_IP, json!(fip.address))?;
        if self.use_for_ssh {
            cloud_glue::save(cx, STATE_ADDRESS, json!(fip.address))?;
        }
        cx.log.info(&format!(
            "floating IP {} attached to server {id}",
            fip.address
        ));
        let mut out = Outputs::new();
        out.insert("id".into(), json!(fip.id));
        out.insert("address".into(), json!(fip.address));
        Ok(out)
    }
}
