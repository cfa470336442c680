//! Process-wide back ends that steps share: built on first use, so a stage that never talks to
//! the cloud never authenticates, and one that does authenticates once.
//!
//! The interpreter hands this to steps without knowing what is inside.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use serde_json::Value as Json;

use crate::steps::StepError;

#[derive(Default)]
pub struct Services {
    /// Back-end settings blocks of the recipe (`cloud`, `ssh`), rendered for the step that is
    /// running, or why they could not be.
    settings: std::sync::RwLock<HashMap<String, Result<Json, String>>>,
    slots: tokio::sync::Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl Services {
    /// Set a block as rendered for the next step. The interpreter renders the blocks before
    /// every step, so they may read what earlier steps found (`state.server_address`).
    pub fn set_settings(&self, name: &str, rendered: Result<Json, String>) {
        if let Ok(mut s) = self.settings.write() {
            s.insert(name.to_string(), rendered);
        }
    }

    /// A rendered settings block, or `null` when the recipe has none.
    pub fn settings(&self, name: &str) -> Result<Json, StepError> {
        match self.settings.read().ok().and_then(|s| s.get(name).cloned()) {
            None => Ok(Json::Null),
            Some(Ok(v)) => Ok(v),
            Some(Err(message)) => Err(StepError::invalid(message)),
        }
    }

    /// The process's one `T`, built by `init` the first time it is asked for.
    pub async fn get_or_try_init<T, F, Fut>(&self, init: F) -> Result<Arc<T>, StepError>
    where
        T: Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, StepError>>,
    {
        let mut slots = self.slots.lock().await;
        if let Some(existing) = slots.get(&TypeId::of::<T>())
            && let Ok(t) = existing.clone().downcast::<T>()
        {
            return Ok(t);
        }
        let made = Arc::new(init().await?);
        slots.insert(TypeId::of::<T>(), made.clone());
        Ok(made)
    }
}
