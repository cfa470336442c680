//! Operator events: what the driver did, one JSON object per line, for journald, Loki and
//! their kind. Never the job log, which belongs to the job's author and is not parsed.
//!
//! Off unless the runner's environment sets `EXECUTOR_EVENTS` to a file. The file is opened
//! for appending and every event is one `write` of one line, so the stage processes of
//! concurrent jobs can share it without interleaving. The sink is process-wide because events
//! come from every layer: the interpreter (steps), the cloud back end (request ids) and the
//! command (stages); threading a handle through all of them would couple layers that have no
//! other reason to know each other.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value as Json};

/// The environment variable that names the events file.
pub const EVENTS_VAR: &str = "EXECUTOR_EVENTS";

struct Sink {
    file: Mutex<File>,
    /// Fields every later event carries: job, runner, stage, and the server once known.
    context: Mutex<Map<String, Json>>,
    /// Request ids the cloud answered with since the last step event.
    request_ids: Mutex<Vec<String>>,
}

static SINK: OnceLock<Sink> = OnceLock::new();

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts writing events to `path` (created with mode 0600), each carrying `context`.
pub fn open(path: &Path, context: Map<String, Json>) -> std::io::Result<()> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    let _ = SINK.set(Sink {
        file: Mutex::new(file),
        context: Mutex::new(context),
        request_ids: Mutex::new(vec![]),
    });
    Ok(())
}

/// Whether events are being written (so callers can skip gathering fields).
pub fn enabled() -> bool {
    SINK.get().is_some()
}

/// Adds `key` to the fields of every later event (e.g. the server id once it is known).
pub fn set_context(key: &str, value: Json) {
    if let Some(sink) = SINK.get() {
        lock(&sink.context).insert(key.to_string(), value);
    }
}

/// Remembers a request id for the next step event.
pub fn note_request_id(id: &str) {
    if let Some(sink) = SINK.get() {
        lock(&sink.request_ids).push(id.to_string());
    }
}

/// Writes one event: `ts`, `event`, the context, then `fields`. A step event also takes the
/// request ids noted since the previous one.
pub fn emit(event: &str, fields: Map<String, Json>) {
    let Some(sink) = SINK.get() else {
        return;
    };
    let mut line = Map::new();
    line.insert(
        "ts".into(),
        Json::String(humantime::format_rfc3339_millis(SystemTime::now()).to_string()),
    );
    line.insert("event".into(), Json::String(event.to_string()));
    line.extend(lock(&sink.context).clone());
    if event == STEP {
        let ids = std::mem::take(&mut *lock(&sink.request_ids));
        line.insert(
            "request_ids".into(),
            Json::Array(ids.into_iter().map(Json::String).collect()),
        );
    }
    line.extend(fields);
    let mut text = Json::Object(line).to_string();
    text.push('\n');
    // Best effort: an operator's full disk must not fail a job.
    let _ = lock(&sink.file).write_all(text.as_bytes());
}

/// The event a finished step writes.
pub const STEP: &str = "step";
/// The event a finished stage writes.
pub const STAGE: &str = "stage";

/// Milliseconds, the unit of every duration in an event.
pub fn millis(d: Duration) -> Json {
    Json::from(d.as_millis() as u64)
}
