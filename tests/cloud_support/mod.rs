//! Helpers shared by the back-end tests that drive the simulated cloud.

use executor::cloud::*;

/// A small server on the simulator's seeded flavor, image and network.
pub fn spec(name: &str) -> ServerSpec {
    ServerSpec {
        name: name.into(),
        flavor: "m1.tiny".into(),
        image: "cirros-0.6.2".into(),
        networks: vec![NetworkAttachment {
            network: Some("private".into()),
            port: None,
            fixed_ip: None,
        }],
        ..ServerSpec::default()
    }
}

/// What a job's cleanup knows: its ownership, the server's name and maybe its id.
pub fn target(owner: &Ownership, name: &str, id: Option<String>) -> CleanupTarget {
    CleanupTarget {
        owner: owner.clone(),
        server_id: id,
        server_name: Some(name.into()),
        floating_ip_ids: vec![],
        keypair_name: None,
        volume_ids: vec![],
    }
}
