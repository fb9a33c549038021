//! The repository's scripts on a fresh clone: `scripts/bench-report` with
//! no `target/` directory yet. `cargo` and `jq` are stand-ins here, so no
//! benchmark runs: the report of an empty run is all that is checked.
#![cfg(unix)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh scratch directory under the system's temp dir.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("coalescing-queue-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// An executable script `name` in `dir` with body `body`.
fn stub(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn bench_report_runs_without_a_target_dir() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scratch = scratch("bench-report");
    let bin = scratch.join("bin");
    fs::create_dir_all(&bin).unwrap();
    // `cargo bench` succeeds at once and measures nothing; `jq` is never
    // needed without results.
    stub(&bin, "cargo", "echo \"stand-in cargo $*\"");
    stub(&bin, "jq", "exit 1");
    let target = scratch.join("target"); // does not exist, as on a fresh clone
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = Command::new("bash")
        .arg(root.join("scripts/bench-report"))
        .args(["--runs", "2", "--no-instructions", "--no-memory"])
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("targets: 0 met, 0 missed"), "{stdout}");
    assert!(
        stdout.contains("instructions: skipped (--no-instructions)"),
        "{stdout}"
    );
    // One log and one (empty) table of medians per run.
    for run in 1..=2 {
        let dir = target.join("bench-report");
        let log = fs::read_to_string(dir.join(format!("suite-{run}.log"))).unwrap();
        assert!(log.contains("stand-in cargo bench --bench queues"), "{log}");
        assert!(dir.join(format!("run-{run}.tsv")).is_file());
    }
    let _ = fs::remove_dir_all(&scratch);
}
