//! `executor`: a GitLab Runner custom-executor driver whose stages are YAML recipes.
//!
//! The interpreter (`interpreter`, `recipe`, `template`, `state`) knows nothing about OpenStack
//! or SSH; those live behind steps (`steps`) and their back ends (`cloud`, `ssh`).

pub mod cli;
pub mod cloud;
pub mod config_block;
pub mod deferred;
pub mod diagnostics;
pub mod error;
pub mod exit_codes;
pub mod gc;
pub mod interpreter;
pub mod job_log;
pub mod job_state;
pub mod lint;
pub mod lint_command;
pub mod logging;
pub mod openssh_server;
pub mod overrides;
pub mod problem;
pub mod recipe;
pub mod recipe_loader;
pub mod redact;
pub mod render_command;
pub mod retry_policy;
pub mod runner;
pub mod schema;
pub mod schema_check;
pub mod services;
pub mod shell_quote;
pub mod sim;
pub mod source_file;
pub mod spanned_yaml;
pub mod ssh;
pub mod stage;
pub mod stage_command;
pub mod step_context;
pub mod step_spec;
pub mod steps;
pub mod template;
pub mod template_context;
