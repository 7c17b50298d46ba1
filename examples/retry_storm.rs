//! A retry storm, simulated: what naive retries and a retry budget do to a downstream
//! that is down, or overloaded.
//!
//! Deterministic: tokio's clock is paused (it jumps to the next timer whenever every task
//! is idle), so 20 simulated seconds take a fraction of a real one, and every run prints
//! the same numbers.
//!
//! * Clients send an open loop of `REQUEST_RATE` requests per second (one every 1 ms) for
//!   `DURATION`, whatever happens to earlier ones. Each request goes through the policy
//!   under test, then to the downstream.
//! * The downstream answers after `LATENCY`. It serves at most `CAPACITY` calls per second
//!   (a token bucket with a burst of `BURST`); a call over capacity fails at once.
//! * Scenarios: (a) a full outage: every call fails; (b) an overload: the offered load is
//!   1.5 times the capacity (before any retry).
//! * Policies: no retry; a naive retry (seawall's `RetryLayer` with `without_budget()`:
//!   3 attempts, a constant 10 ms between them); seawall's budgeted retry (its defaults:
//!   3 attempts, a budget of 20 % of requests plus 10 retries/s over 10 s, exponential
//!   backoff with full jitter from 25 ms to 250 ms, seeded here to be reproducible).
//!
//! With the budget, retries over any 10 s window are at most 20 % of the requests plus
//! 10/s × 10 s, so the load amplification (attempts reaching the downstream / requests)
//! is at most `1 + 0.2 + 10/s ÷ request rate` = 1.21 at 1 000 requests/s.
//!
//! Run with `cargo run --release --example retry_storm`.

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use seawall::retry::backoff::{ConstantBackoff, ExponentialBackoff};
use seawall::retry::RetryLayer;
use tokio::time::{Instant, MissedTickBehavior};
use tower::{Layer, Service, ServiceExt};

/// Requests per second the clients send (one every 1 ms).
const REQUEST_RATE: u32 = 1_000;
/// How long the clients send.
const DURATION: Duration = Duration::from_secs(20);
/// The downstream's answer time.
const LATENCY: Duration = Duration::from_millis(5);
/// The overloaded downstream's capacity: calls per second (offered load ÷ 1.5).
const CAPACITY: f64 = REQUEST_RATE as f64 / 1.5;
/// The most calls the downstream serves at once after an idle spell.
const BURST: f64 = 10.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// Every call fails.
    Outage,
    /// The downstream serves `CAPACITY` calls per second, fails the others at once.
    Overload,
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scenario::Outage => "(a) full outage",
            Scenario::Overload => "(b) overload 1.5x",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    NoRetry,
    Naive,
    Budgeted,
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Policy::NoRetry => "no retry",
            Policy::Naive => "naive 3 attempts (no budget)",
            Policy::Budgeted => "seawall budgeted (20% + 10/s)",
        })
    }
}

/// The downstream's error.
#[derive(Debug)]
enum DownstreamError {
    Down,
    OverCapacity,
}

impl fmt::Display for DownstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DownstreamError::Down => "downstream is down",
            DownstreamError::OverCapacity => "downstream is over capacity",
        })
    }
}

impl std::error::Error for DownstreamError {}

/// The downstream's state (single-threaded: the runtime is `current_thread`).
struct Downstream {
    scenario: Scenario,
    /// Calls that reached the downstream (every attempt).
    attempts: Cell<u64>,
    /// Its token bucket: tokens, and when they were counted.
    tokens: Cell<f64>,
    refilled: Cell<Instant>,
}

impl Downstream {
    fn new(scenario: Scenario) -> Rc<Self> {
        Rc::new(Self {
            scenario,
            attempts: Cell::new(0),
            tokens: Cell::new(BURST),
            refilled: Cell::new(Instant::now()),
        })
    }

