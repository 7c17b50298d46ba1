//! Throughput of one shared circuit breaker under contention.
//!
//! One breaker is shared by 64 tasks on a 2-worker tokio multi-thread
//! runtime. Each task owns a clone of the service (for failsafe: a clone of
//! the breaker, which shares its state, plus a clone of the inner service)
//! and loops `ready().await; call(1).await`, yielding to the scheduler every
//! 32 calls so that all 64 tasks take turns on the two workers. Every run
//! lasts a fixed time; the reported figure is total calls per second over
//! all tasks (median of the timed runs, after one warm-up run).
//!
//! Contenders: `bare` (the `tower::service_fn` alone), seawall's breaker
//! with its defaults, tower-resilience 0.13 and failsafe 1.3, the peers
//! configured as in `benches/circuit_breaker.rs`.
//!
//! Run with `cargo bench --bench contention` (about 20 s). Without `--bench`
//! on the command line (as under `cargo test --benches`) it does one very
//! short run per contender, as a smoke test.

use std::convert::Infallible;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use failsafe::futures::CircuitBreaker as _;
use seawall::circuit_breaker::CircuitBreakerLayer;
use tokio::runtime::Runtime;
use tower::{Service, ServiceExt};

/// Tasks sharing one breaker.
const TASKS: usize = 64;
/// Calls a task makes between two yields to the scheduler.
const CALLS_PER_YIELD: u64 = 32;

/// How long the runs last.
#[derive(Debug, Clone, Copy)]
struct Plan {
    warm_up: Duration,
    run: Duration,
    runs: usize,
}

/// The service every contender wraps: echoes its request, never fails.
fn echo() -> impl Service<u64, Response = u64, Error = Infallible, Future: Send> + Clone + Send + 'static
{
    tower::service_fn(|req: u64| async move { Ok::<_, Infallible>(req) })
}

/// seawall's breaker with its defaults around [`echo`].
fn seawall_service(
) -> impl Service<u64, Response = u64, Error: Debug, Future: Send> + Clone + Send + 'static {
    let layer = CircuitBreakerLayer::builder()
        .name("bench")
        .build()
        .expect("valid seawall config");
    tower::ServiceBuilder::new().layer(layer).service(echo())
}

/// tower-resilience's breaker around [`echo`]: count window of 100 calls,
/// 50 % failure rate, 20 calls minimum, 5 s open.
fn tower_resilience_service(
) -> impl Service<u64, Response = u64, Error: Debug, Future: Send> + Clone + Send + 'static {
    let layer = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .name("bench")
        .failure_rate_threshold(0.5)
        .sliding_window_size(100)
        .minimum_number_of_calls(20)
        .wait_duration_in_open(Duration::from_secs(5))
        .build()
        .expect("valid tower-resilience config");
    tower::ServiceBuilder::new().layer(layer).service(echo())
}

/// failsafe has no count window: a success rate over a 10 s time window,
/// opening below 50 % once 20 calls were seen, open a constant 5 s.
type Failsafe = failsafe::StateMachine<
    failsafe::failure_policy::SuccessRateOverTimeWindow<failsafe::backoff::Constant>,
    (),
>;

fn failsafe_breaker() -> Failsafe {
    let policy = failsafe::failure_policy::success_rate_over_time_window(
        0.5,
        20,
        Duration::from_secs(10),
        failsafe::backoff::constant(Duration::from_secs(5)),
    );
    failsafe::Config::new().failure_policy(policy).build()
}

/// Runs one timed round: `TASKS` tasks made by `make_task`, each calling
/// until told to stop. Returns calls per second over all tasks.
fn round<F, Fut>(rt: &Runtime, duration: Duration, mut make_task: F) -> f64
where
    F: FnMut(Arc<AtomicBool>) -> Fut,
    Fut: std::future::Future<Output = u64> + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<Fut> = (0..TASKS).map(|_| make_task(Arc::clone(&stop))).collect();
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

/// A task loop for a tower service.
async fn tower_task<S>(mut svc: S, stop: Arc<AtomicBool>) -> u64
where
    S: Service<u64, Response = u64, Error: Debug>,
{
    let mut calls = 0;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..CALLS_PER_YIELD {
            let rsp = svc.ready().await.expect("ready").call(1).await.expect("call");
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

/// Warm-up round, then `plan.runs` timed rounds; returns the sorted rates.
fn measure<F, Fut>(rt: &Runtime, plan: Plan, mut make_task: F) -> Vec<f64>
where
    F: FnMut(Arc<AtomicBool>) -> Fut,
    Fut: std::future::Future<Output = u64> + Send + 'static,
{
    round(rt, plan.warm_up, &mut make_task);
    let mut rates: Vec<f64> = (0..plan.runs)
        .map(|_| round(rt, plan.run, &mut make_task))
        .collect();
    rates.sort_by(f64::total_cmp);
    rates
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (e.g. `cargo test
    // --benches`) gets a quick smoke run.
    let bench_mode = std::env::args().any(|arg| arg == "--bench");
    let plan = if bench_mode {
        Plan {
            warm_up: Duration::from_millis(300),
            run: Duration::from_secs(1),
            runs: 3,
        }
    } else {
        Plan {
            warm_up: Duration::from_millis(10),
            run: Duration::from_millis(20),
            runs: 1,
        }
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");

    let mut results: Vec<(&str, Vec<f64>)> = Vec::new();

    let bare = echo();
    results.push((
        "bare",
        measure(&rt, plan, |stop| tower_task(bare.clone(), stop)),
    ));

    let seawall = seawall_service();
    results.push((
        "seawall_default",
        measure(&rt, plan, |stop| tower_task(seawall.clone(), stop)),
    ));

    let tower_resilience = tower_resilience_service();
    results.push((
        "tower_resilience",
        measure(&rt, plan, |stop| tower_task(tower_resilience.clone(), stop)),
    ));

    let failsafe = failsafe_breaker();
    let failsafe_inner = echo();
    results.push((
        "failsafe",
        measure(&rt, plan, |stop| {
            failsafe_task(failsafe.clone(), failsafe_inner.clone(), stop)
        }),
    ));

    print_table(plan, &results);
}

fn print_table(plan: Plan, results: &[(&str, Vec<f64>)]) {
    let median = |rates: &[f64]| rates[rates.len() / 2];
    let bare = results
        .iter()
        .find(|(name, _)| *name == "bare")
        .map(|(_, rates)| median(rates));
    println!();
    println!(
        "contention: {TASKS} tasks, 2 workers, one shared breaker; {} x {:?} runs after a {:?} warm-up",
        plan.runs, plan.run, plan.warm_up
    );
    println!("| contender            | Mcalls/s (median) |   min  |   max  | vs bare |");
    println!("|----------------------|-------------------|--------|--------|---------|");
    for (name, rates) in results {
        let med = median(rates);
        let vs_bare = bare.map_or(f64::NAN, |b| med / b);
        println!(
            "| {name:<20} | {:>17.2} | {:>6.2} | {:>6.2} | {:>6.1}% |",
            med / 1e6,
            rates[0] / 1e6,
            rates[rates.len() - 1] / 1e6,
            vs_bare * 100.0
        );
    }
    println!("csv: contender,mcalls_per_s_median,min,max");
    for (name, rates) in results {
        println!(
            "csv: {name},{:.3},{:.3},{:.3}",
            median(rates) / 1e6,
            rates[0] / 1e6,
            rates[rates.len() - 1] / 1e6
        );
    }
}
