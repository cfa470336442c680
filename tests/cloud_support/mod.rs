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

/// A public key the simulator accepts for a `keypair` step.
pub const PUBLIC_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm5LyvG4+rnhq6FQfDUiGr6PbZ2zc0e4mOYOo0y2f4e test";

/// `prepare` of job `job` in the directory `d`, with a recipe of one `keypair` step whose
/// `cloud:` block has owner `owner` and then `cloud_lines`: the smallest stage that logs in and
/// sends one request, for tests of how the driver reaches the cloud. The caller adds the login.
pub fn keypair_prepare(
    d: &std::path::Path,
    job: &str,
    owner: &str,
    cloud_lines: &str,
) -> crate::stage_run::StageRun {
    std::fs::write(
        d.join("response.json"),
        format!(r#"{{"id": {job}, "job_info": {{"project_id": 7}}}}"#),
    )
    .unwrap();
    let recipe = d.join("recipe.yaml");
    std::fs::write(
        &recipe,
        format!(
            "version: 1\ncloud:\n  owner: {owner}\n{cloud_lines}prepare:\n  - id: key\n    kind: keypair\n    public_key: \"{PUBLIC_KEY}\"\n"
        ),
    )
    .unwrap();
    crate::stage_run::StageRun::new(d, ["prepare"])
        .recipe(&recipe)
        .env("XDG_CACHE_HOME", d.join("cache-home"))
        .job_var("CI_JOB_ID", job)
        .timeout(std::time::Duration::from_secs(60))
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
