//! The ground floor of the driver: what every other crate may use and that uses none of them.
//!
//! The gitlab-runner protocol's vocabulary (stages, exit codes), the job's state file, the job
//! log with its secret masking, the one failure classification, and how a duration is written.

pub mod bounded_read;
pub mod durations;
pub mod error_class;
pub mod events;
pub mod exit_codes;
pub mod job_log;
pub mod job_response;
pub mod job_state;
pub mod redact;
pub mod shell_quote;
pub mod stage;
pub mod state_binding;
pub mod url_userinfo;

pub use error_class::ErrorClass;
