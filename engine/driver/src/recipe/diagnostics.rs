//! Rendering recipe problems with miette, at the edge: in the CLI and in lint reports.

use std::sync::Arc;

use miette::{
    Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, Severity,
    SourceSpan,
};

use crate::recipe::problem::{Problem, Problems};
use crate::recipe::source_file::Loc;

/// One problem as a miette diagnostic, quoting its file.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ProblemReport {
    message: String,
    code: &'static str,
    help: Option<String>,
    file: Option<Arc<NamedSource<Arc<str>>>>,
    span: Option<SourceSpan>,
    /// Places that explain this one, each quoting its own file (a label cannot leave its
    /// diagnostic's file, and the base a problem clashes with is usually another file).
    related: Vec<ProblemReport>,
    /// A related place is advice, not a second problem.
    advice: bool,
}

impl Diagnostic for ProblemReport {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        if self.advice {
            return None;
        }
        Some(Box::new(format!("recipe::{}", self.code)))
    }
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h.clone()) as Box<dyn std::fmt::Display>)
    }
    fn severity(&self) -> Option<Severity> {
        self.advice.then_some(Severity::Advice)
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        if self.related.is_empty() {
            return None;
        }
        Some(Box::new(self.related.iter().map(|r| r as &dyn Diagnostic)))
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
    let span = |l: Loc| SourceSpan::new(l.start.into(), l.end.saturating_sub(l.start));
    problems
        .list
        .iter()
        .map(|p: &Problem| ProblemReport {
            message: p.message.clone(),
            code: p.code,
            help: p.help.clone(),
            file: p.loc.map(|l| named[l.file].clone()),
            span: p.loc.map(span),
            related: p
                .related
                .iter()
                .map(|r| ProblemReport {
                    message: r.message.clone(),
                    code: p.code,
                    help: None,
                    file: Some(named[r.loc.file].clone()),
                    span: Some(span(r.loc)),
                    related: vec![],
                    advice: true,
                })
                .collect(),
            advice: false,
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
