//! The job side of the socket: one request, one reply, within a deadline the recipe sets.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::protocol::{Claim, Claimed, Reply, Report, Request};

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
}

/// Asks the daemon on `socket` for a VM, giving up after `wait`.
pub async fn claim(socket: &Path, claim: Claim, wait: Duration) -> Result<Claimed, ClaimError> {
    match exchange(socket, &Request::Claim(claim), wait).await? {
        Reply::Claimed(c) => Ok(*c),
        Reply::Miss(why) => Err(ClaimError::Miss(why)),
        other => Err(ClaimError::Garbled(format!("{other:?} to a claim"))),
    }
}

/// Tells the daemon how a stage went; best effort, for the metrics only.
pub async fn report(socket: &Path, report: Report, wait: Duration) -> Result<(), ClaimError> {
    exchange(socket, &Request::Report(report), wait)
        .await
        .map(|_| ())
}

/// How many VMs the daemon has idle and booting.
pub async fn status(socket: &Path, wait: Duration) -> Result<(u32, u32), ClaimError> {
    match exchange(socket, &Request::Status, wait).await? {
        Reply::Status { idle, booting } => Ok((idle, booting)),
        _ => Err(ClaimError::Garbled("not a status".into())),
    }
}

async fn exchange(socket: &Path, request: &Request, wait: Duration) -> Result<Reply, ClaimError> {
    let talk = async {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|source| ClaimError::Down {
                path: socket.display().to_string(),
                source,
            })?;
        let (read, mut write) = stream.into_split();
        let mut line =
            serde_json::to_vec(request).map_err(|e| ClaimError::Garbled(e.to_string()))?;
        line.push(b'\n');
        write
            .write_all(&line)
            .await
            .map_err(|e| ClaimError::Garbled(e.to_string()))?;
        let mut answer = String::new();
        // A reply holds one key and a small state: 1 MiB is far above it, and bounds a
        // daemon gone wrong.
        let mut reader = BufReader::new(read.take_limited());
        reader
            .read_line(&mut answer)
            .await
            .map_err(|e| ClaimError::Garbled(e.to_string()))?;
        serde_json::from_str::<Reply>(&answer).map_err(|e| ClaimError::Garbled(e.to_string()))
    };
    tokio::time::timeout(wait, talk)
        .await
        .map_err(|_| ClaimError::Slow(wait))?
}

trait TakeLimited: tokio::io::AsyncRead + Sized {
    fn take_limited(self) -> tokio::io::Take<Self> {
        tokio::io::AsyncReadExt::take(self, 1 << 20)
    }
}

impl<T: tokio::io::AsyncRead> TakeLimited for T {}
