//! The loom models: one module per family of races, one test binary.
//!
//! `scripts/loom` runs each module in its own process (loom aborts the
//! process on a deadlock) under a timeout and prints one summary line per
//! model; `scripts/mutants` runs the models that guard each mutant.
//! Compiled only with `RUSTFLAGS="--cfg loom"` (and `--release`).
#![cfg(loom)]

mod common;

mod async_cancel;
mod batch;
mod close;
mod gate;
mod key_table;
mod leases;
mod no_rollback;
mod pop_window;
mod spill;
mod wakeup;
