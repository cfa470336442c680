//! Making, checking and deleting one VM: the recipe's `provision` stage through the
//! interpreter, with no job and the VM's own key and id as `pool`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

use executor_cloud::cleanup::{CleanupPolicy, CleanupTarget, cleanup};
use executor_cloud::keypair::job_keypair_name;
use executor_cloud::ownership::{Ownership, POOL_PROJECT};
use executor_driver::interpreter::{Interpreter, StepFailure};
use executor_driver::steps::cloud_glue::{STATE_CLOUD_SESSION, STATE_KEYPAIR};
use executor_driver::steps::ssh_connection::{STATE_KEY_FILE, SshConnectionArgs};
use executor_driver::template::context::Environment;
use executor_foundation::exit_codes::{ExitCodes, Outcome};
use executor_foundation::job_state::JobState;
use executor_foundation::stage::Stage;

use super::daemon::Daemon;
use super::vm::{Phase, Vm};
use executor_foundation::bounded_read::{CONFIG_LIMIT, read_to_string_bounded};

impl Daemon {
    /// Runs `provision` for `vm`; a ready VM joins the idle ones, a failed one is deleted.
    pub(super) async fn provision(self: Arc<Self>, mut vm: Vm) {
        let started = Instant::now();
        let (outcome, why) = self.run_provision(&vm).await;
        let state = JobState::load(&vm.dir)
            .map(|s| s.values().clone())
            .unwrap_or_default();
        vm.state = state;
        let ok = matches!(outcome, Outcome::Success) && !self.stop.is_cancelled();
        {
            let mut pacing = self.pacing.lock().unwrap_or_else(|p| p.into_inner());
            if ok {
                pacing.failures_in_a_row = 0;
            } else {
                pacing.failures_in_a_row += 1;
                pacing.next_create = Instant::now() + self.create_pause(pacing.failures_in_a_row);
            }
        }
        if ok {
            vm.phase = Phase::Idle;
            vm.ready_at = Some(SystemTime::now());
            let _ = vm.save_record();
            self.metrics
                .time_to_ready
                .observe(started.elapsed().as_secs_f64());
            self.log.info(&format!(
                "VM {} ({}) ready in {:.1}s",
                vm.id,
                vm.key_label(),
                started.elapsed().as_secs_f64()
            ));
            self.set(vm);
        } else {
            self.metrics.provision_failure(why.as_ref());
            self.log.warn(&format!(
                "VM {} ({}) could not be made ready; deleting it",
                vm.id,
                vm.key_label()
            ));
            self.remove(&vm.id);
            self.delete(&vm).await;
        }
    }

    /// Runs `provision` in the VM's directory; on failure, which step failed and how.
    pub(super) async fn run_provision(&self, vm: &Vm) -> (Outcome, Option<StepFailure>) {
        if let Err(e) = std::fs::create_dir_all(&vm.dir) {
            self.log
                .error(&format!("cannot make {}: {e}", vm.dir.display()));
            return (Outcome::SystemFailure, None);
        }
        let mut state = match JobState::load(&vm.dir) {
            Ok(s) => s,
            Err(e) => {
                self.log.error(&e.to_string());
                return (Outcome::SystemFailure, None);
            }
        };
        // The run connects as a job's later stage would: from a saved session (the daemon's),
        // which the shared mechanism replaces when it is near its expiry.
        if let Some(session) = self.openstack.saved_session().await {
            state.set(STATE_CLOUD_SESSION, session);
        }
        let environment = self.environment(vm);
        let exit = ExitCodes::from_lookup(|_| None);
        let interp = self.interpreter(&environment, &exit);
        let vars = match interp.evaluate_vars(&state, None, Stage::Provision) {
            Ok(v) => v,
            Err(e) => {
                self.log.error(&e.message);
                return (Outcome::SystemFailure, None);
            }
        };
        interp
            .run_stage_explained(Stage::Provision, &mut state, vars, None)
            .await
    }

    /// What `provision` sees: the driver's environment, no job, and the VM's key and id.
    pub(super) fn environment(&self, vm: &Vm) -> Environment {
        let mut pool = vm.key.clone();
        pool.insert("vm".into(), Json::String(vm.id.clone()));
        let mut environment = Environment::from_process();
        environment.job.clear();
        environment.trusted.clear();
        environment.pool = pool;
        environment
    }

