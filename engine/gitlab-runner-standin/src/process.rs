//! Starting one driver invocation the way gitlab-runner does: no shell, stdin `/dev/null`, its own
//! process group, stdout and stderr as separate pipes copied concurrently, and the
//! SIGTERM → grace → SIGKILL → give-up sequence sent to the whole group when its context ends.

use std::ffi::{CString, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use super::job_trace::JobTrace;
use super::runner_log::RunnerLog;

/// Where one output stream goes.
#[derive(Clone)]
pub(crate) enum Sink {
    Trace(JobTrace),
    /// Kept in memory (the config stage's stdout).
    Capture,
    /// The runner log, with the `cleanup_std` field gitlab-runner adds.
    Runner {
        log: RunnerLog,
        level: &'static str,
        stream: &'static str,
    },
}

pub(crate) struct Invocation<'a> {
    pub program: &'a Path,
    pub args: Vec<OsString>,
    pub cwd: &'a Path,
    pub env: &'a [(String, String)],
    pub stdout: Sink,
    pub stderr: Sink,
}

/// What may stop an invocation before it ends by itself.
pub(crate) struct Bounds<'a> {
    /// The stage's context (job, script or prepare context); cancelled on cancel, abort or timeout.
    pub context: CancellationToken,
    /// The stage's own limit (`*_exec_timeout`, after_script timeout).
    pub deadline: Option<Instant>,
    pub graceful_kill: Duration,
    pub force_kill: Duration,
    /// The job context and gitlab-runner's `WaitForBuildFinishTimeout`: once the job context has
    /// ended, the kill sequence is waited for at most this long.
    pub job_end_wait: Option<(CancellationToken, Duration)>,
    pub held_pipe_grace: Duration,
    /// Where the stand-in's own remarks about this process go.
    pub remark: &'a (dyn Fn(String) + Sync),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopCause {
    Context,
    Deadline,
}

#[derive(Debug)]
pub(crate) enum Ended {
    Exited(ExitStatus),
    StartFailed(String),
    Stopped { cause: StopCause },
}

#[derive(Debug)]
pub(crate) struct Outcome {
    pub ended: Ended,
    pub stdout: Vec<u8>,
    /// The driver exited but something it left behind kept a pipe open.
    pub held_pipes: bool,
}

pub(crate) async fn run(inv: Invocation<'_>, bounds: &Bounds<'_>) -> Outcome {
    let mut cmd = tokio::process::Command::new(resolve_program(inv.program));
    cmd.args(&inv.args).current_dir(inv.cwd);
    if let Err(e) = install_environment(&mut cmd, inv.env) {
        return Outcome {
            ended: Ended::StartFailed(format!("failed to start command: {e}")),
            stdout: Vec::new(),
            held_pipes: false,
        };
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Outcome {
                ended: Ended::StartFailed(format!("failed to start command: {e}")),
                stdout: Vec::new(),
                held_pipes: false,
            };
        }
    };
    let pid = child.id().and_then(|p| i32::try_from(p).ok());
    let out_task = tokio::spawn(pump(child.stdout.take(), inv.stdout));
    let err_task = tokio::spawn(pump(child.stderr.take(), inv.stderr));
    let readers = [out_task.abort_handle(), err_task.abort_handle()];
    let held = AtomicBool::new(false);
    let done = async {
        let status = child.wait().await;
        let pipes = async {
            let captured = out_task.await.unwrap_or_default();
            let _ = err_task.await;
            captured
        };
        tokio::pin!(pipes);
        // gitlab-runner waits for EOF on both pipes, so a background child that inherited them
        // hangs the stage; the stand-in does the same but says why.
        let captured = match timeout(bounds.held_pipe_grace, &mut pipes).await {
            Ok(c) => c,
            Err(_) => {
                held.store(true, Ordering::Relaxed);
                (bounds.remark)(format!(
                    "the driver (PID {}) exited, but a process it started still holds its stdout/stderr open; \
                     gitlab-runner waits for these pipes to close, so this stage hangs",
                    pid.unwrap_or(0)
                ));
                pipes.await
            }
        };
        (status, captured)
    };
    tokio::pin!(done);

    let cause = tokio::select! {
        (status, stdout) = &mut done => {
            let ended = match status {
                Ok(s) => Ended::Exited(s),
                Err(e) => Ended::StartFailed(format!("failed to wait for command: {e}")),
            };
            return Outcome { ended, stdout, held_pipes: held.load(Ordering::Relaxed) };
        }
        _ = bounds.context.cancelled() => StopCause::Context,
        _ = sleep_until(bounds.deadline) => StopCause::Deadline,
    };

    let stopped = |stdout: Vec<u8>| Outcome {
        ended: Ended::Stopped { cause },
        stdout,
        held_pipes: held.load(Ordering::Relaxed),
    };
    let term_sent = Instant::now();
    if !signal_group(pid, libc::SIGTERM) {
        signal_group(pid, libc::SIGKILL);
    }
    // When the whole job ended (timeout, abort), gitlab-runner stops waiting for the stage after
    // WaitForBuildFinishTimeout and goes on to cleanup while the kill sequence carries on.
    let give_up_at = bounds
        .job_end_wait
        .as_ref()
        .filter(|(job, _)| job.is_cancelled())
        .map(|(_, wait)| term_sent + *wait);
    let sequence = async {
        if let Ok((_, stdout)) = timeout(bounds.graceful_kill, &mut done).await {
            return Some(stdout);
        }
        signal_group(pid, libc::SIGKILL);
        timeout(bounds.force_kill, &mut done)
            .await
            .ok()
            .map(|(_, stdout)| stdout)
    };
    let finished = tokio::select! {
        r = sequence => r,
        _ = sleep_until(give_up_at) => {
            let graceful_left = bounds.graceful_kill.saturating_sub(term_sent.elapsed());
            if !graceful_left.is_zero() {
                tokio::spawn(async move {
                    tokio::time::sleep(graceful_left).await;
                    signal_group(pid, libc::SIGKILL);
                });
            }
            (bounds.remark)(format!(
                "the stage (PID {}) is still being killed; going on without waiting for it",
                pid.unwrap_or(0)
            ));
            // The pipe readers keep draining into a log that is closed by the time they write.
            return stopped(Vec::new());
        }
    };
    if let Some(stdout) = finished {
        return stopped(stdout);
    }
    for r in readers {
        r.abort();
    }
    (bounds.remark)(format!(
        "failed to kill process PID={}, likely process is dormant",
        pid.unwrap_or(0)
    ));
    stopped(Vec::new())
}

