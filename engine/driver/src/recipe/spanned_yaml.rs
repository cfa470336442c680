//! YAML parsed with saphyr into a tree that remembers where every key and value came from, so
//! that merged recipes can still point at the file, line and column of each problem.

use indexmap::IndexMap;
use saphyr::{LoadableYamlNode, MarkedYamlOwned, ScalarOwned, YamlDataOwned};
use serde_json::Value as Json;

use crate::recipe::source_file::Loc;

#[derive(Debug, Clone)]
pub enum Tree {
    Scalar(Json),
    Seq(Vec<Node>),
    /// Keys keep their own location, for "unknown field" reports.
    Map(IndexMap<String, (Loc, Node)>),
}

#[derive(Debug, Clone)]
pub struct Node {
    pub tree: Tree,
    pub loc: Loc,
    /// Where a later layer's `patch` changed this mapping, if one did: a problem the change
    /// causes in it (a required field deleted with `null`) is the override's to fix.
    pub patched_at: Option<Loc>,
}

/// A YAML problem found while reading the file.
#[derive(Debug, Clone)]
pub struct YamlError {
    pub loc: Loc,
    pub message: String,
    pub help: Option<String>,
}

/// Where each JSON pointer of a converted tree came from.
#[derive(Debug, Default, Clone)]
pub struct SpanMap {
    pub values: std::collections::HashMap<String, Loc>,
    pub keys: std::collections::HashMap<String, Loc>,
    /// The mappings a `patch` changed, and where that patch is.
    pub patched: std::collections::HashMap<String, Loc>,
}

impl SpanMap {
    /// The value's location, or the closest enclosing one.
    pub fn value_loc(&self, pointer: &str) -> Option<Loc> {
        let mut p = pointer;
        loop {
            if let Some(l) = self.values.get(p) {
                return Some(*l);
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return None,
            }
        }
    }

    /// The key's location if the pointer names a mapping entry, else the value's.
    pub fn key_loc(&self, pointer: &str) -> Option<Loc> {
        self.keys
            .get(pointer)
            .copied()
            .or_else(|| self.value_loc(pointer))
    }
}

/// saphyr counts characters; miette wants bytes. The byte offset of every character is
/// computed once: walking the text for each node made loading quadratic on non-ASCII text.
struct Offsets {
    /// Empty for ASCII text, where characters are bytes.
    bytes: Vec<usize>,
    len: usize,
}

