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

use std::time::{Duration, SystemTime};

use criterion::Criterion;
use tower::ServiceBuilder;

#[path = "support/overhead.rs"]
mod overhead;
#[allow(dead_code)]
#[path = "support/peers.rs"]
mod peers;

use overhead::{bench_tower, print_alloc_table, print_time_table, tower_allocs};
use peers::echo;

const GROUP: &str = "timeout_overhead";

fn main() {
    let started = SystemTime::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let second = Duration::from_secs(1);

    let bare = echo();
    let tower_timeout = ServiceBuilder::new()
        .layer(tower::timeout::TimeoutLayer::new(second))
        .service(echo());
    let seawall_timeout = ServiceBuilder::new()
        .layer(seawall::timeout::TimeoutLayer::new(second).expect("valid"))
        .service(echo());
    let seawall_deadline = ServiceBuilder::new()
        .layer(seawall::timeout::DeadlineLayer::new(second).expect("valid"))
        .service(echo());
    let seawall_both = ServiceBuilder::new()
        .layer(seawall::timeout::DeadlineLayer::new(second).expect("valid"))
        .layer(seawall::timeout::TimeoutLayer::new(second).expect("valid"))
        .service(echo());

    let names = [
        "bare",
        "tower_timeout",
        "seawall_timeout",
        "seawall_deadline",
        "seawall_deadline_and_timeout",
    ];
    let allocs = [
        (names[0], tower_allocs(&rt, &bare)),
        (names[1], tower_allocs(&rt, &tower_timeout)),
        (names[2], tower_allocs(&rt, &seawall_timeout)),
        (names[3], tower_allocs(&rt, &seawall_deadline)),
        (names[4], tower_allocs(&rt, &seawall_both)),
    ];
    print_alloc_table(&allocs);

    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    {
        let mut group = criterion.benchmark_group(GROUP);
        bench_tower(&mut group, &rt, names[0], &bare);
        bench_tower(&mut group, &rt, names[1], &tower_timeout);
        bench_tower(&mut group, &rt, names[2], &seawall_timeout);
        bench_tower(&mut group, &rt, names[3], &seawall_deadline);
        bench_tower(&mut group, &rt, names[4], &seawall_both);
        group.finish();
    }
    criterion.final_summary();

    print_alloc_table(&allocs);
    if std::env::args().any(|arg| arg == "--bench") {
        print_time_table(GROUP, &names, &allocs, started);
    }
}
