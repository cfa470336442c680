//! Peak total memory of the driver, sampled from /proc while jobs run: the sum of the RSS of
//! every live `executor` process that descends from this one.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct Peaks {
    pub driver_kib: u64,
    pub driver_processes: usize,
}

pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Peaks>,
}

struct Proc {
    ppid: i32,
    comm: String,
    rss_kib: u64,
}

fn page_kib() -> u64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) / 1024) as u64
}

fn snapshot(page: u64) -> HashMap<i32, Proc> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // comm is in parentheses and may contain spaces; the fields after it are fixed.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // rest[0] is the state, rest[1] ppid, rest[21] rss in pages.
        let (Some(ppid), Some(rss)) = (
            rest.get(1).and_then(|v| v.parse().ok()),
            rest.get(21).and_then(|v| v.parse::<u64>().ok()),
        ) else {
            continue;
        };
        out.insert(
            pid,
            Proc {
                ppid,
                comm,
                rss_kib: rss * page,
            },
        );
    }
    out
}

fn descendant_of(procs: &HashMap<i32, Proc>, mut pid: i32, root: i32) -> bool {
    for _ in 0..64 {
        if pid == root {
            return true;
        }
        match procs.get(&pid) {
            Some(p) if p.ppid > 1 => pid = p.ppid,
            _ => return false,
        }
    }
    false
}

impl Sampler {
    pub fn start(every: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let root = std::process::id() as i32;
        let thread = std::thread::spawn(move || {
            let page = page_kib();
            let mut peaks = Peaks {
                driver_kib: 0,
                driver_processes: 0,
            };
            while !flag.load(Ordering::Relaxed) {
                let procs = snapshot(page);
                let (mut driver, mut n) = (0, 0);
                for (&pid, p) in &procs {
                    if p.comm == "executor" && descendant_of(&procs, pid, root) {
                        driver += p.rss_kib;
                        n += 1;
                    }
                }
                peaks.driver_kib = peaks.driver_kib.max(driver);
                peaks.driver_processes = peaks.driver_processes.max(n);
                std::thread::sleep(every);
            }
            peaks
        });
        Sampler { stop, thread }
    }

    pub fn finish(self) -> Peaks {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(Peaks {
            driver_kib: 0,
            driver_processes: 0,
        })
    }
}
