//! One SSH endpoint per ACTIVE server, listening on the server's own loopback addresses
//! (fixed IP, plus floating IPs while associated), all on the same port: 22 when it can be
//! bound, otherwise a free port chosen on the first address. The endpoint is either the
//! embedded russh server or a real OpenSSH sshd (then extra addresses are TCP-forwarded to it).

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use russh::keys::PrivateKey;
use russh::keys::ssh_key::PublicKey;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::options::SshMode;
use super::ssh_server::{GuestSession, GuestSpec};
use crate::openssh_server::{OpenSshServer, OpenSshServerConfig};

/// What the life cycle hands over when a server's guest "boots".
pub(crate) struct EndpointSpec {
    pub host_key: Arc<PrivateKey>,
    /// OpenSSH public key lines; unparsable ones are ignored, as sshd ignores bad lines.
    pub authorized_keys: Vec<String>,
    pub workdir: PathBuf,
}

enum Backend {
    Embedded {
        config: Arc<russh::server::Config>,
        spec: Arc<GuestSpec>,
    },
    /// Dropping the server kills sshd and every session it runs.
    OpenSsh {
        _server: Box<OpenSshServer>,
        primary: SocketAddr,
    },
}

struct Endpoint {
    port: u16,
    cancel: CancellationToken,
    backend: Backend,
    listeners: HashMap<Ipv4Addr, CancellationToken>,
}

pub(crate) struct SshHub {
    prefer_22: bool,
    mode: SshMode,
    endpoints: Mutex<HashMap<String, Endpoint>>,
    /// Ports picked at ACTIVE for guests still booting: bound, so the port is theirs and can be
    /// published, but not listening, so connections are refused as by a booting guest.
    reserved: Mutex<HashMap<String, tokio::net::TcpSocket>>,
}

fn reserve_socket(ip: Ipv4Addr, port: u16) -> io::Result<tokio::net::TcpSocket> {
    let s = tokio::net::TcpSocket::new_v4()?;
    s.set_reuseaddr(true)?;
    s.bind(SocketAddr::from((ip, port)))?;
    Ok(s)
}

fn bind(ip: Ipv4Addr, port: u16) -> io::Result<TcpListener> {
    let l = std::net::TcpListener::bind(SocketAddr::from((ip, port)))?;
    l.set_nonblocking(true)?;
    TcpListener::from_std(l)
}

impl SshHub {
    pub fn new(prefer_22: bool, mode: SshMode) -> SshHub {
        SshHub {
            prefer_22,
            mode,
            endpoints: Mutex::new(HashMap::new()),
            reserved: Mutex::new(HashMap::new()),
        }
    }

