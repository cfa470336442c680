//! Host-key fingerprints printed by cloud-init on the serial console.
//!
//! cloud-init writes a block such as
//! `-----BEGIN SSH HOST KEY FINGERPRINTS-----` / `256 SHA256:... root@vm (ED25519)` / `-----END ...`.
//! Console logs interleave kernel messages and sometimes prefix lines (`ec2: `, `ci-info: `), so
//! only the `SHA256:` token and the trailing `(TYPE)` of each line are used.

const BEGIN: &str = "-----BEGIN SSH HOST KEY FINGERPRINTS-----";
const END: &str = "-----END SSH HOST KEY FINGERPRINTS-----";

/// One fingerprint line from the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleFingerprint {
    /// `SHA256:<base64 without padding>`.
    pub sha256: String,
    /// The key type as cloud-init names it, e.g. `ED25519`, `ECDSA`, `RSA` (empty if absent).
    pub key_type: String,
}

/// Fingerprints from the LAST complete block in `console` (a reboot prints a new block).
/// Empty when the block is not there yet.
pub fn parse_console_fingerprints(console: &str) -> Vec<ConsoleFingerprint> {
    let mut last_complete = Vec::new();
    let mut current: Option<Vec<ConsoleFingerprint>> = None;
    for line in console.lines() {
        if line.contains(BEGIN) {
            current = Some(Vec::new());
        } else if line.contains(END) {
            if let Some(block) = current.take() {
                last_complete = block;
            }
        } else if let Some(block) = current.as_mut()
            && let Some(fp) = parse_line(line)
        {
            block.push(fp);
        }
    }
    last_complete
}

fn parse_line(line: &str) -> Option<ConsoleFingerprint> {
    let token = line.split_whitespace().find(|t| t.starts_with("SHA256:"))?;
    let sha256 = normalize_sha256(token)?;
    let key_type = line
        .trim_end()
        .strip_suffix(')')
        .and_then(|rest| rest.rsplit_once('('))
        .map(|(_, t)| t.trim().to_owned())
        .unwrap_or_default();
    Some(ConsoleFingerprint { sha256, key_type })
}

/// Accepts `SHA256:abc`, `sha256:abc` or a bare `abc` (with or without `=` padding) and returns
/// the canonical `SHA256:abc`. `None` when the text cannot be a SHA-256 fingerprint.
pub fn normalize_sha256(text: &str) -> Option<String> {
    let text = text.trim();
    let body = match text.split_once(':') {
        Some((prefix, body)) if prefix.eq_ignore_ascii_case("sha256") => body,
        Some(_) => return None,
        None => text,
    };
    let body = body.trim_end_matches('=');
    // 32 bytes in unpadded base64 is 43 characters.
    let valid = body.len() == 43
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    valid.then(|| format!("SHA256:{body}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP1: &str = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";
    const FP2: &str = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s";

    #[test]
    fn parses_noisy_console_block_and_keeps_the_last_one() {
        let log = format!(
            "[    1.0] kernel boot\n{BEGIN}\n256 {FP2} root@old (ED25519)\n{END}\n\
             [   30.2] reboot: Restarting system\n\
             ec2: {BEGIN}\nec2: 256 {FP1} root@vm (ECDSA)\n[   40.1] random: crng init done\n\
             ec2: 256 {FP2} root@vm (ED25519)\nec2: 3072 SHA256:bad root@vm (RSA)\nec2: {END}\n"
        );
        let fps = parse_console_fingerprints(&log);
        assert_eq!(
            fps,
            vec![
                ConsoleFingerprint {
                    sha256: FP1.into(),
                    key_type: "ECDSA".into()
                },
                ConsoleFingerprint {
                    sha256: FP2.into(),
                    key_type: "ED25519".into()
                },
            ]
        );
    }

    #[test]
    fn an_unterminated_block_is_not_trusted() {
        let log = format!("{BEGIN}\n256 {FP1} root@vm (ED25519)\n");
        assert!(parse_console_fingerprints(&log).is_empty());
    }

    #[test]
    fn normalizes_fingerprint_spellings() {
        let bare = FP1.trim_start_matches("SHA256:");
        assert_eq!(normalize_sha256(bare).as_deref(), Some(FP1));
        assert_eq!(
            normalize_sha256(&format!("sha256:{bare}=")).as_deref(),
            Some(FP1)
        );
        assert_eq!(normalize_sha256("MD5:aa:bb"), None);
        assert_eq!(normalize_sha256("SHA256:short"), None);
    }
}
