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
//! Driving, timing and counting a tower service, and the allocation table,
//! come from `benches/support/overhead.rs`, shared with
//! `benches/circuit_breaker.rs`.
//!
//! Run with `cargo bench --bench bulkhead` (about 40 s).

use std::time::{Duration, SystemTime};

use criterion::Criterion;
use tower::Layer;

#[path = "support/overhead.rs"]
mod overhead;
// Shared with the breaker benches, whose contenders go unused here.
#[allow(dead_code)]
#[path = "support/peers.rs"]
mod peers;

use overhead::{bench_tower, print_alloc_table, print_time_table, tower_allocs};
use peers::{
    echo, seawall_bulkhead_service, tower_concurrency_limit_service,
    tower_global_concurrency_limit_layer, tower_resilience_bulkhead_service,
};

/// Criterion's group name (also its directory under `target/criterion`).
const GROUP: &str = "bulkhead_overhead";

fn main() {
    let started = SystemTime::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    // Everything is built here, outside the timed loops.
    let bare = echo();
    let seawall = seawall_bulkhead_service();
    let tower_limit = tower_concurrency_limit_service();
    let tower_global = tower_global_concurrency_limit_layer().layer(echo());
    let tower_resilience = tower_resilience_bulkhead_service();

    let names = [
        "bare",
        "seawall",
        "tower_concurrency_limit",
        "tower_global_concurrency_limit",
        "tower_resilience",
    ];
    let allocs = [
        (names[0], tower_allocs(&rt, &bare)),
        (names[1], tower_allocs(&rt, &seawall)),
        (names[2], tower_allocs(&rt, &tower_limit)),
        (names[3], tower_allocs(&rt, &tower_global)),
        (names[4], tower_allocs(&rt, &tower_resilience)),
    ];
    print_alloc_table(&allocs);

    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    {
        let mut group = criterion.benchmark_group(GROUP);
        bench_tower(&mut group, &rt, names[0], &bare);
        bench_tower(&mut group, &rt, names[1], &seawall);
        bench_tower(&mut group, &rt, names[2], &tower_limit);
        bench_tower(&mut group, &rt, names[3], &tower_global);
        bench_tower(&mut group, &rt, names[4], &tower_resilience);
        group.finish();
    }
    criterion.final_summary();

    print_alloc_table(&allocs);
    // Only after a real run: under `cargo test --benches` criterion writes
    // nothing and the estimates on disk would be stale.
    if std::env::args().any(|arg| arg == "--bench") {
        print_time_table(GROUP, &names, &allocs, started);
    }
}
