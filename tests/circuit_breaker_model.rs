//! Model-based test: random sequences of calls (started, completed with an outcome after
//! some time, or dropped), time advances and operator actions, run against the real
//! breaker and against a small reference state machine written here from the documented
//! rules. After every step both must agree on the state, the window, the probe slots, the
//! backoff and on which calls were admitted.
#![cfg(feature = "circuit-breaker")]

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use proptest::prelude::*;
use seawall::circuit_breaker::{CircuitBreakerLayer, Handle, State};
use seawall::classify::{classify_fn, Classification};
use seawall::BoxError;
use tokio::sync::oneshot;
use tower::{Layer, ServiceExt};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Failure,
    Ignored,
}

#[derive(Debug, Clone)]
enum Op {
    /// Start a call (it waits for its outcome).
    Start,
    /// Complete the in-flight call at this index (modulo) with an outcome.
    Complete(usize, Outcome),
    /// Drop the in-flight call at this index (modulo) before it completes.
    Drop(usize),
    /// Let time pass.
    Advance(u64),
    ForceOpen,
    Disable,
    Reset,
}

#[derive(Debug, Clone)]
struct Cfg {
    window: usize,
    minimum_calls: usize,
    failure_rate: Option<f64>,
    consecutive: Option<u32>,
    slow: Option<(u64, f64)>,
    probes: u32,
}

const BASE_MS: u64 = 1_000;
const MAX_MS: u64 = 8_000;
const RESET_AFTER_MS: u64 = 10_000;
const MAX_HALF_OPEN_MS: u64 = 5_000;

// ===== the reference model =====

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ticket {
    Call(u64),
    Probe(u64),
}

#[derive(Debug)]
struct Model {
    cfg: Cfg,
    now: u64,
    state: State,
    generation: u64,
    window: VecDeque<(bool, bool)>,
    consecutive: u32,
    open_until: u64,
    trips: u32,
    closed_since: u64,
    half_open_since: u64,
    in_flight: u32,
    successes: u32,
}

impl Model {
    fn new(cfg: Cfg) -> Self {
        Self {
            cfg,
            now: 0,
            state: State::Closed,
            generation: 0,
            window: VecDeque::new(),
            consecutive: 0,
            open_until: 0,
            trips: 0,
            closed_since: 0,
            half_open_since: 0,
            in_flight: 0,
            successes: 0,
        }
    }

    fn enter(&mut self, to: State) {
        self.enter_at(to, self.now);
    }

    /// A transition dated `at` (a timed one is dated when it was due).
    fn enter_at(&mut self, to: State, at: u64) {
        self.generation += 1;
        self.in_flight = 0;
        self.successes = 0;
        match to {
            State::Open => {
                if self.state == State::Closed && at - self.closed_since >= RESET_AFTER_MS {
                    self.trips = 0;
                }
                self.trips += 1;
                let nominal = BASE_MS.saturating_mul(1 << (self.trips - 1).min(20));
                self.open_until = at + nominal.min(MAX_MS);
            }
            State::HalfOpen => {
                // Probes take their slots when they are called.
                self.half_open_since = at;
            }
            State::Closed => {
                self.window.clear();
                self.consecutive = 0;
                self.closed_since = at;
            }
            State::Disabled => {
                self.window.clear();
                self.consecutive = 0;
            }
            State::ForcedOpen => {}
        }
        self.state = to;
    }

    /// The timed transitions due by now, each dated when it was due: the end of an open
    /// period, and the half-open limit reached with a probe still out.
    fn catch_up(&mut self) {
        loop {
            match self.state {
                State::Open if self.now >= self.open_until => {
                    self.enter_at(State::HalfOpen, self.open_until);
                }
                State::HalfOpen
                    if self.in_flight > 0
                        && self.now >= self.half_open_since + MAX_HALF_OPEN_MS =>
                {
                    self.enter_at(State::Open, self.half_open_since + MAX_HALF_OPEN_MS);
                }
                _ => return,
            }
        }
    }

    fn admit(&mut self) -> Option<Ticket> {
        self.catch_up();
        match self.state {
            State::Closed | State::Disabled => Some(Ticket::Call(self.generation)),
            State::ForcedOpen | State::Open => None,
            State::HalfOpen => {
                if self.in_flight + self.successes < self.cfg.probes {
                    if self.in_flight == 0 && self.now >= self.half_open_since + MAX_HALF_OPEN_MS {
                        // An idle half-open period past its limit: the limit starts afresh.
                        self.half_open_since = self.now;
                    }
                    self.in_flight += 1;
                    return Some(Ticket::Probe(self.generation));
                }
                None
            }
        }
    }

    fn release(&mut self, generation: u64) {
        self.catch_up();
        if self.state == State::HalfOpen && self.generation == generation && self.in_flight > 0 {
            self.in_flight -= 1;
        }
    }

