//! Loading the client's private key (ed25519, ECDSA, RSA; OpenSSH or PEM; optional passphrase).

use std::path::PathBuf;
use std::sync::Arc;

use russh::keys::ssh_key::{HashAlg, PrivateKey};
use secrecy::{ExposeSecret, SecretString};

use super::errors::SshError;
use executor_foundation::bounded_read::{CONFIG_LIMIT, read_to_string_bounded};

/// Where the private key comes from. The key text itself is only ever held as a secret.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A key file (OpenSSH or PEM).
    File(PathBuf),
    /// The name of an environment variable whose value is the key text.
    Env(String),
    /// Key text already in memory, e.g. read from the job state.
    Inline(SecretString),
}

impl KeySource {
    fn origin(&self) -> String {
        match self {
            KeySource::File(path) => format!("file {}", path.display()),
            KeySource::Env(name) => format!("environment variable {name}"),
            KeySource::Inline(_) => "inline key text".to_owned(),
        }
    }
}

/// A decoded private key. `Debug` shows only its type and fingerprint.
#[derive(Clone)]
pub struct ClientKey {
    key: Arc<PrivateKey>,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientKey({} {})", self.key_type(), self.fingerprint())
    }
}

impl ClientKey {
    /// Reads and decodes a key; `passphrase` is needed only for encrypted keys.
    pub fn load(source: &KeySource, passphrase: Option<&SecretString>) -> Result<Self, SshError> {
        let text: SecretString = match source {
            KeySource::File(path) => {
                let raw =
                    read_to_string_bounded(path, CONFIG_LIMIT).map_err(|e| SshError::Key {
                        origin: source.origin(),
                        reason: e.to_string(),
                    })?;
                SecretString::from(raw)
            }
            KeySource::Env(name) => match std::env::var(name) {
                Ok(raw) => SecretString::from(raw),
                Err(_) => {
                    return Err(SshError::Key {
                        origin: source.origin(),
                        reason: "the variable is not set or not valid UTF-8".to_owned(),
                    });
                }
            },
            KeySource::Inline(secret) => secret.clone(),
        };
        Self::decode(text.expose_secret(), passphrase).map_err(|reason| SshError::Key {
            origin: source.origin(),
            reason,
        })
    }

    /// Wraps an already decoded key.
    pub fn from_private_key(key: PrivateKey) -> Self {
        ClientKey { key: Arc::new(key) }
    }

    fn decode(text: &str, passphrase: Option<&SecretString>) -> Result<Self, String> {
        // Env vars and CI variables often turn newlines into literal "\n"; undo that.
        let normalized;
        let text = if !text.contains('\n') && text.contains("\\n") {
            normalized = secrecy::zeroize::Zeroizing::new(text.replace("\\n", "\n"));
            normalized.as_str()
        } else {
            text
        };
        let pass = passphrase.map(|p| p.expose_secret());
        if text.contains("-----BEGIN EC PRIVATE KEY-----") && text.contains("ENCRYPTED") {
            return Err(
                "encrypted legacy-PEM (SEC1) ECDSA keys are not supported; convert the key \
                 with `ssh-keygen -p -f FILE` (OpenSSH format) or `ssh-keygen -p -m PKCS8 -f FILE`"
                    .to_owned(),
            );
        }
        match russh::keys::decode_secret_key(text, pass) {
            Ok(key) => Ok(Self::from_private_key(key)),
            // A valid ECDSA key that the key library refuses for its short scalar.
            Err(e)
                if !matches!(e, russh::keys::Error::KeyIsEncrypted)
                    && let Some(padded) = crate::short_ecdsa::padded(text, pass) =>
            {
                russh::keys::decode_secret_key(&padded, None)
                    .map(Self::from_private_key)
                    .map_err(|_| e.to_string())
            }
            // The underlying messages describe the format problem, never the key bytes.
            Err(russh::keys::Error::KeyIsEncrypted) => {
                Err("the key is encrypted and no passphrase was given".to_owned())
            }
            Err(e) if pass.is_some() && is_decrypt_failure(&e) => {
                Err(format!("wrong passphrase or corrupt key ({e})"))
            }
            Err(e) => Err(e.to_string()),
        }
    }

    pub fn private_key(&self) -> &Arc<PrivateKey> {
        &self.key
    }

    /// The SSH algorithm name, e.g. `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`.
    pub fn key_type(&self) -> String {
        self.key.algorithm().as_str().to_owned()
    }

    pub fn is_rsa(&self) -> bool {
        self.key.algorithm().is_rsa()
    }

    /// `SHA256:...` of the public half: safe to print.
    pub fn fingerprint(&self) -> String {
        self.key
            .public_key()
            .fingerprint(HashAlg::Sha256)
            .to_string()
    }

    /// The public half as an OpenSSH line (`ssh-ed25519 AAAA... comment`).
    pub fn public_openssh(&self) -> Result<String, SshError> {
        self.key
            .public_key()
            .to_openssh()
            .map_err(|e| SshError::Invalid(format!("cannot encode public key: {e}")))
    }
}

fn is_decrypt_failure(e: &russh::keys::Error) -> bool {
    matches!(
        e,
        russh::keys::Error::KeyIsCorrupt
            | russh::keys::Error::Unpad(_)
            | russh::keys::Error::Pad(_)
            | russh::keys::Error::SshKey(_)
            | russh::keys::Error::Pkcs8(_)
    )
}
