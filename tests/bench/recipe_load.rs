//! How long loading a large recipe takes, ASCII against non-ASCII text (issue 14, item 8).
//! Every stage process loads the recipe first, so this is paid five to ten times per job.
//! Prints a markdown table: the median of in-process `loader::load` calls, the characters span
//! mapping walked, and the wall time of a whole `executor render --recipe FILE` process (load,
//! then print the merged recipe).
//!
//! `cargo bench --bench recipe_load` (under a minute); `EXECUTOR_BENCH_QUICK=1` for a smoke
//! run; `EXECUTOR_BENCH_EXECUTOR=/path/to/executor` times that binary's process instead.

#[path = "big_recipe.rs"]
mod big_recipe;
#[path = "stats.rs"]
#[allow(dead_code)]
mod stats;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use executor_driver::recipe::{loader, spanned_yaml};
use stats::median;

fn executor() -> PathBuf {
    std::env::var_os("EXECUTOR_BENCH_EXECUTOR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_executor")))
}

fn main() {
    let quick = std::env::var("EXECUTOR_BENCH_QUICK").is_ok_and(|v| v == "1");
    let runs = if quick { 1 } else { 7 };
    let sizes: &[usize] = if quick { &[60_000] } else { &[60_000, 600_000] };
    let dir = tempfile::tempdir().expect("temporary directory");
    println!(
        "# recipe load benchmark{}\n",
        if quick { " (quick)" } else { "" }
    );
    println!(
        "Median of {runs} runs; driver for the process column: `{}`.\n",
        executor().display()
    );
    println!(
        "| recipe | size | characters | load, in process | characters walked | `executor render`, whole process |\n|---|---|---|---|---|---|"
    );
    for &size in sizes {
        for non_ascii in [false, true] {
            let text = big_recipe::big_recipe(size, non_ascii);
            let path = dir.path().join(format!("r-{size}-{non_ascii}.yaml"));
            std::fs::write(&path, &text).expect("write the recipe");
            let paths = [path.clone()];
            let mut load_ms = vec![];
            let mut walked = 0;
            for _ in 0..runs {
                let before = spanned_yaml::chars_walked();
                let started = Instant::now();
                let loaded = loader::load(&paths);
                load_ms.push(started.elapsed().as_secs_f64() * 1000.0);
                walked = spanned_yaml::chars_walked() - before;
                if let Err(problems) = loaded {
                    panic!("the recipe does not load: {}", problems.plain());
                }
            }
            let mut process_ms = vec![];
            for _ in 0..runs {
                let started = Instant::now();
                let status = Command::new(executor())
                    .arg("--recipe")
                    .arg(&path)
                    .arg("render")
                    .stdout(Stdio::null())
                    .status()
                    .expect("start executor");
                process_ms.push(started.elapsed().as_secs_f64() * 1000.0);
                assert!(status.success(), "executor render failed");
            }
            println!(
                "| {} | {} KB | {} | {:.1} ms | {} | {:.1} ms |",
                if non_ascii { "non-ASCII" } else { "ASCII" },
                text.len() / 1000,
                text.chars().count(),
                median(&load_ms),
                walked,
                median(&process_ms),
            );
        }
    }
}
