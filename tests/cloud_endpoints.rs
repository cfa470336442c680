//! Region and interface choose the endpoint: the simulator's catalog has two regions, each
//! with a public and an internal URL on a listener of its own, and the request log says which
//! one every request came in on. The real binary runs a `keypair` step with the choice made in
//! clouds.yaml, in `OS_*` variables or in the recipe's `cloud:` block (issue 15).

use executor_simulator::{CLOUD_NAME, SimCloud, SimOptions, SshMode};

/// Where the credentials come from.
enum Login {
    /// The simulator's clouds.yaml: `region_name: RegionOne`, `interface: public`.
    CloudsYaml,
    /// `OS_*` variables, with these in place of the simulator's region and interface.
    Env {
        region: &'static str,
        interface: &'static str,
    },
}

/// Runs `prepare` of a recipe whose `cloud:` block has `cloud_lines`; returns whether it
/// succeeded, its job log, and the endpoints the non-Keystone requests came in on.
async fn prepare(
    sim: &SimCloud,
    job: &str,
    login: Login,
    cloud_lines: &str,
) -> (bool, String, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let mut run = crate::cloud_support::keypair_prepare(&d, job, "endpoints", cloud_lines);
    match login {
        Login::CloudsYaml => {
            let clouds = sim.write_clouds_yaml(&d).unwrap();
            run = run
                .env("OS_CLIENT_CONFIG_FILE", clouds)
                .env("OS_CLOUD", CLOUD_NAME);
        }
        Login::Env { region, interface } => {
            for (k, v) in sim.os_env() {
                run = run.env(k, v);
            }
            run = run
                .env("OS_REGION_NAME", region)
                .env("OS_INTERFACE", interface);
        }
    }
    let before = sim.request_log().len();
    let out = tokio::task::spawn_blocking(move || run.output().unwrap())
        .await
        .unwrap();
    let mut used: Vec<String> = sim
        .request_log()
        .records
        .into_iter()
        .skip(before)
        .filter(|r| !r.path.starts_with("/identity"))
        .map(|r| r.endpoint.unwrap_or_else(|| "?".into()))
        .collect();
    used.dedup();
    drop(dir);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        used,
    )
}

async fn two_regions() -> SimCloud {
    SimCloud::start(SimOptions {
        ssh_mode: SshMode::Disabled,
        two_regions: true,
        ..SimOptions::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_and_interface_choose_the_endpoint_from_a_two_region_catalog() {
    let sim = two_regions().await;
    let cases: [(&str, Login, &str, &str); 4] = [
        ("61", Login::CloudsYaml, "", "RegionOne public"),
        (
            "62",
            Login::CloudsYaml,
            "  region: RegionTwo\n  interface: internal\n",
            "RegionTwo internal",
        ),
        (
            "63",
            Login::CloudsYaml,
            "  interface: internal\n",
            "RegionOne internal",
        ),
        (
            "64",
            Login::Env {
                region: "RegionTwo",
                interface: "public",
            },
            "",
            "RegionTwo public",
        ),
    ];
    for (job, login, cloud_lines, expected) in cases {
        let (ok, log, used) = prepare(&sim, job, login, cloud_lines).await;
        assert!(ok, "job {job}: {log}");
        // Every request after the login went to the chosen endpoint, and there were some.
        assert_eq!(used, vec![expected.to_string()], "job {job}: {log}");
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_the_catalog_lacks_is_named_in_the_error() {
    let sim = two_regions().await;
    let (ok, log, used) = prepare(&sim, "65", Login::CloudsYaml, "  region: RegionThree\n").await;
    assert!(!ok, "{log}");
    assert!(used.is_empty(), "no request left Keystone: {used:?}");
    assert!(log.contains("in region RegionThree"), "{log}");
    // The interface no endpoint offers here is named just as clearly.
    let (ok, log, _) = prepare(&sim, "66", Login::CloudsYaml, "  interface: admin\n").await;
    assert!(!ok, "{log}");
    assert!(log.contains("no admin endpoint"), "{log}");
    sim.shutdown().await;
}
