//! What a running step can see and touch.

use std::path::PathBuf;

use serde_json::{Map, Value as Json};
use tokio_util::sync::CancellationToken;

use crate::exit_codes::ExitCodes;
use crate::job_log::JobLog;
use crate::job_state::JobState;
use crate::services::Services;
use crate::stage::Stage;

/// A step's results, readable by later steps as `steps.<id>.<key>`.
pub type Outputs = Map<String, Json>;

/// The script and sub-stage gitlab-runner passed to `run`.
#[derive(Debug, Clone)]
pub struct RunArgs {
    pub script: PathBuf,
    pub stage: String,
}

pub struct StepContext<'a> {
    pub step_id: &'a str,
    pub stage: Stage,
    pub services: &'a Services,
    pub state: &'a mut JobState,
    pub vars: &'a mut Map<String, Json>,
    pub job: &'a Map<String, Json>,
    pub log: &'a JobLog,
    pub cancel: &'a CancellationToken,
    pub exit: &'a ExitCodes,
    pub run: Option<&'a RunArgs>,
}
