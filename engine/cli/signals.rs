//! The signals that stop a command: gitlab-runner sends SIGTERM to a stage's whole process
//! group on cancel or timeout, systemd and container runtimes stop a service with SIGTERM, and
//! Ctrl-C sends SIGINT.

use tokio_util::sync::CancellationToken;

/// Cancels `token` on SIGTERM or SIGINT. Must run inside a tokio runtime.
pub fn cancel_on_signals(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    for kind in [SignalKind::terminate(), SignalKind::interrupt()] {
        let token = token.clone();
        if let Ok(mut s) = signal(kind) {
            tokio::spawn(async move {
                if s.recv().await.is_some() {
                    token.cancel();
                }
            });
        }
    }
}
