//! One VM of the pool as the daemon tracks it, and its record on disk, which lets a restarted
//! daemon adopt it.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use executor_foundation::bounded_read::{CONFIG_LIMIT, read_bounded};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

/// File in a VM's directory that says which pool key it serves and since when it is ready.
pub const RECORD_FILE: &str = "pool-vm.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `provision` is running.
    Booting,
    /// Ready, waiting for a job.
    Idle,
    /// Taken by a claim (or a health check) that is re-checking it.
    Busy,
}

impl Phase {
    pub fn label(self) -> &'static str {
        match self {
            Phase::Booting => "booting",
            Phase::Idle => "idle",
            Phase::Busy => "checking",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Vm {
    /// The VM's own id (`pool.vm`), also its directory's name.
    pub id: String,
    pub key: Map<String, Json>,
    pub dir: PathBuf,
    pub phase: Phase,
    /// What `provision` saved in the VM's state.
    pub state: Map<String, Json>,
    pub ready_at: Option<SystemTime>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub key: Map<String, Json>,
    pub ready_at: u64,
}

impl Vm {
    pub fn server_id(&self) -> Option<&str> {
        self.state.get("server_id").and_then(Json::as_str)
    }

    /// A short text of the key for labels and logs, e.g. `flavor=m1.small,image=cirros`.
    pub fn key_label(&self) -> String {
        key_label(&self.key)
    }

    pub fn save_record(&self) -> std::io::Result<()> {
        let ready_at = self
            .ready_at
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let record = Record {
            id: self.id.clone(),
            key: self.key.clone(),
            ready_at,
        };
        std::fs::write(
            self.dir.join(RECORD_FILE),
            serde_json::to_vec(&record).unwrap_or_default(),
        )
    }

    pub fn load_record(dir: &Path) -> Option<Record> {
        serde_json::from_slice(&read_bounded(&dir.join(RECORD_FILE), CONFIG_LIMIT).ok()?).ok()
    }
}

pub fn key_label(key: &Map<String, Json>) -> String {
    key.iter()
        .map(|(k, v)| format!("{k}={}", text(v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether a job's rendered key asks for VMs of `key`: same names, same values as text (a
/// job's `"2"` and the pool's `2` are one key).
pub fn same_key(a: &Map<String, Json>, b: &Map<String, Json>) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(k, v)| b.get(k).is_some_and(|w| text(v) == text(w)))
}

fn text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}
