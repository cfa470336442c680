//! The simulator's HTTP APIs, checked with raw requests: shapes, status codes and Nova's
//! name-filter semantics.

use crate::sim_support;

use std::time::Duration;

use executor_simulator::{APP_CRED_NAME, APP_CRED_SECRET};
use serde_json::{Value, json};
use sim_support::{api_opts, start};

#[tokio::test]
async fn keystone_discovery_password_and_application_credentials() {
    let api = start(api_opts()).await;
    let r = api.http.get(api.url("/identity/")).send().await.unwrap();
    assert_eq!(r.status(), 300);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["versions"]["values"][0]["id"], "v3.14");

    // Password token: project scoped, catalog with the three services.
    let r = api
        .http
        .post(api.url("/identity/v3/auth/tokens"))
        .json(&sim_support::password_auth())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(r.headers().contains_key("x-subject-token"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token"]["project"]["name"], "demo");
    let types: Vec<&str> = body["token"]["catalog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    for t in ["compute", "image", "network", "identity"] {
        assert!(types.contains(&t), "catalog lacks {t}: {types:?}");
    }

    // Wrong password: Keystone's 401 body.
    let mut bad = sim_support::password_auth();
    bad["auth"]["identity"]["password"]["user"]["password"] = json!("nope");
    let r = api
        .http
        .post(api.url("/identity/v3/auth/tokens"))
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], 401);

    // Application credential by id, and by name + user.
    let by_id = json!({"auth": {"identity": {"methods": ["application_credential"],
        "application_credential": {"id": api.sim.app_credential_id(), "secret": APP_CRED_SECRET}}}});
    let by_name = json!({"auth": {"identity": {"methods": ["application_credential"],
        "application_credential": {"name": APP_CRED_NAME, "secret": APP_CRED_SECRET,
            "user": {"name": "demo", "domain": {"name": "Default"}}}}}});
    for body in [by_id, by_name] {
        let r = api
            .http
            .post(api.url("/identity/v3/auth/tokens"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["token"]["methods"][0], "application_credential");
        assert_eq!(v["token"]["project"]["id"], api.sim.project_id().as_str());
    }
    let wrong = json!({"auth": {"identity": {"methods": ["application_credential"],
        "application_credential": {"id": api.sim.app_credential_id(), "secret": "guess"}}}});
    let r = api
        .http
        .post(api.url("/identity/v3/auth/tokens"))
        .json(&wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Other services want a token.
    let r = api
        .http
        .get(api.url("/compute/v2.1/servers"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        format!("Keystone uri=\"{}\"", api.sim.auth_url()).as_str()
    );
}

#[tokio::test]
async fn nova_microversions_are_negotiated_and_bounded() {
    let api = start(api_opts()).await;
    let r = api
        .send(
            "GET",
            "/compute/v2.1/servers",
            None,
            &[("OpenStack-API-Version", "compute 2.79")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["openstack-api-version"], "compute 2.79");
    assert_eq!(r.headers["x-openstack-nova-api-version"], "2.79");
    let r = api
        .send(
            "GET",
            "/compute/v2.1/servers",
            None,
            &[("X-OpenStack-Nova-API-Version", "latest")],
        )
        .await;
    assert_eq!(r.headers["x-openstack-nova-api-version"], "2.96");
    let r = api
        .send(
            "GET",
            "/compute/v2.1/servers",
            None,
            &[("OpenStack-API-Version", "compute 2.200")],
        )
        .await;
    assert_eq!(r.status, 406);
    assert_eq!(
        r.body["computeFault"]["message"],
        "Version 2.200 is not supported by the API. Minimum is 2.1 and maximum is 2.96."
    );
    let r = api.get("/compute/v2.1/servers").await;
    assert_eq!(r.headers["openstack-api-version"], "compute 2.1");
    let v = api.get("/compute/v2.1/").await;
    assert_eq!(v.body["version"]["version"], "2.96");
}

#[tokio::test]
async fn nova_name_filter_is_a_regex_matched_anywhere() {
    let api = start(api_opts()).await;
    for name in ["ci-1", "ci-10", "CI-1.x", "job-ci-1-b", "ci-2"] {
        api.create_ok(name, json!({})).await;
    }
    let names = |v: &Value| -> Vec<String> {
        let mut n: Vec<String> = v["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    };
    // The trap: `ci-1` is not an exact match.
    let r = api.get("/compute/v2.1/servers?name=ci-1").await;
    assert_eq!(names(&r.body), ["CI-1.x", "ci-1", "ci-10", "job-ci-1-b"]);
    // Anchored and escaped, it is.
    let r = api.get("/compute/v2.1/servers?name=%5Eci%5C-1%24").await;
    assert_eq!(names(&r.body), ["ci-1"]);
    let r = api
        .get("/compute/v2.1/servers/detail?name=%5Eci-1%24")
        .await;
    assert_eq!(names(&r.body), ["ci-1"]);
    // `.` is a regex dot.
    let r = api.get("/compute/v2.1/servers?name=ci.1").await;
    assert_eq!(names(&r.body), ["CI-1.x", "ci-1", "ci-10", "job-ci-1-b"]);
    let r = api
        .get("/compute/v2.1/servers?name=%5Eci-%5B12%5D%24")
        .await;
    assert_eq!(names(&r.body), ["ci-1", "ci-2"]);
}

#[tokio::test]
async fn nova_servers_life_cycle_filters_and_pagination() {
    let api = start(api_opts()).await;
    let keyline =
        russh::keys::PrivateKey::random(&mut rand::rng(), russh::keys::ssh_key::Algorithm::Ed25519)
            .unwrap()
            .public_key()
            .to_openssh()
            .unwrap();
    let r = api
        .send(
            "POST",
            "/compute/v2.1/os-keypairs",
            Some(json!({"keypair": {"name": "k1", "public_key": keyline}})),
            &[("OpenStack-API-Version", "compute 2.79")],
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["keypair"]["fingerprint"].as_str().unwrap().len(), 47);
    let dup = api
        .send(
            "POST",
            "/compute/v2.1/os-keypairs",
            Some(json!({"keypair": {"name": "k1", "public_key": keyline}})),
            &[],
        )
        .await;
    assert_eq!(dup.status, 409);
    let r = api
        .post(
            "/compute/v2.1/os-keypairs",
            json!({"keypair": {"name": "k2", "public_key": "ssh-ed25519 garbage"}}),
        )
        .await;
    assert_eq!(r.status, 400);

    let user_data = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        "#cloud-config\n",
    );
    let id = api
        .create_ok(
            "web-1",
            json!({"key_name": "k1", "metadata": {"role": "web"}, "tags": ["blue", "ci"],
        "user_data": user_data, "config_drive": true, "availability_zone": "nova",
        "security_groups": [{"name": "default"}]}),
        )
        .await;
    let building = api.server(&id).await;
    assert_eq!(building.body["server"]["status"], "BUILD");
    assert_eq!(building.body["server"]["OS-EXT-STS:vm_state"], "building");
    let s = api.wait_status(&id, "ACTIVE").await;
    assert_eq!(s["key_name"], "k1");
    assert_eq!(s["metadata"]["role"], "web");
    assert_eq!(s["tags"], json!(["blue", "ci"]));
    assert_eq!(s["config_drive"], "True");
    assert_eq!(s["flavor"]["original_name"], "m1.tiny");
    assert!(
        s["addresses"]["private"][0]["addr"]
            .as_str()
            .unwrap()
            .starts_with("127.77.")
    );
    assert!(s.get("fault").is_none());
    let other = api.create_ok("web-2", json!({"tags": ["green"]})).await;
    api.wait_status(&other, "ACTIVE").await;

    // Filters.
    let count = |v: &Value| v["servers"].as_array().unwrap().len();
    assert_eq!(
        count(&api.get("/compute/v2.1/servers?tags=blue").await.body),
        1
    );
    assert_eq!(
        count(&api.get("/compute/v2.1/servers?tags=blue,green").await.body),
        0
    );
    assert_eq!(
        count(
            &api.get("/compute/v2.1/servers?tags-any=blue,green")
                .await
                .body
        ),
        2
    );
    assert_eq!(
        count(
            &api.get("/compute/v2.1/servers?not-tags-any=blue")
                .await
                .body
        ),
        1
    );
    assert_eq!(
        count(&api.get("/compute/v2.1/servers?status=ACTIVE").await.body),
        2
    );
    assert_eq!(
        count(&api.get("/compute/v2.1/servers?status=ERROR").await.body),
        0
    );

    // Pagination: newest first, marker continues after the given id, a next link is offered.
    let p1 = api.get("/compute/v2.1/servers/detail?limit=1").await;
    assert_eq!(p1.body["servers"][0]["id"], other.as_str());
    let next = p1.body["servers_links"][0]["href"].as_str().unwrap();
    assert!(next.contains(&format!("marker={other}")), "{next}");
    let p2 = api
        .get(&format!(
            "/compute/v2.1/servers/detail?limit=1&marker={other}"
        ))
        .await;
    assert_eq!(p2.body["servers"][0]["id"], id.as_str());
    let p3 = api
        .get(&format!("/compute/v2.1/servers?limit=1&marker={id}"))
        .await;
    assert_eq!(count(&p3.body), 0);
    assert_eq!(
        api.get("/compute/v2.1/servers?marker=nope").await.status,
        400
    );

    // Metadata and tag sub-resources.
    assert_eq!(
        api.get(&format!("/compute/v2.1/servers/{id}/metadata"))
            .await
            .body["metadata"]["role"],
        "web"
    );
    assert_eq!(
        api.get(&format!("/compute/v2.1/servers/{id}/tags"))
            .await
            .body["tags"],
        json!(["blue", "ci"])
    );

    // Delete: 204, DELETED, then 404; its port is gone too.
    let before = api.sim.counts();
    let r = api.delete(&format!("/compute/v2.1/servers/{id}")).await;
    assert_eq!(r.status, 204);
    api.wait_gone(&id).await;
    let after = api.sim.counts();
    assert_eq!(after.servers, before.servers - 1);
    assert_eq!(after.ports, before.ports - 1);
    let gone = api.server(&id).await;
    assert_eq!(
        gone.body["itemNotFound"]["message"],
        format!("Instance {id} could not be found.")
    );

    let r = api.delete("/compute/v2.1/os-keypairs/k1").await;
    assert_eq!(r.status, 202);
    assert_eq!(api.get("/compute/v2.1/os-keypairs/k1").await.status, 404);
}

#[tokio::test]
async fn deleted_status_is_visible_before_404() {
    let api = start(executor_simulator::SimOptions {
        delete_delay: Duration::from_secs(2),
        ..api_opts()
    })
    .await;
    let id = api.create_ok("del-1", json!({})).await;
    api.wait_status(&id, "ACTIVE").await;
    assert_eq!(
        api.delete(&format!("/compute/v2.1/servers/{id}"))
            .await
            .status,
        204
    );
    assert_eq!(api.server(&id).await.body["server"]["status"], "DELETED");
    // Listings no longer include it.
    assert_eq!(
        api.get("/compute/v2.1/servers").await.body["servers"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    api.wait_gone(&id).await;
}

#[tokio::test]
async fn create_validation_errors_are_novas() {
    let api = start(api_opts()).await;
    let r = api.create_server("x", json!({"flavorRef": "99"})).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body["badRequest"]["message"],
        "Flavor 99 could not be found."
    );
    let r = api.create_server("x", json!({"imageRef": "nope"})).await;
    assert_eq!(
        r.body["badRequest"]["message"],
        "Image nope could not be found."
    );
    let r = api.create_server("x", json!({"key_name": "nokey"})).await;
    assert_eq!(
        r.body["badRequest"]["message"],
        "Invalid key_name provided."
    );
    let r = api
        .create_server("x", json!({"networks": [{"uuid": "nonet"}]}))
        .await;
    assert_eq!(r.status, 400);
    let r = api.create_server("x", json!({"user_data": "%%%"})).await;
    assert_eq!(
        r.body["badRequest"]["message"],
        "User data needs to be valid base 64."
    );
    assert_eq!(api.sim.counts().servers, 0);
    assert_eq!(api.sim.counts().ports, 0);
}

#[tokio::test]
async fn fixed_ip_port_scheduler_hints_and_boot_from_volume() {
    let api = start(api_opts()).await;
    let net = api.network_id("private").await;
    let r = api
        .post(
            "/network/v2.0/ports",
            json!({"port": {"network_id": net, "name": "mine"}}),
        )
        .await;
    assert_eq!(r.status, 201);
    let port = r.body["port"]["id"].as_str().unwrap().to_string();
    let port_ip = r.body["port"]["fixed_ips"][0]["ip_address"]
        .as_str()
        .unwrap()
        .to_string();

    let g = api
        .send(
            "POST",
            "/compute/v2.1/os-server-groups",
            Some(json!({"server_group": {"name": "g", "policy": "anti-affinity"}})),
            &[("OpenStack-API-Version", "compute 2.64")],
        )
        .await;
    assert_eq!(g.status, 200);
    let group = g.body["server_group"]["id"].as_str().unwrap().to_string();

    let image = api.image_id("cirros-0.6.2").await;
    let a = api
        .create_ok(
            "a",
            json!({"networks": [{"port": port}], "os:scheduler_hints": {"group": group}}),
        )
        .await;
    let b = api
        .create_ok(
            "b",
            json!({"networks": [{"uuid": net, "fixed_ip": "127.77.9.9"}], "imageRef": "",
        "block_device_mapping_v2": [{"boot_index": 0, "uuid": image, "source_type": "image",
            "destination_type": "volume", "volume_size": 5, "delete_on_termination": true}]}),
        )
        .await;
    let sa = api.wait_status(&a, "ACTIVE").await;
    let sb = api.wait_status(&b, "ACTIVE").await;
    assert_eq!(sa["addresses"]["private"][0]["addr"], port_ip.as_str());
    assert_eq!(sb["addresses"]["private"][0]["addr"], "127.77.9.9");
    assert_eq!(sb["image"], "");
    assert_eq!(
        sb["os-extended-volumes:volumes_attached"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(api.sim.counts().volumes, 1);
    let members = api
        .get(&format!("/compute/v2.1/os-server-groups/{group}"))
        .await;
    assert_eq!(members.body["server_group"]["members"], json!([a]));
    // A taken fixed IP is refused.
    let r = api
        .create_server(
            "c",
            json!({"networks": [{"uuid": net, "fixed_ip": "127.77.9.9"}]}),
        )
        .await;
    assert_eq!(r.status, 400);

    api.delete(&format!("/compute/v2.1/servers/{a}")).await;
    api.delete(&format!("/compute/v2.1/servers/{b}")).await;
    api.wait_gone(&a).await;
    api.wait_gone(&b).await;
    let c = api.sim.counts();
    assert_eq!(c.volumes, 0, "delete_on_termination volume removed");
    assert_eq!(c.ports, 1, "the user's own port survives, detached");
    let p = api.get(&format!("/network/v2.0/ports/{port}")).await;
    assert_eq!(p.body["port"]["device_id"], "");
}

#[tokio::test]
async fn glance_lists_duplicates_newest_first() {
    let api = start(api_opts()).await;
    let r = api.get("/image/v2/images?name=ubuntu-24.04").await;
    let imgs = r.body["images"].as_array().unwrap();
    assert_eq!(imgs.len(), 3);
    let created: Vec<&str> = imgs
        .iter()
        .map(|i| i["created_at"].as_str().unwrap())
        .collect();
    let mut sorted = created.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(created, sorted);
    assert_eq!(imgs[0]["status"], "queued");
    let active = api
        .get("/image/v2/images?name=ubuntu-24.04&status=active")
        .await;
    assert_eq!(active.body["images"].as_array().unwrap().len(), 2);
    let id = imgs[1]["id"].as_str().unwrap();
    assert_eq!(
        api.get(&format!("/image/v2/images/{id}")).await.body["id"],
        id
    );
    let missing = api.get("/image/v2/images/nope").await;
    assert_eq!(missing.status, 404);
    let page = api.get("/image/v2/images?limit=2").await;
    assert!(page.body["next"].as_str().unwrap().contains("marker="));
}

#[tokio::test]
async fn neutron_security_groups_and_floating_ips() {
    let api = start(api_opts()).await;
    let r = api
        .post(
            "/network/v2.0/security-groups",
            json!({"security_group": {"name": "ssh"}}),
        )
        .await;
    assert_eq!(r.status, 201);
    let sg = r.body["security_group"]["id"].as_str().unwrap().to_string();
    let r = api.post("/network/v2.0/security-group-rules", json!({"security_group_rule": {
        "security_group_id": sg, "direction": "ingress", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22}})).await;
    assert_eq!(r.status, 201);
    let listed = api
        .get(&format!(
            "/network/v2.0/security-group-rules?security_group_id={sg}"
        ))
        .await;
    assert_eq!(
        listed.body["security_group_rules"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let id = api
        .create_ok("fip-1", json!({"security_groups": [{"name": "ssh"}]}))
        .await;
    let s = api.wait_status(&id, "ACTIVE").await;
    assert_eq!(s["security_groups"][0]["name"], "ssh");
    // The group is in use now.
    assert_eq!(
        api.delete(&format!("/network/v2.0/security-groups/{sg}"))
            .await
            .status,
        409
    );

    let private = api.network_id("private").await;
    let public = api.network_id("public").await;
    let r = api
        .post(
            "/network/v2.0/floatingips",
            json!({"floatingip": {"floating_network_id": private}}),
        )
        .await;
    assert_eq!(
        r.status, 400,
        "floating IPs come only from external networks"
    );
    let r = api
        .post(
            "/network/v2.0/floatingips",
            json!({"floatingip": {"floating_network_id": public}}),
        )
        .await;
    assert_eq!(r.status, 201);
    let fip = r.body["floatingip"]["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["floatingip"]["status"], "DOWN");
    let port = api
        .first_id(&format!("/network/v2.0/ports?device_id={id}"), "ports")
        .await;
    let r = api
        .send(
            "PUT",
            &format!("/network/v2.0/floatingips/{fip}"),
            Some(json!({"floatingip": {"port_id": port}})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["floatingip"]["status"], "ACTIVE");
    assert_eq!(
        r.body["floatingip"]["fixed_ip_address"],
        s["addresses"]["private"][0]["addr"]
    );
    let filtered = api
        .get(&format!("/network/v2.0/floatingips?port_id={port}"))
        .await;
    assert_eq!(filtered.body["floatingips"].as_array().unwrap().len(), 1);
    let r = api
        .send(
            "PUT",
            &format!("/network/v2.0/floatingips/{fip}"),
            Some(json!({"floatingip": {"port_id": null}})),
            &[],
        )
        .await;
    assert_eq!(r.body["floatingip"]["port_id"], Value::Null);
    assert_eq!(api.sim.counts().floating_ips, 1);
    assert_eq!(
        api.delete(&format!("/network/v2.0/floatingips/{fip}"))
            .await
            .status,
        204
    );
    assert_eq!(api.sim.counts().floating_ips, 0);
    let r = api.get(&format!("/network/v2.0/floatingips/{fip}")).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["NeutronError"]["type"], "FloatingIPNotFound");
}

#[tokio::test]
async fn request_log_counts_per_method_and_route() {
    let api = start(api_opts()).await;
    let a = api.create_ok("log-1", json!({})).await;
    api.server(&a).await;
    api.server(&a).await;
    let log = api.sim.request_log();
    assert_eq!(log.count("POST", "/compute/v2.1/servers"), 1);
    assert_eq!(log.count("GET", "/compute/v2.1/servers/{id}"), 2);
    assert_eq!(log.count("POST", "/identity/v3/auth/tokens"), 1);
    assert_eq!(
        log.counts()[&("GET".to_string(), "/compute/v2.1/servers/{id}".to_string())],
        2
    );
    assert!(log.records.iter().all(|r| r.status < 500));
}

#[tokio::test]
async fn cinder_keeps_a_volume_in_use_until_its_server_is_gone() {
    let api = start(api_opts()).await;
    let v = api.get("/volume/v3/").await;
    assert_eq!(v.status, 200);
    assert_eq!(v.body["version"]["id"], "v3.0");
    let net = api.network_id("private").await;
    let image = api.image_id("cirros-0.6.2").await;
    let s = api
        .create_ok(
            "kept",
            json!({"networks": [{"uuid": net}], "imageRef": "",
        "block_device_mapping_v2": [{"boot_index": 0, "uuid": image, "source_type": "image",
            "destination_type": "volume", "volume_size": 5, "delete_on_termination": false}]}),
        )
        .await;
    let server = api.wait_status(&s, "ACTIVE").await;
    let vol = server["os-extended-volumes:volumes_attached"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let project = api.sim.project_id();
    let shown = api
        .get(&format!("/volume/v3/{project}/volumes/{vol}"))
        .await;
    assert_eq!(shown.status, 200);
    assert_eq!(shown.body["volume"]["status"], "in-use");
    assert_eq!(
        shown.body["volume"]["attachments"][0]["server_id"],
        s.as_str()
    );
    let refused = api
        .delete(&format!("/volume/v3/{project}/volumes/{vol}"))
        .await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.body["badRequest"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid volume"),
        "{:?}",
        refused.body
    );

    api.delete(&format!("/compute/v2.1/servers/{s}")).await;
    api.wait_gone(&s).await;
    assert_eq!(
        api.sim.counts().volumes,
        1,
        "Nova keeps it past termination"
    );
    let shown = api.get(&format!("/volume/v3/volumes/{vol}")).await;
    assert_eq!(shown.body["volume"]["status"], "available");
    assert_eq!(
        api.delete(&format!("/volume/v3/volumes/{vol}"))
            .await
            .status,
        202
    );
    assert_eq!(api.sim.counts().volumes, 0);
    let gone = api
        .get(&format!("/volume/v3/{project}/volumes/{vol}"))
        .await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.body["itemNotFound"]["code"], 404);
}
