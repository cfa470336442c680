//! Item 5: remote output streamed through `executor run` and through the OpenSSH client, on the
//! same loopback sshd in one run, plus the per-connection costs of connect, auth and exec.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use executor_simulator::openssh_server::{OpenSshServer, OpenSshServerConfig};
use executor_ssh::{ConnectOptions, HostKeyPolicy, Target, connect, generate_job_key};
use tokio_util::sync::CancellationToken;

use super::proc_usage::{self, Usage};
use super::stage_run::StageRun;

pub struct SizeRun {
    pub mib: u64,
    pub openssh: Usage,
    pub ours: Usage,
}

pub struct Phases {
    pub tcp: Duration,
    pub handshake: Duration,
    pub auth: Duration,
    pub exec_true: Duration,
    pub openssh_true: Duration,
}

pub struct Stream {
    pub sizes: Vec<SizeRun>,
    pub phases: Phases,
    pub sshd: String,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

pub fn measure(sizes_mib: &[u64]) -> Stream {
    let work = tempfile::tempdir().expect("tempdir");
    let key = generate_job_key(work.path(), "id_ed25519", "bench").expect("key");
    let server = OpenSshServer::start(&OpenSshServerConfig::new(vec![key.public_openssh.clone()]))
        .expect("sshd (install openssh-server)");
    let host = server.addr().ip().to_string();
    let port = server.port();
    let user = server.user().to_owned();

    // A recipe that only probes (pinning the host key) and runs the script.
    let job = work.path().join("job");
    std::fs::create_dir_all(&job).expect("job dir");
    let recipe = job.join("recipe.yaml");
    std::fs::write(
        &recipe,
        format!(
            "version: 1\nssh:\n  host: \"{host}\"\n  port: {port}\n  user: \"{user}\"\n  private_key_file: \"{}\"\n\
             prepare:\n  - id: probe\n    kind: ssh_probe\nrun:\n  - id: script\n    kind: ssh_run_script\n",
            key.private_path.display()
        ),
    )
    .expect("recipe");
    let stage = |args: &[&str]| {
        let mut c = StageRun::new(&job, args)
            .program(super::sim_jobs::executor_under_test())
            .recipe(&recipe)
            .command();
        c.stdout(Stdio::null()).stderr(Stdio::inherit());
        c
    };
    let prepared = proc_usage::run(&mut stage(&["prepare"])).expect("prepare");
    assert_eq!(prepared.code, 0, "prepare failed");

    let mut sizes = vec![];
    for &mib in sizes_mib {
        let remote = format!("head -c {} /dev/zero", mib * 1024 * 1024);
        let openssh = proc_usage::run_quiet(&mut proc_usage::openssh(
            &key.private_path,
            &user,
            &host,
            port,
            &remote,
        ))
        .expect("ssh");
        assert_eq!(openssh.code, 0, "ssh failed");
        let script = job.join("script");
        std::fs::write(&script, format!("{remote}\n")).expect("script");
        let ours = proc_usage::run(&mut stage(&[
            "run",
            &script.display().to_string(),
            "build_script",
        ]))
        .expect("executor run");
        assert_eq!(ours.code, 0, "executor run failed");
        sizes.push(SizeRun { mib, openssh, ours });
    }

    // Per-connection phases, in process, median of several connections.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let target = Target::new(host.clone(), port, user.clone());
    let (mut tcp, mut hs, mut auth, mut exec, mut floor) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..9 {
        rt.block_on(async {
            let s = connect(
                &target,
                &key.key,
                &HostKeyPolicy::Insecure,
                &ConnectOptions::default(),
            )
            .await
            .expect("connect");
            let t = s.timings();
            tcp.push(t.tcp);
            hs.push(t.handshake);
            auth.push(t.auth);
            let started = Instant::now();
            s.run_command("true", None, 1024, &CancellationToken::new())
                .await
                .expect("exec");
            exec.push(started.elapsed());
            s.close().await;
        });
        let u = proc_usage::run_quiet(&mut proc_usage::openssh(
            &key.private_path,
            &user,
            &host,
            port,
            "true",
        ))
        .expect("ssh true");
        floor.push(u.wall);
    }
    let sshd = Command::new(executor_simulator::openssh_server::find_sshd().unwrap_or_default())
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
        .unwrap_or_default();
    Stream {
        sizes,
        phases: Phases {
            tcp: median(tcp),
            handshake: median(hs),
            auth: median(auth),
            exec_true: median(exec),
            openssh_true: median(floor),
        },
        sshd,
    }
}
