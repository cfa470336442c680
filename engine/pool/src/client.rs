//! The job side of the socket: one request, one reply, within a deadline the recipe sets.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::protocol::{Claim, Claimed, Fallback, Reply, Report, Request};

/// Why a claim gave no VM. Every case means "provision inline", never "fail the job".
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("no pool daemon answers on {path}: {source}")]
    Down {
        path: String,
        source: std::io::Error,
    },
    #[error("the pool daemon did not answer within {0:?}")]
    Slow(Duration),
    #[error("the pool had no ready VM: {0}")]
    Miss(String),
    #[error("the pool daemon's answer made no sense: {0}")]
    Garbled(String),
    #[error("not trusting the pool socket {path}: {why}")]
    Untrusted { path: String, why: String },
}

impl ClaimError {
    /// A short name for the metrics and the daemon's log.
    pub fn kind(&self) -> &'static str {
        match self {
            ClaimError::Down { .. } => "down",
            ClaimError::Slow(_) => "slow",
            ClaimError::Miss(_) => "miss",
            ClaimError::Garbled(_) => "garbled",
            ClaimError::Untrusted { .. } => "untrusted",
        }
    }
}

/// The socket and its directory must be this user's, and the directory closed to others:
/// otherwise another local user could have put a socket there and would hand jobs a VM of
/// theirs (and receive the job's script).
fn trusted(socket: &Path) -> Result<(), ClaimError> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: getuid cannot fail.
    let me = unsafe { libc::getuid() };
    let refuse = |why: String| ClaimError::Untrusted {
        path: socket.display().to_string(),
        why,
    };
    let dir = socket.parent().unwrap_or(Path::new("."));
    let d = std::fs::metadata(dir).map_err(|source| ClaimError::Down {
        path: socket.display().to_string(),
        source,
    })?;
    if d.uid() != me || d.mode() & 0o022 != 0 {
        return Err(refuse(format!(
            "{} is not this user's alone (owner {}, mode {:o})",
            dir.display(),
            d.uid(),
            d.mode() & 0o777
        )));
    }
    if let Ok(s) = std::fs::symlink_metadata(socket)
        && s.uid() != me
    {
        return Err(refuse(format!("the socket belongs to user {}", s.uid())));
    }
    Ok(())
}

/// Asks the daemon on `socket` for a VM, giving up after `wait`, and hands it to `accept`
/// (which records it in the job's state). Only once `accept` succeeded is the claim confirmed:
/// a VM whose job gave up waiting, or could not record it, is deleted by the daemon instead of
/// being left to nobody.
pub async fn claim<T>(
    socket: &Path,
    claim: Claim,
    wait: Duration,
    accept: impl FnOnce(Claimed) -> Result<T, String>,
) -> Result<T, ClaimError> {
    let (reply, mut write) = tokio::time::timeout(wait, ask(socket, &Request::Claim(claim)))
        .await
        .map_err(|_| ClaimError::Slow(wait))??;
    let claimed = match reply {
        Reply::Claimed(c) => *c,
        Reply::Miss(why) => return Err(ClaimError::Miss(why)),
        other => return Err(ClaimError::Garbled(format!("{other:?} to a claim"))),
    };
    let kept = accept(claimed).map_err(ClaimError::Garbled)?;
    write
        .write_all(b"{\"ack\":true}\n")
        .await
        .map_err(|e| ClaimError::Garbled(format!("cannot confirm the claim: {e}")))?;
    Ok(kept)
}

/// Tells the daemon how a stage went; best effort, for the metrics only.
pub async fn report(socket: &Path, report: Report, wait: Duration) -> Result<(), ClaimError> {
    exchange(socket, &Request::Report(report), wait)
        .await
        .map(|_| ())
}

/// Tells the daemon that a job is booting its own VM; best effort, for the metrics only.
pub async fn report_fallback(
    socket: &Path,
    fallback: Fallback,
    wait: Duration,
) -> Result<(), ClaimError> {
    exchange(socket, &Request::Fallback(fallback), wait)
        .await
        .map(|_| ())
}

/// What the daemon has: idle and booting VMs, and the idle VMs its recipe asks for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    pub idle: u32,
    pub booting: u32,
    pub wanted: u32,
}

/// Asks the daemon how many VMs it has.
pub async fn status(socket: &Path, wait: Duration) -> Result<PoolStatus, ClaimError> {
    match exchange(socket, &Request::Status, wait).await? {
        Reply::Status {
            idle,
            booting,
            wanted,
        } => Ok(PoolStatus {
            idle,
            booting,
            wanted,
        }),
        _ => Err(ClaimError::Garbled("not a status".into())),
    }
}

async fn exchange(socket: &Path, request: &Request, wait: Duration) -> Result<Reply, ClaimError> {
    tokio::time::timeout(wait, ask(socket, request))
        .await
        .map_err(|_| ClaimError::Slow(wait))?
        .map(|(reply, _)| reply)
}

/// Sends `request`, reads the reply line; the write half stays open for a confirmation.
async fn ask(
    socket: &Path,
    request: &Request,
) -> Result<(Reply, tokio::net::unix::OwnedWriteHalf), ClaimError> {
    trusted(socket)?;
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| ClaimError::Down {
            path: socket.display().to_string(),
            source,
        })?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(request).map_err(|e| ClaimError::Garbled(e.to_string()))?;
    line.push(b'\n');
    write
        .write_all(&line)
        .await
        .map_err(|e| ClaimError::Garbled(e.to_string()))?;
    let mut answer = String::new();
    // A reply holds one key and a small state: 1 MiB is far above it, and bounds a daemon
    // gone wrong.
    let mut reader = BufReader::new(read.take_limited());
    reader
        .read_line(&mut answer)
        .await
        .map_err(|e| ClaimError::Garbled(e.to_string()))?;
    let reply =
        serde_json::from_str::<Reply>(&answer).map_err(|e| ClaimError::Garbled(e.to_string()))?;
    Ok((reply, write))
}

trait TakeLimited: tokio::io::AsyncRead + Sized {
    fn take_limited(self) -> tokio::io::Take<Self> {
        tokio::io::AsyncReadExt::take(self, 1 << 20)
    }
}

impl<T: tokio::io::AsyncRead> TakeLimited for T {}
