//! Nova's reason for an ERROR server, reduced to a few classes an operator can alert on.
//!
//! Nova records the exception message of a failed build as the server's `fault`. Its text names
//! the instance and the host, so it cannot be a metrics label; the class can. The phrases below
//! are the starts of Nova's own exception messages, which have been stable across releases.

/// The class of a fault message: `no_valid_host`, `retries_exceeded`, `build_aborted`,
/// `rescheduled`, `image`, `network`, `volume`, `timeout`, `none` (Nova said nothing) or `other`.
pub fn fault_class(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    let has = |needle: &str| m.contains(needle);
    if m.trim().is_empty() || has("gave no fault") {
        "none"
    } else if has("re-scheduled") {
        "rescheduled"
    } else if has("no valid host") || has("insufficient compute resources") {
        "no_valid_host"
    } else if has("exceeded maximum number of retries") || has("max scheduling attempts") {
        "retries_exceeded"
    } else if has("image") {
        "image"
    } else if has("network") || has("port") || has("virtual interface") || has("vif") {
        "network"
    } else if has("volume") || has("block device") {
        "volume"
    } else if has("aborted") {
        "build_aborted"
    } else if has("timed out") || has("timeout") {
        "timeout"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::fault_class;

    #[test]
    fn nova_messages_fall_into_their_class() {
        for (message, class) in [
            (
                "No valid host was found. There are not enough hosts available.",
                "no_valid_host",
            ),
            (
                "Exceeded maximum number of retries. Exceeded max scheduling attempts 3 for instance 5b1c. Last exception: Unexpected vif_type=binding_failed",
                "retries_exceeded",
            ),
            (
                "Build of instance 5b1c was re-scheduled: Insufficient compute resources",
                "rescheduled",
            ),
            (
                "Build of instance 5b1c aborted: Image 7f2e is unacceptable: checksum mismatch",
                "image",
            ),
            (
                "Build of instance 5b1c aborted: Failed to allocate the network(s), not rescheduling.",
                "network",
            ),
            (
                "Build of instance 5b1c aborted: Volume 9a0d did not finish being created even after we waited 187 seconds",
                "volume",
            ),
            ("Build of instance 5b1c aborted: Unknown", "build_aborted"),
            ("Nova gave no fault message", "none"),
            ("Unexpected error while running command.", "other"),
        ] {
            assert_eq!(fault_class(message), class, "{message}");
        }
    }
}
