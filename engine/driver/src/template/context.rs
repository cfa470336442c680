//! The names a template can read:
//!
//! | name       | what |
//! |------------|------|
//! | `env`      | the driver's process environment |
//! | `job`      | the job's variables: `CUSTOM_ENV_X` as `job.X` |
//! | `vars`     | the recipe's `vars`, evaluated in order |
//! | `steps`    | outputs of earlier steps of this stage: `steps.<id>.<key>` |
//! | `state`    | the job state saved by earlier stages |
//! | `run`      | in the run stage: `run.script` (path) and `run.stage` (sub-stage name) |
//! | `stage`    | the stage's name |
//! | `executor` | `executor.version` |
//! | `pool`     | in `provision`: the pool key the VM is made for (`pool.flavor`, ...) and `pool.vm`, an id of the VM's own |
//! | `trusted`  | the few fields of gitlab-runner's job payload (`JOB_RESPONSE_FILE`) that GitLab sets and no pipeline can: `trusted.id` (the job id), `trusted.job_info.project_id`, ... (see [`TRUSTED_FIELDS`]) |

use serde_json::{Map, Value as Json};

use executor_foundation::job_state::is_private_key;
use executor_foundation::url_userinfo::scrub_urls;

use crate::steps::context::RunArgs;
use executor_foundation::bounded_read::{JOB_RESPONSE_LIMIT, read_bounded};

pub const NAMES: [&str; 10] = [
    "env", "job", "vars", "steps", "state", "run", "stage", "executor", "trusted", "pool",
];
const JOB_PREFIX: &str = "CUSTOM_ENV_";

/// The environment split into what the driver got and what the job asked for.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub env: Map<String, Json>,
    pub job: Map<String, Json>,
    /// The job payload's fields that GitLab sets and no pipeline can ([`TRUSTED_FIELDS`]).
    pub trusted: Map<String, Json>,
    /// While provisioning: the pool key and the VM's id (`pool.vm`). Empty otherwise.
    pub pool: Map<String, Json>,
}

/// The payload fields `trusted` holds, as JSON pointers: those GitLab sets and a pipeline cannot
/// choose. An allow-list, because the payload is mostly the pipeline's own words (`steps`,
/// `image`, `job_info.name`, `git_info.ref`, variables) and hides secrets in nested places (the
/// token in `git_info.repo_url` and `dependencies[].token`); a field GitLab adds tomorrow stays
/// out until someone decides it belongs here.
pub const TRUSTED_FIELDS: [&str; 9] = [
    "/id",
    "/job_info/id",
    "/job_info/project_id",
    "/job_info/project_full_path",
    "/job_info/pipeline_id",
    // GitLab bounds a job's `timeout:` by the project's and the runner's maximum.
    "/runner_info/timeout",
    "/git_info/protected",
    // GitLab's URL of the project, with the job token in it: kept without its userinfo.
    "/git_info/repo_url",
    "/git_info/repo_object_format",
];

/// The allow-listed fields of `payload`, at their places, with credentials taken out of URLs.
fn trusted_fields(payload: &Json) -> Map<String, Json> {
    let mut out = Json::Object(Map::new());
    for pointer in TRUSTED_FIELDS {
        let Some(value) = payload.pointer(pointer) else {
            continue;
        };
        let value = match value {
            Json::String(text) => Json::String(scrub_urls(text).into_owned()),
            Json::Array(_) | Json::Object(_) => continue,
            other => other.clone(),
        };
        let mut at = &mut out;
        let mut parts = pointer.trim_start_matches('/').split('/').peekable();
        while let Some(part) = parts.next() {
            let Json::Object(m) = at else { break };
            if parts.peek().is_none() {
                m.insert(part.to_string(), value.clone());
                break;
            }
            at = m
                .entry(part.to_string())
                .or_insert_with(|| Json::Object(Map::new()));
        }
    }
    match out {
        Json::Object(m) => m,
        _ => Map::new(),
    }
}

/// The job `executor render` shows a stage for when it is given no `--env-file`: a few of
/// gitlab-runner's predefined variables (as `job.*`, and as `CUSTOM_ENV_*` in `env`) and a
/// payload's trusted fields. Made-up but plausible, so that a newcomer's first `render` shows a
/// result; the book's testing chapter lists them.
pub const SAMPLE_JOB_VARIABLES: [(&str, &str); 16] = [
    ("CI_JOB_ID", "1234"),
    ("CI_JOB_NAME", "test"),
    ("CI_JOB_STAGE", "test"),
    ("CI_JOB_TIMEOUT", "3600"),
    ("CI_PROJECT_ID", "42"),
    ("CI_PROJECT_PATH", "group/project"),
    ("CI_PROJECT_DIR", "/builds/group/project"),
    ("CI_BUILDS_DIR", "/builds"),
    ("CI_PIPELINE_ID", "567"),
    ("CI_COMMIT_REF_NAME", "main"),
    ("CI_COMMIT_BRANCH", "main"),
    ("CI_COMMIT_SHA", "0123456789abcdef0123456789abcdef01234567"),
    ("CI_SERVER_URL", "https://gitlab.example.com"),
    ("CI_RUNNER_ID", "1"),
    ("CI_CONCURRENT_ID", "0"),
    ("GITLAB_USER_LOGIN", "developer"),
];

