//! Every shipped recipe (`recipes/*.yaml`) runs a whole job under `executor simulate`, the
//! README's main command, and leaves the simulated cloud empty. A recipe added later is
//! covered without touching this file.

mod e2e_support;

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
