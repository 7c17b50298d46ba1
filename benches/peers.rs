//! seawall against its peers, layer by layer and for the full stack, in one run: tower's
//! built-in middleware where tower has one, and tower-resilience 0.13.
//!
//! For every contender the bench measures, in this order:
//!
//! 1. **allocations per call**, single-threaded: calls counted by the counting global
//!    allocator (`benches/support/alloc_counter.rs`) over 100 000 calls, after 1 000
//!    warm-up calls;
//! 2. **time per call**, single-threaded, on a `current_thread` runtime: a loop of
//!    `ready().await; call(1).await` on one clone of the service, timed in rounds of
//!    100 ms (after a 200 ms warm-up round each). The contenders take turns, round by
//!    round, 11 rounds each, so that a burst of load from elsewhere on the machine hits
//!    them all alike; the table gives the median round (and the fastest and slowest),
//!    and the overhead is the median minus the median of `bare`;
//! 3. **calls per second shared**: 64 tasks on a 2-worker multi-thread runtime, all
//!    calling clones of ONE instance of the contender (so all share its state: the
//!    breaker's window, the bulkhead's permits, the retry budget), each task yielding to
//!    the scheduler every 32 calls; 7 interleaved rounds of 600 ms after a 300 ms warm-up
//!    round each (`benches/support/contention.rs`, as `benches/contention.rs` and
//!    `benches/bulkhead_contention.rs`).
//!
//! Every contender wraps the same `tower::service_fn` echo service, which always succeeds
//! at once, so this is the success path: the cost of being there. Nothing is built inside
//! the timed loops. Each phase builds its own instance of each contender (the shared phase
//! inside the multi-thread runtime).
//!
//! Contenders, configured as in the per-layer benches (see `benches/support/peers.rs`):
//!
//! * `bare` — the echo service alone (the baseline of every layer);
//! * **breaker** — seawall's `CircuitBreakerLayer` with its defaults (count window of 100
//!   calls, 50 % failure rate, 20 calls minimum, 5 s open); tower has none (n/a);
//!   tower-resilience's `CircuitBreakerLayer` with the same numbers (as
//!   `benches/circuit_breaker.rs`);
//! * **bulkhead** — seawall's `BulkheadLayer` (fail-fast), tower's `ConcurrencyLimitLayer`
//!   (its clones share one semaphore; it has no fail-fast mode) and tower-resilience's
//!   `BulkheadLayer` (`reject_when_full`), every limit 1 000, above the calls ever in
//!   flight, so nothing is rejected or waits (as `benches/bulkhead.rs`);
//! * **retry** — seawall's `RetryLayer` with its defaults (3 attempts, a budget of 20 %
//!   plus 10 retries/s over 10 s), tower's `Retry` with a `TpsBudget` of the same numbers
//!   (a deposit per success, as tower's docs do it; 3 attempts), tower-resilience's retry
//!   (3 attempts, its token-bucket budget with that bucket's defaults, 10 tokens/s and a
//!   burst of 100: it has no ratio budget) (as `benches/retry.rs`);
//! * **timeout** — seawall's per-attempt `TimeoutLayer` (1 s) and tower's `Timeout` (1 s)
//!   (as `benches/timeout.rs`); tower-resilience's time limiter is behind its
//!   `timelimiter` feature, which the dev-dependency does not enable (n/a);
//! * **deadline** — seawall's `DeadlineLayer` (1 s: one clock read, the deadline made
//!   current for the layers below) against tower's `Timeout` (1 s) again, the one timeout
//!   tower has (a second instance, measured again: a check on the noise); n/a for
//!   tower-resilience as above;
//! * **stack** — seawall's `Policy` with its defaults, hedging off (15 s deadline, retry
//!   with its budget, breaker, bulkhead of 25, 5 s attempt timeout); tower's built-ins
//!   composed the same way as far as tower has them: `Timeout` (15 s) ∘ `Retry`
//!   (`TpsBudget`, 3 attempts) ∘ `ConcurrencyLimit` (25) ∘ `Timeout` (5 s), with no
//!   breaker; tower-resilience's stack as in `benches/policy.rs`: tower `Timeout` (15 s)
//!   ∘ its retry ∘ its breaker ∘ its bulkhead (25, `reject_when_full`) ∘ tower `Timeout`
//!   (5 s).
//!
//! Features: `Cargo.toml` requires only `policy`, so the plain command builds seawall
//! with its default features, as the per-layer benches do. With `--features full`, the
//! build also has seawall's `metrics` and `tracing`: with `metrics` compiled in, every
//! seawall layer counts every call (even with no recorder installed) and the breaker
//! leaves its fast path for its tracked path (an `Arc` clone and a shared `fetch_add` per
//! call), while tower-resilience stays built without its own `metrics`. The bench prints
//! which it was built with.
//!
//! The output: a detailed table (one row per contender, with the ranges), the summary
//! (layer × contender: ns over bare / allocations per call / Mcalls/s shared), the ratios
//! of seawall to each peer, and all of it as CSV (lines starting `csv: `), then the
//! machine's load averages at the start and at the end.
//!
//! Run with `cargo bench --bench peers` (about 95 s once built, most of it the shared
//! phase). Words after `--` keep only `bare` and the contenders whose layer or label
//! contains one of them: `cargo bench --bench peers -- retry stack`. Without `--bench` on
//! the command line (as under `cargo test --benches`) every phase is cut to a very short
//! round per contender, as a smoke test.

