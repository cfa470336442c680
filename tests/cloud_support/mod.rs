//! Helpers shared by the back-end tests that drive the simulated cloud.

use executor_cloud::*;

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

/// Waits for ACTIVE with no cancellation and no status reports.
#[allow(dead_code)] // not every test binary that shares this module waits
pub async fn wait_for(
    cloud: &dyn Cloud,
    id: &str,
    policy: &WaitPolicy,
) -> Result<Server, CloudError> {
    let cancel = tokio_util::sync::CancellationToken::new();
    wait_active(cloud, id, policy, &cancel, &mut |_: &str| {}).await
}

/// Creates the server (one request) and waits for ACTIVE: its id, and how the wait ended.
#[allow(dead_code)]
pub async fn boot(
    cloud: &dyn Cloud,
    spec: &ServerSpec,
    me: &Ownership,
    policy: &WaitPolicy,
) -> (String, Result<Server, CloudError>) {
    let created = create_server(cloud, spec, me, &CreateOptions::default())
        .await
        .unwrap();
    assert_eq!(created.requests, 1);
    let waited = wait_for(cloud, &created.server_id, policy).await;
    (created.server_id, waited)
}
