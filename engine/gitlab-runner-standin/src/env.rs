//! The environment of every driver invocation, in gitlab-runner's order: the runner's own
//! environment, the fixed protocol variables, `job_env` unprefixed, `CUSTOM_ENV_*` for every job
//! variable, and `CUSTOM_ENV_CI_JOB_SERVICES`. When a key repeats, the last value wins (as with
//! Go's `exec`, which keeps it at the position of its last occurrence).

use std::path::Path;

use indexmap::IndexMap;

use super::job::JobVariable;

pub(crate) struct EnvInputs<'a> {
    pub parent: &'a [(String, String)],
    pub tmp_dir: &'a Path,
    pub job_env: &'a IndexMap<String, String>,
    pub variables: &'a [JobVariable],
}

pub(crate) fn stage_environment(i: &EnvInputs<'_>) -> Vec<(String, String)> {
    let tmp = i.tmp_dir.display().to_string();
    let mut all: Vec<(String, String)> = i.parent.to_vec();
    all.push(("TMPDIR".into(), tmp.clone()));
    all.push(("BUILD_FAILURE_EXIT_CODE".into(), "1".into()));
    all.push(("SYSTEM_FAILURE_EXIT_CODE".into(), "2".into()));
    all.push((
        "BUILD_EXIT_CODE_FILE".into(),
        format!("{tmp}/build_exit_code"),
    ));
    all.push(("JOB_RESPONSE_FILE".into(), format!("{tmp}/response.json")));
    all.extend(i.job_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    all.extend(
        i.variables
            .iter()
            .map(|v| (format!("CUSTOM_ENV_{}", v.key), v.value.clone())),
    );
    // The job has no services, which gitlab-runner passes as the empty string.
    all.push(("CUSTOM_ENV_CI_JOB_SERVICES".into(), String::new()));
    dedup_last_wins(all)
}

fn dedup_last_wins(all: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<(String, String)> = all
        .into_iter()
        .rev()
        .filter(|(k, _)| seen.insert(k.clone()))
        .collect();
    out.reverse();
    out
}

/// The runner process's environment; entries that are not UTF-8 are left out.
pub(crate) fn parent_environment() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_last_duplicate_wins() {
        let parent = vec![
            ("PATH".to_owned(), "/bin".to_owned()),
            ("TMPDIR".to_owned(), "/old".to_owned()),
        ];
        let mut job_env = IndexMap::new();
        job_env.insert("PATH".to_owned(), "/driver/bin".to_owned());
        job_env.insert("CUSTOM_ENV_X".to_owned(), "from job_env".to_owned());
        let vars = vec![JobVariable::new("X", "1"), JobVariable::new("X", "2")];
        let env = stage_environment(&EnvInputs {
            parent: &parent,
            tmp_dir: Path::new("/tmp/custom-executor1"),
            job_env: &job_env,
            variables: &vars,
        });
        let keys: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "TMPDIR",
                "BUILD_FAILURE_EXIT_CODE",
                "SYSTEM_FAILURE_EXIT_CODE",
                "BUILD_EXIT_CODE_FILE",
                "JOB_RESPONSE_FILE",
                "PATH",
                "CUSTOM_ENV_X",
                "CUSTOM_ENV_CI_JOB_SERVICES"
            ]
        );
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("TMPDIR"), Some("/tmp/custom-executor1"));
        assert_eq!(get("PATH"), Some("/driver/bin"));
        assert_eq!(get("CUSTOM_ENV_X"), Some("2"));
    }
}
