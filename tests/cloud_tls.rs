//! TLS to the cloud: the simulator serves HTTPS with a CA made at run time. The driver trusts
//! it when given the CA (`cacert` in clouds.yaml, `OS_CACERT`, or the recipe's
//! `cloud.cacert`), refuses it with a message that says what to do when not, and accepts it
//! with `verify: false`, saying so in the job log (issue 15).

use std::path::{Path, PathBuf};

use executor_simulator::{CLOUD_NAME, SimCloud, SimOptions, SshMode};

/// How the driver learns about the cloud, and what it is told about its certificate.
enum Trust {
    /// clouds.yaml with `cacert:` set, or without when `None`.
    CloudsYaml { cacert: bool, verify: Option<bool> },
    /// The `OS_*` variables, with `OS_CACERT` or `OS_INSECURE=true` if asked.
    Env { cacert: bool, insecure: bool },
}

struct Outcome {
    ok: bool,
    log: String,
    /// Requests the simulator answered, Keystone's included.
    answered: usize,
}

/// Runs `prepare` with a `keypair` step; `cloud_lines` go into the recipe's `cloud:` block.
async fn prepare(sim: &SimCloud, job: &str, trust: Trust, cloud_lines: &str) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let ca = sim
        .write_ca(&d)
        .unwrap()
        .expect("the simulator serves HTTPS");
    let cloud_lines = cloud_lines.replace("CA_PATH", &ca.display().to_string());
    let mut run = crate::cloud_support::keypair_prepare(&d, job, "tls", &cloud_lines);
    match trust {
        Trust::CloudsYaml { cacert, verify } => {
            let clouds = clouds_yaml(sim, &d, cacert.then_some(&ca), verify);
            run = run
                .env("OS_CLIENT_CONFIG_FILE", clouds)
                .env("OS_CLOUD", CLOUD_NAME);
        }
        Trust::Env { cacert, insecure } => {
            for (k, v) in sim.os_env() {
                run = run.env(k, v);
            }
            if cacert {
                run = run.env("OS_CACERT", &ca);
            }
            if insecure {
                run = run.env("OS_INSECURE", "true");
            }
        }
    }
    let before = sim.request_log().len();
    let out = tokio::task::spawn_blocking(move || run.output().unwrap())
        .await
        .unwrap();
    Outcome {
        ok: out.status.success(),
        log: String::from_utf8_lossy(&out.stderr).into_owned(),
        answered: sim.request_log().len() - before,
    }
}

/// The simulator's clouds.yaml, with `cacert` and `verify` added to its entries.
fn clouds_yaml(
    sim: &SimCloud,
    dir: &Path,
    cacert: Option<&PathBuf>,
    verify: Option<bool>,
) -> PathBuf {
    let mut extra = String::new();
    if let Some(ca) = cacert {
        extra.push_str(&format!("    cacert: {}\n", ca.display()));
    }
    if let Some(v) = verify {
        extra.push_str(&format!("    verify: {v}\n"));
    }
    let text = sim.clouds_yaml().replace(
        "    interface: public\n",
        &format!("    interface: public\n{extra}"),
    );
    let path = dir.join("clouds.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn https() -> SimCloud {
    let sim = SimCloud::start(SimOptions {
        ssh_mode: SshMode::Disabled,
        tls: true,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    assert!(sim.base_url().starts_with("https://127.0.0.1:"));
    sim
}

/// The job log's warning that certificates go unchecked.
const UNVERIFIED: &str = "TLS certificate verification is OFF";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_ca_is_trusted_from_clouds_yaml_os_cacert_or_the_recipe() {
    let sim = https().await;
    let cases = [
        (
            "71",
            Trust::CloudsYaml {
                cacert: true,
                verify: None,
            },
            "",
        ),
        (
            "72",
            Trust::Env {
                cacert: true,
                insecure: false,
            },
            "",
        ),
        (
            "73",
            Trust::CloudsYaml {
                cacert: false,
                verify: None,
            },
            "  cacert: CA_PATH\n",
        ),
    ];
    for (job, trust, lines) in cases {
        let o = prepare(&sim, job, trust, lines).await;
        assert!(o.ok, "job {job}: {}", o.log);
        assert!(!o.log.contains(UNVERIFIED), "job {job}: {}", o.log);
    }
    // Three key pairs were imported, over HTTPS.
    assert_eq!(sim.counts().keypairs, 3);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_ca_the_driver_refuses_the_cloud_and_says_why() {
    let sim = https().await;
    for (job, trust) in [
        (
            "74",
            Trust::CloudsYaml {
                cacert: false,
                verify: None,
            },
        ),
        (
            "75",
            Trust::Env {
                cacert: false,
                insecure: false,
            },
        ),
    ] {
        let o = prepare(&sim, job, trust, "").await;
        assert!(!o.ok, "job {job}: {}", o.log);
        assert_eq!(o.answered, 0, "no request got through: {}", o.log);
        // Configuration, not the network: class `invalid`, refused at once rather than retried.
        assert!(o.log.contains("(invalid)"), "job {job}: {}", o.log);
        assert!(!o.log.contains("pause(s)"), "job {job}: {}", o.log);
        assert!(
            o.log.contains("TLS certificate is not trusted") && o.log.contains("UnknownIssuer"),
            "job {job}: {}",
            o.log
        );
        assert!(
            o.log.contains("cacert") && o.log.contains("OS_CACERT"),
            "the message says what to do: {}",
            o.log
        );
    }
    assert_eq!(sim.counts().keypairs, 0);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_false_accepts_the_cloud_and_warns_in_the_job_log() {
    let sim = https().await;
    let cases = [
        (
            "76",
            Trust::CloudsYaml {
                cacert: false,
                verify: Some(false),
            },
            "",
        ),
        (
            "77",
            Trust::Env {
                cacert: false,
                insecure: true,
            },
            "",
        ),
        (
            "78",
            Trust::CloudsYaml {
                cacert: false,
                verify: None,
            },
            "  verify: false\n",
        ),
    ];
    for (job, trust, lines) in cases {
        let o = prepare(&sim, job, trust, lines).await;
        assert!(o.ok, "job {job}: {}", o.log);
        assert_eq!(
            o.log.matches(UNVERIFIED).count(),
            1,
            "job {job}: once per stage: {}",
            o.log
        );
    }
    assert_eq!(sim.counts().keypairs, 3);
    sim.shutdown().await;
}
