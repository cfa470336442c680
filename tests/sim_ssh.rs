//! The SSH endpoints of simulated servers, driven with a russh client: key checks, exec with
//! streamed stdin/stdout/stderr, exit status and signal, the console-log host key, delayed
//! start, drop mid-job, floating IPs and the published port.

use crate::sim_support;

use std::time::Duration;

use base64::Engine;
use executor_simulator::{SimOptions, SshMode};
use serde_json::json;
use sim_support::ssh_client::{connect, console_host_key, exec, keypair, new_key};
use sim_support::{api_opts, start};

fn ssh_opts() -> SimOptions {
    SimOptions {
        ssh_mode: SshMode::Embedded,
        ..api_opts()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_bash_in_the_servers_directory_with_pinned_host_key() {
    let api = start(ssh_opts()).await;
    let key = new_key();
    keypair(&api, "k", &key).await;
    let id = api.create_ok("ssh-1", json!({"key_name": "k"})).await;
    api.wait_status(&id, "ACTIVE").await;
    let (addr, port) = api.wait_ssh_port(&id).await;
    assert_eq!(api.sim.ssh_port(&id), Some(port));
    let host_key = console_host_key(&api, &id).await;

    let h = connect(&addr, port, &key, Some(host_key.clone()))
        .await
        .expect("login with the key pair");
    let o = exec(
        &h,
        "echo out; echo err >&2; read line; echo \"got $line\"; exit 7",
        b"hello\n".to_vec(),
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out\ngot hello\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    assert_eq!(o.exit, Some(7));
    assert_eq!(o.signal, None);

    let o = exec(&h, "kill -TERM $$", vec![]).await;
    assert_eq!(o.signal.as_deref(), Some("TERM"));
    assert_eq!(o.exit, None);

    // A per-server working directory that persists across sessions.
    let o = exec(
        &h,
        "pwd; echo data > f.txt; test \"$HOME\" = \"$(pwd)\" && echo home-ok",
        vec![],
    )
    .await;
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(text.contains(&id), "{text}");
    assert!(text.contains("home-ok"));
    drop(h);
    let h = connect(&addr, port, &key, Some(host_key)).await.unwrap();
    assert_eq!(exec(&h, "cat f.txt", vec![]).await.stdout, b"data\n");

    // A different host key is detected by the client.
    assert!(
        connect(&addr, port, &key, Some(new_key().public_key().clone()))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_key_pair_or_user_data_keys_may_log_in() {
    let api = start(ssh_opts()).await;
    let pair = new_key();
    let injected = new_key();
    let stranger = new_key();
    keypair(&api, "k", &pair).await;
    let user_data = format!(
        "#cloud-config\nssh_authorized_keys:\n  - {}\n",
        injected.public_key().to_openssh().unwrap()
    );
    let ud = base64::engine::general_purpose::STANDARD.encode(user_data);
    let id = api
        .create_ok("ssh-2", json!({"key_name": "k", "user_data": ud}))
        .await;
    let (addr, port) = api.wait_ssh_port(&id).await;
    assert!(connect(&addr, port, &pair, None).await.is_ok());
    assert!(connect(&addr, port, &injected, None).await.is_ok());
    let err = connect(&addr, port, &stranger, None).await.err();
    assert_eq!(err.as_deref(), Some("authentication rejected"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_stdin_and_output_are_streamed() {
    let api = start(ssh_opts()).await;
    let key = new_key();
    keypair(&api, "k", &key).await;
    let id = api.create_ok("ssh-3", json!({"key_name": "k"})).await;
    let (addr, port) = api.wait_ssh_port(&id).await;
    let h = connect(&addr, port, &key, None).await.unwrap();

    let input: Vec<u8> = (0..12 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let o = exec(&h, "wc -c", input).await;
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        (12 * 1024 * 1024).to_string()
    );
    assert_eq!(o.exit, Some(0));

    // A process that ignores its stdin does not wedge the session.
    let o = exec(&h, "echo early; exit 3", vec![0u8; 4 * 1024 * 1024]).await;
    assert_eq!(o.stdout, b"early\n");
    assert_eq!(o.exit, Some(3));

    let bytes = 48 * 1024 * 1024;
    let o = exec(
        &h,
        &format!("head -c {bytes} /dev/zero; echo done >&2"),
        vec![],
    )
    .await;
    assert_eq!(o.stdout_len, bytes);
    assert_eq!(o.stderr, b"done\n");
    assert_eq!(o.exit, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_comes_up_after_active_and_can_be_dropped_mid_job() {
    let api = start(SimOptions {
        ssh_delay: Duration::from_millis(800),
        // As for a non-root simulator: the port is a free one, so a recipe must read it.
        prefer_port_22: false,
        ..ssh_opts()
    })
    .await;
    let key = new_key();
    keypair(&api, "k", &key).await;
    let id = api.create_ok("ssh-4", json!({"key_name": "k"})).await;
    let s = api.wait_status(&id, "ACTIVE").await;
    // ACTIVE, but the guest has not booted: its port is already published (a recipe reads it
    // right after ACTIVE), yet refuses connections, and the console shows no keys yet.
    let early: u16 = s["metadata"]["ssh_port"]
        .as_str()
        .expect("ssh_port published at ACTIVE")
        .parse()
        .unwrap();
    let fixed = s["addresses"]["private"][0]["addr"].as_str().unwrap();
    let refused = tokio::net::TcpStream::connect((fixed, early)).await;
    assert_eq!(
        refused.map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionRefused)
    );
    let r = api
        .post(
            &format!("/compute/v2.1/servers/{id}/action"),
            json!({"os-getConsoleOutput": {}}),
        )
        .await;
    assert!(!r.body["output"].as_str().unwrap().contains("SSH HOST KEY"));
    let (addr, port) = api.wait_ssh_port(&id).await;
    assert_eq!(port, early, "the guest listens on the published port");
    assert_ne!(port, 22);
    let h = connect(&addr, port, &key, None).await.unwrap();

    let job =
        tokio::spawn(async move { exec(&h, "echo started; sleep 60; echo never", vec![]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(api.sim.faults().drop_ssh(&id));
    let o = tokio::time::timeout(Duration::from_secs(20), job)
        .await
        .expect("job ends when SSH drops")
        .unwrap();
    assert_eq!(o.exit, None, "no exit status from a dropped connection");
    assert!(!String::from_utf8_lossy(&o.stdout).contains("never"));
    // Nothing listens any more; the server itself is still ACTIVE.
    assert!(connect(&addr, port, &key, None).await.is_err());
    assert_eq!(api.sim.server_status(&id).as_deref(), Some("ACTIVE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floating_ip_reaches_the_same_endpoint_and_port_is_published() {
    let api = start(SimOptions {
        prefer_port_22: false,
        ..ssh_opts()
    })
    .await;
    let key = new_key();
    keypair(&api, "k", &key).await;
    let id = api.create_ok("ssh-5", json!({"key_name": "k"})).await;
    let (fixed, port) = api.wait_ssh_port(&id).await;
    assert_ne!(
        port, 22,
        "without port 22 a free port is used and published"
    );
    let public = api.network_id("public").await;
    let port_id = api
        .first_id(&format!("/network/v2.0/ports?device_id={id}"), "ports")
        .await;
    let r = api
        .post(
            "/network/v2.0/floatingips",
            json!({"floatingip": {"floating_network_id": public, "port_id": port_id}}),
        )
        .await;
    assert_eq!(r.status, 201);
    let fip = r.body["floatingip"]["floating_ip_address"]
        .as_str()
        .unwrap()
        .to_string();
    let fip_id = r.body["floatingip"]["id"].as_str().unwrap().to_string();
    assert!(fip.starts_with("127.78."));
    let h = connect(&fip, port, &key, None)
        .await
        .expect("reachable on the floating address");
    assert_eq!(exec(&h, "echo via-fip", vec![]).await.stdout, b"via-fip\n");
    drop(h);
    assert!(connect(&fixed, port, &key, None).await.is_ok());
    api.send(
        "PUT",
        &format!("/network/v2.0/floatingips/{fip_id}"),
        Some(json!({"floatingip": {"port_id": null}})),
        &[],
    )
    .await;
    assert!(
        connect(&fip, port, &key, None).await.is_err(),
        "disassociated address no longer answers"
    );

    // Deleting the server stops its endpoint.
    api.delete(&format!("/compute/v2.1/servers/{id}")).await;
    api.wait_gone(&id).await;
    assert!(connect(&fixed, port, &key, None).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pty_requests_succeed_and_signals_reach_the_command() {
    let api = start(ssh_opts()).await;
    let key = new_key();
    keypair(&api, "k", &key).await;
    let id = api.create_ok("ssh-6", json!({"key_name": "k"})).await;
    let (addr, port) = api.wait_ssh_port(&id).await;
    let h = connect(&addr, port, &key, None).await.unwrap();
    let mut ch = h.channel_open_session().await.unwrap();
    ch.request_pty(true, "xterm", 80, 24, 0, 0, &[])
        .await
        .unwrap();
    ch.exec(
        true,
        "trap 'echo got-term; exit 9' TERM; echo ready; while :; do sleep 0.1; done",
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let mut exit = None;
    let mut signalled = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let msg = tokio::time::timeout_at(deadline, ch.wait())
            .await
            .expect("command ends after the signal");
        match msg {
            Some(russh::ChannelMsg::Data { data }) => {
                out.extend_from_slice(&data);
                if !signalled && out.ends_with(b"ready\n") {
                    ch.signal(russh::Sig::TERM).await.unwrap();
                    signalled = true;
                }
            }
            Some(russh::ChannelMsg::ExitStatus { exit_status }) => exit = Some(exit_status),
            Some(_) => {}
            None => break,
        }
    }
    assert_eq!(String::from_utf8_lossy(&out), "ready\ngot-term\n");
    assert_eq!(exit, Some(9));
}
