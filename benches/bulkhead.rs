//! Per-call overhead of bulkheads (concurrency limits) on the success path.
//!
//! Every contender wraps the same `tower::service_fn` echo service and is
//! driven the same way on a `current_thread` runtime: wait for readiness,
//! call, await the response. All contenders sit in one criterion group,
//! `bulkhead_overhead`, so criterion prints them side by side:
//!
//! * `bare` — the `service_fn` alone (the baseline);
//! * `seawall` — seawall's `BulkheadLayer`, fail-fast (its default zero
//!   `max_wait`);
//! * `tower_concurrency_limit` — tower 0.5 `ConcurrencyLimitLayer`;
//! * `tower_global_concurrency_limit` — tower 0.5
//!   `GlobalConcurrencyLimitLayer` (the same service type as the previous
//!   one; only where its semaphore is made differs);
//! * `tower_resilience` — tower-resilience 0.13 `BulkheadLayer` with
//!   `reject_when_full` (fail-fast).
//!
//! Every limit is 1 000 calls, so no call is ever rejected or made to wait:
//! what is measured is taking and giving back one permit per call. tower's
//! limits have no fail-fast mode; on this path they never wait either.
//! Nothing is built inside the timed loops: each sample times a loop over one
//! clone of the service, taken before the clock starts.
//!
//! Before criterion runs, the allocations per call of each contender are
//! counted (100 000 calls each) and printed as a table; the table is printed
//! again, with a CSV copy, after criterion's output, together with a table of
//! criterion's point estimates (ns/call, and the overhead over `bare`).
//! Counting needs a counting `#[global_allocator]`
//! (`benches/support/alloc_counter.rs`).
//!
//! Driving, timing and counting a tower service, and the tables, come from
//! `benches/support/overhead.rs`, shared with the other overhead benches.
//!
//! Run with `cargo bench --bench bulkhead` (about 40 s).

use tower::Layer;

#[path = "support/overhead.rs"]
mod overhead;
// Shared with the breaker benches, whose contenders go unused here.
#[allow(dead_code)]
#[path = "support/peers.rs"]
mod peers;

use overhead::tower_contender;
use peers::{
    echo, seawall_bulkhead_service, tower_concurrency_limit_service,
    tower_global_concurrency_limit_layer, tower_resilience_bulkhead_service,
};

/// Criterion's group name (also its directory under `target/criterion`).
const GROUP: &str = "bulkhead_overhead";

fn main() {
    let rt = overhead::runtime();

    // Everything is built here, outside the timed loops.
    let contenders = [
        tower_contender("bare", echo()),
        tower_contender("seawall", seawall_bulkhead_service()),
        tower_contender("tower_concurrency_limit", tower_concurrency_limit_service()),
        tower_contender(
            "tower_global_concurrency_limit",
            tower_global_concurrency_limit_layer().layer(echo()),
        ),
        tower_contender("tower_resilience", tower_resilience_bulkhead_service()),
    ];
    overhead::run(&rt, GROUP, &contenders, |_| {});
}
