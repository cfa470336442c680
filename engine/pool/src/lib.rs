//! The warm pool as the rest of the driver sees it: the recipe's `pool:` settings, and the
//! claim protocol a job's `prepare` speaks to the pool daemon (`executor pool`) over a local
//! Unix socket.
//!
//! A back end like `executor_cloud`: it knows nothing of steps or the interpreter. The daemon
//! itself lives with the commands, because it runs the recipe's `provision` stage.

mod client;
mod liveness;
mod protocol;
mod schedule;
mod settings;
mod socket;

pub use client::{ClaimError, PoolStatus, claim, report, report_fallback, status};
pub use liveness::{DaemonLock, daemon_alive};
pub use protocol::{Claim, Claimed, Fallback, Owner, Reply, Report, Request};
pub use schedule::{Day, Period, PeriodError, idle_at};
pub use settings::{OnShutdown, PoolSettings, WarmKey};
pub use socket::{bind_private, default_socket_path};
