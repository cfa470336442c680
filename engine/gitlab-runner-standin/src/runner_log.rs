//! The runner's own log, where gitlab-runner puts cleanup output and its remarks on a job; apart
//! from the job trace because it is never masked and never shown in GitLab.

use std::sync::{Arc, Mutex, PoisonError};

use super::job_trace::LiveWriter;

/// The runner's own log: cleanup output (`cleanup_std=out` at debug, `=err` at warning).
#[derive(Clone, Default)]
pub struct RunnerLog {
    lines: Arc<Mutex<Vec<String>>>,
    live: Option<LiveWriter>,
}

impl RunnerLog {
    pub(crate) fn new(live: Option<LiveWriter>) -> Self {
        Self {
            lines: Arc::default(),
            live,
        }
    }

    pub(crate) fn record(&self, line: String) {
        if let Some(live) = &self.live {
            let mut w = live.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = writeln!(w, "{line}");
        }
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line);
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
