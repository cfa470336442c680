//! One stage of the real `executor` binary, started the way gitlab-runner's custom executor
//! starts it. Every test that drives a stage builds it here, so the protocol lives in one place:
//!
//! - the working directory and `TMPDIR` are the job's temporary directory;
//! - `BUILD_FAILURE_EXIT_CODE` is [`BUILD_FAILURE`] and `SYSTEM_FAILURE_EXIT_CODE` is
//!   [`SYSTEM_FAILURE`];
//! - `BUILD_EXIT_CODE_FILE` is `build_exit_code` and `JOB_RESPONSE_FILE` is `response.json`,
//!   both in the job directory (a test that needs the payload writes that file itself);
//! - the job's variables arrive as `CUSTOM_ENV_<NAME>`;
//! - the command line is `executor --recipe FILE... <stage> <args>...`;
//! - stdin is empty (gitlab-runner gives `/dev/null`); stdout and stderr are captured.
//!
//! Unlike gitlab-runner, the child does not inherit this process's environment: it starts
//! with `PATH` only, so nothing from the developer's shell or from the CI job that runs the
//! tests (`CI`, `NO_COLOR`, `OS_CLOUD`, ...) reaches the driver. What the runner service's
//! environment would hold is passed with [`StageRun::env`].
//!
//! ```ignore
//! let out = StageRun::new(dir, ["run", script, "build_script"])
//!     .recipe(recipe)
//!     .job_var("CI_JOB_ID", "42")
//!     .timeout(Duration::from_secs(120))
//!     .output()?;
//! ```

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

/// `BUILD_FAILURE_EXIT_CODE` in every stage this module starts.
pub const BUILD_FAILURE: i32 = 11;
/// `SYSTEM_FAILURE_EXIT_CODE` in every stage this module starts.
pub const SYSTEM_FAILURE: i32 = 12;

/// The path of the binary under test.
pub fn executor() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_executor"))
}

/// A stage invocation being put together; nothing runs until [`output`](Self::output),
/// [`assert`](Self::assert) or [`command`](Self::command).
#[derive(Debug, Clone)]
#[must_use]
pub struct StageRun {
    program: PathBuf,
    job_dir: PathBuf,
    recipes: Vec<PathBuf>,
    args: Vec<OsString>,
    /// Set after the protocol's variables, in order, so a later one wins.
    env: Vec<(OsString, OsString)>,
    timeout: Option<Duration>,
}

impl StageRun {
    /// `executor <args>` (the stage and its arguments, e.g. `["prepare"]` or
    /// `["run", SCRIPT, "build_script"]`) for the job whose temporary directory is `job_dir`.
    pub fn new<I, S>(job_dir: &Path, args: I) -> StageRun
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        StageRun {
            program: executor(),
            job_dir: job_dir.to_path_buf(),
            recipes: Vec::new(),
            args: args.into_iter().map(|a| a.as_ref().to_owned()).collect(),
            env: Vec::new(),
            timeout: None,
        }
    }

    /// Runs another build of `executor` (the benchmark measures a lean or an older one).
    #[allow(
        dead_code,
        reason = "only tests/bench/ssh_stream.rs measures another build"
    )]
    pub fn program(mut self, path: impl AsRef<Path>) -> Self {
        self.program = path.as_ref().to_path_buf();
        self
    }

    /// Adds `--recipe path` (before the stage); several layer in the order given.
    pub fn recipe(mut self, path: impl AsRef<Path>) -> Self {
        self.recipes.push(path.as_ref().to_path_buf());
        self
    }

    pub fn recipes<P: AsRef<Path>>(self, paths: impl IntoIterator<Item = P>) -> Self {
        paths.into_iter().fold(self, StageRun::recipe)
    }

    /// Appends one argument after the stage's own.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// A job variable: the driver sees it as `CUSTOM_ENV_<name>`.
    pub fn job_var(self, name: &str, value: impl AsRef<OsStr>) -> Self {
        self.env(format!("CUSTOM_ENV_{name}"), value)
    }

    pub fn job_vars<'a>(self, vars: impl IntoIterator<Item = &'a (&'a str, &'a str)>) -> Self {
        vars.into_iter()
            .fold(self, |run, (name, value)| run.job_var(name, value))
    }

    /// A variable of the runner service's own environment (or one that replaces a protocol
    /// variable, as a job's `job_env` from `config` may).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Kills the stage if it runs longer, so that a hang fails the test instead of the suite
    /// (used by [`output`](Self::output) and [`assert`](Self::assert)).
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// The stage as a plain command with stdin from `/dev/null`, for a test that spawns it
    /// itself (to signal it, or to read its output while it runs).
    pub fn command(&self) -> std::process::Command {
        let dir = &self.job_dir;
        let mut c = std::process::Command::new(&self.program);
        c.current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TMPDIR", dir)
            .env("BUILD_FAILURE_EXIT_CODE", BUILD_FAILURE.to_string())
            .env("SYSTEM_FAILURE_EXIT_CODE", SYSTEM_FAILURE.to_string())
            .env("BUILD_EXIT_CODE_FILE", dir.join("build_exit_code"))
            .env("JOB_RESPONSE_FILE", dir.join("response.json"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        for recipe in &self.recipes {
            c.arg("--recipe").arg(recipe);
        }
        c.args(&self.args);
        c
    }

    /// Runs the stage to its end and returns its exit status, stdout and stderr.
    pub fn output(&self) -> std::io::Result<Output> {
        self.assert_cmd().output()
    }

    /// Runs the stage to its end, for `assert_cmd`'s checks (`.success()`, `.code(11)`, ...).
    pub fn assert(&self) -> assert_cmd::assert::Assert {
        self.assert_cmd().assert()
    }

    fn assert_cmd(&self) -> assert_cmd::Command {
        let mut c = assert_cmd::Command::from_std(self.command());
        if let Some(limit) = self.timeout {
            c.timeout(limit);
        }
        c
    }
}
