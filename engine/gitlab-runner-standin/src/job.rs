//! A CI job as the stand-in runs it, and the small `.gitlab-ci.yml` subset it is read from.

use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;

/// One job variable as GitLab sends it in the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobVariable {
    pub key: String,
    pub value: String,
    pub public: bool,
    /// File-type: the driver gets the content; the job script gets a path.
    pub file: bool,
    pub masked: bool,
    /// Not expanded (`expand: false`).
    pub raw: bool,
}

impl JobVariable {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
            public: true,
            file: false,
            masked: false,
            raw: false,
        }
    }

    pub fn masked(mut self) -> Self {
        self.masked = true;
        self.public = false;
        self
    }
}

/// `cache:` reduced to what decides whether the cache stages are invoked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobCache {
    pub key: String,
    pub paths: Vec<String>,
    pub when: When,
}

/// `artifacts:` reduced to what decides whether the upload stages are invoked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobArtifacts {
    pub paths: Vec<String>,
    pub when: When,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    #[default]
    OnSuccess,
    OnFailure,
    Always,
}

impl When {
    pub(crate) fn matches(self, failed: bool) -> bool {
        match self {
            When::Always => true,
            When::OnSuccess => !failed,
            When::OnFailure => failed,
        }
    }
}

/// A job: what the payload, the variables and the generated scripts are built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub name: String,
    /// The runner assigns one when this is `None`.
    pub id: Option<u64>,
    pub script: Vec<String>,
    pub after_script: Vec<String>,
    pub variables: Vec<JobVariable>,
    pub timeout: Option<Duration>,
    pub allow_failure_exit_codes: Vec<i32>,
    /// `allow_failure: true`: any script failure is allowed.
    pub allow_failure: bool,
    pub cache: Option<JobCache>,
    pub artifacts: Option<JobArtifacts>,
}

impl Job {
    /// A job named `simulate` whose script is the given shell text, one command per line.
    pub fn from_script(script: &str) -> Self {
        Self {
            name: "simulate".into(),
            id: None,
            script: script
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_owned)
                .collect(),
            after_script: Vec::new(),
            variables: Vec::new(),
            timeout: None,
            allow_failure_exit_codes: Vec::new(),
            allow_failure: false,
            cache: None,
            artifacts: None,
        }
    }

    pub fn with_variable(mut self, var: JobVariable) -> Self {
        self.variables.push(var);
        self
    }

    /// Reads every job of a job file. A file whose top level has `script:` is one job (named
    /// `job`); otherwise every top-level mapping is a job and top-level `variables:` apply to all.
    pub fn parse_file(src: &str) -> Result<Vec<Job>, JobFileError> {
        let yaml = |e: serde_saphyr::Error| JobFileError::Yaml(e.to_string());
        let probe: serde_json::Value = serde_saphyr::from_str(src).map_err(yaml)?;
        let Some(top) = probe.as_object() else {
            return Err(JobFileError::NotAMapping);
        };
        if top.contains_key("script") {
            // Typed parse of the source itself, so that errors carry line and column.
            let spec: JobSpec = serde_saphyr::from_str(src).map_err(yaml)?;
            return Ok(vec![spec.into_job("job".into(), &IndexMap::new())?]);
        }
        let global: IndexMap<String, VariableSpec> = match top.get("variables") {
            None | Some(serde_json::Value::Null) => IndexMap::new(),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| JobFileError::Yaml(format!("variables: {e}")))?,
        };
        let mut jobs = Vec::new();
        for (name, value) in top {
            // Hidden jobs (templates) are never run, whatever they hold.
            if name == "variables" || name == "stages" || name.starts_with('.') {
                continue;
            }
            if UNSUPPORTED_KEYWORDS.contains(&name.as_str()) {
                return Err(JobFileError::Unsupported { key: name.clone() });
            }
            let spec: JobSpec =
                serde_json::from_value(value.clone()).map_err(|e| JobFileError::Job {
                    job: name.clone(),
                    reason: e.to_string(),
                })?;
            jobs.push(spec.into_job(name.clone(), &global)?);
        }
        if jobs.is_empty() {
            return Err(JobFileError::NoJobs);
        }
        Ok(jobs)
    }
}

