//! The job trace: gitlab-runner's name for the job log GitLab shows (the driver's own job log,
//! in `executor_foundation`, is what the driver writes into it).
//!
//! It masks masked variables, is capped like gitlab-runner's `output_limit`, and can be mirrored
//! live to a writer.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use super::ansi;

/// A writer a log is mirrored to while the job runs.
pub type LiveWriter = Arc<Mutex<dyn Write + Send>>;

const MASK: &str = "[MASKED]";

struct TraceState {
    text: Vec<u8>,
    /// The job is over: late output of abandoned processes is dropped, as by a finished trace.
    closed: bool,
    limit: usize,
    exceeded: bool,
    masks: Vec<String>,
    live: Option<LiveWriter>,
}

#[derive(Clone)]
pub struct JobTrace {
    state: Arc<Mutex<TraceState>>,
}

impl JobTrace {
    pub(crate) fn new(limit: usize, live: Option<LiveWriter>) -> Self {
        Self {
            state: Arc::new(Mutex::new(TraceState {
                text: Vec::new(),
                closed: false,
                limit,
                exceeded: false,
                masks: Vec::new(),
                live,
            })),
        }
    }

    /// Values to replace by `[MASKED]`, longest first so that a value containing another is
    /// masked whole.
    pub(crate) fn set_masks(&self, mut masks: Vec<String>) {
        masks.retain(|m| !m.is_empty());
        masks.sort_by_key(|m| std::cmp::Reverse(m.len()));
        masks.dedup();
        self.lock().masks = masks;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TraceState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends raw text (a driver's output line or the runner's own line, with its newline).
    pub(crate) fn write(&self, text: &str) {
        let mut st = self.lock();
        let mut masked = text.to_owned();
        for m in &st.masks {
            if masked.contains(m.as_str()) {
                masked = masked.replace(m.as_str(), MASK);
            }
        }
        if st.exceeded || st.closed {
            return;
        }
        let room = st.limit.saturating_sub(st.text.len());
        let mut piece = masked.as_bytes();
        let mut overflow = false;
        if piece.len() > room {
            piece = &piece[..room];
            overflow = true;
        }
        st.text.extend_from_slice(piece);
        let mut notice = String::new();
        if overflow {
            st.exceeded = true;
            notice = format!(
                "\n{}Job's log exceeded limit of {} bytes.\nJob execution will continue but no more output will be collected.{}\n",
                ansi::YELLOW,
                st.limit,
                ansi::RESET
            );
            st.text.extend_from_slice(notice.as_bytes());
        }
        if let Some(live) = st.live.clone() {
            let mut w = live.lock().unwrap_or_else(PoisonError::into_inner);
            // A broken live writer must not fail the job; the log itself is still kept.
            let _ = w.write_all(piece);
            let _ = w.write_all(notice.as_bytes());
            let _ = w.flush();
        }
    }

    pub(crate) fn line(&self, text: &str) {
        self.write(&format!("{text}\n"));
    }

    pub(crate) fn notice(&self, text: &str) {
        self.line(&format!("{}{text}{}", ansi::BOLD_GREEN, ansi::RESET));
    }

    pub(crate) fn warning(&self, text: &str) {
        self.line(&format!("{}WARNING: {text}{}", ansi::YELLOW, ansi::RESET));
    }

    pub(crate) fn error(&self, text: &str) {
        self.line(&format!("{}ERROR: {text}{}", ansi::BOLD_RED, ansi::RESET));
    }

    /// `section_start:<unix>:<name>\r\e[0K` followed by the bold cyan header.
    pub(crate) fn section_start(&self, name: &str, header: &str) {
        self.write(&format!(
            "section_start:{}:{name}\r{}{}{}{header}{}\n",
            unix_now(),
            ansi::CLEAR,
            ansi::CLEAR,
            ansi::BOLD_CYAN,
            ansi::RESET
        ));
    }

    pub(crate) fn section_end(&self, name: &str) {
        self.write(&format!(
            "section_end:{}:{name}\r{}\n",
            unix_now(),
            ansi::CLEAR
        ));
    }

    pub(crate) fn close(&self) {
        self.lock().closed = true;
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.lock().text).into_owned()
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_and_caps() {
        let log = JobTrace::new(40, None);
        log.set_masks(vec!["s3cr3t-value".into(), "s3cr3t".into()]);
        log.line("token s3cr3t-value and s3cr3t");
        assert_eq!(log.text(), "token [MASKED] and [MASKED]\n");
        log.line("0123456789012345678901234567890123456789");
        let text = log.text();
        assert!(
            text.contains("Job's log exceeded limit of 40 bytes."),
            "{text}"
        );
        log.line("more");
        assert_eq!(log.text(), text, "nothing is collected after the limit");
    }
}
