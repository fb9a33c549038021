//! Op sequences (offers of keys and items, plain, leased and batch takes,
//! ack / nack / drop of held leases, close; with retries also delayed
//! offers and nacks, backoff, clock advances) replayed on a queue of
//! capacity 1..=8 with either in-flight policy, against a plain model;
//! every result and the observable state after every op are compared. See
//! `src/lib.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: fuzz_model::Input| {
    fuzz_model::run_input(&input);
});
