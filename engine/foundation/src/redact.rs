//! Keeps secrets out of everything we print.
//!
//! Steps already avoid printing secrets, but a recipe author can still template one into a log
//! line, so every job-log line passes through here as a last line of defence.

use crate::bounded_read::{JOB_RESPONSE_LIMIT, read_bounded};
use std::borrow::Cow;

pub const MASK: &str = "[MASKED]";

/// Values that must never be printed.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

/// Environment names whose values are secrets, with or without the `CUSTOM_ENV_` prefix.
fn is_secret_name(name: &str) -> bool {
    let n = name
        .strip_prefix("CUSTOM_ENV_")
        .unwrap_or(name)
        .to_ascii_uppercase();
    [
        "PASSWORD",
        "SECRET",
        "TOKEN",
        "PRIVATE_KEY",
        "PASSPHRASE",
        "CREDENTIAL",
    ]
    .iter()
    .any(|s| n.contains(s))
}

impl Redactor {
    /// Secrets from the process environment and the masked variables of the job payload.
    pub fn from_env() -> Self {
        Self::from_pairs(std::env::vars())
    }

    /// The same from an environment given as pairs (`render --env-file`): the values of
    /// secret-named variables, and the secrets of every payload a `JOB_RESPONSE_FILE` names.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut r = Self::default();
        for (k, v) in pairs {
            if is_secret_name(&k) {
                r.add(&v);
            }
            if k == "JOB_RESPONSE_FILE"
                && let Ok(bytes) = read_bounded(std::path::Path::new(&v), JOB_RESPONSE_LIMIT)
            {
                r.add_masked_job_variables(&bytes);
            }
        }
        r
    }

    pub fn add(&mut self, secret: &str) {
        // Very short values would mask ordinary words and reveal more than they hide.
        if secret.len() >= 4 && !self.secrets.iter().any(|s| s == secret) {
            self.secrets.push(secret.to_string());
            // Longest first, so that a secret containing another is masked whole.
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    fn add_masked_job_variables(&mut self, payload: &[u8]) {
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(payload) else {
            return;
        };
        if let Some(token) = json.get("token").and_then(|t| t.as_str()) {
            self.add(token);
        }
        // Artifacts of earlier jobs are fetched with tokens of their own.
        for dependency in json["dependencies"].as_array().into_iter().flatten() {
            if let Some(token) = dependency["token"].as_str() {
                self.add(token);
            }
        }
        for var in json["variables"].as_array().into_iter().flatten() {
            if var["masked"].as_bool() == Some(true)
                && let Some(v) = var["value"].as_str()
            {
                self.add(v);
            }
        }
    }

    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !self.secrets.iter().any(|s| text.contains(s.as_str())) {
            return Cow::Borrowed(text);
        }
        let mut out = text.to_string();
        for s in &self.secrets {
            out = out.replace(s.as_str(), MASK);
        }
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_secret_and_the_longest_first() {
        let mut r = Redactor::default();
        r.add("hunter22");
        r.add("hunter22-and-more");
        r.add("ab");
        assert_eq!(r.redact("pw=hunter22-and-more ab"), "pw=[MASKED] ab");
        assert_eq!(r.redact("pw=hunter22"), "pw=[MASKED]");
        assert!(matches!(r.redact("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn job_payload_token_and_masked_variables_are_secrets() {
        let mut r = Redactor::default();
        r.add_masked_job_variables(
            br#"{"token":"glcbt-abcdef","variables":[{"key":"A","value":"s3cr3t-value","masked":true},{"key":"B","value":"public","masked":false}]}"#,
        );
        assert_eq!(
            r.redact("glcbt-abcdef s3cr3t-value public"),
            "[MASKED] [MASKED] public"
        );
    }

    #[test]
    fn secret_names() {
        assert!(is_secret_name("OS_PASSWORD"));
        assert!(is_secret_name("CUSTOM_ENV_CI_JOB_TOKEN"));
        assert!(is_secret_name("OS_APPLICATION_CREDENTIAL_SECRET"));
        assert!(is_secret_name("PRIVATE_KEY"));
        assert!(!is_secret_name("OS_USERNAME"));
    }
}
