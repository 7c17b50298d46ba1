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

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use failsafe::futures::CircuitBreaker as _;
use seawall::circuit_breaker::CircuitBreakerLayer;
use tokio::runtime::Runtime;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

#[path = "support/peers.rs"]
mod peers;

use peers::{echo, failsafe_breaker, seawall_service, tower_resilience_service, Failsafe};

/// Tasks sharing one breaker.
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
    let failsafe = failsafe_breaker();
    let failsafe_inner = echo();
    let mut contenders = vec![
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
        "contention: {TASKS} tasks, {WORKERS} workers, one shared breaker; \
         {} interleaved rounds of {:?} per contender after a {:?} warm-up",
        plan.rounds, plan.round, plan.warm_up
    );
    println!("| contender            | Mcalls/s (median) |    min |    max | vs bare |");
    println!("|----------------------|-------------------|--------|--------|---------|");
    for (name, rates) in names.iter().zip(rates) {
        let med = median(rates);
        let vs_bare = bare.map_or(f64::NAN, |b| med / b * 100.0);
        println!(
            "| {name:<20} | {:>17.2} | {:>6.2} | {:>6.2} | {vs_bare:>6.1}% |",
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
