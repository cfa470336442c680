//! Rendering recipe problems with miette, at the edge: in the CLI and in lint reports.

use std::sync::Arc;

use miette::{
    Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteError,
    MietteSpanContents, NamedSource, SourceCode, SourceSpan, SpanContents,
};

use crate::recipe::problem::{Problem, Problems, Severity};
use crate::recipe::source_file::{Loc, Sources};

/// A line longer than this (in bytes) is quoted as a window around the problem. miette pads
/// the underline with `format!` widths, which stop at 65535 and panic beyond; nobody reads a
/// quoted line of thousands of characters anyway.
const LONG_LINE: usize = 240;
/// Characters of a long line quoted before and after the start of the problem.
const WINDOW_BEFORE: usize = 60;
const WINDOW_AFTER: usize = 100;

/// One problem as a miette diagnostic, quoting its file.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ProblemReport {
    message: String,
    code: &'static str,
    help: Option<String>,
    severity: Severity,
    file: Option<Quoted>,
    span: Option<SourceSpan>,
    /// Places that explain this one, each quoting its own file (a label cannot leave its
    /// diagnostic's file, and the base a problem clashes with is usually another file).
    related: Vec<ProblemReport>,
    /// A related place is advice, not a second problem.
    advice: bool,
}

/// What a report quotes: the whole file, or one window of a long line.
#[derive(Debug)]
enum Quoted {
    File(Arc<NamedSource<Arc<str>>>),
    Excerpt(Excerpt),
}

/// A window of one long line, which answers with the line and column it has in the file, so
/// that the report's `file:line:col` stays the file's.
#[derive(Debug)]
struct Excerpt {
    name: String,
    text: String,
    /// 0-based line of the window in the file.
    line: usize,
    /// 0-based column, in characters, of the problem in the file.
    column: usize,
}

impl SourceCode for Excerpt {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let inner =
            self.text
                .as_str()
                .read_span(span, context_lines_before, context_lines_after)?;
        // miette reads the label's own position with no context lines; with context it only
        // wants the first line's number.
        let column = if context_lines_before == 0 {
            self.column
        } else {
            0
        };
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            *inner.span(),
            self.line + inner.line(),
            column,
            inner.line_count(),
        )))
    }
}

impl Diagnostic for ProblemReport {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        if self.advice {
            return None;
        }
        Some(Box::new(format!("recipe::{}", self.code)))
    }
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            _ if self.advice => miette::Severity::Advice,
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h.clone()) as Box<dyn std::fmt::Display>)
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        if self.related.is_empty() {
            return None;
        }
        Some(Box::new(self.related.iter().map(|r| r as &dyn Diagnostic)))
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        match self.file.as_ref()? {
            Quoted::File(f) => Some(&**f as &dyn SourceCode),
            Quoted::Excerpt(e) => Some(e as &dyn SourceCode),
        }
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
    // A place is quoted from its file, or as a window when its line is too long to quote.
    let quote = |loc: Option<Loc>| match loc {
        Some(l) => match excerpt(&problems.sources, l) {
            Some((e, span)) => (Some(Quoted::Excerpt(e)), Some(span)),
            None => (
                Some(Quoted::File(named[l.file].clone())),
                Some(SourceSpan::new(
                    l.start.into(),
                    l.end.saturating_sub(l.start),
                )),
            ),
        },
        None => (None, None),
    };
    problems
        .list
        .iter()
        .map(|p: &Problem| {
            let (file, span) = quote(p.loc);
            ProblemReport {
                message: p.message.clone(),
                code: p.code,
                help: p.help.clone(),
                severity: p.severity,
                file,
                span,
                related: p
                    .related
                    .iter()
                    .map(|r| {
                        let (file, span) = quote(Some(r.loc));
                        ProblemReport {
                            message: r.message.clone(),
                            code: p.code,
                            help: None,
                            severity: p.severity,
                            file,
                            span,
                            related: vec![],
                            advice: true,
                        }
                    })
                    .collect(),
                advice: false,
            }
        })
        .collect()
}

/// The window of the problem's first line, when that line or one miette would quote beside
/// it is long; `None` when the file can be quoted as it is.
fn excerpt(sources: &Sources, loc: Loc) -> Option<(Excerpt, SourceSpan)> {
    let file = sources.get(loc.file);
    let text: &str = &file.text;
    let start = floor_char_boundary(text, loc.start);
    let end = floor_char_boundary(text, loc.end.max(start));
    // The quoted region: a line of context either side of the span's lines.
    let line_start = |at: usize| text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = |at: usize| text[at..].find('\n').map_or(text.len(), |i| at + i);
    let first = line_start(line_start(start).saturating_sub(1));
    let last = line_end((line_end(end) + 1).min(text.len()));
    if !text[first..last].split('\n').any(|l| l.len() > LONG_LINE) {
        return None;
    }
    let (from, to) = (line_start(start), line_end(start));
    let line = &text[from..to];
    let column = text[from..start].chars().count();
    let skip = column.saturating_sub(WINDOW_BEFORE);
    let window_from = line.char_indices().nth(skip).map_or(line.len(), |(i, _)| i);
    let window_to = line
        .char_indices()
        .nth(column + WINDOW_AFTER)
        .map_or(line.len(), |(i, _)| i);
    let lead = if window_from > 0 { "…" } else { "" };
    let tail = if window_to < line.len() { "…" } else { "" };
    let quoted = format!("{lead}{}{tail}", &line[window_from..window_to]);
    let span_start = lead.len() + (start - from - window_from);
    let span_end = lead.len() + (end.min(from + window_to).max(start) - from - window_from);
    let (line_number, _) = sources.line_col(loc);
    Some((
        Excerpt {
            name: file.name.clone(),
            text: quoted,
            line: line_number - 1,
            column,
        },
        SourceSpan::new(span_start.into(), span_end - span_start),
    ))
}

fn floor_char_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
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
