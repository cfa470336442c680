//! Which job this is, as gitlab-runner says in `JOB_RESPONSE_FILE`.
//!
//! gitlab-runner writes the job payload GitLab sent to `<tmp>/response.json` before `config`
//! and names it in `JOB_RESPONSE_FILE` for every stage. Its `id` and `job_info.project_id` are
//! GitLab's; the job's variables (`CI_JOB_ID`, `CI_PROJECT_ID`) are not, since a pipeline may
//! set them. So the job's identity is read from the file alone, and a missing file is an error
//! rather than a reason to believe the variables.

use std::path::PathBuf;

use serde_json::Value as Json;

/// The variable gitlab-runner sets to the payload's path.
pub const JOB_RESPONSE_FILE: &str = "JOB_RESPONSE_FILE";

/// The job and project ids GitLab assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobIdentity {
    pub job: String,
    pub project: String,
}

#[derive(Debug, thiserror::Error)]
pub enum JobIdentityError {
    #[error(
        "cannot tell which job this is: JOB_RESPONSE_FILE is not set (gitlab-runner sets it \
         for every stage; a hand-run stage must point it at a job payload)"
    )]
    NotSet,
    #[error(
        "cannot tell which job this is: JOB_RESPONSE_FILE {path} does not exist (gitlab-runner \
         writes it before `config`)"
    )]
    Missing { path: PathBuf },
    #[error("cannot read JOB_RESPONSE_FILE {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    // Position only: the file holds the job token.
    #[error("JOB_RESPONSE_FILE {path} is not JSON (line {line}, column {column})")]
    NotJson {
        path: PathBuf,
        line: usize,
        column: usize,
    },
    #[error(
        "JOB_RESPONSE_FILE {path} names no job id (`id`) or no project (`job_info.project_id`)"
    )]
    Incomplete { path: PathBuf },
}

impl JobIdentityError {
    /// Whether the payload is simply not there, as opposed to there and unusable.
    pub fn is_absent(&self) -> bool {
        matches!(self, Self::NotSet | Self::Missing { .. })
    }
}

/// A payload field as text: GitLab sends ids as numbers, tests sometimes as strings.
pub fn text_of(v: &Json) -> Option<String> {
    match v {
        Json::String(s) if !s.is_empty() => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The identity in the payload that `path` (the value of `JOB_RESPONSE_FILE`) names.
pub fn read(path: Option<&str>) -> Result<JobIdentity, JobIdentityError> {
    let path = PathBuf::from(
        path.filter(|p| !p.is_empty())
            .ok_or(JobIdentityError::NotSet)?,
    );
    let bytes = match crate::bounded_read::read_bounded(
        std::path::Path::new(&path),
        crate::bounded_read::JOB_RESPONSE_LIMIT,
    ) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(JobIdentityError::Missing { path });
        }
        Err(source) => return Err(JobIdentityError::Read { path, source }),
    };
    let v: Json = serde_json::from_slice(&bytes).map_err(|e| JobIdentityError::NotJson {
        path: path.clone(),
        line: e.line(),
        column: e.column(),
    })?;
    match (
        v.get("id").and_then(text_of),
        v.pointer("/job_info/project_id").and_then(text_of),
    ) {
        (Some(job), Some(project)) => Ok(JobIdentity { job, project }),
        _ => Err(JobIdentityError::Incomplete { path }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_the_payload_and_its_absence_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("response.json");
        std::fs::write(
            &file,
            r#"{"id": 5, "token": "t", "job_info": {"project_id": "9"}}"#,
        )
        .unwrap();
        let id = read(file.to_str()).unwrap();
        assert_eq!((id.job.as_str(), id.project.as_str()), ("5", "9"));
        assert!(read(None).unwrap_err().is_absent());
        assert!(
            read(dir.path().join("nope.json").to_str())
                .unwrap_err()
                .is_absent()
        );
        std::fs::write(&file, r#"{"token": "glcbt-secret"#).unwrap();
        let err = read(file.to_str()).unwrap_err();
        assert!(!err.is_absent());
        assert!(!err.to_string().contains("glcbt"), "{err}");
    }
}
