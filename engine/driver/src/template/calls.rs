//! The filters, tests and functions a template calls, and which of them the environment lacks.
//!
//! minijinja looks a filter up only when the instruction that applies it runs, so a misspelled
//! filter inside a branch that a render does not take would pass until a job takes it. Lint
//! reads the compiled instructions instead and asks the very environment that renders jobs
//! whether each name exists.

use std::ops::Range;

use minijinja::machinery::{CodeGenerator, Instruction, Instructions, parse, parse_expr};
use minijinja::syntax::SyntaxConfig;
use minijinja::{Value, context};

use crate::template::{TemplateShape, Templater, expression_offset, shape};

/// What kind of callable a template names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    Filter,
    Test,
    Function,
}

impl CallKind {
    pub fn noun(self) -> &'static str {
        match self {
            CallKind::Filter => "filter",
            CallKind::Test => "test",
            CallKind::Function => "function",
        }
    }
}

/// A filter, test or function the environment does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCall {
    pub kind: CallKind,
    pub name: String,
    /// Byte range of the call inside the string that was checked.
    pub range: Option<Range<usize>>,
    /// The nearest name the environment does have.
    pub suggestion: Option<String>,
}

/// Names worth suggesting: minijinja's builtins and ours. Each is checked against the
/// environment before it is offered, so a name minijinja drops is never suggested.
const FILTER_CANDIDATES: &[&str] = &[
    "abs",
    "attr",
    "batch",
    "bool",
    "capitalize",
    "chain",
    "count",
    "d",
    "default",
    "dictsort",
    "escape",
    "first",
    "float",
    "format",
    "groupby",
    "indent",
    "int",
    "items",
    "join",
    "last",
    "length",
    "lines",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "pprint",
    "reject",
    "rejectattr",
    "replace",
    "reverse",
    "round",
    "safe",
    "select",
    "selectattr",
    "slice",
    "sort",
    "split",
    "string",
    "sum",
    "title",
    "tojson",
    "trim",
    "unique",
    "upper",
    "zip",
];

const TEST_CANDIDATES: &[&str] = &[
    "boolean",
    "defined",
    "divisibleby",
    "endingwith",
    "eq",
    "even",
    "false",
    "filter",
    "float",
    "ge",
    "gt",
    "in",
    "integer",
    "iterable",
    "le",
    "lower",
    "lt",
    "mapping",
    "ne",
    "none",
    "number",
    "odd",
    "sameas",
    "sequence",
    "startingwith",
    "string",
    "test",
    "true",
    "undefined",
    "upper",
];

impl Templater {
    /// Unknown callables in a recipe string (plain text, one expression, or a template).
    /// A string that does not parse has none: its syntax error is reported on its own.
    pub fn unknown_calls(&self, s: &str) -> Vec<UnknownCall> {
        match shape(s) {
            TemplateShape::Plain => vec![],
            TemplateShape::Expression(expr) => {
                let offset = expression_offset(s, expr);
                self.unknown_calls_in_expression(expr)
                    .into_iter()
                    .map(|mut c| {
                        c.range = c.range.map(|r| r.start + offset..r.end + offset);
                        c
                    })
                    .collect()
            }
            TemplateShape::Text => {
                let Ok(ast) = parse(s, "<recipe>", SyntaxConfig::default()) else {
                    return vec![];
                };
                let mut g = CodeGenerator::new("<recipe>", s);
                g.compile_stmt(&ast);
                let (main, blocks) = g.finish();
                let mut out = self.unknown_in(&main);
                for b in blocks.values() {
                    out.extend(self.unknown_in(b));
                }
                out
            }
        }
    }

    /// Unknown callables in an expression used by itself, such as a `when:`.
    pub fn unknown_calls_in_expression(&self, expr: &str) -> Vec<UnknownCall> {
        let Ok(ast) = parse_expr(expr) else {
            return vec![];
        };
        let mut g = CodeGenerator::new("<expression>", expr);
        g.compile_expr(&ast);
        self.unknown_in(&g.finish().0)
    }

    /// Whether the environment has a filter (`Filter`), a test (`Test`) or a global
    /// (`Function`) by that name. Asked through minijinja's own `is filter` and `is test`, the
    /// only public view of the registries.
    pub fn has(&self, kind: CallKind, name: &str) -> bool {
        let probe = match kind {
            CallKind::Filter => "n is filter",
            CallKind::Test => "n is test",
            CallKind::Function => return self.env.globals().any(|(k, _)| k == name),
        };
        self.env
            .compile_expression(probe)
            .and_then(|e| e.eval(context! { n => name }))
            .is_ok_and(|v: Value| v.is_true())
    }

