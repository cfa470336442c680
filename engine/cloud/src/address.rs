//! Choosing the address to reach a server by, by a stated rule rather than "the first one".
//!
//! The rule: keep the addresses on `network` (when named), of `family`, of `kind`. If the
//! remaining addresses lie on more than one network and none was named, that is an error (name
//! one). With `kind: any`, a floating address beats a fixed one. Within one network, Nova's
//! order decides (the order of the ports, then of their addresses), which is stable.

use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::{CloudError, CloudErrorKind};
use super::server::{Address, AddressKind, Server};

/// IP version to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IpFamily {
    /// IPv4 only.
    #[default]
    Ipv4,
    /// IPv6 only.
    Ipv6,
    /// Either; IPv4 first.
    Any,
}

/// Which kind of address to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AddressChoice {
    /// The port's own address.
    #[default]
    Fixed,
    /// A floating IP.
    Floating,
    /// Floating if there is one, else fixed.
    Any,
}

/// The address policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AddressPolicy {
    /// Only addresses on this network (its name as Nova shows it). Required when the server is
    /// on several networks.
    pub network: Option<String>,
    /// IP version.
    pub family: IpFamily,
    /// Fixed, floating or either.
    pub kind: AddressChoice,
}

fn family_ok(ip: &IpAddr, family: IpFamily) -> bool {
    match family {
        IpFamily::Ipv4 => ip.is_ipv4(),
        IpFamily::Ipv6 => ip.is_ipv6(),
        IpFamily::Any => true,
    }
}

/// Picks the address by `policy`.
pub fn choose_address(server: &Server, policy: &AddressPolicy) -> Result<Address, CloudError> {
    let resource = format!("server {:?} ({})", server.name, server.id);
    let mut candidates: Vec<&Address> = server
        .addresses
        .iter()
        .filter(|a| policy.network.as_deref().is_none_or(|n| a.network == n))
        .filter(|a| family_ok(&a.ip, policy.family))
        .filter(|a| match policy.kind {
            AddressChoice::Fixed => a.kind == AddressKind::Fixed,
            AddressChoice::Floating => a.kind == AddressKind::Floating,
            AddressChoice::Any => true,
        })
        .collect();
    let mut networks: Vec<&str> = candidates.iter().map(|a| a.network.as_str()).collect();
    networks.sort_unstable();
    networks.dedup();
    if networks.len() > 1 {
        return Err(CloudError::new(
            CloudErrorKind::Invalid,
            "choose address",
            resource,
            format!(
                "the server has matching addresses on networks {}; name the network to use",
                networks.join(", ")
            ),
        ));
    }
    // Stable sorts: keep Nova's order within each preference class.
    if policy.kind == AddressChoice::Any {
        candidates.sort_by_key(|a| a.kind != AddressKind::Floating);
    }
    if policy.family == IpFamily::Any {
        candidates.sort_by_key(|a| !a.ip.is_ipv4());
    }
    candidates.first().map(|a| (*a).clone()).ok_or_else(|| {
        let have: Vec<String> = server
            .addresses
            .iter()
            .map(|a| format!("{} {} ({:?})", a.network, a.ip, a.kind).to_lowercase())
            .collect();
        CloudError::new(
            CloudErrorKind::NotFound,
            "choose address",
            resource,
            format!(
                "no address matches {policy:?}; the server has: {}",
                if have.is_empty() {
                    "none".into()
                } else {
                    have.join(", ")
                }
            ),
        )
    })
}
