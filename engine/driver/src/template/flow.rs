//! Which context values reach a template's result, and whether on the way they were quoted for a
//! shell or checked against an allow-list. Lint's taint check (`recipe/taint.rs`) asks this of
//! every templated field that ends in a cloud request or a shell.
//!
//! It reads minijinja's syntax tree, as `calls.rs` reads its instructions: a value flows into the
//! result through concatenation, filters, `default`, `if`/`else`, loops and `{% set %}`;
//! a test, a comparison or `not` yields a boolean and carries nothing. What only decides
//! *which* branch renders (an `if` condition) is not followed: a job that can pick between two
//! strings of the recipe cannot inject either.

use std::collections::HashMap;
use std::ops::Range;

use minijinja::machinery::ast::{self, CallArg, Expr, Stmt};
use minijinja::machinery::{parse, parse_expr};
use minijinja::syntax::SyntaxConfig;

use crate::template::{TemplateShape, expression_offset, shape};

/// What happened to a value between where it was read and the template's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Treatment {
    /// Passed on as it was read: whatever the value carried still holds.
    Unchanged,
    /// Quoted or reduced to a form a shell takes as one plain word (`shell_quote`,
    /// `b64encode`, a number).
    ShellSafe,
    /// Changed by a filter that may undo an earlier quoting (`replace`, `join` of parts...).
    Rewritten,
}

impl Treatment {
    /// The treatment of `self` applied to a value that had already had `earlier`.
    fn after(self, earlier: Treatment) -> Treatment {
        match self {
            Treatment::Unchanged => earlier,
            other => other,
        }
    }
}

/// One context value that reaches the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    /// The name as read, up to the first dynamic part: `job.FLAVOR`, `vars.image`, `job`.
    pub path: String,
    /// Byte range of the read in the checked string.
    pub range: Range<usize>,
    pub treatment: Treatment,
}

/// Filters that leave quoting as it was: they pick, wrap or default a value without touching
/// the characters of what they keep.
const KEEPS_TREATMENT: &[&str] = &[
    "default", "d", "required", "string", "list", "first", "last", "trim", "unique", "sort",
    "reverse", "safe", "escape", "e",
];

/// Filters whose result a shell reads as one plain word whatever went in.
const MAKES_SHELL_SAFE: &[&str] = &[
    "shell_quote",
    "b64encode",
    "int",
    "float",
    "abs",
    "round",
    "length",
    "count",
    "bool",
];

/// The function that lets a job choose only from a list: what the job asked for never reaches
/// the result unchecked, only the default and the list do.
const ALLOW_LIST_FUNCTION: &str = "job_override";

/// Every context value that reaches the result of a recipe string (plain text, one expression or
/// a template). A string that does not parse reaches nothing: lint reports its syntax on its own.
pub fn reaching(s: &str) -> Vec<Reach> {
    let mut flow = Flow::default();
    match shape(s) {
        TemplateShape::Plain => vec![],
        TemplateShape::Expression(expr) => {
            let offset = expression_offset(s, expr);
            let Ok(ast) = parse_expr(expr) else {
                return vec![];
            };
            flow.expr(&ast)
                .into_iter()
                .map(|mut r| {
                    r.range = r.range.start + offset..r.range.end + offset;
                    r
                })
                .collect()
        }
        TemplateShape::Text => {
            let Ok(ast) = parse(s, "<recipe>", SyntaxConfig::default()) else {
                return vec![];
            };
            flow.stmt(&ast);
            flow.out
        }
    }
}

#[derive(Default)]
struct Flow {
    /// Names bound inside the template (`set`, `for`, `with`) and what flows into them.
    locals: HashMap<String, Vec<Reach>>,
    out: Vec<Reach>,
}

fn range(span: minijinja::machinery::Span) -> Range<usize> {
    span.start_offset as usize..span.end_offset as usize
}

