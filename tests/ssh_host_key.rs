//! Host-key trust against a real sshd: out of band, pinned at first contact, insecure.

use crate::ssh_support;

use executor_simulator::openssh_server::OpenSshServer;
use executor_ssh::{
    ConnectOptions, HostKeyPolicy, ProbeOptions, RemoteExit, ScriptOptions, SshError, connect,
    parse_console_fingerprints, probe,
};
use russh::keys::ssh_key::HashAlg;
use ssh_support::{Collector, Fixture, sh};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_at_first_contact_then_a_changed_key_is_refused_and_the_script_never_sent() {
    let mut fx = Fixture::start();
    let cancel = CancellationToken::new();
    let first = probe(
        &fx.target(),
        &fx.key,
        &HostKeyPolicy::pinned(None).unwrap(),
        &ProbeOptions::default(),
        &cancel,
    )
    .await
    .unwrap();
    let pin = first.host_key_pin.clone();
    assert!(pin.starts_with("ssh-ed25519 AAAA"), "{pin}");
    first.session.close().await;

    // A later stage with the pin: same server, accepted.
    let pinned = HostKeyPolicy::pinned(Some(&pin)).unwrap();
    let again = connect(&fx.target(), &fx.key, &pinned, &ConnectOptions::default())
        .await
        .unwrap();
    assert_eq!(sh(&again, "echo same").await, ("same\n".into(), 0));
    again.close().await;

    // Another machine answers on the same address (IP reuse, man in the middle).
    let marker = fx.remote_dir().join("script-ran");
    let mut config =
        executor_simulator::openssh_server::OpenSshServerConfig::new(vec![fx.public.clone()]);
    config.listen = fx.server.addr().ip();
    config.port = Some(fx.server.port());
    fx.server.kill();
    let impostor = OpenSshServer::start(&config).unwrap();
    let err = connect(&fx.target(), &fx.key, &pinned, &ConnectOptions::default())
        .await
        .unwrap_err();
    let SshError::HostKeyMismatch {
        expected,
        presented,
        ..
    } = &err
    else {
        panic!("expected a host-key mismatch, got {err:?}");
    };
    assert!(
        expected.contains(
            &fx.server
                .host_key()
                .fingerprint(HashAlg::Sha256)
                .to_string()
        )
    );
    assert!(presented.contains(&impostor.host_key().fingerprint(HashAlg::Sha256).to_string()));
    assert!(err.to_string().contains("nothing was sent"), "{err}");
    assert!(!err.is_retryable());

    // The probe does not retry a mismatch either.
    let err = probe(
        &fx.target(),
        &fx.key,
        &pinned,
        &ProbeOptions::default(),
        &cancel,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SshError::HostKeyMismatch { .. }), "{err:?}");

    // Check on the impostor itself that no script arrived (it would have created the marker).
    let script = fx.write_script("s.sh", format!("touch '{}'\n", marker.display()).as_bytes());
    let insecure = connect(
        &fx.target(),
        &fx.key,
        &HostKeyPolicy::Insecure,
        &ConnectOptions::default(),
    )
    .await
    .unwrap();
    let (seen, _) = sh(
        &insecure,
        &format!("test -e '{}' && echo yes || echo no", marker.display()),
    )
    .await;
    assert_eq!(seen, "no\n");
    // Sanity: the same script over an accepted connection does create it.
    let (mut o, mut e) = (Collector::default(), Collector::default());
    let exit = insecure
        .run_script(&script, &mut o, &mut e, &ScriptOptions::default(), &cancel)
        .await
        .unwrap();
    assert_eq!(exit, RemoteExit::Code(0));
    assert!(marker.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_band_fingerprint_from_the_console_log() {
    let fx = Fixture::start();
    let good = fx
        .server
        .host_key()
        .fingerprint(HashAlg::Sha256)
        .to_string();
    let console = format!(
        "[  12.3] cloud-init[812]: Generating public/private ed25519 key pair.\n\
         -----BEGIN SSH HOST KEY FINGERPRINTS-----\n\
         256 SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU root@vm (ECDSA)\n\
         256 {good} root@vm (ED25519)\n\
         -----END SSH HOST KEY FINGERPRINTS-----\n"
    );
    let fps: Vec<String> = parse_console_fingerprints(&console)
        .into_iter()
        .map(|f| f.sha256)
        .collect();
    let policy = HostKeyPolicy::fingerprints(&fps).unwrap();
    let session = connect(&fx.target(), &fx.key, &policy, &ConnectOptions::default())
        .await
        .unwrap();
    assert_eq!(sh(&session, "echo oob").await, ("oob\n".into(), 0));

    let wrong =
        HostKeyPolicy::fingerprints(&["SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"])
            .unwrap();
    let err = connect(&fx.target(), &fx.key, &wrong, &ConnectOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SshError::HostKeyMismatch {
                mode: "out-of-band fingerprint",
                ..
            }
        ),
        "{err:?}"
    );

    assert!(HostKeyPolicy::fingerprints::<&str>(&[]).is_err());
    assert!(HostKeyPolicy::fingerprints(&["MD5:00:11"]).is_err());
    assert!(HostKeyPolicy::pinned(Some("not a key")).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_mode_accepts_any_key() {
    let fx = Fixture::start();
    let session = connect(
        &fx.target(),
        &fx.key,
        &HostKeyPolicy::Insecure,
        &ConnectOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        session.host_key().fingerprint(HashAlg::Sha256),
        fx.server.host_key().fingerprint(HashAlg::Sha256)
    );
    assert_eq!(HostKeyPolicy::Insecure.mode_name(), "insecure");
}
