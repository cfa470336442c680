//! Every step kind a recipe can use. Each kind is one type with its arguments and one async
//! `run`; this file only lists them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use context::{Outputs, RunArgs, StepContext};
pub use error::StepError;
pub use services::Services;

pub mod cloud_glue;
pub mod context;
pub mod debug_hold;
pub mod error;
pub mod services;
pub mod ssh_connection;
pub mod ssh_sessions;

pub mod console_log;
pub mod create_server;
pub mod delete_server;
pub mod fail;
pub mod floating_ip;
pub mod keypair;
pub mod log;
pub mod pool_claim;
pub mod save_state;
pub mod server_address;
pub mod set_vars;
pub mod sleep;
pub mod ssh_command;
pub mod ssh_generate_key;
pub mod ssh_probe;
pub mod ssh_run_script;
pub mod ssh_upload;
pub mod wait_server;

/// A step's kind and its arguments, after rendering.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // parsed once per stage; boxing buys nothing
pub enum StepKind {
    Log(log::Log),
    Fail(fail::Fail),
    SetVars(set_vars::SetVars),
    SaveState(save_state::SaveState),
    Sleep(sleep::Sleep),
    CreateServer(create_server::CreateServer),
    WaitServer(wait_server::WaitServer),
    ServerAddress(server_address::ServerAddress),
    FloatingIp(floating_ip::FloatingIp),
    Keypair(keypair::Keypair),
    ConsoleLog(console_log::ConsoleLog),
    DeleteServer(delete_server::DeleteServer),
    SshGenerateKey(ssh_generate_key::SshGenerateKey),
    SshProbe(ssh_probe::SshProbe),
    SshRunScript(ssh_run_script::SshRunScript),
    SshCommand(ssh_command::SshCommand),
    SshUpload(ssh_upload::SshUpload),
    PoolClaim(pool_claim::PoolClaim),
}

impl StepKind {
    pub async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outputs, StepError> {
        match self {
            Self::Log(s) => s.run(cx).await,
            Self::Fail(s) => s.run(cx).await,
            Self::SetVars(s) => s.run(cx).await,
            Self::SaveState(s) => s.run(cx).await,
            Self::Sleep(s) => s.run(cx).await,
            Self::CreateServer(s) => s.run(cx).await,
            Self::WaitServer(s) => s.run(cx).await,
            Self::ServerAddress(s) => s.run(cx).await,
            Self::FloatingIp(s) => s.run(cx).await,
            Self::Keypair(s) => s.run(cx).await,
            Self::ConsoleLog(s) => s.run(cx).await,
            Self::DeleteServer(s) => s.run(cx).await,
            Self::SshGenerateKey(s) => s.run(cx).await,
            Self::SshProbe(s) => s.run(cx).await,
            Self::SshRunScript(s) => s.run(cx).await,
            Self::SshCommand(s) => s.run(cx).await,
            Self::SshUpload(s) => s.run(cx).await,
            Self::PoolClaim(s) => s.run(cx).await,
        }
    }
}
