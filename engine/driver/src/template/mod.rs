//! Templating: minijinja in strict mode, so that an undefined name is an error and never an
//! empty string, plus the few filters recipes need.
//!
//! A string that is exactly one `{{ expression }}` keeps the expression's type (number, list,
//! map); any other string containing template syntax renders to text.

pub mod calls;
pub mod context;
pub mod flow;

use base64::Engine as _;
use minijinja::{Environment, Error as JinjaError, ErrorKind, UndefinedBehavior, Value};
use serde_json::Value as Json;

/// The filters this crate adds to minijinja's, for lint's suggestions; a unit test holds the
/// list to what `Templater::new` registers.
pub const OWN_FILTERS: &[&str] = &[
    "shell_quote",
    "b64encode",
    "b64decode",
    "required",
    "key_id",
];

/// The compiled templating environment. Cheap to share; build once per process.
pub struct Templater {
    env: Environment<'static>,
}

/// A template that failed to parse or to evaluate, with the byte range inside the template text
/// where minijinja located the problem.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub message: String,
    pub range: Option<std::ops::Range<usize>>,
}

impl From<JinjaError> for TemplateError {
    fn from(e: JinjaError) -> Self {
        // minijinja appends "(in <string>:1)" to its Display; the caller points at the recipe
        // instead, so keep only the reason.
        let message = match e.detail() {
            Some(detail) => format!("{}: {detail}", kind_text(e.kind())),
            None => kind_text(e.kind()).to_string(),
        };
        TemplateError {
            message,
            range: e.range(),
        }
    }
}

fn kind_text(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::UndefinedError => "undefined value",
        ErrorKind::SyntaxError => "template syntax error",
        ErrorKind::UnknownFilter => "unknown filter",
        ErrorKind::UnknownFunction => "unknown function",
        ErrorKind::UnknownTest => "unknown test",
        ErrorKind::InvalidOperation => "invalid operation",
        ErrorKind::MissingArgument => "missing argument",
        ErrorKind::TooManyArguments => "too many arguments",
        _ => "template error",
    }
}

/// Where a string sits between plain text and an expression.
pub enum TemplateShape<'a> {
    /// No template syntax at all.
    Plain,
    /// Exactly one `{{ expr }}`: evaluated as an expression to keep its type.
    Expression(&'a str),
    /// Text with template syntax inside.
    Text,
}

pub fn shape(s: &str) -> TemplateShape<'_> {
    if !(s.contains("{{") || s.contains("{%") || s.contains("{#")) {
        return TemplateShape::Plain;
    }
    let t = s.trim();
    if let Some(inner) = t.strip_prefix("{{").and_then(|r| r.strip_suffix("}}"))
        && !inner.contains("{{")
        && !inner.contains("}}")
        && !t.contains("{%")
    {
        return TemplateShape::Expression(inner);
    }
    TemplateShape::Text
}

/// The byte offset of `expr` inside the original string `s` (for `TemplateShape::Expression`).
pub fn expression_offset(s: &str, expr: &str) -> usize {
    expr.as_ptr() as usize - s.as_ptr() as usize
}

impl Default for Templater {
    fn default() -> Self {
        Self::new()
    }
}