    /// Takes a token if the downstream has capacity for one more call now.
    fn admit(&self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled.get()).as_secs_f64();
        let tokens = (self.tokens.get() + elapsed * CAPACITY).min(BURST);
        self.refilled.set(now);
        let admitted = tokens >= 1.0;
        self.tokens
            .set(if admitted { tokens - 1.0 } else { tokens });
        admitted
    }

    fn service(
        self: &Rc<Self>,
    ) -> impl Service<u64, Response = u64, Error = DownstreamError> + Clone + use<> {
        let this = self.clone();
        tower::service_fn(move |request: u64| {
            this.attempts.set(this.attempts.get() + 1);
            let verdict = match this.scenario {
                Scenario::Outage => Err(DownstreamError::Down),
                Scenario::Overload if this.admit() => Ok(request),
                Scenario::Overload => Err(DownstreamError::OverCapacity),
            };
            async move {
                match verdict {
                    // Over capacity: fails fast.
                    Err(DownstreamError::OverCapacity) => verdict,
                    _ => {
                        tokio::time::sleep(LATENCY).await;
                        verdict
                    }
                }
            }
        })
    }
}

/// What one run measured.
struct Outcome {
    requests: u64,
    attempts: u64,
    succeeded: u64,
}

/// Sends the open loop of requests through `client` and waits for every answer.
async fn drive<S>(client: S, downstream: &Downstream) -> Outcome
where
    S: Service<u64, Response = u64> + Clone + 'static,
    S::Error: fmt::Debug,
{
    let succeeded = Rc::new(Cell::new(0u64));
    let total = u64::from(REQUEST_RATE) * DURATION.as_secs();
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / REQUEST_RATE);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    for request in 0..total {
        ticks.tick().await;
        let client = client.clone();
        let succeeded = succeeded.clone();
        tasks.spawn_local(async move {
            if client.oneshot(request).await.is_ok() {
                succeeded.set(succeeded.get() + 1);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a client task panicked");
    }
    Outcome {
        requests: total,
        attempts: downstream.attempts.get(),
        succeeded: succeeded.get(),
    }
}

/// One scenario under one policy, on a fresh downstream and a fresh budget.
async fn run(scenario: Scenario, policy: Policy) -> Outcome {
    let downstream = Downstream::new(scenario);
    let inner = downstream.service();
    match policy {
        Policy::NoRetry => drive(inner, &downstream).await,
        Policy::Naive => {
            let layer = RetryLayer::builder()
                .max_attempts(3)
                .without_budget()
                .backoff(ConstantBackoff::new(Duration::from_millis(10)))
                .build()
                .expect("valid retry config");
            drive(layer.layer(inner), &downstream).await
        }
        Policy::Budgeted => {
            let backoff = ExponentialBackoff::builder()
                .seed(7)
                .build()
                .expect("valid backoff");
            let layer = RetryLayer::builder()
                .backoff(backoff)
                .build()
                .expect("valid retry config");
            drive(layer.layer(inner), &downstream).await
        }
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("tokio runtime");
    let local = tokio::task::LocalSet::new();

    println!(
        "{REQUEST_RATE} requests/s for {DURATION:?} (simulated), downstream latency \
         {LATENCY:?}; overload: capacity {CAPACITY:.0} calls/s (burst {BURST}), calls over \
         it fail fast"
    );
    println!(
        "budget bound on amplification: 1 + 0.2 + (10/s ÷ {REQUEST_RATE}/s) = {:.3}",
        1.0 + 0.2 + 10.0 / f64::from(REQUEST_RATE)
    );
    println!();
    println!(
        "| scenario          | policy                        | requests | attempts at downstream | amplification | succeeded | success rate |"
    );
    println!(
        "|-------------------|-------------------------------|---------:|-----------------------:|--------------:|----------:|-------------:|"
    );
    for scenario in [Scenario::Outage, Scenario::Overload] {
        for policy in [Policy::NoRetry, Policy::Naive, Policy::Budgeted] {
            let outcome = local.block_on(&rt, run(scenario, policy));
            println!(
                "| {:<17} | {:<29} | {:>8} | {:>22} | {:>12.3}x | {:>9} | {:>11.1}% |",
                scenario.to_string(),
                policy.to_string(),
                outcome.requests,
                outcome.attempts,
                outcome.attempts as f64 / outcome.requests as f64,
                outcome.succeeded,
                100.0 * outcome.succeeded as f64 / outcome.requests as f64,
            );
        }
    }
}
