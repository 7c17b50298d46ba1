//! The harness the contention benches share (`benches/contention.rs`,
//! `benches/bulkhead_contention.rs`, and the shared half of
//! `benches/peers.rs`): `TASKS` tasks on a `WORKERS`-thread tokio runtime,
//! each looping `ready().await; call(1).await` on its own service and
//! yielding to the scheduler every `CALLS_PER_YIELD` calls.
//!
//! [`run`] does one warm-up round per contender, then interleaved timed
//! rounds (every contender in turn, round by round, so that a change in where
//! the host places the vCPUs hits all of them alike), and prints the median,
//! minimum and maximum calls per second of each, as a table and as CSV.
//! [`measure`] is the same without the table, for a bench that prints its own
//! (`benches/peers.rs`).

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

/// Tasks sharing one contender.
pub(crate) const TASKS: usize = 64;
/// Worker threads of the runtime.
pub(crate) const WORKERS: usize = 2;
/// Calls a task makes between two yields to the scheduler.
pub(crate) const CALLS_PER_YIELD: u64 = 32;

/// How long the rounds last.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    warm_up: Duration,
    round: Duration,
    rounds: usize,
}

impl Plan {
    /// The plan for this run: `cargo bench` passes `--bench` and gets the
    /// full rounds; anything else (e.g. `cargo test --benches`) gets one very
    /// short round per contender, as a smoke test.
    pub(crate) fn from_args() -> Self {
        if std::env::args().any(|arg| arg == "--bench") {
            Self {
                warm_up: Duration::from_millis(300),
                round: Duration::from_millis(600),
                rounds: 7,
            }
        } else {
            Self {
                warm_up: Duration::from_millis(10),
                round: Duration::from_millis(20),
                rounds: 1,
            }
        }
    }

    /// `"{rounds} interleaved rounds of {round} per contender after a {warm_up} warm-up"`.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} interleaved rounds of {:?} per contender after a {:?} warm-up",
            self.rounds, self.round, self.warm_up
        )
    }
}

/// One task's loop, boxed so that contenders of different types can take
/// turns (one box per task per round, outside the calling loop).
pub(crate) type TaskFuture = Pin<Box<dyn Future<Output = u64> + Send>>;

/// A named contender: makes the task loops of one round.
pub(crate) struct Contender {
    pub(crate) name: &'static str,
    pub(crate) make_task: Box<dyn FnMut(Arc<AtomicBool>) -> TaskFuture>,
}

/// A task loop for a tower service.
pub(crate) async fn tower_task<S>(mut svc: S, stop: Arc<AtomicBool>) -> u64
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
pub(crate) fn tower_contender<S>(name: &'static str, svc: S) -> Contender
where
    S: Service<u64, Response = u64, Error: Debug, Future: Send> + Clone + Send + 'static,
{
    Contender {
        name,
        make_task: Box::new(move |stop| Box::pin(tower_task(svc.clone(), stop))),
    }
}

/// Runs one timed round: `TASKS` tasks made by `contender`, each calling
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

/// The multi-thread runtime the tasks run on: `WORKERS` workers, time and I/O enabled.
pub(crate) fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs `contenders` on `rt` by `plan`: one warm-up round each, then `plan`'s rounds,
/// interleaved (every contender in turn, round by round). Returns each contender's
/// calls per second, one per round, sorted in increasing order (in the order of
/// `contenders`).
pub(crate) fn measure(rt: &Runtime, plan: Plan, contenders: &mut [Contender]) -> Vec<Vec<f64>> {
    for contender in contenders.iter_mut() {
        round(rt, plan.warm_up, contender);
    }
    let mut rates = vec![Vec::with_capacity(plan.rounds); contenders.len()];
    for _ in 0..plan.rounds {
        for (contender, rates) in contenders.iter_mut().zip(&mut rates) {
            rates.push(round(rt, plan.round, contender));
        }
    }
    for rates in &mut rates {
        rates.sort_by(f64::total_cmp);
    }
    rates
}

/// Runs `contenders` by `plan` and prints their table, headed
/// `"{bench}: … one shared {shared}; …"`. The contenders are built by the
/// caller, outside the timed rounds.
pub(crate) fn run(plan: Plan, bench: &str, shared: &str, mut contenders: Vec<Contender>) {
    let rt = runtime();
    let rates = measure(&rt, plan, &mut contenders);
    let names: Vec<&str> = contenders.iter().map(|c| c.name).collect();
    print_table(plan, bench, shared, &names, &rates);
}

/// Prints the sorted `rates` of each contender in `names`; the name column
/// is 20 wide, or as wide as the longest name.
fn print_table(plan: Plan, bench: &str, shared: &str, names: &[&str], rates: &[Vec<f64>]) {
    let median = |rates: &[f64]| rates[rates.len() / 2];
    let bare = names
        .iter()
        .position(|name| *name == "bare")
        .map(|i| median(&rates[i]));
    let width = names.iter().map(|name| name.len()).fold(20, usize::max);
    println!();
    println!(
        "{bench}: {TASKS} tasks, {WORKERS} workers, one shared {shared}; {}",
        plan.describe()
    );
    println!(
        "| {:<width$} | Mcalls/s (median) |    min |    max | vs bare |",
        "contender"
    );
    println!(
        "|{}|-------------------|--------|--------|---------|",
        "-".repeat(width + 2)
    );
    for (name, rates) in names.iter().zip(rates) {
        let med = median(rates);
        let vs_bare = bare.map_or(f64::NAN, |b| med / b * 100.0);
        println!(
            "| {name:<width$} | {:>17.2} | {:>6.2} | {:>6.2} | {vs_bare:>6.1}% |",
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
