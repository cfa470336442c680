//! Words that authors bring from other tools, and what a recipe says instead.
//!
//! Most recipe authors have written GitHub Actions workflows, Ansible playbooks or
//! `.gitlab-ci.yml` before. An unknown key that is one of those tools' words is a habit, not a
//! typo: the nearest field by spelling (`if` → `id`) would send them the wrong way, so lint
//! answers with the recipe's equivalent instead.

/// Where in a recipe an unknown key was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A key of the recipe's top-level mapping.
    Top,
    /// A key of one step.
    Step,
}

/// (place, word, where it comes from, what to write instead).
const HABITS: &[(Place, &str, &str, &str)] = &[
    (
        Place::Step,
        "if",
        "GitHub Actions",
        "a condition is `when:`, an expression without `{{ }}`, e.g. `when: \"job.DEPLOY == 'yes'\"`",
    ),
    (
        Place::Step,
        "name",
        "GitHub Actions and Ansible",
        "a step is named by `id` (lowercase letters, digits and `_`), which later steps read as `steps.<id>`",
    ),
    (
        Place::Step,
        "uses",
        "GitHub Actions",
        "what a step does is its `kind`, e.g. `kind: create_server`",
    ),
    (
        Place::Step,
        "with",
        "GitHub Actions",
        "a step's arguments go on the step itself, beside `kind`, not under `with:`",
    ),
    (
        Place::Step,
        "args",
        "Ansible",
        "a step's arguments go on the step itself, beside `kind`",
    ),
    (
        Place::Step,
        "register",
        "Ansible",
        "every step's outputs are kept: later steps of the same stage read them as `steps.<id>.<output>`",
    ),
    (
        Place::Step,
        "run",
        "GitHub Actions",
        "a command on the job's server is a step of `kind: ssh_command` with `command:`",
    ),
    (
        Place::Step,
        "shell",
        "Ansible",
        "a command on the job's server is a step of `kind: ssh_command` with `command:`",
    ),
    (
        Place::Step,
        "script",
        "GitLab CI",
        "the job's own script comes from gitlab-runner and runs in the `run` stage (`kind: ssh_run_script`); a command of the recipe's is `kind: ssh_command` with `command:`",
    ),
    (
        Place::Step,
        "timeout-minutes",
        "GitHub Actions",
        "write `timeout: 10m`",
    ),
    (
        Place::Step,
        "continue-on-error",
        "GitHub Actions",
        "write `on_failure: ignore`",
    ),
    (
        Place::Step,
        "ignore_errors",
        "Ansible",
        "write `on_failure: ignore`",
    ),
    (
        Place::Step,
        "allow_failure",
        "GitLab CI",
        "write `on_failure: ignore`",
    ),
    (
        Place::Step,
        "retries",
        "Ansible",
        "write `retry: {attempts: 3, delay: 5s}`",
    ),
    (
        Place::Step,
        "until",
        "Ansible",
        "a step is retried on error classes, not on a condition: `retry: {attempts: 3, on: [transient]}`",
    ),
    (
        Place::Step,
        "loop",
        "Ansible",
        "recipes have no loops: write one step per item",
    ),
    (
        Place::Step,
        "with_items",
        "Ansible",
        "recipes have no loops: write one step per item",
    ),
    (
        Place::Step,
        "env",
        "GitHub Actions",
        "templates read the driver's environment as `env.NAME` and the job's variables as `job.NAME`; values of the recipe's own go in the top-level `vars`",
    ),
    (
        Place::Step,
        "vars",
        "Ansible",
        "`vars` belong at the top of the recipe; a step gives later steps more with `kind: set_vars`",
    ),
    (
        Place::Top,
        "steps",
        "GitHub Actions",
        "steps are listed per stage: `prepare:`, `run:` and `cleanup:`",
    ),
    (
        Place::Top,
        "jobs",
        "GitHub Actions",
        "a recipe describes one job's machine; its steps are listed per stage: `prepare:`, `run:` and `cleanup:`",
    ),
    (
        Place::Top,
        "tasks",
        "Ansible",
        "steps are listed per stage: `prepare:`, `run:` and `cleanup:`",
    ),
    (
        Place::Top,
        "env",
        "GitHub Actions",
        "values of the recipe's own go in `vars`; templates read the driver's environment as `env.NAME`",
    ),
    (
        Place::Top,
        "variables",
        "GitLab CI",
        "values of the recipe's own go in `vars`; the job's variables are read as `job.NAME`",
    ),
    (
        Place::Top,
        "name",
        "GitHub Actions and Ansible",
        "what a recipe is for goes in `description`",
    ),
    (
        Place::Top,
        "include",
        "GitLab CI",
        "a recipe builds on another with `extends: path/to/base.yaml`",
    ),
];

/// What to tell an author who wrote `key` at `place`, when it is another tool's word.
pub fn advice(place: Place, key: &str) -> Option<String> {
    HABITS
        .iter()
        .find(|(p, word, _, _)| *p == place && *word == key)
        .map(|(_, word, tool, instead)| format!("`{word}` comes from {tool}: {instead}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_word_is_listed_once_per_place() {
        for (i, (place, word, _, _)) in HABITS.iter().enumerate() {
            assert!(
                !HABITS[i + 1..]
                    .iter()
                    .any(|(p, w, _, _)| p == place && w == word),
                "{word} twice"
            );
        }
    }

    #[test]
    fn a_habit_is_known_only_where_it_is_one() {
        assert!(advice(Place::Step, "if").unwrap().contains("`when:`"));
        assert!(advice(Place::Top, "if").is_none());
        assert!(advice(Place::Top, "steps").unwrap().contains("prepare"));
        assert!(advice(Place::Step, "mesage").is_none());
    }
}
