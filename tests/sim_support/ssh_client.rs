//! A russh client for the simulator's SSH endpoints.

use std::sync::Arc;
use std::time::Duration;

use russh::ChannelMsg;
use russh::client::{self, Handle};
use russh::keys::ssh_key::{Algorithm, PrivateKey, PublicKey};
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use serde_json::json;

use super::Api;

pub struct Client {
    expected: Option<PublicKey>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(match (key, &self.expected) {
            (_, None) => true,
            (PublicKeyOrCertificate::PublicKey { key, .. }, Some(want)) => {
                key.key_data() == want.key_data()
            }
            _ => false,
        })
    }
}

pub fn new_key() -> PrivateKey {
    PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap()
}

pub async fn connect(
    addr: &str,
    port: u16,
    key: &PrivateKey,
    expected: Option<PublicKey>,
) -> Result<Handle<Client>, String> {
    connect_as("ubuntu", addr, port, key, expected).await
}

pub async fn connect_as(
    user: &str,
    addr: &str,
    port: u16,
    key: &PrivateKey,
    expected: Option<PublicKey>,
) -> Result<Handle<Client>, String> {
    let config = Arc::new(client::Config::default());
    let fut = client::connect(config, (addr, port), Client { expected });
    let mut h = tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let auth = h
        .authenticate_publickey(
            user,
            PrivateKeyWithHashAlg::new(Arc::new(key.clone()), None),
        )
        .await
        .map_err(|e| e.to_string())?;
    if !auth.success() {
        return Err("authentication rejected".into());
    }
    Ok(h)
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub stdout: Vec<u8>,
    pub stdout_len: usize,
    pub stderr: Vec<u8>,
    pub exit: Option<u32>,
    pub signal: Option<String>,
    pub closed: bool,
}

/// Runs `cmd`, streaming `stdin`; keeps the first 64 KiB of stdout but counts all of it.
pub async fn exec(h: &Handle<Client>, cmd: &str, stdin: Vec<u8>) -> Outcome {
    let ch = h.channel_open_session().await.unwrap();
    ch.exec(true, cmd).await.unwrap();
    let (mut rx, tx) = ch.split();
    tokio::spawn(async move {
        for chunk in stdin.chunks(256 * 1024) {
            if tx.data(chunk).await.is_err() {
                return;
            }
        }
        let _ = tx.eof().await;
    });
    let mut o = Outcome::default();
    while let Some(msg) = rx.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                o.stdout_len += data.len();
                if o.stdout.len() < 65536 {
                    o.stdout.extend_from_slice(&data);
                }
            }
            ChannelMsg::ExtendedData { data, ext: 1 } => o.stderr.extend_from_slice(&data),
            ChannelMsg::ExitStatus { exit_status } => o.exit = Some(exit_status),
            ChannelMsg::ExitSignal { signal_name, .. } => {
                o.signal = Some(format!("{signal_name:?}"))
            }
            ChannelMsg::Close => o.closed = true,
            _ => {}
        }
    }
    o
}

pub async fn keypair(api: &Api, name: &str, key: &PrivateKey) {
    let r = api
        .post(
            "/compute/v2.1/os-keypairs",
            json!({"keypair": {"name": name,
        "public_key": key.public_key().to_openssh().unwrap()}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// The host key printed in the console log, between cloud-init's KEYS markers.
pub async fn console_host_key(api: &Api, id: &str) -> PublicKey {
    let r = api
        .post(
            &format!("/compute/v2.1/servers/{id}/action"),
            json!({"os-getConsoleOutput": {"length": null}}),
        )
        .await;
    let out = r.body["output"].as_str().unwrap().to_string();
    let line = out
        .lines()
        .skip_while(|l| !l.contains("BEGIN SSH HOST KEY KEYS"))
        .nth(1)
        .unwrap_or_else(|| panic!("no host keys in console: {out}"));
    PublicKey::from_openssh(line).unwrap()
}
