//! The one gate of the tests that need the real OpenStack of `../shared/realcloud`.
//!
//! They run when `EXECUTOR_REALCLOUD=1` (`tests/realcloud/run.sh` and `.ci/run` start the
//! cloud and set it). Without it they must not pass silently: under CI (`CI` set, as GitLab
//! and most CI systems do) a missing cloud fails the test; elsewhere the test says "skipped" on
//! the terminal, past the test harness's output capture, and returns.

use std::io::Write;

/// What a real-cloud test does.
#[derive(Debug, PartialEq, Eq)]
enum Gate {
    Run,
    Fail,
    Skip,
}

/// The gate for the values of `EXECUTOR_REALCLOUD` and `CI`.
fn gate(realcloud: Option<&str>, ci: Option<&str>) -> Gate {
    if realcloud == Some("1") {
        Gate::Run
    } else if ci.is_some_and(|v| !v.is_empty()) {
        Gate::Fail
    } else {
        Gate::Skip
    }
}

/// Whether the real cloud is there to test against; see the module doc.
pub fn enabled() -> bool {
    let realcloud = std::env::var("EXECUTOR_REALCLOUD").ok();
    let ci = std::env::var("CI").ok();
    let test = std::thread::current()
        .name()
        .unwrap_or("a real-cloud test")
        .to_string();
    match gate(realcloud.as_deref(), ci.as_deref()) {
        Gate::Run => true,
        Gate::Fail => panic!(
            "{test} needs the real OpenStack, and CI is set: start it with tests/realcloud/run.sh \
             (or .ci/run), which sets EXECUTOR_REALCLOUD=1 and OS_CLIENT_CONFIG_FILE"
        ),
        Gate::Skip => {
            // Straight to the process's stderr: the harness captures `eprintln!`, and a skip
            // nobody sees is the silent pass this gate exists to prevent.
            let _ = writeln!(
                std::io::stderr(),
                "{test}: skipped (no real cloud: EXECUTOR_REALCLOUD is not 1; tests/realcloud/run.sh runs it)"
            );
            false
        }
    }
}

#[test]
fn without_the_real_cloud_ci_fails_and_a_developer_is_told_it_skipped() {
    assert_eq!(gate(Some("1"), Some("true")), Gate::Run);
    assert_eq!(gate(Some("1"), None), Gate::Run);
    assert_eq!(gate(None, Some("true")), Gate::Fail);
    assert_eq!(gate(Some("0"), Some("1")), Gate::Fail);
    assert_eq!(gate(None, None), Gate::Skip);
    // An empty CI is not CI (a shell's `CI=` unsets it in spirit).
    assert_eq!(gate(None, Some("")), Gate::Skip);
}
