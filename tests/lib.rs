//! The one integration-test binary: every module below runs the real `executor` binary, the
//! simulated cloud, a real OpenSSH sshd or the real OpenStack of `../shared/realcloud`.
//!
//! One binary instead of one per file: the crates link once, and shared helpers are plain
//! modules. Tests never change the process's working directory or environment (they run on
//! threads of one process); each passes what it needs to the child it starts.

// Helpers shared by several test modules.
mod cloud_support;
mod e2e_support;
mod prometheus_support;
mod runner_support;
mod seeded_rng;
mod sim_support;
mod ssh_support;
mod stage_run;

mod api_economy;
mod architecture;
mod book_examples;
mod book_links;
mod book_reference;
mod book_snippets;
mod book_step_fields;
mod book_test_names;
mod cloud_credentials;
mod cloud_default_recipe_realcloud;
mod cloud_endpoints;
mod cloud_http;
mod cloud_orchestration;
mod cloud_quota;
mod cloud_realcloud;
mod cloud_sim;
mod cloud_stages_realcloud;
mod cloud_tls;
mod cloud_wire;
mod cloud_wire_realcloud;
mod container_entrypoint;
mod e2e_chaos;
mod e2e_gc;
mod e2e_hold;
mod e2e_jobs;
mod e2e_recipes;
mod engine_semantics;
mod engine_stages;
mod hostile_recipes;
mod lint_property;
mod lint_snapshots;
mod lint_taint;
mod pool;
mod pool_daemon;
mod pool_realcloud;
mod realcloud_gate;
mod recipe_fuzz;
mod render_snapshots;
mod runner_cancel;
mod runner_jobs;
mod runner_protocol;
mod runner_simulate;
mod runner_stages;
mod schema_fresh;
mod sim_api;
mod sim_cloud_backend;
mod sim_faults;
mod sim_openssh;
mod sim_python_sdk;
mod sim_ssh;
mod ssh_failures;
mod ssh_host_key;
mod ssh_keys;
mod ssh_script;
mod ssh_sim;
mod ssh_steps;
