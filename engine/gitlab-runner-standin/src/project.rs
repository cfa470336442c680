//! The GitLab project, pipeline and server the simulated jobs pretend to come from.
//!
//! The server URL uses a reserved example domain: nothing in the stand-in ever connects to it.

pub(crate) const SERVER_URL: &str = "https://gitlab.example.com";
pub(crate) const SERVER_HOST: &str = "gitlab.example.com";
pub(crate) const PROJECT_ID: u64 = 7;
pub(crate) const NAMESPACE: &str = "executor";
pub(crate) const PROJECT_NAME: &str = "simulate";
pub(crate) const COMMIT_SHA: &str = "5e1f2c9a7b3d4e6f8a0b1c2d3e4f5a6b7c8d9e0f";
pub(crate) const REF_NAME: &str = "main";
pub(crate) const RUNNER_VERSION: &str = "19.4.0";
pub(crate) const RUNNER_REVISION: &str = "d79f3e7b";

pub(crate) fn project_path() -> String {
    format!("{NAMESPACE}/{PROJECT_NAME}")
}

pub(crate) fn project_url() -> String {
    format!("{SERVER_URL}/{}", project_path())
}

/// The clone URL as GitLab sends it: the job token is embedded, so it is never logged as is.
pub(crate) fn repository_url(job_token: &str) -> String {
    format!(
        "https://gitlab-ci-token:{job_token}@{SERVER_HOST}/{}.git",
        project_path()
    )
}

/// `CI_PROJECT_PATH_SLUG`: lowercased, non-alphanumerics replaced by `-`, at most 63 bytes.
pub(crate) fn slug(s: &str) -> String {
    let mut out: String = s
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    out.truncate(63);
    out.trim_matches('-').to_owned()
}
