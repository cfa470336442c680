//! Where the back end meets the step API: the shared connection, error classes, the job's
//! trusted identity and the job-state keys the OpenStack steps share.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use crate::steps::StepError;
use crate::steps::context::StepContext;
use executor_cloud::backend::Cloud;
use executor_cloud::credentials::{EnvLookup, process_env};
use executor_cloud::openstack::OpenStack;
use executor_cloud::ownership::{Ownership, POOL_PROJECT};
use executor_cloud::settings::CloudSettings;
use executor_cloud::transport::ConnectOptions;
use executor_foundation::job_response;
use executor_foundation::stage::Stage;
use executor_foundation::state_binding;

/// State key: the server's id.
pub const STATE_SERVER_ID: &str = "server_id";
/// State key: the exact server name (saved before the create request is sent).
pub const STATE_SERVER_NAME: &str = "server_name";
/// State key: the address chosen for SSH.
pub const STATE_ADDRESS: &str = "server_address";
/// State key: the floating IP's id.
pub const STATE_FLOATING_IP_ID: &str = "floating_ip_id";
/// State key: the floating IP's address.
pub const STATE_FLOATING_IP: &str = "floating_ip";
/// State key: the per-job key pair's name.
pub const STATE_KEYPAIR: &str = "keypair_name";
/// State key: volumes made for the job that Nova does not delete with the server.
pub const STATE_VOLUMES: &str = "volume_ids";
/// State key: a floating IP was asked for (saved before the request, so that cleanup looks
/// for one whose id never reached the state).
pub const STATE_FLOATING_IP_REQUESTED: &str = "floating_ip_requested";
/// State key: the cloud session (Keystone token, catalog, discovered compute API) that the
/// job's later stage processes reuse instead of authenticating and discovering again. The
/// token is a secret: the key is private (templates never see it, `_` prefix) and the state
/// file is mode 0600.
pub const STATE_CLOUD_SESSION: &str = "_cloud_session";

/// The cloud as the steps see it. Tests may install their own implementation first.
pub struct CloudHandle {
    /// The back end.
    pub cloud: Arc<dyn Cloud>,
    /// The recipe's `cloud` settings.
    pub settings: CloudSettings,
    /// The same back end when it is OpenStack: its session is saved in the job state.
    pub openstack: Option<Arc<OpenStack>>,
    /// The session generation last saved (`u64::MAX`: none yet).
    pub saved_generation: AtomicU64,
}

/// The recipe's `cloud` block as settings (absent: defaults).
pub fn settings_of(value: Value) -> Result<CloudSettings, StepError> {
    if value.is_null() {
        return Ok(CloudSettings::default());
    }
    serde_json::from_value(value)
        .map_err(|e| StepError::invalid(format!("the recipe's `cloud` block: {e}")))
}

/// The process's cloud connection, made on first use: with the token and compute API an
/// earlier stage of the job saved in the job state when they are still good, else by
/// authenticating. Whatever the connection learned since the last save (a new token after a
/// 401, a discovery) is saved for the job's later stages on every call.
pub async fn cloud(cx: &mut StepContext<'_>) -> Result<Arc<CloudHandle>, StepError> {
    let services = cx.services;
    let saved = cx.state.get(STATE_CLOUD_SESSION).cloned();
    let purpose = cx.stage.name();
    let log = cx.log;
    let handle = services
        .get_or_try_init::<CloudHandle, _, _>(|| async {
            let settings = settings_of(services.settings("cloud")?)?;
            let options = ConnectOptions {
                session: saved,
                purpose: Some(purpose.to_string()),
            };
            let os = Arc::new(OpenStack::connect_with(&settings, &process_env, options).await?);
            // Once per stage process, where the job's author and the operator both look.
            if !os.verifies_certificates() {
                log.warn(
                    "TLS certificate verification is OFF for the cloud (verify: false or \
                     OS_INSECURE): anyone on the path can read the token and the requests; \
                     set `cacert` instead outside a test cloud",
                );
            }
            Ok(CloudHandle {
                cloud: os.clone(),
                settings,
                openstack: Some(os),
                saved_generation: AtomicU64::new(u64::MAX),
            })
        })
        .await?;
    save_session(cx, &handle).await;
    Ok(handle)
}

