//! Typed SSH failures. The class decides what a caller may retry and which exit code a stage gets.

use std::time::Duration;

/// Every way the SSH back end can fail. Messages name hosts, users and key *types*, never key material.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// TCP connect refused, reset, unreachable or timed out, or the server hung up before the
    /// handshake finished. A booting VM produces these; retrying is the right reaction.
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },

    /// A bounded wait ran out.
    #[error("{what} on {addr} timed out after {}", humantime::format_duration(*after))]
    Timeout {
        addr: String,
        what: &'static str,
        after: Duration,
    },

    /// The server rejected our key. Retrying only helps while the VM still installs its keys.
    #[error(
        "{addr} refused public-key authentication for user `{user}` with the {key_type} key \
         ({fingerprint}); check the user name and that the public key reached the server"
    )]
    Auth {
        addr: String,
        user: String,
        key_type: String,
        fingerprint: String,
    },

    /// The server's host key is not the one we trust. Nothing was sent to it.
    #[error(
        "host key of {addr} does not match ({mode}): expected {expected}, the server presented \
         {presented}; refusing to talk to it, nothing was sent"
    )]
    HostKeyMismatch {
        addr: String,
        mode: &'static str,
        expected: String,
        presented: String,
    },

    /// The connection broke after it was established, e.g. the server died mid-script.
    #[error("connection to {addr} lost: {reason}")]
    ConnectionLost { addr: String, reason: String },

    /// The remote command finished without telling us how: its outcome is unknown.
    #[error("the remote command on {addr} ended without an exit status")]
    NoExitStatus { addr: String },

    /// The server refused to open a channel or run a command.
    #[error("{addr} refused to {what}: {reason}")]
    Channel {
        addr: String,
        what: &'static str,
        reason: String,
    },

    /// A private key could not be read or decoded.
    #[error("cannot load the private key from {origin}: {reason}")]
    Key { origin: String, reason: String },

    /// Bad configuration: an unusable fingerprint, a pin that is no public key, ...
    #[error("invalid SSH setting: {0}")]
    Invalid(String),

    /// Reading or writing a local file or stream failed.
    #[error("{what}: {source}")]
    LocalIo {
        what: String,
        #[source]
        source: std::io::Error,
    },

    /// A helper command (readiness check, file upload) ran and failed.
    #[error("{what} on {addr} failed with {outcome}: {stderr_tail}")]
    RemoteFailed {
        addr: String,
        what: String,
        outcome: String,
        stderr_tail: String,
    },

    /// The probe gave up: SSH never accepted us within the timeout.
    #[error("SSH on {addr} was not ready after {} ({attempts} attempts); last error: {last_error}", humantime::format_duration(*after))]
    ProbeTimeout {
        addr: String,
        after: Duration,
        attempts: u32,
        last_error: String,
    },

    /// The caller's cancellation token fired.
    #[error("canceled{}", if *.remote_stopped { " (remote processes stopped)" } else { "" })]
    Canceled { remote_stopped: bool },
}

impl SshError {
    /// True when a fresh attempt may succeed without anything changing on our side.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SshError::Connect { .. } | SshError::Timeout { .. } | SshError::ProbeTimeout { .. }
        )
    }

    /// True for failures that mean the server or the link failed, not the job.
    pub fn is_system_failure(&self) -> bool {
        !matches!(self, SshError::Canceled { .. })
    }

    pub(crate) fn local_io(what: impl Into<String>, source: std::io::Error) -> Self {
        SshError::LocalIo {
            what: what.into(),
            source,
        }
    }
}
