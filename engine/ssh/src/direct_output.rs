//! Our own stdout and stderr as `AsyncWrite`, written directly.
//!
//! `tokio::io::stdout()` hands every write to a blocking-pool thread and back; with output
//! arriving in 32 KiB SSH packets that is one thread hop per packet and it capped the job-log
//! throughput well below OpenSSH's. A direct write blocks only when gitlab-runner stops reading
//! the pipe, and then stalling is exactly the back-pressure we want.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;

pub enum DirectOutput {
    Stdout,
    Stderr,
}

impl AsyncWrite for DirectOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(match *self {
            DirectOutput::Stdout => std::io::stdout().lock().write(buf),
            DirectOutput::Stderr => std::io::stderr().lock().write(buf),
        })
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(match *self {
            DirectOutput::Stdout => std::io::stdout().lock().flush(),
            DirectOutput::Stderr => std::io::stderr().lock().flush(),
        })
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}
