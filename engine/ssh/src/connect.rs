//! Opening an authenticated SSH session with bounded waits at every step.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use russh::client::{self, Handle};
use russh::keys::PrivateKeyWithHashAlg;
use russh::keys::ssh_key::PublicKey;
use tokio::net::TcpStream;

use super::errors::SshError;
use super::host_key::{
    HostKeyObservation, HostKeyPolicy, TrustingHandler, describe, host_key_to_pin,
};
use super::keys::ClientKey;

/// Where to connect and as whom.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: String,
}

impl Target {
    pub fn new(host: impl Into<String>, port: u16, user: impl Into<String>) -> Self {
        Target {
            host: host.into(),
            port,
            user: user.into(),
        }
    }

    /// `host:port`, with IPv6 literals bracketed.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Time limits and keepalive for one connection.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// TCP connect (russh itself has none).
    pub tcp_timeout: Duration,
    /// Version exchange plus key exchange.
    pub handshake_timeout: Duration,
    /// Public-key authentication.
    pub auth_timeout: Duration,
    /// Opening a channel and starting a command.
    pub channel_timeout: Duration,
    /// Sent when the server has been silent this long; keeps NAT mappings of silent jobs alive.
    pub keepalive_interval: Duration,
    /// Unanswered keepalives before the connection counts as lost.
    pub keepalive_max: usize,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            tcp_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(20),
            auth_timeout: Duration::from_secs(20),
            channel_timeout: Duration::from_secs(20),
            keepalive_interval: Duration::from_secs(15),
            keepalive_max: 4,
        }
    }
}

/// How long each phase of [`connect`] took.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectTimings {
    pub tcp: Duration,
    pub handshake: Duration,
    pub auth: Duration,
}

/// An authenticated SSH connection.
pub struct SshSession {
    pub(crate) handle: Handle<TrustingHandler>,
    pub(crate) target: Target,
    pub(crate) options: ConnectOptions,
    host_key: PublicKey,
    timings: ConnectTimings,
}

impl std::fmt::Debug for SshSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshSession")
            .field("target", &self.target)
            .field("host_key", &describe(&self.host_key))
            .finish_non_exhaustive()
    }
}

