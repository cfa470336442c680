//! The four stages gitlab-runner calls.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Config,
    Prepare,
    Run,
    Cleanup,
    /// Not one of gitlab-runner's: the job-independent steps that make a VM ready. The pool
    /// daemon runs them ahead of jobs; `prepare` runs them inline when no warm VM is claimed.
    Provision,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Stage::Config, Stage::Prepare, Stage::Run, Stage::Cleanup];
    /// The step lists of a recipe.
    pub const WITH_STEPS: [Stage; 4] =
        [Stage::Provision, Stage::Prepare, Stage::Run, Stage::Cleanup];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Config => "config",
            Stage::Prepare => "prepare",
            Stage::Run => "run",
            Stage::Cleanup => "cleanup",
            Stage::Provision => "provision",
        }
    }

    pub fn parse(s: &str) -> Option<Stage> {
        Self::WITH_STEPS
            .into_iter()
            .chain([Stage::Config])
            .find(|st| st.name() == s)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The script and sub-stage gitlab-runner passed to `run`.
#[derive(Debug, Clone)]
pub struct RunArgs {
    pub script: PathBuf,
    pub stage: String,
}

impl RunArgs {
    /// What `run` is given for the build script, for renders outside a job (`render`, lint).
    pub fn sample() -> RunArgs {
        RunArgs {
            script: PathBuf::from("/tmp/custom-executor/script/script"),
            stage: "build_script".into(),
        }
    }
}
