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

use criterion::Criterion;
use seawall::retry::budget::RetryBudget;
use seawall::retry::RetryLayer;

#[path = "support/overhead.rs"]
mod overhead;
// Shared with the breaker and bulkhead benches, whose contenders go unused here.
#[allow(dead_code)]
#[path = "support/peers.rs"]
mod peers;

use overhead::{criterion_estimate_ns, tower_contender};
use peers::{echo, seawall_retry_service, tower_resilience_retry_service, tower_retry_service};

/// Criterion's group name (also its directory under `target/criterion`).
const GROUP: &str = "retry_overhead";
/// The group of the success path's pieces.
const PARTS: &str = "retry_parts";

fn main() {
    let rt = overhead::runtime();

    // Everything is built here, outside the timed loops (seawall's budget reads tokio's
    // clock, so it is built inside the runtime).
    let _guard = rt.enter();
    let contenders = [
        tower_contender("bare", echo()),
        tower_contender("seawall", seawall_retry_service(RetryLayer::builder())),
        tower_contender(
            "seawall_without_budget",
            seawall_retry_service(RetryLayer::builder().without_budget()),
        ),
        tower_contender("tower_retry_tps_budget", tower_retry_service()),
        tower_contender("tower_resilience", tower_resilience_retry_service()),
    ];
    let parts = ["clock_read", "budget_deposit", "arc_clone_drop"];
    let budget = RetryBudget::builder().build().expect("valid budget");
    let shared = Arc::new(0u64);
    let time_parts = |criterion: &mut Criterion| {
        let mut group = criterion.benchmark_group(PARTS);
        group.bench_function(parts[0], |b| {
            b.iter(|| black_box(tokio::time::Instant::now()))
        });
        group.bench_function(parts[1], |b| b.iter(|| black_box(&budget).deposit()));
        group.bench_function(parts[2], |b| {
            b.iter(|| drop(black_box(Arc::clone(black_box(&shared)))))
        });
        group.finish();
    };
    if let Some(started) = overhead::run(&rt, GROUP, &contenders, time_parts) {
        println!("pieces of the success path (criterion's estimates), single thread");
        for part in parts {
            let time = criterion_estimate_ns(PARTS, part, started);
            let cell = time.map_or_else(|| "-".to_owned(), |t| format!("{t:.1}"));
            println!("| {part:<30} | {cell:>7} ns |");
        }
    }
}