/// Saves the connection's session in the job state when it changed. Failing to is no
/// failure: the next stage authenticates again.
async fn save_session(cx: &mut StepContext<'_>, handle: &CloudHandle) {
    let Some(os) = &handle.openstack else {
        return;
    };
    let generation = os.session_generation();
    if handle.saved_generation.swap(generation, Ordering::SeqCst) == generation {
        return;
    }
    let Some(session) = os.saved_session().await else {
        return;
    };
    if cx.state.get(STATE_CLOUD_SESSION) == Some(&session) {
        return;
    }
    if let Err(e) = save(cx, STATE_CLOUD_SESSION, session) {
        // The message names the state file, never the token.
        tracing::warn!(error = %e.message, "cannot keep the cloud session for later stages");
    }
}

fn text_of(v: &Value) -> Option<String> {
    job_response::text_of(v)
}

/// The job's identity for ownership metadata and, through `trusted`, the server's name.
///
/// Job and project ids come from gitlab-runner's `JOB_RESPONSE_FILE` and nowhere else: a
/// pipeline can set `CI_JOB_ID` and friends, and a cleanup that believed them would delete
/// another job's server. gitlab-runner always writes the file, so without it the step fails
/// rather than guess. The runner comes from the recipe's `cloud.owner`, which a job cannot
/// change.
pub fn job_ownership(settings: &CloudSettings, env: EnvLookup<'_>) -> Result<Ownership, StepError> {
    let runner = settings.owner.clone().unwrap_or_else(|| "executor".into());
    let path = env(job_response::JOB_RESPONSE_FILE);
    match job_response::read(path.as_deref()) {
        Ok(id) => Ok(Ownership {
            runner,
            project: id.project,
            job: id.job,
        }),
        Err(e) if e.is_absent() => Err(StepError::invalid(e.to_string())),
        Err(e) => Err(StepError::other(e.to_string())),
    }
}

/// This job's ownership, from the context.
///
/// The pool daemon provisions with no job at all (no payload, no job variables): its VMs are
/// owned by the pool until a job claims one.
pub fn owner(cx: &mut StepContext<'_>, settings: &CloudSettings) -> Result<Ownership, StepError> {
    let vm = cx.pool.get("vm").and_then(text_of);
    if cx.stage == Stage::Provision
        && cx.job.is_empty()
        && process_env("JOB_RESPONSE_FILE").is_none()
        && let Some(vm) = vm
    {
        return Ok(Ownership {
            runner: settings.owner.clone().unwrap_or_else(|| "executor".into()),
            project: POOL_PROJECT.into(),
            job: vm,
        });
    }
    let ownership = job_ownership(settings, &process_env)?;
    // The state records the runner too, so that a recipe with another owner never acts on it.
    let changed = state_binding::bind_owner(cx.state, &ownership.runner)
        .map_err(|e| StepError::other(e.to_string()))?;
    if changed {
        cx.state
            .save()
            .map_err(|e| StepError::other(format!("cannot save the job state: {e}")))?;
    }
    Ok(ownership)
}

/// Saves `key` in the job state at once (a killed stage keeps it).
pub fn save(cx: &mut StepContext<'_>, key: &str, value: Value) -> Result<(), StepError> {
    if key == STATE_SERVER_ID {
        executor_foundation::events::set_context("server_id", value.clone());
    }
    if value.is_null() {
        cx.state.remove(key);
    } else {
        cx.state.set(key, value);
    }
    cx.state
        .save()
        .map_err(|e| StepError::other(format!("cannot save the job state: {e}")))
}

/// A string from the job state.
pub fn state_text(cx: &StepContext<'_>, key: &str) -> Option<String> {
    cx.state.get(key).and_then(text_of)
}

/// The server id: the argument, else the job state.
pub fn server_id(cx: &StepContext<'_>, arg: &Option<String>) -> Result<String, StepError> {
    arg.clone()
        .filter(|s| !s.is_empty())
        .or_else(|| state_text(cx, STATE_SERVER_ID))
        .ok_or_else(|| {
            StepError::invalid(
                "no server: pass `server` or run create_server first (state.server_id)",
            )
        })
}
