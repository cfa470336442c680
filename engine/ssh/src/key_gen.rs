//! The per-job ed25519 key: generated in prepare, useless once the job's VM is gone.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use russh::keys::ssh_key::{Algorithm, LineEnding, PrivateKey};

use super::errors::SshError;
use super::keys::ClientKey;

/// A freshly generated key pair. The private half lives only in `private_path` (mode 0600).
#[derive(Debug, Clone)]
pub struct GeneratedKey {
    /// The private key file, OpenSSH format, mode 0600.
    pub private_path: PathBuf,
    /// The public half as one OpenSSH line, for a Nova key pair or cloud-init user data.
    pub public_openssh: String,
    /// `SHA256:...` of the public half.
    pub fingerprint: String,
    /// The key, ready to authenticate with.
    pub key: ClientKey,
}

/// Generates an ed25519 key and writes it to `dir/file_name` with mode 0600.
///
/// An existing file is replaced atomically, so a retried prepare never ends up with a half-written key.
pub fn generate_job_key(
    dir: &Path,
    file_name: &str,
    comment: &str,
) -> Result<GeneratedKey, SshError> {
    let mut key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
        .map_err(|e| SshError::Invalid(format!("cannot generate an ed25519 key: {e}")))?;
    key.set_comment(comment);
    let pem = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| SshError::Invalid(format!("cannot encode the generated key: {e}")))?;

    let private_path = dir.join(file_name);
    let tmp_path = dir.join(format!(
        ".{file_name}.{}.tmp",
        uuid::Uuid::new_v4().simple()
    ));
    let write = || -> std::io::Result<()> {
        // Mode at creation time: there is never a moment when the file is readable by others.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp_path)?;
        file.write_all(pem.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp_path, &private_path)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp_path);
        return Err(SshError::local_io(
            format!("cannot write the job key to {}", private_path.display()),
            e,
        ));
    }

    let key = ClientKey::from_private_key(key);
    Ok(GeneratedKey {
        private_path,
        public_openssh: key.public_openssh()?,
        fingerprint: key.fingerprint(),
        key,
    })
}
