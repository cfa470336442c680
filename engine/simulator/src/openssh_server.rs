//! A real OpenSSH `sshd` on loopback, for tests, benchmarks and the simulator's real-sshd mode.
//!
//! It runs in the foreground (`-D -e`) as the current user from a private temp dir, with its own
//! host key and authorized_keys, and dies with this value (the whole process group, so that
//! per-connection children die too and clients see the connection drop).

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use russh::keys::ssh_key::{Algorithm, LineEnding, PrivateKey, PublicKey};

/// What to start.
#[derive(Debug, Clone)]
pub struct OpenSshServerConfig {
    /// Loopback address to listen on, e.g. `127.0.0.1` or `127.0.0.7`.
    pub listen: IpAddr,
    /// `None` picks a free port.
    pub port: Option<u16>,
    /// Public-key lines accepted for the current user.
    pub authorized_keys: Vec<String>,
    /// Host key algorithm when `host_key` is `None`.
    pub host_key_algorithm: Algorithm,
    /// Use this host key (OpenSSH private-key text) instead of generating one.
    pub host_key: Option<String>,
    /// Extra `sshd_config` lines.
    pub extra_config: Vec<String>,
}

impl OpenSshServerConfig {
    pub fn new(authorized_keys: Vec<String>) -> Self {
        OpenSshServerConfig {
            listen: IpAddr::from([127, 0, 0, 1]),
            port: None,
            authorized_keys,
            host_key_algorithm: Algorithm::Ed25519,
            host_key: None,
            extra_config: Vec::new(),
        }
    }
}

/// A running sshd. Killed on drop.
pub struct OpenSshServer {
    child: Child,
    addr: SocketAddr,
    user: String,
    host_key: PublicKey,
    host_key_private: String,
    log: Arc<Mutex<String>>,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for OpenSshServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenSshServer")
            .field("addr", &self.addr)
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

/// Where sshd lives; it insists on being started by absolute path.
pub fn find_sshd() -> Option<PathBuf> {
    let candidates = ["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"];
    candidates
        .iter()
        .map(PathBuf::from)
        .chain(
            std::env::var_os("PATH")
                .into_iter()
                .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                .map(|d| d.join("sshd")),
        )
        .find(|p| p.is_file())
}

/// The name of the user this process runs as (the one sshd lets in).
pub fn current_user() -> std::io::Result<String> {
    // SAFETY: getpwuid returns a pointer into static storage or null; we copy the name at once.
    unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        if pw.is_null() || (*pw).pw_name.is_null() {
            return Err(std::io::Error::other(
                "the current user has no passwd entry",
            ));
        }
        Ok(std::ffi::CStr::from_ptr((*pw).pw_name)
            .to_string_lossy()
            .into_owned())
    }
}

fn write_private(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    f.write_all(text.as_bytes())
}

fn free_port(ip: IpAddr) -> std::io::Result<u16> {
    Ok(TcpListener::bind((ip, 0))?.local_addr()?.port())
}

impl OpenSshServer {
    /// Starts sshd and waits until it listens (at most 20 s).
    pub fn start(config: &OpenSshServerConfig) -> std::io::Result<Self> {
        let sshd = find_sshd().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "sshd not found (install openssh-server)",
            )
        })?;
        let user = current_user()?;
        // sshd refuses to start as root without its privilege-separation directory.
        if unsafe { libc::geteuid() } == 0 {
            std::fs::create_dir_all("/run/sshd")?;
        }
        let dir = tempfile::Builder::new()
            .prefix("executor-sshd-")
            .tempdir()?;
        let host_key_private = match &config.host_key {
            Some(text) => text.clone(),
            None => PrivateKey::random(&mut rand::rng(), config.host_key_algorithm.clone())
                .and_then(|k| k.to_openssh(LineEnding::LF).map(|s| s.to_string()))
                .map_err(std::io::Error::other)?,
        };
        let host_key = PrivateKey::from_openssh(&host_key_private)
            .map_err(std::io::Error::other)?
            .public_key()
            .clone();
        let host_key_path = dir.path().join("host_key");
        write_private(&host_key_path, &host_key_private, 0o600)?;
        let auth_keys_path = dir.path().join("authorized_keys");
        write_private(
            &auth_keys_path,
            &(config.authorized_keys.join("\n") + "\n"),
            0o600,
        )?;

        let port = match config.port {
            Some(p) => p,
            None => free_port(config.listen)?,
        };
        let listen = SocketAddr::new(config.listen, port);
        // `SetEnv SHLVL=1`: bash sources ~/.bashrc for commands run by sshd only in a first-level
        // shell. A test host's .bashrc (pyenv's rehash with its lock file, say) must not slow or
        // break the commands of tests that kill sessions mid-way.
        let mut sshd_config = format!(
            "ListenAddress {listen}\n\
             SetEnv SHLVL=1\n\
             HostKey {host_key}\n\
             AuthorizedKeysFile {auth_keys}\n\
             PidFile none\n\
             StrictModes no\n\
             UsePAM no\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\n\
             AllowUsers {user}\n\
             LogLevel INFO\n\
             MaxStartups 100:30:200\n\
             MaxSessions 50\n",
            host_key = host_key_path.display(),
            auth_keys = auth_keys_path.display(),
        );
        for line in &config.extra_config {
            sshd_config.push_str(line);
            sshd_config.push('\n');
        }
        let config_path = dir.path().join("sshd_config");
        write_private(&config_path, &sshd_config, 0o600)?;

        let mut child = Command::new(&sshd)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Own process group: dropping us kills the connection children as well.
            .process_group(0)
            .spawn()?;

        let log = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        if let Some(stderr) = child.stderr.take() {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut ready = Some(ready_tx);
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains("Server listening on")
                        && let Some(tx) = ready.take()
                    {
                        let _ = tx.send(());
                    }
                    if let Ok(mut log) = log.lock() {
                        log.push_str(&line);
                        log.push('\n');
                    }
                }
            });
        }
        let mut server = OpenSshServer {
            child,
            addr: listen,
            user,
            host_key,
            host_key_private,
            log,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if ready_rx.recv_timeout(Duration::from_millis(50)).is_ok() {
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                return Err(std::io::Error::other(format!(
                    "sshd exited with {status}: {}",
                    server.log()
                )));
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other(format!(
                    "sshd did not start listening within 20 s: {}",
                    server.log()
                )));
            }
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The user that can log in (the one running sshd).
    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn host_key(&self) -> &PublicKey {
        &self.host_key
    }

    /// The host key's private half, to start another server with the same identity.
    pub fn host_key_private(&self) -> &str {
        &self.host_key_private
    }

    /// The private temp dir (config, keys); removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// sshd's log so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Kills sshd, its per-connection processes and everything they started, like a VM that
    /// crashed. (sshd puts each connection in its own session, so the process group alone is
    /// not enough.)
    pub fn kill(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            for victim in process_tree(pid) {
                // SAFETY: plain syscall on processes this server started.
                unsafe {
                    libc::kill(victim, libc::SIGKILL);
                }
            }
        }
        let _ = self.child.wait();
    }
}

/// `root` and all its descendants, from /proc, collected before anything is killed.
fn process_tree(root: i32) -> Vec<i32> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // The command name may contain spaces and parentheses; fields resume after the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<i32>().ok());
            if let Some(ppid) = ppid {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree
}

impl Drop for OpenSshServer {
    fn drop(&mut self) {
        self.kill();
    }
}
