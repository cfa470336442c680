//! Fidelity proof: Python's unmodified openstacksdk drives the simulated cloud through a
//! clouds.yaml the simulator writes (the script asserts each step; see tests/python/).

use std::time::Duration;

use executor_simulator::{APPCRED_CLOUD_NAME, CLOUD_NAME, SimCloud, SimOptions};
use russh::keys::ssh_key::{Algorithm, PrivateKey};

fn python() -> String {
    std::env::var("EXECUTOR_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_openstacksdk_drives_the_simulator() {
    let sim = SimCloud::start(SimOptions {
        build_delay: Duration::from_millis(300),
        ..SimOptions::default()
    })
    .await
    .expect("simulator starts");
    let before = sim.counts();
    let dir = tempfile::tempdir().unwrap();
    let clouds = sim.write_clouds_yaml(dir.path()).unwrap();
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
    let pubkey = key.public_key().to_openssh().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/sim_sdk_check.py");

    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(script)
        .env("OS_CLIENT_CONFIG_FILE", &clouds)
        .env("OS_CLOUD", CLOUD_NAME)
        .env("SIM_APPCRED_CLOUD", APPCRED_CLOUD_NAME)
        .env("SIM_TEST_PUBKEY", &pubkey)
        .env("HOME", dir.path())
        .kill_on_drop(true);
    for (k, _) in std::env::vars() {
        if k.starts_with("OS_") && k != "OS_CLIENT_CONFIG_FILE" && k != "OS_CLOUD" {
            cmd.env_remove(k);
        }
    }
    let out = tokio::time::timeout(Duration::from_secs(240), cmd.output())
        .await
        .expect("python script finishes in time")
        .expect("python3 runs (install openstacksdk: see .ci/setup)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("ALL OK"),
        "openstacksdk script failed ({})\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );

    // The script cleaned up after itself; the simulator agrees that nothing leaked. Give a
    // deletion the script saw finish a moment to settle on a loaded machine (bounded).
    let settle = std::time::Instant::now() + Duration::from_secs(10);
    while sim.counts() != before && std::time::Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sim.counts(), before);
    let log = sim.request_log();
    assert_eq!(log.count("POST", "/compute/v2.1/servers"), 3);
    assert!(log.count("POST", "/identity/v3/auth/tokens") >= 2);
    assert_eq!(log.count("POST", "/network/v2.0/floatingips"), 2);
    sim.shutdown().await;
}
