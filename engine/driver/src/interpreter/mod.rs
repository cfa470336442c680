//! Runs the steps of one stage: conditions, rendering, retries, timeouts, cancellation and
//! what a failure means. It knows steps only as `StepKind::run`; back ends are the steps' own
//! business.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json};
use tokio_util::sync::CancellationToken;

use crate::recipe::loader::LoadedRecipe;
use crate::recipe::retry_policy::RetryPolicy;
use crate::recipe::step_spec::{FailureMode, Fallback, StepSpec};
use crate::steps::StepError;
use crate::steps::StepKind;
use crate::steps::context::{RunArgs, StepContext};
use crate::steps::services::Services;
use crate::template::context::{ContextParts, Environment};
use crate::template::{TemplateError, Templater};
use executor_foundation::ErrorClass;
use executor_foundation::exit_codes::{ExitCodes, Outcome};
use executor_foundation::job_log::JobLog;
use executor_foundation::job_state::JobState;
use executor_foundation::stage::Stage;

mod outside_job;

/// The operator event of one step (see `executor_foundation::events`).
fn step_event(
    spec: &StepSpec,
    result: &Result<Option<Map<String, Json>>, StepError>,
    took: Duration,
) {
    if !executor_foundation::events::enabled() {
        return;
    }
    let mut fields = Map::new();
    fields.insert("step".into(), Json::String(spec.id().to_string()));
    fields.insert("kind".into(), Json::String(spec.kind.clone()));
    fields.insert(
        "duration_ms".into(),
        executor_foundation::events::millis(took),
    );
    let outcome = match result {
        Ok(Some(_)) => "ok",
        Ok(None) => "skipped",
        Err(_) => "failed",
    };
    fields.insert("outcome".into(), Json::String(outcome.into()));
    if let Err(e) = result {
        fields.insert("class".into(), Json::String(e.class.name().into()));
    }
    executor_foundation::events::emit(executor_foundation::events::STEP, fields);
}

/// The first step that failed a stage, and how.
#[derive(Debug, Clone)]
pub struct StepFailure {
    pub step: String,
    pub class: ErrorClass,
    pub message: String,
}

pub use outside_job::render_block_outside_job;

/// Back-end settings blocks, rendered for each step with what earlier steps found.
const SETTINGS_BLOCKS: [&str; 3] = ["cloud", "ssh", "pool"];

pub struct Interpreter<'a> {
    pub loaded: &'a LoadedRecipe,
    pub templater: Templater,
    environment: &'a Environment,
    /// Shared with the interpreter that runs `provision` inline for a job, so that both use
    /// one cloud connection.
    services: Arc<Services>,
    log: &'a JobLog,
    exit: &'a ExitCodes,
    cancel: CancellationToken,
}

/// A recipe error found while running: a template that fails, arguments that do not fit.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct RecipeError {
    pub message: String,
}

impl<'a> Interpreter<'a> {
    /// An interpreter with its own templater, and back ends that start on a step's first use
    /// (a stage that never talks to the cloud never authenticates).
    pub fn new(
        loaded: &'a LoadedRecipe,
        environment: &'a Environment,
        log: &'a JobLog,
        exit: &'a ExitCodes,
        cancel: CancellationToken,
    ) -> Self {
        Interpreter {
            loaded,
            templater: Templater::new(),
            environment,
            services: Arc::default(),
            log,
            exit,
            cancel,
        }
    }

    /// `file:line:col` of a JSON pointer into the merged recipe.
    pub fn locate(&self, pointer: &str) -> String {
        match self.loaded.spans.value_loc(pointer) {
            Some(loc) => {
                let (line, col) = self.loaded.sources.line_col(loc);
                let name = &self.loaded.sources.get(loc.file).name;
                format!("{name}:{line}:{col}")
            }
            None => "recipe".into(),
        }
    }

    fn template_error(&self, pointer: &str, what: &str, e: &TemplateError) -> RecipeError {
        RecipeError {
            message: format!("{}: {what}: {}", self.locate(pointer), e.message),
        }
    }

    /// Evaluate `vars` in order, each seeing the ones above it.
    pub fn evaluate_vars(
        &self,
        state: &JobState,
        run: Option<&RunArgs>,
        stage: Stage,
    ) -> Result<Map<String, Json>, RecipeError> {
        evaluate_vars_in_order(
            &self.templater,
            self.environment,
            self.loaded,
            state,
            run,
            stage,
            |name, inner, e| {
                let pointer = format!("/vars/{}{inner}", crate::template::escape_pointer(name));
                Err(self.template_error(&pointer, &format!("var `{name}`"), &e))
            },
        )
    }

