//! Wall time and CPU time of one child process, taken from `wait4`'s rusage so that nothing else
//! on the (noisy, shared) machine is counted, and its peak RSS.
//!
//! Peak RSS comes from two sources. `VmHWM` is sampled from /proc every 2 ms while the child
//! lives; it is the child's own program, but a sample can miss growth in the last 2 ms. `wait4`'s
//! `ru_maxrss` is exact at exit, but Linux carries the spawning process's size over `execve`
//! (with `posix_spawn` the child starts in the parent's memory). So `ru_maxrss` is taken only
//! when it exceeds the spawner's own `VmHWM` (read after the child has exited, so it bounds what
//! was carried over): then it can only be the child's. Otherwise the sampled value stands.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// `VmHWM` of a live process, in KiB. Unlike rusage's `ru_maxrss`, which Linux carries over
/// `execve` (so a child spawned by a big parent "peaks" at the parent's size), this is the
/// peak of the process's own program.
fn vm_hwm_kib(pid: libc::pid_t) -> Option<u64> {
    vm_hwm_of(&format!("/proc/{pid}/status"))
}

fn vm_hwm_of(status_file: &str) -> Option<u64> {
    let status = std::fs::read_to_string(status_file).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Samples `VmHWM` until told to stop; returns the largest value seen.
fn watch_peak(pid: libc::pid_t, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Some(k) = vm_hwm_kib(pid) {
                peak = peak.max(k);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        peak
    })
}

/// Runs `cmd` (stdin from /dev/null unless the caller set it) and waits for it with `wait4`.
/// Peak RSS: see the module comment.
pub fn run(cmd: &mut Command) -> std::io::Result<Usage> {
    let start_ns = unix_ns();
    let started = Instant::now();
    let child = cmd.spawn()?;
    let pid = child.id() as libc::pid_t;
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_peak(pid, stop.clone());
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
    let err = std::io::Error::last_os_error();
    stop.store(true, Ordering::Relaxed);
    let sampled = watcher.join().unwrap_or(0);
    if r == -1 {
        return Err(err);
    }
    let peak = exact_peak(
        usage.ru_maxrss.max(0) as u64,
        vm_hwm_of("/proc/self/status"),
    )
    .map_or(sampled, |exact| exact.max(sampled));
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok(Usage {
        wall: started.elapsed(),
        user: tv(usage.ru_utime),
        sys: tv(usage.ru_stime),
        max_rss_kib: peak,
        code,
        start_ns,
        end_ns: unix_ns(),
    })
}

/// `ru_maxrss` (KiB on Linux) when it must be the child's own peak: above everything the spawner
/// could have carried over `execve`.
fn exact_peak(ru_maxrss_kib: u64, spawner_hwm_kib: Option<u64>) -> Option<u64> {
    spawner_hwm_kib
        .filter(|&own| ru_maxrss_kib > own)
        .map(|_| ru_maxrss_kib)
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
