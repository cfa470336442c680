//! Site overrides: how a later recipe layer changes an earlier one.
//!
//! The rules, applied in this order for each layer:
//! 1. a stage the layer lists (`prepare`, `run`, `cleanup`) replaces that stage whole;
//! 2. `remove: [id, ...]` drops steps;
//! 3. `patch: {id: {...}}` merges into steps: mappings merge key by key, anything else replaces,
//!    and `null` deletes a key;
//! 4. `insert: [{before|after: id, steps: [...]}]` adds steps next to an existing one;
//! 5. every other top-level key merges like `patch` does (`vars`, `config`, `cloud`, `ssh`);
//!    new `vars` go after the base's, so they may use them.
//!
//! A layer that names a step id the base does not have is an error pointing at the layer.

use indexmap::IndexMap;
use serde_json::Value as Json;

use crate::recipe::problem::Problem;
use crate::recipe::source_file::Loc;
use crate::recipe::spanned_yaml::{Node, Tree};

const STAGES: [&str; 4] = ["provision", "prepare", "run", "cleanup"];
const OVERRIDE_KEYS: [&str; 4] = ["patch", "remove", "insert", "extends"];

/// Apply `layer` on top of `base`, collecting every problem rather than stopping at the first.
///
/// The directives are checked for shape first: the merge consumes them, so no later check
/// (the schema's included) ever sees `remove: console` or a `patch` that is a list, and a
/// directive of the wrong shape would otherwise be dropped without a word.
pub fn apply(base: &mut Node, layer: &Node, problems: &mut Vec<Problem>) {
    let (Tree::Map(base_map), Some(layer_map)) = (&mut base.tree, layer.as_map()) else {
        problems.push(Problem::new(
            "not-a-mapping",
            "a recipe must be a YAML mapping",
            Some(layer.loc),
        ));
        return;
    };
    let known_ids = all_ids(base_map);
    for stage in STAGES {
        if let Some((kl, steps)) = layer_map.get(stage) {
            base_map.insert(stage.to_string(), (*kl, steps.clone()));
        }
    }
    if let Some((_, remove)) = layer_map.get("remove")
        && let Some(ids) = remove_shape(remove, problems)
    {
        for (id, loc) in ids {
            if take_step(base_map, id).is_none() {
                problems.push(unknown_id(id, loc, "remove", &known_ids));
            }
        }
    }
    if let Some((key, patch)) = layer_map.get("patch")
        && let Some(patches) = patch_shape(*key, patch, problems)
    {
        for (id, key_loc, change) in patches {
            match find_step_mut(base_map, id) {
                Some(step) => {
                    merge(step, change);
                    step.patched_at = Some(key_loc);
                }
                None => problems.push(unknown_id(id, key_loc, "patch", &known_ids)),
            }
        }
    }
    if let Some((key, insert)) = layer_map.get("insert") {
        for ins in insert_shape(*key, insert, problems) {
            insert_steps(base_map, ins, problems, &known_ids);
        }
    }
    for (key, (kl, value)) in layer_map {
        if STAGES.contains(&key.as_str()) || OVERRIDE_KEYS.contains(&key.as_str()) {
            continue;
        }
        match base_map.get_mut(key) {
            Some((_, existing)) => merge(existing, value),
            None => {
                base_map.insert(key.clone(), (*kl, value.clone()));
            }
        }
    }
}

fn shape(message: impl Into<String>, loc: Loc, help: impl Into<String>) -> Problem {
    Problem::new("override-shape", message, Some(loc)).with_help(help)
}

/// The ids `remove` lists, or `None` when it is not a list.
fn remove_shape<'a>(node: &'a Node, problems: &mut Vec<Problem>) -> Option<Vec<(&'a str, Loc)>> {
    let items = match &node.tree {
        Tree::Seq(items) => items,
        Tree::Scalar(Json::String(id)) => {
            problems.push(shape(
                "`remove` takes a list of step ids, not one id",
                node.loc,
                format!("write `remove: [{id}]`"),
            ));
            return None;
        }
        _ => {
            problems.push(shape(
                "`remove` takes a list of step ids",
                node.loc,
                "write `remove: [console, ready]`",
            ));
            return None;
        }
    };
    let mut ids = vec![];
    for item in items {
        match item.as_str() {
            Some(id) => ids.push((id, item.loc)),
            None => problems.push(shape(
                "`remove` lists step ids, and this is not one",
                item.loc,
                "write each id as a plain word: `remove: [console, ready]`",
            )),
        }
    }
    Some(ids)
}

