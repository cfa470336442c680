//! A process-wide listener for every HTTP request this crate sends to the cloud.
//!
//! The pool daemon counts requests by service and status for its metrics. Its `provision` runs
//! open connections of their own, deep inside steps, so handing each connection a counter
//! would thread a metrics type through layers that have no business knowing about it; one
//! listener per process sees them all. Nothing is recorded when no one listens.

use std::sync::{Arc, RwLock};

/// Told the service (`identity`, `compute`, `network`, `image`, `volume`) and the HTTP status of
/// each attempt, or `None` when no answer came (refused, reset, timed out).
pub type Listener = Arc<dyn Fn(&'static str, Option<u16>) + Send + Sync>;

static LISTENER: RwLock<Option<Listener>> = RwLock::new(None);

/// Sets the listener for the rest of the process (replacing any earlier one).
pub fn listen(listener: Listener) {
    *LISTENER.write().unwrap_or_else(|p| p.into_inner()) = Some(listener);
}

pub(crate) fn record(service: &'static str, status: Option<u16>) {
    let listener = LISTENER.read().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(listener) = listener {
        listener(service, status);
    }
}
