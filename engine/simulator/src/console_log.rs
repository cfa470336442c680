//! The console log Nova returns from `os-getConsoleOutput`: a boot transcript that, once the
//! guest is up, prints the SSH host key fingerprints and keys exactly the way cloud-init's
//! `cc_keys_to_console` does, so recipes can pin the host key from it.

use russh::keys::PrivateKey;
use russh::keys::ssh_key::HashAlg;

/// The full console text. `booted` is false while the guest still boots (SSH not up yet):
/// then the transcript stops before the key blocks, as a real console does.
pub fn console_text(
    hostname: &str,
    host_key: &PrivateKey,
    booted: bool,
    uptime_secs: f64,
) -> String {
    let mut out = String::new();
    let lines = [
        "[    0.000000] Linux version 6.8.0-sim (buildd@sim) #1 SMP PREEMPT_DYNAMIC",
        "[    0.000000] Command line: BOOT_IMAGE=/vmlinuz root=LABEL=cloudimg-rootfs ro console=ttyS0",
        "[    1.204518] EXT4-fs (vda1): mounted filesystem with ordered data mode.",
        "[    2.917342] systemd[1]: Detected virtualization kvm.",
        "[    4.108812] cloud-init[512]: Cloud-init v. 24.4 running 'init-local'. Up 4.05 seconds.",
        "[    5.776030] cloud-init[618]: Cloud-init v. 24.4 running 'init'. Up 5.70 seconds.",
        "[    5.801193] cloud-init[618]: ci-info: ++++++++++++++++++++++++Net device info++++++++++++++++++++++++",
        "[    6.422870] cloud-init[618]: Generating public/private ed25519 key pair.",
    ];
    for l in lines {
        out.push_str(l);
        out.push('\n');
    }
    if !booted {
        return out;
    }
    let public = host_key.public_key();
    let fp = public.fingerprint(HashAlg::Sha256);
    let openssh = public.to_openssh().unwrap_or_default();
    let openssh = openssh
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    out.push_str(&format!(
        "[    7.009311] cloud-init[698]: Cloud-init v. 24.4 running 'modules:config'. Up 7.00 seconds.\n\
         ci-info: no authorized SSH keys fingerprints found for user ubuntu.\n\
         <14>Nov 28 08:00:00 cloud-init: #############################################################\n\
         <14>Nov 28 08:00:00 cloud-init: -----BEGIN SSH HOST KEY FINGERPRINTS-----\n\
         <14>Nov 28 08:00:00 cloud-init: 256 {fp} root@{hostname} (ED25519)\n\
         <14>Nov 28 08:00:00 cloud-init: -----END SSH HOST KEY FINGERPRINTS-----\n\
         <14>Nov 28 08:00:00 cloud-init: #############################################################\n\
         -----BEGIN SSH HOST KEY KEYS-----\n\
         {openssh} root@{hostname}\n\
         -----END SSH HOST KEY KEYS-----\n\
         [    8.112000] cloud-init[731]: Cloud-init v. 24.4 finished at Sat, 28 Nov 2026 08:00:00 +0000. Datasource DataSourceOpenStackLocal.  Up {uptime_secs:.2} seconds\n"
    ));
    out
}

/// The last `length` lines (Nova's `length` parameter); `None` or negative: everything.
pub fn tail(text: &str, length: Option<i64>) -> String {
    match length {
        Some(n) if n >= 0 => {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(n as usize);
            let mut s = lines[start..].join("\n");
            if !s.is_empty() {
                s.push('\n');
            }
            s
        }
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::ssh_key::Algorithm;

    #[test]
    fn prints_fingerprint_block_only_once_booted() {
        let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
        let fp = key.public_key().fingerprint(HashAlg::Sha256).to_string();
        let booting = console_text("ci-1", &key, false, 1.0);
        assert!(!booting.contains(&fp));
        let booted = console_text("ci-1", &key, true, 9.0);
        assert!(booted.contains(&format!("256 {fp} root@ci-1 (ED25519)")));
        assert!(booted.contains("-----BEGIN SSH HOST KEY KEYS-----\nssh-ed25519 AAAA"));
        assert_eq!(tail("a\nb\nc\n", Some(2)), "b\nc\n");
        assert_eq!(tail("a\nb\n", None), "a\nb\n");
    }
}
