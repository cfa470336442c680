//! The job variables in the order gitlab-runner's `Build.GetAllVariables()` produces them.

use secrecy::ExposeSecret;

use super::config::RunnerConfig;
use super::job::{Job, JobVariable};
use super::project;

/// Everything the variable list depends on that changes during a job.
pub(crate) struct VariableContext<'a> {
    pub config: &'a RunnerConfig,
    pub job: &'a Job,
    pub job_id: u64,
    pub job_token: &'a str,
    pub short_token: &'a str,
    pub concurrent_id: u32,
    pub concurrent_project_id: u32,
    /// Empty during config, before `StartBuild` computed them.
    pub builds_dir: &'a str,
    pub project_dir: &'a str,
    pub job_status: &'a str,
    pub timeout_secs: u64,
}

/// Feature flags the generated scripts depend on, with the values the stand-in implements.
const FEATURE_FLAGS: &[(&str, &str)] = &[
    ("FF_ENABLE_BASH_EXIT_CODE_CHECK", "false"),
    ("FF_ENABLE_JOB_CLEANUP", "false"),
    ("FF_NETWORK_PER_BUILD", "false"),
    ("FF_POSIXLY_CORRECT_ESCAPES", "false"),
    ("FF_SCRIPT_SECTIONS", "false"),
    ("FF_TIMESTAMPS", "false"),
    ("FF_USE_LEGACY_BASH_EVAL", "false"),
    ("FF_USE_NEW_BASH_EVAL_STRATEGY", "false"),
];

/// `CI_RUNNER_SHORT_TOKEN`: the token without its `glrt-`/`t1_` prefix, first 9 characters.
pub(crate) fn short_token(config: &RunnerConfig) -> String {
    let token = config.token.expose_secret();
    let bare = token
        .strip_prefix("glrt-")
        .or_else(|| token.strip_prefix("t1_"))
        .unwrap_or(token);
    bare.chars().take(9).collect()
}

pub(crate) fn all_variables(cx: &VariableContext<'_>) -> Vec<JobVariable> {
    let mut v: Vec<JobVariable> = Vec::new();
    let plain = |k: &str, val: &str| JobVariable::new(k, val);
    for (k, val) in FEATURE_FLAGS {
        v.push(plain(k, val));
    }
    v.push(plain("CI_RUNNER_SHORT_TOKEN", cx.short_token));
    for (k, val) in &cx.config.environment {
        v.push(plain(k, val));
    }
    v.push(plain("CI_BUILDS_DIR", cx.builds_dir));
    v.push(plain("CI_PROJECT_DIR", cx.project_dir));
    v.push(plain("CI_CONCURRENT_ID", &cx.concurrent_id.to_string()));
    v.push(plain(
        "CI_CONCURRENT_PROJECT_ID",
        &cx.concurrent_project_id.to_string(),
    ));
    v.push(plain("CI_SERVER", "yes"));
    v.push(plain("CI_JOB_STATUS", cx.job_status));
    v.push(plain("CI_JOB_TIMEOUT", &cx.timeout_secs.to_string()));
    v.extend(gitlab_variables(cx));
    v.push(plain("CI_SHARED_ENVIRONMENT", "true"));
    v.push(plain("CI_RUNNER_VERSION", project::RUNNER_VERSION));
    v.push(plain("CI_RUNNER_REVISION", project::RUNNER_REVISION));
    v.push(plain(
        "CI_RUNNER_EXECUTABLE_ARCH",
        &format!("linux/{}", go_arch()),
    ));
    v.push(plain(
        "RUNNER_TEMP_PROJECT_DIR",
        &format!("{}.tmp", cx.project_dir),
    ));
    expand_all(&mut v);
    v
}

