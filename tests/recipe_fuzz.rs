//! A mutation fuzzer over `lint` and `render` (issue 14, item 7), small enough to run with
//! every `cargo test`: the seeds are the shipped recipes, the book's examples, the lint cases and
//! the hostile files of `tests/fuzz_corpus/`; each case is a seed mutated by a seeded generator,
//! so a failure names a case that the same build reproduces. Lint and render run in this
//! process, each under `catch_unwind`: a panic is a failure that keeps its input in
//! `target/fuzz-failures/`.
//!
//! `EXECUTOR_FUZZ_CASES=N` and `EXECUTOR_FUZZ_SEED=S` run more cases, or others;
//! `EXECUTOR_FUZZ_FILE=path` runs one kept input through lint and every render instead.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use crate::seeded_rng::Rng;
use executor_driver::recipe::diagnostics;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// About 15 s on a busy 2-core machine for a debug build.
const DEFAULT_CASES: u64 = 1500;

/// Pieces that mean something to YAML, to minijinja or to the recipe, and bytes that mean
/// trouble to text handling.
const TOKENS: &[&str] = &[
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "#}",
    ": ",
    "- ",
    "\n",
    "\r\n",
    "\r",
    "\t",
    "  ",
    "&a ",
    "*a",
    "<<: ",
    "!!binary ",
    "!!str ",
    "? ",
    "|\n",
    ">-\n",
    "\"",
    "'",
    "[",
    "]",
    "{",
    "}",
    ",",
    "#",
    "---\n",
    "...\n",
    "%YAML 1.2\n",
    "é",
    "😀",
    "\u{feff}",
    "\u{202e}",
    "e\u{301}",
    "\0",
    "\u{1b}",
    "job.X",
    "job.FLAVOR",
    "vars.",
    "steps.",
    "state.",
    "trusted.id",
    "env.HOME",
    "| shell_quote",
    "| int",
    "| default('')",
    "job_override(",
    "range(",
    "extends: ",
    "extends: base.yaml\n",
    "extends: /dev/zero\n",
    "extends: .\n",
    "kind: ",
    "id: ",
    "when: ",
    "retry: ",
    "timeout: ",
    "99999999999999999999",
    "-1",
    "1e9999",
    ".nan",
    "0x",
    "~",
    "null",
    "true",
    "version: 1\n",
    "version: 2\n",
    "prepare:\n",
    "patch:\n",
    "insert:\n",
    "remove: [",
    "create_server",
    "ssh_command",
    "command: ",
    "user_data: ",
];

fn mutate(rng: &mut Rng, seed: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(b.len() + 1);
        match rng.below(9) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] = rng.next() as u8;
            }
            1 if !b.is_empty() => {
                let end = (at + 1 + rng.below(64)).min(b.len());
                b.drain(at.min(end)..end);
            }
            2 | 3 => {
                let t = rng.pick(TOKENS).as_bytes();
                b.splice(at..at, t.iter().copied());
            }
            4 if !b.is_empty() => {
                // A piece of the text repeated: lines grow long and structures deep.
                let from = rng.below(b.len());
                let len = 1 + rng.below(32.min(b.len() - from));
                let piece = b[from..from + len].to_vec();
                let times = *rng.pick(&[2, 10, 100, 3000]);
                let grown: Vec<u8> = piece.iter().copied().cycle().take(len * times).collect();
                b.splice(at..at, grown);
            }
            5 => {
                let other = rng.pick(others);
                let from = rng.below(other.len() + 1);
                let to = (from + rng.below(400)).min(other.len());
                b.splice(at..at, other[from..to].iter().copied());
            }
            6 => {
                // Past column 65535, where the report's padding used to panic.
                let fill = *rng.pick(b" x\t");
                b.splice(at..at, std::iter::repeat_n(fill, 70_000));
            }
            7 => b.truncate(at),
            _ => {
                let line_start = b[..at]
                    .iter()
                    .rposition(|&c| c == b'\n')
                    .map_or(0, |i| i + 1);
                let indent = *rng.pick(&[b"  ".as_slice(), b"\t", b"    ", b""]);
                b.splice(line_start..line_start, indent.iter().copied());
            }
        }
    }
    b
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = vec![];
    for dir in [
        "tests/fuzz_corpus",
        "recipes",
        "recipes/examples",
        "tests/recipes",
        "tests/lint_cases",
        "tests/render_cases",
        "tests/merge_cases/overrides",
    ] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        for f in files {
            let name = f.strip_prefix(ROOT).unwrap().display().to_string();
            out.push((name, std::fs::read(&f).unwrap()));
        }
    }
    out
}

/// Lint and render one file, as `executor lint` and `executor render` would; `Err` names the
/// first thing that panicked.
fn exercise(dir: &Path, recipe: &Path, env_file: &Path, stage: Option<&str>) -> Result<(), String> {
    let paths = [recipe.to_path_buf()];
    let lint = catch_unwind(AssertUnwindSafe(|| {
        let problems = executor_driver::recipe::lint::lint(&paths);
        let _ = diagnostics::render(&problems, true);
        let _ = diagnostics::render(&problems, false);
        let _ = problems.plain();
        let all = std::slice::from_ref(&problems);
        let _ = executor::commands::lint::json_report(all);
        let _ = executor::commands::lint::gitlab_report(all);
    }));
    if lint.is_err() {
        return Err("lint".into());
    }
    let render = catch_unwind(AssertUnwindSafe(|| {
        executor::commands::render::run(&paths, stage, Some(env_file))
    }));
    if render.is_err() {
        return Err(format!("render --stage {stage:?}"));
    }
    let _ = dir;
    Ok(())
}