    /// Render a top-level block (`config`, `cloud`, `ssh`) with vars and state.
    pub fn render_block(
        &self,
        name: &str,
        raw: &Json,
        vars: &Map<String, Json>,
        state: &JobState,
        stage: Stage,
    ) -> Result<Json, RecipeError> {
        let ctx = block_context(self.environment, vars, state, stage);
        self.templater
            .render_value(raw, &ctx)
            .map_err(|(inner, e)| self.template_error(&format!("/{name}{inner}"), name, &e))
    }

    /// Run one stage's steps and say how it ended.
    pub async fn run_stage(
        &self,
        stage: Stage,
        state: &mut JobState,
        vars: Map<String, Json>,
        run: Option<&RunArgs>,
    ) -> Outcome {
        self.run_stage_explained(stage, state, vars, run).await.0
    }

    /// [`run_stage`](Self::run_stage), also naming the step that failed the stage and how
    /// (the pool daemon's failure metrics).
    pub async fn run_stage_explained(
        &self,
        stage: Stage,
        state: &mut JobState,
        vars: Map<String, Json>,
        run: Option<&RunArgs>,
    ) -> (Outcome, Option<StepFailure>) {
        let mut first_failure: Option<StepFailure> = None;
        let mut vars = vars;
        let mut outputs = Map::new();
        let mut failure: Option<Outcome> = None;
        let steps = self.loaded.recipe.stage(stage);
        for (index, spec) in steps.iter().enumerate() {
            let pointer = format!("/{}/{index}", stage.name());
            let canceled = self.cancel.is_cancelled();
            // Cleanup exists to release what the job holds, so each of its steps runs even when
            // an earlier one failed.
            let runs_anyway = spec.common.always || stage == Stage::Cleanup;
            if (failure.is_some() || canceled) && !runs_anyway {
                continue;
            }
            let step_started = Instant::now();
            let result = self
                .run_step(spec, &pointer, stage, state, &mut vars, &outputs, run)
                .await;
            step_event(spec, &result, step_started.elapsed());
            let result = match (result, spec.common.fallback) {
                (Err(e), Some(Fallback::Provision)) if !self.cancel.is_cancelled() => {
                    self.log.info(&format!(
                        "step `{}` gave way to `provision`: {}",
                        spec.id(),
                        e.message
                    ));
                    match Box::pin(self.provision_inline(state, &vars, &outputs, run)).await {
                        Outcome::Success => Ok(None),
                        _ => Err(StepError::other("the inline `provision` steps failed")),
                    }
                }
                (result, _) => result,
            };
            match result {
                Ok(Some(out)) => {
                    outputs.insert(spec.id().to_string(), Json::Object(out));
                }
                Ok(None) => {}
                Err(e) => {
                    let outcome = self.failure_outcome(spec, &e);
                    match outcome {
                        None => self.log.warn(&format!(
                            "step `{}` failed, ignored: {}",
                            spec.id(),
                            e.message
                        )),
                        Some(o) => {
                            if e.class != ErrorClass::Script {
                                self.log.error(&format!(
                                    "step `{}` failed: {}",
                                    spec.id(),
                                    e.message
                                ));
                            }
                            failure.get_or_insert(o);
                            first_failure.get_or_insert(StepFailure {
                                step: spec.id().to_string(),
                                class: e.class,
                                message: e.message,
                            });
                        }
                    }
                }
            }
        }
        if failure.is_none() && self.cancel.is_cancelled() {
            self.log.error(&format!("{stage} stage cancelled"));
            failure = Some(Outcome::SystemFailure);
        }
        (failure.unwrap_or(Outcome::Success), first_failure)
    }

