//! Wall time, CPU time and peak RSS of one child process, taken from `wait4`'s rusage so that
//! nothing else on the (noisy, shared) machine is counted.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub wall: Duration,
    pub user: Duration,
    pub sys: Duration,
    pub max_rss_kib: u64,
    /// Exit code, or 128 + signal.
    pub code: i32,
    /// Unix time in nanoseconds when the child was spawned and when it was reaped.
    pub start_ns: u128,
    pub end_ns: u128,
}

impl Usage {
    pub fn cpu(&self) -> Duration {
        self.user + self.sys
    }
}

pub fn unix_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn tv(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
}

/// Runs `cmd` (stdin from /dev/null unless the caller set it) and waits for it with `wait4`.
pub fn run(cmd: &mut Command) -> std::io::Result<Usage> {
    let start_ns = unix_ns();
    let started = Instant::now();
    let child = cmd.spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `usage` is a plain C struct that wait4 fills in; `pid` is our own child, which
    // `child` never waits for (it is forgotten below, so std does not reap it either).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = loop {
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break r;
    };
    std::mem::forget(child);
    if r == -1 {
        return Err(std::io::Error::last_os_error());
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok(Usage {
        wall: started.elapsed(),
        user: tv(usage.ru_utime),
        sys: tv(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss.max(0) as u64,
        code,
        start_ns,
        end_ns: unix_ns(),
    })
}

/// `run` with all three standard streams on /dev/null.
pub fn run_quiet(cmd: &mut Command) -> std::io::Result<Usage> {
    run(cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null()))
}

/// The OpenSSH client as the floors use it: no config file, no host-key prompts, key only.
pub fn openssh(key: &std::path::Path, user: &str, host: &str, port: u16, remote: &str) -> Command {
    let mut c = Command::new("ssh");
    c.args(["-F", "/dev/null", "-o", "StrictHostKeyChecking=no"])
        .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"])
        .args(["-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes", "-i"])
        .arg(key)
        .args(["-p", &port.to_string(), &format!("{user}@{host}"), remote]);
    c
}
