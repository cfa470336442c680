//! Whether a pool daemon is alive, told by a lock it holds on a file in its state directory.
//!
//! The kernel drops the lock when the daemon dies, however it dies, so a SIGKILLed daemon never
//! looks alive. `executor gc` asks before it reaps idle pool VMs; a second daemon on the same
//! state directory is refused.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

const LOCK_FILE: &str = "daemon.lock";

/// The running daemon's hold on its state directory; released on drop (or death).
pub struct DaemonLock {
    _file: File,
}

impl DaemonLock {
    /// Takes the lock, or says that another daemon holds it.
    pub fn acquire(state_dir: &Path) -> std::io::Result<DaemonLock> {
        let file = open(state_dir)?;
        match file.try_lock() {
            Ok(()) => Ok(DaemonLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("another pool daemon uses {}", state_dir.display()),
            )),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }
}

/// Whether a daemon holds `state_dir` now. A directory without the lock file has none.
pub fn daemon_alive(state_dir: &Path) -> bool {
    let Ok(file) = File::open(state_dir.join(LOCK_FILE)) else {
        return false;
    };
    matches!(file.try_lock_shared(), Err(TryLockError::WouldBlock))
}

fn open(state_dir: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(state_dir.join(LOCK_FILE))
}
