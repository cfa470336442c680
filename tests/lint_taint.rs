//! Job-controlled values in lint (issue 14, item 5): a value a pipeline sets (`job.*`) that
//! reaches what the cloud makes, a shell or a runner-host file without an allow-list or quoting
//! is a warning, and the shipped recipes have none. The warnings' wording and places are in the
//! `job_value_unchecked` lint snapshot.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    v.sort();
    v
}

fn taint_warnings(path: &Path) -> Vec<String> {
    let problems = executor_driver::recipe::lint::lint(&[path.to_path_buf()]);
    problems
        .list
        .iter()
        .filter(|p| p.code == "job-value-unchecked")
        .map(|p| p.message.clone())
        .collect()
}

#[test]
fn the_shipped_recipes_hand_no_job_value_to_the_cloud_or_a_shell() {
    let shipped: Vec<PathBuf> = yaml_files("recipes")
        .into_iter()
        .chain(yaml_files("recipes/examples"))
        .collect();
    assert!(shipped.len() >= 10, "{shipped:?}");
    for recipe in shipped {
        let warnings = taint_warnings(&recipe);
        assert!(warnings.is_empty(), "{}: {warnings:#?}", recipe.display());
    }
    // The test recipes do hand choices to the tests' job variables, and lint says so.
    let wire = taint_warnings(&Path::new(ROOT).join("tests/recipes/wire.yaml"));
    assert!(
        wire.iter().any(|w| w.contains("`job.TEST_IMAGE_ID`")),
        "{wire:#?}"
    );
}

/// A warning is shown, in every format, but `executor lint` still succeeds: the recipe runs.
#[test]
fn a_job_value_in_a_command_is_a_warning_that_does_not_fail_lint() {
    let d = tempfile::tempdir().unwrap();
    let recipe = d.path().join("r.yaml");
    std::fs::write(
        &recipe,
        "version: 1\nrun:\n  - id: greet\n    kind: ssh_command\n    command: \"echo {{ job.GREETING }}\"\n",
    )
    .unwrap();
    let out = Command::cargo_bin("executor")
        .unwrap()
        .env("NO_COLOR", "1")
        .arg("lint")
        .arg(&recipe)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}{err}");
    assert!(
        text.contains("⚠") && text.contains("`job.GREETING`"),
        "{text}"
    );
    assert!(text.contains("r.yaml:5:23"), "{text}");
    assert!(text.contains("shell_quote"), "{text}");
    assert!(err.contains("0 error(s), 1 warning(s)"), "{err}");
    for (format, field, value) in [
        ("json", "severity", "warning"),
        ("gitlab", "severity", "minor"),
    ] {
        let out = Command::cargo_bin("executor")
            .unwrap()
            .args(["lint", "--format", format])
            .arg(&recipe)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report[0][field], value, "{report}");
    }
}

/// `server` step of the default recipe as `executor render --stage prepare` shows it, or the
/// error that stopped the render.
fn render_default_recipe(env: &str) -> Result<String, String> {
    let d = tempfile::tempdir().unwrap();
    let payload = d.path().join("response.json");
    std::fs::write(&payload, r#"{"id": 77, "job_info": {"project_id": 5}}"#).unwrap();
    let env_file = d.path().join("job.env");
    std::fs::write(
        &env_file,
        format!("{env}JOB_RESPONSE_FILE={}\n", payload.display()),
    )
    .unwrap();
    let out = Command::cargo_bin("executor")
        .unwrap()
        .arg("--recipe")
        .arg(Path::new(ROOT).join("recipes/openstack.yaml"))
        .args(["render", "--stage", "prepare", "--env-file"])
        .arg(&env_file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)));
    }
    let start = text.find("- id: server\n").expect("a server step");
    let rest = &text[start + 1..];
    Ok(rest[..rest.find("\n- id:").unwrap_or(rest.len())].to_string())
}

/// The default recipe lets a job pick its network the way it picks its flavor and image: only
/// from the runner's `ALLOWED_NETWORKS`, which by default holds the runner's `NETWORK` alone.
#[test]
fn the_default_recipe_lets_a_job_choose_a_network_only_from_the_allowed_list() {
    let site = "NETWORK=ci-a\nALLOWED_NETWORKS=ci-a, ci-b\n";
    let step = render_default_recipe(site).unwrap();
    assert!(step.contains("- network: ci-a\n"), "{step}");
    assert!(
        step.contains("allowed_networks:\n  - ci-a\n  - ci-b"),
        "{step}"
    );
    let step = render_default_recipe(&format!("{site}CUSTOM_ENV_NETWORK=ci-b\n")).unwrap();
    assert!(step.contains("- network: ci-b\n"), "{step}");
    let refused = render_default_recipe(&format!("{site}CUSTOM_ENV_NETWORK=management\n"))
        .expect_err("a network outside the list");
    assert!(
        refused.contains("'management'") && refused.contains("does not allow"),
        "{refused}"
    );
    // Without ALLOWED_NETWORKS, a job cannot move its server off the runner's network.
    let refused = render_default_recipe("NETWORK=ci-a\nCUSTOM_ENV_NETWORK=ci-b\n")
        .expect_err("no list, no choice");
    assert!(refused.contains("'ci-b'"), "{refused}");
}
