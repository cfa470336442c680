//! Shared fixtures for the SSH tests: a real sshd on loopback and keys made by ssh-keygen.
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use executor_simulator::openssh_server::{OpenSshServer, OpenSshServerConfig};
use executor_ssh::{
    ClientKey, ConnectOptions, HostKeyPolicy, SshSession, Target, connect, generate_job_key,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A loopback address other than 127.0.0.1, so tests also cover non-default loopback hosts.
pub fn loopback() -> std::net::IpAddr {
    let n = 2 + (std::process::id() % 200) as u8;
    std::net::IpAddr::from([127, 0, 0, n])
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub key: ClientKey,
    pub public: String,
    pub server: OpenSshServer,
}

impl Fixture {
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    pub fn start_with(tweak: impl FnOnce(&mut OpenSshServerConfig)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let generated = generate_job_key(dir.path(), "id_ed25519", "test").expect("keygen");
        let mut config = OpenSshServerConfig::new(vec![generated.public_openssh.clone()]);
        config.listen = loopback();
        tweak(&mut config);
        let server = OpenSshServer::start(&config).expect("sshd starts");
        Fixture {
            dir,
            key: generated.key,
            public: generated.public_openssh,
            server,
        }
    }

    pub fn target(&self) -> Target {
        Target::new(
            self.server.addr().ip().to_string(),
            self.server.port(),
            self.server.user(),
        )
    }

    pub async fn session(&self) -> SshSession {
        connect(
            &self.target(),
            &self.key,
            &HostKeyPolicy::Insecure,
            &ConnectOptions::default(),
        )
        .await
        .expect("connect")
    }

    /// A scratch dir "on the server" (same machine) for pid files and payloads.
    pub fn remote_dir(&self) -> PathBuf {
        let d = self.dir.path().join("remote");
        std::fs::create_dir_all(&d).expect("remote dir");
        d
    }

    pub fn write_script(&self, name: &str, body: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, body).expect("write script");
        path
    }
}

/// Runs a command remotely and returns (stdout, exit code).
pub async fn sh(session: &SshSession, command: &str) -> (String, u32) {
    let out = session
        .run_command(command, None, 1 << 20, &CancellationToken::new())
        .await
        .expect("command runs");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.exit.shell_code(),
    )
}

pub fn ssh_keygen(dir: &Path, name: &str, args: &[&str], passphrase: &str) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(args)
        .args(["-q", "-C", "t", "-N", passphrase, "-f"])
        .arg(&path)
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success(), "ssh-keygen {args:?} failed");
    path
}

/// An AsyncWrite that collects bytes and wakes waiters on every write.
#[derive(Clone, Default)]
pub struct Collector {
    pub bytes: Arc<Mutex<Vec<u8>>>,
    pub notify: Arc<Notify>,
}

impl Collector {
    pub fn take(&self) -> Vec<u8> {
        self.bytes.lock().unwrap().clone()
    }

    /// Waits (bounded) until the collected bytes contain `needle`.
    pub async fn wait_for(&self, needle: &[u8]) {
        let wait = async {
            loop {
                let notified = self.notify.notified();
                if self
                    .bytes
                    .lock()
                    .unwrap()
                    .windows(needle.len())
                    .any(|w| w == needle)
                {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .unwrap_or_else(|_| panic!("never saw {:?}", String::from_utf8_lossy(needle)));
    }
}

impl tokio::io::AsyncWrite for Collector {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.bytes.lock().unwrap().extend_from_slice(buf);
        self.notify.notify_waiters();
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Runs `script` on `session` and cancels it once it printed `started`; the script must
/// then be reported as canceled with its remote processes stopped, within a minute.
pub async fn run_and_cancel_once_started(session: &SshSession, script: &Path) {
    let (out, err) = (Collector::default(), Collector::default());
    let (mut o, mut e) = (out.clone(), err.clone());
    let cancel = CancellationToken::new();
    let opts = executor_ssh::ScriptOptions::default();
    let running = session.run_script(script, &mut o, &mut e, &opts, &cancel);
    let canceller = async {
        out.wait_for(b"started\n").await;
        cancel.cancel();
    };
    let (result, ()) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(running, canceller)
    })
    .await
    .expect("cancellation is reported, not hung");
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            executor_ssh::SshError::Canceled {
                remote_stopped: true
            }
        ),
        "{err:?}"
    );
}

/// True while a process with this pid runs on this machine (the "server"); zombies count as dead.
pub fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return false;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, None | Some("Z") | Some("X"))
}

/// Waits (bounded, no speed claim) until `pid` is gone; true if it went.
pub async fn gone(pid: i32) -> bool {
    for _ in 0..100 {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
