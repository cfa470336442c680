//! What travels over the pool socket: one JSON request line, one JSON reply line.
//!
//! The reply to a claim carries the VM's private key. The socket is the runner user's alone
//! (`socket.rs`), and the key is written to the job's state with mode 0600 by the client.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

/// The job a VM is claimed for: goes into the server's ownership metadata, so cleanup and
/// `executor gc` treat a claimed VM as the job's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub runner: String,
    pub project: String,
    pub job: String,
}

/// A job asks for a ready VM of this pool key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claim {
    /// The pool key (e.g. flavor and image) as the job's prepare rendered it.
    pub key: Map<String, Json>,
    pub owner: Owner,
}

/// A stage process tells the daemon how it went, for the metrics.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub stage: String,
    pub seconds: f64,
    pub outcome: String,
}

/// A job that asked for a VM and booted its own instead, and why: `miss`, `slow`, `garbled`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fallback {
    pub job: String,
    pub why: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    Claim(Claim),
    Report(Report),
    Fallback(Fallback),
    /// How many VMs are idle and booting (for `executor simulate --pool` and operators).
    Status,
}

/// The VM handed to a job: the job state the `provision` stage left, plus the private key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claimed {
    /// Every value `provision` saved in the VM's state (server id, name, address, pinned host
    /// key, ...), except the path of the key file, which is the daemon's.
    pub state: Map<String, Json>,
    /// The VM's own private key (OpenSSH format); each VM has its own.
    pub private_key: String,
    /// How long the VM had waited, idle, in seconds.
    pub idle_seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Claimed(Box<Claimed>),
    /// Nothing ready for this key (or the daemon refused): the job provisions its own VM.
    Miss(String),
    Noted,
    Status {
        idle: u32,
        booting: u32,
        /// The idle VMs the recipe asks for now, over every warm key.
        #[serde(default)]
        wanted: u32,
    },
}
