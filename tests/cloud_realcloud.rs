//! The OpenStack back end against the real OpenStack on loopback (../shared/realcloud).
//!
//! Gated by `realcloud_gate`: runs with EXECUTOR_REALCLOUD=1 (tests/realcloud/run.sh and
//! .ci/run set it after starting the cloud); fails without it under CI, says skipped elsewhere. Uses OS_CLIENT_CONFIG_FILE (default
//! /tmp/realcloud/clouds.yaml), clouds `realcloud-demo` (member) and `realcloud` (admin).

use std::collections::BTreeMap;
use std::time::Duration;

use executor_cloud::transport::{Call, Service};
use executor_cloud::*;
use reqwest::Method;
use serde_json::json;

use crate::cloud_support;
use crate::realcloud_gate::enabled;
use cloud_support::{boot, target};

/// A public key to import; nobody holds its private half.
const TEST_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm5LyvG4+rnhq6FQfDUiGr6PbZ2zc0e4mOYOo0y2f4e test";

fn settings(cloud: &str) -> CloudSettings {
    CloudSettings {
        cloud: Some(cloud.into()),
        clouds_yaml: Some(
            std::env::var("OS_CLIENT_CONFIG_FILE")
                .unwrap_or_else(|_| "/tmp/realcloud/clouds.yaml".into())
                .into(),
        ),
        request_timeout: Duration::from_secs(60),
        ..CloudSettings::default()
    }
}

async fn demo() -> OpenStack {
    OpenStack::connect(&settings("realcloud-demo"))
        .await
        .expect("connect as demo")
}

fn unique() -> String {
    format!(
        "{}{}",
        std::process::id(),
        uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .get(..6)
            .unwrap_or("x")
    )
}

fn owner(job: &str, tag: &str) -> Ownership {
    Ownership {
        runner: format!("rt-{tag}"),
        project: "42".into(),
        job: job.into(),
    }
}

/// A server of the real cloud's image on `flavor`.
fn spec(name: &str, flavor: &str) -> ServerSpec {
    ServerSpec {
        flavor: flavor.into(),
        image: "cirros-fake".into(),
        ..cloud_support::spec(name)
    }
}

fn quick_wait() -> WaitPolicy {
    WaitPolicy {
        timeout: Duration::from_secs(240),
        expected: Duration::from_secs(4),
        min_interval: Duration::from_millis(500),
        max_interval: Duration::from_secs(3),
    }
}

/// The floating IP is released, not merely disassociated: Neutron answers 404.
async fn assert_released(os: &OpenStack, fip_id: &str) {
    let call = Call::new(
        "show floating IP",
        fip_id,
        Method::GET,
        Service::Network,
        &["floatingips", fip_id],
    );
    assert_eq!(
        os.api().send(call).await.unwrap_err().kind,
        CloudErrorKind::NotFound
    );
}

/// A public flavor made by the admin (idempotent): used to force ERROR or exceed quota.
async fn admin_flavor(name: &str, vcpus: u32, disk: u32) {
    let admin = OpenStack::connect(&settings("realcloud"))
        .await
        .expect("connect as admin");
    if admin.resolve_flavor(name).await.is_ok() {
        return;
    }
    let call = Call::new(
        "create flavor",
        name,
        Method::POST,
        Service::Compute,
        &["flavors"],
    )
    .json(json!({ "flavor": { "name": name, "ram": 64, "vcpus": vcpus, "disk": disk } }));
    if let Err(e) = admin.api().send(call).await {
        // Another test process may have made it in the meantime.
        assert_eq!(e.kind, CloudErrorKind::Conflict, "{e}");
    }
}

#[tokio::test]
async fn authenticates_once_and_resolves_names() {
    if !enabled() {
        return;
    }
    let os = demo().await;
    let flavor = os.resolve_flavor("m1.tiny").await.unwrap();
    assert_eq!(os.resolve_flavor(&flavor.id).await.unwrap(), flavor);
    let image = os.resolve_image("cirros-fake").await.unwrap();
    assert_eq!(os.resolve_image(&image.id).await.unwrap().id, image.id);
    let net = os.resolve_network("private").await.unwrap();
    assert!(!net.external);
    assert!(os.resolve_network("public").await.unwrap().external);
    os.resolve_security_group("default").await.unwrap();
    let missing = os.resolve_flavor("no-such-flavor").await.unwrap_err();
    assert_eq!(missing.kind, CloudErrorKind::NotFound);
    assert!(missing.to_string().contains("no-such-flavor"), "{missing}");
    // Nova's name filter is a regex; ours must not be: "private" must not match "priv.*".
    assert_eq!(
        os.resolve_network("priv.*").await.unwrap_err().kind,
        CloudErrorKind::NotFound
    );
    assert_eq!(os.api().tokens_issued(), 1, "one token per process");
}

