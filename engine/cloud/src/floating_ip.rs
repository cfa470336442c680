//! Giving a server a NEW floating IP.
//!
//! Allocation and association are one request (`port_id` in the create), so no other job can
//! take the address in between, and we never pick an existing "free-looking" one (the race of
//! docker-machine #4038). The ownership marker in the description lets cleanup prove it is ours.

use std::time::Duration;

use super::backend::{Cloud, FloatingIp};
use super::error::{CloudError, CloudErrorKind};
use super::ownership::Ownership;

/// The floating IPs on `server_id`'s ports, whoever made them: cleanup and gc filter them
/// by ownership marker.
pub async fn floating_ips_on_server(
    cloud: &dyn Cloud,
    server_id: &str,
) -> Result<Vec<FloatingIp>, CloudError> {
    let mut out = Vec::new();
    for port in cloud.server_ports(server_id).await? {
        out.extend(cloud.floating_ips_on_port(&port.id).await?);
    }
    Ok(out)
}

/// Allocates a floating IP on `external_network` for `server_id`'s port (on `via_network` when
/// the server has several ports).
pub async fn attach_floating_ip(
    cloud: &dyn Cloud,
    server_id: &str,
    external_network: &str,
    via_network: Option<&str>,
    owner: &Ownership,
) -> Result<FloatingIp, CloudError> {
    let resource = format!("server {server_id}");
    let external = cloud.resolve_network(external_network).await?;
    if !external.external {
        return Err(CloudError::invalid(
            "allocate floating IP",
            format!("network {external_network:?}"),
            "this network is not external (router:external is false)",
        ));
    }
    let mut ports = cloud.server_ports(server_id).await?;
    if let Some(net) = via_network {
        let net = cloud.resolve_network(net).await?;
        ports.retain(|p| p.network_id == net.named.id);
    }
    let port = match ports.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(CloudError::new(
                CloudErrorKind::NotFound,
                "allocate floating IP",
                resource,
                "the server has no port to attach a floating IP to",
            ));
        }
        _ => {
            return Err(CloudError::invalid(
                "allocate floating IP",
                resource,
                "the server has several ports; name the network whose port gets the floating IP",
            ));
        }
    };
    let marker = owner.marker();
    let mut attempts = 0;
    loop {
        attempts += 1;
        match cloud
            .post_floating_ip(&external.named.id, &port.id, &marker)
            .await
        {
            Ok(fip) => return Ok(fip),
            Err(e) if matches!(e.kind, CloudErrorKind::Transient | CloudErrorKind::Timeout) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                // The lost request may have made one; only one with our marker on our port counts.
                let existing = cloud.floating_ips_on_port(&port.id).await?;
                if let Some(fip) = existing.into_iter().find(|f| f.description == marker) {
                    return Ok(fip);
                }
                if attempts >= 3 {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
}