use std::fmt::Debug;
use std::hint::black_box;
use std::time::Duration;

use seawall::circuit_breaker::CircuitBreakerLayer;
use seawall::retry::RetryLayer;
use tokio::runtime::Runtime;
use tokio::time::Instant;
use tower::Service;

// Shared with the other benches; not all of each module is used here.
#[allow(dead_code)]
#[path = "support/contention.rs"]
mod contention_harness;
#[allow(dead_code)]
#[path = "support/overhead.rs"]
mod overhead;
#[allow(dead_code)]
#[path = "support/peers.rs"]
mod peers;

use peers::{
    echo, seawall_bulkhead_service, seawall_deadline_service, seawall_policy_service,
    seawall_retry_service, seawall_service, seawall_timeout_service,
    tower_concurrency_limit_service, tower_resilience_bulkhead_service,
    tower_resilience_retry_service, tower_resilience_service, tower_resilience_stack_service,
    tower_retry_service, tower_stack_service, tower_timeout_service,
};

/// The peers, one column each in the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Seawall,
    Tower,
    TowerResilience,
}

impl Peer {
    const ALL: [Peer; 3] = [Peer::Seawall, Peer::Tower, Peer::TowerResilience];

    fn label(self) -> &'static str {
        match self {
            Peer::Seawall => "seawall",
            Peer::Tower => "tower",
            Peer::TowerResilience => "tower-resilience 0.13",
        }
    }
}

/// The layers, one row each in the summary, in order.
const LAYERS: [&str; 6] = [
    "breaker", "bulkhead", "retry", "timeout", "deadline", "stack",
];

/// How long the single-threaded rounds last, and how many calls are counted for
/// allocations.
#[derive(Debug, Clone, Copy)]
struct SoloPlan {
    warm_up: Duration,
    round: Duration,
    rounds: usize,
    alloc_calls: u64,
}

impl SoloPlan {
    /// As `contention_harness::Plan::from_args`: the full plan under `cargo bench`
    /// (`--bench` on the command line), one very short round otherwise.
    fn from_args() -> Self {
        if std::env::args().any(|arg| arg == "--bench") {
            Self {
                warm_up: Duration::from_millis(200),
                round: Duration::from_millis(100),
                rounds: 11,
                alloc_calls: overhead::ALLOC_SAMPLE_CALLS,
            }
        } else {
            Self {
                warm_up: Duration::from_millis(1),
                round: Duration::from_millis(2),
                rounds: 1,
                alloc_calls: 1_000,
            }
        }
    }
}

