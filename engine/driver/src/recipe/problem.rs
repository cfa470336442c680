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
    /// Other places that explain this one, often in another file: a problem is reported where
    /// the author can fix it (an override), and what it clashes with (the base) comes here.
    pub related: Vec<Related>,
}

/// A place quoted beside a problem, with why it matters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Related {
    pub loc: Loc,
    pub message: String,
}

impl Problem {
    pub fn new(code: &'static str, message: impl Into<String>, loc: Option<Loc>) -> Self {
        Self {
            code,
            message: message.into(),
            loc,
            help: None,
            severity: Severity::Error,
            related: vec![],
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

    pub fn with_related(mut self, loc: Option<Loc>, message: impl Into<String>) -> Self {
        if let Some(loc) = loc {
            self.related.push(Related {
                loc,
                message: message.into(),
            });
        }
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
                let mut line = self.at(p.loc, &message);
                for r in &p.related {
                    line.push_str(&format!("\n  {}", self.at(Some(r.loc), &r.message)));
                }
                line
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn at(&self, loc: Option<Loc>, message: &str) -> String {
        match loc {
            Some(loc) => {
                let (line, col) = self.sources.line_col(loc);
                format!(
                    "{}:{line}:{col}: {message}",
                    self.sources.get(loc.file).name
                )
            }
            None => message.to_string(),
        }
    }
}
