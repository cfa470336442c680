//! Rendering recipe problems with miette, at the edge: in the CLI and in lint reports.

use std::sync::Arc;

use miette::{
    Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan,
};

use crate::recipe::problem::{Problem, Problems};

/// One problem as a miette diagnostic, quoting its file.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ProblemReport {
    message: String,
    code: &'static str,
    help: Option<String>,
    file: Option<Arc<NamedSource<Arc<str>>>>,
    span: Option<SourceSpan>,
}

impl Diagnostic for ProblemReport {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        Some(Box::new(format!("recipe::{}", self.code)))
    }
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h.clone()) as Box<dyn std::fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.file.as_deref().map(|s| s as &dyn miette::SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.span.map(|s| {
            Box::new(std::iter::once(LabeledSpan::new_primary_with_span(
                Some("here".into()),
                s,
            ))) as _
        })
    }
}

pub fn reports(problems: &Problems) -> Vec<ProblemReport> {
    let named: Vec<Arc<NamedSource<Arc<str>>>> = problems
        .sources
        .files
        .iter()
        .map(|f| Arc::new(NamedSource::new(f.name.clone(), f.text.clone()).with_language("yaml")))
        .collect();
    problems
        .list
        .iter()
        .map(|p: &Problem| ProblemReport {
            message: p.message.clone(),
            code: p.code,
            help: p.help.clone(),
            file: p.loc.map(|l| named[l.file].clone()),
            span: p
                .loc
                .map(|l| SourceSpan::new(l.start.into(), l.end.saturating_sub(l.start))),
        })
        .collect()
}

/// Whether to colour: on in CI logs (GitLab renders ANSI) unless NO_COLOR says otherwise, and
/// on terminals.
pub fn use_color() -> bool {
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        return false;
    }
    std::env::var_os("CI").is_some() || std::io::IsTerminal::is_terminal(&std::io::stderr())
}

/// The graphical report for every problem, one after the other.
pub fn render(problems: &Problems, color: bool) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(100)
        .with_context_lines(1);
    let mut out = String::new();
    for report in reports(problems) {
        let _ = handler.render_report(&mut out, &report);
    }
    out
}
