//! How a simulated cloud behaves: delays, SSH mode, quotas.

use std::path::PathBuf;
use std::time::Duration;

/// Which SSH server plays the VM behind each ACTIVE server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SshMode {
    /// The embedded russh server (`ssh_server.rs`): no system packages needed.
    #[default]
    Embedded,
    /// A real OpenSSH `sshd` per server (`crate::openssh_server`), started as the current
    /// user with the server's host key and authorized keys; commands run through a
    /// `ForceCommand` in the server's working directory. Floating addresses are forwarded to it.
    OpenSsh,
    /// No SSH endpoint at all (API-only tests).
    Disabled,
}

/// Options for [`super::SimCloud::start`]. `SimOptions::default()` suits tests: short delays.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Time a new server spends in BUILD before it turns ACTIVE (or ERROR).
    pub build_delay: Duration,
    /// Time a deleted server is still shown with status DELETED before it answers 404.
    pub delete_delay: Duration,
    /// Time between ACTIVE and the SSH endpoint accepting connections, as a real guest needs to boot.
    pub ssh_delay: Duration,
    /// Which SSH server to run per server.
    pub ssh_mode: SshMode,
    /// Try port 22 first. When 22 cannot be bound (not root, or taken), a free port is used and
    /// published in the server's `ssh_port` metadata key.
    pub prefer_port_22: bool,
    /// Lifetime of issued tokens.
    pub token_ttl: Duration,
    /// Nova's instance quota for the project.
    pub instance_quota: usize,
    /// How long a minute lasts on the guests' clocks, for cloud-init's `power_state` delay
    /// (tests shorten it).
    pub guest_minute: Duration,
    /// The catalog lists two regions, [`crate::FIRST_REGION`] and [`crate::SECOND_REGION`],
    /// each with a public and an internal URL on a listener of its own, and no admin
    /// interface. Off: one region whose public, internal and admin endpoints share one URL.
    pub two_regions: bool,
    /// Serve HTTPS with a certificate signed by a CA made at start-up (see
    /// [`crate::SimCloud::ca_pem`]). Off: plain HTTP.
    pub tls: bool,
    /// Where per-server working directories are created. `None`: a temporary directory removed
    /// when the simulator shuts down.
    pub state_dir: Option<PathBuf>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            build_delay: Duration::from_millis(300),
            delete_delay: Duration::from_millis(100),
            ssh_delay: Duration::ZERO,
            ssh_mode: SshMode::Embedded,
            prefer_port_22: true,
            token_ttl: Duration::from_secs(3600),
            instance_quota: 10,
            state_dir: None,
            guest_minute: Duration::from_secs(60),
            two_regions: false,
            tls: false,
        }
    }
}
