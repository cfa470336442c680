//! Every shipped recipe (`recipes/*.yaml`) runs a whole job under `executor simulate`, the
//! README's main command, and leaves the simulated cloud empty. A recipe added later is
//! covered without touching this file.

use crate::e2e_support;

use std::path::PathBuf;
use std::time::Duration;

use assert_cmd::Command;

fn shipped_recipes() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(e2e_support::repo().join("recipes"))
        .expect("recipes/")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_shipped_recipe_runs_a_job_under_simulate() {
    let recipes = shipped_recipes();
    assert!(
        recipes.iter().any(|p| p.ends_with("openstack.yaml")),
        "the default recipe is shipped: {recipes:?}"
    );
    for recipe in recipes {
        let out = Command::cargo_bin("executor")
            .expect("binary")
            .arg("simulate")
            .arg("--recipe")
            .arg(&recipe)
            .args([
                "--script",
                "echo shipped-recipe-ran\nuname -a",
                "--boot-delay",
                "50ms",
                "--ssh-delay",
                "0s",
                "--retry-interval",
                "100ms",
            ])
            .timeout(Duration::from_secs(240))
            .output()
            .expect("runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let name = recipe.display();
        assert_eq!(out.status.code(), Some(0), "{name}:\n{stdout}\n{stderr}");
        assert!(stdout.contains("\nshipped-recipe-ran"), "{name}: {stdout}");
        assert!(stdout.contains("Job succeeded"), "{name}: {stdout}");
        assert!(
            stdout.contains(
                "simulated cloud after the jobs: 0 servers, 0 ports, 0 floating IPs, 0 key pairs, 0 volumes"
            ),
            "{name}: {stdout}"
        );
    }
}

/// The `server` step of the default recipe as `executor render` shows it for this environment.
/// Without `JOB_RESPONSE_FILE` in `env`, a payload of job 77 in project 5 stands in for
/// gitlab-runner's.
fn rendered_server_step(recipe: &str, env: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("job.env");
    let payload = dir.path().join("response.json");
    std::fs::write(&payload, r#"{"id": 77, "job_info": {"project_id": 5}}"#).unwrap();
    let env = if env.contains("JOB_RESPONSE_FILE=") {
        env.to_string()
    } else {
        format!("{env}JOB_RESPONSE_FILE={}\n", payload.display())
    };
    std::fs::write(&env_file, env).unwrap();
    let out = Command::cargo_bin("executor")
        .expect("binary")
        .arg("--recipe")
        .arg(e2e_support::repo().join(recipe))
        .args(["render", "--stage", "prepare", "--env-file"])
        .arg(&env_file)
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let start = text.find("- id: server\n").expect("a server step");
    let rest = &text[start + 1..];
    rest[..rest.find("\n- id:").unwrap_or(rest.len())].to_string()
}

#[test]
fn the_server_powers_itself_off_once_the_job_timeout_has_passed() {
    let job =
        "CUSTOM_ENV_CI_JOB_ID=77\nCUSTOM_ENV_CI_PROJECT_ID=5\nCUSTOM_ENV_CI_JOB_TIMEOUT=2400\n";
    // 40 minutes of job timeout, plus the default margin of 30.
    let step = rendered_server_step("recipes/openstack.yaml", job);
    assert!(
        step.contains(
            "#cloud-config\n    power_state:\n      mode: poweroff\n      delay: \"+70\""
        ),
        "{step}"
    );
    let step = rendered_server_step(
        "recipes/openstack.yaml",
        &format!("{job}POWEROFF_MARGIN=5\n"),
    );
    assert!(step.contains("delay: \"+45\""), "{step}");
    // Without a job timeout, gitlab-runner's default of one hour applies.
    let step = rendered_server_step("recipes/openstack.yaml", "CUSTOM_ENV_CI_JOB_ID=77\n");
    assert!(step.contains("delay: \"+90\""), "{step}");
    let step = rendered_server_step(
        "recipes/openstack.yaml",
        &format!("{job}POWEROFF_MARGIN=never\n"),
    );
    assert!(
        step.contains("user_data: \"\"") && !step.contains("power_state"),
        "{step}"
    );
    // gitlab-runner's payload wins over the job's variables, which a pipeline can set.
    let dir = tempfile::tempdir().unwrap();
    let payload = dir.path().join("response.json");
    std::fs::write(
        &payload,
        r#"{"id": 77, "job_info": {"project_id": 5}, "runner_info": {"timeout": 600}}"#,
    )
    .unwrap();
    let step = rendered_server_step(
        "recipes/openstack.yaml",
        &format!(
            "{job}CUSTOM_ENV_CI_JOB_TIMEOUT=999999\nJOB_RESPONSE_FILE={}\n",
            payload.display()
        ),
    );
    assert!(step.contains("delay: \"+40\""), "{step}");
    // The cloud-init example keeps the switch next to its own packages.
    let step = rendered_server_step("recipes/examples/cloud-init.yaml", job);
    assert!(step.contains("packages: [git, git-lfs"), "{step}");
    assert!(step.contains("delay: \"+70\""), "{step}");
}
