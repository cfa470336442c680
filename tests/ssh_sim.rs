//! The SSH back end against the simulator's embedded SSH server (what `executor simulate`
//! uses): host-key trust from the console log, key types, streams, exit codes, cancellation.

use crate::sim_support;

use std::time::Duration;

use executor_simulator::{SimOptions, SshMode};
use executor_ssh::{
    ClientKey, ConnectOptions, HostKeyPolicy, ProbeOptions, RemoteExit, ScriptOptions, SshError,
    SshSession, Target, connect, parse_console_fingerprints, probe,
};
use russh::keys::ssh_key::{Algorithm, EcdsaCurve, HashAlg, PrivateKey};
use serde_json::json;
use sim_support::ssh_client::keypair;
use sim_support::{Api, api_opts, start};
use tokio_util::sync::CancellationToken;

use crate::ssh_support;
use ssh_support::{Collector, gone, run_and_cancel_once_started};

struct Vm {
    api: Api,
    id: String,
    target: Target,
    key: ClientKey,
}

async fn console(api: &Api, id: &str) -> String {
    let r = api
        .post(
            &format!("/compute/v2.1/servers/{id}/action"),
            json!({"os-getConsoleOutput": {"length": null}}),
        )
        .await;
    r.body["output"].as_str().unwrap_or_default().to_owned()
}

async fn boot(key: PrivateKey) -> Vm {
    let api = start(SimOptions {
        ssh_mode: SshMode::Embedded,
        ..api_opts()
    })
    .await;
    keypair(&api, "k", &key).await;
    let id = api.create_ok("ssh-sim", json!({"key_name": "k"})).await;
    api.wait_status(&id, "ACTIVE").await;
    let (addr, port) = api.wait_ssh_port(&id).await;
    Vm {
        api,
        id,
        target: Target::new(addr, port, "ubuntu"),
        key: ClientKey::from_private_key(key),
    }
}

fn ed25519() -> PrivateKey {
    PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap()
}

async fn session(vm: &Vm) -> SshSession {
    connect(
        &vm.target,
        &vm.key,
        &HostKeyPolicy::Insecure,
        &ConnectOptions::default(),
    )
    .await
    .unwrap()
}

