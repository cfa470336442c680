//! Quoting for POSIX shells, shared by the `shell_quote` template filter and the SSH helper
//! commands we run on servers.

/// POSIX single-quote quoting: safe for any byte string in sh and bash.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn quotes_what_needs_it_including_single_quotes() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's $HOME"), "'it'\\''s $HOME'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("/tmp/x-1.txt"), "/tmp/x-1.txt");
    }
}
