//! A cloud whose certificate we do not trust. The TLS library reports it as one more failed
//! connection, which would be retried as if the network had hiccupped and then reported as
//! "connection failed". It is configuration: no retry helps, and the operator needs to hear
//! which setting gives the driver the CA.

use std::error::Error;

/// What to do about it, appended to the cause.
pub(crate) const TRUST_HINT: &str = "the cloud's TLS certificate is not trusted: give the CA \
    that signs it as `cacert` in clouds.yaml, as OS_CACERT, or as the recipe's `cloud.cacert` \
    (`verify: false` skips the check, on a test cloud only)";

/// Whether `error`, or anything in its chain, is a certificate that failed verification.
pub(crate) fn is_untrusted_certificate(error: &(dyn Error + 'static)) -> bool {
    if certificate_problem(error) {
        return true;
    }
    // An `io::Error` shows its inner error's text but skips it as a source, and the TLS
    // connector nests one inside another.
    if let Some(inner) = error
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        && is_untrusted_certificate(inner)
    {
        return true;
    }
    error.source().is_some_and(is_untrusted_certificate)
}

fn certificate_problem(e: &(dyn Error + 'static)) -> bool {
    matches!(
        e.downcast_ref::<rustls::Error>(),
        Some(
            rustls::Error::InvalidCertificate(_)
                | rustls::Error::NoCertificatesPresented
                | rustls::Error::UnsupportedNameType
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_error_is_found_inside_an_io_error() {
        let inner = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, inner);
        // Wrapped twice, as the HTTP client's connector hands it on.
        let outer = std::io::Error::other(io);
        assert!(is_untrusted_certificate(&outer));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!is_untrusted_certificate(&refused));
    }
}
