//! The debug hold: a failed job's server kept for a while instead of deleted, so that someone
//! can log in and see why it failed.
//!
//! The hold lives in the server's metadata, not on the runner host: gc finds held servers and
//! their expiry from any host and after any restart, and a held server is still this job's
//! (ownership metadata unchanged), so every rule about what we may delete still applies.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::backend::Cloud;
use super::error::CloudError;
use super::ownership::Ownership;

/// Metadata key: until when the server is held, RFC 3339 UTC. Absent on a server that is not.
pub const META_HOLD_UNTIL: &str = "executor:hold-until";
/// Metadata key: why, e.g. `build_script failed`; for the operator listing held servers.
pub const META_HOLD_REASON: &str = "executor:hold-reason";

/// Nova refuses metadata values longer than this.
const MAX_VALUE: usize = 255;

/// Whether `metadata` marks a held server, and until when. A mark whose time cannot be read
/// counts as held until the epoch: expired at once, so a damaged mark never keeps a VM forever.
pub fn held_until(metadata: &BTreeMap<String, String>) -> Option<SystemTime> {
    let text = metadata.get(META_HOLD_UNTIL)?;
    Some(humantime::parse_rfc3339(text).unwrap_or(SystemTime::UNIX_EPOCH))
}

/// The metadata that holds a server until `until`.
pub fn hold_metadata(until: SystemTime, reason: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            META_HOLD_UNTIL.to_string(),
            humantime::format_rfc3339_seconds(until).to_string(),
        ),
        (
            META_HOLD_REASON.to_string(),
            reason.chars().take(MAX_VALUE).collect(),
        ),
    ])
}

/// Marks `server_id` as held until `until`, when it exists and carries `owner`'s metadata.
/// Returns whether it was marked: a server that is gone or not this job's is never held.
pub async fn hold_server(
    cloud: &dyn Cloud,
    owner: &Ownership,
    server_id: &str,
    until: SystemTime,
    reason: &str,
) -> Result<bool, CloudError> {
    let Some(server) = cloud.get_server(server_id).await? else {
        return Ok(false);
    };
    if !owner.owns(&server.metadata) {
        return Ok(false);
    }
    cloud
        .set_server_metadata(server_id, &hold_metadata(until, reason))
        .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_hold_reads_back_and_a_damaged_one_is_already_over() {
        let until = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let meta = hold_metadata(until, "build_script failed");
        assert_eq!(held_until(&meta), Some(until));
        assert_eq!(held_until(&BTreeMap::new()), None);
        let damaged = BTreeMap::from([(META_HOLD_UNTIL.to_string(), "soon".to_string())]);
        assert_eq!(held_until(&damaged), Some(SystemTime::UNIX_EPOCH));
    }
}
