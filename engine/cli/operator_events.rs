//! Turning on the operator events (`EXECUTOR_EVENTS`) for a stage process or the pool daemon,
//! with the fields that tell one job's lines from another's.

use serde_json::{Map, Value as Json};

use executor_driver::steps::cloud_glue::STATE_SERVER_ID;
use executor_driver::steps::context::RunArgs;
use executor_driver::template::context::Environment;
use executor_foundation::events::{self, EVENTS_VAR};
use executor_foundation::job_log::JobLog;
use executor_foundation::job_state::JobState;
use executor_foundation::stage::Stage;

fn common() -> Map<String, Json> {
    let mut context = Map::new();
    context.insert("pid".into(), Json::from(std::process::id()));
    context.insert(
        "version".into(),
        Json::String(env!("CARGO_PKG_VERSION").to_string()),
    );
    context
}

/// Opens the events file named by the runner's environment, if any. A file that cannot be
/// opened is reported in the log and otherwise ignored: events must never fail a job.
fn open(context: Map<String, Json>, log: &JobLog) {
    let Some(path) = std::env::var_os(EVENTS_VAR).filter(|p| !p.is_empty()) else {
        return;
    };
    if let Err(e) = events::open(std::path::Path::new(&path), context) {
        log.warn(&format!(
            "cannot write operator events to {}: {e}",
            std::path::Path::new(&path).display()
        ));
    }
}

/// For one gitlab-runner stage: the stage (and `run`'s sub-stage), the job and its project as
/// gitlab-runner's job response names them, and the server once the state has one.
pub fn open_for_stage(
    stage: Stage,
    run: Option<&RunArgs>,
    environment: &Environment,
    state: &JobState,
    log: &JobLog,
) {
    let mut context = common();
    context.insert("stage".into(), Json::String(stage.name().to_string()));
    if let Some(r) = run {
        context.insert("sub_stage".into(), Json::String(r.stage.clone()));
    }
    let from_payload = |pointer: &str| {
        Json::Object(environment.trusted.clone())
            .pointer(pointer)
            .cloned()
    };
    let from_job = |name: &str| environment.job.get(name).cloned();
    if let Some(job) = from_payload("/id").or_else(|| from_job("CI_JOB_ID")) {
        context.insert("job".into(), job);
    }
    if let Some(project) =
        from_payload("/job_info/project_id").or_else(|| from_job("CI_PROJECT_ID"))
    {
        context.insert("project".into(), project);
    }
    if let Some(server) = state.get(STATE_SERVER_ID) {
        context.insert("server_id".into(), server.clone());
    }
    open(context, log);
}

/// The closing event of a stage.
pub fn stage_finished(took: std::time::Duration, outcome: &str) {
    let mut fields = Map::new();
    fields.insert("duration_ms".into(), events::millis(took));
    fields.insert("outcome".into(), Json::String(outcome.to_string()));
    events::emit(events::STAGE, fields);
}
