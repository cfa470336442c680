//! The bash scripts handed to `run_exec`, shaped like gitlab-runner's `BashWriter` output: a fixed
//! wrapper that `eval`s an ANSI-C quoted body in a subshell whose stdin is `/dev/null`.
//!
//! The bodies of `get_sources` and the cache and artifact stages are stand-ins: the simulated
//! target has no GitLab to clone from or upload to, so they create the project directory and say
//! what a real runner would do, but they keep the real structure (exports, `cd`, notices, the
//! `gitlab-runner --version` guard).

use super::ansi;
use super::bash_quoting::{double_quoted, shell_escape};
use super::job::{Job, JobVariable};
use super::project;
use super::run_stage::RunStage;
use super::variables::lookup;

pub(crate) struct ScriptContext<'a> {
    pub job: &'a Job,
    /// All job variables, with `CI_JOB_STATUS` as it is for this stage.
    pub variables: &'a [JobVariable],
    pub project_dir: &'a str,
    pub cache_dir: &'a str,
    pub hostname: &'a str,
    pub shell: &'a str,
}

impl ScriptContext<'_> {
    fn tmp_dir(&self) -> String {
        format!("{}.tmp", self.project_dir)
    }
}

/// The whole script file for one stage.
pub(crate) fn script_for(stage: &RunStage, cx: &ScriptContext<'_>) -> String {
    let body = body_for(stage, cx);
    let debug = lookup(cx.variables, "CI_DEBUG_TRACE") == Some("true");
    let mut s = format!("#!/usr/bin/env {}\n\ntrap 'exit 1' TERM\n\n", cx.shell);
    if debug {
        s.push_str("set -o xtrace\n");
    }
    s.push_str("case \"$(set -o)\" in *\"pipefail\"*) set -o pipefail;; esac; set -o errexit\n");
    s.push_str("set +o noclobber\n");
    s.push_str(&format!(
        "(trap 'exit 1' TERM; eval {}) < /dev/null\n",
        shell_escape(&body)
    ));
    s.push_str("exit 0\n");
    s
}

struct Body(String);

impl Body {
    fn line(&mut self, l: &str) {
        self.0.push_str(l);
        self.0.push('\n');
    }
    fn echo(&mut self, text: &str) {
        self.line(&format!("echo {}", shell_escape(text)));
    }
    fn notice(&mut self, text: &str) {
        self.echo(&format!("{}{text}{}", ansi::BOLD_GREEN, ansi::RESET));
    }
    fn warning(&mut self, text: &str) {
        self.echo(&format!("{}{text}{}", ansi::YELLOW, ansi::RESET));
    }
    fn cd(&mut self, dir: &str) {
        self.line(&format!("cd {}", shell_escape(dir)));
    }
    fn rm_file(&mut self, path: &str) {
        self.line(&format!("rm -f {}", double_quoted(path)));
    }
}

