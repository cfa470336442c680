//! A large recipe that loads cleanly, in ASCII or with non-ASCII text throughout, for the load
//! benchmark and the test that holds loading to linear work (issue 14, item 8).

/// A valid recipe of about `bytes` bytes: many vars and log steps, which give the YAML parser
/// many nodes spread across the whole file (span mapping used to walk the text once per node).
pub fn big_recipe(bytes: usize, non_ascii: bool) -> String {
    let (word, mark) = if non_ascii {
        ("Grüße-Überprüfung", "😀 中文")
    } else {
        ("Gruesse-Uebrpruefg", "smile zh")
    };
    let mut vars = String::from("version: 1\ndescription: a large recipe\nvars:\n");
    let mut steps = String::from("prepare:\n");
    let mut i = 0;
    while vars.len() + steps.len() < bytes {
        vars.push_str(&format!(
            "  v{i}: \"{word} {i} {mark} {{{{ env.HOME | default('') }}}}\"\n"
        ));
        steps.push_str(&format!(
            "  - id: s{i}\n    kind: log\n    message: \"{word} {mark} {{{{ vars.v{i} }}}}\"\n"
        ));
        i += 1;
    }
    vars + &steps
}
