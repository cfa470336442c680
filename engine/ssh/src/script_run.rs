//! The `run` stage: the job script streamed into a remote shell, its output streamed back live.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::cancel_remote::kill_process_group;
use super::connect::SshSession;
use super::errors::SshError;
use super::output_pump::{OutputSink, pump};
use super::pgid_marker::PgidMarker;
use super::remote_exit::RemoteExit;

/// The shell reports its pid (= its process group) on the first stdout line, then becomes the
/// interpreter that reads the script from stdin. sshd already starts commands in a new session;
/// where that is not so (the group differs from the pid), `setsid` makes it so, so that
/// cancellation can signal exactly the script and its children.
const INNER: &str = r#"printf "executor:pgid:%s\n" "$$"; if command -v bash >/dev/null 2>&1; then exec bash -s; fi; exec sh -s"#;

fn remote_command() -> String {
    format!(
        "if [ -r /proc/$$/stat ] && [ \"$(cut -d' ' -f5 /proc/$$/stat)\" != \"$$\" ] && \
         command -v setsid >/dev/null 2>&1; then exec setsid sh -c '{INNER}'; fi; {INNER}"
    )
}

/// Knobs for [`SshSession::run_script`].
#[derive(Debug, Clone)]
pub struct ScriptOptions {
    /// Between SIGTERM and SIGKILL on cancellation.
    pub kill_grace: Duration,
    /// How long to wait for the remote side to confirm the stop before reporting anyway.
    pub cancel_report_within: Duration,
}

impl Default for ScriptOptions {
    fn default() -> Self {
        ScriptOptions {
            kill_grace: Duration::from_secs(2),
            // Under the interpreter's 5 s allowance for a cancelled step.
            cancel_report_within: Duration::from_secs(4),
        }
    }
}

struct LiveSink<'a, O, E> {
    stdout: &'a mut O,
    stderr: &'a mut E,
    marker: PgidMarker,
    pgid: Arc<std::sync::OnceLock<u32>>,
}

impl<O: AsyncWrite + Unpin, E: AsyncWrite + Unpin> OutputSink for LiveSink<'_, O, E> {
    async fn stdout(&mut self, data: &[u8]) -> std::io::Result<()> {
        let pass = self.marker.feed(data);
        if let Some(pgid) = self.marker.pgid() {
            let _ = self.pgid.set(pgid);
        }
        if !pass.is_empty() {
            self.stdout.write_all(&pass).await?;
            // Live means live: a remote line must not sit in our buffer.
            self.stdout.flush().await?;
        }
        Ok(())
    }

    async fn stderr(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.stderr.write_all(data).await?;
        self.stderr.flush().await
    }
}

impl SshSession {
    /// Streams the local file `script` into a remote shell and copies its stdout/stderr to
    /// `stdout`/`stderr` as raw bytes while it runs.
    ///
    /// Returns how the script ended (a non-zero code is the job's failure, not an error).
    /// Errors: a lost connection or a missing exit status (system failure), and
    /// [`SshError::Canceled`] once `cancel` fired and the remote process group was stopped.
    pub async fn run_script<O, E>(
        &self,
        script: &Path,
        stdout: &mut O,
        stderr: &mut E,
        options: &ScriptOptions,
        cancel: &CancellationToken,
    ) -> Result<RemoteExit, SshError>
    where
        O: AsyncWrite + Unpin,
        E: AsyncWrite + Unpin,
    {
        let file = tokio::fs::File::open(script)
            .await
            .map_err(|e| SshError::local_io(format!("opening script {}", script.display()), e))?;
        if cancel.is_cancelled() {
            return Err(SshError::Canceled {
                remote_stopped: false,
            });
        }
        let channel = self.start_exec(&remote_command()).await?;
        let (mut rx, tx) = channel.split();
        let tx = Arc::new(tx);
        // The channel's window gives back-pressure: `data` waits while the server's buffer is full.
        let mut writer = {
            let tx = tx.clone();
            tokio::spawn(async move {
                tx.data(file).await?;
                tx.eof().await
            })
        };
        let pgid = Arc::new(std::sync::OnceLock::new());
        let mut sink = LiveSink {
            stdout,
            stderr,
            marker: PgidMarker::default(),
            pgid: pgid.clone(),
        };

        let mut writer_done = false;
        let (outcome, remote_stopped) = {
            let pumping = pump(self, &mut rx, &mut sink);
            tokio::pin!(pumping);
            let outcome = loop {
                tokio::select! {
                    r = &mut pumping => break Some(r),
                    w = &mut writer, if !writer_done => {
                        writer_done = true;
                        // A send error after the script exited early is normal (it stopped
                        // reading); the exit status decides. Only a local read failure matters.
                        if let Ok(Err(russh::Error::IO(e))) = w
                            && e.kind() != std::io::ErrorKind::BrokenPipe
                        {
                            tracing::warn!("reading the script failed: {e}");
                            break None;
                        }
                    }
                    _ = cancel.cancelled() => break None,
                }
            };
            writer.abort();
            match outcome {
                Some(r) => (Some(r), false),
                None => {
                    // Keep draining output while stopping the remote group: a full channel
                    // buffer would stall the whole connection, including the kill channel.
                    let stop = async {
                        match pgid.get() {
                            Some(&pgid) => kill_process_group(self, pgid, options.kill_grace)
                                .await
                                .is_ok(),
                            None => {
                                // The marker never came: at least ask sshd to signal the shell.
                                let _ = tx.signal(russh::Sig::TERM).await;
                                false
                            }
                        }
                    };
                    let (stopped, _) = tokio::join!(
                        tokio::time::timeout(options.cancel_report_within, stop),
                        tokio::time::timeout(options.cancel_report_within, &mut pumping),
                    );
                    (None, stopped.unwrap_or(false))
                }
            }
        };
        let rest = sink.marker.finish();
        if !rest.is_empty() {
            sink.stdout
                .write_all(&rest)
                .await
                .map_err(|e| SshError::local_io("writing remote stdout", e))?;
        }
        let _ = sink.stdout.flush().await;
        if let Some(result) = outcome {
            return result;
        }
        let _ = tx.close().await;
        if cancel.is_cancelled() {
            Err(SshError::Canceled { remote_stopped })
        } else {
            Err(SshError::local_io(
                format!("reading script {}", script.display()),
                std::io::Error::other(
                    "the script could not be read completely; the remote shell was stopped",
                ),
            ))
        }
    }
}
