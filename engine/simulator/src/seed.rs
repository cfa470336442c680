//! The data every simulated cloud starts with.
//!
//! Project `demo` in domain `Default`; user `demo` with password `secret`; application
//! credential `executor-ci`; flavors `m1.tiny`..`m1.large`; images `cirros-0.6.2` and three
//! `ubuntu-24.04` images with different `created_at`/`status` (the newest is still `queued`, so
//! "newest active" picks the middle one); network `private` (subnet `private-subnet`,
//! 127.77.0.0/16); external network `public` (127.78.0.0/16, floating IPs); security group
//! `default`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indexmap::IndexMap;
use secrecy::SecretString;
use serde_json::{Value, json};

use super::store::{AppCredential, Flavor, Store, User, new_hex_id, new_uuid};
use super::timefmt;

pub const DOMAIN_NAME: &str = "Default";
pub const PROJECT_NAME: &str = "demo";
pub const USER_NAME: &str = "demo";
pub const USER_PASSWORD: &str = "secret";
pub const APP_CRED_NAME: &str = "executor-ci";
pub const APP_CRED_SECRET: &str = "sim-application-credential-secret";
pub const FIXED_CIDR: &str = "127.77.0.0/16";
pub const FLOATING_CIDR: &str = "127.78.0.0/16";

fn at(unix: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix)
}

fn image(name: &str, status: &str, created: SystemTime, owner: &str) -> Value {
    let id = new_uuid();
    let ts = timefmt::seconds(created);
    json!({
        "name": name, "disk_format": "qcow2", "container_format": "bare",
        "visibility": "public", "size": 21_430_272, "virtual_size": 117_440_512,
        "status": status, "checksum": "c8fc807773e5354afe61636071771906", "protected": false,
        "min_ram": 0, "min_disk": 0, "owner": owner, "os_hidden": false,
        "os_hash_algo": "sha512", "os_hash_value": "6b8e2a1f0c6e4b0c8e5f0d7c7b3e9a1d",
        "id": id, "created_at": ts, "updated_at": ts, "tags": [],
        "self": format!("/v2/images/{id}"), "file": format!("/v2/images/{id}/file"),
        "schema": "/v2/schemas/image",
    })
}

fn network(name: &str, external: bool, project: &str, now: &str) -> Value {
    json!({
        "id": new_uuid(), "name": name, "tenant_id": project, "project_id": project,
        "admin_state_up": true, "mtu": 1500, "status": "ACTIVE", "subnets": [],
        "shared": false, "availability_zone_hints": [], "availability_zones": [],
        "ipv4_address_scope": null, "ipv6_address_scope": null, "router:external": external,
        "description": "", "port_security_enabled": true, "tags": [],
        "created_at": now, "updated_at": now, "revision_number": 1,
    })
}

fn subnet(name: &str, network_id: &str, cidr: &str, project: &str, now: &str) -> Value {
    let base = cidr.split('/').next().unwrap_or_default();
    let prefix = base.rsplit_once('.').map(|(p, _)| p).unwrap_or(base);
    let stem = prefix.rsplit_once('.').map(|(p, _)| p).unwrap_or(prefix);
    json!({
        "id": new_uuid(), "name": name, "project_id": project, "tenant_id": project,
        "network_id": network_id, "ip_version": 4, "subnetpool_id": null, "enable_dhcp": false,
        "ipv6_ra_mode": null, "ipv6_address_mode": null, "gateway_ip": format!("{prefix}.1"),
        "cidr": cidr,
        "allocation_pools": [{"start": format!("{prefix}.2"), "end": format!("{stem}.255.254")}],
        "host_routes": [], "dns_nameservers": [], "description": "", "service_types": [],
        "tags": [], "created_at": now, "updated_at": now, "revision_number": 0,
    })
}

