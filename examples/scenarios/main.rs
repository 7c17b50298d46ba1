//! The scenario harness: what no protection, a naive retry, tower's built-ins and
//! seawall each do to goodput, tail latency and load on a downstream that hangs, fails,
//! sheds capacity or flaps, in one run, against the same arrivals and the same faults.
//!
//! ```text
//! cargo run --release --example scenarios --features full -- --scenario all
//! cargo run --release --example scenarios --features full -- --scenario hang,fleet --json
//! ```
//!
//! Flags: `--scenario NAME[,NAME...]|all` (default `all`), `--duration SECONDS` (default
//! 30), `--rate REQUESTS_PER_SECOND` (default 200), `--seed N` (default 1), `--json`
//! (one JSON object per line per (scenario, policy), nothing else on stdout).
//!
//! # The simulation
//!
//! Everything runs in virtual time: a current-thread tokio runtime whose clock is
//! paused and jumps to the next timer whenever every task waits, so a 30 s scenario
//! takes a fraction of a real second, and a given `--seed` gives the same numbers on
//! every run and every machine.
//!
//! - **Arrivals**: open loop, Poisson at `--rate`, one task per request, whatever
//!   happened to earlier ones. The same arrival times for every contender. Each caller
//!   gives up after 5 s (so that requests to a hung downstream end), whatever the client.
//! - **The downstream**: one endpoint (five in `bad-replica`) with a fixed number of
//!   workers, sized from `--rate` to run at about 75 % utilization, and a FIFO queue of
//!   up to 1 024 requests (beyond it, an error at once). Service times are log-normal,
//!   median 20 ms, p99 about 65 ms. A request whose caller gave up is still served: the
//!   server cannot know (no deadline propagation), so abandoned work costs capacity.
//! - **Faults**: healthy, then a fault during the middle third of the run, then healthy:
//!
//! | scenario | during the fault |
//! |---|---|
//! | `hang` | requests are accepted and never answered |
//! | `fail-fast` | every request gets an error at once (2 ms), using no worker |
//! | `overload` | half the workers are gone: the load is about 150 % of capacity |
//! | `retry-storm` | full outage: every request fails after its usual service time, using a worker |
//! | `bad-replica` | one of five endpoints behind a `tower::balance::p2c` balancer answers errors at once |
//! | `flapping` | errors at once for 500 ms, healthy for 500 ms, over and over |
//! | `fleet` | 20 client instances, each with its own state, share one downstream in a full outage |
//!
//! # The contenders
//!
//! - `none`: the bare client.
//! - `naive-retry`: `tower::retry::Retry`, 3 attempts in all, any error retried at once;
//!   no budget, backoff or timeout.
//! - `tower`: tower's built-ins, `Retry` (the same 3 attempts) over `Timeout` (250 ms per
//!   attempt) over `ConcurrencyLimit` (25, or 4 × the downstream's workers if more).
//! - `seawall`: `Policy::builder`: deadline 1 s; 3 attempts with the default budget
//!   (20 % of requests plus 10 retries/s over 10 s) and backoff (exponential, full
//!   jitter, 25 to 250 ms, seeded); a breaker with the default trip rule (50 % of the
//!   last 100 calls, at least 20) open for 1 s, doubling per repeated trip up to 5 s,
//!   1 half-open probe; a fail-fast bulkhead as large as tower's limit; 250 ms per
//!   attempt. In `bad-replica` the breakers are per endpoint, in backpressure mode, under
//!   the balancer (with a 250 ms timeout each), and the policy above the balancer has
//!   no breaker of its own. In `fleet` every instance has its own policy (breaker,
//!   bulkhead, budget).
//!
//! # The metrics, per (scenario, policy)
//!
//! - `requests`: arrivals. `success_rate`: requests that succeeded before the caller
//!   gave up, over `requests`.
//! - `p50_ms`, `p99_ms`, `max_ms`: the latency the caller saw, of every request, failed
//!   or not (a fast failure is fast; a give-up is 5 000 ms).
//! - `amplification`: attempts that reached the downstream / requests, over the whole
//!   run (fleet-wide in `fleet`). Below 1 when a client rejects requests without sending
//!   them. `fault_amplification`: the same for the requests that arrived during the
//!   fault (`ampl. fault`), which is where retries pile on. `peak_amplification`: the
//!   worst whole second of the fault, attempts sent in it / requests that arrived in it
//!   (`ampl. peak`): a budget that allows a burst shows here.
//! - `peak_in_flight` (`peak open` in the table): the most requests open at the
//!   downstream at once: queued, in service, or hanging.
//! - `detect_ms`: from the fault's onset until the client first failed a request fast
//!   without sending anything (a local rejection: `CircuitOpen`, `BulkheadFull`, an
//!   unsent `DeadlineExceeded`), or, behind the balancer, first ejected an endpoint (a
//!   breaker opened); `null` if it never did.
//! - `recover_ms`: from the fault's end until every 100 ms bucket of arrivals from then
//!   on has at least 99 % successes; `null` if that never happens before the run ends.
//! - `breaker_transitions`: state transitions of seawall's breakers (all of them); `null`
//!   for the others.
//!
//! The harness checks nothing: it reports. See the header it prints for the sizes
//! derived from the flags. The numbers are the model's, not a benchmark: they show the
//! shape of each client's behaviour (who queues, who amplifies, who fails fast, who
//! recovers when), not what a real service would measure.

