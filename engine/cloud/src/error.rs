//! The one error type of the OpenStack back end.
//!
//! Every message names the operation, the resource, the HTTP status and the request id when
//! there was one, so that an operator can find the call in the cloud's logs. Messages are built
//! only from response bodies and our own identifiers, never from credentials.

use std::fmt;

/// What kind of failure this is: the engine's one classification, which recipes' retry rules
/// key on. The cloud uses the API-related classes of it.
pub type CloudErrorKind = executor_foundation::ErrorClass;

/// A failed cloud operation.
#[derive(Debug, Clone, thiserror::Error)]
pub struct CloudError {
    /// The failure class.
    pub kind: CloudErrorKind,
    /// What we tried, e.g. "create server".
    pub operation: String,
    /// What we tried it on, e.g. `server "ci-1"`.
    pub resource: String,
    /// The HTTP status, when an answer arrived.
    pub status: Option<u16>,
    /// `x-openstack-request-id` or `x-compute-request-id` of the failing answer.
    pub request_id: Option<String>,
    /// The cloud's own explanation (or ours).
    pub message: String,
}

impl CloudError {
    /// An error that did not come from an HTTP answer.
    pub fn new(
        kind: CloudErrorKind,
        operation: impl Into<String>,
        resource: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        CloudError {
            kind,
            operation: operation.into(),
            resource: resource.into(),
            status: None,
            request_id: None,
            message: message.into(),
        }
    }

    /// An invalid configuration or argument.
    pub fn invalid(
        operation: impl Into<String>,
        resource: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(CloudErrorKind::Invalid, operation, resource, message)
    }

    /// Classifies an HTTP error answer. `body_message` is the cloud's explanation.
    pub fn from_status(
        status: u16,
        operation: impl Into<String>,
        resource: impl Into<String>,
        request_id: Option<String>,
        body_message: String,
    ) -> Self {
        let kind = classify_status(status, &body_message);
        CloudError {
            kind,
            operation: operation.into(),
            resource: resource.into(),
            status: Some(status),
            request_id,
            message: body_message,
        }
    }
}

/// Maps an HTTP status (and, for quota, the body) to a failure class.
pub fn classify_status(status: u16, body_message: &str) -> CloudErrorKind {
    // Nova reports exhausted quota as 403, Neutron as 409, Cinder as 413; all say "quota".
    let mentions_quota = body_message.to_ascii_lowercase().contains("quota");
    match status {
        401 => CloudErrorKind::Auth,
        403 | 409 | 413 if mentions_quota => CloudErrorKind::Quota,
        403 => CloudErrorKind::Auth,
        404 | 410 => CloudErrorKind::NotFound,
        408 => CloudErrorKind::Timeout,
        409 => CloudErrorKind::Conflict,
        429 => CloudErrorKind::RateLimited,
        500..=599 => CloudErrorKind::Transient,
        _ => CloudErrorKind::Invalid,
    }
}

impl fmt::Display for CloudError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} failed", self.operation, self.resource)?;
        match self.status {
            Some(status) => write!(f, " (HTTP {status}")?,
            None => write!(f, " ({}", self.kind)?,
        }
        if let Some(id) = &self.request_id {
            write!(f, ", request id {id}")?;
        }
        write!(f, "): {}", self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_is_recognised_whatever_the_service() {
        assert_eq!(
            classify_status(
                403,
                "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances"
            ),
            CloudErrorKind::Quota
        );
        assert_eq!(
            classify_status(409, "Quota exceeded for resources: ['floatingip']."),
            CloudErrorKind::Quota
        );
        assert_eq!(
            classify_status(403, "Policy does not allow"),
            CloudErrorKind::Auth
        );
        assert_eq!(
            classify_status(409, "Instance is locked"),
            CloudErrorKind::Conflict
        );
        assert_eq!(classify_status(503, ""), CloudErrorKind::Transient);
        assert_eq!(classify_status(429, ""), CloudErrorKind::RateLimited);
        assert_eq!(classify_status(400, "bad"), CloudErrorKind::Invalid);
    }

    #[test]
    fn message_names_operation_resource_status_and_request_id() {
        let e = CloudError::from_status(
            403,
            "create server",
            "server \"ci-1\"",
            Some("req-123".into()),
            "Quota exceeded for instances".into(),
        );
        let text = e.to_string();
        for part in ["create server", "ci-1", "HTTP 403", "req-123", "instances"] {
            assert!(text.contains(part), "{text:?} lacks {part:?}");
        }
    }
}
