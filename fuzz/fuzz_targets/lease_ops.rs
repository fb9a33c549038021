//! As `queue_ops`, with ops drawn to favour leases: leased takes and
//! batches, ack / nack / drop / split, and re-offers of leased keys (4 keys),
//! with close rare, so that in-flight and dirty keys are the common case.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((capacity, policy, keys, merges, ops)) = fuzz_model::lease_weighted(data) {
        fuzz_model::run(capacity, policy, keys, merges, &ops);
    }
});