/// Calls made between two reads of the clock in a timed round.
const CHUNK: u64 = 1_024;

/// Calls a clone of `svc` one at a time for at least `at_least`; returns ns per call.
fn time_round<S>(rt: &Runtime, svc: &S, at_least: Duration) -> f64
where
    S: Service<u64, Response = u64, Error: Debug> + Clone,
{
    let mut svc = svc.clone();
    rt.block_on(async move {
        let mut calls = 0u64;
        let start = Instant::now();
        loop {
            for _ in 0..CHUNK {
                black_box(overhead::tower_call(&mut svc, black_box(1)).await);
            }
            calls += CHUNK;
            let elapsed = start.elapsed();
            if elapsed >= at_least {
                return elapsed.as_nanos() as f64 / calls as f64;
            }
        }
    })
}

/// One contender: where it goes in the summary, and its single-threaded instance, behind
/// `time` and `allocs`. (Its shared instance is a `contention_harness::Contender`.)
struct Entry {
    layer: &'static str,
    peer: Option<Peer>,
    /// How the detailed table names it.
    label: &'static str,
    time: TimeRound,
    allocs: CountAllocs,
}

/// Times one round of at least the given duration on the runtime; returns ns per call.
type TimeRound = Box<dyn Fn(&Runtime, Duration) -> f64>;
/// Counts allocations over the given number of calls on the runtime; returns them per call.
type CountAllocs = Box<dyn Fn(&Runtime, u64) -> f64>;

/// Builds a contender from `make`, called twice: once inside `solo`'s context for the
/// single-threaded phases and once inside `shared`'s for the shared one (seawall's retry
/// budget reads tokio's clock when it is built).
fn entry<S>(
    layer: &'static str,
    peer: Option<Peer>,
    label: &'static str,
    runtimes: (&Runtime, &Runtime),
    make: impl Fn() -> S,
) -> (Entry, contention_harness::Contender)
where
    S: Service<u64, Response = u64, Error: Debug, Future: Send> + Clone + Send + 'static,
{
    let (solo, shared) = runtimes;
    let one = {
        let _guard = solo.enter();
        make()
    };
    let all = {
        let _guard = shared.enter();
        make()
    };
    let counted = one.clone();
    let entry = Entry {
        layer,
        peer,
        label,
        time: Box::new(move |rt, at_least| time_round(rt, &one, at_least)),
        allocs: Box::new(move |rt, calls| overhead::tower_allocs_over(rt, &counted, calls)),
    };
    (entry, contention_harness::tower_contender(label, all))
}

/// Why a cell of the summary is empty.
const MISSING: [(&str, Peer, &str); 3] = [
    ("breaker", Peer::Tower, "tower has no circuit breaker"),
    (
        "timeout",
        Peer::TowerResilience,
        "its time limiter needs the `timelimiter` feature, not enabled",
    ),
    (
        "deadline",
        Peer::TowerResilience,
        "its time limiter needs the `timelimiter` feature, not enabled",
    ),
];

/// What was measured for one contender: ns per call and calls per second, each sorted.
struct Measured {
    ns: Vec<f64>,
    rates: Vec<f64>,
    allocs: f64,
}

/// The machine's load averages over 1, 5 and 15 minutes, where Linux tells them.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

fn median(sorted: &[f64]) -> f64 {
    sorted[sorted.len() / 2]
}

