//! The console log: SSH host key fingerprints printed by cloud-init, and waiting for a line.

use std::time::Duration;

use regex::Regex;
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backend::Cloud;
use super::error::{CloudError, CloudErrorKind};

/// One fingerprint line of cloud-init's block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostKeyFingerprint {
    /// Key type as cloud-init prints it (ECDSA, ED25519, RSA).
    pub key_type: String,
    /// The fingerprint, e.g. `SHA256:...` (or colon-separated MD5 on old images).
    pub fingerprint: String,
}

/// What the console says about the server's SSH host keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostKeys {
    /// From the `SSH HOST KEY FINGERPRINTS` block.
    pub fingerprints: Vec<HostKeyFingerprint>,
    /// Public keys (`type base64`) from the `SSH HOST KEY KEYS` block.
    pub public_keys: Vec<String>,
}

fn block<'a>(console: &'a str, name: &str) -> Vec<&'a str> {
    let begin = format!("-----BEGIN {name}-----");
    let end = format!("-----END {name}-----");
    // The last complete block wins: a rebooted server prints it again, and that one is current.
    let lines: Vec<&str> = console.lines().collect();
    let mut found = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in lines {
        if line.contains(&begin) {
            current = Some(Vec::new());
        } else if line.contains(&end) {
            if let Some(done) = current.take() {
                found = done;
            }
        } else if let Some(cur) = current.as_mut() {
            cur.push(line);
        }
    }
    found
}

/// Reads the host key blocks cloud-init writes to the console. Lines may carry prefixes
/// (`ec2: `, `ci-info: `, kernel timestamps); only the recognisable tokens are taken.
pub fn parse_host_keys(console: &str) -> HostKeys {
    let mut keys = HostKeys::default();
    for line in block(console, "SSH HOST KEY FINGERPRINTS") {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let Some(fp) = tokens
            .iter()
            .find(|t| t.starts_with("SHA256:") || (t.len() == 47 && t.matches(':').count() == 15))
        else {
            continue;
        };
        let key_type = tokens
            .last()
            .filter(|t| t.starts_with('(') && t.ends_with(')'))
            .map(|t| t.trim_matches(|c| c == '(' || c == ')').to_string())
            .unwrap_or_default();
        keys.fingerprints.push(HostKeyFingerprint {
            key_type,
            fingerprint: fp.to_string(),
        });
    }
    for line in block(console, "SSH HOST KEY KEYS") {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        if let Some(pos) = tokens
            .iter()
            .position(|t| t.starts_with("ssh-") || t.starts_with("ecdsa-sha2-"))
            && let Some(material) = tokens.get(pos + 1)
        {
            keys.public_keys
                .push(format!("{} {}", tokens[pos], material));
        }
    }
    keys
}

/// Polls the console log until a line matches `pattern`; returns the whole log then.
pub async fn wait_for_console_line(
    cloud: &dyn Cloud,
    server_id: &str,
    pattern: &Regex,
    timeout: Duration,
    interval: Duration,
    cancel: &CancellationToken,
) -> Result<String, CloudError> {
    let deadline = Instant::now() + timeout;
    loop {
        let log = cloud.console_output(server_id, None).await?;
        if log.lines().any(|l| pattern.is_match(l)) {
            return Ok(log);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(CloudError::new(
                CloudErrorKind::Timeout,
                "wait for console line",
                format!("server {server_id}"),
                format!(
                    "no line matching {:?} after {}",
                    pattern.as_str(),
                    humantime::format_duration(Duration::from_secs(timeout.as_secs()))
                ),
            ));
        }
        tokio::select! {
            _ = cancel.cancelled() => {
                return Err(CloudError::new(CloudErrorKind::Canceled, "wait for console line", format!("server {server_id}"), "canceled"));
            }
            _ = tokio::time::sleep(interval.min(deadline - now)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cloud_init_blocks_with_prefixes() {
        let console = "\
[   10.1] cloud-init[800]: Cloud-init v. 24.1 running
ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----
ec2: 256 SHA256:AbCdEf0123 root@ci-1 (ECDSA)
ec2: 256 SHA256:ZyXw987 root@ci-1 (ED25519)
ec2: -----END SSH HOST KEY FINGERPRINTS-----
-----BEGIN SSH HOST KEY KEYS-----
ecdsa-sha2-nistp256 AAAAE2VjZHNh root@ci-1
ssh-ed25519 AAAAC3NzaC1 root@ci-1
-----END SSH HOST KEY KEYS-----
Cloud-init v. 24.1 finished at Sat, 28 Nov 2026
";
        let keys = parse_host_keys(console);
        assert_eq!(
            keys.fingerprints,
            vec![
                HostKeyFingerprint {
                    key_type: "ECDSA".into(),
                    fingerprint: "SHA256:AbCdEf0123".into()
                },
                HostKeyFingerprint {
                    key_type: "ED25519".into(),
                    fingerprint: "SHA256:ZyXw987".into()
                },
            ]
        );
        assert_eq!(
            keys.public_keys,
            vec![
                "ecdsa-sha2-nistp256 AAAAE2VjZHNh",
                "ssh-ed25519 AAAAC3NzaC1"
            ]
        );
    }

    #[test]
    fn an_unfinished_block_yields_nothing() {
        let keys =
            parse_host_keys("-----BEGIN SSH HOST KEY FINGERPRINTS-----\n256 SHA256:x (ED25519)\n");
        assert!(keys.fingerprints.is_empty());
    }
}
