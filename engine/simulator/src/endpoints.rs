//! Where the catalog sends clients. By default one listener serves every service, and the
//! catalog lists it once per interface in one region. With [`SimOptions::two_regions`] each of
//! two regions has a public and an internal URL of its own, each a listener of its own, so a
//! test can tell from the request log which endpoint a client chose.
//!
//! [`SimOptions::two_regions`]: super::SimOptions::two_regions

use serde_json::{Value, json};

/// The region of the default catalog, and the first of two.
pub const FIRST_REGION: &str = "RegionOne";
/// The second region of a two-region catalog.
pub const SECOND_REGION: &str = "RegionTwo";

/// The interfaces a two-region catalog lists, each with its own URL.
const SPLIT_INTERFACES: [&str; 2] = ["public", "internal"];

/// The listener a request came in on. Handlers that answer with links (version documents)
/// use its base URL, as a real service answers links on the host it was asked on.
#[derive(Debug, Clone)]
pub(crate) struct Listener {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    /// `RegionTwo internal`, when the catalog has endpoints of their own; `None` for the single
    /// listener that serves every interface.
    pub label: Option<String>,
}

/// One row of the catalog: a region, an interface and the URL that serves it.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub region: &'static str,
    pub interface: &'static str,
    pub base: String,
}

impl Endpoint {
    pub fn label(&self) -> String {
        format!("{} {}", self.region, self.interface)
    }
}

/// The rows of a two-region catalog, in the order the extra listeners were bound: the first
/// row is the main listener (the one `auth_url` names).
pub(crate) fn two_regions(bases: &[String]) -> Vec<Endpoint> {
    let rows = [FIRST_REGION, SECOND_REGION]
        .into_iter()
        .flat_map(|r| SPLIT_INTERFACES.into_iter().map(move |i| (r, i)));
    rows.zip(bases)
        .map(|((region, interface), base)| Endpoint {
            region,
            interface,
            base: base.clone(),
        })
        .collect()
}

/// How many listeners a two-region catalog needs.
pub(crate) const TWO_REGION_LISTENERS: usize = 4;

/// Keystone's catalog. `split` empty: every interface of [`FIRST_REGION`] at `base`.
pub(crate) fn catalog(base: &str, split: &[Endpoint], project_id: &str) -> Value {
    let single: Vec<Endpoint> = ["public", "internal", "admin"]
        .into_iter()
        .map(|interface| Endpoint {
            region: FIRST_REGION,
            interface,
            base: base.to_string(),
        })
        .collect();
    let rows = if split.is_empty() { &single[..] } else { split };
    let services = [
        ("identity", "keystone", "/identity".to_string()),
        ("compute", "nova", "/compute/v2.1".to_string()),
        ("image", "glance", "/image".to_string()),
        ("network", "neutron", "/network".to_string()),
        (
            "block-storage",
            "cinder",
            format!("/volume/v3/{project_id}"),
        ),
    ];
    Value::Array(
        services
            .into_iter()
            .map(|(kind, name, path)| {
                let endpoints: Vec<Value> = rows
                    .iter()
                    .map(|e| {
                        json!({"id": super::store::new_hex_id(), "interface": e.interface,
                            "region_id": e.region, "region": e.region,
                            "url": format!("{}{path}", e.base)})
                    })
                    .collect();
                json!({"endpoints": endpoints, "id": super::store::new_hex_id(),
                    "type": kind, "name": name})
            })
            .collect(),
    )
}
