//! The daemon's life: start (adopt or delete what an earlier run left), keep every warm key at
//! its idle count within the limits, check idle VMs, serve claims, stop.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value as Json};
use tokio_util::sync::CancellationToken;

use executor_cloud::OpenStack;
use executor_cloud::backend::Cloud;
use executor_cloud::cleanup::{CleanupPolicy, CleanupTarget, cleanup};
use executor_cloud::ownership::{META_JOB, META_PROJECT, Ownership, POOL_PROJECT};
use executor_cloud::reaper::list_runner_servers;
use executor_driver::interpreter::{Interpreter, new_vm_id};
use executor_driver::recipe::LoadedRecipe;
use executor_driver::recipe::{diagnostics, loader};
use executor_driver::steps::Services;
use executor_driver::steps::cloud_glue::{STATE_KEYPAIR, settings_of};
use executor_driver::steps::ssh_connection::{STATE_KEY_FILE, SshConnectionArgs};
use executor_driver::template::Templater;
use executor_driver::template::context::Environment;
use executor_foundation::exit_codes::{ExitCodes, Outcome};
use executor_foundation::job_log::JobLog;
use executor_foundation::job_state::JobState;
use executor_foundation::redact::Redactor;
use executor_foundation::stage::Stage;
use executor_pool::{DaemonLock, OnShutdown, PoolSettings};

use super::metrics::{Metrics, VmLabels};
use super::vm::{Phase, Vm};

/// `executor pool`
#[derive(Debug, Clone, clap::Args)]
pub struct PoolArgs {}

pub struct Daemon {
    pub loaded: LoadedRecipe,
    pub templater: Templater,
    pub settings: PoolSettings,
    pub runner: String,
    pub cloud: Arc<dyn Cloud>,
    pub root: PathBuf,
    pub vms: Mutex<Vec<Vm>>,
    /// Servers handed to jobs that may still run; they count against `max_instances`.
    pub claimed: Mutex<HashSet<String>>,
    pub metrics: Arc<Metrics>,
    pub log: JobLog,
    pub stop: CancellationToken,
    pacing: Mutex<Pacing>,
    /// Held while the daemon lives: `executor gc` spares a live daemon's idle VMs.
    _lock: DaemonLock,
}

/// The create rate limit and the backoff while making VMs keeps failing.
struct Pacing {
    next_create: Instant,
    failures_in_a_row: u32,
}

pub fn run(recipes: &[PathBuf], _args: PoolArgs) -> i32 {
    let log = JobLog::stderr(Redactor::from_env(), false);
    let loaded = match loader::load(recipes) {
        Ok(l) => l,
        Err(problems) => {
            eprint!(
                "{}",
                diagnostics::render(&problems, diagnostics::use_color())
            );
            return 2;
        }
    };
    let Some(settings) = loaded.recipe.pool.clone() else {
        log.error("the recipe has no `pool:` block: nothing to keep warm");
        return 2;
    };
    if loaded.recipe.provision.is_empty() {
        log.error("the recipe has no `provision` steps: the pool cannot make a VM");
        return 2;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            log.error(&format!("cannot start the async runtime: {e}"));
            return 2;
        }
    };
    runtime.block_on(async move {
        match Daemon::start(loaded, settings, log).await {
            Ok(daemon) => daemon.serve().await,
            Err(message) => {
                eprintln!("executor pool: {message}");
                2
            }
        }
    })
}

