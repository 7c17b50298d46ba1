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

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

// Shared with the breaker benches, whose contenders go unused here.
#[allow(dead_code)]
#[path = "support/peers.rs"]
mod peers;

use peers::{
    echo, seawall_bulkhead_service, tower_concurrency_limit_service,
    tower_global_concurrency_limit_layer, tower_resilience_bulkhead_service,
};

/// Tasks sharing one limiter.
const TASKS: usize = 64;
/// Worker threads of the runtime.
const WORKERS: usize = 2;
/// Calls a task makes between two yields to the scheduler.
const CALLS_PER_YIELD: u64 = 32;

/// How long the rounds last.
#[derive(Debug, Clone, Copy)]
struct Plan {
    warm_up: Duration,
    round: Duration,
    rounds: usize,
}

/// One task's loop, boxed so that contenders of different types can take
/// turns (one box per task per round, outside the calling loop).
type TaskFuture = Pin<Box<dyn Future<Output = u64> + Send>>;

/// A named contender: makes the task loops of one round.
struct Contender {
    name: &'static str,
    make_task: Box<dyn FnMut(Arc<AtomicBool>) -> TaskFuture>,
}

/// A task loop for a tower service.
async fn tower_task<S>(mut svc: S, stop: Arc<AtomicBool>) -> u64
where
    S: Service<u64, Response = u64, Error: Debug>,
{
    let mut calls = 0;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..CALLS_PER_YIELD {
            let rsp = svc
                .ready()
                .await
                .expect("ready")
                .call(1)
                .await
                .expect("call");
            std::hint::black_box(rsp);
        }
        calls += CALLS_PER_YIELD;
        tokio::task::yield_now().await;
    }
    calls
}

/// A contender whose tasks each drive their own clone of `svc`.
fn tower_contender<S>(name: &'static str, svc: S) -> Contender
where
    S: Service<u64, Response = u64, Error: Debug, Future: Send> + Clone + Send + 'static,
{
    Contender {
        name,
        make_task: Box::new(move |stop| Box::pin(tower_task(svc.clone(), stop))),
    }
}

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

/// Runs one timed round: `TASKS` tasks made by `make_task`, each calling
/// until told to stop. Returns calls per second over all tasks.
fn round(rt: &Runtime, duration: Duration, contender: &mut Contender) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<TaskFuture> = (0..TASKS)
        .map(|_| (contender.make_task)(Arc::clone(&stop)))
        .collect();
    rt.block_on(async move {
        let start = Instant::now();
        let handles: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
        tokio::time::sleep(duration).await;
        stop.store(true, Ordering::Relaxed);
        let mut calls = 0;
        for handle in handles {
            calls += handle.await.expect("bench task panicked");
        }
        calls as f64 / start.elapsed().as_secs_f64()
    })
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (e.g. `cargo test
    // --benches`) gets a quick smoke run.
    let bench_mode = std::env::args().any(|arg| arg == "--bench");
    let plan = if bench_mode {
        Plan {
            warm_up: Duration::from_millis(300),
            round: Duration::from_millis(600),
            rounds: 7,
        }
    } else {
        Plan {
            warm_up: Duration::from_millis(10),
            round: Duration::from_millis(20),
            rounds: 1,
        }
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .expect("tokio runtime");

    // Everything is built here, outside the timed rounds.
    let mut contenders = vec![
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

    for contender in &mut contenders {
        round(&rt, plan.warm_up, contender);
    }
    let mut rates = vec![Vec::with_capacity(plan.rounds); contenders.len()];
    for _ in 0..plan.rounds {
        for (contender, rates) in contenders.iter_mut().zip(&mut rates) {
            rates.push(round(&rt, plan.round, contender));
        }
    }
    for rates in &mut rates {
        rates.sort_by(f64::total_cmp);
    }

    let names: Vec<&str> = contenders.iter().map(|c| c.name).collect();
    print_table(plan, &names, &rates);
}

fn print_table(plan: Plan, names: &[&str], rates: &[Vec<f64>]) {
    let median = |rates: &[f64]| rates[rates.len() / 2];
    let bare = names
        .iter()
        .position(|name| *name == "bare")
        .map(|i| median(&rates[i]));
    println!();
    println!(
        "bulkhead contention: {TASKS} tasks, {WORKERS} workers, one shared limiter; \
         {} interleaved rounds of {:?} per contender after a {:?} warm-up",
        plan.rounds, plan.round, plan.warm_up
    );
    println!("| contender                      | Mcalls/s (median) |    min |    max | vs bare |");
    println!("|--------------------------------|-------------------|--------|--------|---------|");
    for (name, rates) in names.iter().zip(rates) {
        let med = median(rates);
        let vs_bare = bare.map_or(f64::NAN, |b| med / b * 100.0);
        println!(
            "| {name:<30} | {:>17.2} | {:>6.2} | {:>6.2} | {vs_bare:>6.1}% |",
            med / 1e6,
            rates[0] / 1e6,
            rates[rates.len() - 1] / 1e6,
        );
    }
    println!("csv: contender,mcalls_per_s_median,min,max");
    for (name, rates) in names.iter().zip(rates) {
        println!(
            "csv: {name},{:.3},{:.3},{:.3}",
            median(rates) / 1e6,
            rates[0] / 1e6,
            rates[rates.len() - 1] / 1e6
        );
    }
}
