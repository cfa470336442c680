//! The SSH back end: keys, host-key trust, readiness probe, script runner, commands and uploads.
//!
//! Everything here is plain async functions over [`SshSession`]; the recipe steps wrap them.

mod cancel_remote;
mod command;
mod connect;
mod direct_output;
mod errors;
mod fingerprints;
mod host_key;
mod key_gen;
mod keys;
mod output_pump;
mod pgid_marker;
mod probe;
mod remote_exit;
mod script_run;
mod short_ecdsa;
mod upload;

pub use cancel_remote::kill_process_group;
pub use command::CommandOutput;
pub use connect::{ConnectOptions, ConnectTimings, SshSession, Target, connect};
pub use direct_output::DirectOutput;
pub use errors::SshError;
pub use fingerprints::{ConsoleFingerprint, normalize_sha256, parse_console_fingerprints};
pub use host_key::{HostKeyPolicy, host_key_to_pin};
pub use key_gen::{GeneratedKey, generate_job_key};
pub use keys::{ClientKey, KeySource};
pub use probe::{ProbeOptions, Probed, probe};
pub use remote_exit::RemoteExit;
pub use script_run::ScriptOptions;
