//! Shuttle models (`RUSTFLAGS="--cfg shuttle"`): randomized and PCT schedules
//! of 5 to 7 threads doing many more operations than loom can explore
//! exhaustively, checking the same guarantees as the loom models: G1 (every
//! accepted offer is followed by a delivery of its key that came after it
//! began), G2 (one delivery per enqueued copy; at most one lease per key),
//! G3 (claims never above capacity), G5 (every thread completes: shuttle
//! reports a deadlock otherwise) and G6 (nothing pending or claimed at the
//! end). Run by `scripts/shuttle`, also against some mutants.
//!
//! Each model runs on both key stores, the general one first, then the
//! compact one, both with the same fixed hasher. Each test prints
//! `shuttle-model <name> store=<general|compact> capacity=<c> scheduler=<s>
//! iterations=<n> seconds=<s>`. `SHUTTLE_ITERATIONS` sets the schedules per
//! store, scheduler and capacity (default 1000).
//!
//! The models (`shuttle/models.rs`) are compiled only with `--cfg shuttle`;
//! a plain `cargo test` builds this binary with one test instead, whose
//! name says where the models run.

#[cfg(shuttle)]
include!("shuttle/models.rs");

/// What a plain `cargo test` runs of this binary: not the models (they
/// need `--cfg shuttle`, which `scripts/shuttle` sets), only a check that
/// `scripts/shuttle` finds them where it looks.
#[test]
#[cfg(not(shuttle))]
fn shuttle_models_run_under_scripts_shuttle_not_cargo_test() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("scripts/shuttle").is_file(),
        "scripts/shuttle is missing"
    );
    let models = std::fs::read_to_string(root.join("loom-tests/shuttle/models.rs")).unwrap();
    // As scripts/shuttle reads them: a `#[test]` line, then `fn name()`.
    let lines: Vec<&str> = models.lines().collect();
    let found = lines
        .windows(2)
        .filter(|pair| pair[0] == "#[test]" && pair[1].starts_with("fn "))
        .count();
    assert!(found >= 3, "{found} shuttle models found");
}
