//! Lint's trial render: the recipe's vars, blocks and step fields evaluated for the sample job
//! (`executor render` without `--env-file`) with none of the runner's variables set.
//!
//! Syntax and names are checked without values; what is left are mistakes only a value shows:
//! `vars.disk * 2` where `disk` is empty, `join` on a number, `split` on a default that is not
//! a string. A site that sets none of the recipe's knobs gets its defaults, so such a failure is
//! real for some runner. What only the site or the pipeline can supply is not judged: a name of
//! `env` or `job` that is not set, and a value the recipe marks `required`; whatever reads
//! earlier steps or the state is left to the job too.

use std::collections::HashSet;

use serde_json::{Map, Value as Json};

use crate::recipe::lint::names_in;
use crate::recipe::loader::Document;
use crate::recipe::problem::Problem;
use crate::recipe::step_spec::COMMON_KEYS;
use crate::steps::context::RunArgs;
use crate::template::context::{ContextParts, Environment};
use crate::template::{TemplateError, Templater, escape_pointer};
use executor_foundation::stage::Stage;

/// Roots whose every value the sample job gives.
const KNOWN_ROOTS: [&str; 6] = ["vars", "env", "job", "trusted", "executor", "stage"];

struct Trial<'a> {
    t: &'a Templater,
    doc: &'a Document,
    environment: Environment,
    vars: Map<String, Json>,
    /// Vars whose value is the site's or the pipeline's to give.
    unknown: HashSet<String>,
    out: Vec<Problem>,
}

/// Problems that the sample job's render would meet.
pub fn check(t: &Templater, doc: &Document) -> Vec<Problem> {
    let mut trial = Trial {
        t,
        doc,
        environment: Environment::from_pairs(Vec::new()).with_sample_job(),
        vars: Map::new(),
        unknown: HashSet::new(),
        out: vec![],
    };
    trial.vars();
    for block in ["config", "cloud", "ssh"] {
        if let Some(Json::Object(fields)) = doc.json.get(block) {
            for (key, raw) in fields {
                trial.field(
                    raw,
                    &format!("/{block}/{}", escape_pointer(key)),
                    Stage::Config,
                );
            }
        }
    }
    // `provision` reads the pool key, which only the pool's settings give.
    for stage in [Stage::Prepare, Stage::Run, Stage::Cleanup] {
        trial.stage(stage);
    }
    trial.out
}

impl Trial<'_> {
    fn context(&self, stage: Stage) -> minijinja::Value {
        let run = (stage == Stage::Run).then(RunArgs::sample);
        ContextParts {
            environment: &self.environment,
            vars: &self.vars,
            steps: &Map::new(),
            state: &Map::new(),
            run: run.as_ref(),
            stage: stage.name(),
        }
        .to_value()
    }

    /// Whether every name `raw` reads is one the sample job knows.
    fn decidable(&self, raw: &Json, stage: Stage) -> bool {
        names_in(self.t, raw).iter().all(|name| {
            let mut parts = name.split('.');
            let root = parts.next().unwrap_or_default();
            match root {
                "vars" => parts.next().is_none_or(|v| !self.unknown.contains(v)),
                "run" => stage == Stage::Run,
                _ => KNOWN_ROOTS.contains(&root) || self.t.is_builtin_name(root),
            }
        })
    }

    fn vars(&mut self) {
        let Some(Json::Object(vars)) = self.doc.json.get("vars") else {
            return;
        };
        for (name, raw) in vars {
            let pointer = format!("/vars/{}", escape_pointer(name));
            if !self.decidable(raw, Stage::Prepare) {
                self.unknown.insert(name.clone());
                continue;
            }
            let ctx = self.context(Stage::Prepare);
            match self.t.render_value(raw, &ctx) {
                Ok(v) => {
                    self.vars.insert(name.clone(), v);
                }
                Err((inner, e)) => {
                    self.unknown.insert(name.clone());
                    if !outside_the_recipe(raw, &e) {
                        self.report(&format!("{pointer}{inner}"), &format!("var `{name}`"), &e);
                    }
                }
            }
        }
    }

    fn stage(&mut self, stage: Stage) {
        let Some(Json::Array(steps)) = self.doc.json.get(stage.name()) else {
            return;
        };
        for (index, step) in steps.iter().enumerate() {
            let Some(step) = step.as_object() else {
                continue;
            };
            if let Some(Json::String(cond)) = step.get("when") {
                let cond_json = Json::String(format!("{{{{ {cond} }}}}"));
                let decided = self.decidable(&cond_json, stage)
                    && matches!(self.t.condition(cond, &self.context(stage)), Ok(true));
                // A step the job may skip may read what exists only when it runs.
                if !decided {
                    continue;
                }
            }
            for (key, raw) in step
                .iter()
                .filter(|(k, _)| *k != "kind" && !COMMON_KEYS.contains(&k.as_str()))
            {
                let pointer = format!("/{}/{index}/{}", stage.name(), escape_pointer(key));
                self.field(raw, &pointer, stage);
            }
        }
    }

    fn field(&mut self, raw: &Json, pointer: &str, stage: Stage) {
        if !self.decidable(raw, stage) {
            return;
        }
        let ctx = self.context(stage);
        if let Err((inner, e)) = self.t.render_value(raw, &ctx)
            && !outside_the_recipe(raw, &e)
        {
            let field = pointer.rsplit('/').next().unwrap_or_default().to_string();
            self.report(&format!("{pointer}{inner}"), &format!("`{field}`"), &e);
        }
    }

    fn report(&mut self, pointer: &str, what: &str, e: &TemplateError) {
        self.out.push(
            Problem::new(
                "render-error",
                format!("{what} fails to render for the sample job: {}", e.message),
                self.doc.spans.value_loc(pointer),
            )
            .with_help(
                "with none of the runner's variables set, the recipe's defaults give this; \
                 `executor render --stage STAGE` shows the values",
            ),
        );
    }
}

/// A failure that only the site or the pipeline can prevent: a variable they did not set, or a
/// value the recipe says is `required`.
fn outside_the_recipe(raw: &Json, e: &TemplateError) -> bool {
    let undefined_outside = ["`env.", "`job.", "`trusted.", "`pool."]
        .iter()
        .any(|root| e.message.starts_with("undefined value") && e.message.contains(root));
    undefined_outside || raw.to_string().contains("required")
}
