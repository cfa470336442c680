//! The engine's own OpenStack back end (engine/cloud) against the simulator: the pieces other
//! areas build on must fit together (auth via the written clouds.yaml, create, wait, address,
//! console host keys, floating IP, cleanup, and the ci-1/ci-10 trap).

use std::collections::BTreeMap;
use std::time::Duration;

use executor_cloud::*;
use executor_simulator::{APPCRED_CLOUD_NAME, CLOUD_NAME, SimCloud, SimOptions, SshMode};

use crate::cloud_support;
use cloud_support::{boot, spec, target};

fn settings(sim_dir: &std::path::Path, cloud: &str) -> CloudSettings {
    CloudSettings {
        cloud: Some(cloud.into()),
        clouds_yaml: Some(sim_dir.join("clouds.yaml")),
        request_timeout: Duration::from_secs(20),
        ..CloudSettings::default()
    }
}

fn owner(job: &str) -> Ownership {
    Ownership {
        runner: "sim-test".into(),
        project: "42".into(),
        job: job.into(),
    }
}

fn quick_wait() -> WaitPolicy {
    WaitPolicy {
        timeout: Duration::from_secs(30),
        expected: Duration::from_millis(100),
        min_interval: Duration::from_millis(50),
        max_interval: Duration::from_millis(200),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_cloud_backend_runs_a_full_cycle_on_the_simulator() {
    let sim = SimCloud::start(SimOptions {
        build_delay: Duration::from_millis(100),
        ssh_mode: SshMode::Embedded,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    sim.write_clouds_yaml(dir.path()).unwrap();
    let os = OpenStack::connect(&settings(dir.path(), CLOUD_NAME))
        .await
        .expect("password login");
    let appcred = OpenStack::connect(&settings(dir.path(), APPCRED_CLOUD_NAME))
        .await
        .expect("application-credential login");
    appcred
        .resolve_flavor("m1.tiny")
        .await
        .expect("app-cred token works");

    assert!(os.resolve_network("public").await.unwrap().external);
    assert_eq!(
        os.resolve_network("priv.*").await.unwrap_err().kind,
        CloudErrorKind::NotFound
    );

    let me = owner("1");
    let key_name = job_keypair_name(&me);
    let key =
        russh::keys::PrivateKey::random(&mut rand::rng(), russh::keys::ssh_key::Algorithm::Ed25519)
            .unwrap();
    let pubkey = key.public_key().to_openssh().unwrap();
    import_job_keypair(&os, &key_name, &pubkey, false)
        .await
        .unwrap();
    import_job_keypair(&os, &key_name, &pubkey, false)
        .await
        .expect("a repeated import is fine");

    let mut s = spec("ci-1");
    s.key_name = Some(key_name.clone());
    s.security_groups = vec!["default".into()];
    s.metadata = BTreeMap::from([("purpose".into(), "test".into())]);
    s.tags = vec!["executor".into()];
    let server = boot(&os, &s, &me, &quick_wait()).await.1.unwrap();
    assert!(me.owns(&server.metadata), "{:?}", server.metadata);
    let addr = choose_address(
        &server,
        &AddressPolicy {
            network: Some("private".into()),
            ..AddressPolicy::default()
        },
    )
    .unwrap();
    assert!(addr.ip.to_string().starts_with("127.77."), "{addr:?}");

    // A neighbour whose name the regex `ci-1` also matches, owned by another job.
    let other = owner("10");
    let created10 = create_server(&os, &spec("ci-10"), &other, &CreateOptions::default())
        .await
        .unwrap();

    let fip = attach_floating_ip(&os, &server.id, "public", None, &me)
        .await
        .unwrap();
    assert!(fip.address.starts_with("127.78."), "{fip:?}");

    let mut t = target(&me, "ci-1", Some(server.id.clone()));
    t.keypair_name = Some(key_name.clone());
    let report = cleanup(&os, &t, &CleanupPolicy::default()).await.unwrap();
    assert_eq!(report.servers_deleted, vec![server.id.clone()]);
    assert_eq!(report.floating_ips_released, vec![fip.id.clone()]);
    // The neighbour survives.
    assert!(os.get_server(&created10.server_id).await.unwrap().is_some());
    let c = sim.counts();
    assert_eq!((c.servers, c.floating_ips, c.keypairs), (1, 0, 0), "{c:?}");
}
