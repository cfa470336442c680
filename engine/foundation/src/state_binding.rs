//! The job state belongs to one job.
//!
//! The state file carries the server, its pinned host key and the key that logs in to it. A
//! stage that picked up another job's state would send this job's script, and its job token,
//! to that job's server, or delete it at cleanup. So the first stage that knows its job (from
//! gitlab-runner's payload) records the job in the state, and every later stage refuses a state
//! recorded for another job.

use std::path::PathBuf;

use serde_json::{Value as Json, json};

use crate::job_response::{JobIdentity, JobIdentityError, text_of};
use crate::job_state::JobState;

/// State key of the binding. Private (`_`): recipes have no business reading or faking it.
pub const STATE_JOB: &str = "_job";
/// Field of the binding that names the runner (the recipe's `cloud.owner`), recorded by the
/// first cloud step, which is where the owner is known.
pub const BINDING_OWNER: &str = "owner";

#[derive(Debug, thiserror::Error)]
pub enum BindingError {
    #[error(
        "the job state in {dir} belongs to {theirs}, not to this job ({ours}): refusing to use \
         another job's server"
    )]
    OtherJob {
        dir: PathBuf,
        theirs: String,
        ours: String,
    },
    #[error(
        "the job state in {dir} belongs to {theirs}, and this stage cannot prove it is that job: \
         {reason}"
    )]
    Unproven {
        dir: PathBuf,
        theirs: String,
        reason: JobIdentityError,
    },
    #[error(
        "the job state in {dir} was made for runner `{theirs}`, not for this recipe's owner \
         `{ours}`"
    )]
    OtherOwner {
        dir: PathBuf,
        theirs: String,
        ours: String,
    },
}

fn describe(job: &str, project: &str) -> String {
    format!("job {job} of project {project}")
}

fn recorded(state: &JobState) -> Option<(String, String)> {
    let b = state.get(STATE_JOB)?;
    Some((
        b.get("job").and_then(text_of).unwrap_or_default(),
        b.get("project").and_then(text_of).unwrap_or_default(),
    ))
}

fn dir_of(state: &JobState) -> PathBuf {
    state.dir().map(PathBuf::from).unwrap_or_default()
}

/// Checks that `state` is this job's, and records the job in a state that names none yet (the
/// record is written with the state's next save). Without a payload a state that names no job
/// stays unbound: there is nothing to record, and the cloud steps refuse to run anyway.
pub fn bind(
    state: &mut JobState,
    identity: Result<JobIdentity, JobIdentityError>,
) -> Result<(), BindingError> {
    match (recorded(state), identity) {
        (Some((job, project)), Ok(id)) => {
            if job == id.job && project == id.project {
                Ok(())
            } else {
                Err(BindingError::OtherJob {
                    dir: dir_of(state),
                    theirs: describe(&job, &project),
                    ours: describe(&id.job, &id.project),
                })
            }
        }
        (Some((job, project)), Err(reason)) => Err(BindingError::Unproven {
            dir: dir_of(state),
            theirs: describe(&job, &project),
            reason,
        }),
        (None, Ok(id)) => {
            state.set(STATE_JOB, json!({"job": id.job, "project": id.project}));
            Ok(())
        }
        (None, Err(_)) => Ok(()),
    }
}

/// Checks the runner recorded in a bound state against `owner`, recording it the first time.
/// A state bound to no job (the pool daemon's VMs) is left alone. Returns whether the state
/// changed and needs saving.
pub fn bind_owner(state: &mut JobState, owner: &str) -> Result<bool, BindingError> {
    let Some(Json::Object(binding)) = state.get(STATE_JOB).cloned() else {
        return Ok(false);
    };
    match binding.get(BINDING_OWNER).and_then(Json::as_str) {
        Some(theirs) if theirs == owner => Ok(false),
        Some(theirs) => Err(BindingError::OtherOwner {
            dir: dir_of(state),
            theirs: theirs.to_string(),
            ours: owner.to_string(),
        }),
        None => {
            let mut binding = binding;
            binding.insert(BINDING_OWNER.into(), Json::String(owner.to_string()));
            state.set(STATE_JOB, Json::Object(binding));
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn id(job: &str) -> Result<JobIdentity, JobIdentityError> {
        Ok(JobIdentity {
            job: job.into(),
            project: "7".into(),
        })
    }

    #[test]
    fn a_state_is_bound_to_its_first_job_and_refuses_every_other() {
        let mut state = JobState::in_memory(Map::new());
        bind(&mut state, id("1")).unwrap();
        bind(&mut state, id("1")).unwrap();
        let err = bind(&mut state, id("2")).unwrap_err();
        assert!(
            err.to_string()
                .contains("belongs to job 1 of project 7, not to this job (job 2 of project 7)"),
            "{err}"
        );
        assert!(matches!(
            bind(&mut state, Err(JobIdentityError::NotSet)),
            Err(BindingError::Unproven { .. })
        ));
        assert!(bind_owner(&mut state, "a").unwrap());
        assert!(matches!(
            bind_owner(&mut state, "b"),
            Err(BindingError::OtherOwner { .. })
        ));
    }

    #[test]
    fn an_unbound_state_without_a_payload_stays_unbound() {
        let mut state = JobState::in_memory(Map::new());
        bind(&mut state, Err(JobIdentityError::NotSet)).unwrap();
        assert!(state.get(STATE_JOB).is_none());
        assert!(!bind_owner(&mut state, "pool").unwrap());
    }
}
