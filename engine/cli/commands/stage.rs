//! One gitlab-runner stage as a process: load the recipe, run the stage, map the outcome to
//! the exit code gitlab-runner expects.

use std::io::Write;
use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use executor_driver::interpreter::Interpreter;
use executor_driver::recipe::config_block::ConfigBlock;
use executor_driver::recipe::deferred::Deferred;
use executor_driver::recipe::diagnostics;
use executor_driver::steps::context::RunArgs;
use executor_driver::steps::debug_hold;
use executor_driver::template::context::Environment;
use executor_foundation::exit_codes::{ExitCodes, Outcome};
use executor_foundation::job_log::JobLog;
use executor_foundation::job_response;
use executor_foundation::job_state::{self, JobState};
use executor_foundation::redact::Redactor;
use executor_foundation::stage::Stage;
use executor_foundation::state_binding;

/// Run `stage` and return the process exit code.
pub fn run(recipes: &[PathBuf], stage: Stage, run: Option<RunArgs>) -> i32 {
    let exit = ExitCodes::from_env();
    let log = JobLog::stderr(Redactor::from_env(), diagnostics::use_color());
    if stage == Stage::Run
        && let Err(e) = exit.clear_build_exit_code_file()
    {
        log.error(&format!(
            "cannot remove the stale BUILD_EXIT_CODE_FILE: {e}"
        ));
        return exit.system_failure;
    }
    let loaded = match crate::recipe_files::load_or_report(recipes) {
        Ok(l) => l,
        Err(count) => {
            log.error(&format!(
                "the recipe has {count} problem(s); run `executor lint` on it"
            ));
            return exit.system_failure;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            log.error(&format!("cannot start the async runtime: {e}"));
            return exit.system_failure;
        }
    };
    let started = std::time::Instant::now();
    let outcome = runtime.block_on(async {
        let cancel = CancellationToken::new();
        crate::signals::cancel_on_signals(cancel.clone());
        let Some(mut state) = load_state(stage, &log) else {
            return Outcome::SystemFailure;
        };
        let identity = job_response::read(
            std::env::var(job_response::JOB_RESPONSE_FILE)
                .ok()
                .as_deref(),
        );
        if let Err(e) = state_binding::bind(&mut state, identity) {
            log.error(&e.to_string());
            return Outcome::SystemFailure;
        }
        let environment = Environment::from_process();
        crate::operator_events::open_for_stage(stage, run.as_ref(), &environment, &state, &log);
        let interp = Interpreter::new(&loaded, &environment, &log, &exit, cancel.clone());
        let vars = match interp.evaluate_vars(&state, run.as_ref(), stage) {
            Ok(v) => v,
            Err(e) => {
                log.error(&e.message);
                return Outcome::SystemFailure;
            }
        };
        if stage == Stage::Config {
            return print_config(&interp, &vars, &state, &log);
        }
        let vars_for_hold = (stage == Stage::Run).then(|| vars.clone());
        let outcome = interp
            .run_stage(stage, &mut state, vars, run.as_ref())
            .await;
        // What failed the job, for the debug hold at cleanup. A cancelled job is not held:
        // gitlab-runner stops a cancel and a timeout alike, so the two cannot be told apart.
        if let (Some(vars), Some(r)) = (vars_for_hold, run.as_ref())
            && !matches!(outcome, Outcome::Success)
            && !cancel.is_cancelled()
        {
            // The `ssh:` block only names the user to log in as; a block that does not
            // render leaves the user out of the message.
            let ssh = loaded
                .recipe
                .ssh
                .as_ref()
                .and_then(|raw| interp.render_block("ssh", raw, &vars, &state, stage).ok())
                .unwrap_or(serde_json::Value::Null);
            if let Err(e) = debug_hold::after_failed_run(&mut state, &log, &r.stage, &ssh) {
                log.warn(&e.message);
            }
        }
        report_to_pool(&loaded, stage, run.as_ref(), started, outcome).await;
        outcome
    });
    crate::operator_events::stage_finished(started.elapsed(), outcome_name(outcome));
    exit.exit_code(outcome)
}

/// The job state of this stage's directory. A damaged one stops every stage but cleanup, which
/// goes on with an empty state: its steps still find the job's server and key pair by name and
/// ownership, and a server left behind would wait for `executor gc`.
fn load_state(stage: Stage, log: &JobLog) -> Option<JobState> {
    let dir = job_state::default_dir();
    match JobState::load(&dir) {
        Ok(s) => Some(s),
        Err(e @ job_state::StateError::Parse { .. }) if stage == Stage::Cleanup => {
            log.warn(&format!(
                "{e}; cleaning up by the server's name and this job's ownership instead"
            ));
            Some(JobState::empty_in(&dir))
        }
        Err(e) => {
            log.error(&e.to_string());
            None
        }
    }
}

fn print_config(
    interp: &Interpreter<'_>,
    vars: &serde_json::Map<String, serde_json::Value>,
    state: &JobState,
    log: &JobLog,
) -> Outcome {
    let rendered = match interp.render_block(
        "config",
        &interp.loaded.recipe.config.raw,
        vars,
        state,
        Stage::Config,
    ) {
        Ok(v) => v,
        Err(e) => {
            log.error(&e.message);
            return Outcome::SystemFailure;
        }
    };
    let config: ConfigBlock = match Deferred::<ConfigBlock>::parse(rendered) {
        Ok(c) => c,
        Err(e) => {
            log.error(&format!("{}: config: {e}", interp.locate("/config")));
            return Outcome::SystemFailure;
        }
    };
    // Exactly one JSON object and a newline: gitlab-runner parses stdout whole.
    let text = serde_json::to_string(&config).unwrap_or_else(|_| "{}".into());
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{text}").and_then(|_| out.flush()).is_err() {
        return Outcome::SystemFailure;
    }
    Outcome::Success
}

/// Tells the recipe's pool daemon, when one runs, how this stage went (its
/// `executor_stage_duration_seconds`). Best effort and brief: it never fails or holds up a stage.
async fn report_to_pool(
    loaded: &executor_driver::recipe::LoadedRecipe,
    stage: Stage,
    run: Option<&RunArgs>,
    started: std::time::Instant,
    outcome: Outcome,
) {
    let Some(pool) = &loaded.recipe.pool else {
        return;
    };
    let report = executor_pool::Report {
        stage: run.map_or_else(|| stage.name().to_string(), |r| r.stage.clone()),
        seconds: started.elapsed().as_secs_f64(),
        outcome: outcome_name(outcome).into(),
    };
    let _ = executor_pool::report(
        &pool.socket_path(),
        report,
        std::time::Duration::from_millis(300),
    )
    .await;
}

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "success",
        Outcome::BuildFailure(_) => "build_failure",
        Outcome::SystemFailure => "system_failure",
    }
}
