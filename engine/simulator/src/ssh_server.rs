//! The embedded SSH server that plays a VM's sshd: public-key login with the server's key pair
//! or `ssh_authorized_keys` from user_data, and `exec`/`shell` requests run by bash in the
//! server's working directory.
//!
//! Streams: stdin is forwarded to the process as it arrives (buffered without bound on our
//! side, so a process that ignores its stdin cannot stall the SSH session that also carries
//! its output); stdout and stderr go back as channel data and extended data 1, paced by the
//! client's window, so GBs of output never pile up in memory. The exit code is reported as
//! `exit-status`, death by signal as `exit-signal`.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use russh::keys::ssh_key::PublicKey;
use russh::server::{
    Auth, ChannelOpenHandle, Handle, Msg, PublicKeyOffer, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId, Sig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What one server's sshd knows: who may log in and where commands run.
pub(crate) struct GuestSpec {
    pub authorized: Vec<PublicKey>,
    pub workdir: PathBuf,
}

impl GuestSpec {
    fn allows(&self, key: &PublicKey) -> bool {
        self.authorized
            .iter()
            .any(|k| k.key_data() == key.key_data())
    }
}

/// One SSH connection.
pub(crate) struct GuestSession {
    spec: Arc<GuestSpec>,
    /// Cancelled when the connection ends or the endpoint is dropped: kills its processes.
    cancel: CancellationToken,
    stdin: HashMap<ChannelId, mpsc::UnboundedSender<Vec<u8>>>,
    channels: HashMap<ChannelId, CancellationToken>,
    pids: HashMap<ChannelId, u32>,
    env: Vec<(String, String)>,
    user: String,
}

impl GuestSession {
    pub fn new(spec: Arc<GuestSpec>, cancel: CancellationToken) -> GuestSession {
        GuestSession {
            spec,
            cancel,
            stdin: HashMap::new(),
            channels: HashMap::new(),
            pids: HashMap::new(),
            env: Vec::new(),
            user: String::new(),
        }
    }

    fn start(
        &mut self,
        channel: ChannelId,
        command: Option<&[u8]>,
        handle: Handle,
    ) -> std::io::Result<()> {
        let mut cmd = tokio::process::Command::new("bash");
        match command {
            Some(c) => {
                cmd.arg("-c").arg(String::from_utf8_lossy(c).into_owned());
            }
            None => {
                cmd.arg("-s");
            }
        }
        // The image's own commands (cloud-init) come first, as on a real guest.
        let guest_bin = crate::guest_tools::install(&self.spec.workdir)?;
        let path = match std::env::var_os("PATH") {
            Some(p) => {
                let mut dirs = vec![guest_bin];
                dirs.extend(std::env::split_paths(&p));
                std::env::join_paths(dirs).unwrap_or(p)
            }
            None => guest_bin.into_os_string(),
        };
        cmd.current_dir(&self.spec.workdir)
            .env("PATH", path)
            .env("HOME", &self.spec.workdir)
            .env("USER", &self.user)
            .env("LOGNAME", &self.user)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group, so a drop kills the whole job, grandchildren included.
            .process_group(0);
        let mut child = cmd.spawn()?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        self.stdin.insert(channel, tx);
        let token = self.cancel.child_token();
        self.channels.insert(channel, token.clone());

        if let Some(mut stdin) = child.stdin.take() {
            tokio::spawn(async move {
                while let Some(chunk) = rx.recv().await {
                    if stdin.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
                // Dropping stdin closes the pipe: the process sees EOF.
            });
        }
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let pgid = child.id();
        if let Some(pid) = pgid {
            self.pids.insert(channel, pid);
        }
        tokio::spawn(async move {
            let h1 = handle.clone();
            let h2 = handle.clone();
            let out = pump(stdout, move |b| {
                let h = h1.clone();
                async move { h.data(channel, b).await.is_ok() }
            });
            let err = pump(stderr, move |b| {
                let h = h2.clone();
                async move { h.extended_data(channel, 1, b).await.is_ok() }
            });
            let finished = async {
                tokio::join!(out, err);
                child.wait().await
            };
            let status = tokio::select! {
                s = finished => s,
                _ = token.cancelled() => {
                    if let Some(pid) = pgid {
                        // SAFETY: plain syscall on a process group we created.
                        unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
                    }
                    return;
                }
            };
            if let Ok(status) = status {
                if let Some(code) = status.code() {
                    let _ = handle.exit_status_request(channel, code as u32).await;
                } else if let Some(sig) = status.signal() {
                    let _ = handle
                        .exit_signal_request(
                            channel,
                            signal_name(sig),
                            status.core_dumped(),
                            String::new(),
                            String::new(),
                        )
                        .await;
                }
            }
            let _ = handle.eof(channel).await;
            let _ = handle.close(channel).await;
        });
        Ok(())
    }
}

impl Drop for GuestSession {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn signal_name(sig: i32) -> Sig {
    match sig {
        libc::SIGABRT => Sig::ABRT,
        libc::SIGALRM => Sig::ALRM,
        libc::SIGFPE => Sig::FPE,
        libc::SIGHUP => Sig::HUP,
        libc::SIGILL => Sig::ILL,
        libc::SIGINT => Sig::INT,
        libc::SIGKILL => Sig::KILL,
        libc::SIGPIPE => Sig::PIPE,
        libc::SIGQUIT => Sig::QUIT,
        libc::SIGSEGV => Sig::SEGV,
        libc::SIGTERM => Sig::TERM,
        libc::SIGUSR1 => Sig::USR1,
        other => Sig::Custom(format!("SIG{other}")),
    }
}

fn signal_number(sig: &Sig) -> Option<i32> {
    Some(match sig {
        Sig::ABRT => libc::SIGABRT,
        Sig::ALRM => libc::SIGALRM,
        Sig::FPE => libc::SIGFPE,
        Sig::HUP => libc::SIGHUP,
        Sig::ILL => libc::SIGILL,
        Sig::INT => libc::SIGINT,
        Sig::KILL => libc::SIGKILL,
        Sig::PIPE => libc::SIGPIPE,
        Sig::QUIT => libc::SIGQUIT,
        Sig::SEGV => libc::SIGSEGV,
        Sig::TERM => libc::SIGTERM,
        Sig::USR1 => libc::SIGUSR1,
        Sig::Custom(_) => return None,
    })
}

/// Copies a pipe to the client until EOF or until the client is gone.
async fn pump<R, F, Fut>(reader: Option<R>, mut send: F)
where
    R: AsyncRead + Unpin,
    F: FnMut(Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let Some(mut reader) = reader else { return };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if !send(buf[..n].to_vec()).await {
                    return;
                }
            }
        }
    }
}

