//! `executor`: a GitLab Runner custom-executor driver whose stages are YAML recipes.
//!
//! The interpreter (`interpreter`, `recipe`, `template`, `state`) knows nothing about OpenStack
//! or SSH; those live behind steps (`steps`) and their back ends (`cloud`, `ssh`).

pub mod cli;
pub mod cloud;
pub mod openssh_server;
pub mod runner;
pub mod sim;
pub mod ssh;
