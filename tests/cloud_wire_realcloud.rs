//! tests/recipes/wire.yaml on the real OpenStack: what `cloud_wire` reads off the simulator's
//! request log, seen here in what Nova and Neutron made of the request (several security
//! groups, an existing port, a fixed IP, the availability zone, the server group, flavor and
//! image by id). The custom scheduler hint is only accepted here; Nova shows no hints back.
//! Gated on EXECUTOR_REALCLOUD=1 (see tests/realcloud/run.sh).

use std::path::{Path, PathBuf};
use std::time::Duration;

use executor_cloud::transport::{Call, Service};
use executor_cloud::*;
use reqwest::Method;
use serde_json::{Value, json};

use crate::realcloud_gate::enabled;
use crate::stage_run::StageRun;

fn clouds_yaml() -> String {
    std::env::var("OS_CLIENT_CONFIG_FILE").unwrap_or_else(|_| "/tmp/realcloud/clouds.yaml".into())
}

fn recipe() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/recipes/wire.yaml")
}

async fn demo() -> OpenStack {
    OpenStack::connect(&CloudSettings {
        cloud: Some("realcloud-demo".into()),
        clouds_yaml: Some(clouds_yaml().into()),
        ..CloudSettings::default()
    })
    .await
    .expect("connect as demo")
}

async fn send(
    os: &OpenStack,
    method: Method,
    service: Service,
    path: &[&str],
    body: Option<Value>,
) -> Value {
    let mut call = Call::new("wire test", path.join("/"), method, service, path);
    if let Some(b) = body {
        call = call.json(b);
    }
    os.api()
        .send(call)
        .await
        .unwrap_or_else(|e| panic!("{path:?}: {e}"))
        .body
}

async fn delete(os: &OpenStack, service: Service, path: &[&str]) {
    let call = Call::new("wire test", path.join("/"), Method::DELETE, service, path);
    let _ = os.api().send(call).await;
}

