//! The simulator's optional real-sshd mode: each server is played by an OpenSSH sshd with the
//! server's host key and authorized keys (requires openssh-server, installed by .ci/setup).

use crate::sim_support;

use std::time::Duration;

use executor_simulator::openssh_server::current_user;
use executor_simulator::{SimOptions, SshMode};
use serde_json::json;
use sim_support::ssh_client::{connect_as, console_host_key, exec, keypair, new_key};
use sim_support::{api_opts, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_sshd_plays_the_server() {
    let api = start(SimOptions {
        ssh_mode: SshMode::OpenSsh,
        ..api_opts()
    })
    .await;
    let user = current_user().unwrap();
    let key = new_key();
    keypair(&api, "k", &key).await;
    let id = api.create_ok("real-1", json!({"key_name": "k"})).await;
    let (addr, port) = api.wait_ssh_port(&id).await;
    let host_key = console_host_key(&api, &id).await;
    let meta = api.server(&id).await.body["server"]["metadata"].clone();
    assert_eq!(meta["ssh_user"], user.as_str());

    let h = connect_as(&user, &addr, port, &key, Some(host_key.clone()))
        .await
        .expect("sshd accepts the key pair with the console's host key");
    let o = exec(&h, "echo out; echo err >&2; pwd; exit 7", vec![]).await;
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(out.starts_with("out\n"), "{out}");
    assert!(out.contains(&id), "runs in the server's directory: {out}");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    assert_eq!(o.exit, Some(7));
    let o = exec(&h, "wc -c", vec![7u8; 3 * 1024 * 1024]).await;
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        (3 * 1024 * 1024).to_string()
    );
    assert!(
        connect_as(&user, &addr, port, &new_key(), None)
            .await
            .is_err(),
        "other keys are refused"
    );

    // Floating IPs are forwarded to the same sshd.
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
    let fip = r.body["floatingip"]["floating_ip_address"]
        .as_str()
        .unwrap()
        .to_string();
    let hf = connect_as(&user, &fip, port, &key, Some(host_key))
        .await
        .expect("reachable through the floating IP");
    assert_eq!(exec(&hf, "echo fip", vec![]).await.stdout, b"fip\n");

    // Dropped mid-job: the session dies without an exit status.
    let job = tokio::spawn(async move { exec(&h, "sleep 60; echo never", vec![]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(api.sim.faults().drop_ssh(&id));
    let o = tokio::time::timeout(Duration::from_secs(20), job)
        .await
        .expect("job ends")
        .unwrap();
    assert_eq!(o.exit, None);
    assert!(connect_as(&user, &addr, port, &key, None).await.is_err());
}