    /// Runs the recipe's `provision` steps for this job, with `pool` set to the job's rendered
    /// pool key and a fresh VM id, as the pool daemon would have run them.
    async fn provision_inline(
        &self,
        state: &mut JobState,
        vars: &Map<String, Json>,
        outputs: &Map<String, Json>,
        run: Option<&RunArgs>,
    ) -> Outcome {
        let environment = match self.provision_environment(state, vars, outputs, run, new_vm_id()) {
            Ok(environment) => environment,
            Err(e) => {
                self.log.error(&e.message);
                return Outcome::SystemFailure;
            }
        };
        let inline = Interpreter {
            loaded: self.loaded,
            templater: Templater::new(),
            environment: &environment,
            services: self.services.clone(),
            log: self.log,
            exit: self.exit,
            cancel: self.cancel.clone(),
        };
        // Vars are evaluated again: they may read `pool`, which only now has the VM's id.
        let vars = match inline.evaluate_vars(state, run, Stage::Provision) {
            Ok(v) => v,
            Err(e) => {
                self.log.error(&e.message);
                return Outcome::SystemFailure;
            }
        };
        inline.run_stage(Stage::Provision, state, vars, run).await
    }

    /// What `provision` sees when it runs for this job: this environment, with `pool` set to
    /// the recipe's `pool.key` rendered for the job and `pool.vm` to `vm`.
    pub fn provision_environment(
        &self,
        state: &JobState,
        vars: &Map<String, Json>,
        outputs: &Map<String, Json>,
        run: Option<&RunArgs>,
        vm: String,
    ) -> Result<Environment, RecipeError> {
        let mut pool = self.job_pool_key(state, vars, outputs, run)?;
        pool.insert("vm".into(), Json::String(vm));
        Ok(Environment {
            pool,
            ..self.environment.clone()
        })
    }

    /// The recipe's `pool.key`, rendered in the job's context.
    fn job_pool_key(
        &self,
        state: &JobState,
        vars: &Map<String, Json>,
        outputs: &Map<String, Json>,
        run: Option<&RunArgs>,
    ) -> Result<Map<String, Json>, RecipeError> {
        let Some(raw) = self.loaded.json.pointer("/pool/key") else {
            return Ok(Map::new());
        };
        let ctx = ContextParts {
            environment: self.environment,
            vars,
            steps: outputs,
            state: state.values(),
            run,
            stage: Stage::Prepare.name(),
        }
        .to_value();
        match self.templater.render_value(raw, &ctx) {
            Ok(Json::Object(m)) => Ok(m),
            Ok(other) => Err(RecipeError {
                message: format!(
                    "{}: pool.key must be a mapping, not {other}",
                    self.locate("/pool/key")
                ),
            }),
            Err((inner, e)) => {
                Err(self.template_error(&format!("/pool/key{inner}"), "pool.key", &e))
            }
        }
    }

    fn failure_outcome(&self, spec: &StepSpec, e: &StepError) -> Option<Outcome> {
        match (spec.common.on_failure, e.class) {
            (FailureMode::Ignore, _) => None,
            (_, ErrorClass::Script) => Some(Outcome::BuildFailure(e.script_exit)),
            (FailureMode::Build, _) => Some(Outcome::BuildFailure(None)),
            (FailureMode::System, _) => Some(Outcome::SystemFailure),
        }
    }