impl Flow {
    fn stmts(&mut self, body: &[Stmt<'_>]) {
        for s in body {
            self.stmt(s);
        }
    }

    /// What `body` would add to the output, without adding it.
    fn captured(&mut self, body: &[Stmt<'_>]) -> Vec<Reach> {
        let before = std::mem::take(&mut self.out);
        self.stmts(body);
        std::mem::replace(&mut self.out, before)
    }

    fn stmt(&mut self, s: &Stmt<'_>) {
        match s {
            Stmt::Template(t) => self.stmts(&t.children),
            Stmt::EmitExpr(e) => {
                let reach = self.expr(&e.expr);
                self.out.extend(reach);
            }
            Stmt::EmitRaw(_) => {}
            Stmt::ForLoop(f) => {
                let items = self.expr(&f.iter);
                self.bind(&f.target, items);
                self.stmts(&f.body);
                self.stmts(&f.else_body);
            }
            Stmt::IfCond(i) => {
                self.stmts(&i.true_body);
                self.stmts(&i.false_body);
            }
            Stmt::WithBlock(w) => {
                for (target, value) in &w.assignments {
                    let reach = self.expr(value);
                    self.bind(target, reach);
                }
                self.stmts(&w.body);
            }
            Stmt::Set(set) => {
                let reach = self.expr(&set.expr);
                self.bind(&set.target, reach);
            }
            Stmt::SetBlock(set) => {
                let mut reach = self.captured(&set.body);
                if let Some(filter) = &set.filter {
                    reach = self.filtered(filter, reach);
                }
                self.bind(&set.target, reach);
            }
            Stmt::AutoEscape(a) => self.stmts(&a.body),
            Stmt::FilterBlock(f) => {
                let reach = self.captured(&f.body);
                let reach = self.filtered(&f.filter, reach);
                self.out.extend(reach);
            }
            Stmt::Block(b) => self.stmts(&b.body),
            Stmt::CallBlock(c) => {
                let reach = self.call(&c.call);
                self.out.extend(reach);
                let body = self.captured(&c.macro_decl.body);
                self.out.extend(body);
            }
            // A macro's body flows out where it is called, with the call's arguments.
            _ => {}
        }
    }

    fn bind(&mut self, target: &Expr<'_>, reach: Vec<Reach>) {
        match target {
            Expr::Var(v) => {
                self.locals.insert(v.id.to_string(), reach);
            }
            Expr::Tuple(t) => {
                for item in &t.items {
                    self.bind(item, reach.clone());
                }
            }
            _ => {}
        }
    }

    /// `filter` applied to values that flow in from a block (`{% filter %}`, `{% set %}`).
    fn filtered(&mut self, filter: &Expr<'_>, input: Vec<Reach>) -> Vec<Reach> {
        match filter {
            Expr::Filter(f) => {
                let mut reach = treat(f.name, input);
                for arg in &f.args {
                    reach.extend(self.arg(arg));
                }
                reach
            }
            _ => input,
        }
    }

    fn arg(&mut self, a: &CallArg<'_>) -> Vec<Reach> {
        match a {
            CallArg::Pos(e)
            | CallArg::Kwarg(_, e)
            | CallArg::PosSplat(e)
            | CallArg::KwargSplat(e) => self.expr(e),
        }
    }

    fn expr(&mut self, e: &Expr<'_>) -> Vec<Reach> {
        if let Some((path, span)) = dotted(e) {
            let root = path.split('.').next().unwrap_or_default();
            if let Some(local) = self.locals.get(root) {
                return local.clone();
            }
            return vec![Reach {
                path,
                range: range(span),
                treatment: Treatment::Unchanged,
            }];
        }
        match e {
            Expr::Var(_) | Expr::Const(_) => vec![],
            Expr::Slice(s) => self.expr(&s.expr),
            Expr::UnaryOp(u) => match u.op {
                ast::UnaryOpKind::Not => vec![],
                ast::UnaryOpKind::Neg => treat("int", self.expr(&u.expr)),
            },
            Expr::BinOp(b) => match b.op {
                ast::BinOpKind::Eq
                | ast::BinOpKind::Ne
                | ast::BinOpKind::Lt
                | ast::BinOpKind::Lte
                | ast::BinOpKind::Gt
                | ast::BinOpKind::Gte
                | ast::BinOpKind::In => vec![],
                // Arithmetic on a string fails; on numbers it gives a number.
                ast::BinOpKind::Sub
                | ast::BinOpKind::Div
                | ast::BinOpKind::FloorDiv
                | ast::BinOpKind::Rem
                | ast::BinOpKind::Pow => {
                    let mut reach = self.expr(&b.left);
                    reach.extend(self.expr(&b.right));
                    treat("int", reach)
                }
                // `+` and `*` also join lists and repeat strings; `and`/`or` return an operand.
                _ => {
                    let mut reach = self.expr(&b.left);
                    reach.extend(self.expr(&b.right));
                    reach
                }
            },
            Expr::Compare(_) | Expr::Test(_) => vec![],
            Expr::IfExpr(i) => {
                let mut reach = self.expr(&i.true_expr);
                if let Some(f) = &i.false_expr {
                    reach.extend(self.expr(f));
                }
                reach
            }
            Expr::Filter(f) => {
                let input = f.expr.as_ref().map(|x| self.expr(x)).unwrap_or_default();
                let mut reach = treat(f.name, input);
                for arg in &f.args {
                    reach.extend(self.arg(arg));
                }
                reach
            }
            Expr::GetAttr(g) => self.expr(&g.expr),
            Expr::GetItem(g) => {
                let mut reach = self.expr(&g.expr);
                // A key the job chooses picks what comes out.
                reach.extend(self.expr(&g.subscript_expr));
                reach
            }
            Expr::Call(c) => self.call(c),
            Expr::List(l) => l.items.iter().flat_map(|i| self.expr(i)).collect(),
            Expr::Tuple(t) => t.items.iter().flat_map(|i| self.expr(i)).collect(),
            Expr::Map(m) => m
                .keys
                .iter()
                .chain(&m.values)
                .flat_map(|i| self.expr(i))
                .collect(),
        }
    }

    fn call(&mut self, c: &ast::Call<'_>) -> Vec<Reach> {
        match &c.expr {
            Expr::Var(v) if v.id == ALLOW_LIST_FUNCTION && !self.locals.contains_key(v.id) => {
                // job_override(requested, default, allowed=[...]): the request is checked
                // against the list, so only the default and the list itself flow on.
                c.args
                    .iter()
                    .enumerate()
                    .filter(|(i, a)| !matches!(a, CallArg::Pos(_)) || *i > 0)
                    .flat_map(|(_, a)| self.arg(a))
                    .collect()
            }
            // A method (`x.split(',')`) keeps what its object carries.
            Expr::GetAttr(g) => {
                let mut reach = self.expr(&g.expr);
                for a in &c.args {
                    reach.extend(self.arg(a));
                }
                reach
            }
            _ => c.args.iter().flat_map(|a| self.arg(a)).collect(),
        }
    }
}

fn treat(filter: &str, input: Vec<Reach>) -> Vec<Reach> {
    let t = if MAKES_SHELL_SAFE.contains(&filter) {
        Treatment::ShellSafe
    } else if KEEPS_TREATMENT.contains(&filter) {
        Treatment::Unchanged
    } else {
        Treatment::Rewritten
    };
    input
        .into_iter()
        .map(|mut r| {
            r.treatment = t.after(r.treatment);
            r
        })
        .collect()
}

/// `a.b.c` or `a['b']` as a dotted name with its span, when every part is fixed.
fn dotted<'a>(e: &Expr<'a>) -> Option<(String, minijinja::machinery::Span)> {
    match e {
        Expr::Var(v) => Some((v.id.to_string(), v.span())),
        Expr::GetAttr(g) => {
            let (base, _) = dotted(&g.expr)?;
            Some((format!("{base}.{}", g.name), g.span()))
        }
        Expr::GetItem(g) => {
            let key = match &g.subscript_expr {
                Expr::Const(c) => c.value.as_str().map(str::to_string)?,
                _ => return None,
            };
            let (base, _) = dotted(&g.expr)?;
            Some((format!("{base}.{key}"), g.span()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(s: &str) -> Vec<(String, Treatment)> {
        reaching(s)
            .into_iter()
            .map(|r| (r.path, r.treatment))
            .collect()
    }

    use Treatment::*;

    #[test]
    fn values_flow_through_text_filters_and_branches() {
        assert_eq!(paths("{{ job.X }}"), [("job.X".into(), Unchanged)]);
        assert_eq!(
            paths("a-{{ job.X | default('y') }}-{{ vars.v }}"),
            [("job.X".into(), Unchanged), ("vars.v".into(), Unchanged)]
        );
        assert_eq!(
            paths("{{ vars.a if job.B is defined else job['C'] }}"),
            [("vars.a".into(), Unchanged), ("job.C".into(), Unchanged)]
        );
        assert_eq!(paths("{{ job.X | lower }}"), [("job.X".into(), Rewritten)]);
        assert_eq!(
            paths("{% set x = job.X %}{% for i in [x] %}{{ i }}{% endfor %}"),
            [("job.X".into(), Unchanged)]
        );
        assert_eq!(
            paths("{{ job.X.split(',') }}"),
            [("job.X".into(), Unchanged)]
        );
        assert_eq!(
            paths("{{ env[job.K] }}"),
            [("env".into(), Unchanged), ("job.K".into(), Unchanged)]
        );
    }

    #[test]
    fn booleans_quoting_and_allow_lists_stop_or_mark_the_flow() {
        assert_eq!(paths("{{ job.X is defined and job.X == 'a' }}"), []);
        assert_eq!(paths("{% if job.X %}yes{% endif %}"), []);
        assert_eq!(
            paths("{{ job.X | shell_quote }}"),
            [("job.X".into(), ShellSafe)]
        );
        assert_eq!(
            paths("{{ job.X | int + 1 }}"),
            [("job.X".into(), ShellSafe)]
        );
        // Quoting undone by a later rewrite is no quoting.
        assert_eq!(
            paths("{{ job.X | shell_quote | replace(\"'\", '') }}"),
            [("job.X".into(), Rewritten)]
        );
        assert_eq!(
            paths("{{ job_override(job.F | default(''), vars.d, allowed=vars.list) }}"),
            [
                ("vars.d".into(), Unchanged),
                ("vars.list".into(), Unchanged)
            ]
        );
        assert_eq!(
            paths("{% filter shell_quote %}{{ job.X }}{% endfilter %}"),
            [("job.X".into(), ShellSafe)]
        );
    }

    #[test]
    fn ranges_point_at_the_read() {
        let s = "echo {{ job.X }}";
        let r = reaching(s);
        assert_eq!(&s[r[0].range.clone()], "job.X");
        let s = "  {{ vars.a ~ job['X'] }}";
        let r = reaching(s);
        assert_eq!(&s[r[1].range.clone()], "job['X']");
        assert_eq!(reaching("{{ unterminated"), []);
    }
}
