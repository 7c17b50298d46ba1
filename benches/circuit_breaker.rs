//! Per-call overhead of circuit breakers on the success path.
//!
//! Every contender wraps the same `tower::service_fn` echo service and is
//! driven the same way on a `current_thread` runtime: wait for readiness,
//! call, await the response. All contenders sit in one criterion group,
//! `breaker_overhead`, so criterion prints them side by side:
//!
//! * `bare` — the `service_fn` alone (the baseline);
//! * `seawall_default` — seawall's breaker with its defaults (count window of
//!   100 calls, 50 % failure rate, 20 calls minimum, 5 s open);
//! * `seawall_time_window` — the same with a 10 s time window in 10 buckets;
//! * `seawall_slow_calls` — the default plus the slow-call rule (500 ms, 80 %);
//! * `tower_resilience` — tower-resilience 0.13 `CircuitBreakerLayer`;
//! * `failsafe` — failsafe 1.3 `StateMachine`, through its futures API.
//!
//! The peers are configured as close as they allow to seawall's default.
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
//! `benches/support/overhead.rs`, shared with the other overhead benches;
//! failsafe's call, which is not a tower service, is here.
//!
//! Run with `cargo bench --bench circuit_breaker` (about a minute).

use std::fmt::Debug;
use std::hint::black_box;
use std::time::Duration;

use failsafe::futures::CircuitBreaker as _;
use seawall::circuit_breaker::CircuitBreakerLayer;
use tokio::runtime::Runtime;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

#[path = "support/overhead.rs"]
mod overhead;
#[path = "support/peers.rs"]
mod peers;

use overhead::{alloc_calls, tower_contender, Contender, Group, ALLOC_SAMPLE_CALLS};
use peers::{echo, failsafe_breaker, seawall_service, tower_resilience_service, Failsafe};

/// One call through failsafe. failsafe is not tower middleware; its futures
/// API (`failsafe::futures::CircuitBreaker::call`) wraps the inner call's
/// future, checks admission on its first poll and records the outcome when it
/// completes — the closest match to a tower breaker layer (its sync `call`
/// takes a closure returning a `Result`, which cannot wrap an async call).
/// The inner service's readiness is awaited first so the work matches the
/// tower contenders.
async fn failsafe_call<S>(breaker: &Failsafe, svc: &mut S, req: u64) -> u64
where
    S: Service<u64, Response = u64, Error: Debug>,
{
    let fut = svc.ready().await.expect("ready").call(req);
    breaker.call(fut).await.expect("call")
}

/// As [`overhead::tower_allocs`], for failsafe.
fn failsafe_allocs<S>(rt: &Runtime, breaker: &Failsafe, svc: &S) -> f64
where
    S: Service<u64, Response = u64, Error: Debug> + Clone,
{
    let mut svc = svc.clone();
    rt.block_on(async move {
        for i in 0..1_000 {
            black_box(failsafe_call(breaker, &mut svc, i).await);
        }
        let before = alloc_calls();
        for i in 0..ALLOC_SAMPLE_CALLS {
            black_box(failsafe_call(breaker, &mut svc, black_box(i)).await);
        }
        let after = alloc_calls();
        (after - before) as f64 / ALLOC_SAMPLE_CALLS as f64
    })
}

/// As [`overhead::bench_tower`], for failsafe.
fn bench_failsafe<S>(group: &mut Group<'_>, rt: &Runtime, name: &str, breaker: &Failsafe, svc: &S)
where
    S: Service<u64, Response = u64, Error: Debug> + Clone,
{
    group.bench_function(name, |b| {
        b.to_async(rt).iter_custom(|iters| {
            let mut svc = svc.clone();
            async move {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(failsafe_call(breaker, &mut svc, black_box(1)).await);
                }
                start.elapsed()
            }
        });
    });
}

fn main() {
    let rt = overhead::runtime();

    // Everything is built here, outside the timed loops.
    let failsafe = failsafe_breaker();
    let failsafe_inner = echo();
    let contenders = [
        tower_contender("bare", echo()),
        tower_contender(
            "seawall_default",
            seawall_service(CircuitBreakerLayer::builder()),
        ),
        tower_contender(
            "seawall_time_window",
            seawall_service(
                CircuitBreakerLayer::builder().time_window(Duration::from_secs(10), 10),
            ),
        ),
        tower_contender(
            "seawall_slow_calls",
            seawall_service(
                CircuitBreakerLayer::builder().slow_calls(Duration::from_millis(500), 0.8),
            ),
        ),
        tower_contender("tower_resilience", tower_resilience_service()),
        Contender::new(
            "failsafe",
            |rt| failsafe_allocs(rt, &failsafe, &failsafe_inner),
            |group, rt, name| bench_failsafe(group, rt, name, &failsafe, &failsafe_inner),
        ),
    ];
    overhead::run(&rt, "breaker_overhead", &contenders, |_| {});
}