impl russh::server::Handler for GuestSession {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(if self.spec.allows(offer.public_key) {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.spec.allows(key.public_key) {
            self.user = user.to_string();
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The Channel object is dropped: traffic is handled through the callbacks below.
        reply.accept().await;
        Ok(())
    }

    /// No terminal is allocated (commands keep plain pipes), but the request succeeds so that
    /// `ssh -t` clients go on, as with an sshd that has no tty to spare.
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    /// Forwards a client's signal to the command's process group.
    async fn signal(
        &mut self,
        channel: ChannelId,
        signal: Sig,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(pgid) = self.pids.get(&channel)
            && let Some(sig) = signal_number(&signal)
        {
            // SAFETY: plain syscall on a process group this session created.
            unsafe { libc::kill(-(*pgid as i32), sig) };
        }
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.env.push((name.to_string(), value.to_string()));
        session.channel_success(channel)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.start(channel, Some(data), session.handle()) {
            Ok(()) => session.channel_success(channel),
            Err(_) => session.channel_failure(channel),
        }
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.start(channel, None, session.handle()) {
            Ok(()) => session.channel_success(channel),
            Err(_) => session.channel_failure(channel),
        }
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(tx) = self.stdin.get(&channel) {
            let _ = tx.send(data.to_vec());
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.stdin.remove(&channel);
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.stdin.remove(&channel);
        self.pids.remove(&channel);
        if let Some(t) = self.channels.remove(&channel) {
            t.cancel();
        }
        Ok(())
    }
}
