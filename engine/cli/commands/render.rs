//! `executor render`: the merged recipe, and what a stage's steps would receive, without calling
//! any back end. Outputs of earlier steps are not known without running them, so they show as
//! `<steps.ID.KEY>` placeholders.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use minijinja::value::{Object, ObjectRepr, Value};
use serde_json::{Map, Value as Json};

use executor_driver::interpreter::Interpreter;
use executor_driver::recipe::LoadedRecipe;
use executor_driver::steps::context::RunArgs;
use executor_driver::template::context::{ContextParts, Environment};
use executor_foundation::bounded_read::{CONFIG_LIMIT, read_to_string_bounded};
use executor_foundation::job_log::JobLog;
use executor_foundation::job_state::JobState;
use executor_foundation::redact::Redactor;
use executor_foundation::stage::Stage;

pub fn run(recipes: &[PathBuf], stage: Option<&str>, env_file: Option<&Path>) -> i32 {
    let Ok(loaded) = crate::recipe_files::load_or_report(recipes) else {
        return 1;
    };
    let (environment, redactor) = match env_file {
        Some(path) => match read_to_string_bounded(path, CONFIG_LIMIT) {
            Ok(text) => {
                let pairs = parse_env_file(&text);
                // The file's secrets, the job token of the payload it names included, are
                // masked as a stage would mask its own; so are this shell's.
                let redactor = Redactor::from_pairs(std::env::vars().chain(pairs.clone()));
                (Environment::from_pairs(pairs), redactor)
            }
            Err(e) => {
                eprintln!("cannot read {}: {e}", path.display());
                return 1;
            }
        },
        None => (Environment::from_process(), Redactor::from_env()),
    };
    let Some(stage_name) = stage else {
        let text = serde_saphyr::to_string(&loaded.recipe).unwrap_or_default();
        print!("{}", redactor.redact(&text));
        return 0;
    };
    let Some(stage) = Stage::parse(stage_name) else {
        eprintln!("unknown stage `{stage_name}`: use config, prepare, run or cleanup");
        return 2;
    };
    // Without a job's environment most recipes cannot render at all (`job.CI_JOB_ID` is
    // undefined), which is all a newcomer would see; a sample job shows them the rest.
    let environment = match env_file {
        Some(_) => environment,
        None => {
            eprintln!("{SAMPLE_NOTE}");
            environment.with_sample_job()
        }
    };
    match render_stage(&loaded, stage, &environment, &redactor) {
        Ok(rendered) => {
            let text = serde_saphyr::to_string(&rendered.doc).unwrap_or_default();
            print!("{}", redactor.redact(&text));
            i32::from(rendered.failed)
        }
        Err(message) => {
            eprintln!("{}", redactor.redact(&message));
            1
        }
    }
}

/// What `render` says on stderr when it makes up the job.
pub const SAMPLE_NOTE: &str = "no --env-file: rendering for a sample job (job.CI_JOB_ID=1234, \
     job.CI_PROJECT_ID=42, trusted.id=1234, ...; the book's testing chapter lists them); \
     variables set in this shell win";

/// One stage as `render --stage` shows it.
pub struct StageRender {
    /// `vars`, the `config` block for the config stage, and the stage's steps with their
    /// fields rendered (or their templates, where only a real job can compute them).
    pub doc: Json,
    /// Whether a field failed to render; its step then carries an `error` entry.
    pub failed: bool,
}