#[tokio::test]
async fn prepare_then_cleanup_leaves_nothing() {
    if !enabled() {
        return;
    }
    let os = demo().await;
    let u = unique();
    let me = owner(&format!("job{u}"), &u);
    let name = format!("ci-{u}-cycle");
    let key_name = job_keypair_name(&me);
    import_job_keypair(&os, &key_name, TEST_KEY, true)
        .await
        .unwrap();
    // Importing again (a repeated prepare) is not an error.
    let recommented = TEST_KEY.replace(" test", " other-comment");
    import_job_keypair(&os, &key_name, &recommented, true)
        .await
        .unwrap();
    let mut s = spec(&name, "m1.tiny");
    s.key_name = Some(key_name.clone());
    s.security_groups = vec!["default".into()];
    s.user_data = Some("#cloud-config\n{}\n".into());
    s.metadata = BTreeMap::from([("purpose".into(), "test".into())]);
    s.tags = vec!["executor".into()];
    s.description = Some("executor test".into());
    s.config_drive = Some(true);
    let server = boot(&os, &s, &me, &quick_wait()).await.1.unwrap();
    assert_eq!(server.status, "ACTIVE");
    assert!(me.owns(&server.metadata), "{:?}", server.metadata);
    assert_eq!(
        server.metadata.get("purpose").map(String::as_str),
        Some("test")
    );
    let addr = choose_address(
        &server,
        &AddressPolicy {
            network: Some("private".into()),
            ..AddressPolicy::default()
        },
    )
    .unwrap();
    assert!(addr.ip.to_string().starts_with("127.42.0."), "{addr:?}");

    let fip = attach_floating_ip(&os, &server.id, "public", None, &me)
        .await
        .unwrap();
    assert!(fip.address.starts_with("127.44.0."), "{fip:?}");
    assert_eq!(fip.description, me.marker());

    let mut t = target(&me, &name, Some(server.id.clone()));
    t.keypair_name = Some(key_name.clone());
    let report = cleanup(&os, &t, &CleanupPolicy::default()).await.unwrap();
    assert_eq!(report.servers_deleted, vec![server.id.clone()]);
    assert_eq!(report.floating_ips_released, vec![fip.id.clone()]);
    assert!(os.get_server(&server.id).await.unwrap().is_none());
    assert!(os.keypair_public_key(&key_name).await.unwrap().is_none());
    let ports = os.server_ports(&server.id).await.unwrap();
    assert!(ports.is_empty(), "ports left: {ports:?}");
    assert_released(&os, &fip.id).await;

    // A second cleanup (gitlab-runner may run it again) succeeds and does nothing.
    let again = cleanup(&os, &t, &CleanupPolicy::default()).await.unwrap();
    assert_eq!(again.servers_deleted, Vec::<String>::new());
}