#[tokio::test]
async fn create_server_options_reach_nova_and_neutron() {
    if !enabled() {
        return;
    }
    let os = demo().await;
    let u = uuid::Uuid::new_v4().simple().to_string();
    let prefix = &u[..6];
    let network = os.resolve_network("private").await.unwrap().named.id;
    let flavor = os.resolve_flavor("m1.tiny").await.unwrap().id;
    let image = os.resolve_image("cirros-fake").await.unwrap().id;
    let port = send(
        &os,
        Method::POST,
        Service::Network,
        &["ports"],
        Some(json!({"port": {"network_id": network, "name": format!("wire-{prefix}")}})),
    )
    .await;
    let port = port["port"]["id"].as_str().unwrap().to_string();
    let sg = send(
        &os,
        Method::POST,
        Service::Network,
        &["security-groups"],
        Some(json!({"security_group": {"name": format!("wire-{prefix}")}})),
    )
    .await;
    let sg = sg["security_group"]["id"].as_str().unwrap().to_string();
    let group_name = format!("wire-{prefix}");
    let group = send(
        &os,
        Method::POST,
        Service::Compute,
        &["os-server-groups"],
        Some(json!({"server_group": {"name": group_name, "policy": "anti-affinity"}})),
    )
    .await;
    let group = group["server_group"]["id"].as_str().unwrap().to_string();
    // Neutron lets a member choose a fixed IP only on a network of its own project, so the
    // second NIC goes on one made here (its addresses are never connected to).
    let own = send(
        &os,
        Method::POST,
        Service::Network,
        &["networks"],
        Some(json!({"network": {"name": format!("wire-{prefix}")}})),
    )
    .await;
    let own = own["network"]["id"].as_str().unwrap().to_string();
    let third = 100 + u.as_bytes()[6] as u32 % 100;
    send(
        &os,
        Method::POST,
        Service::Network,
        &["subnets"],
        Some(json!({"subnet": {"network_id": own, "ip_version": 4,
            "cidr": format!("127.46.{third}.0/24"), "name": format!("wire-{prefix}"),
            "enable_dhcp": false}})),
    )
    .await;
    let fixed_ip = format!("127.46.{third}.77");

    let dir = tempfile::tempdir().unwrap();
    let job_id = format!("{}", 300000 + std::process::id() % 1000);
    std::fs::write(
        dir.path().join("response.json"),
        format!(r#"{{"id": {job_id}, "job_info": {{"project_id": 42}}}}"#),
    )
    .unwrap();
    let stage = |args: &[&str]| {
        StageRun::new(dir.path(), args)
            .recipe(recipe())
            .env("OS_CLIENT_CONFIG_FILE", clouds_yaml())
            .env("OS_CLOUD", "realcloud-demo")
            .job_var("CI_JOB_ID", &job_id)
            .job_var("TEST_PREFIX", prefix)
            .job_var("TEST_OWNER", format!("wire-{prefix}"))
            .job_var("TEST_FLAVOR_ID", &flavor)
            .job_var("TEST_IMAGE_ID", &image)
            .job_var("TEST_PORT_ID", &port)
            .job_var("TEST_NETWORK", format!("wire-{prefix}"))
            .job_var("TEST_FIXED_IP", &fixed_ip)
            .job_var("TEST_SECURITY_GROUP", &sg)
            .job_var("TEST_AZ", "nova")
            .job_var("TEST_SERVER_GROUP", &group_name)
            .timeout(Duration::from_secs(400))
    };
    let out = stage(&["prepare"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let state: Value = std::fs::read(dir.path().join("executor-state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let id = state["server_id"].as_str().unwrap_or_default().to_string();
    // Cleanup runs whatever the checks find; then the port must still be there.
    let seen = Expected {
        id: &id,
        security_group: &format!("wire-{prefix}"),
        fixed_ip: &fixed_ip,
        image: &image,
        flavor: &flavor,
        port: &port,
        group: &group,
    };
    let result = if out.status.success() {
        check(&os, &seen).await
    } else {
        Err(format!("prepare: {stderr}"))
    };
    let cleaned = stage(&["cleanup"]).output().unwrap();
    let port_left = os
        .api()
        .send(Call::new(
            "wire test",
            "port",
            Method::GET,
            Service::Network,
            &["ports", &port],
        ))
        .await
        .is_ok();
    delete(&os, Service::Network, &["ports", &port]).await;
    delete(&os, Service::Compute, &["os-server-groups", &group]).await;
    delete(&os, Service::Network, &["networks", &own]).await;
    // The security group is in use until Neutron has let go of the server's ports.
    for _ in 0..30 {
        let call = Call::new(
            "wire test",
            "sg",
            Method::DELETE,
            Service::Network,
            &["security-groups", &sg],
        );
        if os.api().send(call).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(
        cleaned.status.success(),
        "cleanup: {}",
        String::from_utf8_lossy(&cleaned.stderr)
    );
    assert!(port_left, "cleanup left the site's port alone");
}

/// What the server should show.
struct Expected<'a> {
    id: &'a str,
    security_group: &'a str,
    fixed_ip: &'a str,
    image: &'a str,
    flavor: &'a str,
    port: &'a str,
    group: &'a str,
}

/// The first difference between what Nova and Neutron show and what the recipe asked for.
async fn check(os: &OpenStack, e: &Expected<'_>) -> Result<(), String> {
    let ensure = |ok: bool, what: &str, seen: &Value| {
        if ok {
            Ok(())
        } else {
            Err(format!("{what}: {seen}"))
        }
    };
    let server = send(os, Method::GET, Service::Compute, &["servers", e.id], None).await;
    let server = &server["server"];
    let groups: Vec<&str> = server["security_groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g["name"].as_str())
        .collect();
    ensure(
        groups.contains(&"default") && groups.contains(&e.security_group),
        "both security groups",
        server,
    )?;
    ensure(
        server["addresses"][format!("wire-{}", e.security_group.trim_start_matches("wire-"))]
            .to_string()
            .contains(&format!("\"{}\"", e.fixed_ip)),
        "the fixed IP",
        server,
    )?;
    ensure(
        server["OS-EXT-AZ:availability_zone"] == "nova",
        "the availability zone",
        server,
    )?;
    ensure(server["image"]["id"] == e.image, "the image by id", server)?;
    ensure(
        server["flavor"]["id"] == e.flavor || server["flavor"]["original_name"] == "m1.tiny",
        "the flavor by id",
        server,
    )?;
    let p = send(os, Method::GET, Service::Network, &["ports", e.port], None).await;
    ensure(
        p["port"]["device_id"] == e.id,
        "the existing port is the server's",
        &p,
    )?;
    let g = send(
        os,
        Method::GET,
        Service::Compute,
        &["os-server-groups", e.group],
        None,
    )
    .await;
    ensure(
        g["server_group"]["members"]
            .as_array()
            .is_some_and(|m| m.iter().any(|x| x == e.id)),
        "the server group has the server",
        &g,
    )
}
