//! The benchmark binary doubles as the driver that the runner stand-in calls: it runs the real
//! `executor` with the same arguments, measures it with `wait4`, and appends one line per stage
//! to a shared log. After a `run` sub-stage it can also measure the floor: one OpenSSH client
//! connection running `true` on the same server, with the job's own key.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::proc_usage::{self, Usage};

/// Set (to the `executor` binary) in the environment of stage processes only.
pub const DRIVER_ENV: &str = "EXECUTOR_BENCH_DRIVER";
/// File the records are appended to.
pub const LOG_ENV: &str = "EXECUTOR_BENCH_LOG";
/// `1`: measure the OpenSSH floor after each `run` sub-stage.
pub const FLOOR_ENV: &str = "EXECUTOR_BENCH_FLOOR";

/// One measured process: a driver stage, or the floor measured right after it.
#[derive(Debug, Clone)]
pub struct Record {
    pub floor: bool,
    /// `config`, `prepare`, `cleanup` or the run sub-stage.
    pub stage: String,
    /// The stage's working directory: one per job attempt.
    pub job_dir: String,
    pub usage: Usage,
}

/// In a stage process, does the wrapping and returns the exit code; `None` in the benchmark.
pub fn run_if_wrapping() -> Option<i32> {
    let driver = std::env::var_os(DRIVER_ENV)?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let stage = args.last().cloned().unwrap_or_default();
    let is_run = args.iter().any(|a| a == "run");
    let job_dir = std::env::current_dir().unwrap_or_default();
    let usage = match proc_usage::run(Command::new(driver).args(&args)) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("bench wrapper: cannot start the driver: {e}");
            return Some(2);
        }
    };
    append(&Record {
        floor: false,
        stage: stage.clone(),
        job_dir: job_dir.display().to_string(),
        usage,
    });
    if is_run && usage.code == 0 && std::env::var(FLOOR_ENV).as_deref() == Ok("1") {
        match floor(&job_dir) {
            Ok(u) => append(&Record {
                floor: true,
                stage,
                job_dir: job_dir.display().to_string(),
                usage: u,
            }),
            Err(e) => eprintln!("bench wrapper: floor not measured: {e}"),
        }
    }
    Some(usage.code)
}

/// `ssh -i <job key> -p <port> <user>@<address> true`, with what prepare left in the job state.
fn floor(job_dir: &Path) -> Result<Usage, String> {
    let text = std::fs::read_to_string(job_dir.join("executor-state.json"))
        .map_err(|e| format!("job state: {e}"))?;
    let state: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let field = |k: &str| match &state[k] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let host = field("server_address").ok_or("no server_address in the job state")?;
    let port: u16 = field("ssh_port").and_then(|p| p.parse().ok()).unwrap_or(22);
    let key = PathBuf::from(field("ssh_key_file").ok_or("no ssh_key_file in the job state")?);
    let user = std::env::var("USERNAME").map_err(|_| "USERNAME unset")?;
    let u = proc_usage::run_quiet(&mut proc_usage::openssh(&key, &user, &host, port, "true"))
        .map_err(|e| e.to_string())?;
    match u.code {
        0 => Ok(u),
        c => Err(format!("ssh exited with {c}")),
    }
}

fn append(r: &Record) {
    let Some(path) = std::env::var_os(LOG_ENV) else {
        return;
    };
    let u = &r.usage;
    let line = format!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
        if r.floor { "floor" } else { "stage" },
        r.stage,
        r.job_dir,
        u.start_ns,
        u.end_ns,
        u.wall.as_nanos(),
        u.user.as_micros(),
        u.sys.as_micros(),
        u.max_rss_kib,
        u.code
    );
    // One short O_APPEND write per line, so concurrent stages never interleave.
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// Every record appended so far.
pub fn read_log(path: &Path) -> Vec<Record> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter_map(parse).collect()
}

fn parse(line: &str) -> Option<Record> {
    let f: Vec<&str> = line.split('\t').collect();
    if f.len() != 10 {
        return None;
    }
    let n = |i: usize| f[i].parse::<u128>().ok();
    use std::time::Duration;
    Some(Record {
        floor: f[0] == "floor",
        stage: f[1].to_string(),
        job_dir: f[2].to_string(),
        usage: Usage {
            start_ns: n(3)?,
            end_ns: n(4)?,
            wall: Duration::from_nanos(n(5)? as u64),
            user: Duration::from_micros(n(6)? as u64),
            sys: Duration::from_micros(n(7)? as u64),
            max_rss_kib: n(8)? as u64,
            code: f[9].parse().ok()?,
        },
    })
}
