//! What a running step can see and touch.

use serde_json::{Map, Value as Json};
use tokio_util::sync::CancellationToken;

use crate::steps::services::Services;
use executor_foundation::exit_codes::ExitCodes;
use executor_foundation::job_log::JobLog;
use executor_foundation::job_state::JobState;
use executor_foundation::stage::Stage;

/// A step's results, readable by later steps as `steps.<id>.<key>`.
pub type Outputs = Map<String, Json>;

pub use executor_foundation::stage::RunArgs;

pub struct StepContext<'a> {
    pub step_id: &'a str,
    pub stage: Stage,
    pub services: &'a Services,
    pub state: &'a mut JobState,
    pub vars: &'a mut Map<String, Json>,
    pub job: &'a Map<String, Json>,
    /// While provisioning: the pool key and `vm`, the VM's id. Empty otherwise.
    pub pool: &'a Map<String, Json>,
    pub log: &'a JobLog,
    pub cancel: &'a CancellationToken,
    pub exit: &'a ExitCodes,
    pub run: Option<&'a RunArgs>,
}
