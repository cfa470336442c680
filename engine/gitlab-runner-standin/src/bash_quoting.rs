//! Bash quoting for the scripts the stand-in generates, as gitlab-runner's `helpers.ShellEscape`
//! does it: plain words stay bare, anything else becomes an ANSI-C `$'...'` string (which is why
//! the generated scripts need bash). The driver's own POSIX quoting is
//! `executor_foundation::shell_quote`; this one must match the runner's output instead.

pub(crate) fn shell_escape(s: &str) -> String {
    if s.is_empty() {
        return "''".into();
    }
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"%+,-./:=@_".contains(&b))
    {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 3);
    out.push_str("$'");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0b' => out.push_str("\\v"),
            '\x0c' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Text placed inside a double-quoted bash string.
pub(crate) fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if matches!(c, '"' | '\\' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_round_trips_through_bash() {
        let samples = [
            "plain",
            "",
            "with space",
            "it's",
            "a\\b",
            "line1\nline2",
            "\x1b[32;1m$ x\x1b[0;m",
            "ünï \"q\" $HOME `id`",
        ];
        for s in samples {
            let out = std::process::Command::new("bash")
                .arg("-c")
                .arg(format!("printf '%s' {}", shell_escape(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), s, "escape of {s:?}");
            let out = std::process::Command::new("bash")
                .arg("-c")
                .arg(format!("printf '%s' {}", double_quoted(s)))
                .output()
                .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                s,
                "double quote of {s:?}"
            );
        }
    }
}
