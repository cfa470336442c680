//! `executor`'s commands: the four stages gitlab-runner calls, the tools for recipe authors and
//! operators, and (in the default build) the simulation. Each command is a thin layer over
//! `executor_driver` and the back ends; ARCHITECTURE.md has the map.

pub mod cli;
pub mod commands;
mod logging;
mod operator_events;
pub mod pool;
mod recipe_files;
mod signals;
