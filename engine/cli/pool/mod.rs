//! `executor pool`: the warm-pool daemon. It keeps VMs booted and SSH-verified ahead of jobs by
//! running the recipe's `provision` stage, and hands each to exactly one job's `pool_claim`
//! over a private Unix socket.
//!
//! It sits with the commands because it drives the interpreter; what jobs share with it (the
//! `pool:` settings, the claim protocol) is the `executor_pool` crate.

mod adoption;
mod claims;
mod daemon;
mod keeper;
mod metrics;
mod provisioner;
mod vm;

pub use daemon::{PoolArgs, run};