/// Each patch as (step id, where the id is written, the fields to merge), or `None` when
/// `patch` is not a mapping. A block of the wrong shape is reported at its key: its own span
/// runs on to the next line.
fn patch_shape<'a>(
    key: Loc,
    node: &'a Node,
    problems: &mut Vec<Problem>,
) -> Option<Vec<(&'a str, Loc, &'a Node)>> {
    let Some(patches) = node.as_map() else {
        problems.push(shape(
            "`patch` maps step ids to the fields to change",
            key,
            "write `patch:` with one entry per step, e.g. `console: {on_failure: ignore}` on the \
             line below, indented",
        ));
        return None;
    };
    let mut out = vec![];
    for (id, (key_loc, change)) in patches {
        if change.as_map().is_some() {
            out.push((id.as_str(), *key_loc, change));
            continue;
        }
        let help = match &change.tree {
            Tree::Scalar(Json::Null) => format!(
                "to drop the step, write `remove: [{id}]`; to change it, list its fields under \
                 `{id}:`"
            ),
            Tree::Seq(_) => format!(
                "a patch is a mapping, not a list: write the fields under `{id}:` without `- `"
            ),
            _ => format!("list the fields to change under `{id}:`, e.g. `{id}: {{timeout: 30s}}`"),
        };
        let at = match change.tree {
            Tree::Scalar(_) => change.loc,
            _ => *key_loc,
        };
        problems.push(shape(
            format!("the patch of step `{id}` must be a mapping of the fields to change"),
            at,
            help,
        ));
    }
    Some(out)
}

const INSERTION_KEYS: [&str; 3] = ["before", "after", "steps"];

/// The insertions of the right shape; each wrong one is reported at its own place.
fn insert_shape<'a>(key: Loc, node: &'a Node, problems: &mut Vec<Problem>) -> Vec<&'a Node> {
    let items: Vec<&Node> = match &node.tree {
        Tree::Seq(items) => items.iter().collect(),
        Tree::Map(m) if m.keys().any(|k| INSERTION_KEYS.contains(&k.as_str())) => {
            problems.push(shape(
                "`insert` takes a list of insertions",
                m.values().next().map_or(key, |(kl, _)| *kl),
                "start the insertion with `- `: `insert:` then `  - after: ID` and `    steps: [...]`",
            ));
            return vec![];
        }
        _ => {
            problems.push(shape(
                "`insert` takes a list of insertions",
                key,
                "each insertion is `- before: ID` or `- after: ID`, with the new steps under `steps:`",
            ));
            return vec![];
        }
    };
    let mut out = vec![];
    for ins in items {
        // The first key stands for the insertion: the item's span runs on to the next one.
        let first_key = ins
            .as_map()
            .and_then(|m| m.values().next())
            .map_or(ins.loc, |(kl, _)| *kl);
        let Some(fields) = ins.as_map() else {
            problems.push(shape(
                "an insertion is a mapping with `before` or `after`, and `steps`",
                ins.loc,
                "write `- after: ID` and, below it, `  steps: [...]`",
            ));
            continue;
        };
        let mut ok = true;
        for (key, (kl, _)) in fields {
            if !INSERTION_KEYS.contains(&key.as_str()) {
                ok = false;
                let p = Problem::new(
                    "unknown-field",
                    format!("unknown field `{key}` in an insertion"),
                    Some(*kl),
                );
                problems.push(
                    match crate::recipe::schema_check::did_you_mean(key, INSERTION_KEYS) {
                        Some(s) => p.with_help(format!("did you mean `{s}`?")),
                        None => p.with_help("an insertion has `before` or `after`, and `steps`"),
                    },
                );
            }
        }
        match (fields.get("before"), fields.get("after")) {
            (Some((_, n)), None) | (None, Some((_, n))) if n.as_str().is_none() => {
                ok = false;
                problems.push(shape(
                    "`before` and `after` name one step id",
                    n.loc,
                    "write the id as a plain word, e.g. `after: server`",
                ));
            }
            (Some(_), None) | (None, Some(_)) => {}
            (Some(_), Some((_, second))) => {
                ok = false;
                let at = fields
                    .get_index_of("after")
                    .max(fields.get_index_of("before"));
                let at = at
                    .and_then(|i| fields.get_index(i))
                    .map_or(second.loc, |(_, (kl, _))| *kl);
                problems.push(shape(
                    "an insertion needs exactly one of `before` and `after`",
                    at,
                    "split it in two insertions to add steps at two places",
                ));
            }
            (None, None) => {
                ok = false;
                problems.push(shape(
                    "an insertion needs exactly one of `before` and `after`",
                    first_key,
                    "name the step to insert at: `- before: ID` or `- after: ID`",
                ));
            }
        }
        match fields.get("steps") {
            Some((_, n)) if matches!(n.tree, Tree::Seq(_)) => {}
            Some((_, n)) => {
                ok = false;
                problems.push(shape(
                    "`steps` of an insertion is a list of steps",
                    n.loc,
                    "start each step with `- `, as in a stage",
                ));
            }
            None => {
                ok = false;
                problems.push(shape(
                    "this insertion has no `steps`",
                    first_key,
                    "list the steps to add under `steps:`",
                ));
            }
        }
        if ok {
            out.push(ins);
        }
    }
    out
}

