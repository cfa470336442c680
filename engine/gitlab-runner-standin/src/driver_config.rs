//! The config stage's JSON, read with the strictness of Go's `json.Unmarshal` into
//! gitlab-runner's `api.ConfigExecOutput`: empty output means no overrides, keys match
//! case-insensitively, unknown keys are ignored, `null` counts as absent, and any syntax error or
//! type mismatch is an error.

use indexmap::IndexMap;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverConfig {
    pub builds_dir: Option<String>,
    pub cache_dir: Option<String>,
    pub builds_dir_is_shared: Option<bool>,
    pub hostname: Option<String>,
    pub driver_name: Option<String>,
    pub driver_version: Option<String>,
    pub job_env: IndexMap<String, String>,
    pub shell: Option<String>,
}

/// `error while parsing JSON output: ...`; not a build error, so the prepare attempt is retried.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("error while parsing JSON output: {0}")]
pub struct ConfigParseError(pub String);

impl DriverConfig {
    pub fn parse(stdout: &[u8]) -> Result<Self, ConfigParseError> {
        if stdout.is_empty() {
            return Ok(Self::default());
        }
        let value: Value =
            serde_json::from_slice(stdout).map_err(|e| ConfigParseError(e.to_string()))?;
        let mut out = Self::default();
        let obj = match value {
            Value::Null => return Ok(out),
            Value::Object(o) => o,
            other => return Err(mismatch(&other, "", "api.ConfigExecOutput")),
        };
        for (key, v) in &obj {
            match key.to_lowercase().as_str() {
                "builds_dir" => set_string(&mut out.builds_dir, v, "builds_dir")?,
                "cache_dir" => set_string(&mut out.cache_dir, v, "cache_dir")?,
                "hostname" => set_string(&mut out.hostname, v, "hostname")?,
                "shell" => set_string(&mut out.shell, v, "shell")?,
                "builds_dir_is_shared" => match v {
                    Value::Null => {}
                    Value::Bool(b) => out.builds_dir_is_shared = Some(*b),
                    other => return Err(mismatch(other, "builds_dir_is_shared", "bool")),
                },
                "driver" => match v {
                    Value::Null => {}
                    Value::Object(d) => driver(&mut out, d)?,
                    other => return Err(mismatch(other, "driver", "api.DriverInfo")),
                },
                "job_env" => match v {
                    Value::Null => {}
                    Value::Object(env) => {
                        for (k, val) in env {
                            match val {
                                // Go stores the zero value for a null map element.
                                Value::Null => out.job_env.insert(k.clone(), String::new()),
                                Value::String(s) => out.job_env.insert(k.clone(), s.clone()),
                                other => {
                                    return Err(mismatch(other, &format!("job_env.{k}"), "string"));
                                }
                            };
                        }
                    }
                    other => return Err(mismatch(other, "job_env", "map[string]string")),
                },
                _ => {}
            }
        }
        Ok(out)
    }
}

fn driver(out: &mut DriverConfig, d: &Map<String, Value>) -> Result<(), ConfigParseError> {
    for (key, v) in d {
        match key.to_lowercase().as_str() {
            "name" => set_string(&mut out.driver_name, v, "driver.name")?,
            "version" => set_string(&mut out.driver_version, v, "driver.version")?,
            _ => {}
        }
    }
    Ok(())
}

fn set_string(slot: &mut Option<String>, v: &Value, field: &str) -> Result<(), ConfigParseError> {
    match v {
        Value::Null => Ok(()),
        Value::String(s) => {
            *slot = Some(s.clone());
            Ok(())
        }
        other => Err(mismatch(other, field, "string")),
    }
}

/// Go's wording: `json: cannot unmarshal number into Go struct field ....builds_dir of type string`.
fn mismatch(v: &Value, field: &str, go_type: &str) -> ConfigParseError {
    let kind = match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    if field.is_empty() {
        ConfigParseError(format!(
            "json: cannot unmarshal {kind} into Go value of type {go_type}"
        ))
    } else {
        ConfigParseError(format!(
            "json: cannot unmarshal {kind} into Go struct field ConfigExecOutput.{field} of type {go_type}"
        ))
    }
}

/// `Using Custom executor[ with driver NAME[ VERSION]]...`
pub(crate) fn startup_line(cfg: &DriverConfig) -> String {
    match (cfg.driver_name.as_deref(), cfg.driver_version.as_deref()) {
        (Some(name), Some(version)) if !name.is_empty() && !version.is_empty() => {
            format!("Using Custom executor with driver {name} {version}...")
        }
        (Some(name), _) if !name.is_empty() => {
            format!("Using Custom executor with driver {name}...")
        }
        _ => "Using Custom executor...".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_output_means_no_overrides_but_a_lone_newline_is_invalid() {
        assert_eq!(DriverConfig::parse(b""), Ok(DriverConfig::default()));
        assert!(DriverConfig::parse(b"\n").is_err());
        assert!(DriverConfig::parse(b"log line\n{}").is_err());
        assert!(DriverConfig::parse(b"{} {}").is_err());
    }

    #[test]
    fn keys_are_case_insensitive_nulls_absent_unknown_ignored() {
        let c = DriverConfig::parse(br#"{"Builds_Dir":"/b","CACHE_DIR":null,"whatever":[1],"Driver":{"NAME":"d","version":"1"}}"#).unwrap();
        assert_eq!(c.builds_dir.as_deref(), Some("/b"));
        assert_eq!(c.cache_dir, None);
        assert_eq!(startup_line(&c), "Using Custom executor with driver d 1...");
    }

    #[test]
    fn type_mismatches_are_errors() {
        assert!(DriverConfig::parse(br#"{"builds_dir_is_shared":"true"}"#).is_err());
        assert!(DriverConfig::parse(br#"{"builds_dir":5}"#).is_err());
        assert!(DriverConfig::parse(br#"{"job_env":{"A":1}}"#).is_err());
        assert!(DriverConfig::parse(br#"[]"#).is_err());
        assert_eq!(DriverConfig::parse(b"null"), Ok(DriverConfig::default()));
    }

    #[test]
    fn startup_line_variants() {
        assert_eq!(
            startup_line(&DriverConfig::default()),
            "Using Custom executor..."
        );
        let named = DriverConfig {
            driver_name: Some("n".into()),
            ..Default::default()
        };
        assert_eq!(
            startup_line(&named),
            "Using Custom executor with driver n..."
        );
    }
}
