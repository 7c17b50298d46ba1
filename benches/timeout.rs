//! Per-call overhead of timeouts and deadlines on the success path.
//!
//! Every contender wraps the same `tower::service_fn` echo service (ready at once) and is
//! driven the same way on a `current_thread` runtime: wait for readiness, call, await.
//! All contenders sit in one criterion group, `timeout_overhead`:
//!
//! * `bare` — the echo service alone (the baseline);
//! * `tower_timeout` — tower 0.5 `TimeoutLayer` (1 s);
//! * `seawall_timeout` — seawall's `TimeoutLayer` (1 s), with no deadline around it;
//! * `seawall_deadline` — seawall's `DeadlineLayer` (1 s): reads the clock once and
//!   makes the deadline current for the inner service;
//! * `seawall_deadline_and_timeout` — both, as in the canonical stack: the attempt
//!   timeout then reads the clock to check the deadline before sending.
//!
//! Allocations per call are counted first (100 000 calls each) and printed as a table,
//! with a table of criterion's estimates and the overhead over `bare` at the end.
//!
//! Run with `cargo bench --bench timeout` (about 30 s).

use std::time::Duration;

use tower::ServiceBuilder;

#[path = "support/overhead.rs"]
mod overhead;
#[allow(dead_code)]
#[path = "support/peers.rs"]
mod peers;

use overhead::tower_contender;
use peers::echo;

const GROUP: &str = "timeout_overhead";

fn main() {
    let rt = overhead::runtime();
    let second = Duration::from_secs(1);

    // Everything is built here, outside the timed loops.
    let contenders = [
        tower_contender("bare", echo()),
        tower_contender(
            "tower_timeout",
            ServiceBuilder::new()
                .layer(tower::timeout::TimeoutLayer::new(second))
                .service(echo()),
        ),
        tower_contender(
            "seawall_timeout",
            ServiceBuilder::new()
                .layer(seawall::timeout::TimeoutLayer::new(second).expect("valid"))
                .service(echo()),
        ),
        tower_contender(
            "seawall_deadline",
            ServiceBuilder::new()
                .layer(seawall::timeout::DeadlineLayer::new(second).expect("valid"))
                .service(echo()),
        ),
        tower_contender(
            "seawall_deadline_and_timeout",
            ServiceBuilder::new()
                .layer(seawall::timeout::DeadlineLayer::new(second).expect("valid"))
                .layer(seawall::timeout::TimeoutLayer::new(second).expect("valid"))
                .service(echo()),
        ),
    ];
    overhead::run(&rt, GROUP, &contenders, |_| {});
}