    pub(super) fn interpreter<'a>(
        &'a self,
        environment: &'a Environment,
        exit: &'a ExitCodes,
    ) -> Interpreter<'a> {
        Interpreter::new(
            &self.loaded,
            environment,
            &self.log,
            exit,
            self.stop.child_token(),
        )
    }

    /// One SSH round trip to `vm` with its key and pinned host key: is it still there?
    pub async fn alive(&self, vm: &Vm) -> Result<(), String> {
        let environment = self.environment(vm);
        let exit = ExitCodes::from_lookup(|_| None);
        let interp = self.interpreter(&environment, &exit);
        let state = JobState::in_memory(vm.state.clone());
        let vars = interp
            .evaluate_vars(&state, None, Stage::Provision)
            .map_err(|e| e.message)?;
        let raw = self.loaded.json.get("ssh").cloned().unwrap_or(Json::Null);
        let block = interp
            .render_block("ssh", &raw, &vars, &state, Stage::Provision)
            .map_err(|e| e.message)?;
        let args: SshConnectionArgs = if block.is_null() {
            SshConnectionArgs::default()
        } else {
            serde_json::from_value(block).map_err(|e| e.to_string())?
        };
        let conn = args
            .resolve(&state, &self.log, false)
            .map_err(|e| e.message)?;
        let mut options = conn.options.clone();
        let quick = Duration::from_secs(5);
        options.tcp_timeout = options.tcp_timeout.min(quick);
        options.handshake_timeout = options.handshake_timeout.min(quick);
        options.auth_timeout = options.auth_timeout.min(quick);
        options.channel_timeout = options.channel_timeout.min(quick);
        let session = executor_ssh::connect(&conn.target, &conn.key, &conn.policy, &options)
            .await
            .map_err(|e| e.to_string())?;
        let out = session
            .run_command("true", None, 1024, &CancellationToken::new())
            .await
            .map_err(|e| e.to_string())?;
        session.close().await;
        if out.exit.success() {
            Ok(())
        } else {
            Err(format!("`true` exited with {}", out.exit))
        }
    }

    /// The ownership of a VM no job has claimed: the pool's, with the VM's id as the job.
    pub(super) fn pool_owner(&self, vm: &str) -> Ownership {
        Ownership {
            runner: self.runner.clone(),
            project: POOL_PROJECT.into(),
            job: vm.to_string(),
        }
    }

    /// Deletes a VM of the pool's (server, key pair) and forgets its directory. Without a
    /// state (a daemon killed early) the key pair is found by the name the pool gives it.
    pub async fn delete(&self, vm: &Vm) {
        self.delete_as(vm, self.pool_owner(&vm.id)).await;
    }

    /// Deletes a VM whose metadata names `owner` (a job's, once a claim set it).
    pub async fn delete_as(&self, vm: &Vm, owner: Ownership) {
        let pool_keypair = job_keypair_name(&self.pool_owner(&vm.id));
        let text = |key: &str| vm.state.get(key).and_then(Json::as_str).map(str::to_string);
        let target = CleanupTarget {
            server_id: vm.server_id().map(str::to_string),
            server_name: text("server_name"),
            floating_ip_ids: vec![],
            keypair_name: text(STATE_KEYPAIR).or(Some(pool_keypair)),
            volume_ids: vec![],
            owner,
        };
        if let Err(e) = cleanup(self.cloud.as_ref(), &target, &CleanupPolicy::default()).await {
            self.metrics.failure("delete");
            self.log.warn(&format!(
                "deleting VM {} failed (gc will retry): {e}",
                vm.id
            ));
        }
        let _ = std::fs::remove_dir_all(&vm.dir);
    }

    /// The private key of a VM, from its directory.
    pub fn private_key(&self, vm: &Vm) -> Result<String, String> {
        let path = vm
            .state
            .get(STATE_KEY_FILE)
            .and_then(Json::as_str)
            .ok_or("the VM's state names no key file")?;
        read_to_string_bounded(std::path::Path::new(path), CONFIG_LIMIT)
            .map_err(|e| format!("cannot read the VM's key: {e}"))
    }
}
