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
//! again, with a CSV copy, after criterion's output. Counting needs a
//! counting `#[global_allocator]` (`benches/support/alloc_counter.rs`).
//!
//! Driving, timing and counting a tower service, and the allocation table,
//! come from `benches/support/overhead.rs`, shared with `benches/bulkhead.rs`;
//! failsafe's call, which is not a tower service, is here.
//!
//! Run with `cargo bench --bench circuit_breaker` (about a minute).

use std::fmt::Debug;
use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use failsafe::futures::CircuitBreaker as _;
use seawall::circuit_breaker::CircuitBreakerLayer;
use tokio::runtime::Runtime;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

#[path = "support/overhead.rs"]
mod overhead;
#[path = "support/peers.rs"]
mod peers;

use overhead::{
    alloc_calls, bench_tower, print_alloc_table, tower_allocs, Group, ALLOC_SAMPLE_CALLS,
};
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

/// As [`tower_allocs`], for failsafe.
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

/// As [`bench_tower`], for failsafe.
fn bench_failsafe<S>(group: &mut Group<'_>, rt: &Runtime, breaker: &Failsafe, svc: &S)
where
    S: Service<u64, Response = u64, Error: Debug> + Clone,
{
    group.bench_function("failsafe", |b| {
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    // Everything is built here, outside the timed loops.
    let bare = echo();
    let seawall_default = seawall_service(CircuitBreakerLayer::builder());
    let seawall_time_window =
        seawall_service(CircuitBreakerLayer::builder().time_window(Duration::from_secs(10), 10));
    let seawall_slow_calls =
        seawall_service(CircuitBreakerLayer::builder().slow_calls(Duration::from_millis(500), 0.8));
    let tower_resilience = tower_resilience_service();
    let failsafe = failsafe_breaker();
    let failsafe_inner = echo();

    let allocs = [
        ("bare", tower_allocs(&rt, &bare)),
        ("seawall_default", tower_allocs(&rt, &seawall_default)),
        (
            "seawall_time_window",
            tower_allocs(&rt, &seawall_time_window),
        ),
        ("seawall_slow_calls", tower_allocs(&rt, &seawall_slow_calls)),
        ("tower_resilience", tower_allocs(&rt, &tower_resilience)),
        ("failsafe", failsafe_allocs(&rt, &failsafe, &failsafe_inner)),
    ];
    print_alloc_table(&allocs);

    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    {
        let mut group = criterion.benchmark_group("breaker_overhead");
        bench_tower(&mut group, &rt, "bare", &bare);
        bench_tower(&mut group, &rt, "seawall_default", &seawall_default);
        bench_tower(&mut group, &rt, "seawall_time_window", &seawall_time_window);
        bench_tower(&mut group, &rt, "seawall_slow_calls", &seawall_slow_calls);
        bench_tower(&mut group, &rt, "tower_resilience", &tower_resilience);
        bench_failsafe(&mut group, &rt, &failsafe, &failsafe_inner);
        group.finish();
    }
    criterion.final_summary();

    print_alloc_table(&allocs);
}