/// `executor lint`, `render` and the stages parse recipes on the process's main thread, whose
/// stack is 8 MiB; a test thread has 2. minijinja's parser, which stops at 150 levels of
/// nesting, needs more than 2 MiB for that in a debug build, so the cases run on a thread sized
/// like the one they would meet in production.
const MAIN_THREAD_STACK: usize = 8 << 20;

#[test]
fn lint_and_render_never_panic_on_mutated_recipes() {
    std::thread::Builder::new()
        .name("fuzz".into())
        .stack_size(MAIN_THREAD_STACK)
        .spawn(fuzz)
        .unwrap()
        .join()
        .unwrap();
}

fn fuzz() {
    let cases: u64 = std::env::var("EXECUTOR_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    let seed: u64 = std::env::var("EXECUTOR_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(14);
    let d = tempfile::tempdir().unwrap();
    // Overrides in the corpus extend `base.yaml` beside them.
    std::fs::copy(
        Path::new(ROOT).join("recipes/openstack.yaml"),
        d.path().join("base.yaml"),
    )
    .unwrap();
    std::fs::write(
        d.path().join("response.json"),
        r#"{"id": 7, "token": "glcbt-fuzz", "job_info": {"id": 7, "project_id": 3}, "runner_info": {"timeout": 600}}"#,
    )
    .unwrap();
    let env_file = d.path().join("job.env");
    std::fs::write(
        &env_file,
        format!(
            "JOB_RESPONSE_FILE={}\nCUSTOM_ENV_CI_JOB_ID=7\nCUSTOM_ENV_X=$(reboot)\nCUSTOM_ENV_FLAVOR=m1.small\nEXECUTOR_OWNER=fuzz\n",
            d.path().join("response.json").display()
        ),
    )
    .unwrap();
    let stages = [
        None,
        Some("config"),
        Some("prepare"),
        Some("run"),
        Some("cleanup"),
    ];
    if let Some(file) = std::env::var_os("EXECUTOR_FUZZ_FILE") {
        let recipe = d.path().join("case.yaml");
        std::fs::copy(&file, &recipe).unwrap();
        for stage in stages {
            if let Err(what) = exercise(d.path(), &recipe, &env_file, stage) {
                panic!("{what} panicked on {file:?}");
            }
        }
        return;
    }
    let seeds = seeds();
    let bodies: Vec<Vec<u8>> = seeds.iter().map(|(_, b)| b.clone()).collect();
    let mut rng = Rng(seed);
    let mut failures = vec![];
    // Every seed once as it is, then mutants.
    let total = seeds.len() as u64 + cases;
    for case in 0..total {
        let (origin, input) = match seeds.get(case as usize) {
            Some((name, body)) => (name.clone(), body.clone()),
            None => {
                let (name, body) = rng.pick(&seeds);
                (format!("mutant of {name}"), mutate(&mut rng, body, &bodies))
            }
        };
        let stage = *rng.pick(&stages);
        let recipe = d.path().join("case.yaml");
        std::fs::write(&recipe, &input).unwrap();
        if let Err(what) = exercise(d.path(), &recipe, &env_file, stage) {
            let keep = Path::new(ROOT)
                .join("target/fuzz-failures")
                .join(format!("seed{seed}-case{case}.yaml"));
            std::fs::create_dir_all(keep.parent().unwrap()).unwrap();
            std::fs::write(&keep, &input).unwrap();
            let shown = String::from_utf8_lossy(&input[..input.len().min(600)]).into_owned();
            failures.push(format!(
                "case {case} ({origin}): {what} panicked; input kept in {}; begins {shown:?}",
                keep.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} cases panicked (EXECUTOR_FUZZ_SEED={seed}):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Mutants run through the real binary too, as a user runs it: what `catch_unwind` cannot see
/// (an abort, a stack overflow, a panic in `main`'s own code or the report renderer) shows here
/// as exit status 101 or a signal. Fewer cases: each is two processes.
#[test]
fn the_binary_never_panics_on_the_corpus_or_its_mutants() {
    let d = tempfile::tempdir().unwrap();
    std::fs::copy(
        Path::new(ROOT).join("recipes/openstack.yaml"),
        d.path().join("base.yaml"),
    )
    .unwrap();
    let corpus: Vec<(String, Vec<u8>)> = seeds()
        .into_iter()
        .filter(|(name, _)| name.starts_with("tests/fuzz_corpus"))
        .collect();
    let bodies: Vec<Vec<u8>> = seeds().into_iter().map(|(_, b)| b).collect();
    let mut rng = Rng(101);
    let mut cases: Vec<(String, Vec<u8>)> = corpus.clone();
    for i in 0..40 {
        let (name, body) = rng.pick(&corpus);
        cases.push((
            format!("mutant {i} of {name}"),
            mutate(&mut rng, body, &bodies),
        ));
    }
    let mut failures = vec![];
    for (origin, input) in cases {
        let recipe = d.path().join("case.yaml");
        std::fs::write(&recipe, &input).unwrap();
        for args in [
            vec!["lint".into(), recipe.display().to_string()],
            vec![
                "--recipe".into(),
                recipe.display().to_string(),
                "render".into(),
                "--stage".into(),
                "prepare".into(),
            ],
        ] {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_executor"))
                .args(&args)
                .current_dir(d.path())
                .env_clear()
                .env("NO_COLOR", "1")
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            if out.status.code().is_none_or(|c| c == 101) || stderr.contains("panicked") {
                let keep = Path::new(ROOT)
                    .join("target/fuzz-failures")
                    .join(format!("process-{}.yaml", failures.len()));
                std::fs::create_dir_all(keep.parent().unwrap()).unwrap();
                std::fs::write(&keep, &input).unwrap();
                failures.push(format!(
                    "{origin}: executor {} ended {} (kept as {})\n{stderr}",
                    args[0],
                    out.status,
                    keep.display()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
