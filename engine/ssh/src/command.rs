//! Running a short command and capturing what it prints.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::connect::SshSession;
use super::errors::SshError;
use super::output_pump::{OutputSink, pump};
use super::remote_exit::RemoteExit;

/// Captured result of [`SshSession::run_command`].
#[derive(Debug, Clone)]
pub struct CommandOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit: RemoteExit,
    /// More than the capture limit was printed; the excess was read and dropped.
    pub truncated: bool,
}

impl CommandOutput {
    /// The last `max` bytes of stderr as text, for error messages.
    pub fn stderr_tail(&self, max: usize) -> String {
        let start = self.stderr.len().saturating_sub(max);
        String::from_utf8_lossy(&self.stderr[start..])
            .trim()
            .to_owned()
    }
}

struct Capture {
    limit: usize,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    truncated: bool,
}

impl Capture {
    fn keep(buf: &mut Vec<u8>, data: &[u8], limit: usize, truncated: &mut bool) {
        let room = limit.saturating_sub(buf.len());
        if data.len() > room {
            *truncated = true;
        }
        buf.extend_from_slice(&data[..room.min(data.len())]);
    }
}

impl OutputSink for Capture {
    async fn stdout(&mut self, data: &[u8]) -> std::io::Result<()> {
        Self::keep(&mut self.stdout, data, self.limit, &mut self.truncated);
        Ok(())
    }
    async fn stderr(&mut self, data: &[u8]) -> std::io::Result<()> {
        Self::keep(&mut self.stderr, data, self.limit, &mut self.truncated);
        Ok(())
    }
}

impl SshSession {
    /// Runs `command` through the login shell, feeds it `stdin` (or nothing), and captures at
    /// most `max_capture` bytes of each stream. A non-zero exit is returned, not an error.
    pub async fn run_command(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        max_capture: usize,
        cancel: &CancellationToken,
    ) -> Result<CommandOutput, SshError> {
        let channel = self.start_exec(command).await?;
        let (mut rx, tx) = channel.split();
        let tx = Arc::new(tx);
        let input = stdin.map(<[u8]>::to_vec).unwrap_or_default();
        let writer = {
            let tx = tx.clone();
            tokio::spawn(async move {
                if !input.is_empty() {
                    tx.data(&input[..]).await?;
                }
                tx.eof().await
            })
        };
        let mut capture = Capture {
            limit: max_capture,
            stdout: Vec::new(),
            stderr: Vec::new(),
            truncated: false,
        };
        let result = tokio::select! {
            r = pump(self, &mut rx, &mut capture) => r,
            _ = cancel.cancelled() => {
                let _ = tx.close().await;
                Err(SshError::Canceled { remote_stopped: false })
            }
        };
        writer.abort();
        let exit = result?;
        Ok(CommandOutput {
            stdout: capture.stdout,
            stderr: capture.stderr,
            exit,
            truncated: capture.truncated,
        })
    }
}
