//! Attribute filters as Neutron and Glance apply them to list queries (`?name=x&status=y`).

use serde_json::Value;

/// Query keys that steer paging or output rather than select resources.
const CONTROL: [&str; 9] = [
    "sort",
    "fields",
    "limit",
    "marker",
    "sort_key",
    "sort_dir",
    "page_reverse",
    "member_status",
    "os_hidden",
];

fn value_matches(v: &Value, want: &str) -> bool {
    match v {
        Value::String(s) => s == want,
        Value::Bool(b) => want.eq_ignore_ascii_case(if *b { "true" } else { "false" }),
        Value::Number(n) => n.to_string() == want,
        Value::Null => want.is_empty() || want == "None",
        Value::Array(a) => a.iter().any(|x| value_matches(x, want)),
        Value::Object(_) => false,
    }
}

/// True when `doc` satisfies every filter in `query`. Several values for one key are
/// alternatives, as in Neutron. Keys the document lacks do not match anything.
pub fn matches(doc: &Value, query: &[(String, String)]) -> bool {
    let mut keys: Vec<&str> = query.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter().filter(|k| !CONTROL.contains(k)).all(|k| {
        let Some(v) = doc.get(k) else { return false };
        query
            .iter()
            .filter(|(qk, _)| qk == k)
            .any(|(_, want)| value_matches(v, want))
    })
}

/// The value of the last occurrence of `key`.
pub fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_like_neutron() {
        let doc =
            json!({"name": "public", "router:external": true, "tags": ["a", "b"], "mtu": 1500});
        let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert!(matches(
            &doc,
            &q(&[("name", "public"), ("router:external", "True")])
        ));
        assert!(matches(
            &doc,
            &q(&[("name", "private"), ("name", "public")])
        ));
        assert!(!matches(&doc, &q(&[("name", "pub")])));
        assert!(matches(&doc, &q(&[("limit", "1"), ("mtu", "1500")])));
        assert!(!matches(&doc, &q(&[("absent", "x")])));
    }
}
