//! The one error type every step returns, classified so that recipes can say what to retry.

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
            Self::Other => "other",
        }
    }
}

/// A step's failure. The message is shown in the job log, so it must never hold a secret.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    pub class: ErrorClass,
    pub message: String,
    /// The job script's own exit status, for `ErrorClass::Script`.
    pub script_exit: Option<i32>,
}

impl StepError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
            script_exit: None,
        }
    }

    /// The job script exited with `code`: a build failure, not an infrastructure one.
    pub fn script(code: i32) -> Self {
        Self {
            class: ErrorClass::Script,
            message: format!("the job script exited with status {code}"),
            script_exit: Some(code),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Invalid, message)
    }

    pub fn canceled() -> Self {
        Self::new(ErrorClass::Canceled, "cancelled by SIGTERM")
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Timeout, message)
    }

    pub fn other(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Other, message)
    }

    /// Prefix the message with where it happened, keeping the class.
    pub fn context(mut self, what: impl std::fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}
