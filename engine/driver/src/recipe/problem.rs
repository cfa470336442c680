//! A problem found in a recipe, pointing at the file, line and column that caused it.

use crate::recipe::source_file::{Loc, Sources};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// A short stable code, e.g. `unknown-field`, used by the JSON and Code Quality reports.
    pub code: &'static str,
    pub message: String,
    pub loc: Option<Loc>,
    pub help: Option<String>,
}

impl Problem {
    pub fn new(code: &'static str, message: impl Into<String>, loc: Option<Loc>) -> Self {
        Self {
            code,
            message: message.into(),
            loc,
            help: None,
        }
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
            .map(|p| match p.loc {
                Some(loc) => {
                    let (line, col) = self.sources.line_col(loc);
                    format!(
                        "{}:{line}:{col}: {}",
                        self.sources.get(loc.file).name,
                        p.message
                    )
                }
                None => p.message.clone(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}
