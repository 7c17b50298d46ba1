//! Throughput of one shared bulkhead (concurrency limit) under contention.
//!
//! One limiter is shared by 64 tasks on a 2-worker tokio multi-thread
//! runtime. Each task owns its own service sharing the one limiter's permits
//! and loops `ready().await; call(1).await`, yielding to the scheduler every
//! 32 calls so that all 64 tasks take turns on the two workers. Every round
//! lasts a fixed time and yields total calls per second over all tasks.
//!
//! Contenders, configured as in `benches/bulkhead.rs` (limit 1 000, above the
//! at most 64 calls ever in flight, so nothing is rejected or waits: what is
//! measured is the cost of the shared permit counters):
//!
//! * `bare` — the `tower::service_fn` alone;
//! * `seawall` — every task uses a clone of ONE seawall `Bulkhead` service
//!   (fail-fast); clones share the permits;
//! * `tower_global_concurrency_limit` — one `GlobalConcurrencyLimitLayer`;
//!   every task gets its own service from `layer(echo())`, all sharing the
//!   layer's `Arc<Semaphore>`;
//! * `tower_concurrency_limit` — every task uses a clone of ONE
//!   `ConcurrencyLimit` service (from `ConcurrencyLimitLayer`). Its clones
//!   share the one limit: `ConcurrencyLimit::clone` clones the
//!   `PollSemaphore`, i.e. the `Arc<Semaphore>`, and leaves the clone without
//!   a permit. (What `ConcurrencyLimitLayer` does not share is the semaphore
//!   between two services made by two `layer` calls.) So this is the same
//!   code path as the previous contender, built the other way — a check on
//!   the noise between rounds more than a separate peer;
//! * `tower_resilience` — every task uses a clone of ONE tower-resilience
//!   0.13 bulkhead service (`reject_when_full`); clones share its semaphore.
//!
//! On a small VM the cost of a contended cache line depends on where the host
//! places the two vCPUs at the moment, which can change between runs; so the
//! contenders take turns, round by round (after one warm-up round each), and
//! the table reports the median, minimum and maximum of their rounds.
//!
//! Run with `cargo bench --bench bulkhead_contention` (about 25 s). Without
//! `--bench` on the command line (as under `cargo test --benches`) it does one
//! very short round per contender, as a smoke test.
//!
//! The tasks, rounds and table come from `benches/support/contention.rs`,
//! shared with `benches/contention.rs`.

use std::fmt::Debug;

use tower::{Layer, Service};

#[path = "support/contention.rs"]
mod contention_harness;
// Shared with the breaker benches, whose contenders go unused here.
#[allow(dead_code)]
#[path = "support/peers.rs"]
mod peers;

use contention_harness::{run, tower_contender, tower_task, Contender, Plan};
use peers::{
    echo, seawall_bulkhead_service, tower_concurrency_limit_service,
    tower_global_concurrency_limit_layer, tower_resilience_bulkhead_service,
};

/// A contender whose tasks each drive their own service made by `layer`
/// around a clone of `inner`.
fn layered_contender<L, S>(name: &'static str, layer: L, inner: S) -> Contender
where
    L: Layer<S> + 'static,
    L::Service: Service<u64, Response = u64, Error: Debug, Future: Send> + Send + 'static,
    S: Clone + 'static,
{
    Contender {
        name,
        make_task: Box::new(move |stop| Box::pin(tower_task(layer.layer(inner.clone()), stop))),
    }
}

fn main() {
    let plan = Plan::from_args();

    // Everything is built here, outside the timed rounds.
    let contenders = vec![
        tower_contender("bare", echo()),
        tower_contender("seawall", seawall_bulkhead_service()),
        layered_contender(
            "tower_global_concurrency_limit",
            tower_global_concurrency_limit_layer(),
            echo(),
        ),
        tower_contender("tower_concurrency_limit", tower_concurrency_limit_service()),
        tower_contender("tower_resilience", tower_resilience_bulkhead_service()),
    ];

    run(plan, "bulkhead contention", "limiter", contenders);
}