impl Daemon {
    async fn start(
        loaded: LoadedRecipe,
        settings: PoolSettings,
        log: JobLog,
    ) -> Result<Arc<Daemon>, String> {
        let templater = Templater::new();
        let environment = Environment::from_process();
        let services = Services::default();
        let exit = ExitCodes::from_lookup(|_| None);
        let interp = Interpreter {
            loaded: &loaded,
            templater: &templater,
            environment: &environment,
            services: &services,
            log: &log,
            exit: &exit,
            cancel: CancellationToken::new(),
        };
        let state = JobState::in_memory(Map::new());
        let vars = interp
            .evaluate_vars(&state, None, Stage::Provision)
            .map_err(|e| e.message)?;
        let cloud_raw = loaded.json.get("cloud").cloned().unwrap_or(Json::Null);
        let cloud_block = interp
            .render_block("cloud", &cloud_raw, &vars, &state, Stage::Provision)
            .map_err(|e| e.message)?;
        let cloud_settings = settings_of(cloud_block).map_err(|e| e.message)?;
        let runner = cloud_settings
            .owner
            .clone()
            .unwrap_or_else(|| "executor".into());
        let cloud: Arc<dyn Cloud> = Arc::new(
            OpenStack::connect(&cloud_settings)
                .await
                .map_err(|e| e.to_string())?,
        );
        let root = settings.state_root();
        std::fs::create_dir_all(&root)
            .and_then(|_| {
                std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            })
            .map_err(|e| format!("cannot make the state directory {}: {e}", root.display()))?;
        let lock = DaemonLock::acquire(&root).map_err(|e| e.to_string())?;
        drop(interp);
        let daemon = Arc::new(Daemon {
            loaded,
            templater,
            settings,
            runner,
            cloud,
            root,
            vms: Mutex::new(vec![]),
            claimed: Mutex::new(HashSet::new()),
            metrics: Arc::new(Metrics::default()),
            log,
            stop: CancellationToken::new(),
            pacing: Mutex::new(Pacing {
                next_create: Instant::now(),
                failures_in_a_row: 0,
            }),
            _lock: lock,
        });
        daemon.adopt_leftovers().await;
        Ok(daemon)
    }

