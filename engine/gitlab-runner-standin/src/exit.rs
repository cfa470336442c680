//! How a driver's exit becomes a stage result (gitlab-runner's `waitForCommand` and
//! `parseBuildFailure`).

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;

/// Why a stage did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StageError {
    /// `BuildError`: a script failure with the exit code the job reports.
    #[error("exit status {exit_code}")]
    Build { exit_code: i32 },
    /// A configuration error: a build error that is never retried.
    #[error("{0}")]
    Configuration(String),
    /// Exit 2, an unknown exit code, a signal, a start failure, bad config JSON...
    #[error("{0}")]
    System(String),
    /// The stage was stopped because its context ended (cancel, job timeout, exec timeout).
    #[error("{0}")]
    Interrupted(String),
}

impl StageError {
    /// Build and configuration errors are `BuildError`s in gitlab-runner: never retried.
    pub fn is_build_error(&self) -> bool {
        matches!(
            self,
            StageError::Build { .. } | StageError::Configuration(_)
        )
    }
}

/// Maps a finished driver process. `exit_code_file` is `<tmp>/build_exit_code`, read on every
/// exit 1 (it is never cleared between stages, so a stale value is reused, as in gitlab-runner).
pub(crate) fn map_exit(status: ExitStatus, exit_code_file: &Path) -> Result<(), StageError> {
    match status.code() {
        Some(0) => Ok(()),
        Some(1) => match std::fs::read(exit_code_file) {
            Err(_) => Err(StageError::Build { exit_code: 1 }),
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let first = text.split('\n').next().unwrap_or("");
                match parse_go_atoi(first) {
                    Some(code) => Err(StageError::Build { exit_code: code }),
                    None => Err(StageError::System(format!(
                        "unknown Custom executor executable exit code 2; executable execution terminated with: \
                         the build exit code file does not start with an integer: {:?}",
                        first.chars().take(40).collect::<String>()
                    ))),
                }
            }
        },
        Some(2) => Err(StageError::System("exit status 2".into())),
        Some(other) => Err(StageError::System(format!(
            "unknown Custom executor executable exit code {other}; executable execution terminated with: exit status {other}"
        ))),
        None => {
            let sig = status
                .signal()
                .map(signal_name)
                .unwrap_or_else(|| "unknown".into());
            Err(StageError::System(format!(
                "unknown Custom executor executable exit code -1; executable execution terminated with: signal: {sig}"
            )))
        }
    }
}

/// `strconv.Atoi`: optional sign, decimal digits, nothing else (spaces fail), fits in the int.
fn parse_go_atoi(s: &str) -> Option<i32> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok().and_then(|v| i32::try_from(v).ok())
}

fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGTERM => "terminated".into(),
        libc::SIGKILL => "killed".into(),
        libc::SIGINT => "interrupt".into(),
        libc::SIGHUP => "hangup".into(),
        libc::SIGSEGV => "segmentation fault".into(),
        libc::SIGABRT => "aborted".into(),
        libc::SIGPIPE => "broken pipe".into(),
        other => format!("signal {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    #[test]
    fn exit_code_file_first_line_decides() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("build_exit_code");
        assert_eq!(
            map_exit(status(1), &f),
            Err(StageError::Build { exit_code: 1 })
        );
        std::fs::write(&f, "42\n\nmore").unwrap();
        assert_eq!(
            map_exit(status(1), &f),
            Err(StageError::Build { exit_code: 42 })
        );
        std::fs::write(&f, " 42").unwrap();
        assert!(matches!(
            map_exit(status(1), &f),
            Err(StageError::System(_))
        ));
        std::fs::write(&f, "forty-two").unwrap();
        assert!(matches!(
            map_exit(status(1), &f),
            Err(StageError::System(_))
        ));
        // Only exit 1 reads the file.
        assert_eq!(map_exit(status(0), &f), Ok(()));
        assert_eq!(
            map_exit(status(2), &f),
            Err(StageError::System("exit status 2".into()))
        );
    }

    #[test]
    fn other_codes_and_signals_are_unknown_system_failures() {
        let f = Path::new("/nonexistent/build_exit_code");
        let Err(StageError::System(m)) = map_exit(status(3), f) else {
            panic!("expected system failure")
        };
        assert!(
            m.contains("unknown Custom executor executable exit code 3"),
            "{m}"
        );
        let Err(StageError::System(m)) = map_exit(ExitStatus::from_raw(libc::SIGKILL), f) else {
            panic!("expected system failure")
        };
        assert!(
            m.contains("exit code -1") && m.contains("signal: killed"),
            "{m}"
        );
    }
}
