//! What the book promises for `create_server`, read off the wire: the real binary runs
//! tests/recipes/wire.yaml against the simulator, and each assertion is on the request the
//! driver sent, as the simulator's request log recorded it (issue 15, "Promised, never seen on
//! the wire"). The same recipe runs on the real OpenStack in `cloud_wire_realcloud`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use executor_simulator::{CLOUD_NAME, SimOptions, SshMode};
use serde_json::{Value, json};

use crate::sim_support::{self, Api};
use crate::stage_run::StageRun;

const SERVERS: &str = "/compute/v2.1/servers";

fn recipe() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/recipes/wire.yaml")
}

async fn start() -> Api {
    sim_support::start(SimOptions {
        ssh_mode: SshMode::Disabled,
        build_delay: Duration::from_millis(100),
        ..SimOptions::default()
    })
    .await
}

/// The flavor's id, found by its name.
async fn flavor_id(api: &Api, name: &str) -> String {
    let r = api.get("/compute/v2.1/flavors").await;
    r.body["flavors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .and_then(|f| f["id"].as_str())
        .unwrap_or_else(|| panic!("no flavor {name}: {:?}", r.body))
        .to_string()
}

/// What the test made beforehand, by id, and what it expects to see in the create request.
struct Made {
    flavor: String,
    image: String,
    network: String,
    port: String,
    security_group: String,
    server_group: String,
    fixed_ip: &'static str,
}

async fn make(api: &Api) -> Made {
    let network = api.network_id("private").await;
    let port = api
        .post(
            "/network/v2.0/ports",
            json!({"port": {"network_id": network, "name": "wire-port"}}),
        )
        .await;
    assert_eq!(port.status, 201, "{:?}", port.body);
    let sg = api
        .post(
            "/network/v2.0/security-groups",
            json!({"security_group": {"name": "wire-ssh"}}),
        )
        .await;
    assert_eq!(sg.status, 201, "{:?}", sg.body);
    let group = api
        .post(
            "/compute/v2.1/os-server-groups",
            json!({"server_group": {"name": "wire-group", "policies": ["anti-affinity"]}}),
        )
        .await;
    assert_eq!(group.status, 200, "{:?}", group.body);
    Made {
        flavor: flavor_id(api, "m1.small").await,
        image: api.image_id("cirros-0.6.2").await,
        network,
        port: port.body["port"]["id"].as_str().unwrap().to_string(),
        security_group: sg.body["security_group"]["id"]
            .as_str()
            .unwrap()
            .to_string(),
        server_group: group.body["server_group"]["id"]
            .as_str()
            .unwrap()
            .to_string(),
        fixed_ip: "127.77.3.77",
    }
}

fn stage(dir: &Path, made: &Made, args: &[&str]) -> StageRun {
    let clouds = dir.join("clouds.yaml");
    StageRun::new(dir, args)
        .recipe(recipe())
        .env("OS_CLIENT_CONFIG_FILE", clouds)
        .env("OS_CLOUD", CLOUD_NAME)
        .env("XDG_CACHE_HOME", dir.join("cache-home"))
        .job_var("CI_JOB_ID", "51")
        .job_var("TEST_PREFIX", "wire")
        .job_var("TEST_OWNER", "wire")
        .job_var("TEST_FLAVOR_ID", &made.flavor)
        .job_var("TEST_IMAGE_ID", &made.image)
        .job_var("TEST_PORT_ID", &made.port)
        .job_var("TEST_NETWORK", "private")
        .job_var("TEST_FIXED_IP", made.fixed_ip)
        .job_var("TEST_SECURITY_GROUP", &made.security_group)
        .job_var("TEST_AZ", "nova")
        // By name: the driver turns it into the id Nova's `group` hint needs.
        .job_var("TEST_SERVER_GROUP", "wire-group")
        .timeout(Duration::from_secs(120))
}

async fn run(dir: &Path, made: &Made, args: &'static [&'static str]) -> String {
    let run = stage(dir, made, args);
    let out = tokio::task::spawn_blocking(move || run.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{}: {stderr}", args[0]);
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_server_sends_every_placement_and_network_option_it_is_given() {
    let api = start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    api.sim.write_clouds_yaml(d).unwrap();
    std::fs::write(
        d.join("response.json"),
        r#"{"id": 51, "job_info": {"project_id": 7}}"#,
    )
    .unwrap();
    let made = make(&api).await;
    let before = api.sim.request_log().len();
    run(d, &made, &["prepare"]).await;

    let log = api.sim.request_log();
    let sent: Vec<_> = log.records.iter().skip(before).cloned().collect();
    let creates: Vec<Value> = sent
        .iter()
        .filter(|r| r.method == "POST" && r.route == SERVERS)
        .filter_map(|r| r.body.clone())
        .collect();
    assert_eq!(creates.len(), 1, "one create request: {creates:?}");
    let body = &creates[0];
    let server = &body["server"];

    // Several security groups on one server, in the recipe's order.
    let groups: Vec<&str> = server["security_groups"]
        .as_array()
        .expect("security_groups")
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(groups.len(), 2, "{body}");
    assert_eq!(groups[1], made.security_group, "{body}");
    assert_ne!(groups[0], groups[1], "{body}");

    // An existing port, then a network with a fixed IP, in NIC order.
    assert_eq!(
        server["networks"],
        json!([{"port": made.port}, {"uuid": made.network, "fixed_ip": made.fixed_ip}]),
        "{body}"
    );

    // Availability zone, the recipe's scheduler hint as given, the server group as `group`.
    assert_eq!(server["availability_zone"], "nova", "{body}");
    assert_eq!(
        body["os:scheduler_hints"],
        json!({"executor_wire": "ci-wire-51", "group": made.server_group}),
        "{body}"
    );

    // Flavor and image given by id reach Nova as those ids; the image was fetched by its id,
    // never searched by name.
    assert_eq!(server["flavorRef"], made.flavor.as_str(), "{body}");
    assert_eq!(server["imageRef"], made.image.as_str(), "{body}");
    let image_gets: Vec<String> = sent
        .iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/image/v2/images"))
        .map(|r| format!("{}?{}", r.path, r.query.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        image_gets,
        vec![format!("/image/v2/images/{}?", made.image)],
        "the image is fetched by id, not listed by name"
    );

    // Nova did as asked: the server has both NICs, the fixed IP, and is in the group.
    let id = sim_server_id(&api).await;
    let shown = api.server(&id).await.body;
    let addrs = shown["server"]["addresses"]["private"].to_string();
    assert!(addrs.contains(made.fixed_ip), "{shown}");
    let port = api.get(&format!("/network/v2.0/ports/{}", made.port)).await;
    assert_eq!(
        port.body["port"]["device_id"],
        id.as_str(),
        "{:?}",
        port.body
    );

    run(d, &made, &["cleanup"]).await;
    // The port was the site's, not the job's: cleanup leaves it.
    let port = api.get(&format!("/network/v2.0/ports/{}", made.port)).await;
    assert_eq!(port.status, 200, "the existing port survives cleanup");
    assert_eq!(api.sim.counts().servers, 0);
}

async fn sim_server_id(api: &Api) -> String {
    let ids = api.sim.server_ids();
    assert_eq!(ids.len(), 1, "{ids:?}");
    ids[0].clone()
}
