//! The one gate of the tests that need the real OpenStack of `../shared/realcloud`.
//!
//! They run when `EXECUTOR_REALCLOUD=1` (`tests/realcloud/run.sh` and `.ci/run` start the
//! cloud and set it). Without it they must not pass silently: under CI (`CI` set, as GitLab
//! and most CI systems do) a missing cloud fails the test; elsewhere the test says "skipped" on
//! the terminal, past the test harness's output capture, and returns.

use std::io::Write;

/// Whether the real cloud is there to test against; see the module doc.
pub fn enabled() -> bool {
    if std::env::var("EXECUTOR_REALCLOUD").is_ok_and(|v| v == "1") {
        return true;
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("a real-cloud test")
        .to_string();
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!(
            "{test} needs the real OpenStack, and CI is set: start it with tests/realcloud/run.sh \
             (or .ci/run), which sets EXECUTOR_REALCLOUD=1 and OS_CLIENT_CONFIG_FILE"
        );
    }
    // Straight to the process's stderr: the harness captures `eprintln!`, and a skip nobody
    // sees is the silent pass this gate exists to prevent.
    let _ = writeln!(
        std::io::stderr(),
        "{test}: skipped (no real cloud: EXECUTOR_REALCLOUD is not 1; tests/realcloud/run.sh runs it)"
    );
    false
}
