//! The four stages gitlab-runner calls.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Config,
    Prepare,
    Run,
    Cleanup,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Stage::Config, Stage::Prepare, Stage::Run, Stage::Cleanup];
    /// The stages that hold steps.
    pub const WITH_STEPS: [Stage; 3] = [Stage::Prepare, Stage::Run, Stage::Cleanup];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Config => "config",
            Stage::Prepare => "prepare",
            Stage::Run => "run",
            Stage::Cleanup => "cleanup",
        }
    }

    pub fn parse(s: &str) -> Option<Stage> {
        Self::ALL.into_iter().find(|st| st.name() == s)
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
