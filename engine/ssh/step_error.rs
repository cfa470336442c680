//! How SSH failures become step errors (the classes recipes can retry on).

use crate::error::{ErrorClass, StepError};

use super::errors::SshError;

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