    fn reserved(&self) -> std::sync::MutexGuard<'_, HashMap<String, tokio::net::TcpSocket>> {
        self.reserved.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Picks the SSH port of a server that just turned ACTIVE, on its first address, so that it
    /// can be published before the guest's sshd is up; [`SshHub::start`] later listens on it.
    pub fn reserve(&self, server_id: &str, first: Ipv4Addr) -> io::Result<u16> {
        let sock = match self.prefer_22 {
            true => reserve_socket(first, 22).or_else(|_| reserve_socket(first, 0))?,
            false => reserve_socket(first, 0)?,
        };
        let port = sock.local_addr()?.port();
        self.reserved().insert(server_id.to_string(), sock);
        Ok(port)
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Endpoint>> {
        self.endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the endpoint of `server_id` on `addrs`; returns its port.
    pub async fn start(
        &self,
        server_id: &str,
        addrs: &[Ipv4Addr],
        spec: EndpointSpec,
    ) -> io::Result<u16> {
        let Some(&first) = addrs.first() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "server has no address",
            ));
        };
        let cancel = CancellationToken::new();
        let reserved = self.reserved().remove(server_id);
        let mut ep = match self.mode {
            SshMode::OpenSsh => {
                // sshd binds the port itself: hand it over by closing our socket first.
                let port = reserved.and_then(|s| s.local_addr().ok()).map(|a| a.port());
                self.start_openssh(first, port, spec, cancel).await?
            }
            _ => self.start_embedded(first, reserved, spec, cancel)?,
        };
        for &ip in &addrs[1..] {
            add_listener(&mut ep, ip);
        }
        let port = ep.port;
        if let Some(old) = self.map().insert(server_id.to_string(), ep) {
            old.cancel.cancel();
        }
        Ok(port)
    }

    fn start_embedded(
        &self,
        first: Ipv4Addr,
        reserved: Option<tokio::net::TcpSocket>,
        spec: EndpointSpec,
        cancel: CancellationToken,
    ) -> io::Result<Endpoint> {
        let listener = match (reserved, self.prefer_22) {
            (Some(sock), _) => sock.listen(1024)?,
            (None, true) => bind(first, 22).or_else(|_| bind(first, 0))?,
            (None, false) => bind(first, 0)?,
        };
        let port = listener.local_addr()?.port();
        let config = Arc::new(russh::server::Config {
            server_id: russh::SshId::Standard("SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13".into()),
            methods: (&[russh::MethodKind::PublicKey][..]).into(),
            auth_rejection_time: Duration::from_millis(20),
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys: vec![(*spec.host_key).clone()],
            nodelay: true,
            ..Default::default()
        });
        let guest = Arc::new(GuestSpec {
            authorized: spec
                .authorized_keys
                .iter()
                .filter_map(|l| PublicKey::from_openssh(l.trim()).ok())
                .collect(),
            workdir: spec.workdir,
        });
        let t = cancel.child_token();
        tokio::spawn(accept_loop(
            listener,
            config.clone(),
            guest.clone(),
            t.clone(),
        ));
        Ok(Endpoint {
            port,
            cancel,
            backend: Backend::Embedded {
                config,
                spec: guest,
            },
            listeners: HashMap::from([(first, t)]),
        })
    }

    async fn start_openssh(
        &self,
        first: Ipv4Addr,
        reserved_port: Option<u16>,
        spec: EndpointSpec,
        cancel: CancellationToken,
    ) -> io::Result<Endpoint> {
        let host_key = spec
            .host_key
            .to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .map_err(io::Error::other)?
            .to_string();
        let workdir = spec.workdir.display().to_string();
        let mut extra = vec![];
        // Run every command in the server's working directory, with it as HOME, like the
        // embedded server. Paths with quotes are left to sshd's defaults rather than mis-quoted.
        if !workdir.contains(['\'', '"', '\\', '$', '`', '\n']) {
            extra.push(format!(
                "ForceCommand cd '{workdir}' && HOME='{workdir}' exec bash -c \"${{SSH_ORIGINAL_COMMAND:-exec bash -s}}\""
            ));
        }
        let mut cfg = OpenSshServerConfig::new(spec.authorized_keys.clone());
        cfg.listen = first.into();
        cfg.host_key = Some(host_key);
        cfg.extra_config = extra;
        let prefer_22 = self.prefer_22;
        let server = tokio::task::spawn_blocking(move || {
            if let Some(port) = reserved_port {
                cfg.port = Some(port);
                if let Ok(s) = OpenSshServer::start(&cfg) {
                    return Ok(s);
                }
                cfg.port = None;
            }
            if prefer_22 {
                cfg.port = Some(22);
                if let Ok(s) = OpenSshServer::start(&cfg) {
                    return Ok(s);
                }
                cfg.port = None;
            }
            OpenSshServer::start(&cfg)
        })
        .await
        .map_err(io::Error::other)??;
        let primary = server.addr();
        Ok(Endpoint {
            port: primary.port(),
            cancel,
            backend: Backend::OpenSsh {
                _server: Box::new(server),
                primary,
            },
            listeners: HashMap::new(),
        })
    }

    /// Makes the endpoint listen on exactly `addrs` (after a floating IP came or went).
    pub fn set_addresses(&self, server_id: &str, addrs: &[Ipv4Addr]) {
        let mut map = self.map();
        let Some(ep) = map.get_mut(server_id) else {
            return;
        };
        ep.listeners.retain(|ip, t| {
            let keep = addrs.contains(ip);
            if !keep {
                t.cancel();
            }
            keep
        });
        for &ip in addrs {
            if !ep.listeners.contains_key(&ip) {
                add_listener(ep, ip);
            }
        }
    }

    /// The SSH port of a server whose endpoint is up.
    pub fn port(&self, server_id: &str) -> Option<u16> {
        self.map().get(server_id).map(|e| e.port)
    }

    /// Stops listening and cuts every connection of the server. False when it had no endpoint.
    pub fn stop(&self, server_id: &str) -> bool {
        self.reserved().remove(server_id);
        match self.map().remove(server_id) {
            Some(ep) => {
                ep.cancel.cancel();
                true
            }
            None => false,
        }
    }

    pub fn stop_all(&self) {
        self.reserved().clear();
        for (_, ep) in self.map().drain() {
            ep.cancel.cancel();
        }
    }
}

fn add_listener(ep: &mut Endpoint, ip: Ipv4Addr) {
    match bind(ip, ep.port) {
        Ok(l) => {
            let t = ep.cancel.child_token();
            match &ep.backend {
                Backend::Embedded { config, spec } => {
                    tokio::spawn(accept_loop(l, config.clone(), spec.clone(), t.clone()));
                }
                Backend::OpenSsh { primary, .. } => {
                    tokio::spawn(forward_loop(l, *primary, t.clone()));
                }
            }
            ep.listeners.insert(ip, t);
        }
        Err(e) => tracing::warn!("SSH endpoint cannot listen on {ip}:{}: {e}", ep.port),
    }
}

async fn accept_loop(
    listener: TcpListener,
    config: Arc<russh::server::Config>,
    spec: Arc<GuestSpec>,
    cancel: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
        };
        let _ = stream.set_nodelay(true);
        let conn = cancel.child_token();
        let config = config.clone();
        let spec = spec.clone();
        tokio::spawn(async move {
            let stream = Severable::new(stream, conn.clone());
            let session = GuestSession::new(spec, conn.child_token());
            if let Ok(running) = russh::server::run_stream(config, stream, session).await {
                let _ = running.await;
            }
        });
    }
}

/// Forwards connections on an extra address (a floating IP) to the real sshd.
async fn forward_loop(listener: TcpListener, target: SocketAddr, cancel: CancellationToken) {
    loop {
        let mut inbound = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
        };
        let conn = cancel.child_token();
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(target).await else {
                return;
            };
            tokio::select! {
                _ = conn.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
            }
        });
    }
}

/// A TCP stream that fails every read and write once its token is cancelled, so that a
/// "dropped" endpoint cuts live sessions abruptly instead of closing them politely.
struct Severable {
    inner: TcpStream,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    dead: bool,
}

impl Severable {
    fn new(inner: TcpStream, token: CancellationToken) -> Severable {
        Severable {
            inner,
            cut: Box::pin(token.cancelled_owned()),
            dead: false,
        }
    }

    fn is_cut(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.dead && self.cut.as_mut().poll(cx).is_ready() {
            self.dead = true;
        }
        self.dead
    }
}

fn severed() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "SSH endpoint dropped")
}

impl AsyncRead for Severable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.is_cut(cx) {
            return Poll::Ready(Err(severed()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Severable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.is_cut(cx) {
            return Poll::Ready(Err(severed()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.is_cut(cx) {
            return Poll::Ready(Err(severed()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