/// The sample job's payload, of which `trusted` keeps the allow-listed fields.
pub fn sample_payload() -> Json {
    serde_json::json!({
        "id": 1234,
        "job_info": {
            "id": 1234,
            "project_id": 42,
            "project_full_path": "group/project",
            "pipeline_id": 567,
        },
        "runner_info": {"timeout": 3600},
        "git_info": {
            "protected": false,
            "repo_url": "https://gitlab.example.com/group/project.git",
            "repo_object_format": "sha1",
        },
    })
}

impl Environment {
    /// This environment, with the sample job's values where it has none of its own: a job
    /// variable the environment sets (`CUSTOM_ENV_X`) wins, and a payload it names
    /// (`JOB_RESPONSE_FILE`) replaces the sample payload whole.
    pub fn with_sample_job(mut self) -> Self {
        for (name, value) in SAMPLE_JOB_VARIABLES {
            if !self.job.contains_key(name) {
                self.job.insert(name.into(), Json::String(value.into()));
                self.env
                    .entry(format!("{JOB_PREFIX}{name}"))
                    .or_insert_with(|| Json::String(value.into()));
            }
        }
        if self.trusted.is_empty() {
            self.trusted = trusted_fields(&sample_payload());
        }
        self
    }

    pub fn from_process() -> Self {
        Self::from_pairs(std::env::vars())
    }

    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut e = Self::default();
        for (k, v) in pairs {
            if let Some(name) = k.strip_prefix(JOB_PREFIX) {
                e.job.insert(name.to_string(), Json::String(v.clone()));
            }
            e.env.insert(k, Json::String(v));
        }
        let payload = e
            .env
            .get("JOB_RESPONSE_FILE")
            .and_then(|p| p.as_str())
            .and_then(|p| read_bounded(std::path::Path::new(p), JOB_RESPONSE_LIMIT).ok());
        if let Some(Ok(payload)) = payload.map(|b| serde_json::from_slice::<Json>(&b)) {
            e.trusted = trusted_fields(&payload);
        }
        e
    }
}

/// Everything a template of one step sees.
pub struct ContextParts<'a> {
    pub environment: &'a Environment,
    pub vars: &'a Map<String, Json>,
    pub steps: &'a Map<String, Json>,
    pub state: &'a Map<String, Json>,
    pub run: Option<&'a RunArgs>,
    pub stage: &'a str,
}

impl ContextParts<'_> {
    pub fn to_json(&self) -> Json {
        let mut m = Map::new();
        m.insert("env".into(), Json::Object(self.environment.env.clone()));
        m.insert("job".into(), Json::Object(self.environment.job.clone()));
        m.insert("vars".into(), Json::Object(self.vars.clone()));
        m.insert("steps".into(), Json::Object(self.steps.clone()));
        // The driver's private keys (a cloud token) are no recipe's business.
        let state: Map<String, Json> = self
            .state
            .iter()
            .filter(|(k, _)| !is_private_key(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        m.insert("state".into(), Json::Object(state));
        if let Some(run) = self.run {
            m.insert(
                "run".into(),
                serde_json::json!({"script": run.script.display().to_string(), "stage": run.stage}),
            );
        }
        m.insert("stage".into(), Json::String(self.stage.into()));
        m.insert(
            "trusted".into(),
            Json::Object(self.environment.trusted.clone()),
        );
        m.insert("pool".into(), Json::Object(self.environment.pool.clone()));
        m.insert(
            "executor".into(),
            serde_json::json!({"version": env!("CARGO_PKG_VERSION")}),
        );
        Json::Object(m)
    }

    pub fn to_value(&self) -> minijinja::Value {
        crate::template::to_value(&self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_job_fills_only_what_the_environment_lacks() {
        let mine = Environment::from_pairs([
            ("CUSTOM_ENV_CI_JOB_ID".to_string(), "77".to_string()),
            ("FLAVOR".to_string(), "m1.large".to_string()),
        ])
        .with_sample_job();
        assert_eq!(mine.job["CI_JOB_ID"], "77");
        assert_eq!(mine.env["CUSTOM_ENV_CI_JOB_ID"], "77");
        assert_eq!(mine.job["CI_PROJECT_ID"], "42");
        assert_eq!(mine.env["CUSTOM_ENV_CI_PROJECT_ID"], "42");
        assert_eq!(mine.env["FLAVOR"], "m1.large");
        assert_eq!(mine.trusted["id"], 1234);
        assert_eq!(mine.trusted["job_info"]["project_id"], 42);
    }

    #[test]
    fn the_sample_payload_goes_through_the_allow_list() {
        let e = Environment::default().with_sample_job();
        assert_eq!(
            e.trusted["git_info"]["repo_url"],
            "https://gitlab.example.com/group/project.git"
        );
        let mut payload = sample_payload();
        payload["job_info"]["name"] = "not trusted".into();
        assert!(trusted_fields(&payload)["job_info"].get("name").is_none());
    }
}
