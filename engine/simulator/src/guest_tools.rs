//! Commands every cloud image has, which the host running the simulator may lack.
//!
//! A simulated server's commands run on this host, so a recipe that waits for
//! `cloud-init status --wait` (as real images need) would fail here for want of the command,
//! not for anything the recipe did. The simulated guest answers it as a finished boot does:
//! by the time its sshd accepts a login, the simulated boot has completed.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const CLOUD_INIT: &str = r#"#!/bin/sh
# The simulated guest's cloud-init: its boot is over once sshd answers.
case "$1" in
  status)
    echo "status: done"
    exit 0
    ;;
  --version|-v)
    echo "cloud-init (simulated by executor's simulator)"
    exit 0
    ;;
  *)
    echo "cloud-init (simulated): only 'status' is answered here" >&2
    exit 1
    ;;
esac
"#;

/// Writes the guest's commands under `workdir` and returns the directory to put first in PATH.
pub(crate) fn install(workdir: &Path) -> io::Result<PathBuf> {
    let bin = workdir.join(".simulated-guest").join("bin");
    std::fs::create_dir_all(&bin)?;
    let path = bin.join("cloud-init");
    if !path.exists() {
        std::fs::write(&path, CLOUD_INIT)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(bin)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cloud_init_status_answers_done() {
        let dir = tempfile::tempdir().unwrap();
        let bin = super::install(dir.path()).unwrap();
        let out = std::process::Command::new(bin.join("cloud-init"))
            .args(["status", "--wait"])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "status: done\n");
    }
}
