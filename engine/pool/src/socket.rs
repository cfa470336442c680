//! Where the pool socket lives and how it is made private to the runner's user.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// `$XDG_RUNTIME_DIR/executor/pool.sock` when the user has a runtime dir (systemd gives every
/// logged-in user and service one), else `/tmp/executor-<uid>/pool.sock`.
pub fn default_socket_path() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("executor").join("pool.sock"),
        // SAFETY: getuid cannot fail and touches no memory of ours.
        None => {
            PathBuf::from(format!("/tmp/executor-{}", unsafe { libc::getuid() })).join("pool.sock")
        }
    }
}

/// Binds `path` so that only this user can connect: the directory is made with mode 0700, or,
/// when it exists, must already be this user's alone (it is never chmod-ed: a socket set in
/// /tmp must not close /tmp). The socket gets mode 0600. A stale socket of a dead daemon is
/// replaced; a live one is refused, so two daemons never share a socket.
pub async fn bind_private(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::MetadataExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let meta = std::fs::metadata(dir)?;
    // SAFETY: getuid cannot fail.
    let me = unsafe { libc::getuid() };
    if meta.uid() != me || meta.mode() & 0o077 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} must be a directory of this user's alone (mode 0700) to hold the pool socket",
                dir.display()
            ),
        ));
    }
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("another pool daemon answers on {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}
