//! Streams 1 GiB of remote output through `executor run` and through the OpenSSH client, on the
//! same loopback sshd in one run, and prints throughput, peak RSS and per-phase connect costs.
//!
//! `cargo bench --bench ssh_stream` (set `SSH_BENCH_MIB` to change the size).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use executor::openssh_server::{OpenSshServer, OpenSshServerConfig};
use executor::ssh::{ConnectOptions, HostKeyPolicy, connect, generate_job_key};
use tokio_util::sync::CancellationToken;

/// Runs `cmd` to completion and returns (wall time, peak RSS in KiB, success).
fn measure(cmd: &mut Command) -> (Duration, i64, bool) {
    let started = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: wait4 on our own child, with valid out-pointers.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let elapsed = started.elapsed();
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    if !ok {
        let mut err = String::new();
        if let Some(mut e) = child.stderr {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        eprintln!("command failed ({status}): {err}");
    }
    (elapsed, usage.ru_maxrss, ok)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let mib: u64 = std::env::var("SSH_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let bytes = mib * 1024 * 1024;
    let work = tempfile::tempdir().expect("tempdir");
    let key = generate_job_key(work.path(), "id_ed25519", "bench").expect("key");
    let server = OpenSshServer::start(&OpenSshServerConfig::new(vec![key.public_openssh.clone()]))
        .expect("sshd (install openssh-server)");
    let host = server.addr().ip().to_string();
    let port = server.port().to_string();
    let user = server.user().to_owned();
    let remote = format!("head -c {bytes} /dev/zero");

    // OpenSSH client.
    let (ssh_time, ssh_rss, ok) = measure(
        Command::new("ssh")
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .args(["-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-i"])
            .arg(&key.private_path)
            .args(["-p", &port, &format!("{user}@{host}"), &remote]),
    );
    assert!(ok, "ssh failed");

    // executor: prepare (probe, pin), then run the script through the real binary.
    let job = work.path().join("job");
    std::fs::create_dir_all(&job).unwrap();
    let recipe = job.join("recipe.yaml");
    std::fs::write(
        &recipe,
        format!(
            "version: 1\nssh:\n  host: \"{host}\"\n  port: {port}\n  user: \"{user}\"\n  private_key_file: \"{}\"\n\
             prepare:\n  - id: probe\n    kind: ssh_probe\nrun:\n  - id: script\n    kind: ssh_run_script\n",
            key.private_path.display()
        ),
    )
    .unwrap();
    let script = job.join("script");
    std::fs::write(&script, format!("{remote}\n")).unwrap();
    let stage = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_executor"));
        c.current_dir(&job)
            .env("TMPDIR", &job)
            .env("BUILD_FAILURE_EXIT_CODE", "11")
            .env("SYSTEM_FAILURE_EXIT_CODE", "12")
            .env("BUILD_EXIT_CODE_FILE", job.join("exit"))
            .arg("--recipe")
            .arg(&recipe)
            .args(args);
        c
    };
    let (_, _, ok) = measure(&mut stage(&["prepare"]));
    assert!(ok, "prepare failed");
    let (ours_time, ours_rss, ok) = measure(&mut stage(&[
        "run",
        script.to_str().unwrap(),
        "build_script",
    ]));
    assert!(ok, "executor run failed");

    // Per-phase costs, in process, median of several connections.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let target = executor::ssh::Target::new(host.clone(), server.port(), user.clone());
    let (mut tcp, mut hs, mut auth, mut exec) = (vec![], vec![], vec![], vec![]);
    let mut ssh_true = vec![];
    for _ in 0..9 {
        rt.block_on(async {
            let s = connect(
                &target,
                &key.key,
                &HostKeyPolicy::Insecure,
                &ConnectOptions::default(),
            )
            .await
            .unwrap();
            let t = s.timings();
            tcp.push(t.tcp);
            hs.push(t.handshake);
            auth.push(t.auth);
            let started = Instant::now();
            s.run_command("true", None, 1024, &CancellationToken::new())
                .await
                .unwrap();
            exec.push(started.elapsed());
            s.close().await;
        });
        let (d, _, _) = measure(
            Command::new("ssh")
                .args([
                    "-o",
                    "StrictHostKeyChecking=no",
                    "-o",
                    "UserKnownHostsFile=/dev/null",
                ])
                .args(["-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-i"])
                .arg(&key.private_path)
                .args(["-p", &port, &format!("{user}@{host}"), "true"]),
        );
        ssh_true.push(d);
    }

    let mibs = |d: Duration| mib as f64 / d.as_secs_f64();
    println!(
        "ssh_stream: {mib} MiB of remote output to /dev/null, loopback sshd {}",
        sshd_version()
    );
    println!(
        "  OpenSSH client : {:>8.1} MiB/s  ({:.2} s)  peak RSS {:>6} KiB",
        mibs(ssh_time),
        ssh_time.as_secs_f64(),
        ssh_rss
    );
    println!(
        "  executor run   : {:>8.1} MiB/s  ({:.2} s)  peak RSS {:>6} KiB",
        mibs(ours_time),
        ours_time.as_secs_f64(),
        ours_rss
    );
    println!(
        "  throughput ratio executor/OpenSSH: {:.2}",
        ssh_time.as_secs_f64() / ours_time.as_secs_f64()
    );
    println!("  (executor run includes process start, state load, connect and auth)");
    println!(
        "  per connection (median of 9): tcp {} | handshake {} | auth {} | exec `true` {} | OpenSSH `ssh host true` total {}",
        ms(median(tcp)),
        ms(median(hs)),
        ms(median(auth)),
        ms(median(exec)),
        ms(median(ssh_true))
    );
    drop(server);
    let _ = Path::new("");
}

fn sshd_version() -> String {
    Command::new(executor::openssh_server::find_sshd().unwrap_or_default())
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
        .unwrap_or_default()
}
