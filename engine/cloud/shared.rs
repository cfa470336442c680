//! One authenticated connection per process.

use std::sync::Arc;

use tokio::sync::OnceCell;

use super::error::CloudError;
use super::openstack::OpenStack;
use super::settings::CloudSettings;

static SHARED: OnceCell<Arc<OpenStack>> = OnceCell::const_new();

/// The process-wide connection, made on first use with `settings`. Later calls get the same
/// connection whatever settings they pass: a process serves one job on one cloud.
pub async fn shared(settings: &CloudSettings) -> Result<Arc<OpenStack>, CloudError> {
    SHARED
        .get_or_try_init(|| async { OpenStack::connect(settings).await.map(Arc::new) })
        .await
        .cloned()
}