/// The variables GitLab itself sends with the job: predefined ones, then the user's.
pub(crate) fn gitlab_variables(cx: &VariableContext<'_>) -> Vec<JobVariable> {
    let plain = |k: &str, val: String| JobVariable::new(k, val);
    let secret = |k: &str, val: String| JobVariable::new(k, val).masked();
    let path = project::project_path();
    let mut v = vec![
        plain("CI_PIPELINE_ID", (cx.job_id + 100_000).to_string()),
        plain("CI_PIPELINE_SOURCE", "push".into()),
        plain("CI_JOB_ID", cx.job_id.to_string()),
        plain(
            "CI_JOB_URL",
            format!("{}/-/jobs/{}", project::project_url(), cx.job_id),
        ),
        secret("CI_JOB_TOKEN", cx.job_token.to_owned()),
        plain("CI_JOB_NAME", cx.job.name.clone()),
        plain("CI_JOB_STAGE", "test".into()),
        plain("CI_PROJECT_ID", project::PROJECT_ID.to_string()),
        plain("CI_PROJECT_NAME", project::PROJECT_NAME.into()),
        plain("CI_PROJECT_NAMESPACE", project::NAMESPACE.into()),
        plain("CI_PROJECT_PATH", path.clone()),
        plain("CI_PROJECT_PATH_SLUG", project::slug(&path)),
        plain("CI_PROJECT_URL", project::project_url()),
        JobVariable {
            public: false,
            ..plain("CI_REPOSITORY_URL", project::repository_url(cx.job_token))
        },
        plain("CI_COMMIT_SHA", project::COMMIT_SHA.into()),
        plain("CI_COMMIT_SHORT_SHA", project::COMMIT_SHA[..8].into()),
        plain("CI_COMMIT_REF_NAME", project::REF_NAME.into()),
        plain("CI_COMMIT_BRANCH", project::REF_NAME.into()),
        plain("CI_DEFAULT_BRANCH", project::REF_NAME.into()),
        plain("CI_RUNNER_ID", cx.config.runner_id.to_string()),
        plain("CI_RUNNER_DESCRIPTION", cx.config.name.clone()),
        plain("CI_RUNNER_TAGS", "[\"simulate\"]".into()),
        plain("CI_SERVER_URL", project::SERVER_URL.into()),
        plain("CI_SERVER_HOST", project::SERVER_HOST.into()),
        plain("GITLAB_CI", "true".into()),
        plain("CI", "true".into()),
    ];
    v.extend(
        cx.job
            .variables
            .iter()
            .filter(|j| !j.key.starts_with("FF_"))
            .cloned(),
    );
    v
}

/// Last value of `key`, as gitlab-runner's `Get` returns it.
pub(crate) fn lookup<'a>(vars: &'a [JobVariable], key: &str) -> Option<&'a str> {
    vars.iter()
        .rev()
        .find(|v| v.key == key)
        .map(|v| v.value.as_str())
}

/// Resolves `$NAME` and `${NAME}` references against the whole list (unknown names become
/// empty), except in `raw` variables, as GitLab does before the runner sees the values.
fn expand_all(vars: &mut [JobVariable]) {
    let snapshot: Vec<JobVariable> = vars.to_vec();
    for v in vars.iter_mut().filter(|v| !v.raw && v.value.contains('$')) {
        v.value = expand(&v.value, |name| {
            if name == v.key {
                None
            } else {
                lookup(&snapshot, name)
            }
        });
    }
}

pub(crate) fn expand<'a>(text: &str, get: impl Fn(&str) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(inner) = after.strip_prefix('{')
            && let Some(end) = inner.find('}')
        {
            out.push_str(get(&inner[..end]).unwrap_or(""));
            rest = &inner[end + 1..];
            continue;
        }
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
            continue;
        }
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if len == 0 {
            out.push('$');
        } else {
            out.push_str(get(&after[..len]).unwrap_or(""));
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_resolves_braced_bare_and_escaped_references() {
        let get = |k: &str| match k {
            "A" => Some("x"),
            _ => None,
        };
        assert_eq!(expand("$A-${A}-$$A-$B-$", get), "x-x-$A--$");
    }

    #[test]
    fn short_token_drops_the_prefix_and_keeps_nine_characters() {
        let with = |t: &str| RunnerConfig {
            token: t.to_owned().into(),
            ..RunnerConfig::default()
        };
        assert_eq!(short_token(&with("glrt-abcdefghijklmnop")), "abcdefghi");
        assert_eq!(short_token(&with("t1_zyxwvutsrqpo")), "zyxwvutsr");
    }
}