async fn run(
    s: &SshSession,
    dir: &tempfile::TempDir,
    body: &[u8],
) -> (Vec<u8>, Vec<u8>, RemoteExit) {
    let path = dir.path().join("script.sh");
    std::fs::write(&path, body).unwrap();
    let (mut o, mut e) = (Collector::default(), Collector::default());
    let exit = tokio::time::timeout(
        Duration::from_secs(120),
        s.run_script(
            &path,
            &mut o,
            &mut e,
            &ScriptOptions::default(),
            &CancellationToken::new(),
        ),
    )
    .await
    .expect("no hang")
    .expect("runs");
    (o.take(), e.take(), exit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_fingerprints_and_pinning_work_against_the_simulator() {
    let vm = boot(ed25519()).await;
    let mut fps = Vec::new();
    for _ in 0..100 {
        fps = parse_console_fingerprints(&console(&vm.api, &vm.id).await);
        if !fps.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !fps.is_empty(),
        "no fingerprint block in the simulated console log"
    );
    let list: Vec<String> = fps.into_iter().map(|f| f.sha256).collect();
    let policy = HostKeyPolicy::fingerprints(&list).unwrap();
    let probed = probe(
        &vm.target,
        &vm.key,
        &policy,
        &ProbeOptions::default(),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    let fp = probed
        .session
        .host_key()
        .fingerprint(HashAlg::Sha256)
        .to_string();
    assert!(list.contains(&fp));

    let pinned = HostKeyPolicy::pinned(Some(&probed.host_key_pin)).unwrap();
    connect(&vm.target, &vm.key, &pinned, &ConnectOptions::default())
        .await
        .unwrap();
    let other = HostKeyPolicy::pinned(Some(&ed25519().public_key().to_openssh().unwrap())).unwrap();
    let err = connect(&vm.target, &vm.key, &other, &ConnectOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::HostKeyMismatch { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecdsa_and_rsa_keys_log_in_and_a_stranger_fails_as_auth() {
    // RSA generation in a debug build is slow; ssh-keygen is not.
    let keys = tempfile::tempdir().unwrap();
    let rsa = ssh_support::ssh_keygen(keys.path(), "rsa", &["-t", "rsa", "-b", "2048"], "");
    for key in [
        PrivateKey::random(
            &mut rand::rng(),
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP256,
            },
        )
        .unwrap(),
        russh::keys::load_secret_key(&rsa, None).unwrap(),
    ] {
        let vm = boot(key).await;
        let s = session(&vm).await;
        let out = s
            .run_command("echo in", None, 64, &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(out.stdout, b"in\n");

        let stranger = ClientKey::from_private_key(ed25519());
        let options = ProbeOptions {
            auth_grace: Duration::ZERO,
            ..ProbeOptions::default()
        };
        let err = probe(
            &vm.target,
            &stranger,
            &HostKeyPolicy::Insecure,
            &options,
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, SshError::Auth { .. }), "{err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_cases_behave_as_with_openssh() {
    let vm = boot(ed25519()).await;
    let s = session(&vm).await;
    let dir = tempfile::tempdir().unwrap();

    for code in [0u32, 1, 42, 255] {
        let (out, _, exit) = run(&s, &dir, format!("echo x\nexit {code}\n").as_bytes()).await;
        assert_eq!(
            (out.as_slice(), exit),
            (&b"x\n"[..], RemoteExit::Code(code))
        );
    }

    let (_, _, exit) = run(&s, &dir, b"kill -s KILL $$\n").await;
    assert!(
        matches!(&exit, RemoteExit::Signal { name, .. } if name == "KILL"),
        "{exit:?}"
    );

    // 10 MiB here-document, checksummed remotely.
    let payload: String = (0..400_000u32)
        .map(|i| format!("{i:09} payload line\n"))
        .collect();
    let script =
        format!("cat > payload <<'EOF_X'\n{payload}EOF_X\nsha256sum payload | cut -c1-64\n");
    assert!(script.len() > 10 * 1024 * 1024 / 2);
    let (out, err, exit) = run(&s, &dir, script.as_bytes()).await;
    assert_eq!(
        exit,
        RemoteExit::Code(0),
        "{}",
        String::from_utf8_lossy(&err)
    );
    let local = {
        let mut c = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut c.stdin.take().unwrap(), payload.as_bytes()).unwrap();
        String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap()[..64].to_owned()
    };
    assert_eq!(String::from_utf8(out).unwrap().trim(), local);

    // > 4 MiB on stderr interleaved with stdout.
    let (out, err, exit) = run(
        &s,
        &dir,
        b"l=$(head -c 1023 /dev/zero | tr '\\0' e)\ni=0; while [ $i -lt 5000 ]; do printf '%s\\n' \"$l\" >&2; echo o$i; i=$((i+1)); done\n",
    )
    .await;
    assert_eq!(exit, RemoteExit::Code(0));
    assert_eq!(err.len(), 5000 * 1024);
    assert_eq!(String::from_utf8(out).unwrap().lines().count(), 5000);

    // Bytes, not text.
    let (out, _, _) = run(&s, &dir, b"printf '\\377\\376\\200ok\\n'\n").await;
    assert_eq!(out, b"\xff\xfe\x80ok\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_stops_the_script_and_its_children_on_the_simulator() {
    let vm = boot(ed25519()).await;
    let s = session(&vm).await;
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let script = dir.path().join("s.sh");
    std::fs::write(
        &script,
        format!(
            "echo $$ >> '{p}'\nsh -c 'trap \"\" TERM; echo $$ >> \"{p}\"; sleep 300' &\nsleep 0.2\necho started\nwait\n",
            p = pids.display()
        ),
    )
    .unwrap();
    run_and_cancel_once_started(&s, &script).await;
    for line in std::fs::read_to_string(&pids).unwrap().lines() {
        let pid: i32 = line.trim().parse().unwrap();
        assert!(gone(pid).await, "pid {pid} survived");
    }
}