thread_local! {
    static CHARS_WALKED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Characters this thread has walked to map saphyr's positions to bytes, so that a test can
/// hold loading to linear work without timing it (issue 14, item 8).
#[doc(hidden)]
pub fn chars_walked() -> u64 {
    CHARS_WALKED.with(|c| c.get())
}

impl Offsets {
    fn new(text: &str) -> Self {
        let bytes: Vec<usize> = if text.is_ascii() {
            vec![]
        } else {
            text.char_indices().map(|(b, _)| b).collect()
        };
        CHARS_WALKED.with(|c| c.set(c.get() + bytes.len() as u64));
        Offsets {
            bytes,
            len: text.len(),
        }
    }

    fn byte(&self, char_index: usize) -> usize {
        if self.bytes.is_empty() {
            return char_index.min(self.len);
        }
        self.bytes.get(char_index).copied().unwrap_or(self.len)
    }
}

/// Why a recipe may not use `*alias` (nor `<<: *alias`): every value has one place, which
/// diagnostics point at and overrides patch; a copied value would have two.
const ALIAS_REFUSED: &str = "YAML aliases (`*name`) are not allowed in recipes";
const ALIAS_HELP: &str = "write each value where it applies, so that a problem points at one place \
     and an override patches one step; share a value through `vars` (`{{ vars.name }}`)";

/// The character index of the first alias in `text`, if it has one (and parses).
fn first_alias(text: &str) -> Option<usize> {
    let mut parser = saphyr_parser::Parser::new_from_str(text);
    while let Some(Ok((event, span))) = parser.next_event() {
        match event {
            saphyr_parser::Event::Alias(_) => return Some(span.start.index()),
            saphyr_parser::Event::StreamEnd => return None,
            _ => {}
        }
    }
    None
}

/// saphyr's reason, in the author's terms where its own words are obscure.
fn syntax_message(info: &str, text: &str, at: usize) -> String {
    if info.contains("duplicate") {
        let rest = &text[at.min(text.len())..];
        let key = rest
            .split(['\n', ':'])
            .next()
            .unwrap_or_default()
            .trim()
            .trim_matches(['"', '\'']);
        if !key.is_empty() {
            return format!("YAML syntax error: the key `{key}` appears twice in this mapping");
        }
    }
    if info.contains("mapping values are not allowed") {
        return format!(
            "YAML syntax error: {info}; the indentation is probably wrong (a key indented \
             deeper than its siblings, or a `key: value` after a plain value on the line above), \
             or a value holding `: ` needs quotes"
        );
    }
    if info.contains("tab") {
        return format!("YAML syntax error: {info}; YAML indents with spaces, never tabs");
    }
    format!("YAML syntax error: {info}")
}

/// Nesting deeper than any recipe needs. saphyr bounds flow nesting (`[[[`) but not block
/// nesting: its loader recurses once per level, and `: : : ...` a few thousand times over
/// overflowed the stack (an abort, in every stage) before this limit.
pub const MAX_DEPTH: usize = 64;

/// The character index where the text nests deeper than [`MAX_DEPTH`], found with saphyr's
/// event parser, which keeps its state on the heap. A syntax error ends the look: loading reports
/// it.
fn too_deep(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for event in saphyr_parser::Parser::new_from_str(text) {
        let Ok((event, span)) = event else {
            return None;
        };
        match event {
            saphyr_parser::Event::MappingStart(..) | saphyr_parser::Event::SequenceStart(..) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(span.start.index());
                }
            }
            saphyr_parser::Event::MappingEnd | saphyr_parser::Event::SequenceEnd => {
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
    }
    None
}

pub fn parse(file: usize, text: &str) -> Result<Node, YamlError> {
    let offsets = Offsets::new(text);
    // A problem of the text at one character (an index in characters, as saphyr counts).
    let at_char = |at: usize, message: String, help: Option<&str>| {
        let at = offsets.byte(at);
        YamlError {
            loc: Loc {
                file,
                start: at,
                end: at,
            },
            message,
            help: help.map(str::to_string),
        }
    };
    if let Some(at) = too_deep(text) {
        return Err(at_char(
            at,
            format!("YAML nested more than {MAX_DEPTH} levels deep; a recipe needs far fewer"),
            None,
        ));
    }
    let docs = MarkedYamlOwned::load_from_str(text).map_err(|e| {
        let at = e.marker().index();
        at_char(at, syntax_message(e.info(), text, offsets.byte(at)), None)
    })?;
    // saphyr resolves aliases by copying the anchored value, so the tree never shows one.
    if text.contains('*')
        && let Some(at) = first_alias(text)
    {
        return Err(at_char(at, ALIAS_REFUSED.into(), Some(ALIAS_HELP)));
    }
    let whole = Loc {
        file,
        start: 0,
        end: 0,
    };
    match docs.len() {
        0 => Ok(Node {
            tree: Tree::Map(IndexMap::new()),
            loc: whole,
            patched_at: None,
        }),
        1 => convert(&docs[0], file, &offsets),
        _ => Err(YamlError {
            loc: whole,
            message: "a recipe file holds one YAML document, found several".into(),
            help: None,
        }),
    }
}

fn convert(y: &MarkedYamlOwned, file: usize, o: &Offsets) -> Result<Node, YamlError> {
    let loc = Loc {
        file,
        start: o.byte(y.span.start.index()),
        end: o.byte(y.span.end.index()),
    };
    let tree = match &y.data {
        YamlDataOwned::Value(s) => Tree::Scalar(scalar(s)),
        YamlDataOwned::Representation(s, _, _) => Tree::Scalar(Json::String(s.clone())),
        YamlDataOwned::Sequence(items) => Tree::Seq(
            items
                .iter()
                .map(|i| convert(i, file, o))
                .collect::<Result<_, _>>()?,
        ),
        YamlDataOwned::Mapping(map) => {
            let mut out = IndexMap::new();
            for (k, v) in map.iter() {
                let key_loc = Loc {
                    file,
                    start: o.byte(k.span.start.index()),
                    end: o.byte(k.span.end.index()),
                };
                let key = match &k.data {
                    YamlDataOwned::Value(ScalarOwned::String(s)) => s.clone(),
                    YamlDataOwned::Value(other) => scalar_text(other),
                    // `message: {{ vars.x }}` unquoted is a mapping whose key is a mapping.
                    YamlDataOwned::Mapping(_) => {
                        return Err(YamlError {
                            loc: key_loc,
                            message: "a value that starts with `{{` must be quoted".into(),
                            help: Some(
                                "YAML reads `{ ... }` as a mapping: write `\"{{ ... }}\"`".into(),
                            ),
                        });
                    }
                    _ => {
                        return Err(YamlError {
                            loc: key_loc,
                            message: "mapping keys must be plain scalars".into(),
                            help: None,
                        });
                    }
                };
                out.insert(key, (key_loc, convert(v, file, o)?));
            }
            Tree::Map(out)
        }
        YamlDataOwned::Tagged(_, inner) => return convert(inner, file, o),
        YamlDataOwned::Alias(_) => {
            return Err(YamlError {
                loc,
                message: ALIAS_REFUSED.into(),
                help: Some(ALIAS_HELP.into()),
            });
        }
        YamlDataOwned::BadValue => {
            return Err(YamlError {
                loc,
                message: "this YAML value could not be read".into(),
                help: None,
            });
        }
    };
    Ok(Node {
        tree,
        loc,
        patched_at: None,
    })
}

fn scalar(s: &ScalarOwned) -> Json {
    match s {
        ScalarOwned::Null => Json::Null,
        ScalarOwned::Boolean(b) => Json::Bool(*b),
        ScalarOwned::Integer(i) => Json::from(*i),
        ScalarOwned::FloatingPoint(f) => {
            serde_json::Number::from_f64(f.into_inner()).map_or(Json::Null, Json::Number)
        }
        ScalarOwned::String(s) => Json::String(s.clone()),
    }
}

fn scalar_text(s: &ScalarOwned) -> String {
    match scalar(s) {
        Json::String(s) => s,
        other => other.to_string(),
    }
}

impl Node {
    pub fn to_json(&self, spans: &mut SpanMap) -> Json {
        self.to_json_at(String::new(), spans)
    }

    fn to_json_at(&self, pointer: String, spans: &mut SpanMap) -> Json {
        let json = match &self.tree {
            Tree::Scalar(v) => v.clone(),
            Tree::Seq(items) => Json::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, n)| n.to_json_at(format!("{pointer}/{i}"), spans))
                    .collect(),
            ),
            Tree::Map(map) => Json::Object(
                map.iter()
                    .map(|(k, (kl, n))| {
                        let p = format!("{pointer}/{}", crate::template::escape_pointer(k));
                        spans.keys.insert(p.clone(), *kl);
                        (k.clone(), n.to_json_at(p, spans))
                    })
                    .collect(),
            ),
        };
        if let Some(at) = self.patched_at {
            spans.patched.insert(pointer.clone(), at);
        }
        spans.values.insert(pointer, self.loc);
        json
    }

    pub fn as_map(&self) -> Option<&IndexMap<String, (Loc, Node)>> {
        match &self.tree {
            Tree::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.tree {
            Tree::Scalar(Json::String(s)) => Some(s),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_keep_byte_locations_even_after_non_ascii_text() {
        let text = "name: \"héllo\"\nsteps:\n  - id: a\n    kind: log\n";
        let node = parse(0, text).unwrap();
        let mut spans = SpanMap::default();
        let json = node.to_json(&mut spans);
        assert_eq!(json["steps"][0]["kind"], "log");
        let k = spans.keys["/steps/0/kind"];
        assert_eq!(&text[k.start..k.end], "kind");
        let v = spans.values["/steps/0/kind"];
        assert_eq!(&text[v.start..v.end], "log");
        assert_eq!(spans.value_loc("/steps/0/kind/deeper"), Some(v));
    }

    #[test]
    fn syntax_errors_and_duplicate_keys_are_reported_with_a_location() {
        let e = parse(0, "a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.message.contains("YAML syntax error"), "{}", e.message);
        let e = parse(0, "a: 1\nabc: 2\nabc: 3\n").unwrap_err();
        assert!(e.message.contains("`abc` appears twice"), "{}", e.message);
        let e = parse(0, "a:\n  b: 1\n   c: 2\n").unwrap_err();
        assert!(e.message.contains("indentation"), "{}", e.message);
    }

    #[test]
    fn non_ascii_offsets_are_indexed_once() {
        let o = Offsets::new("aé😀b");
        assert_eq!(
            [o.byte(0), o.byte(1), o.byte(2), o.byte(3), o.byte(4)],
            [0, 1, 3, 7, 8]
        );
        assert_eq!(o.byte(99), 8);
        let ascii = Offsets::new("abc");
        assert_eq!((ascii.byte(2), ascii.byte(9)), (2, 3));
    }

    #[test]
    fn scalars_are_typed() {
        let node = parse(0, "a: 1\nb: true\nc: ~\nd: '1'\ne: 1.5\n").unwrap();
        let json = node.to_json(&mut SpanMap::default());
        assert_eq!(
            json,
            serde_json::json!({"a":1,"b":true,"c":null,"d":"1","e":1.5})
        );
    }
}
