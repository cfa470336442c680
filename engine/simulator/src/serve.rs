//! `executor sim serve`: run the simulated cloud in the foreground for manual use.

use std::path::PathBuf;
use std::time::Duration;

use super::{SimCloud, SimOptions, SshMode};

/// `executor sim ...`
#[derive(Debug, Clone, clap::Subcommand)]
pub enum SimCommand {
    /// Start a simulated OpenStack on 127.0.0.1, print its clouds.yaml and OS_* variables,
    /// and run until Ctrl-C.
    Serve(ServeArgs),
}

/// Start a simulated OpenStack on 127.0.0.1 and print how to reach it; runs until Ctrl-C.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Time a new server stays in BUILD before ACTIVE.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub build_delay: Duration,
    /// Time between ACTIVE and the server's SSH endpoint coming up.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub ssh_delay: Duration,
    /// Do not run SSH endpoints for servers.
    #[arg(long)]
    pub no_ssh: bool,
    /// Serve HTTPS with a CA made now, written beside clouds.yaml as `ca.pem`.
    #[arg(long)]
    pub tls: bool,
    /// A catalog of two regions (RegionOne, RegionTwo), each with its own public and internal URL.
    #[arg(long)]
    pub two_regions: bool,
    /// Directory for clouds.yaml and the servers' working directories (default: a temporary one).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

/// Runs an `executor sim` command to completion; returns the process exit code.
pub fn run(cmd: SimCommand) -> i32 {
    let SimCommand::Serve(args) = cmd;
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    rt.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> i32 {
    let opts = SimOptions {
        build_delay: args.build_delay,
        ssh_delay: args.ssh_delay,
        ssh_mode: if args.no_ssh {
            SshMode::Disabled
        } else {
            SshMode::Embedded
        },
        state_dir: args.state_dir.clone(),
        tls: args.tls,
        two_regions: args.two_regions,
        ..SimOptions::default()
    };
    let sim = match SimCloud::start(opts).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let dir = args.state_dir.clone().unwrap_or_else(std::env::temp_dir);
    let written = match sim.write_clouds_yaml(&dir) {
        Ok(p) => p,
        Err(e) => {
            eprintln!(
                "error: cannot write clouds.yaml into {}: {e}",
                dir.display()
            );
            return 1;
        }
    };
    println!(
        "# Simulated OpenStack at {} (Ctrl-C stops it)",
        sim.base_url()
    );
    println!("# clouds.yaml written to {}:", written.display());
    println!("{}", sim.clouds_yaml());
    println!("# Either use it:");
    println!(
        "export OS_CLIENT_CONFIG_FILE={} OS_CLOUD={}",
        written.display(),
        super::CLOUD_NAME
    );
    println!("# or these variables:");
    for (k, v) in sim.os_env() {
        println!("export {k}={v}");
    }
    match sim.write_ca(&dir) {
        Ok(Some(ca)) => println!(
            "# HTTPS: trust the test CA with\nexport OS_CACERT={}",
            ca.display()
        ),
        Ok(None) => {}
        Err(e) => {
            eprintln!("error: cannot write ca.pem into {}: {e}", dir.display());
            return 1;
        }
    }
    println!("# Servers' SSH port is in their metadata key `ssh_port`.");
    wait_for_stop_signal().await;
    sim.shutdown().await;
    0
}

/// Ctrl-C, or SIGTERM from a process manager.
async fn wait_for_stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
