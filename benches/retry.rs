//! Per-call overhead of retry layers when no retry is needed (the inner service always
//! succeeds).
//!
//! Every contender wraps the same `tower::service_fn` echo service and is driven the same
//! way on a `current_thread` runtime, one call at a time: wait for readiness, call, await
//! the response. All contenders sit in one criterion group, `retry_overhead`, so criterion
//! prints them side by side:
//!
//! * `bare` — the `service_fn` alone (the baseline);
//! * `seawall` — seawall's `RetryLayer` with its defaults: 3 attempts, a budget of 20 %
//!   plus 10 retries/s over 10 s (a deposit per call), exponential full-jitter backoff;
//! * `seawall_without_budget` — the same, `without_budget()`;
//! * `tower_retry_tps_budget` — tower 0.5's `Retry` with the policy of tower's docs: a
//!   `TpsBudget` with seawall's numbers (10 s, 10/s, 20 %), a deposit per success, a
//!   withdrawal per retry, 3 attempts (see `peers::TowerBudgetPolicy`);
//! * `tower_resilience` — tower-resilience 0.13's `RetryLayer`, 3 attempts. It has no
//!   budget by default; it is given its token-bucket budget with that bucket's defaults
//!   (10 tokens/s, burst 100), the closest it has to seawall's (it has no ratio budget:
//!   each success deposits a whole token).
//!
//! Requests are `u64` (cloned for a possible retry). Nothing is built inside the timed
//! loops: each sample times a loop over one clone of the service, taken before the clock
//! starts.
//!
//! A second group, `retry_parts`, times the pieces of seawall's success path on their
//! own, in the same run, to show what the overhead is made of:
//!
//! * `clock_read` — `tokio::time::Instant::now()` (the one clock read per call);
//! * `budget_deposit` — `RetryBudget::deposit()` with the default budget (a clock read,
//!   and one compare-and-swap on the count of the current time slot);
//! * `arc_clone_drop` — cloning and dropping an `Arc` (the response future holds the
//!   layer's shared policy).
//!
//! Before criterion runs, the allocations per call of each contender are counted
//! (100 000 calls each) and printed as a table; after criterion's output the table is
//! printed again, with criterion's point estimates (ns/call, and the overhead over
//! `bare`). Driving, timing, counting and the tables come from
//! `benches/support/overhead.rs`; the contenders from `benches/support/peers.rs`.
//!
//! Run with `cargo bench --bench retry` (about 40 s).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::Criterion;
use seawall::retry::budget::RetryBudget;
use seawall::retry::RetryLayer;

#[path = "support/overhead.rs"]
mod overhead;
// Shared with the breaker and bulkhead benches, whose contenders go unused here.
#[allow(dead_code)]
#[path = "support/peers.rs"]
mod peers;

use overhead::{
    bench_tower, criterion_estimate_ns, print_alloc_table, print_time_table, tower_allocs,
};
use peers::{echo, seawall_retry_service, tower_resilience_retry_service, tower_retry_service};

/// Criterion's group name (also its directory under `target/criterion`).
const GROUP: &str = "retry_overhead";
/// The group of the success path's pieces.
const PARTS: &str = "retry_parts";

fn main() {
    let started = SystemTime::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    // Everything is built here, outside the timed loops (seawall's budget reads tokio's
    // clock, so it is built inside the runtime).
    let _guard = rt.enter();
    let bare = echo();
    let seawall = seawall_retry_service(RetryLayer::builder());
    let seawall_unbudgeted = seawall_retry_service(RetryLayer::builder().without_budget());
    let tower = tower_retry_service();
    let tower_resilience = tower_resilience_retry_service();

    let names = [
        "bare",
        "seawall",
        "seawall_without_budget",
        "tower_retry_tps_budget",
        "tower_resilience",
    ];
    let allocs = [
        (names[0], tower_allocs(&rt, &bare)),
        (names[1], tower_allocs(&rt, &seawall)),
        (names[2], tower_allocs(&rt, &seawall_unbudgeted)),
        (names[3], tower_allocs(&rt, &tower)),
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
        bench_tower(&mut group, &rt, names[2], &seawall_unbudgeted);
        bench_tower(&mut group, &rt, names[3], &tower);
        bench_tower(&mut group, &rt, names[4], &tower_resilience);
        group.finish();
    }
    let parts = ["clock_read", "budget_deposit", "arc_clone_drop"];
    {
        let budget = RetryBudget::builder().build().expect("valid budget");
        let shared = Arc::new(0u64);
        let mut group = criterion.benchmark_group(PARTS);
        group.bench_function(parts[0], |b| {
            b.iter(|| black_box(tokio::time::Instant::now()))
        });
        group.bench_function(parts[1], |b| b.iter(|| black_box(&budget).deposit()));
        group.bench_function(parts[2], |b| {
            b.iter(|| drop(black_box(Arc::clone(black_box(&shared)))))
        });
        group.finish();
    }
    criterion.final_summary();

    print_alloc_table(&allocs);
    // Only after a real run: under `cargo test --benches` criterion writes nothing and
    // the estimates on disk would be stale.
    if std::env::args().any(|arg| arg == "--bench") {
        print_time_table(GROUP, &names, &allocs, started);
        println!("pieces of the success path (criterion's estimates), single thread");
        for part in parts {
            let time = criterion_estimate_ns(PARTS, part, started);
            let cell = time.map_or_else(|| "-".to_owned(), |t| format!("{t:.1}"));
            println!("| {part:<30} | {cell:>7} ns |");
        }
    }
}