impl Templater {
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.add_filter("shell_quote", executor_foundation::shell_quote::shell_quote);
        env.add_filter("b64encode", |s: &str| {
            base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
        });
        env.add_filter("b64decode", |s: &str| -> Result<String, JinjaError> {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .map_err(|e| JinjaError::new(ErrorKind::InvalidOperation, e.to_string()))?;
            String::from_utf8(bytes)
                .map_err(|e| JinjaError::new(ErrorKind::InvalidOperation, e.to_string()))
        });
        env.add_filter("required", required);
        // "type base64 [comment]" -> "type base64": compares SSH public keys however they are
        // annotated (console logs add `root@host`, pins carry no comment).
        env.add_filter("key_id", |s: &str| {
            s.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
        });
        env.add_function("job_override", job_override);
        Self { env }
    }

    /// Render one string. Plain strings pass through untouched.
    pub fn render_str(&self, s: &str, ctx: &Value) -> Result<Json, TemplateError> {
        self.render_str_inner(s, ctx)
            .map_err(|e| self.name_the_undefined(e, s, ctx))
    }

    /// minijinja says only "undefined value"; say which name, e.g. `job.FLAVOR`.
    fn name_the_undefined(&self, mut e: TemplateError, s: &str, ctx: &Value) -> TemplateError {
        if !e.message.starts_with("undefined value") || e.message.contains('`') {
            return e;
        }
        let names = match shape(s) {
            TemplateShape::Plain => vec![],
            TemplateShape::Expression(_) | TemplateShape::Text => {
                self.referenced_names(s).unwrap_or_default()
            }
        };
        let names = if names.is_empty() {
            self.expression_names(s).unwrap_or_default()
        } else {
            names
        };
        for name in names {
            let mut v = ctx.clone();
            let mut path = vec![];
            for part in name.split('.') {
                path.push(part);
                v = v.get_attr(part).unwrap_or_default();
                if v.is_undefined() {
                    e.message = format!("undefined value: `{}` is not defined", path.join("."));
                    return e;
                }
            }
        }
        e
    }

    fn render_str_inner(&self, s: &str, ctx: &Value) -> Result<Json, TemplateError> {
        match shape(s) {
            TemplateShape::Plain => Ok(Json::String(s.to_string())),
            TemplateShape::Expression(expr) => {
                let offset = expression_offset(s, expr);
                let value = self
                    .env
                    .compile_expression(expr)
                    .and_then(|e| e.eval(ctx.clone()))
                    .map_err(|e| locate(shift(e.into(), offset), offset, expr))?;
                to_json(&value).map_err(|e| locate(e, offset, expr))
            }
            TemplateShape::Text => Ok(Json::String(self.env.render_str(s, ctx.clone())?)),
        }
    }

    /// Render every string inside a JSON value; keys are left alone.
    pub fn render_value(&self, v: &Json, ctx: &Value) -> Result<Json, (String, TemplateError)> {
        self.render_at(v, ctx, String::new())
    }

    fn render_at(
        &self,
        v: &Json,
        ctx: &Value,
        pointer: String,
    ) -> Result<Json, (String, TemplateError)> {
        Ok(match v {
            Json::String(s) => self.render_str(s, ctx).map_err(|e| (pointer, e))?,
            Json::Array(items) => Json::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.render_at(item, ctx, format!("{pointer}/{i}")))
                    .collect::<Result<_, _>>()?,
            ),
            Json::Object(map) => Json::Object(
                map.iter()
                    .map(|(k, item)| {
                        let p = format!("{pointer}/{}", escape_pointer(k));
                        Ok((k.clone(), self.render_at(item, ctx, p)?))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            other => other.clone(),
        })
    }

    /// Evaluate a `when:` condition. Strict mode makes an undefined name an error rather than
    /// false, so a typo cannot silently skip a step; use `x is defined` to test for presence.
    pub fn condition(&self, expr: &str, ctx: &Value) -> Result<bool, TemplateError> {
        let value = self
            .env
            .compile_expression(expr)
            .and_then(|e| e.eval(ctx.clone()))
            .map_err(|e| self.name_the_undefined(e.into(), expr, ctx))?;
        if value.is_undefined() {
            return Err(TemplateError {
                message: format!("undefined value: `{}` is undefined", expr.trim()),
                range: None,
            });
        }
        Ok(value.is_true())
    }

    /// Names a template or expression reads from the context, e.g. `vars.flavor`, for lint.
    pub fn referenced_names(&self, s: &str) -> Result<Vec<String>, TemplateError> {
        let names = match shape(s) {
            TemplateShape::Plain => return Ok(vec![]),
            TemplateShape::Expression(expr) => {
                let offset = expression_offset(s, expr);
                self.env
                    .compile_expression(expr)
                    .map_err(|e| shift(e.into(), offset))?
                    .undeclared_variables(true)
            }
            TemplateShape::Text => self.env.template_from_str(s)?.undeclared_variables(true),
        };
        let mut names: Vec<String> = names.into_iter().collect();
        names.sort();
        Ok(names)
    }

    /// Names of an expression used by itself (a `when:`).
    pub fn expression_names(&self, expr: &str) -> Result<Vec<String>, TemplateError> {
        let mut names: Vec<String> = self
            .env
            .compile_expression(expr)?
            .undeclared_variables(true)
            .into_iter()
            .collect();
        names.sort();
        Ok(names)
    }

    /// Functions and globals the environment provides, which are not context names.
    pub fn is_builtin_name(&self, name: &str) -> bool {
        self.env.globals().any(|(k, _)| k == name)
    }
}

