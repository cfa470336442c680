//! Which server host keys we trust.
//!
//! Threats each mode covers:
//! - [`HostKeyPolicy::Fingerprints`] (out of band): the expected fingerprint comes from the
//!   cloud's console log or the recipe, through a channel the network attacker does not control.
//!   It stops a man in the middle from the very first connection, including one who grabbed the
//!   VM's floating IP or sits on the path, so job secrets never reach an impostor.
//! - [`HostKeyPolicy::Pinned`] (trust on first contact, the default): the probe records whatever
//!   key answers first and every later stage insists on it. It does not stop an attacker who is
//!   already in the path at the probe, but it does stop one who appears later (IP reuse by
//!   another tenant after the VM died, a path hijacked between prepare and run) from receiving
//!   the job script.
//! - [`HostKeyPolicy::Insecure`]: accepts any key and warns; covers nothing.

use std::sync::{Arc, Mutex};

use russh::keys::PublicKeyOrCertificate;
use russh::keys::ssh_key::{HashAlg, PublicKey};

use super::errors::SshError;
use super::fingerprints::normalize_sha256;

/// How the server's host key is checked.
#[derive(Debug, Clone)]
pub enum HostKeyPolicy {
    /// Accept only keys whose SHA-256 fingerprint is listed (canonical `SHA256:...` strings).
    Fingerprints(Vec<String>),
    /// `None`: first contact, accept and record the key. `Some`: accept only that key.
    Pinned(Option<PublicKey>),
    /// Accept any key. Named so that nobody chooses it by accident.
    Insecure,
}

impl HostKeyPolicy {
    /// Out-of-band trust from fingerprint strings (`SHA256:...`, any case, padding optional).
    pub fn fingerprints<S: AsRef<str>>(list: &[S]) -> Result<Self, SshError> {
        if list.is_empty() {
            return Err(SshError::Invalid(
                "out-of-band host-key trust needs at least one fingerprint".to_owned(),
            ));
        }
        list.iter()
            .map(|s| {
                normalize_sha256(s.as_ref()).ok_or_else(|| {
                    SshError::Invalid(format!(
                        "`{}` is not a SHA256 host-key fingerprint",
                        s.as_ref()
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(HostKeyPolicy::Fingerprints)
    }

    /// Trust on first contact when `pin` is `None`, else only the pinned key (an OpenSSH
    /// public-key line as returned by [`host_key_to_pin`]).
    pub fn pinned(pin: Option<&str>) -> Result<Self, SshError> {
        match pin.map(str::trim).filter(|p| !p.is_empty()) {
            None => Ok(HostKeyPolicy::Pinned(None)),
            Some(line) => PublicKey::from_openssh(line)
                .map(|k| HostKeyPolicy::Pinned(Some(k)))
                .map_err(|e| SshError::Invalid(format!("the pinned host key is unreadable: {e}"))),
        }
    }

    pub fn mode_name(&self) -> &'static str {
        match self {
            HostKeyPolicy::Fingerprints(_) => "out-of-band fingerprint",
            HostKeyPolicy::Pinned(None) => "first contact",
            HostKeyPolicy::Pinned(Some(_)) => "pinned at first contact",
            HostKeyPolicy::Insecure => "insecure",
        }
    }

    /// The whole policy as text, equal for two policies exactly when they accept the same keys.
    /// A session opened under one policy may be reused only under an equal one.
    pub fn identity(&self) -> String {
        match self {
            HostKeyPolicy::Fingerprints(list) => {
                let mut list = list.clone();
                list.sort();
                list.dedup();
                format!("fingerprints {}", list.join(","))
            }
            HostKeyPolicy::Pinned(None) => "first contact".to_owned(),
            HostKeyPolicy::Pinned(Some(pin)) => format!(
                "pinned {}",
                host_key_to_pin(pin).unwrap_or_else(|_| describe(pin))
            ),
            HostKeyPolicy::Insecure => "insecure".to_owned(),
        }
    }

    fn verify(&self, presented: &PublicKey) -> Result<(), String> {
        match self {
            HostKeyPolicy::Insecure | HostKeyPolicy::Pinned(None) => Ok(()),
            HostKeyPolicy::Pinned(Some(pin)) => {
                if pin.key_data() == presented.key_data() {
                    Ok(())
                } else {
                    Err(describe(pin))
                }
            }
            HostKeyPolicy::Fingerprints(list) => {
                let fp = presented.fingerprint(HashAlg::Sha256).to_string();
                if list.contains(&fp) {
                    Ok(())
                } else {
                    Err(list.join(" or "))
                }
            }
        }
    }
}

/// The OpenSSH line (without comment) that the engine stores as the pin.
pub fn host_key_to_pin(key: &PublicKey) -> Result<String, SshError> {
    let mut key = key.clone();
    key.set_comment("");
    key.to_openssh()
        .map(|s| s.trim().to_owned())
        .map_err(|e| SshError::Invalid(format!("cannot encode the host key: {e}")))
}

pub(crate) fn describe(key: &PublicKey) -> String {
    format!(
        "{} {}",
        key.algorithm().as_str(),
        key.fingerprint(HashAlg::Sha256)
    )
}

/// What the check saw during the handshake; read after `connect_stream` returns.
#[derive(Debug, Default)]
pub(crate) struct HostKeyObservation {
    pub presented: Option<PublicKey>,
    /// `Some(expected)` when the presented key was refused.
    pub refused: Option<String>,
}

/// The russh client handler: it only checks the host key.
pub(crate) struct TrustingHandler {
    pub policy: HostKeyPolicy,
    pub seen: Arc<Mutex<HostKeyObservation>>,
}

impl russh::client::Handler for TrustingHandler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                seen.presented = Some(key.clone());
                match self.policy.verify(key) {
                    Ok(()) => Ok(true),
                    Err(expected) => {
                        seen.refused = Some(expected);
                        Ok(false)
                    }
                }
            }
            // We never configure host-certificate authorities, so a certificate proves nothing.
            PublicKeyOrCertificate::Certificate(_) => {
                if matches!(self.policy, HostKeyPolicy::Insecure) {
                    return Ok(true);
                }
                seen.refused = Some("a plain host key (got a host certificate)".to_owned());
                Ok(false)
            }
        }
    }
}
