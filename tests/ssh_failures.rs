//! Failure paths against a real sshd: lost server, cancellation, auth failure, late listener.

use crate::ssh_support;

use std::time::Duration;

use executor_simulator::openssh_server::{OpenSshServer, OpenSshServerConfig};
use executor_ssh::{HostKeyPolicy, ProbeOptions, ScriptOptions, SshError, generate_job_key, probe};
use ssh_support::{Collector, Fixture, gone, run_and_cancel_once_started, sh};
use tokio_util::sync::CancellationToken;

fn read_pid(path: &std::path::Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_stream_is_a_system_failure() {
    let mut fx = Fixture::start();
    let pidfile = fx.remote_dir().join("pid");
    let script = fx.write_script(
        "s.sh",
        format!(
            "echo $$ > '{}'\necho started\nsleep 300\necho never\n",
            pidfile.display()
        )
        .as_bytes(),
    );
    let session = fx.session().await;
    let (out, err) = (Collector::default(), Collector::default());
    let (mut o, mut e) = (out.clone(), err.clone());
    let cancel = CancellationToken::new();
    let opts = ScriptOptions::default();
    let running = session.run_script(&script, &mut o, &mut e, &opts, &cancel);
    let killer = async {
        out.wait_for(b"started\n").await;
        fx.server.kill();
    };
    let (result, ()) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(running, killer)
    })
    .await
    .expect("no hang");
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            SshError::ConnectionLost { .. } | SshError::NoExitStatus { .. }
        ),
        "{err:?}"
    );
    assert!(err.is_system_failure());
    // Like a crashed VM, the stand-in took its processes down with it.
    assert!(gone(read_pid(&pidfile)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_stops_the_script_and_its_children() {
    let fx = Fixture::start();
    let dir = fx.remote_dir();
    let (shell_pid, child_pid, grandchild_pid) =
        (dir.join("shell"), dir.join("child"), dir.join("grandchild"));
    // A child that ignores SIGTERM and a grandchild in the background: both must die.
    let script = format!(
        "echo $$ > '{}'\n\
         sh -c 'trap \"\" TERM; echo $$ > \"{}\"; sleep 300 & echo $! > \"{}\"; while :; do sleep 1; done' &\n\
         while [ ! -s '{}' ]; do sleep 0.05; done\n\
         echo started\nwait\n",
        shell_pid.display(),
        child_pid.display(),
        grandchild_pid.display(),
        grandchild_pid.display(),
    );
    let script = fx.write_script("s.sh", script.as_bytes());
    let session = fx.session().await;
    run_and_cancel_once_started(&session, &script).await;

    let pids = [
        read_pid(&shell_pid),
        read_pid(&child_pid),
        read_pid(&grandchild_pid),
    ];
    for pid in pids {
        assert!(
            gone(pid).await,
            "remote process {pid} survived cancellation"
        );
    }
    // The connection is still usable: cancelling never tears down the VM or the session.
    assert_eq!(sh(&session, "echo alive").await, ("alive\n".into(), 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_auth_failure_ends_the_probe_with_an_auth_error() {
    let fx = Fixture::start();
    let other = generate_job_key(fx.dir.path(), "other", "other").unwrap();
    let options = ProbeOptions {
        timeout: Duration::from_secs(600),
        auth_grace: Duration::from_millis(300),
        ..ProbeOptions::default()
    };
    let mut target = fx.target();
    target.user = fx.server.user().to_owned();
    let err = tokio::time::timeout(
        Duration::from_secs(120),
        probe(
            &target,
            &other.key,
            &HostKeyPolicy::Insecure,
            &options,
            &CancellationToken::new(),
        ),
    )
    .await
    .expect("must not wait for the 10-minute probe timeout")
    .unwrap_err();
    let SshError::Auth { user, key_type, .. } = &err else {
        panic!("expected an auth error, got {err:?}");
    };
    assert_eq!(user, fx.server.user());
    assert_eq!(key_type, "ssh-ed25519");
    let msg = err.to_string();
    assert!(
        msg.contains(fx.server.user()) && msg.contains("ssh-ed25519"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_waits_for_a_late_server_and_runs_the_readiness_command() {
    let dir = tempfile::tempdir().unwrap();
    let key = generate_job_key(dir.path(), "k", "k").unwrap();
    let mut config = OpenSshServerConfig::new(vec![key.public_openssh.clone()]);
    config.listen = ssh_support::loopback();
    let port = std::net::TcpListener::bind((config.listen, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    config.port = Some(port);
    let ready_file = dir.path().join("ready");
    let options = ProbeOptions {
        timeout: Duration::from_secs(60),
        readiness_command: Some(format!("test -e '{}'", ready_file.display())),
        ..ProbeOptions::default()
    };
    let user = executor_simulator::openssh_server::current_user().unwrap();
    let target = executor_ssh::Target::new(config.listen.to_string(), port, user);
    let cancel = CancellationToken::new();

    // Nothing listens yet: refused connections are retried until sshd appears.
    let starter = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        OpenSshServer::start(&config).unwrap()
    };
    let first_contact = HostKeyPolicy::pinned(None).unwrap();
    let (result, server) = tokio::join!(
        probe(&target, &key.key, &first_contact, &options, &cancel),
        starter
    );
    // The readiness file does not exist yet, so the readiness command fails.
    let err = result.unwrap_err();
    assert!(matches!(err, SshError::RemoteFailed { .. }), "{err:?}");

    std::fs::write(&ready_file, b"").unwrap();
    let probed = probe(
        &target,
        &key.key,
        &HostKeyPolicy::pinned(None).unwrap(),
        &options,
        &cancel,
    )
    .await
    .unwrap();
    assert!(probed.host_key_pin.starts_with("ssh-ed25519 "));
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_gives_up_at_its_timeout_and_honours_cancellation() {
    let dir = tempfile::tempdir().unwrap();
    let key = generate_job_key(dir.path(), "k", "k").unwrap();
    let ip = ssh_support::loopback();
    let port = std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = executor_ssh::Target::new(ip.to_string(), port, "nobody");
    let options = ProbeOptions {
        timeout: Duration::from_millis(800),
        ..ProbeOptions::default()
    };
    let err = probe(
        &target,
        &key.key,
        &HostKeyPolicy::Insecure,
        &options,
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, SshError::ProbeTimeout { attempts, .. } if attempts > 1),
        "{err:?}"
    );

    let cancel = CancellationToken::new();
    cancel.cancel();
    let err = probe(
        &target,
        &key.key,
        &HostKeyPolicy::Insecure,
        &ProbeOptions::default(),
        &cancel,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SshError::Canceled { .. }), "{err:?}");
}
