//! The metadata that proves a server is ours, and whose job it belongs to.
//!
//! Names are built from job variables a pipeline can change, so a name alone proves nothing
//! (peers.md, bug 1). Cleanup and the reaper act only on servers whose metadata matches.

use std::collections::BTreeMap;
use std::time::SystemTime;

/// Metadata key: the runner (system id or id) that created the server.
pub const META_RUNNER: &str = "executor:runner";
/// Metadata key: the GitLab project id.
pub const META_PROJECT: &str = "executor:project";
/// Metadata key: the GitLab job id.
pub const META_JOB: &str = "executor:job";
/// Metadata key: creation time, RFC 3339 UTC.
pub const META_CREATED: &str = "executor:created";

/// The project of a warm-pool VM that no job has claimed yet; its `executor:job` is the VM's id.
/// A claim replaces both with the job's.
pub const POOL_PROJECT: &str = "pool";

/// Who a resource belongs to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ownership {
    /// The runner, e.g. gitlab-runner's system id.
    pub runner: String,
    /// The GitLab project id.
    pub project: String,
    /// The GitLab job id.
    pub job: String,
}

impl Ownership {
    /// The metadata every server we create carries.
    pub fn metadata(&self, now: SystemTime) -> BTreeMap<String, String> {
        BTreeMap::from([
            (META_RUNNER.to_string(), self.runner.clone()),
            (META_PROJECT.to_string(), self.project.clone()),
            (META_JOB.to_string(), self.job.clone()),
            (
                META_CREATED.to_string(),
                humantime::format_rfc3339_seconds(now).to_string(),
            ),
        ])
    }

    /// Whether `metadata` says the resource belongs to this very job.
    pub fn owns(&self, metadata: &BTreeMap<String, String>) -> bool {
        metadata.get(META_RUNNER) == Some(&self.runner)
            && metadata.get(META_PROJECT) == Some(&self.project)
            && metadata.get(META_JOB) == Some(&self.job)
    }

    /// The description put on floating IPs and other resources without metadata.
    pub fn marker(&self) -> String {
        format!(
            "executor runner={} project={} job={}",
            self.runner, self.project, self.job
        )
    }
}

impl Ownership {
    /// The owner a floating IP's description names, when it is `runner`'s marker.
    pub fn from_marker(description: &str, runner: &str) -> Option<Self> {
        let rest = description.strip_prefix(&format!("executor runner={runner} project="))?;
        let (project, job) = rest.rsplit_once(" job=")?;
        let owner = Ownership {
            runner: runner.to_string(),
            project: project.to_string(),
            job: job.to_string(),
        };
        (!job.is_empty() && owner.marker() == description).then_some(owner)
    }
}

/// Whether `metadata` says the resource was created by `runner` (any job): the reaper's test.
pub fn created_by_runner(metadata: &BTreeMap<String, String>, runner: &str) -> bool {
    metadata.get(META_RUNNER).map(String::as_str) == Some(runner) && metadata.contains_key(META_JOB)
}

/// The creation time recorded in `metadata`.
pub fn created_at(metadata: &BTreeMap<String, String>) -> Option<SystemTime> {
    humantime::parse_rfc3339(metadata.get(META_CREATED)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_names_its_owner_and_only_for_its_runner() {
        let owner = Ownership {
            runner: "r1".into(),
            project: "7".into(),
            job: "42".into(),
        };
        assert_eq!(
            Ownership::from_marker(&owner.marker(), "r1"),
            Some(owner.clone())
        );
        assert_eq!(Ownership::from_marker(&owner.marker(), "r"), None);
        assert_eq!(
            Ownership::from_marker(&owner.marker(), "r1 project=7"),
            None
        );
        assert_eq!(
            Ownership::from_marker("executor runner=r1 project=7 job=", "r1"),
            None
        );
        assert_eq!(Ownership::from_marker("for the web server", "r1"), None);
    }
}