/// Without a range of its own, an evaluation error covers the whole expression.
fn locate(mut e: TemplateError, offset: usize, expr: &str) -> TemplateError {
    if e.range.is_none() {
        let lead = expr.len() - expr.trim_start().len();
        e.range = Some(offset + lead..offset + expr.trim_end().len());
    }
    e
}

fn shift(mut e: TemplateError, offset: usize) -> TemplateError {
    e.range = e.range.map(|r| r.start + offset..r.end + offset);
    e
}

fn to_json(value: &Value) -> Result<Json, TemplateError> {
    if value.is_undefined() {
        return Err(TemplateError {
            message: "undefined value".into(),
            range: None,
        });
    }
    serde_json::to_value(value).map_err(|e| TemplateError {
        message: format!("value cannot be represented: {e}"),
        range: None,
    })
}

/// A JSON value as a template context.
pub fn to_value(json: &Json) -> Value {
    Value::from(minijinja::value::Serde(json))
}

pub fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn required(value: Value, message: Option<String>) -> Result<Value, JinjaError> {
    if value.is_undefined() || value.is_none() || value.as_str() == Some("") {
        return Err(JinjaError::new(
            ErrorKind::InvalidOperation,
            message.unwrap_or_else(|| "a required value is missing or empty".into()),
        ));
    }
    Ok(value)
}