#[tokio::test]
async fn cleanup_of_ci_1_spares_ci_10_ci_1_x_and_foreign_servers() {
    if !enabled() {
        return;
    }
    let os = demo().await;
    let u = unique();
    let base = format!("ci-{u}-1");
    let mine = owner("1", &u);
    let other_job = owner("10", &u);
    let stranger = owner("1", &format!("{u}-stranger"));
    let mut ids = Vec::new();
    for (name, who) in [
        (base.clone(), &mine),
        (format!("{base}0"), &other_job),
        (format!("{base}-x"), &mine),
        (base.clone(), &stranger),
    ] {
        let created = create_server(&os, &spec(&name, "m1.tiny"), who, &CreateOptions::default())
            .await
            .unwrap();
        ids.push((name, created.server_id));
    }
    // Without state (prepare died before saving the id): by exact name plus ownership only.
    let report = cleanup(&os, &target(&mine, &base, None), &CleanupPolicy::default())
        .await
        .unwrap();
    assert_eq!(report.servers_deleted, vec![ids[0].1.clone()]);
    for (name, id) in &ids[1..] {
        assert!(
            os.get_server(id).await.unwrap().is_some(),
            "{name} ({id}) was deleted"
        );
    }
    // An id in the state that points to a server without our metadata is refused.
    let refused = cleanup(
        &os,
        &target(&mine, &base, Some(ids[3].1.clone())),
        &CleanupPolicy::default(),
    )
    .await
    .unwrap();
    assert_eq!(refused.servers_refused, vec![ids[3].1.clone()]);
    assert!(os.get_server(&ids[3].1).await.unwrap().is_some());
    // Tidy up with the right owners.
    for (i, who) in [(1, &other_job), (2, &mine), (3, &stranger)] {
        cleanup(
            &os,
            &target(who, &ids[i].0, Some(ids[i].1.clone())),
            &CleanupPolicy::default(),
        )
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn an_error_boot_reports_the_fault_and_is_cleaned_up() {
    if !enabled() {
        return;
    }
    admin_flavor("executor-too-big", 1, 700000).await;
    let os = demo().await;
    let u = unique();
    let me = owner("e", &u);
    let name = format!("ci-{u}-error");
    let (server_id, waited) = boot(&os, &spec(&name, "executor-too-big"), &me, &quick_wait()).await;
    let err = waited.unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::BootError);
    assert!(err.message.contains("No valid host"), "{err}");
    let report = cleanup(
        &os,
        &target(&me, &name, Some(server_id.clone())),
        &CleanupPolicy::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.servers_deleted, vec![server_id]);
}

#[tokio::test]
async fn quota_exhaustion_names_the_quota() {
    if !enabled() {
        return;
    }
    admin_flavor("executor-many-cores", 64, 1).await;
    let os = demo().await;
    let u = unique();
    let me = owner("q", &u);
    let name = format!("ci-{u}-quota");
    let err = create_server(
        &os,
        &spec(&name, "executor-many-cores"),
        &me,
        &CreateOptions::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::Quota, "{err}");
    assert_eq!(err.status, Some(403));
    assert!(err.to_string().contains("cores"), "{err}");
    assert!(
        err.request_id
            .as_deref()
            .is_some_and(|r| r.starts_with("req-")),
        "{err:?}"
    );
    // Nothing was made, and cleanup of nothing succeeds.
    let report = cleanup(&os, &target(&me, &name, None), &CleanupPolicy::default())
        .await
        .unwrap();
    assert!(report.servers_deleted.is_empty());
}

#[tokio::test]
async fn the_reaper_finds_and_deletes_orphans_by_the_real_services_timestamps() {
    if !enabled() {
        return;
    }
    let os = demo().await;
    let u = unique();
    // Per-job key pair names need numeric project and job ids, as GitLab's are.
    let me = Ownership {
        runner: format!("rt-{u}"),
        project: "42".into(),
        job: "9001".into(),
    };
    let key_name = job_keypair_name(&me);
    import_job_keypair(&os, &key_name, TEST_KEY, true)
        .await
        .unwrap();
    // A server deleted by hand, without the job's cleanup: its floating IP stays behind.
    let server = boot(
        &os,
        &spec(&format!("ci-{u}-orphan"), "m1.tiny"),
        &me,
        &quick_wait(),
    )
    .await
    .1
    .unwrap();
    let fip = attach_floating_ip(&os, &server.id, "public", None, &me)
        .await
        .unwrap();
    os.delete_server(&server.id).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while os.get_server(&server.id).await.unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "server never went away"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let now = std::time::SystemTime::now() + Duration::from_secs(2);
    let in_use = std::collections::HashSet::new();
    let keypairs = reaper::orphaned_keypairs(
        &os,
        &me.runner,
        os.list_keypair_names().await.unwrap(),
        &in_use,
        Duration::ZERO,
        now,
    )
    .await
    .unwrap();
    assert_eq!(keypairs.len(), 1, "{keypairs:?}");
    assert_eq!(keypairs[0].owner, me);
    // Nova's zone-less created_at was read as UTC: the key pair is seconds old, not hours.
    assert!(keypairs[0].age < Duration::from_secs(600), "{keypairs:?}");
    let mut fips = Vec::new();
    for _ in 0..60 {
        fips = reaper::orphaned_floating_ips(&os, &me.runner, Duration::ZERO, now)
            .await
            .unwrap();
        if !fips.is_empty() {
            break;
        }
        // Neutron unbinds the floating IP when Nova's port goes, which may trail the server.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(fips.len(), 1, "{fips:?}");
    assert!(fips[0].age < Duration::from_secs(600), "{fips:?}");
    // Not old enough for a 1 h threshold.
    assert!(
        reaper::orphaned_keypairs(
            &os,
            &me.runner,
            os.list_keypair_names().await.unwrap(),
            &in_use,
            Duration::from_secs(3600),
            now,
        )
        .await
        .unwrap()
        .is_empty()
    );

    let reaped = executor::commands::gc::reap(
        &os,
        &me.runner,
        Duration::ZERO,
        false,
        false,
        &CleanupPolicy::default(),
    )
    .await
    .unwrap();
    assert_eq!(reaped.len(), 2, "{reaped:?}");
    assert!(reaped.iter().all(|r| r.error.is_none()), "{reaped:?}");
    assert!(os.keypair_public_key(&key_name).await.unwrap().is_none());
    assert_released(&os, &fip.id).await;
}