fn body_for(stage: &RunStage, cx: &ScriptContext<'_>) -> String {
    let mut b = Body(String::new());
    let tmp = cx.tmp_dir();
    match stage {
        RunStage::PrepareScript => {
            b.rm_file(&format!("{tmp}/gitlab_runner_env"));
            b.rm_file(&format!("{tmp}/masking.db"));
            let host = double_quoted(cx.hostname);
            let host = &host[1..host.len() - 1];
            b.line(&format!("echo \"Running on $(hostname) via {host}...\""));
        }
        RunStage::GetSources => {
            exports(&mut b, cx);
            b.notice("Fetching changes with git depth set to 20...");
            b.echo(&format!(
                "stand-in: no GitLab to clone from; creating an empty project directory instead of cloning {}",
                project::project_url()
            ));
            b.line(&format!("mkdir -p {}", double_quoted(cx.project_dir)));
            b.notice(&format!(
                "Checking out {} as detached HEAD (ref is {})...",
                &project::COMMIT_SHA[..8],
                project::REF_NAME
            ));
            b.notice("Skipping Git submodules setup");
        }
        RunStage::ClearWorktree => {
            exports(&mut b, cx);
            b.notice("Deleting all tracked and untracked files due to source fetch failure");
            b.echo("stand-in: no Git work tree to clean");
        }
        RunStage::RestoreCache => {
            exports(&mut b, cx);
            b.cd(cx.project_dir);
            let key = cache_key(cx);
            b.notice(&format!("Checking cache for {key}..."));
            guarded(
                &mut b,
                &format!("cache-extractor --file {}", cache_file(cx, key)),
                "Extracting cache is disabled.",
            );
        }
        RunStage::DownloadArtifacts => {
            exports(&mut b, cx);
            b.cd(cx.project_dir);
            guarded(
                &mut b,
                "artifacts-downloader",
                "Extracting artifacts is disabled.",
            );
        }
        RunStage::Step(_) => {
            exports(&mut b, cx);
            b.cd(cx.project_dir);
            commands(&mut b, &cx.job.script);
        }
        RunStage::AfterScript => {
            exports(&mut b, cx);
            b.cd(cx.project_dir);
            b.notice("Running after script...");
            commands(&mut b, &cx.job.after_script);
        }
        RunStage::ArchiveCache { .. } => {
            exports(&mut b, cx);
            b.cd(cx.project_dir);
            let key = cache_key(cx);
            b.notice(&format!("Creating cache {key}..."));
            guarded(
                &mut b,
                &format!("cache-archiver --file {}", cache_file(cx, key)),
                "Creating cache is disabled.",
            );
        }
        RunStage::UploadArtifacts { .. } => {
            exports(&mut b, cx);
            b.cd(cx.project_dir);
            b.notice("Uploading artifacts...");
            guarded(
                &mut b,
                "artifacts-uploader",
                "Uploading artifacts is disabled.",
            );
        }
        RunStage::CleanupFileVariables => {
            b.rm_file(&format!("{tmp}/gitlab_runner_env"));
            b.rm_file(&format!("{tmp}/masking.db"));
            for v in cx.variables.iter().filter(|v| v.file) {
                b.rm_file(&format!("{tmp}/{}", v.key));
            }
        }
    }
    b.0
}

/// The job's cache key, `default` when it names none.
fn cache_key<'a>(cx: &'a ScriptContext<'_>) -> &'a str {
    cx.job
        .cache
        .as_ref()
        .map(|c| c.key.as_str())
        .unwrap_or("default")
}

fn cache_file(cx: &ScriptContext<'_>, key: &str) -> String {
    format!(
        "{}/{}/{key}/cache.zip",
        cx.cache_dir,
        project::project_path()
    )
}

/// The cache and artifact helpers live in a `gitlab-runner` binary on the target. The stand-in
/// never calls it (it must not talk to any GitLab), but keeps the guard and the real warning.
fn guarded(b: &mut Body, helper: &str, disabled: &str) {
    b.line("if gitlab-runner --version >/dev/null 2>&1; then");
    b.echo(&format!("stand-in: would run gitlab-runner {helper}"));
    b.line("else");
    b.warning(&format!("Missing gitlab-runner. {disabled}"));
    b.line("fi");
}

/// `export` of every variable; file variables are written under `<project>.tmp/` and exported as
/// their path. Then the `GITLAB_ENV` file is created and loaded.
fn exports(b: &mut Body, cx: &ScriptContext<'_>) {
    let tmp = cx.tmp_dir();
    for v in cx.variables {
        if v.file {
            let path = format!("{tmp}/{}", v.key);
            b.line(&format!("mkdir -p {}", double_quoted(&tmp)));
            b.line(&format!(
                "printf '%s' {} > {}",
                shell_escape(&v.value),
                double_quoted(&path)
            ));
            b.line(&format!("export {}={}", v.key, double_quoted(&path)));
        } else {
            b.line(&format!("export {}={}", v.key, shell_escape(&v.value)));
        }
    }
    let env_file = format!("{tmp}/gitlab_runner_env");
    b.line(&format!("export GITLAB_ENV={}", shell_escape(&env_file)));
    b.line(&format!("mkdir -p {}", double_quoted(&tmp)));
    b.line(&format!("touch {}", double_quoted(&env_file)));
    b.line(&format!(
        "while read -r line; do export \"$line\"; done < {}",
        double_quoted(&env_file)
    ));
}

/// Each command is echoed as `$ cmd` (the first line plus a marker for multi-line ones), then run.
fn commands(b: &mut Body, lines: &[String]) {
    for cmd in lines.iter().filter(|c| !c.trim().is_empty()) {
        let mut parts = cmd.trim_end_matches('\n').lines();
        let first = parts.next().unwrap_or("");
        let shown = if parts.next().is_some() {
            format!("$ {first} # collapsed multi-line command")
        } else {
            format!("$ {first}")
        };
        b.notice(&shown);
        b.line(cmd.trim_end_matches('\n'));
    }
}