fn unknown_id(id: &str, loc: Loc, what: &str, known: &[String]) -> Problem {
    let p = Problem::new(
        "unknown-step-id",
        format!("`{what}` names step `{id}`, which the base recipe does not have"),
        Some(loc),
    );
    match crate::recipe::schema_check::did_you_mean(id, known.iter().map(String::as_str)) {
        Some(s) => p.with_help(format!("did you mean `{s}`?")),
        None => p.with_help("step ids are listed by `executor render --recipe BASE`"),
    }
}

/// Every step id of the base, for suggestions; taken before the layer changes anything.
fn all_ids(map: &IndexMap<String, (Loc, Node)>) -> Vec<String> {
    map.iter()
        .filter(|(k, _)| STAGES.contains(&k.as_str()))
        .flat_map(|(_, (_, n))| seq(n))
        .filter_map(|s| step_id(s).map(String::from))
        .collect()
}

fn seq(node: &Node) -> &[Node] {
    match &node.tree {
        Tree::Seq(items) => items,
        _ => &[],
    }
}

fn step_id(step: &Node) -> Option<&str> {
    step.as_map()?.get("id")?.1.as_str()
}

fn stage_steps(map: &mut IndexMap<String, (Loc, Node)>) -> impl Iterator<Item = &mut Vec<Node>> {
    map.iter_mut().filter_map(|(k, (_, n))| match &mut n.tree {
        Tree::Seq(items) if STAGES.contains(&k.as_str()) => Some(items),
        _ => None,
    })
}

fn find_step_mut<'a>(map: &'a mut IndexMap<String, (Loc, Node)>, id: &str) -> Option<&'a mut Node> {
    stage_steps(map)
        .flat_map(|steps| steps.iter_mut())
        .find(|s| step_id(s) == Some(id))
}

fn take_step(map: &mut IndexMap<String, (Loc, Node)>, id: &str) -> Option<Node> {
    for steps in stage_steps(map) {
        if let Some(i) = steps.iter().position(|s| step_id(s) == Some(id)) {
            return Some(steps.remove(i));
        }
    }
    None
}

