//! Stopping a remote script and everything it started.
//!
//! Closing the channel does not do it: sshd only closes the script's pipes, and a job that is
//! busy (or ignores SIGPIPE/SIGHUP) keeps running on the VM. So the script runs as the leader of
//! its own process group, and a second channel signals that whole group.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::connect::SshSession;
use super::errors::SshError;

/// Sends SIGTERM to process group `pgid`, waits up to `grace` for it to vanish, then SIGKILLs
/// whatever is left. Returns once the remote helper finished.
pub async fn kill_process_group(
    session: &SshSession,
    pgid: u32,
    grace: Duration,
) -> Result<(), SshError> {
    if pgid <= 1 {
        return Err(SshError::Invalid(format!(
            "refusing to signal process group {pgid}"
        )));
    }
    let polls = (grace.as_millis() / 100).max(1);
    // POSIX `kill -s SIG -- -PGID` signals the group; `kill -0` tells whether any member is left.
    // The helper touches no pipe of ours, so it finishes even if this process dies meanwhile
    // (gitlab-runner follows SIGTERM with SIGKILL).
    let command = format!(
        "exec </dev/null >/dev/null 2>&1; \
         kill -s TERM -- -{pgid} || exit 0; i=0; \
         while [ $i -lt {polls} ]; do kill -0 -- -{pgid} || exit 0; \
         sleep 0.1; i=$((i+1)); done; kill -s KILL -- -{pgid}; exit 0"
    );
    let never = CancellationToken::new();
    let output = session.run_command(&command, None, 4096, &never).await?;
    if output.exit.success() {
        Ok(())
    } else {
        Err(SshError::RemoteFailed {
            addr: session.target().addr(),
            what: format!("stopping process group {pgid}"),
            outcome: output.exit.to_string(),
            stderr_tail: output.stderr_tail(512),
        })
    }
}