/// Renders `stage` for `environment`, calling no back end. `Err` is a problem that stops the
/// whole stage (a var or the config block), as it would stop the real one.
pub fn render_stage(
    loaded: &LoadedRecipe,
    stage: Stage,
    environment: &Environment,
    redactor: &Redactor,
) -> Result<StageRender, String> {
    let log = JobLog::memory(redactor.clone());
    let exit = executor_foundation::exit_codes::ExitCodes::from_lookup(|_| None);
    let state = JobState::in_memory(Map::new());
    let run = (stage == Stage::Run).then(RunArgs::sample);
    let interp = Interpreter::new(loaded, environment, &log, &exit, Default::default());
    let mut vars = interp
        .evaluate_vars(&state, run.as_ref(), stage)
        .map_err(|e| e.message)?;
    // `provision` sees the pool key the job would claim, and a VM id of its own.
    let provision_environment;
    let (interp, environment) = if stage == Stage::Provision {
        provision_environment = interp
            .provision_environment(&state, &vars, &Map::new(), None, "sample-vm".into())
            .map_err(|e| e.message)?;
        let inner = Interpreter::new(
            loaded,
            &provision_environment,
            &log,
            &exit,
            Default::default(),
        );
        vars = inner
            .evaluate_vars(&state, None, stage)
            .map_err(|e| e.message)?;
        (inner, &provision_environment)
    } else {
        (interp, environment)
    };
    let mut doc = Map::new();
    doc.insert("vars".into(), Json::Object(vars.clone()));
    if stage == Stage::Config {
        let c = interp
            .render_block("config", &loaded.recipe.config.raw, &vars, &state, stage)
            .map_err(|e| e.message)?;
        doc.insert("config".into(), c);
    }
    let mut rendered_steps = vec![];
    let mut failed = false;
    for spec in loaded.recipe.stage(stage) {
        let mut ctx = ContextParts {
            environment,
            vars: &vars,
            steps: &Map::new(),
            state: state.values(),
            run: run.as_ref(),
            stage: stage.name(),
        }
        .to_json();
        ctx["state"] = Json::Null;
        let mut value = executor_driver::template::to_value(&ctx);
        value = with_placeholders(value);
        let mut entry = Map::new();
        entry.insert("id".into(), Json::String(spec.id().into()));
        // A step the job would skip renders nothing: its fields may read what only exists
        // when its condition holds (`job.X` under `when: job.X is defined`). A condition that
        // reads earlier steps or the state cannot be decided here, and the step is shown.
        if let Some(w) = &spec.common.when
            && !depends_on_the_job(&Json::String(w.clone()))
            && let Ok(false) = interp.templater.condition(w, &value)
        {
            entry.insert("kind".into(), Json::String(spec.kind.clone()));
            entry.insert("when".into(), Json::String(w.clone()));
            entry.insert("skipped".into(), Json::Bool(true));
            rendered_steps.push(Json::Object(entry));
            continue;
        }
        let fields = match spec.kind_and_args() {
            Json::Object(m) => m,
            _ => Map::new(),
        };
        for (name, raw) in fields {
            match interp.templater.render_value(&raw, &value) {
                Ok(v) => {
                    entry.insert(name, v);
                }
                // A filter cannot work on a placeholder (`<steps.a.port> | int`): show what
                // only the real job can compute as its template, which is not an error.
                Err(_) if depends_on_the_job(&raw) => {
                    entry.insert(name, raw);
                }
                Err((pointer, e)) => {
                    failed = true;
                    entry.insert(
                        "error".into(),
                        Json::String(format!("/{name}{pointer}: {}", e.message)),
                    );
                }
            }
        }
        if let Some(w) = &spec.common.when {
            entry.insert("when".into(), Json::String(w.clone()));
        }
        rendered_steps.push(Json::Object(entry));
    }
    doc.insert(stage.name().into(), Json::Array(rendered_steps));
    Ok(StageRender {
        doc: Json::Object(doc),
        failed,
    })
}

/// Whether a field's templates read earlier steps' outputs or the job state.
fn depends_on_the_job(raw: &Json) -> bool {
    match raw {
        Json::String(s) => s.contains("steps.") || s.contains("state."),
        Json::Array(items) => items.iter().any(depends_on_the_job),
        Json::Object(m) => m.values().any(depends_on_the_job),
        _ => false,
    }
}

/// Replace `steps` and `state` in the context by objects that answer any key with a placeholder.
fn with_placeholders(ctx: Value) -> Value {
    let mut map = std::collections::BTreeMap::new();
    if let Ok(iter) = ctx.try_iter() {
        for key in iter {
            let name = key.as_str().unwrap_or_default().to_string();
            let v = match name.as_str() {
                "steps" | "state" => Value::from_object(Placeholder(name.clone())),
                _ => ctx.get_item(&key).unwrap_or_default(),
            };
            map.insert(name, v);
        }
    }
    Value::from(map)
}

#[derive(Debug)]
struct Placeholder(String);

impl Object for Placeholder {
    // Plain objects print (and serialize) as their text, so a lone `{{ steps.a.id }}` shows
    // the placeholder rather than an empty map.
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(Value::from_object(Placeholder(format!("{}.{key}", self.0))))
    }
    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{}>", self.0)
    }
}

fn parse_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let l = l.strip_prefix("export ").unwrap_or(l);
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            Some((k.trim().to_string(), v.to_string()))
        })
        .collect()
}