/// `job_override(job.FLAVOR, default, allowed=[...])`: a job may choose a value through its CI
/// variables only from the recipe's allow-list; anything else fails the stage instead of
/// silently reaching the cloud.
fn job_override(
    requested: Value,
    default: Value,
    kwargs: minijinja::value::Kwargs,
) -> Result<Value, JinjaError> {
    let allowed: Option<Vec<Value>> = kwargs.get("allowed")?;
    kwargs.assert_all_used()?;
    if requested.is_undefined() || requested.is_none() || requested.as_str() == Some("") {
        return Ok(default);
    }
    let allowed = allowed.unwrap_or_default();
    if allowed.contains(&requested) {
        Ok(requested)
    } else {
        let list: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
        Err(JinjaError::new(
            ErrorKind::InvalidOperation,
            format!(
                "the job asked for {requested:?}, which this runner does not allow (allowed: {})",
                if list.is_empty() {
                    "nothing".to_string()
                } else {
                    list.join(", ")
                }
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Value {
        to_value(&json!({
            "vars": {"size": 20, "nets": ["a", "b"], "name": "ci-1"},
            "job": {"FLAVOR": "m1.huge", "EMPTY": ""},
            "state": {},
        }))
    }

    #[test]
    fn a_lone_expression_keeps_its_type() {
        let t = Templater::new();
        assert_eq!(t.render_str("{{ vars.size }}", &ctx()).unwrap(), json!(20));
        assert_eq!(
            t.render_str(" {{ vars.nets }} ", &ctx()).unwrap(),
            json!(["a", "b"])
        );
        assert_eq!(
            t.render_str("{{ vars.size + 1 }}", &ctx()).unwrap(),
            json!(21)
        );
        assert_eq!(
            t.render_str("disk-{{ vars.size }}", &ctx()).unwrap(),
            json!("disk-20")
        );
        assert_eq!(t.render_str("plain", &ctx()).unwrap(), json!("plain"));
    }

    #[test]
    fn undefined_is_an_error_never_an_empty_string() {
        let t = Templater::new();
        let e = t.render_str("x-{{ vars.nope }}", &ctx()).unwrap_err();
        assert!(e.message.contains("`vars.nope`"), "{}", e.message);
        let e = t.render_str("{{ vars.nope }}", &ctx()).unwrap_err();
        assert!(
            e.message.contains("`vars.nope` is not defined"),
            "{}",
            e.message
        );
        // the range points into the original string, past the braces
        let r = e.range.unwrap();
        assert_eq!(&"{{ vars.nope }}"[r], "vars.nope");
    }

    #[test]
    fn default_and_is_defined_work_on_missing_keys() {
        let t = Templater::new();
        assert_eq!(
            t.render_str("{{ state.server_id | default('') }}", &ctx())
                .unwrap(),
            json!("")
        );
        assert!(!t.condition("state.server_id is defined", &ctx()).unwrap());
        assert!(t.condition("vars.size > 10", &ctx()).is_ok_and(|b| b));
        assert!(t.condition("vars.nope", &ctx()).is_err());
    }

    #[test]
    fn filters() {
        let t = Templater::new();
        assert_eq!(
            t.render_str("{{ \"it's\" | shell_quote }}", &ctx())
                .unwrap(),
            json!("'it'\\''s'")
        );
        assert_eq!(
            t.render_str("{{ 'hi' | b64encode }}", &ctx()).unwrap(),
            json!("aGk=")
        );
        assert!(
            t.render_str("{{ job.EMPTY | required('need it') }}", &ctx())
                .is_err()
        );
    }

    #[test]
    fn key_id_drops_the_comment() {
        let t = Templater::new();
        assert_eq!(
            t.render_str("{{ 'ssh-ed25519 AAAA root@vm' | key_id }}", &ctx())
                .unwrap(),
            json!("ssh-ed25519 AAAA")
        );
    }

    #[test]
    fn job_override_respects_the_allow_list() {
        let t = Templater::new();
        let ok = "{{ job_override(job.FLAVOR, 'm1.small', allowed=['m1.huge']) }}";
        assert_eq!(t.render_str(ok, &ctx()).unwrap(), json!("m1.huge"));
        let denied = "{{ job_override(job.FLAVOR, 'm1.small', allowed=['m1.small']) }}";
        let e = t.render_str(denied, &ctx()).unwrap_err();
        assert!(e.message.contains("does not allow"), "{}", e.message);
        let unset = "{{ job_override(job.EMPTY, 'm1.small', allowed=[]) }}";
        assert_eq!(t.render_str(unset, &ctx()).unwrap(), json!("m1.small"));
    }

    #[test]
    fn a_value_from_the_context_is_data_never_a_template() {
        // Job variables reach templates as values: a pipeline that sets one to template
        // syntax gets that text back, not its evaluation (ARCHITECTURE.md, invariants).
        let t = Templater::new();
        let ctx = to_value(&json!({
            "job": {"X": "{{ env.HOME }}{% if true %}!{% endif %}"},
            "env": {"HOME": "/root"},
        }));
        assert_eq!(
            t.render_str("{{ job.X }}", &ctx).unwrap(),
            json!("{{ env.HOME }}{% if true %}!{% endif %}")
        );
        assert_eq!(
            t.render_str("at {{ job.X }}", &ctx).unwrap(),
            json!("at {{ env.HOME }}{% if true %}!{% endif %}")
        );
    }

    #[test]
    fn referenced_names_are_nested() {
        let t = Templater::new();
        let names = t
            .referenced_names("{{ vars.name }}-{{ steps.server.id }}")
            .unwrap();
        assert_eq!(names, vec!["steps.server.id", "vars.name"]);
        assert!(t.referenced_names("{{ oops(").is_err());
    }
}
