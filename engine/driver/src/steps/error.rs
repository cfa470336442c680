//! The one error type every step returns, with the back ends' errors mapped onto its classes.

use executor_cloud::CloudError;
use executor_foundation::ErrorClass;
use executor_ssh::SshError;

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

impl From<SshError> for StepError {
    fn from(e: SshError) -> Self {
        let class = match &e {
            SshError::Connect { .. } => ErrorClass::SshConnect,
            SshError::Timeout { .. } | SshError::ProbeTimeout { .. } => ErrorClass::Timeout,
            SshError::Auth { .. } => ErrorClass::SshAuth,
            SshError::HostKeyMismatch { .. } => ErrorClass::HostKey,
            SshError::Key { .. } | SshError::Invalid(_) => ErrorClass::Invalid,
            SshError::Canceled { .. } => ErrorClass::Canceled,
            SshError::ConnectionLost { .. }
            | SshError::NoExitStatus { .. }
            | SshError::Channel { .. }
            | SshError::LocalIo { .. }
            | SshError::RemoteFailed { .. } => ErrorClass::Other,
        };
        StepError::new(class, e.to_string())
    }
}

impl From<CloudError> for StepError {
    fn from(e: CloudError) -> StepError {
        StepError::new(e.kind, e.to_string())
    }
}
