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
pub fn apply(base: &mut Node, layer: &Node, problems: &mut Vec<Problem>) {
    let (Tree::Map(base_map), Some(layer_map)) = (&mut base.tree, layer.as_map()) else {
        problems.push(Problem::new(
            "not-a-mapping",
            "a recipe must be a YAML mapping",
            Some(layer.loc),
        ));
        return;
    };
    for stage in STAGES {
        if let Some((kl, steps)) = layer_map.get(stage) {
            base_map.insert(stage.to_string(), (*kl, steps.clone()));
        }
    }
    if let Some((_, remove)) = layer_map.get("remove") {
        for item in seq(remove) {
            match item.as_str() {
                Some(id) => {
                    if take_step(base_map, id).is_none() {
                        problems.push(unknown_id(id, item.loc, "remove"));
                    }
                }
                None => problems.push(Problem::new(
                    "invalid-type",
                    "`remove` lists step ids (strings)",
                    Some(item.loc),
                )),
            }
        }
    }
    if let Some((_, patch)) = layer_map.get("patch")
        && let Some(patches) = patch.as_map()
    {
        for (id, (key_loc, change)) in patches {
            match find_step_mut(base_map, id) {
                Some(step) => merge(step, change),
                None => problems.push(unknown_id(id, *key_loc, "patch")),
            }
        }
    }
    if let Some((_, insert)) = layer_map.get("insert") {
        for ins in seq(insert) {
            insert_steps(base_map, ins, problems);
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

fn unknown_id(id: &str, loc: Loc, what: &str) -> Problem {
    Problem::new(
        "unknown-step-id",
        format!("`{what}` names step `{id}`, which the base recipe does not have"),
        Some(loc),
    )
    .with_help("step ids are listed by `executor render --recipe BASE`")
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

fn insert_steps(map: &mut IndexMap<String, (Loc, Node)>, ins: &Node, problems: &mut Vec<Problem>) {
    let Some(fields) = ins.as_map() else { return };
    let anchor = match (fields.get("before"), fields.get("after")) {
        (Some((_, n)), None) => n.as_str().map(|id| (id, n.loc, 0)),
        (None, Some((_, n))) => n.as_str().map(|id| (id, n.loc, 1)),
        _ => {
            problems.push(Problem::new(
                "invalid-insert",
                "an insertion needs exactly one of `before` and `after`",
                Some(ins.loc),
            ));
            return;
        }
    };
    let Some((id, loc, offset)) = anchor else {
        return;
    };
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
    problems.push(unknown_id(id, loc, "insert"));
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