/// A security group with Neutron's default egress rules (and, for `default`, ingress from itself).
pub fn security_group(name: &str, description: &str, project: &str, now: &str) -> Value {
    let id = new_uuid();
    let mut rules = vec![];
    for ethertype in ["IPv4", "IPv6"] {
        rules.push(rule(&id, "egress", ethertype, None, project, now));
        if name == "default" {
            rules.push(rule(&id, "ingress", ethertype, Some(&id), project, now));
        }
    }
    json!({
        "id": id, "name": name, "stateful": true, "tenant_id": project, "project_id": project,
        "description": description, "shared": false, "security_group_rules": rules,
        "tags": [], "created_at": now, "updated_at": now, "revision_number": 1,
    })
}

fn rule(
    sg: &str,
    direction: &str,
    ethertype: &str,
    remote_group: Option<&str>,
    project: &str,
    now: &str,
) -> Value {
    json!({
        "id": new_uuid(), "project_id": project, "tenant_id": project,
        "security_group_id": sg, "ethertype": ethertype, "direction": direction,
        "protocol": null, "port_range_min": null, "port_range_max": null,
        "remote_ip_prefix": null, "remote_group_id": remote_group, "description": null,
        "tags": [], "created_at": now, "updated_at": now, "revision_number": 0,
    })
}

pub fn seeded_store(instance_quota: usize) -> Store {
    let now = timefmt::seconds(SystemTime::now());
    let project_id = new_hex_id();
    let user_id = new_hex_id();
    let admin_project = new_hex_id();

    let flavors = [
        ("1", "m1.tiny", 1, 512, 1),
        ("2", "m1.small", 1, 2048, 20),
        ("3", "m1.medium", 2, 4096, 40),
        ("4", "m1.large", 4, 8192, 80),
    ]
    .into_iter()
    .map(|(id, name, vcpus, ram, disk)| Flavor {
        id: id.into(),
        name: name.into(),
        vcpus,
        ram,
        disk,
    })
    .collect();

    let images = vec![
        image("cirros-0.6.2", "active", at(1_767_225_600), &admin_project),
        image("ubuntu-24.04", "active", at(1_767_225_600), &admin_project),
        image("ubuntu-24.04", "active", at(1_780_272_000), &admin_project),
        image("ubuntu-24.04", "queued", at(1_788_220_800), &admin_project),
    ];

    let mut networks = IndexMap::new();
    let mut subnets = IndexMap::new();
    for (net_name, sub_name, cidr, external) in [
        ("private", "private-subnet", FIXED_CIDR, false),
        ("public", "public-subnet", FLOATING_CIDR, true),
    ] {
        let mut net = network(net_name, external, &admin_project, &now);
        let net_id = net["id"].as_str().unwrap_or_default().to_string();
        let mut sub = subnet(sub_name, &net_id, cidr, &admin_project, &now);
        if external {
            sub["router:external"] = json!(true);
        } else {
            net["shared"] = json!(true);
        }
        let sub_id = sub["id"].as_str().unwrap_or_default().to_string();
        net["subnets"] = json!([sub_id]);
        networks.insert(net_id, net);
        subnets.insert(sub_id, sub);
    }

    let mut security_groups = IndexMap::new();
    let sg = security_group("default", "Default security group", &project_id, &now);
    security_groups.insert(sg["id"].as_str().unwrap_or_default().to_string(), sg);

    Store {
        domain_id: "default".into(),
        project_id,
        project_name: PROJECT_NAME.into(),
        users: vec![User {
            id: user_id.clone(),
            name: USER_NAME.into(),
            password: SecretString::from(USER_PASSWORD),
        }],
        app_creds: vec![AppCredential {
            id: new_hex_id(),
            name: APP_CRED_NAME.into(),
            secret: SecretString::from(APP_CRED_SECRET),
            user_id,
        }],
        tokens: Default::default(),
        flavors,
        images,
        networks,
        subnets,
        ports: IndexMap::new(),
        security_groups,
        floating_ips: IndexMap::new(),
        servers: IndexMap::new(),
        keypairs: IndexMap::new(),
        server_groups: IndexMap::new(),
        volumes: IndexMap::new(),
        nova_ports: Default::default(),
        instance_quota,
        alloc_offset: rand::random::<u32>() % 60_000,
    }
}
