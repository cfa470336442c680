//! Exit-code discipline towards gitlab-runner: the two codes come from its environment, and a
//! job script's own status travels through `BUILD_EXIT_CODE_FILE`.

use std::path::PathBuf;

/// How a stage ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The job script failed; `Some(n)` is its own exit status.
    BuildFailure(Option<i32>),
    /// The recipe or the infrastructure failed.
    SystemFailure,
}

/// The codes and file gitlab-runner gave this process.
#[derive(Debug, Clone)]
pub struct ExitCodes {
    pub build_failure: i32,
    pub system_failure: i32,
    pub build_exit_code_file: Option<PathBuf>,
}

impl ExitCodes {
    /// Read from the environment; gitlab-runner's documented defaults apply when unset or malformed.
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let code = |k: &str, default: i32| {
            get(k)
                .and_then(|v| v.trim().parse::<i32>().ok())
                .filter(|c| (1..=255).contains(c))
                .unwrap_or(default)
        };
        Self {
            build_failure: code("BUILD_FAILURE_EXIT_CODE", 1),
            system_failure: code("SYSTEM_FAILURE_EXIT_CODE", 2),
            build_exit_code_file: get("BUILD_EXIT_CODE_FILE")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
        }
    }

    /// A stale file from an earlier stage would be read again on a later build failure, so every
    /// `run` starts by removing it.
    pub fn clear_build_exit_code_file(&self) -> std::io::Result<()> {
        match &self.build_exit_code_file {
            Some(p) => match std::fs::remove_file(p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            None => Ok(()),
        }
    }

    /// The process exit code for `outcome`, writing the script's status to the exit-code file first.
    pub fn exit_code(&self, outcome: Outcome) -> i32 {
        match outcome {
            Outcome::Success => 0,
            Outcome::SystemFailure => self.system_failure,
            Outcome::BuildFailure(code) => {
                if let (Some(code), Some(path)) = (code, &self.build_exit_code_file) {
                    // gitlab-runner parses the first line as an integer; anything else would turn
                    // the build failure into a system failure, so write exactly the number.
                    if std::fs::write(path, format!("{code}\n")).is_err() {
                        return self.system_failure;
                    }
                }
                self.build_failure
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(dir: &std::path::Path, b: &str, s: &str) -> ExitCodes {
        let file = dir.join("build_exit_code");
        ExitCodes::from_lookup(|k| match k {
            "BUILD_FAILURE_EXIT_CODE" => Some(b.into()),
            "SYSTEM_FAILURE_EXIT_CODE" => Some(s.into()),
            "BUILD_EXIT_CODE_FILE" => Some(file.display().to_string()),
            _ => None,
        })
    }

    #[test]
    fn build_failure_writes_the_script_status_and_exits_with_the_runner_code() {
        let dir = tempfile::tempdir().unwrap();
        let c = codes(dir.path(), "7", "9");
        assert_eq!(c.exit_code(Outcome::BuildFailure(Some(42))), 7);
        let written = std::fs::read_to_string(dir.path().join("build_exit_code")).unwrap();
        assert_eq!(written.lines().next(), Some("42"));
        assert_eq!(c.exit_code(Outcome::SystemFailure), 9);
        assert_eq!(c.exit_code(Outcome::Success), 0);
    }

    #[test]
    fn script_exit_255_is_a_build_failure_not_a_system_one() {
        let dir = tempfile::tempdir().unwrap();
        let c = codes(dir.path(), "1", "2");
        assert_eq!(c.exit_code(Outcome::BuildFailure(Some(255))), 1);
        let written = std::fs::read_to_string(dir.path().join("build_exit_code")).unwrap();
        assert_eq!(written.trim(), "255");
    }

    #[test]
    fn malformed_codes_fall_back_to_the_runner_defaults() {
        let c = ExitCodes::from_lookup(|k| match k {
            "BUILD_FAILURE_EXIT_CODE" => Some("x".into()),
            "SYSTEM_FAILURE_EXIT_CODE" => Some("0".into()),
            _ => None,
        });
        assert_eq!((c.build_failure, c.system_failure), (1, 2));
        assert!(c.build_exit_code_file.is_none());
    }

    #[test]
    fn a_stale_exit_code_file_is_removed_and_a_missing_one_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let c = codes(dir.path(), "1", "2");
        std::fs::write(dir.path().join("build_exit_code"), "3\n").unwrap();
        c.clear_build_exit_code_file().unwrap();
        assert!(!dir.path().join("build_exit_code").exists());
        c.clear_build_exit_code_file().unwrap();
    }
}
