//! The daemon's life: start (adopt what an earlier run left), run the keeper, serve claims and
//! metrics, stop on SIGTERM.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json};
use tokio_util::sync::CancellationToken;

use executor_cloud::OpenStack;
use executor_cloud::backend::Cloud;
use executor_driver::interpreter::Interpreter;
use executor_driver::recipe::LoadedRecipe;
use executor_driver::steps::cloud_glue::settings_of;
use executor_driver::template::context::Environment;
use executor_foundation::exit_codes::ExitCodes;
use executor_foundation::job_log::JobLog;
use executor_foundation::job_state::JobState;
use executor_foundation::redact::Redactor;
use executor_foundation::stage::Stage;
use executor_pool::{DaemonLock, OnShutdown, PoolSettings};

use super::metrics::{Metrics, VmLabels};
use super::vm::Vm;

/// `executor pool`
#[derive(Debug, Clone, clap::Args)]
pub struct PoolArgs {}

pub struct Daemon {
    pub loaded: LoadedRecipe,
    pub settings: PoolSettings,
    pub runner: String,
    pub cloud: Arc<dyn Cloud>,
    /// The same connection as `cloud`: its token and discovered APIs seed every `provision`
    /// run, so that making a VM sends no login of its own.
    pub(super) openstack: Arc<OpenStack>,
    pub root: PathBuf,
    pub vms: Mutex<Vec<Vm>>,
    /// Servers handed to jobs that may still run; they count against `max_instances`.
    pub claimed: Mutex<HashSet<String>>,
    pub metrics: Arc<Metrics>,
    pub log: JobLog,
    pub stop: CancellationToken,
    pub(super) pacing: Mutex<Pacing>,
    /// The `provision` runs in flight.
    pub(super) making: Mutex<tokio::task::JoinSet<()>>,
    /// Held while the daemon lives: `executor gc` spares a live daemon's idle VMs.
    _lock: DaemonLock,
}

/// The create rate limit and the backoff while making VMs keeps failing.
pub(super) struct Pacing {
    pub(super) next_create: Instant,
    pub(super) failures_in_a_row: u32,
}

pub fn run(recipes: &[PathBuf], _args: PoolArgs) -> i32 {
    let log = JobLog::stderr(Redactor::from_env(), false);
    let Ok(loaded) = crate::recipe_files::load_or_report(recipes) else {
        return 2;
    };
    if loaded.recipe.pool.is_none() {
        log.error("the recipe has no `pool:` block: nothing to keep warm");
        return 2;
    }
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
        match Daemon::start(loaded, log).await {
            Ok(daemon) => daemon.serve().await,
            Err(message) => {
                eprintln!("executor pool: {message}");
                2
            }
        }
    })
}

impl Daemon {
    async fn start(loaded: LoadedRecipe, log: JobLog) -> Result<Arc<Daemon>, String> {
        let environment = Environment::from_process();
        let exit = ExitCodes::from_lookup(|_| None);
        let interp = Interpreter::new(&loaded, &environment, &log, &exit, CancellationToken::new());
        let state = JobState::in_memory(Map::new());
        let vars = interp
            .evaluate_vars(&state, None, Stage::Provision)
            .map_err(|e| e.message)?;
        let cloud_raw = loaded.json.get("cloud").cloned().unwrap_or(Json::Null);
        let cloud_block = interp
            .render_block("cloud", &cloud_raw, &vars, &state, Stage::Provision)
            .map_err(|e| e.message)?;
        let cloud_settings = settings_of(cloud_block).map_err(|e| e.message)?;
        // Rendered as a job's `pool_claim` renders it, so that both meet on one socket.
        let pool_raw = loaded.json.get("pool").cloned().unwrap_or(Json::Null);
        let pool_block = interp
            .render_block("pool", &pool_raw, &vars, &state, Stage::Provision)
            .map_err(|e| e.message)?;
        let settings: PoolSettings = serde_json::from_value(pool_block)
            .map_err(|e| format!("the recipe's `pool:` block: {e}"))?;
        for period in settings.warm.iter().flat_map(|w| &w.periods) {
            period
                .validate()
                .map_err(|e| format!("pool.warm: a period: {e}"))?;
        }
        let runner = cloud_settings
            .owner
            .clone()
            .unwrap_or_else(|| "executor".into());
        let metrics = Arc::new(Metrics::default());
        let counting = metrics.clone();
        executor_cloud::request_meter::listen(Arc::new(move |service, status| {
            counting.api_request(service, status)
        }));
        let openstack = Arc::new(
            OpenStack::connect(&cloud_settings)
                .await
                .map_err(|e| e.to_string())?,
        );
        let cloud: Arc<dyn Cloud> = openstack.clone();
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
            settings,
            runner,
            cloud,
            openstack,
            root,
            vms: Mutex::new(vec![]),
            claimed: Mutex::new(HashSet::new()),
            metrics,
            log,
            stop: CancellationToken::new(),
            pacing: Mutex::new(Pacing {
                next_create: Instant::now(),
                failures_in_a_row: 0,
            }),
            making: Mutex::new(tokio::task::JoinSet::new()),
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
        crate::signals::cancel_on_signals(self.stop.clone());
        let mut last_health = Instant::now();
        while !self.stop.is_cancelled() {
            self.replace_old().await;
            self.trim_surplus().await;
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

    async fn shut_down(&self) {
        // The stop token cancelled every provision in flight; each deletes its VM. Wait for
        // them (bounded), or the VMs they were making would outlive the daemon.
        let mut making =
            std::mem::take(&mut *self.making.lock().unwrap_or_else(|p| p.into_inner()));
        if !making.is_empty() {
            self.log.info(&format!(
                "stopping; waiting for {} VM(s) being made to be deleted",
                making.len()
            ));
            let drained = async { while making.join_next().await.is_some() {} };
            if tokio::time::timeout(Duration::from_secs(300), drained)
                .await
                .is_err()
            {
                self.log
                    .warn("VMs being made were not all deleted in 5 minutes; gc will reap them");
            }
        }
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
    }
}

pub(super) fn warm_key(w: &executor_pool::WarmKey) -> Map<String, Json> {
    w.key
        .iter()
        .map(|(k, v)| (k.clone(), Json::String(v.clone())))
        .collect()
}
