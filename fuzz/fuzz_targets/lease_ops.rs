//! As `queue_ops`, with ops drawn to favour leases: leased takes and
//! batches, ack / nack / drop / split, and re-offers of leased keys (4 keys),
//! with close rare, so that in-flight and dirty keys are the common case.
//! With retries (three inputs in four), a quarter of the ops are delay ops:
//! `nack_after` / `nack_backoff` of leases and batches, clock advances,
//! delayed offers and the queuing looks (`len`, `is_empty`, `stats`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((capacity, policy, keys, merges, retries, ops)) = fuzz_model::lease_weighted(data) {
        fuzz_model::run(capacity, policy, keys, merges, retries, &ops);
    }
});