    /// Render, parse and run one step with its retries. `Ok(None)` means skipped.
    #[allow(clippy::too_many_arguments)]
    async fn run_step(
        &self,
        spec: &StepSpec,
        pointer: &str,
        stage: Stage,
        state: &mut JobState,
        vars: &mut Map<String, Json>,
        outputs: &Map<String, Json>,
        run: Option<&RunArgs>,
    ) -> Result<Option<Map<String, Json>>, StepError> {
        let retry = spec.common.retry.clone().unwrap_or_else(RetryPolicy::once);
        let mut attempt = 1;
        let started = Instant::now();
        loop {
            let ctx = ContextParts {
                environment: self.environment,
                vars,
                steps: outputs,
                state: state.values(),
                run,
                stage: stage.name(),
            }
            .to_value();
            if let Some(cond) = &spec.common.when {
                let go = self.templater.condition(cond, &ctx).map_err(|e| {
                    StepError::invalid(
                        self.template_error(&format!("{pointer}/when"), "when", &e)
                            .message,
                    )
                })?;
                if !go {
                    return Ok(None);
                }
            }
            // Render per attempt: a retried step sees what earlier attempts saved.
            let kind = self.render_kind(spec, pointer, &ctx)?;
            for block in SETTINGS_BLOCKS {
                if let Some(raw) = self.loaded.json.get(block) {
                    let rendered = self
                        .templater
                        .render_value(raw, &ctx)
                        .map_err(|(inner, e)| {
                            self.template_error(&format!("/{block}{inner}"), block, &e)
                                .message
                        });
                    self.services.set_settings(block, rendered);
                }
            }
            // Steps marked `always` must get to run after a cancel, so they get a fresh token.
            let token = if spec.common.always && self.cancel.is_cancelled() {
                CancellationToken::new()
            } else {
                self.cancel.clone()
            };
            let result = {
                let mut cx = StepContext {
                    step_id: spec.id(),
                    stage,
                    services: &self.services,
                    state,
                    vars,
                    job: &self.environment.job,
                    pool: &self.environment.pool,
                    log: self.log,
                    cancel: &token,
                    exit: self.exit,
                    run,
                };
                with_timeout(spec.common.timeout, &token, kind.run(&mut cx)).await
            };
            match result {
                Ok(out) => {
                    tracing::debug!(step = spec.id(), elapsed = ?started.elapsed(), "step done");
                    return Ok(Some(out));
                }
                Err(e) if attempt < retry.attempts && retry.retries(e.class) => {
                    let wait = retry.delay_after(attempt);
                    self.log.warn(&format!(
                        "step `{}` attempt {attempt}/{} failed ({}): {}; retrying in {:.1}s",
                        spec.id(),
                        retry.attempts,
                        e.class.name(),
                        e.message,
                        wait.as_secs_f64()
                    ));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = token.cancelled() => return Err(StepError::canceled()),
                    }
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn render_kind(
        &self,
        spec: &StepSpec,
        pointer: &str,
        ctx: &minijinja::Value,
    ) -> Result<StepKind, StepError> {
        let rendered = self
            .templater
            .render_value(&spec.kind_and_args(), ctx)
            .map_err(|(inner, e)| {
                StepError::invalid(
                    self.template_error(
                        &format!("{pointer}{inner}"),
                        &format!("step `{}`", spec.id()),
                        &e,
                    )
                    .message,
                )
            })?;
        serde_json::from_value::<StepKind>(rendered).map_err(|e| {
            StepError::invalid(format!(
                "{}: step `{}`: after rendering, its arguments do not fit `{}`: {e}",
                self.locate(pointer),
                spec.id(),
                spec.kind
            ))
        })
    }
}

/// A short id of a VM's own: names its server before any job owns it.
pub fn new_vm_id() -> String {
    let n: u64 = rand::random();
    format!("{:012x}", n & 0xffff_ffff_ffff)
}

/// Evaluates the recipe's `vars` in order, each seeing the ones above it. A var that fails to
/// render goes to `failed` (with its name and the pointer inside it), which either ends the
/// evaluation with an error or lets it go on without that var.
fn evaluate_vars_in_order<E>(
    templater: &Templater,
    environment: &Environment,
    loaded: &LoadedRecipe,
    state: &JobState,
    run: Option<&RunArgs>,
    stage: Stage,
    mut failed: impl FnMut(&str, String, TemplateError) -> Result<(), E>,
) -> Result<Map<String, Json>, E> {
    let mut vars = Map::new();
    let empty = Map::new();
    for (name, raw) in &loaded.recipe.vars {
        let ctx = ContextParts {
            environment,
            vars: &vars,
            steps: &empty,
            state: state.values(),
            run,
            stage: stage.name(),
        }
        .to_value();
        match templater.render_value(raw, &ctx) {
            Ok(value) => {
                vars.insert(name.clone(), value);
            }
            Err((inner, e)) => failed(name, inner, e)?,
        }
    }
    Ok(vars)
}

/// What a top-level block (`config`, `cloud`, `ssh`) sees: vars and state, but no step outputs
/// and no `run`.
fn block_context(
    environment: &Environment,
    vars: &Map<String, Json>,
    state: &JobState,
    stage: Stage,
) -> minijinja::Value {
    ContextParts {
        environment,
        vars,
        steps: &Map::new(),
        state: state.values(),
        run: None,
        stage: stage.name(),
    }
    .to_value()
}

async fn with_timeout<T>(
    limit: Option<Duration>,
    cancel: &CancellationToken,
    fut: impl std::future::Future<Output = Result<T, StepError>>,
) -> Result<T, StepError> {
    let limit = limit.unwrap_or(Duration::MAX);
    tokio::select! {
        r = tokio::time::timeout(limit, fut) => match r {
            Ok(r) => r,
            Err(_) => Err(StepError::timeout(format!("gave up after {}", humantime::format_duration(limit)))),
        },
        // A step that ignores the token still stops promptly: the stage is being killed.
        _ = async { cancel.cancelled().await; tokio::time::sleep(Duration::from_secs(5)).await } => Err(StepError::canceled()),
    }
}
