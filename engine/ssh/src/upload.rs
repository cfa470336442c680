//! Writing a file on the server through `cat`, so no SFTP subsystem is needed.

use std::sync::Arc;

use tokio::io::AsyncRead;

use super::connect::SshSession;
use super::errors::SshError;
use super::output_pump::{OutputSink, pump};
use executor_foundation::shell_quote::shell_quote;

struct StderrOnly(Vec<u8>);

impl OutputSink for StderrOnly {
    async fn stdout(&mut self, _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    async fn stderr(&mut self, data: &[u8]) -> std::io::Result<()> {
        // Only the tail matters for the message; keep it bounded.
        if self.0.len() < 16 * 1024 {
            self.0.extend_from_slice(data);
        }
        Ok(())
    }
}

impl SshSession {
    /// Writes a local file to `remote_path`; see [`SshSession::upload`].
    pub async fn upload_file(
        &self,
        remote_path: &str,
        local: &std::path::Path,
        mode: u32,
    ) -> Result<(), SshError> {
        let what = || format!("reading {}", local.display());
        let file = tokio::fs::File::open(local)
            .await
            .map_err(|e| SshError::local_io(what(), e))?;
        let len = file
            .metadata()
            .await
            .map_err(|e| SshError::local_io(what(), e))?
            .len();
        self.upload(remote_path, file, len, mode).await
    }

    /// Writes `content` (exactly `len` bytes) to `remote_path` with permissions `mode` (e.g. `0o755`).
    ///
    /// The file appears atomically (temp file + rename) and only if all `len` bytes arrived, so a
    /// reader never sees half of it; it is created under `umask 077`, so it is never readable by
    /// others before the chmod.
    pub async fn upload(
        &self,
        remote_path: &str,
        content: impl AsyncRead + Unpin + Send + 'static,
        len: u64,
        mode: u32,
    ) -> Result<(), SshError> {
        if remote_path.is_empty() || remote_path.ends_with('/') {
            return Err(SshError::Invalid(format!(
                "`{remote_path}` is not a file path"
            )));
        }
        let path = shell_quote(remote_path);
        let tmp = shell_quote(&format!(
            "{remote_path}.executor-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let command = format!(
            "umask 077 && cat > {tmp} && test \"$(wc -c < {tmp} | tr -d ' ')\" = {len} && chmod {mode:o} {tmp} && mv -f {tmp} {path} || {{ rc=$?; rm -f {tmp}; exit $rc; }}"
        );
        let channel = self.start_exec(&command).await?;
        let (mut rx, tx) = channel.split();
        let tx = Arc::new(tx);
        let writer = {
            let tx = tx.clone();
            tokio::spawn(async move {
                // On a local read error the short file fails the size check and is removed.
                let sent = tx.data(content).await;
                let eof = tx.eof().await;
                sent.and(eof)
            })
        };
        let mut sink = StderrOnly(Vec::new());
        let exit = pump(self, &mut rx, &mut sink).await;
        let sent = writer.await;
        let exit = exit?;
        if !exit.success() {
            return Err(SshError::RemoteFailed {
                addr: self.target.addr(),
                what: format!("writing {remote_path}"),
                outcome: exit.to_string(),
                stderr_tail: String::from_utf8_lossy(&sink.0).trim().to_owned(),
            });
        }
        match sent {
            Ok(Ok(())) => Ok(()),
            // The remote side reported success, yet we could not send everything: do not trust it.
            Ok(Err(e)) => Err(self.lost(format!("sending {remote_path}: {e}"))),
            Err(e) => Err(self.lost(format!("sending {remote_path}: {e}"))),
        }
    }
}
