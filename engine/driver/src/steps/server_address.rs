use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::steps::StepError;
use crate::steps::cloud_glue::{self, STATE_ADDRESS};
use crate::steps::context::{Outputs, StepContext};
use executor_cloud::address::{AddressChoice, AddressPolicy, IpFamily, choose_address};
use executor_cloud::{AddressKind, CloudError, CloudErrorKind};

/// Choose the address to reach the server by, and save it as `state.server_address`.
///
/// The rule: keep addresses on `network` (if named), of `family` (default IPv4), of
/// `address_kind` (default fixed; `any` prefers floating). If they lie on several networks and none is named,
/// the step fails rather than guess. Within a network, Nova's order decides.
/// Outputs: `address`, `network`, `kind`, and the server's `metadata` (where a cloud may
/// publish a non-standard SSH port as `ssh_port`, as the simulator does).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerAddress {
    /// Server id; defaults to `state.server_id`.
    #[serde(default)]
    pub server: Option<String>,
    /// Only addresses on this network (its name as Nova shows it); required when the server
    /// has matching addresses on several networks.
    #[serde(default)]
    pub network: Option<String>,
    /// `ipv4` (default), `ipv6` or `any` (IPv4 first).
    #[serde(default)]
    pub family: IpFamily,
    /// `fixed` (default), `floating`, or `any` (floating first). Not `kind`, which names the
    /// step's kind.
    #[serde(default)]
    pub address_kind: AddressChoice,
}

impl ServerAddress {
    pub async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outputs, StepError> {
        let id = cloud_glue::server_id(cx, &self.server)?;
        let handle = cloud_glue::cloud(cx).await?;
        // Right after the wait for ACTIVE, the document that wait read is as good as a new one.
        let recent = handle
            .openstack
            .as_ref()
            .and_then(|os| os.recent_active_server(&id));
        let server = match recent {
            Some(server) => server,
            None => handle.cloud.get_server(&id).await?.ok_or_else(|| {
                CloudError::new(
                    CloudErrorKind::NotFound,
                    "choose address",
                    format!("server {id}"),
                    "the server does not exist",
                )
            })?,
        };
        let policy = AddressPolicy {
            network: self.network.clone(),
            family: self.family,
            kind: self.address_kind,
        };
        let address = choose_address(&server, &policy)?;
        cloud_glue::save(cx, STATE_ADDRESS, json!(address.ip.to_string()))?;
        cx.log.info(&format!(
            "server {id} is reachable at {} ({})",
            address.ip, address.network
        ));
        let mut out = Outputs::new();
        out.insert("address".into(), json!(address.ip.to_string()));
        out.insert("network".into(), json!(address.network));
        out.insert(
            "kind".into(),
            json!(match address.kind {
                AddressKind::Fixed => "fixed",
                AddressKind::Floating => "floating",
            }),
        );
        out.insert("metadata".into(), json!(server.metadata));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::steps::StepKind;

    #[test]
    fn the_address_kind_is_read_from_a_recipe_step() {
        let step: StepKind = serde_json::from_value(serde_json::json!({
            "kind": "server_address",
            "address_kind": "floating",
        }))
        .unwrap();
        let StepKind::ServerAddress(step) = step else {
            panic!("{step:?}")
        };
        assert_eq!(
            step.address_kind,
            executor_cloud::address::AddressChoice::Floating
        );
    }
}
