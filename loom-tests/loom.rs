//! The loom models: one module per family of races, one test binary.
//!
//! `scripts/loom` runs each module in its own process (loom aborts the
//! process on a deadlock) under a timeout and prints one summary line per
//! model; `scripts/mutants` runs the models that guard each mutant.
//! The models are compiled only with `RUSTFLAGS="--cfg loom"` (and
//! `--release`); a plain `cargo test` builds this binary with one test
//! instead, whose name says where the models run.

#[cfg(loom)]
mod common;

#[cfg(loom)]
mod async_cancel;
#[cfg(loom)]
mod batch;
#[cfg(loom)]
mod close;
#[cfg(loom)]
mod delays;
#[cfg(loom)]
mod gate;
#[cfg(loom)]
mod key_table;
#[cfg(loom)]
mod leases;
#[cfg(loom)]
mod no_rollback;
#[cfg(loom)]
mod pop_window;
#[cfg(loom)]
mod spill;
#[cfg(loom)]
mod values;
#[cfg(loom)]
mod wakeup;

/// What a plain `cargo test` runs of this binary: not the models (they
/// need `--cfg loom`, which `scripts/loom` sets), only a check that every
/// module `scripts/loom` finds here (a `mod name;` line) has its file.
#[cfg(not(loom))]
#[test]
fn loom_models_run_under_scripts_loom_not_cargo_test() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("scripts/loom").is_file(),
        "scripts/loom is missing"
    );
    let this = std::fs::read_to_string(root.join("loom-tests/loom.rs")).unwrap();
    let modules: Vec<&str> = this
        .lines()
        .filter_map(|line| line.strip_prefix("mod ")?.strip_suffix(';'))
        .collect();
    assert!(modules.len() > 1, "no model modules in loom-tests/loom.rs");
    for module in modules {
        let file = root.join("loom-tests").join(format!("{module}.rs"));
        let dir = root.join("loom-tests").join(module).join("mod.rs");
        assert!(
            file.is_file() || dir.is_file(),
            "module {module} has no file"
        );
    }
}
