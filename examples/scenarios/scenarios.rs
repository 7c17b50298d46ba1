//! The scenarios: a fault script and a topology each, and one run of one contender.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use seawall::circuit_breaker::State;
use seawall::error::is_rejection;
use seawall::BoxError;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::contenders::{self, Contender, Topology};
use crate::sim::{derive_seed, mean_service_secs, Endpoint, Fault, Load, Script, SplitMix64};

/// How long a caller waits for any request before it gives up (for every contender).
pub(crate) const GIVE_UP: Duration = Duration::from_secs(5);
/// Endpoints behind the balancer in `bad-replica`.
pub(crate) const REPLICAS: usize = 5;
/// The bad one.
const BAD_REPLICA: usize = 3;
/// Client instances in `fleet`.
pub(crate) const FLEET: usize = 20;
/// In `flapping`, the fault is on, then off, for this long each, over and over.
pub(crate) const FLAP: Duration = Duration::from_millis(500);
/// The downstream runs at about this utilization when healthy (before retries).
const UTILIZATION: f64 = 0.8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scenario {
    Hang,
    FailFast,
    Overload,
    RetryStorm,
    BadReplica,
    Flapping,
    Fleet,
}

impl Scenario {
    pub(crate) const ALL: [Scenario; 7] = [
        Scenario::Hang,
        Scenario::FailFast,
        Scenario::Overload,
        Scenario::RetryStorm,
        Scenario::BadReplica,
        Scenario::Flapping,
        Scenario::Fleet,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::Hang => "hang",
            Scenario::FailFast => "fail-fast",
            Scenario::Overload => "overload",
            Scenario::RetryStorm => "retry-storm",
            Scenario::BadReplica => "bad-replica",
            Scenario::Flapping => "flapping",
            Scenario::Fleet => "fleet",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// What happens during the fault window.
    pub(crate) fn describe(self) -> String {
        match self {
            Scenario::Hang => "the downstream accepts requests and never answers".to_owned(),
            Scenario::FailFast => {
                "the downstream answers every request with an error at once".to_owned()
            }
            Scenario::Overload => {
                "the downstream loses half of its workers: requests queue".to_owned()
            }
            Scenario::RetryStorm => {
                "full outage: every request fails after its usual service time, using a worker"
                    .to_owned()
            }
            Scenario::BadReplica => format!(
                "replica-{BAD_REPLICA} of {REPLICAS} behind a p2c balancer answers errors at once"
            ),
            Scenario::Flapping => format!(
                "errors at once for {} ms, healthy for {} ms, over and over",
                FLAP.as_millis(),
                FLAP.as_millis()
            ),
            Scenario::Fleet => format!(
                "{FLEET} client instances share one downstream, which has a full outage \
                 (as in retry-storm)"
            ),
        }
    }
}

/// Command-line settings and the sizes derived from them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    pub(crate) duration: Duration,
    pub(crate) rate: f64,
    pub(crate) seed: u64,
}

impl Config {
    /// Workers of the whole downstream: an even number (so that half of it is exact)
    /// that runs it at about [`UTILIZATION`] at `rate`.
    pub(crate) fn workers(&self) -> usize {
        let busy = self.rate * mean_service_secs();
        2 * ((busy / (2.0 * UTILIZATION)).ceil() as usize).max(1)
    }

    /// Workers of one replica in `bad-replica`: four replicas carry the load.
    pub(crate) fn replica_workers(&self) -> usize {
        self.workers().div_ceil(REPLICAS - 1)
    }

    /// The concurrency limit of one client (tower's ConcurrencyLimit, seawall's
    /// bulkhead): Resilience4j's 25, or four times the downstream's workers if more.
    pub(crate) fn limit(&self, instances: usize) -> usize {
        (4 * self.workers() / instances).max(25)
    }

    /// The fault window: the middle third of the run, on 100 ms boundaries (the
    /// recovery buckets').
    pub(crate) fn fault_window(&self) -> (Duration, Duration) {
        let tenths =
            |d: Duration| Duration::from_millis((d.as_millis() as u64).div_ceil(100) * 100);
        (tenths(self.duration / 3), tenths(self.duration * 2 / 3))
    }
}

/// A request as its caller saw it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record {
    /// When it arrived, from the start of the run.
    pub(crate) arrival: Duration,
    pub(crate) latency: Duration,
    pub(crate) ok: bool,
    /// Failed fast by a local rejection, with no attempt sent downstream.
    pub(crate) rejected: bool,
    /// Attempts of it that reached the downstream.
    pub(crate) attempts: u32,
}

/// One contender through one scenario.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) records: Vec<Record>,
    pub(crate) attempts: u64,
    /// Attempts that reached the downstream in each second of the run.
    pub(crate) attempts_per_second: Vec<u64>,
    pub(crate) peak_in_flight: u64,
    /// Behind the balancer: when a breaker first ejected an endpoint after the onset.
    pub(crate) first_ejection: Option<Duration>,
    /// Breaker transitions (seawall only).
    pub(crate) transitions: Option<u64>,
}

