//! A problem found in a recipe, pointing at the file, line and column that caused it.

use crate::recipe::source_file::{Loc, Sources};

/// Whether a problem stops the recipe. Loading only ever finds errors; lint may also warn about
/// a recipe that works but is risky.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Severity {
    #[default]
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// A short stable code, e.g. `unknown-field`, used by the JSON and Code Quality reports.
    pub code: &'static str,
    pub message: String,
    pub loc: Option<Loc>,
    pub help: Option<String>,
    pub severity: Severity,
}

impl Problem {
    pub fn new(code: &'static str, message: impl Into<String>, loc: Option<Loc>) -> Self {
        Self {
            code,
            message: message.into(),
            loc,
            help: None,
            severity: Severity::Error,
        }
    }

    pub fn warning(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// All problems of one recipe, with the files they point into.
#[derive(Debug, Default)]
pub struct Problems {
    pub sources: Sources,
    pub list: Vec<Problem>,
}

impl Problems {
    /// `file:line:col: message` lines, for logs where the graphical report does not fit.
    pub fn plain(&self) -> String {
        self.list
            .iter()
            .map(|p| {
                let message = match p.severity {
                    Severity::Error => p.message.clone(),
                    Severity::Warning => format!("warning: {}", p.message),
                };
                match p.loc {
                    Some(loc) => {
                        let (line, col) = self.sources.line_col(loc);
                        format!(
                            "{}:{line}:{col}: {message}",
                            self.sources.get(loc.file).name
                        )
                    }
                    None => message,
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}