/// Go's `exec.Command` looks a bare name up in the runner's own PATH, not the driver's.
fn resolve_program(program: &Path) -> PathBuf {
    if program.components().count() != 1 || program.to_string_lossy().contains('/') {
        return program.to_path_buf();
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| program.to_path_buf())
}

/// The driver gets exactly `env`, in this order. `Command::env` would sort the keys, so the
/// block is built here and swapped in between fork and exec.
fn install_environment(
    cmd: &mut tokio::process::Command,
    env: &[(String, String)],
) -> std::io::Result<()> {
    let strings: Vec<CString> = env
        .iter()
        .map(|(k, v)| CString::new(format!("{k}={v}")))
        .collect::<Result<_, _>>()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let block = EnvBlock::new(strings);
    // SAFETY: the closure runs in the forked child before exec; it only assigns a pointer to
    // memory allocated before the fork (owned by the closure), which is async-signal-safe.
    // `Command` was given no environment changes, so std execs with the global `environ`.
    unsafe {
        cmd.pre_exec(move || {
            libc::environ = block.as_ptr();
            Ok(())
        });
    }
    Ok(())
}

/// A NULL-terminated `envp` array and the strings it points into.
struct EnvBlock {
    _strings: Vec<CString>,
    pointers: Vec<*mut libc::c_char>,
}

// SAFETY: the pointers refer to `_strings`, owned by the same value and never mutated; the block
// is only read, in the child after fork.
unsafe impl Send for EnvBlock {}
unsafe impl Sync for EnvBlock {}

impl EnvBlock {
    fn new(strings: Vec<CString>) -> Self {
        let mut pointers: Vec<*mut libc::c_char> =
            strings.iter().map(|s| s.as_ptr().cast_mut()).collect();
        pointers.push(std::ptr::null_mut());
        Self {
            _strings: strings,
            pointers,
        }
    }

    fn as_ptr(&self) -> *mut *mut libc::c_char {
        self.pointers.as_ptr().cast_mut()
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Signals the process group led by `pid`; true when the signal was delivered.
fn signal_group(pid: Option<i32>, sig: i32) -> bool {
    let Some(pid) = pid.filter(|p| *p > 0) else {
        return false;
    };
    // SAFETY: kill(2) has no memory-safety preconditions; a negative pid names the group.
    unsafe { libc::kill(-pid, sig) == 0 }
}

/// Copies one pipe to its sink; line by line for logs so masking sees whole lines.
async fn pump(reader: Option<impl AsyncRead + Unpin>, sink: Sink) -> Vec<u8> {
    let Some(mut reader) = reader else {
        return Vec::new();
    };
    let mut buf = vec![0u8; 16 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        if matches!(sink, Sink::Capture) {
            continue;
        }
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            emit(&sink, &line);
        }
        // A long line without a newline is flushed in pieces so that live output keeps moving.
        if pending.len() >= 64 * 1024 {
            emit(&sink, &pending);
            pending.clear();
        }
    }
    if matches!(sink, Sink::Capture) {
        return pending;
    }
    if !pending.is_empty() {
        pending.push(b'\n');
        emit(&sink, &pending);
    }
    Vec::new()
}

fn emit(sink: &Sink, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    match sink {
        Sink::Trace(log) => log.write(&text),
        Sink::Capture => {}
        Sink::Runner { log, level, stream } => {
            log.record(format!(
                "{level}: {} cleanup_std={stream}",
                text.trim_end_matches(['\n', '\r'])
            ));
        }
    }
}
