//! Per-call overhead of the full policy stack when every call succeeds at once.
//!
//! Every contender wraps the same `tower::service_fn` echo service and is driven the same
//! way on a `current_thread` runtime, one call at a time: wait for readiness, call, await
//! the response. All contenders sit in one criterion group, `policy_overhead`, so
//! criterion prints them side by side:
//!
//! * `bare` — the `service_fn` alone (the baseline);
//! * `seawall_policy` — `Policy::builder("bench").build()`: the canonical stack with its
//!   defaults, hedging off: a 15 s deadline, 3 attempts with a budget (20 % plus 10/s
//!   over 10 s, a deposit per call), the breaker (last 100 calls, 50 %, 20 calls
//!   minimum), a bulkhead of 25 (fail fast), a 5 s attempt timeout;
//! * `seawall_layers` — the same five layers composed by hand on a
//!   `tower::ServiceBuilder` (what the policy saves the user from writing; the difference
//!   to `seawall_policy` is the cost of the policy's on/off wrappers);
//! * `seawall_policy_all_off` — the policy with every stage switched off (the cost of
//!   the wrappers alone);
//! * `tower_resilience` — the equivalent stack from tower-resilience 0.13: its retry
//!   (3 attempts, its token-bucket budget with that bucket's defaults, 10 tokens/s and a
//!   burst of 100: it has no ratio budget), its circuit breaker (count window of 100,
//!   50 %, 20 calls minimum, 5 s open), its bulkhead (25 calls, `reject_when_full`), and
//!   tower's own `Timeout` for the deadline (15 s, outermost) and the attempt timeout
//!   (5 s, innermost): tower-resilience's time limiter is not among the dev-dependency's
//!   features, and tower's `Timeout` is what a tower user would reach for.
//!
//! Requests are `u64`. Nothing is built inside the timed loops: each sample times a loop
//! over one clone of the service, taken before the clock starts.
//!
//! Before criterion runs, the allocations per call of each contender are counted
//! (100 000 calls each) and printed as a table; after criterion's output the table is
//! printed again, with criterion's point estimates (ns/call, and the overhead over
//! `bare`) and the speed-up of `seawall_policy` over `tower_resilience`. Driving, timing,
//! counting and the tables come from `benches/support/overhead.rs`; the echo service from
//! `benches/support/peers.rs`.
//!
//! The design's target: at most 150 ns over `bare`, 0 allocations, and at least 5× faster
//! than `tower_resilience`.
//!
//! Run with `cargo bench --bench policy` (about 30 s).

use std::fmt::Debug;
use std::time::Duration;

use seawall::bulkhead::BulkheadLayer;
use seawall::circuit_breaker::CircuitBreakerLayer;
use seawall::policy::Policy;
use seawall::retry::RetryLayer;
use seawall::timeout::{DeadlineLayer, TimeoutLayer};
use tower::Service;

#[path = "support/overhead.rs"]
mod overhead;
// Shared with the breaker, bulkhead and retry benches, whose contenders go unused here.
#[allow(dead_code)]
#[path = "support/peers.rs"]
mod peers;

use overhead::{criterion_estimate_ns, tower_contender};
use peers::echo;

/// Criterion's group name (also its directory under `target/criterion`).
const GROUP: &str = "policy_overhead";

/// The overall deadline and the attempt timeout every contender is given (the policy's
/// defaults).
const DEADLINE: Duration = Duration::from_secs(15);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// The bulkhead's limit (the policy's default, Resilience4j's).
const MAX_CONCURRENT: u32 = 25;
/// Attempts in all.
const MAX_ATTEMPTS: u32 = 3;

/// seawall's policy with its defaults (hedging off) around [`echo`].
fn seawall_policy(
) -> impl Service<u64, Response = u64, Error: Debug, Future: Send> + Clone + Send + 'static {
    let policy = Policy::builder("bench").build().expect("valid policy");
    tower::ServiceBuilder::new().layer(policy).service(echo())
}

/// The same stack, layer by layer.
fn seawall_layers(
) -> impl Service<u64, Response = u64, Error: Debug, Future: Send> + Clone + Send + 'static {
    tower::ServiceBuilder::new()
        .layer(DeadlineLayer::new(DEADLINE).expect("valid deadline"))
        .layer(
            RetryLayer::builder()
                .name("bench")
                .max_attempts(MAX_ATTEMPTS)
                .build()
                .expect("valid retry"),
        )
        .layer(
            CircuitBreakerLayer::builder()
                .name("bench")
                .build()
                .expect("valid breaker"),
        )
        .layer(
            BulkheadLayer::builder()
                .name("bench")
                .max_concurrent(MAX_CONCURRENT)
                .build()
                .expect("valid bulkhead"),
        )
        .layer(TimeoutLayer::new(ATTEMPT_TIMEOUT).expect("valid timeout"))
        .service(echo())
}

/// The policy with every stage off.
fn seawall_policy_all_off(
) -> impl Service<u64, Response = u64, Error: Debug, Future: Send> + Clone + Send + 'static {
    let policy = Policy::builder("bench")
        .without_deadline()
        .without_retry()
        .without_hedge()
        .without_circuit_breaker()
        .without_bulkhead()
        .without_attempt_timeout()
        .build()
        .expect("valid policy");
    tower::ServiceBuilder::new().layer(policy).service(echo())
}

fn main() {
    let rt = overhead::runtime();

    // Everything is built here, outside the timed loops (seawall's budget reads tokio's
    // clock, so it is built inside the runtime).
    let _guard = rt.enter();
    let contenders = [
        tower_contender("bare", echo()),
        tower_contender("seawall_policy", seawall_policy()),
        tower_contender("seawall_layers", seawall_layers()),
        tower_contender("seawall_policy_all_off", seawall_policy_all_off()),
        tower_contender("tower_resilience", peers::tower_resilience_stack_service()),
    ];
    if let Some(started) = overhead::run(&rt, GROUP, &contenders, |_| {}) {
        let estimate = |name| criterion_estimate_ns(GROUP, name, started);
        if let (Some(seawall), Some(peer)) =
            (estimate("seawall_policy"), estimate("tower_resilience"))
        {
            println!(
                "seawall_policy is {:.1}x faster than tower_resilience ({seawall:.1} ns vs {peer:.1} ns per call)",
                peer / seawall
            );
        }
    }
}