    fn unknown_in(&self, instructions: &Instructions<'_>) -> Vec<UnknownCall> {
        let all: Vec<&Instruction<'_>> = (0..).map_while(|i| instructions.get(i)).collect();
        // A macro or `{% set %}` may define a name that is then called like a function.
        let locals: Vec<&str> = all
            .iter()
            .filter_map(|i| match i {
                Instruction::StoreLocal(n) => Some(*n),
                _ => None,
            })
            .collect();
        let mut out = vec![];
        for (idx, instruction) in all.iter().enumerate() {
            let (kind, name) = match instruction {
                Instruction::ApplyFilter(n, _, _) => (CallKind::Filter, *n),
                Instruction::PerformTest(n, _, _) => (CallKind::Test, *n),
                Instruction::CallFunction(n, _) if !locals.contains(n) => (CallKind::Function, *n),
                _ => continue,
            };
            // `super()`, `caller()` and `loop()` are built into the engine, not the globals.
            if kind == CallKind::Function && matches!(name, "super" | "caller" | "loop") {
                continue;
            }
            if self.has(kind, name) {
                continue;
            }
            let range = instructions
                .get_span(idx as u32)
                .map(|s| s.start_offset as usize..s.end_offset as usize);
            out.push(UnknownCall {
                kind,
                name: name.to_string(),
                range,
                suggestion: self.nearest(kind, name),
            });
        }
        out
    }

    fn nearest(&self, kind: CallKind, name: &str) -> Option<String> {
        let globals: Vec<String>;
        let candidates: Vec<&str> = match kind {
            CallKind::Filter => FILTER_CANDIDATES
                .iter()
                .chain(crate::template::OWN_FILTERS)
                .copied()
                .collect(),
            CallKind::Test => TEST_CANDIDATES.to_vec(),
            CallKind::Function => {
                globals = self.env.globals().map(|(k, _)| k.to_string()).collect();
                globals.iter().map(|s| s.as_str()).collect()
            }
        };
        let known: Vec<&str> = candidates
            .into_iter()
            .filter(|c| self.has(kind, c))
            .collect();
        nearest_word(name, &known).map(String::from)
    }
}

/// The closest candidate by edit distance, also accepting one that the name contains or that
/// contains it (`lowercase` → `lower`), which edit distance alone misses.
fn nearest_word<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let by_distance = candidates
        .iter()
        .map(|c| (strsim::osa_distance(word, c), *c))
        .filter(|(d, c)| *d <= 2 && *d < c.len().max(word.len()) / 2 + 1)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c);
    by_distance.or_else(|| {
        candidates
            .iter()
            .filter(|c| c.len() >= 4 && (word.contains(**c) || c.contains(word)))
            .max_by_key(|c| c.len())
            .copied()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_candidate_exists_in_the_environment() {
        let t = Templater::new();
        for f in FILTER_CANDIDATES.iter().chain(crate::template::OWN_FILTERS) {
            assert!(t.has(CallKind::Filter, f), "filter {f}");
        }
        for x in TEST_CANDIDATES {
            assert!(t.has(CallKind::Test, x), "test {x}");
        }
        assert!(t.has(CallKind::Function, "job_override"));
        assert!(!t.has(CallKind::Filter, "lowercase"));
    }

    #[test]
    fn unknown_filters_tests_and_functions_are_found_with_a_suggestion() {
        let t = Templater::new();
        let s = "x-{{ vars.flavor | lowercase }}";
        let calls = t.unknown_calls(s);
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[0].kind, CallKind::Filter);
        assert_eq!(calls[0].suggestion.as_deref(), Some("lower"));
        let r = calls[0].range.clone().unwrap();
        assert!(s[r].contains("lowercase"));

        let calls = t.unknown_calls("{{ job.K | keyid }}");
        assert_eq!(calls[0].suggestion.as_deref(), Some("key_id"));
        let calls = t.unknown_calls("{{ job_overide(job.F, 'a', allowed=['a']) }}");
        assert_eq!(calls[0].kind, CallKind::Function);
        assert_eq!(calls[0].suggestion.as_deref(), Some("job_override"));
        let calls = t.unknown_calls_in_expression("state.x is defind");
        assert_eq!(calls[0].kind, CallKind::Test);
        assert_eq!(calls[0].suggestion.as_deref(), Some("defined"));
        // A branch a render would not take is still checked.
        let calls = t.unknown_calls("{% if false %}{{ 1 | nope }}{% endif %}");
        assert_eq!(calls.len(), 1);
    }

    #[test]
    fn known_callables_and_macros_pass() {
        let t = Templater::new();
        for ok in [
            "{{ job.K | key_id | shell_quote }}",
            "{{ job_override(job.F, 'a', allowed=['a']) }}",
            "{{ range(3) | list | length }}",
            "{% macro m() %}x{% endmacro %}{{ m() }}",
            "{{ x is defined and x is string }}",
            "plain",
        ] {
            assert_eq!(t.unknown_calls(ok), vec![], "{ok}");
        }
    }
}