/// Global `.gitlab-ci.yml` keywords outside the subset; named in the error rather than being
/// mistaken for jobs.
const UNSUPPORTED_KEYWORDS: &[&str] = &[
    "default",
    "include",
    "workflow",
    "image",
    "services",
    "before_script",
    "after_script",
    "cache",
    "spec",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JobFileError {
    #[error("job file: {0}")]
    Yaml(String),
    #[error("job file: the top level must be a mapping")]
    NotAMapping,
    #[error("job file: no job with a `script:` found")]
    NoJobs,
    #[error(
        "job file: `{key}` is not in the supported subset (script, after_script, variables, timeout, allow_failure, cache, artifacts)"
    )]
    Unsupported { key: String },
    #[error("job file: job `{job}`: {reason}")]
    Job { job: String, reason: String },
    #[error("job file: job `{job}` has an empty `script:`")]
    EmptyScript { job: String },
    #[error("job file: job `{job}`: invalid timeout `{value}`: {reason}")]
    Timeout {
        job: String,
        value: String,
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JobSpec {
    script: Lines,
    #[serde(default)]
    after_script: Option<Lines>,
    #[serde(default)]
    variables: IndexMap<String, VariableSpec>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    allow_failure: Option<AllowFailureSpec>,
    #[serde(default)]
    cache: Option<CacheSpec>,
    #[serde(default)]
    artifacts: Option<ArtifactsSpec>,
    #[serde(default)]
    #[allow(dead_code)]
    stage: Option<String>,
}

/// `script:` is a string or a list whose items may themselves be lists (GitLab flattens them).
#[derive(Deserialize)]
#[serde(untagged)]
enum Lines {
    One(String),
    Many(Vec<LineItem>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum LineItem {
    One(String),
    Nested(Vec<String>),
}

impl Lines {
    fn flatten(self) -> Vec<String> {
        match self {
            Lines::One(s) => vec![s],
            Lines::Many(items) => items
                .into_iter()
                .flat_map(|i| match i {
                    LineItem::One(s) => vec![s],
                    LineItem::Nested(v) => v,
                })
                .collect(),
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(untagged)]
enum VariableSpec {
    Scalar(Scalar),
    Full(FullVariable),
}

#[derive(Clone, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl Scalar {
    fn text(self) -> String {
        match self {
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Str(s) => s,
        }
    }
}

/// GitLab's long form (`value`, `description`, `expand`), plus the stand-in's `masked` and `file`,
/// which in GitLab are project settings rather than `.gitlab-ci.yml` keys.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FullVariable {
    value: Scalar,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default = "yes")]
    expand: bool,
    #[serde(default)]
    masked: bool,
    #[serde(default)]
    file: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(untagged)]
enum AllowFailureSpec {
    Flag(bool),
    ExitCodes(ExitCodesSpec),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExitCodesSpec {
    exit_codes: IntOrList,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IntOrList {
    One(i32),
    Many(Vec<i32>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheSpec {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    when: When,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArtifactsSpec {
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    when: When,
}

impl VariableSpec {
    fn into_variable(self, key: &str) -> JobVariable {
        match self {
            VariableSpec::Scalar(s) => JobVariable::new(key, s.text()),
            VariableSpec::Full(f) => JobVariable {
                key: key.into(),
                value: f.value.text(),
                public: !f.masked,
                file: f.file,
                masked: f.masked,
                raw: !f.expand,
            },
        }
    }
}

impl JobSpec {
    fn into_job(
        self,
        name: String,
        global: &IndexMap<String, VariableSpec>,
    ) -> Result<Job, JobFileError> {
        let script = self.script.flatten();
        if script.iter().all(|l| l.trim().is_empty()) {
            return Err(JobFileError::EmptyScript { job: name });
        }
        let timeout = match self.timeout {
            None => None,
            Some(t) => Some(
                humantime::parse_duration(&t).map_err(|e| JobFileError::Timeout {
                    job: name.clone(),
                    value: t.clone(),
                    reason: e.to_string(),
                })?,
            ),
        };
        let mut variables: Vec<JobVariable> = Vec::new();
        // Global variables first, so a job-level value of the same name comes later and wins.
        for (k, v) in global {
            variables.push(v.clone().into_variable(k));
        }
        for (k, v) in self.variables {
            variables.push(v.into_variable(&k));
        }
        let allow_failure = matches!(self.allow_failure, Some(AllowFailureSpec::Flag(true)));
        let allow_failure_exit_codes = match self.allow_failure {
            Some(AllowFailureSpec::ExitCodes(ExitCodesSpec {
                exit_codes: IntOrList::One(c),
            })) => vec![c],
            Some(AllowFailureSpec::ExitCodes(ExitCodesSpec {
                exit_codes: IntOrList::Many(v),
            })) => v,
            Some(AllowFailureSpec::Flag(_)) | None => Vec::new(),
        };
        Ok(Job {
            name,
            id: None,
            script,
            after_script: self.after_script.map(Lines::flatten).unwrap_or_default(),
            variables,
            timeout,
            allow_failure_exit_codes,
            allow_failure,
            cache: self.cache.map(|c| JobCache {
                key: c.key.unwrap_or_else(|| "default".into()),
                paths: c.paths,
                when: c.when,
            }),
            artifacts: self.artifacts.map(|a| JobArtifacts {
                paths: a.paths,
                when: a.when,
            }),
        })
    }
}