/// Adds the steps of one insertion, whose shape `insert_shape` has checked.
fn insert_steps(
    map: &mut IndexMap<String, (Loc, Node)>,
    ins: &Node,
    problems: &mut Vec<Problem>,
    known: &[String],
) {
    let Some(fields) = ins.as_map() else { return };
    let (anchor, offset) = match (fields.get("before"), fields.get("after")) {
        (Some((_, n)), None) => (n, 0),
        (None, Some((_, n))) => (n, 1),
        _ => return,
    };
    let Some(id) = anchor.as_str() else { return };
    let new_steps = fields
        .get("steps")
        .map(|(_, n)| seq(n).to_vec())
        .unwrap_or_default();
    for steps in stage_steps(map) {
        if let Some(i) = steps.iter().position(|s| step_id(s) == Some(id)) {
            let at = i + offset;
            steps.splice(at..at, new_steps);
            return;
        }
    }
    problems.push(unknown_id(id, anchor.loc, "insert", known));
}

/// Deep merge: mappings key by key, anything else replaces; `null` deletes.
fn merge(base: &mut Node, change: &Node) {
    match (&mut base.tree, &change.tree) {
        (Tree::Map(b), Tree::Map(c)) => {
            for (k, (kl, v)) in c {
                if matches!(v.tree, Tree::Scalar(Json::Null)) {
                    b.shift_remove(k);
                } else if let Some((_, existing)) = b.get_mut(k) {
                    merge(existing, v);
                } else {
                    b.insert(k.clone(), (*kl, v.clone()));
                }
            }
        }
        _ => *base = change.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::spanned_yaml::{SpanMap, parse};

    fn layered(base: &str, layer: &str) -> (Json, Vec<Problem>) {
        let mut b = parse(0, base).unwrap();
        let l = parse(1, layer).unwrap();
        let mut problems = vec![];
        apply(&mut b, &l, &mut problems);
        (b.to_json(&mut SpanMap::default()), problems)
    }

    const BASE: &str = "version: 1\nvars: {flavor: small, image: deb}\nprepare:\n  - {id: a, kind: log, message: A}\n  - {id: b, kind: log, message: B}\ncleanup:\n  - {id: c, kind: log, message: C}\n";

    #[test]
    fn vars_merge_and_keep_order() {
        let (j, p) = layered(BASE, "vars: {flavor: large, extra: x}\n");
        assert!(p.is_empty());
        let keys: Vec<_> = j["vars"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["flavor", "image", "extra"]);
        assert_eq!(j["vars"]["flavor"], "large");
    }

    #[test]
    fn patch_remove_insert() {
        let (j, p) = layered(
            BASE,
            "patch: {b: {message: B2, level: warning}}\nremove: [a]\ninsert:\n  - {before: b, steps: [{id: x, kind: log, message: X}]}\n  - {after: c, steps: [{id: y, kind: log, message: Y}]}\n",
        );
        assert!(p.is_empty(), "{p:?}");
        let ids: Vec<_> = j["prepare"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].clone())
            .collect();
        assert_eq!(ids, ["x", "b"]);
        assert_eq!(j["prepare"][1]["message"], "B2");
        assert_eq!(j["prepare"][1]["level"], "warning");
        assert_eq!(j["cleanup"][1]["id"], "y");
        assert!(j.get("patch").is_none() && j.get("insert").is_none());
    }

    #[test]
    fn null_deletes_and_a_listed_stage_replaces() {
        let (j, _) = layered(BASE, "patch: {a: {message: null}}\ncleanup: []\n");
        assert!(j["prepare"][0].get("message").is_none());
        assert_eq!(j["cleanup"], serde_json::json!([]));
    }

    #[test]
    fn unknown_ids_point_at_the_override() {
        let layer = "patch:\n  nope: {message: x}\nremove: [gone]\ninsert:\n  - {after: missing, steps: []}\n";
        let (_, p) = layered(BASE, layer);
        assert_eq!(p.len(), 3);
        assert!(
            p.iter()
                .all(|p| p.code == "unknown-step-id" && p.loc.unwrap().file == 1)
        );
        let l = p
            .iter()
            .find(|p| p.message.contains("patch"))
            .unwrap()
            .loc
            .unwrap();
        assert_eq!(&layer[l.start..l.end], "nope");
    }
}