mod contenders;
mod report;
mod scenarios;
mod sim;

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use contenders::{
    Contender, ATTEMPTS, ATTEMPT_TIMEOUT, DEADLINE, MAX_OPEN_DURATION, OPEN_DURATION,
};
use report::Metrics;
use scenarios::{Config, Scenario, FLEET, GIVE_UP, REPLICAS};

const USAGE: &str = "usage: scenarios [--scenario NAME[,NAME...]|all] [--duration SECONDS] \
                     [--rate PER_SECOND] [--seed N] [--json]";

struct Args {
    scenarios: Vec<Scenario>,
    config: Config,
    json: bool,
}

fn known() -> String {
    Scenario::ALL.map(Scenario::name).join(", ")
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Args>, String> {
    let mut scenarios = Scenario::ALL.to_vec();
    let mut config = Config {
        duration: Duration::from_secs(30),
        rate: 200.0,
        seed: 1,
    };
    let mut json = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--json" => json = true,
            "--scenario" => {
                let value = value()?;
                scenarios = if value == "all" {
                    Scenario::ALL.to_vec()
                } else {
                    value
                        .split(',')
                        .map(|name| {
                            Scenario::parse(name.trim()).ok_or_else(|| {
                                format!("unknown scenario {name:?}; known: {}, all", known())
                            })
                        })
                        .collect::<Result<_, _>>()?
                };
            }
            "--duration" => {
                let value = value()?;
                let secs: f64 = value
                    .parse()
                    .map_err(|_| format!("--duration: {value:?} is not a number of seconds"))?;
                if !(1.0..=3_600.0).contains(&secs) {
                    return Err(format!(
                        "--duration: must be 1 to 3600 seconds (got {value})"
                    ));
                }
                config.duration = Duration::from_secs_f64(secs);
            }
            "--rate" => {
                let value = value()?;
                let rate: f64 = value
                    .parse()
                    .map_err(|_| format!("--rate: {value:?} is not a number of requests/s"))?;
                if !(1.0..=100_000.0).contains(&rate) {
                    return Err(format!(
                        "--rate: must be 1 to 100000 requests/s (got {value})"
                    ));
                }
                config.rate = rate;
            }
            "--seed" => {
                let value = value()?;
                config.seed = value
                    .parse()
                    .map_err(|_| format!("--seed: {value:?} is not an unsigned integer"))?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if config.rate * config.duration.as_secs_f64() > 5_000_000.0 {
        return Err("--rate × --duration: at most 5 000 000 requests per run".to_owned());
    }
    Ok(Some(Args {
        scenarios,
        config,
        json,
    }))
}

fn header(config: &Config) -> String {
    let (from, until) = config.fault_window();
    let capacity = config.workers() as f64 / sim::mean_service_secs();
    let lines = [
        format!(
            "seawall scenario harness: {} requests/s (Poisson, open loop), {:.1} s of virtual \
             time, seed {}",
            config.rate,
            config.duration.as_secs_f64(),
            config.seed
        ),
        format!(
            "  fault: {:.1} s to {:.1} s; every caller gives up after {} s",
            from.as_secs_f64(),
            until.as_secs_f64(),
            GIVE_UP.as_secs()
        ),
        format!(
            "  downstream: {} workers, about {capacity:.0} requests/s ({:.0} % busy when \
             healthy); bad-replica: {REPLICAS} x {} workers; service time log-normal, median \
             {} ms; FIFO queue of {}; work for callers that gave up is still done",
            config.workers(),
            100.0 * config.rate / capacity,
            config.replica_workers(),
            sim::SERVICE_MEDIAN.as_millis(),
            sim::QUEUE_LIMIT,
        ),
        "  none:        the bare client".to_owned(),
        format!("  naive-retry: {ATTEMPTS} attempts, at once; no budget, backoff or timeout"),
        format!(
            "  tower:       Retry({ATTEMPTS} attempts, at once) > Timeout({} ms) > \
             ConcurrencyLimit({})",
            ATTEMPT_TIMEOUT.as_millis(),
            config.limit(1)
        ),
        format!(
            "  seawall:     Policy: deadline {} ms; retry {ATTEMPTS} attempts, budget 20 % + \
             10/s over 10 s, backoff 25-250 ms full jitter; breaker 50 % of the last 100 calls \
             (min 20), open {} s x2 up to {} s, 1 probe; bulkhead {}, fail fast; attempt \
             timeout {} ms",
            DEADLINE.as_millis(),
            OPEN_DURATION.as_secs(),
            MAX_OPEN_DURATION.as_secs(),
            config.limit(1),
            ATTEMPT_TIMEOUT.as_millis(),
        ),
        format!(
            "               bad-replica: a breaker per endpoint (backpressure) under p2c, none \
             above; fleet: {FLEET} instances, a policy (breaker, bulkhead {}, budget) each",
            config.limit(FLEET)
        ),
    ];
    lines.join("\n")
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}\nscenarios: {}, all", known());
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("error: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the tokio runtime: {err}");
            return ExitCode::FAILURE;
        }
    };

    let config = args.config;
    let (from, until) = config.fault_window();
    // Stop quietly when stdout goes away (`| head`).
    let mut out = std::io::stdout().lock();
    macro_rules! emit {
        ($($arg:tt)*) => {
            if writeln!(out, $($arg)*).is_err() {
                return ExitCode::SUCCESS;
            }
        };
    }
    if !args.json {
        emit!("{}\n", header(&config));
    }
    for scenario in args.scenarios {
        let arrivals = scenarios::arrivals(scenario, &config);
        let mut rows = Vec::new();
        for contender in Contender::ALL {
            // A fresh LocalSet per run: whatever a run leaves behind (work the server
            // still does for callers that gave up) is dropped with it.
            let local = tokio::task::LocalSet::new();
            let run = local.block_on(
                &runtime,
                scenarios::run(scenario, contender, &config, &arrivals),
            );
            let run = match run {
                Ok(run) => run,
                Err(err) => {
                    eprintln!("error: {} / {}: {err}", scenario.name(), contender.name());
                    return ExitCode::FAILURE;
                }
            };
            let metrics = Metrics::new(scenario.name(), contender.name(), &run, (from, until));
            if args.json {
                emit!("{}", metrics.json());
            }
            rows.push(metrics);
        }
        if !args.json {
            emit!(
                "== {}: {} ({:.1} s to {:.1} s) ==",
                scenario.name(),
                scenario.describe(),
                from.as_secs_f64(),
                until.as_secs_f64()
            );
            emit!("{}", report::table(&rows));
        }
    }
    ExitCode::SUCCESS
}