fn main() {
    let solo_plan = SoloPlan::from_args();
    let shared_plan = contention_harness::Plan::from_args();
    let solo_rt = overhead::runtime();
    let shared_rt = contention_harness::runtime();
    let rts = (&solo_rt, &shared_rt);

    // Everything is built here, outside the timed loops.
    let (entries, mut shared): (Vec<Entry>, Vec<contention_harness::Contender>) = [
        entry("bare", None, "bare", rts, echo),
        entry(
            "breaker",
            Some(Peer::Seawall),
            "breaker: seawall CircuitBreakerLayer",
            rts,
            || seawall_service(CircuitBreakerLayer::builder()),
        ),
        entry(
            "breaker",
            Some(Peer::TowerResilience),
            "breaker: tower-resilience CircuitBreakerLayer",
            rts,
            tower_resilience_service,
        ),
        entry(
            "bulkhead",
            Some(Peer::Seawall),
            "bulkhead: seawall BulkheadLayer",
            rts,
            seawall_bulkhead_service,
        ),
        entry(
            "bulkhead",
            Some(Peer::Tower),
            "bulkhead: tower ConcurrencyLimit",
            rts,
            tower_concurrency_limit_service,
        ),
        entry(
            "bulkhead",
            Some(Peer::TowerResilience),
            "bulkhead: tower-resilience BulkheadLayer",
            rts,
            tower_resilience_bulkhead_service,
        ),
        entry(
            "retry",
            Some(Peer::Seawall),
            "retry: seawall RetryLayer (budget)",
            rts,
            || seawall_retry_service(RetryLayer::builder()),
        ),
        entry(
            "retry",
            Some(Peer::Tower),
            "retry: tower Retry + TpsBudget",
            rts,
            tower_retry_service,
        ),
        entry(
            "retry",
            Some(Peer::TowerResilience),
            "retry: tower-resilience RetryLayer",
            rts,
            tower_resilience_retry_service,
        ),
        entry(
            "timeout",
            Some(Peer::Seawall),
            "timeout: seawall TimeoutLayer",
            rts,
            seawall_timeout_service,
        ),
        entry(
            "timeout",
            Some(Peer::Tower),
            "timeout: tower Timeout",
            rts,
            tower_timeout_service,
        ),
        entry(
            "deadline",
            Some(Peer::Seawall),
            "deadline: seawall DeadlineLayer",
            rts,
            seawall_deadline_service,
        ),
        entry(
            "deadline",
            Some(Peer::Tower),
            "deadline: tower Timeout (again)",
            rts,
            tower_timeout_service,
        ),
        entry(
            "stack",
            Some(Peer::Seawall),
            "stack: seawall Policy",
            rts,
            seawall_policy_service,
        ),
        entry(
            "stack",
            Some(Peer::Tower),
            "stack: tower Timeout/Retry/ConcurrencyLimit/Timeout",
            rts,
            tower_stack_service,
        ),
        entry(
            "stack",
            Some(Peer::TowerResilience),
            "stack: tower-resilience (+ tower Timeout)",
            rts,
            tower_resilience_stack_service,
        ),
    ]
    .into_iter()
    // Command-line filters (`cargo bench --bench peers -- retry stack`): keep `bare` and
    // the contenders whose layer or label contains one of them.
    .filter(|(e, _)| {
        let filters: Vec<String> = std::env::args()
            .skip(1)
            .filter(|arg| !arg.starts_with("--"))
            .collect();
        e.peer.is_none()
            || filters.is_empty()
            || filters
                .iter()
                .any(|f| e.layer.contains(f.as_str()) || e.label.contains(f.as_str()))
    })
    .unzip();

    let started = Instant::now();
    let load_at_start = loadavg();
    eprintln!(
        "peers: counting allocations ({} calls each)",
        solo_plan.alloc_calls
    );
    let allocs: Vec<f64> = entries
        .iter()
        .map(|e| (e.allocs)(&solo_rt, solo_plan.alloc_calls))
        .collect();

    eprintln!(
        "peers: single thread, {} interleaved rounds of {:?} after a {:?} warm-up",
        solo_plan.rounds, solo_plan.round, solo_plan.warm_up
    );
    for e in &entries {
        (e.time)(&solo_rt, solo_plan.warm_up);
    }
    let mut ns = vec![Vec::with_capacity(solo_plan.rounds); entries.len()];
    for _ in 0..solo_plan.rounds {
        for (e, ns) in entries.iter().zip(&mut ns) {
            ns.push((e.time)(&solo_rt, solo_plan.round));
        }
    }
    for ns in &mut ns {
        ns.sort_by(f64::total_cmp);
    }

    eprintln!(
        "peers: shared, {} tasks on {} workers, {}",
        contention_harness::TASKS,
        contention_harness::WORKERS,
        shared_plan.describe()
    );
    let rates = contention_harness::measure(&shared_rt, shared_plan, &mut shared);
    drop(shared);

    let measured: Vec<Measured> = ns
        .into_iter()
        .zip(rates)
        .zip(allocs)
        .map(|((ns, rates), allocs)| Measured { ns, rates, allocs })
        .collect();
    print_results(&entries, &measured, solo_plan, shared_plan);
    // The shared phase keeps both cores busy, which alone adds about 2 to the load.
    println!(
        "load average (1, 5, 15 min) at the start: {load_at_start}; at the end: {}",
        loadavg()
    );
    eprintln!("peers: done in {:.1?}", started.elapsed());
}