/// Open-loop Poisson arrivals at `rate` for `duration`: the same for every contender.
pub(crate) fn arrivals(scenario: Scenario, config: &Config) -> Vec<Duration> {
    let salt = Scenario::ALL
        .iter()
        .position(|s| *s == scenario)
        .unwrap_or(0) as u64;
    let mut rng = SplitMix64::new(derive_seed(config.seed, salt));
    let mut at = 0.0;
    let mut out = Vec::new();
    loop {
        at += rng.exp(1.0 / config.rate);
        if at >= config.duration.as_secs_f64() {
            return out;
        }
        out.push(Duration::from_secs_f64(at));
    }
}

/// The fault script of each endpoint.
fn scripts(scenario: Scenario, config: &Config) -> Vec<Script> {
    let (from, until) = config.fault_window();
    let one = |fault| vec![Script::healthy().with(from, until, fault)];
    match scenario {
        Scenario::Hang => one(Fault::Hang),
        Scenario::FailFast => one(Fault::FastErrors),
        Scenario::Overload => one(Fault::HalfCapacity),
        Scenario::RetryStorm | Scenario::Fleet => one(Fault::Outage),
        Scenario::BadReplica => (0..REPLICAS)
            .map(|i| {
                if i == BAD_REPLICA {
                    Script::healthy().with(from, until, Fault::FastErrors)
                } else {
                    Script::healthy()
                }
            })
            .collect(),
        Scenario::Flapping => {
            let mut script = Script::healthy();
            let mut at = from;
            while at < until {
                script = script.with(at, (at + FLAP).min(until), Fault::FastErrors);
                at += FLAP * 2;
            }
            vec![script]
        }
    }
}

/// Run `contender` through `scenario`: inside a `LocalSet` on a paused clock.
pub(crate) async fn run(
    scenario: Scenario,
    contender: Contender,
    config: &Config,
    arrivals: &[Duration],
) -> Result<Run, BoxError> {
    let start = Instant::now();
    let load = Load::new(start, arrivals.len());
    let scripts = scripts(scenario, config);
    let workers = if scripts.len() > 1 {
        config.replica_workers()
    } else {
        config.workers()
    };
    let endpoints: Vec<Rc<Endpoint>> = scripts
        .into_iter()
        .enumerate()
        .map(|(i, script)| {
            let seed = derive_seed(config.seed, 100 + i as u64);
            Endpoint::new(start, script, workers, seed, load.clone())
        })
        .collect();
    let (topology, instances) = match scenario {
        Scenario::BadReplica => (
            Topology::Balanced {
                endpoints: &endpoints,
            },
            1,
        ),
        Scenario::Fleet => (
            Topology::Single {
                endpoint: &endpoints[0],
                instances: FLEET,
            },
            FLEET,
        ),
        _ => (
            Topology::Single {
                endpoint: &endpoints[0],
                instances: 1,
            },
            1,
        ),
    };
    let built = contenders::build(contender, topology, config.limit(instances), config.seed)?;

    // Every breaker transition, as it happens.
    let (transitions, missed) = (Rc::new(Cell::new(0u64)), Rc::new(Cell::new(0u64)));
    let first_ejection: Rc<Cell<Option<Duration>>> = Rc::new(Cell::new(None));
    let onset = config.fault_window().0;
    let mut watchers = JoinSet::new();
    for handle in &built.breakers {
        let mut subscription = handle.subscribe();
        let (transitions, missed) = (transitions.clone(), missed.clone());
        let first_ejection = first_ejection.clone();
        watchers.spawn_local(async move {
            let mut skipped = 0;
            while let Some(t) = subscription.recv().await {
                // A subscriber that falls behind skips transitions: count them too.
                missed.set(missed.get() + subscription.missed() - skipped);
                skipped = subscription.missed();
                transitions.set(transitions.get() + 1);
                let at = t.at - start;
                if t.to == State::Open && at >= onset && first_ejection.get().is_none() {
                    first_ejection.set(Some(at));
                }
            }
        });
    }

    let records = Rc::new(RefCell::new(Vec::with_capacity(arrivals.len())));
    let mut calls = JoinSet::new();
    for (id, &arrival) in arrivals.iter().enumerate() {
        tokio::time::sleep_until(start + arrival).await;
        let client = built.clients[id % built.clients.len()].clone();
        let (records, load) = (records.clone(), load.clone());
        calls.spawn_local(async move {
            let arrived = Instant::now();
            let result = tokio::time::timeout(GIVE_UP, client(id as u64)).await;
            let latency = arrived.elapsed();
            // Every attempt of it has been made (or dropped) by now.
            let attempts = load.sent(id as u64);
            let rejected = match &result {
                Ok(Err(err)) => is_rejection(&**err) && attempts == 0,
                _ => false,
            };
            records.borrow_mut().push(Record {
                arrival: arrived - start,
                latency,
                ok: matches!(result, Ok(Ok(()))),
                rejected,
                attempts,
            });
        });
    }
    while let Some(done) = calls.join_next().await {
        done?;
    }
    // Let the watchers see the last transitions, then stop them.
    tokio::task::yield_now().await;
    watchers.abort_all();

    let mut records = Rc::try_unwrap(records)
        .map_err(|_| "records still shared")?
        .into_inner();
    records.sort_by_key(|r| r.arrival);
    Ok(Run {
        records,
        attempts: load.attempts(),
        attempts_per_second: load.per_second(),
        peak_in_flight: load.peak_in_flight(),
        first_ejection: if scenario == Scenario::BadReplica {
            first_ejection.get()
        } else {
            None
        },
        transitions: (contender == Contender::Seawall).then(|| transitions.get() + missed.get()),
    })
}