    fn record(&mut self, ticket: Ticket, outcome: Outcome, started: u64) {
        let slow = self
            .cfg
            .slow
            .is_some_and(|(threshold, _)| self.now - started >= threshold);
        match ticket {
            Ticket::Call(generation) => {
                if generation != self.generation || outcome == Outcome::Ignored {
                    return;
                }
                let failure = outcome == Outcome::Failure;
                if self.window.len() == self.cfg.window {
                    self.window.pop_front();
                }
                self.window.push_back((failure, slow));
                let mut trip = false;
                if let Some(limit) = self.cfg.consecutive {
                    if failure {
                        self.consecutive += 1;
                        trip |= self.consecutive >= limit;
                    } else {
                        self.consecutive = 0;
                    }
                }
                let calls = self.window.len() as f64;
                let failures = self.window.iter().filter(|s| s.0).count() as f64;
                let slows = self.window.iter().filter(|s| s.1).count() as f64;
                let rate_holds = self.cfg.failure_rate.is_some_and(|r| failures >= r * calls)
                    || self.cfg.slow.is_some_and(|(_, r)| slows >= r * calls);
                trip |= rate_holds && self.window.len() >= self.cfg.minimum_calls;
                if trip && self.state == State::Closed {
                    self.enter(State::Open);
                }
            }
            Ticket::Probe(generation) => {
                if outcome == Outcome::Ignored {
                    return self.release(generation);
                }
                self.catch_up();
                if self.state != State::HalfOpen || self.generation != generation {
                    return;
                }
                if outcome == Outcome::Failure || slow {
                    self.enter(State::Open);
                } else if self.successes + 1 >= self.cfg.probes {
                    self.enter(State::Closed);
                } else {
                    self.in_flight -= 1;
                    self.successes += 1;
                }
            }
        }
    }

    fn check(&self, handle: &Handle, step: usize, op: &Op) {
        let snap = handle.snapshot();
        let ctx = format!("step {step} ({op:?}): model {self:?}\nreal {snap:?}");
        assert_eq!(snap.state, self.state, "{ctx}");
        assert_eq!(snap.calls, self.window.len() as u64, "{ctx}");
        assert_eq!(
            snap.failures,
            self.window.iter().filter(|s| s.0).count() as u64,
            "{ctx}"
        );
        assert_eq!(
            snap.slow_calls,
            self.window.iter().filter(|s| s.1).count() as u64,
            "{ctx}"
        );
        if self.cfg.consecutive.is_some() {
            assert_eq!(snap.consecutive_failures, self.consecutive, "{ctx}");
        }
        assert_eq!(snap.trips, self.trips, "{ctx}");
        if self.state == State::HalfOpen {
            assert_eq!(snap.probes_in_flight, self.in_flight, "{ctx}");
            assert_eq!(snap.probe_successes, self.successes, "{ctx}");
        }
        if self.state == State::Open {
            assert_eq!(
                snap.next_probe_in,
                Some(Duration::from_millis(
                    self.open_until.saturating_sub(self.now)
                )),
                "{ctx}"
            );
        }
    }
}

// ===== driving the real breaker =====

type CallFuture = Pin<Box<dyn Future<Output = Result<Outcome, BoxError>> + Send>>;

struct InFlight {
    future: CallFuture,
    outcome: oneshot::Sender<Outcome>,
    ticket: Ticket,
    started: u64,
}

fn arb_cfg() -> impl Strategy<Value = Cfg> {
    (
        1usize..8,
        prop_oneof![
            Just(None),
            Just(Some(0.5)),
            Just(Some(0.25)),
            Just(Some(1.0))
        ],
        prop_oneof![Just(None), (1u32..4).prop_map(Some)],
        prop_oneof![
            Just(None),
            Just(Some((100u64, 0.5))),
            Just(Some((100u64, 1.0)))
        ],
        1u32..4,
        0.0f64..=1.0,
    )
        .prop_filter_map(
            "needs a trip rule",
            |(window, rate, consecutive, slow, probes, min)| {
                if rate.is_none() && consecutive.is_none() && slow.is_none() {
                    return None;
                }
                let minimum_calls = 1 + ((window - 1) as f64 * min) as usize;
                Some(Cfg {
                    window,
                    minimum_calls,
                    failure_rate: rate,
                    consecutive,
                    slow,
                    probes,
                })
            },
        )
}

fn arb_op() -> impl Strategy<Value = Op> {
    let outcome = prop_oneof![
        4 => Just(Outcome::Failure),
        4 => Just(Outcome::Success),
        1 => Just(Outcome::Ignored),
    ];
    prop_oneof![
        6 => Just(Op::Start),
        6 => (any::<usize>(), outcome).prop_map(|(i, o)| Op::Complete(i, o)),
        1 => any::<usize>().prop_map(Op::Drop),
        3 => prop_oneof![Just(50u64), Just(100), Just(999), Just(1_000), Just(2_500), Just(6_000)]
            .prop_map(Op::Advance),
        1 => prop_oneof![Just(Op::ForceOpen), Just(Op::Disable), Just(Op::Reset)],
    ]
}

