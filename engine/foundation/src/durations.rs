//! How a duration is written in a recipe, and its JSON Schema, for every crate whose types hold one.
//!
//! One grammar for the schema's pattern, lint, loading and run time: whole numbers, each with
//! one of the units `ms`, `s`, `m`, `h`, `d` (or their spelled-out forms), optionally separated
//! by spaces: `90s`, `10m`, `1h 30m`. humantime, used before, reads `M` as months and `m` as
//! minutes, so `2M` passed lint and meant two months; units are therefore lowercase only, and
//! the ambiguous ones are refused with a hint.

use std::time::Duration;

use schemars::{Schema, json_schema};

/// The grammar as a regex, for editors; a string with a template in it (`"{{ env.T }}s"`) is
/// only checked once rendered. `parse` is the reference, and a test holds the two together.
pub const DURATION_PATTERN: &str = r"^\s*(.*(\{\{|\{%).*|([0-9]+\s*(ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d)\s*)+)\s*$";

/// The grammar without templates, for fields read before anything is rendered (a step's
/// `timeout`, its `retry` delays, the `pool:` block).
pub const LITERAL_DURATION_PATTERN: &str = r"^\s*([0-9]+\s*(ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d)\s*)+$";

/// What to tell an author whose duration was refused.
pub const DURATION_HELP: &str =
    "write `600s` or `10m`: whole numbers with a unit of ms, s, m, h or d, e.g. `1h 30m`";

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("a duration cannot be empty")]
    Empty,
    #[error("`{0}` has no unit")]
    NoUnit(String),
    #[error("`{0}` is ambiguous (minutes or months?)")]
    Ambiguous(String),
    #[error("`{0}` is not a unit")]
    UnknownUnit(String),
    #[error("`{0}` has a fraction; use a smaller unit (`1500ms`, `90m`)")]
    Fraction(String),
    #[error("a unit needs a number in front of it")]
    MissingNumber,
    #[error("the duration is too long")]
    Overflow,
}

fn unit_seconds(unit: &str) -> Result<Option<u64>, DurationError> {
    Ok(Some(match unit {
        // milliseconds are handled by the caller: they are below a second
        "ms" => return Ok(None),
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        "M" | "mo" | "month" | "months" | "MS" | "Min" | "H" | "D" | "S" => {
            return Err(DurationError::Ambiguous(unit.to_string()));
        }
        other => return Err(DurationError::UnknownUnit(other.to_string())),
    }))
}

/// Reads a duration in the recipe grammar.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(DurationError::MissingNumber);
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| DurationError::Overflow)?;
        rest = rest[digits..].trim_start();
        if rest.starts_with(['.', ',']) {
            return Err(DurationError::Fraction(s.to_string()));
        }
        let letters = rest.len() - rest.trim_start_matches(|c: char| c.is_alphabetic()).len();
        if letters == 0 {
            return Err(DurationError::NoUnit(s.to_string()));
        }
        let unit = &rest[..letters];
        let part = match unit_seconds(unit)? {
            Some(secs) => number
                .checked_mul(secs)
                .map(Duration::from_secs)
                .ok_or(DurationError::Overflow)?,
            None => Duration::from_millis(number),
        };
        total = total.checked_add(part).ok_or(DurationError::Overflow)?;
        rest = rest[letters..].trim_start();
    }
    Ok(total)
}

/// Writes a duration so that `parse` reads it back: `1h 30m`, `250ms`, `0s`.
pub fn format(d: Duration) -> String {
    let mut secs = d.as_secs();
    let mut parts = vec![];
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            parts.push(format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    let ms = d.subsec_millis();
    if ms > 0 {
        parts.push(format!("{ms}ms"));
    }
    if parts.is_empty() {
        "0s".into()
    } else {
        parts.join(" ")
    }
}

/// `#[serde(with = "executor_foundation::durations::text")]` for a `Duration` field.
pub mod text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "`{text}` is not a duration: {e}; {}",
                super::DURATION_HELP
            ))
        })
    }
}

/// `#[serde(with = "executor_foundation::durations::optional_text")]` for an `Option<Duration>`.
pub mod optional_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::text::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => super::parse(&text).map(Some).map_err(|e| {
                serde::de::Error::custom(format!(
                    "`{text}` is not a duration: {e}; {}",
                    super::DURATION_HELP
                ))
            }),
        }
    }
}

/// Schema of a duration field: `#[schemars(schema_with = "executor_foundation::durations::duration")]`.
pub fn duration(_: &mut schemars::SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "pattern": DURATION_PATTERN})
}

/// Schema of an optional duration field.
pub fn optional_duration(_: &mut schemars::SchemaGenerator) -> Schema {
    json_schema!({"type": ["string", "null"], "pattern": DURATION_PATTERN})
}

/// Schema of a duration field that may not be a template.
pub fn literal_duration(_: &mut schemars::SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "pattern": LITERAL_DURATION_PATTERN})
}

/// Schema of an optional duration field that may not be a template.
pub fn optional_literal_duration(_: &mut schemars::SchemaGenerator) -> Schema {
    json_schema!({"type": ["string", "null"], "pattern": LITERAL_DURATION_PATTERN})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar() {
        for (text, secs, ms) in [
            ("90s", 90, 0),
            (" 10m ", 600, 0),
            ("1h 30m", 5400, 0),
            ("1h30m", 5400, 0),
            ("250ms", 0, 250),
            ("2 minutes", 120, 0),
            ("1d", 86_400, 0),
            ("0s", 0, 0),
        ] {
            assert_eq!(
                parse(text),
                Ok(Duration::from_secs(secs) + Duration::from_millis(ms)),
                "{text}"
            );
        }
        assert_eq!(parse("2M"), Err(DurationError::Ambiguous("M".into())));
        assert_eq!(parse("600"), Err(DurationError::NoUnit("600".into())));
        assert_eq!(parse(""), Err(DurationError::Empty));
        assert_eq!(parse("-1s"), Err(DurationError::MissingNumber));
        assert_eq!(parse("1.5h"), Err(DurationError::Fraction("1.5h".into())));
        assert_eq!(
            parse("5 parsecs"),
            Err(DurationError::UnknownUnit("parsecs".into()))
        );
        assert_eq!(parse("3y"), Err(DurationError::UnknownUnit("y".into())));
    }

    #[test]
    fn format_is_read_back() {
        for d in [0, 1, 59, 61, 3600, 5400, 90_061] {
            let d = Duration::from_secs(d) + Duration::from_millis(d % 7 * 100);
            assert_eq!(parse(&format(d)), Ok(d), "{}", format(d));
        }
    }
}
