//! The one classification of failures, shared by the back ends and the steps, so that recipes
//! can say what to retry.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What kind of failure a step hit. Recipes name these in `retry.on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// A 5xx answer, a reset or refused connection: likely to pass on a later try.
    Transient,
    /// HTTP 429: the API asked us to slow down.
    RateLimited,
    /// A step or a wait ran out of time.
    Timeout,
    /// Credentials were refused.
    Auth,
    /// A quota is exhausted.
    Quota,
    /// A named resource does not exist.
    NotFound,
    /// The resource is in a state that forbids the operation.
    Conflict,
    /// The request or the recipe's arguments are wrong; retrying cannot help.
    Invalid,
    /// A server went to ERROR while booting.
    BootError,
    /// SSH could not connect (refused, reset, unreachable).
    SshConnect,
    /// SSH refused our key.
    SshAuth,
    /// The server's SSH host key did not match what we trust.
    HostKey,
    /// The job script itself exited non-zero.
    Script,
    /// The stage was cancelled (SIGTERM).
    Canceled,
    /// Something we may do without was not there in time: an empty warm pool, a pool daemon
    /// that is down or slow.
    Unavailable,
    /// Anything else.
    Other,
}

impl ErrorClass {
    /// Whether an idempotent API call may simply be sent again.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Transient | Self::RateLimited)
    }

    /// The snake_case name recipes use.
    pub fn as_str(self) -> &'static str {
        self.name()
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::RateLimited => "rate_limited",
            Self::Timeout => "timeout",
            Self::Auth => "auth",
            Self::Quota => "quota",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::Invalid => "invalid",
            Self::BootError => "boot_error",
            Self::SshConnect => "ssh_connect",
            Self::SshAuth => "ssh_auth",
            Self::HostKey => "host_key",
            Self::Script => "script",
            Self::Canceled => "canceled",
            Self::Unavailable => "unavailable",
            Self::Other => "other",
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
