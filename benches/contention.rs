//! Throughput of one shared circuit breaker under contention.
//!
//! One breaker is shared by 64 tasks on a 2-worker tokio multi-thread
//! runtime. Each task owns a clone of the service (for failsafe: a clone of
//! the breaker, which shares its state, plus a clone of the inner service)
//! and loops `ready().await; call(1).await`, yielding to the scheduler every
//! 32 calls so that all 64 tasks take turns on the two workers. Every round
//! lasts a fixed time and yields total calls per second over all tasks.
//!
//! Contenders: `bare` (the `tower::service_fn` alone), seawall's breaker
//! with its defaults, tower-resilience 0.13 and failsafe 1.3, the peers
//! configured as in `benches/circuit_breaker.rs`.
//!
//! On a small VM the cost of a contended cache line depends on where the host
//! places the two vCPUs at the moment, which can change between runs; so the
//! contenders take turns, round by round (after one warm-up round each), and
//! the table reports the median, minimum and maximum of their rounds.
//!
//! Run with `cargo bench --bench contention` (about 20 s). Without `--bench`
//! on the command line (as under `cargo test --benches`) it does one very
//! short round per contender, as a smoke test.
//!
//! The tasks, rounds and table come from `benches/support/contention.rs`,
//! shared with `benches/bulkhead_contention.rs`; failsafe's task loop is
//! here.

use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use failsafe::futures::CircuitBreaker as _;
use seawall::circuit_breaker::CircuitBreakerLayer;
use tower::{Service, ServiceExt};

#[path = "support/contention.rs"]
mod contention_harness;
#[path = "support/peers.rs"]
mod peers;

use contention_harness::{run, tower_contender, Contender, Plan, CALLS_PER_YIELD};
use peers::{echo, failsafe_breaker, seawall_service, tower_resilience_service, Failsafe};

/// A task loop for failsafe: the inner service's readiness, then its call's
/// future wrapped by `failsafe::futures::CircuitBreaker::call`.
async fn failsafe_task<S>(breaker: Failsafe, mut svc: S, stop: Arc<AtomicBool>) -> u64
where
    S: Service<u64, Response = u64, Error: Debug>,
{
    let mut calls = 0;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..CALLS_PER_YIELD {
            let fut = svc.ready().await.expect("ready").call(1);
            std::hint::black_box(breaker.call(fut).await.expect("call"));
        }
        calls += CALLS_PER_YIELD;
        tokio::task::yield_now().await;
    }
    calls
}

fn main() {
    let plan = Plan::from_args();

    // Everything is built here, outside the timed rounds.
    let failsafe = failsafe_breaker();
    let failsafe_inner = echo();
    let contenders = vec![
        tower_contender("bare", echo()),
        tower_contender(
            "seawall_default",
            seawall_service(CircuitBreakerLayer::builder()),
        ),
        tower_contender("tower_resilience", tower_resilience_service()),
        Contender {
            name: "failsafe",
            make_task: Box::new(move |stop| {
                Box::pin(failsafe_task(
                    failsafe.clone(),
                    failsafe_inner.clone(),
                    stop,
                ))
            }),
        },
    ];

    run(plan, "contention", "breaker", contenders);
}