    async fn serve(self: Arc<Self>) -> i32 {
        let socket = self.settings.socket_path();
        let listener = match executor_pool::bind_private(&socket).await {
            Ok(l) => l,
            Err(e) => {
                self.log
                    .error(&format!("cannot listen on {}: {e}", socket.display()));
                return 2;
            }
        };
        if let Some(addr) = self.settings.metrics.clone() {
            match tokio::net::TcpListener::bind(&addr).await {
                Ok(l) => {
                    tokio::spawn(super::metrics::serve(
                        l,
                        self.metrics.clone(),
                        self.stop.clone(),
                    ));
                }
                Err(e) => {
                    self.log
                        .error(&format!("cannot serve metrics on {addr}: {e}"));
                    return 2;
                }
            }
        }
        self.log.info(&format!(
            "pool daemon of `{}` ready: claims on {}, keeping {} key(s) warm",
            self.runner,
            socket.display(),
            self.settings.warm.len()
        ));
        tokio::spawn(super::claims::serve(self.clone(), listener));
        shutdown_on_signals(self.stop.clone());
        let mut last_health = Instant::now();
        while !self.stop.is_cancelled() {
            self.replace_old().await;
            if last_health.elapsed() >= self.settings.health_interval {
                last_health = Instant::now();
                self.check_idle().await;
                self.forget_finished_claims().await;
            }
            self.fill();
            self.publish();
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = self.stop.cancelled() => {}
            }
        }
        let _ = std::fs::remove_file(&socket);
        self.shut_down().await;
        0
    }

    /// Starts `provision` for every warm key below its idle count, one VM per create interval
    /// (longer while creates keep failing), never past `max_instances`.
    fn fill(self: &Arc<Self>) {
        for warm in &self.settings.warm {
            let key: Map<String, Json> = warm
                .key
                .iter()
                .map(|(k, v)| (k.clone(), Json::String(v.clone())))
                .collect();
            let (ready_or_coming, total) = {
                let vms = self.vms.lock().unwrap_or_else(|p| p.into_inner());
                let mine = vms
                    .iter()
                    .filter(|v| super::vm::same_key(&v.key, &key))
                    .count();
                (mine, vms.len() + self.claimed_count())
            };
            if ready_or_coming >= warm.idle as usize
                || total >= self.settings.max_instances as usize
            {
                continue;
            }
            {
                let mut pacing = self.pacing.lock().unwrap_or_else(|p| p.into_inner());
                if Instant::now() < pacing.next_create {
                    return;
                }
                pacing.next_create = Instant::now() + self.create_pause(pacing.failures_in_a_row);
            }
            let vm = Vm {
                id: new_vm_id(),
                dir: self.root.join("vm"),
                key,
                phase: Phase::Booting,
                state: Map::new(),
                ready_at: None,
            };
            let vm = Vm {
                dir: self.root.join(&vm.id),
                ..vm
            };
            self.vms
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(vm.clone());
            let me = self.clone();
            tokio::spawn(async move { me.provision(vm).await });
        }
    }

    /// The pause before the next create: the create interval, doubled for every failure in a
    /// row, up to `failure_backoff` (which is never shorter than the interval).
    fn create_pause(&self, failures_in_a_row: u32) -> Duration {
        let base = self.settings.create_interval;
        if failures_in_a_row == 0 {
            return base;
        }
        let grown = base.saturating_mul(1u32 << failures_in_a_row.min(16));
        grown.min(self.settings.failure_backoff.max(base))
    }

    fn claimed_count(&self) -> usize {
        self.claimed.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Runs `provision` for `vm`; a ready VM joins the idle ones, a failed one is deleted.
    async fn provision(self: Arc<Self>, mut vm: Vm) {
        let started = Instant::now();
        let outcome = self.run_provision(&vm).await;
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
            self.metrics.failure("provision");
            self.log.warn(&format!(
                "VM {} ({}) could not be made ready; deleting it",
                vm.id,
                vm.key_label()
            ));
            self.remove(&vm.id);
            self.delete(&vm).await;
        }
    }

    async fn run_provision(&self, vm: &Vm) -> Outcome {
        if let Err(e) = std::fs::create_dir_all(&vm.dir) {
            self.log
                .error(&format!("cannot make {}: {e}", vm.dir.display()));
            return Outcome::SystemFailure;
        }
        let mut state = match JobState::load(&vm.dir) {
            Ok(s) => s,
            Err(e) => {
                self.log.error(&e.to_string());
                return Outcome::SystemFailure;
            }
        };
        let environment = self.environment(vm);
        let services = Services::default();
        let exit = ExitCodes::from_lookup(|_| None);
        let interp = self.interpreter(&environment, &services, &exit);
        let vars = match interp.evaluate_vars(&state, None, Stage::Provision) {
            Ok(v) => v,
            Err(e) => {
                self.log.error(&e.message);
                return Outcome::SystemFailure;
            }
        };
        interp
            .run_stage(Stage::Provision, &mut state, vars, None)
            .await
    }

    /// What `provision` sees: the driver's environment, no job, and the VM's key and id.
    fn environment(&self, vm: &Vm) -> Environment {
        let mut pool = vm.key.clone();
        pool.insert("vm".into(), Json::String(vm.id.clone()));
        let mut environment = Environment::from_process();
        environment.job.clear();
        environment.trusted.clear();
        environment.pool = pool;
        environment
    }

    fn interpreter<'a>(
        &'a self,
        environment: &'a Environment,
        services: &'a Services,
        exit: &'a ExitCodes,
    ) -> Interpreter<'a> {
        Interpreter {
            loaded: &self.loaded,
            templater: &self.templater,
            environment,
            services,
            log: &self.log,
            exit,
            cancel: self.stop.child_token(),
        }
    }

    /// One SSH round trip to `vm` with its key and pinned host key: is it still there?
    pub async fn alive(&self, vm: &Vm) -> Result<(), String> {
        let environment = self.environment(vm);
        let services = Services::default();
        let exit = ExitCodes::from_lookup(|_| None);
        let interp = self.interpreter(&environment, &services, &exit);
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

    /// Idle VMs past `max_idle_age` make way for fresh ones.
    async fn replace_old(&self) {
        let now = SystemTime::now();
        let old: Vec<Vm> = {
            let mut vms = self.vms.lock().unwrap_or_else(|p| p.into_inner());
            let (old, keep): (Vec<Vm>, Vec<Vm>) = vms.drain(..).partition(|v| {
                v.phase == Phase::Idle
                    && v.ready_at.is_some_and(|t| {
                        now.duration_since(t).unwrap_or_default() > self.settings.max_idle_age
                    })
            });
            *vms = keep;
            old
        };
        for vm in old {
            self.log.info(&format!(
                "VM {} reached the maximum idle age; replacing it",
                vm.id
            ));
            self.delete(&vm).await;
        }
    }

    /// Health check: every idle VM gets one SSH round trip; a dead one is deleted.
    async fn check_idle(&self) {
        let idle: Vec<Vm> = {
            let mut vms = self.vms.lock().unwrap_or_else(|p| p.into_inner());
            vms.iter_mut()
                .filter(|v| v.phase == Phase::Idle)
                .map(|v| {
                    v.phase = Phase::Busy;
                    v.clone()
                })
                .collect()
        };
        for mut vm in idle {
            match self.alive(&vm).await {
                Ok(()) => {
                    vm.phase = Phase::Idle;
                    self.set(vm);
                }
                Err(why) => {
                    self.metrics.failure("health_check");
                    self.log.warn(&format!(
                        "idle VM {} failed its health check ({why}); replacing it",
                        vm.id
                    ));
                    self.remove(&vm.id);
                    self.delete(&vm).await;
                }
            }
        }
    }

    /// Claimed servers that are gone (their job's cleanup ran) stop counting as instances.
    async fn forget_finished_claims(&self) {
        let ids: Vec<String> = self
            .claimed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        for id in ids {
            if let Ok(None) = self.cloud.get_server(&id).await {
                self.claimed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
            }
        }
    }

    /// On start: the idle VMs an earlier run of this daemon left (it was killed, or stopped
    /// with `on_shutdown: keep`) are adopted when their state is on disk and they answer, and
    /// deleted otherwise. Only servers whose metadata says they are this runner's and still
    /// the pool's are looked at: claimed VMs belong to their jobs, other runners' to them.
    async fn adopt_leftovers(self: &Arc<Self>) {
        let servers = match list_runner_servers(self.cloud.as_ref(), &self.runner).await {
            Ok(s) => s,
            Err(e) => {
                self.log.warn(&format!("cannot list earlier pool VMs: {e}"));
                return;
            }
        };
        let mut seen = HashSet::new();
        for server in servers
            .into_iter()
            .filter(|s| s.metadata.get(META_PROJECT).map(String::as_str) == Some(POOL_PROJECT))
        {
            let Some(id) = server.metadata.get(META_JOB).cloned() else {
                continue;
            };
            seen.insert(id.clone());
            let dir = self.root.join(&id);
            let state = JobState::load(&dir)
                .map(|s| s.values().clone())
                .unwrap_or_default();
            let record = Vm::load_record(&dir);
            let vm = Vm {
                id: id.clone(),
                key: record.as_ref().map(|r| r.key.clone()).unwrap_or_default(),
                dir,
                phase: Phase::Idle,
                state,
                ready_at: record
                    .as_ref()
                    .map(|r| SystemTime::UNIX_EPOCH + Duration::from_secs(r.ready_at)),
            };
            let wanted = self
                .settings
                .warm
                .iter()
                .any(|w| super::vm::same_key(&vm.key, &warm_key(w)));
            let fits = record.is_some()
                && wanted
                && server.status == "ACTIVE"
                && vm.server_id() == Some(server.id.as_str())
                && self.alive(&vm).await.is_ok();
            if fits {
                self.log
                    .info(&format!("adopted idle VM {} ({})", vm.id, vm.key_label()));
                self.vms.lock().unwrap_or_else(|p| p.into_inner()).push(vm);
            } else {
                self.log
                    .info(&format!("deleting VM {} left by an earlier run", id));
                let vm = Vm {
                    state: {
                        let mut s = vm.state.clone();
                        s.insert("server_id".into(), Json::String(server.id.clone()));
                        s
                    },
                    ..vm
                };
                self.delete(&vm).await;
            }
        }
        // Directories of VMs that no longer exist hold only keys of the dead.
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if !seen.contains(&name) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }

    async fn shut_down(&self) {
        let vms: Vec<Vm> = self
            .vms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        match self.settings.on_shutdown {
            OnShutdown::Keep => self.log.info(&format!(
                "stopping; keeping {} VM(s) for the next start to adopt",
                vms.len()
            )),
            OnShutdown::Delete => {
                self.log
                    .info(&format!("stopping; deleting {} idle VM(s)", vms.len()));
                for vm in &vms {
                    self.delete(vm).await;
                }
            }
        }
    }

    /// Deletes a VM of the pool's (server, key pair) and forgets its directory.
    pub async fn delete(&self, vm: &Vm) {
        let target = CleanupTarget {
            owner: Ownership {
                runner: self.runner.clone(),
                project: POOL_PROJECT.into(),
                job: vm.id.clone(),
            },
            server_id: vm.server_id().map(str::to_string),
            server_name: vm
                .state
                .get("server_name")
                .and_then(Json::as_str)
                .map(str::to_string),
            floating_ip_ids: vec![],
            keypair_name: vm
                .state
                .get(STATE_KEYPAIR)
                .and_then(Json::as_str)
                .map(str::to_string),
            volume_ids: vec![],
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

    pub fn set(&self, vm: Vm) {
        let mut vms = self.vms.lock().unwrap_or_else(|p| p.into_inner());
        match vms.iter_mut().find(|v| v.id == vm.id) {
            Some(slot) => *slot = vm,
            None => vms.push(vm),
        }
    }

    pub fn remove(&self, id: &str) {
        self.vms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|v| v.id != id);
    }

    fn publish(&self) {
        let mut counts: Vec<(VmLabels, i64)> = vec![];
        for vm in self.vms.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let labels = VmLabels {
                state: vm.phase.label().into(),
                key: vm.key_label(),
            };
            match counts.iter_mut().find(|(l, _)| *l == labels) {
                Some((_, n)) => *n += 1,
                None => counts.push((labels, 1)),
            }
        }
        counts.push((
            VmLabels {
                state: "claimed".into(),
                key: String::new(),
            },
            self.claimed_count() as i64,
        ));
        self.metrics.set_vms(&counts);
        let sent = self.cloud.requests_sent();
        let counted = self.metrics.api_requests.get();
        if sent > counted {
            self.metrics.api_requests.inc_by(sent - counted);
        }
    }

    /// The private key of a VM, from its directory.
    pub fn private_key(&self, vm: &Vm) -> Result<String, String> {
        let path = vm
            .state
            .get(STATE_KEY_FILE)
            .and_then(Json::as_str)
            .ok_or("the VM's state names no key file")?;
        std::fs::read_to_string(path).map_err(|e| format!("cannot read the VM's key: {e}"))
    }
}

fn warm_key(w: &executor_pool::WarmKey) -> Map<String, Json> {
    w.key
        .iter()
        .map(|(k, v)| (k.clone(), Json::String(v.clone())))
        .collect()
}

/// systemd and container runtimes stop a service with SIGTERM; Ctrl-C sends SIGINT.
fn shutdown_on_signals(stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    for kind in [SignalKind::terminate(), SignalKind::interrupt()] {
        let stop = stop.clone();
        if let Ok(mut s) = signal(kind) {
            tokio::spawn(async move {
                if s.recv().await.is_some() {
                    stop.cancel();
                }
            });
        }
    }
}