/// Connects, checks the host key against `policy` and authenticates with `key`.
pub async fn connect(
    target: &Target,
    key: &ClientKey,
    policy: &HostKeyPolicy,
    options: &ConnectOptions,
) -> Result<SshSession, SshError> {
    let addr = target.addr();
    let started = Instant::now();
    let stream = match tokio::time::timeout(
        options.tcp_timeout,
        TcpStream::connect((target.host.as_str(), target.port)),
    )
    .await
    {
        Err(_) => {
            return Err(SshError::Timeout {
                addr,
                what: "TCP connect",
                after: options.tcp_timeout,
            });
        }
        Ok(Err(e)) => {
            return Err(SshError::Connect {
                addr,
                reason: e.to_string(),
            });
        }
        Ok(Ok(stream)) => stream,
    };
    // Interactive output must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let tcp = started.elapsed();

    let config = Arc::new(client::Config {
        keepalive_interval: Some(options.keepalive_interval),
        keepalive_max: options.keepalive_max,
        // A legitimate script may print nothing for hours; keepalive detects dead peers instead.
        inactivity_timeout: None,
        nodelay: true,
        ..client::Config::default()
    });
    let seen = Arc::new(Mutex::new(HostKeyObservation::default()));
    let handler = TrustingHandler {
        policy: policy.clone(),
        seen: seen.clone(),
    };
    let handshake_started = Instant::now();
    let outcome = tokio::time::timeout(
        options.handshake_timeout,
        client::connect_stream(config, stream, handler),
    )
    .await;
    let observation = std::mem::take(&mut *seen.lock().unwrap_or_else(|p| p.into_inner()));
    let mut handle = match outcome {
        Err(_) => {
            return Err(SshError::Timeout {
                addr,
                what: "SSH handshake",
                after: options.handshake_timeout,
            });
        }
        Ok(Err(e)) => {
            if let (Some(expected), Some(presented)) =
                (&observation.refused, &observation.presented)
            {
                return Err(SshError::HostKeyMismatch {
                    addr,
                    mode: policy.mode_name(),
                    expected: expected.clone(),
                    presented: describe(presented),
                });
            }
            if let Some(expected) = observation.refused {
                return Err(SshError::HostKeyMismatch {
                    addr,
                    mode: policy.mode_name(),
                    expected,
                    presented: "a host certificate".to_owned(),
                });
            }
            // A server that is still starting accepts and drops connections: retryable.
            return Err(SshError::Connect {
                addr,
                reason: format!("SSH handshake failed: {e}"),
            });
        }
        Ok(Ok(handle)) => handle,
    };
    let host_key = observation.presented.ok_or_else(|| SshError::Connect {
        addr: addr.clone(),
        reason: "the server presented no host key".to_owned(),
    })?;
    let handshake = handshake_started.elapsed();

    let auth_started = Instant::now();
    let auth = tokio::time::timeout(options.auth_timeout, async {
        let hash = if key.is_rsa() {
            // rsa-sha2-512/256 when offered; plain ssh-rsa (SHA-1) only for servers without them.
            handle.best_supported_rsa_hash().await?.flatten()
        } else {
            None
        };
        let with_hash = PrivateKeyWithHashAlg::new(key.private_key().clone(), hash);
        handle
            .authenticate_publickey(target.user.clone(), with_hash)
            .await
    })
    .await;
    match auth {
        Err(_) => {
            return Err(SshError::Timeout {
                addr,
                what: "authentication",
                after: options.auth_timeout,
            });
        }
        Ok(Err(e)) => {
            return Err(SshError::Connect {
                addr,
                reason: format!("authentication exchange failed: {e}"),
            });
        }
        Ok(Ok(result)) if !result.success() => {
            return Err(SshError::Auth {
                addr,
                user: target.user.clone(),
                key_type: key.key_type(),
                fingerprint: key.fingerprint(),
            });
        }
        Ok(Ok(_)) => {}
    }
    let timings = ConnectTimings {
        tcp,
        handshake,
        auth: auth_started.elapsed(),
    };
    Ok(SshSession {
        handle,
        target: target.clone(),
        options: options.clone(),
        host_key,
        timings,
    })
}

impl SshSession {
    /// The server's host key as accepted during the handshake.
    pub fn host_key(&self) -> &PublicKey {
        &self.host_key
    }

    /// The host key in the form the engine stores as the pin (see [`HostKeyPolicy::pinned`]).
    pub fn host_key_pin(&self) -> Result<String, SshError> {
        host_key_to_pin(&self.host_key)
    }

    /// True once the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    pub fn timings(&self) -> ConnectTimings {
        self.timings
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Says goodbye politely; errors are irrelevant at that point.
    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }

    pub(crate) fn lost(&self, reason: impl std::fmt::Display) -> SshError {
        SshError::ConnectionLost {
            addr: self.target.addr(),
            reason: reason.to_string(),
        }
    }

    /// Opens a session channel and starts `command`, both bounded by the channel timeout.
    pub(crate) async fn start_exec(
        &self,
        command: &str,
    ) -> Result<russh::Channel<russh::client::Msg>, SshError> {
        let addr = self.target.addr();
        let limit = self.options.channel_timeout;
        let opened = tokio::time::timeout(limit, self.handle.channel_open_session())
            .await
            .map_err(|_| SshError::Timeout {
                addr: addr.clone(),
                what: "opening a channel",
                after: limit,
            })?;
        let channel = opened.map_err(|e| self.channel_error("open a session channel", e))?;
        tokio::time::timeout(limit, channel.exec(true, command))
            .await
            .map_err(|_| SshError::Timeout {
                addr,
                what: "starting a command",
                after: limit,
            })?
            .map_err(|e| self.channel_error("start a command", e))?;
        Ok(channel)
    }

    fn channel_error(&self, what: &'static str, e: russh::Error) -> SshError {
        if self.handle.is_closed() {
            self.lost(e)
        } else {
            SshError::Channel {
                addr: self.target.addr(),
                what,
                reason: e.to_string(),
            }
        }
    }
}
