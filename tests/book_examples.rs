//! The example recipes in `recipes/examples/` (shown in the book's "Example recipes" chapter):
//! each lints clean and runs a whole job under `executor simulate`, leaving nothing behind in
//! the simulated cloud.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const NOTHING_LEFT: &str = "0 servers, 0 ports, 0 floating IPs, 0 key pairs, 0 volumes";

/// Runner-side settings a developer's shell may have; the examples must not depend on them.
const KNOBS: [&str; 15] = [
    "FLAVOR",
    "BUILDER_IMAGE",
    "NETWORK",
    "SECURITY_GROUP",
    "USERNAME",
    "KEY_PAIR_NAME",
    "PRIVATE_KEY",
    "PRIVATE_KEY_PATH",
    "SSH_TIMEOUT",
    "ALLOWED_FLAVORS",
    "ALLOWED_IMAGES",
    "ALLOWED_NETWORKS",
    "EXECUTOR_RECIPE",
    "OS_CLOUD",
    "FLOATING_NETWORK",
];

fn examples() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("recipes/examples"))
        .expect("recipes/examples exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    out.sort();
    out
}

#[test]
fn every_example_lints_clean_and_names_the_schema() {
    let all = examples();
    assert!(all.len() >= 8, "expected the eight examples, found {all:?}");
    for path in all {
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema=../../schema/recipe.schema.json"),
            "{} lacks the schema comment",
            path.display()
        );
        let problems = executor_driver::recipe::lint::lint(std::slice::from_ref(&path));
        assert!(
            problems.list.is_empty(),
            "{}:\n{}",
            path.display(),
            problems.plain()
        );
    }
}

/// One `executor simulate` run of an example, possibly with a test-only layer on top.
struct Case {
    example: &'static str,
    extra_layer: Option<String>,
    env: Vec<(&'static str, String)>,
    job: Option<&'static str>,
    /// Substrings the output must contain.
    expect: Vec<&'static str>,
}

impl Case {
    fn new(example: &'static str) -> Self {
        Case {
            example,
            extra_layer: None,
            env: vec![],
            job: None,
            expect: vec!["(simulate): success"],
        }
    }
}

fn run(case: &Case, dir: &Path) -> std::io::Result<(bool, String)> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_executor"));
    cmd.arg("simulate")
        .arg("--recipe")
        .arg(Path::new(ROOT).join("recipes/examples").join(case.example))
        .args(["--quiet", "--retry-interval", "0s", "--boot-delay", "1s"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for k in KNOBS {
        cmd.env_remove(k);
    }
    cmd.envs(case.env.iter().map(|(k, v)| (*k, v.as_str())));
    if let Some(layer) = &case.extra_layer {
        let path = dir.join(format!("{}.test-layer.yaml", case.example));
        std::fs::write(&path, layer)?;
        cmd.arg("--recipe").arg(path);
    }
    match case.job {
        Some(job) => {
            let path = dir.join(format!("{}.job.yml", case.example));
            std::fs::write(&path, job)?;
            cmd.arg("--job").arg(path);
        }
        None => {
            cmd.args(["--script", "echo example-ran"]);
        }
    }
    let mut child = cmd.spawn()?;
    // Bounded: a hung simulation must fail the test, not the CI run.
    let deadline = Instant::now() + Duration::from_secs(240);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output()?;
            return Ok((
                false,
                format!("timed out\n{}", String::from_utf8_lossy(&out.stdout)),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = case.expect.iter().all(|e| text.contains(e)) && text.contains(NOTHING_LEFT);
    Ok((ok, text))
}

#[test]
fn every_example_runs_a_job_under_simulate() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("static_key");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "static", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen (openssh-client) is installed by .ci/setup");
    assert!(keygen.success());
    let public_key = std::fs::read_to_string(key.with_extension("pub")).unwrap();

    let mut cases = vec![
        Case::new("floating-ip.yaml"),
        Case::new("boot-from-volume.yaml"),
        Case {
            env: vec![("STORAGE_NETWORK", "public".into())],
            ..Case::new("multiple-networks.yaml")
        },
        Case::new("host-keys-from-console.yaml"),
        Case::new("site-override.yaml"),
        // The simulated guest answers `cloud-init status --wait` as a finished boot does.
        Case::new("cloud-init.yaml"),
        // The site's key pair exists before any job: the test layer plays the administrator.
        Case {
            env: vec![
                ("KEY_PAIR_NAME", "site-static".into()),
                ("PRIVATE_KEY_PATH", key.display().to_string()),
                ("TEST_PUBLIC_KEY", public_key.trim().to_string()),
            ],
            extra_layer: Some(
                "version: 1\ninsert:\n  - before: server\n    steps:\n      - id: preload\n        kind: keypair\n        name: \"{{ env.KEY_PAIR_NAME }}\"\n        public_key: \"{{ env.TEST_PUBLIC_KEY }}\"\n"
                    .into(),
            ),
            ..Case::new("static-keypair.yaml")
        },
        Case {
            job: Some(
                "allowed-choice:\n  variables: {FLAVOR: m1.large, BUILDER_IMAGE: cirros-0.6.2}\n  script: [echo chosen]\n\
                 refused-choice:\n  variables: {FLAVOR: m1.huge}\n  script: [echo never]\n",
            ),
            expect: vec![
                "(allowed-choice): success",
                // The refusal fails every stage that evaluates the vars, config included.
                "(refused-choice): runner_system_failure",
            ],
            ..Case::new("job-choices.yaml")
        },
    ];
    // Every example must have a case, so a new example cannot go untested.
    let covered: Vec<&str> = cases.iter().map(|c| c.example).collect();
    for path in examples() {
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(covered.contains(&name), "no simulate case for {name}");
    }

    // Run them side by side: each spends most of its time waiting on simulated boots.
    let results: Vec<(&'static str, std::io::Result<(bool, String)>)> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .drain(..)
            .map(|case| {
                let dir = dir.path();
                s.spawn(move || (case.example, run(&case, dir)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let failures: Vec<String> = results
        .into_iter()
        .filter_map(|(example, r)| match r {
            Ok((true, _)) => None,
            Ok((false, out)) => Some(format!("{example}:\n{out}")),
            Err(e) => Some(format!("{example}: {e}")),
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
