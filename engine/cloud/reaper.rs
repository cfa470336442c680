//! Finding servers a runner left behind (a SIGKILLed runner never runs cleanup).

use std::time::{Duration, SystemTime};

use super::backend::Cloud;
use super::error::CloudError;
use super::ownership::{created_at, created_by_runner};
use super::server::Server;

/// Every server carrying `runner`'s ownership metadata.
pub async fn list_runner_servers(
    cloud: &dyn Cloud,
    runner: &str,
) -> Result<Vec<Server>, CloudError> {
    Ok(cloud
        .list_servers(None)
        .await?
        .into_iter()
        .filter(|s| created_by_runner(&s.metadata, runner))
        .collect())
}

/// Those of `servers` created more than `older_than` before `now`. A server without a
/// readable creation time is never stale: we cannot prove it is old.
pub fn stale(servers: &[Server], older_than: Duration, now: SystemTime) -> Vec<&Server> {
    servers
        .iter()
        .filter(|s| {
            created_at(&s.metadata)
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > older_than)
        })
        .collect()
}