fn run(cfg: Cfg, ops: Vec<Op>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut builder = CircuitBreakerLayer::builder()
            .count_window(cfg.window as u32)
            .minimum_calls(cfg.minimum_calls as u64)
            .open_duration(Duration::from_millis(BASE_MS))
            .open_duration_multiplier(2.0)
            .max_open_duration(Duration::from_millis(MAX_MS))
            .reset_backoff_after(Duration::from_millis(RESET_AFTER_MS))
            .max_half_open_duration(Duration::from_millis(MAX_HALF_OPEN_MS))
            .half_open_probes(cfg.probes)
            .jitter(0.0);
        builder = match cfg.failure_rate {
            Some(rate) => builder.failure_rate(rate),
            None => builder.without_failure_rate(),
        };
        if let Some(n) = cfg.consecutive {
            builder = builder.consecutive_failures(n);
        }
        if let Some((ms, rate)) = cfg.slow {
            builder = builder.slow_calls(Duration::from_millis(ms), rate);
        }
        let classifier = classify_fn(|r: &Result<Outcome, BoxError>| match r {
            Ok(Outcome::Success) => Classification::success(),
            Ok(Outcome::Ignored) => Classification::ignored(),
            _ => Classification::failure(),
        });
        let layer = builder.classifier(classifier).build().unwrap();
        let handle = layer.handle();
        let svc = layer.layer(tower::service_fn(
            |rx: oneshot::Receiver<Outcome>| async move {
                match rx.await {
                    Ok(Outcome::Failure) | Err(_) => Err::<Outcome, BoxError>("failed".into()),
                    Ok(o) => Ok(o),
                }
            },
        ));

        let mut model = Model::new(cfg.clone());
        let mut in_flight: Vec<InFlight> = Vec::new();
        let start = tokio::time::Instant::now();
        let now_ms = || (tokio::time::Instant::now() - start).as_millis() as u64;

        for (step, op) in ops.iter().enumerate() {
            model.now = now_ms();
            match op {
                Op::Start => {
                    let (tx, rx) = oneshot::channel();
                    let mut future: CallFuture = Box::pin(svc.clone().oneshot(rx));
                    let expected = model.admit();
                    match futures::poll!(future.as_mut()) {
                        std::task::Poll::Ready(result) => {
                            let err = result.expect_err("only a rejection is ready at once");
                            assert!(err.is::<seawall::error::CircuitOpen>(), "{err}");
                            assert_eq!(
                                expected, None,
                                "step {step}: real rejected, model admitted"
                            );
                        }
                        std::task::Poll::Pending => {
                            let ticket = expected.unwrap_or_else(|| {
                                panic!("step {step}: real admitted, model rejected: {model:?}")
                            });
                            in_flight.push(InFlight {
                                future,
                                outcome: tx,
                                ticket,
                                started: model.now,
                            });
                        }
                    }
                }
                Op::Complete(i, outcome) if !in_flight.is_empty() => {
                    let call = in_flight.remove(i % in_flight.len());
                    call.outcome.send(*outcome).unwrap();
                    let result = call.future.await;
                    assert_eq!(result.is_ok(), *outcome != Outcome::Failure);
                    model.record(call.ticket, *outcome, call.started);
                }
                Op::Drop(i) if !in_flight.is_empty() => {
                    let call = in_flight.remove(i % in_flight.len());
                    drop(call.future);
                    if let Ticket::Probe(generation) = call.ticket {
                        model.release(generation);
                    }
                }
                Op::Complete(..) | Op::Drop(_) => {}
                Op::Advance(ms) => {
                    tokio::time::advance(Duration::from_millis(*ms)).await;
                    model.now = now_ms();
                }
                Op::ForceOpen => {
                    model.catch_up();
                    handle.force_open();
                    model.enter(State::ForcedOpen);
                }
                Op::Disable => {
                    model.catch_up();
                    handle.disable();
                    model.enter(State::Disabled);
                }
                Op::Reset => {
                    model.catch_up();
                    handle.reset();
                    model.trips = 0;
                    model.enter(State::Closed);
                }
            }
            // A snapshot makes the timed transitions that are due.
            model.catch_up();
            model.check(&handle, step, op);
        }
        // Whatever happened, once every call is dropped and time passes, probes can run
        // and close the breaker: it never gets stuck.
        in_flight.clear();
        if handle.state() != State::ForcedOpen {
            // (A success may still complete the minimum calls of a failing window and trip
            // it once more, so probe in rounds.)
            for _ in 0..3 {
                if matches!(handle.state(), State::Closed | State::Disabled) {
                    break;
                }
                tokio::time::advance(Duration::from_millis(MAX_MS + MAX_HALF_OPEN_MS)).await;
                for _ in 0..cfg.probes {
                    let (tx, rx) = oneshot::channel();
                    tx.send(Outcome::Success).unwrap();
                    let _ = svc.clone().oneshot(rx).await;
                }
            }
            let state = handle.state();
            assert!(
                state == State::Closed || state == State::Disabled,
                "stuck in {state:?}"
            );
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn breaker_matches_the_reference_model(
        cfg in arb_cfg(),
        ops in proptest::collection::vec(arb_op(), 1..80),
    ) {
        run(cfg, ops);
    }
}
