//! Lines the driver writes into the job log. Always on stderr: the config stage's stdout must
//! hold nothing but its JSON, and gitlab-runner shows stderr in the job log for every stage
//! except cleanup.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::redact::Redactor;

pub struct JobLog {
    redactor: Redactor,
    started: Instant,
    color: bool,
    sink: Sink,
}

enum Sink {
    Stderr,
    /// Captured lines, for tests.
    Memory(std::sync::Mutex<Vec<String>>),
}

impl JobLog {
    pub fn stderr(redactor: Redactor, color: bool) -> Self {
        Self {
            redactor,
            started: Instant::now(),
            color,
            sink: Sink::Stderr,
        }
    }

    pub fn memory(redactor: Redactor) -> Self {
        Self {
            redactor,
            started: Instant::now(),
            color: false,
            sink: Sink::Memory(Default::default()),
        }
    }

    pub fn lines(&self) -> Vec<String> {
        match &self.sink {
            Sink::Memory(m) => m.lock().map(|l| l.clone()).unwrap_or_default(),
            Sink::Stderr => vec![],
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    pub fn info(&self, message: &str) {
        self.write("", message);
    }

    pub fn warn(&self, message: &str) {
        self.write(
            if self.color {
                "\x1b[0;33mWARNING:\x1b[0m "
            } else {
                "WARNING: "
            },
            message,
        );
    }

    pub fn error(&self, message: &str) {
        self.write(
            if self.color {
                "\x1b[31;1mERROR:\x1b[0m "
            } else {
                "ERROR: "
            },
            message,
        );
    }

    fn write(&self, prefix: &str, message: &str) {
        let message = self.redactor.redact(message);
        let t = self.started.elapsed().as_secs_f64();
        for line in message.lines() {
            let text = format!("[executor {t:6.1}s] {prefix}{line}");
            match &self.sink {
                Sink::Stderr => {
                    let mut err = std::io::stderr().lock();
                    let _ = writeln!(err, "{text}");
                }
                Sink::Memory(m) => {
                    if let Ok(mut l) = m.lock() {
                        l.push(text);
                    }
                }
            }
        }
    }
}
