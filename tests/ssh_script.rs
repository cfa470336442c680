//! The script runner against a real sshd: size, bytes, streams, exit codes, liveness.

use crate::ssh_support;

use std::fmt::Write as _;
use std::time::Duration;

use executor_ssh::{RemoteExit, ScriptOptions};
use ssh_support::{Collector, Fixture, sh};
use tokio_util::sync::CancellationToken;

async fn run(fx: &Fixture, body: &[u8]) -> (Vec<u8>, Vec<u8>, RemoteExit) {
    let script = fx.write_script("script.sh", body);
    let session = fx.session().await;
    let (mut out, mut err) = (Collector::default(), Collector::default());
    let exit = tokio::time::timeout(
        Duration::from_secs(120),
        session.run_script(
            &script,
            &mut out,
            &mut err,
            &ScriptOptions::default(),
            &CancellationToken::new(),
        ),
    )
    .await
    .expect("no hang")
    .expect("script runs");
    (out.take(), err.take(), exit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_pass_through_including_255() {
    let fx = Fixture::start();
    for code in [0u32, 1, 42, 255] {
        let (out, _, exit) = run(
            &fx,
            format!("echo before\nexit {code}\necho after\n").as_bytes(),
        )
        .await;
        assert_eq!(exit, RemoteExit::Code(code));
        assert_eq!(out, b"before\n", "the pgid marker never reaches the output");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn death_by_signal_is_reported_as_such() {
    let fx = Fixture::start();
    let (_, _, exit) = run(&fx, b"kill -s KILL $$\n").await;
    assert!(
        matches!(&exit, RemoteExit::Signal { name, .. } if name == "KILL"),
        "{exit:?}"
    );
    assert_eq!(exit.shell_code(), 137);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_megabyte_script_arrives_whole() {
    let fx = Fixture::start();
    let payload_path = fx.remote_dir().join("payload");
    // 10 MiB+ of varied text in a here-document; the remote side checksums what it got.
    let mut payload = String::new();
    let mut i: u64 = 0;
    while payload.len() < 10 * 1024 * 1024 + 123 {
        i += 1;
        writeln!(
            payload,
            "{i:08} {:x} the quick brown fox $HOME `not run`",
            i.wrapping_mul(0x9e3779b97f4a7c15)
        )
        .unwrap();
    }
    let script = format!(
        "cat > '{}' <<'EXECUTOR_EOF'\n{payload}EXECUTOR_EOF\nsha256sum '{}'\necho END-OF-SCRIPT\n",
        payload_path.display(),
        payload_path.display()
    );
    assert!(script.len() > 10 * 1024 * 1024);
    let (out, err, exit) = run(&fx, script.as_bytes()).await;
    assert_eq!(
        exit,
        RemoteExit::Code(0),
        "stderr: {}",
        String::from_utf8_lossy(&err)
    );
    let out = String::from_utf8(out).unwrap();
    let local = sha256_hex(payload.as_bytes());
    assert!(
        out.starts_with(&local),
        "remote checksum {out:?} != local {local}"
    );
    assert!(out.ends_with("END-OF-SCRIPT\n"));
}

fn sha256_hex(data: &[u8]) -> String {
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_output_with_more_than_4_mib_of_stderr_does_not_hang() {
    let fx = Fixture::start();
    let script = "line=$(head -c 1023 /dev/zero | tr '\\0' e)\n\
                  i=0; while [ $i -lt 5000 ]; do printf '%s\\n' \"$line\" >&2; echo \"o$i\"; i=$((i+1)); done\n\
                  echo done\n";
    let (out, err, exit) = run(&fx, script.as_bytes()).await;
    assert_eq!(exit, RemoteExit::Code(0));
    assert_eq!(err.len(), 5000 * 1024);
    assert!(err.iter().all(|&b| b == b'e' || b == b'\n'));
    let out = String::from_utf8(out).unwrap();
    assert_eq!(out.lines().count(), 5001);
    assert!(out.starts_with("o0\no1\n") && out.ends_with("o4999\ndone\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_and_long_lines_pass_through_byte_for_byte() {
    let fx = Fixture::start();
    let blob = fx.remote_dir().join("blob");
    // Every byte value, a lone continuation byte, a truncated sequence, and a 1 MiB line.
    let mut expected: Vec<u8> = (0u8..=255).collect();
    expected.extend_from_slice(b"\x80\xe2\x82\n");
    expected.extend(std::iter::repeat_n(b'x', 1 << 20));
    expected.extend_from_slice("\u{20ac}".as_bytes());
    expected.push(0xff);
    std::fs::write(&blob, &expected).unwrap();
    let script = format!("cat '{0}'; cat '{0}' >&2\n", blob.display());
    let (out, err, exit) = run(&fx, script.as_bytes()).await;
    assert_eq!(exit, RemoteExit::Code(0));
    assert!(
        out == expected,
        "stdout differs ({} vs {} bytes)",
        out.len(),
        expected.len()
    );
    assert!(
        err == expected,
        "stderr differs ({} vs {} bytes)",
        err.len(),
        expected.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_live_while_the_script_still_runs() {
    let fx = Fixture::start();
    let gate = fx.remote_dir().join("gate");
    let script = fx.write_script(
        "live.sh",
        format!(
            "echo first; echo first-err >&2\nwhile [ ! -e '{}' ]; do sleep 0.05; done\necho second\n",
            gate.display()
        )
        .as_bytes(),
    );
    let session = fx.session().await;
    let (out, err) = (Collector::default(), Collector::default());
    let (mut o, mut e) = (out.clone(), err.clone());
    let cancel = CancellationToken::new();
    let opts = ScriptOptions::default();
    let running = session.run_script(&script, &mut o, &mut e, &opts, &cancel);
    let checker = async {
        // The script cannot end before the gate exists, so seeing these proves liveness.
        out.wait_for(b"first\n").await;
        err.wait_for(b"first-err\n").await;
        assert!(!out.take().windows(6).any(|w| w == b"second"));
        std::fs::write(&gate, b"").unwrap();
    };
    let (exit, ()) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(running, checker)
    })
    .await
    .expect("no hang");
    assert_eq!(exit.unwrap(), RemoteExit::Code(0));
    assert_eq!(out.take(), b"first\nsecond\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_capture_output_and_uploads_land_atomically() {
    let fx = Fixture::start();
    let session = fx.session().await;
    let out = session
        .run_command(
            "printf 'a\\377b'; echo oops >&2; exit 3",
            None,
            1024,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(out.stdout, b"a\xffb", "{out:?}");
    assert_eq!(
        out.stderr,
        b"oops\n",
        "stderr {:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.exit, RemoteExit::Code(3));
    assert!(!out.truncated);

    let capped = session
        .run_command(
            "head -c 5000 /dev/zero",
            None,
            100,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(capped.stdout.len(), 100);
    assert!(capped.truncated);

    let target = fx.remote_dir().join("dir with space/it's.bin");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let len = content.len() as u64;
    session
        .upload(
            target.to_str().unwrap(),
            std::io::Cursor::new(content.clone()),
            len,
            0o750,
        )
        .await
        .unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), content);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o750
    );

    // A short upload (claimed length larger than the data) leaves nothing behind.
    let short = fx.remote_dir().join("short.bin");
    let err = session
        .upload(
            short.to_str().unwrap(),
            std::io::Cursor::new(vec![1u8; 10]),
            11,
            0o644,
        )
        .await
        .unwrap_err();
    assert!(!short.exists(), "{err}");
    let (listing, _) = sh(&session, &format!("ls -A '{}'", fx.remote_dir().display())).await;
    assert!(!listing.contains("executor-"), "temp file left: {listing}");
}
