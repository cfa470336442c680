//! Cancelling a running job the ways GitLab can: a graceful cancel (`CancelRequested`), an abort,
//! and the job timeout.

use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;

/// Why the job context ended early. The first reason wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Canceled,
    Aborted,
    TimedOut,
}

struct Inner {
    job: CancellationToken,
    /// Set while a user step runs: a graceful cancel then stops only that step.
    script: Mutex<Option<CancellationToken>>,
    reason: Mutex<Option<StopReason>>,
    /// Every driver invocation so far (`config`, `prepare`, `build_script`, `cleanup`...); a
    /// history rather than the current one, so that a waiter cannot miss a short stage.
    stages: tokio::sync::watch::Sender<Vec<String>>,
}

/// A handle to cancel one job; cheap to clone and usable from any task.
#[derive(Clone)]
pub struct JobControl {
    inner: Arc<Inner>,
}

impl Default for JobControl {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                job: CancellationToken::new(),
                script: Mutex::new(None),
                reason: Mutex::new(None),
                stages: tokio::sync::watch::Sender::new(Vec::new()),
            }),
        }
    }
}

impl JobControl {
    pub fn new() -> Self {
        Self::default()
    }

    /// A graceful cancel from the UI. During a user step only that step is signalled and
    /// `after_script`, the `_on_failure` stages and cleanup still run; otherwise the whole job
    /// context ends.
    pub fn cancel(&self) {
        self.set_reason(StopReason::Canceled);
        let script = self
            .inner
            .script
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match script.as_ref() {
            Some(token) => token.cancel(),
            None => self.inner.job.cancel(),
        }
    }

    /// A force cancel: the job context ends at once; only cleanup follows.
    pub fn abort(&self) {
        self.set_reason(StopReason::Aborted);
        self.inner.job.cancel();
    }

    pub(crate) fn time_out(&self) {
        self.set_reason(StopReason::TimedOut);
        self.inner.job.cancel();
    }

    pub fn reason(&self) -> Option<StopReason> {
        *self
            .inner
            .reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn set_reason(&self, r: StopReason) {
        let mut reason = self
            .inner
            .reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        reason.get_or_insert(r);
    }

    /// Waits until the driver has been invoked for `stage` (e.g. `build_script`); returns at
    /// once if it already was. Useful to cancel at a precise point.
    pub async fn wait_for_stage(&self, stage: &str) {
        let mut rx = self.inner.stages.subscribe();
        let _ = rx.wait_for(|seen| seen.iter().any(|s| s == stage)).await;
    }

    pub(crate) fn enter_stage(&self, stage: &str) {
        self.inner
            .stages
            .send_modify(|seen| seen.push(stage.to_owned()));
    }

    pub(crate) fn job_context(&self) -> CancellationToken {
        self.inner.job.clone()
    }

    pub(crate) fn job_ended(&self) -> bool {
        self.inner.job.is_cancelled()
    }

    /// The context of a user step, or `None` when the job was already cancelled.
    pub(crate) fn enter_user_script(&self) -> Option<CancellationToken> {
        let mut script = self
            .inner
            .script
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.inner.job.is_cancelled() || self.reason().is_some() {
            return None;
        }
        let token = self.inner.job.child_token();
        *script = Some(token.clone());
        Some(token)
    }

    pub(crate) fn leave_user_script(&self) {
        *self
            .inner
            .script
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }
}
