//! Sessions shared by the SSH steps of one stage, so a stage authenticates once per server.

use std::collections::HashMap;
use std::sync::Arc;

use crate::steps::StepError;
use crate::steps::services::Services;

use crate::steps::ssh_connection::ResolvedConnection;
use executor_ssh::{SshSession, connect};

/// Open sessions keyed by user, address, key and host-key policy.
#[derive(Default)]
pub struct SshSessions {
    open: tokio::sync::Mutex<HashMap<String, Arc<SshSession>>>,
}

/// The whole host-key policy is part of the key, not only its mode: a session checked against
/// one pin or fingerprint list proves nothing about another.
fn pool_key(c: &ResolvedConnection) -> String {
    format!(
        "{}@{} {} {}",
        c.target.user,
        c.target.addr(),
        c.key.fingerprint(),
        c.policy.identity()
    )
}

impl SshSessions {
    /// The process's pool.
    pub async fn of(services: &Services) -> Result<Arc<SshSessions>, StepError> {
        services
            .get_or_try_init(|| async { Ok(SshSessions::default()) })
            .await
    }

    /// An open session for `conn`, reusing a live one.
    pub async fn get(&self, conn: &ResolvedConnection) -> Result<Arc<SshSession>, StepError> {
        let key = pool_key(conn);
        let mut open = self.open.lock().await;
        if let Some(s) = open.get(&key)
            && !s.is_closed()
        {
            return Ok(s.clone());
        }
        let session =
            Arc::new(connect(&conn.target, &conn.key, &conn.policy, &conn.options).await?);
        open.insert(key, session.clone());
        Ok(session)
    }

    /// Keeps a session opened elsewhere (by the probe) for later steps.
    pub async fn insert(&self, conn: &ResolvedConnection, session: SshSession) -> Arc<SshSession> {
        let session = Arc::new(session);
        self.open
            .lock()
            .await
            .insert(pool_key(conn), session.clone());
        session
    }
}