fn print_results(
    entries: &[Entry],
    measured: &[Measured],
    solo: SoloPlan,
    shared: contention_harness::Plan,
) {
    let bare = entries
        .iter()
        .position(|e| e.peer.is_none())
        .expect("a bare contender");
    let bare_ns = median(&measured[bare].ns);
    let bare_rate = median(&measured[bare].rates);

    // The detailed table.
    let width = entries.iter().map(|e| e.label.len()).fold(9, usize::max);
    println!();
    println!(
        "peers, one run: single thread (current_thread runtime; {} interleaved rounds of {:?} \
         after a {:?} warm-up; allocations over {} calls); shared ({} tasks, {} workers, one \
         instance per contender; {})",
        solo.rounds,
        solo.round,
        solo.warm_up,
        solo.alloc_calls,
        contention_harness::TASKS,
        contention_harness::WORKERS,
        shared.describe()
    );
    println!(
        "seawall built with: metrics {}, tracing {} (tower-resilience: neither)",
        on_off(cfg!(feature = "metrics")),
        on_off(cfg!(feature = "tracing"))
    );
    if cfg!(feature = "metrics") {
        println!(
            "note: with `metrics`, every seawall layer counts every call (no recorder is \
             installed here), and the breaker leaves its fast path for its tracked path"
        );
    }
    println!(
        "| {:<width$} | ns/call (min-max)      | over bare | allocs/call | Mcalls/s shared (min-max) | vs bare |",
        "contender"
    );
    println!(
        "|{}|------------------------|-----------|-------------|---------------------------|---------|",
        "-".repeat(width + 2)
    );
    for (e, m) in entries.iter().zip(measured) {
        let (ns, rates) = (&m.ns, &m.rates);
        println!(
            "| {:<width$} | {:>7.1} ({:>6.1}-{:>6.1}) | {:>9.1} | {:>11.2} | {:>8.2} ({:>7.2}-{:>7.2}) | {:>6.1}% |",
            e.label,
            median(ns),
            ns[0],
            ns[ns.len() - 1],
            median(ns) - bare_ns,
            m.allocs,
            median(rates) / 1e6,
            rates[0] / 1e6,
            rates[rates.len() - 1] / 1e6,
            median(rates) / bare_rate * 100.0,
        );
    }

    // The summary: layer × peer.
    let find = |layer: &str, peer: Peer| {
        entries
            .iter()
            .position(|e| e.layer == layer && e.peer == Some(peer))
    };
    let missing = |layer: &str, peer: Peer| {
        MISSING
            .iter()
            .find(|(l, p, _)| *l == layer && *p == peer)
            .map(|(_, _, why)| *why)
    };
    println!();
    println!(
        "summary: ns over bare (single thread) / allocs per call / Mcalls/s shared \
         (bare: {bare_ns:.1} ns/call, {:.1} Mcalls/s shared)",
        bare_rate / 1e6
    );
    let cell_width = 24;
    print!("| {:<8} |", "layer");
    for peer in Peer::ALL {
        print!(" {:<cell_width$} |", peer.label());
    }
    println!();
    print!("|----------|");
    for _ in Peer::ALL {
        print!("{}|", "-".repeat(cell_width + 2));
    }
    println!();
    for layer in LAYERS {
        print!("| {layer:<8} |");
        for peer in Peer::ALL {
            let cell = match find(layer, peer) {
                Some(i) => {
                    let m = &measured[i];
                    format!(
                        "{:.1} / {:.2} / {:.2}",
                        median(&m.ns) - bare_ns,
                        m.allocs,
                        median(&m.rates) / 1e6
                    )
                }
                None if missing(layer, peer).is_some() => "n/a".to_owned(),
                None => "-".to_owned(), // filtered out
            };
            print!(" {cell:<cell_width$} |");
        }
        println!();
    }
    for layer in LAYERS {
        for peer in Peer::ALL {
            if let Some(why) = missing(layer, peer) {
                println!("n/a: {layer}, {}: {why}", peer.label());
            }
        }
    }

    // seawall against each peer.
    println!();
    println!(
        "seawall against each peer: the peer's overhead over bare ÷ seawall's (single \
         thread), and seawall's calls/s ÷ the peer's (shared); above 1 favours seawall \
         (\"seawall ~ bare\": seawall's overhead is under 1 ns)"
    );
    println!("| layer    | vs tower: overhead | shared | vs tower-resilience: overhead | shared |");
    println!("|----------|-------------------:|-------:|------------------------------:|-------:|");
    for layer in LAYERS {
        let Some(us) = find(layer, Peer::Seawall) else {
            continue;
        };
        let ratios = |peer| match find(layer, peer) {
            Some(them) => {
                let over = |i: usize| median(&measured[i].ns) - bare_ns;
                let rate = |i: usize| median(&measured[i].rates);
                // Below a nanosecond seawall's overhead is within the noise of `bare`,
                // and a ratio to it means nothing.
                let overhead = if over(us) < 1.0 {
                    "seawall ~ bare".to_owned()
                } else {
                    format!("{:.1}x", over(them) / over(us))
                };
                (overhead, format!("{:.1}x", rate(us) / rate(them)))
            }
            None => ("n/a".to_owned(), "n/a".to_owned()),
        };
        let (tower_over, tower_rate) = ratios(Peer::Tower);
        let (tr_over, tr_rate) = ratios(Peer::TowerResilience);
        println!(
            "| {layer:<8} | {tower_over:>18} | {tower_rate:>6} | {tr_over:>29} | {tr_rate:>6} |"
        );
    }

    // Everything as CSV.
    println!();
    println!(
        "csv: layer,peer,contender,ns_per_call_median,ns_min,ns_max,over_bare_ns,allocs_per_call,\
         mcalls_per_s_median,mcalls_min,mcalls_max,note"
    );
    for (e, m) in entries.iter().zip(measured) {
        let (ns, rates) = (&m.ns, &m.rates);
        println!(
            "csv: {},{},{},{:.2},{:.2},{:.2},{:.2},{:.2},{:.3},{:.3},{:.3},",
            e.layer,
            e.peer.map_or("bare", Peer::label),
            e.label,
            median(ns),
            ns[0],
            ns[ns.len() - 1],
            median(ns) - bare_ns,
            m.allocs,
            median(rates) / 1e6,
            rates[0] / 1e6,
            rates[rates.len() - 1] / 1e6,
        );
    }
    for layer in LAYERS {
        for peer in Peer::ALL {
            if let Some(why) = missing(layer, peer) {
                println!("csv: {layer},{},,,,,,,,,,n/a: {why}", peer.label());
            }
        }
    }
    println!();
}
