//! The policy: the canonical stack, its defaults, and the interactions between its stages.
#![cfg(feature = "policy")]

// Counts allocations per thread, for the test that the success path allocates nothing.
#[path = "../benches/support/alloc_counter.rs"]
mod alloc_counter;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use seawall::bulkhead::OnResponse;
use seawall::circuit_breaker::State;
use seawall::classify::{classify_fn, Classification, ErrorsAsFailures};
use seawall::error::{BulkheadFull, CircuitOpen, DeadlineExceeded, Elapsed};
use seawall::policy::{Policy, PolicyBuilder, PolicyService};
use seawall::retry::backoff::ConstantBackoff;
use seawall::retry::replay::CloneRequest;
use seawall::timeout::Deadline;
use seawall::BoxError;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What one call to the downstream does.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// `Ok(request)` after this many ms.
    Ok(u64),
    /// `Err("call N failed")` after this many ms.
    Fail(u64),
    /// Never answers.
    Hang,
}

type Plan = dyn Fn(u32) -> Answer + Send + Sync;

/// A downstream that answers its `n`-th call (from 0) as `plan(n)` says, and records
/// the calls it receives and the deadline each one saw.
#[derive(Clone)]
struct Downstream {
    calls: Arc<AtomicU32>,
    plan: Arc<Plan>,
    deadlines: Arc<Mutex<Vec<Option<Duration>>>>,
}

impl Downstream {
    fn new(plan: impl Fn(u32) -> Answer + Send + Sync + 'static) -> Self {
        Self {
            calls: Arc::default(),
            plan: Arc::new(plan),
            deadlines: Arc::default(),
        }
    }

    fn always(answer: Answer) -> Self {
        Self::new(move |_| answer)
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    /// What was left of the call's deadline when each call was received.
    fn deadlines(&self) -> Vec<Option<Duration>> {
        self.deadlines.lock().unwrap().clone()
    }
}

impl Service<u32> for Downstream {
    type Response = u32;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<u32, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: u32) -> Self::Future {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        self.deadlines
            .lock()
            .unwrap()
            .push(Deadline::current().map(|d| d.remaining()));
        let answer = (self.plan)(n);
        Box::pin(async move {
            match answer {
                Answer::Ok(after) => {
                    tokio::time::sleep(ms(after)).await;
                    Ok(request)
                }
                Answer::Fail(after) => {
                    tokio::time::sleep(ms(after)).await;
                    Err(format!("call {n} failed").into())
                }
                Answer::Hang => std::future::pending().await,
            }
        })
    }
}

type Svc = PolicyService<Downstream, ErrorsAsFailures, CloneRequest, OnResponse, ConstantBackoff>;

/// The defaults, with a constant backoff of 10 ms and a breaker that opens for exactly
/// its open duration (no jitter), so that every timeline is exact.
fn exact(name: &str) -> PolicyBuilder<ErrorsAsFailures, CloneRequest, OnResponse, ConstantBackoff> {
    Policy::builder(name)
        .retry(|retry| retry.backoff(ConstantBackoff::new(ms(10))))
        .circuit_breaker(|breaker| breaker.jitter(0.0))
}

/// Lets a call run (on paused time) for `d`, and gives it back unfinished.
async fn run_for<F: Future + Unpin>(future: &mut F, d: Duration) {
    if tokio::time::timeout(d, future).await.is_ok() {
        panic!("the call finished within {d:?}");
    }
}

// ===== (1) local rejections are not retried and spend no budget =====

#[tokio::test(start_paused = true)]
async fn a_breaker_rejection_is_not_retried_and_spends_no_budget() {
    let downstream = Downstream::always(Answer::Fail(0));
    let policy = exact("payments").build().unwrap();
    let handle = policy.handle();
    let svc = policy.layer(downstream.clone());

    handle.circuit_breaker().unwrap().force_open();
    let err = svc.clone().oneshot(1).await.unwrap_err();
    assert!(err.is::<CircuitOpen>(), "{err}");
    assert_eq!(downstream.calls(), 0);
    let budget = handle.budget().unwrap().snapshot();
    assert_eq!(
        (budget.deposits, budget.withdrawals, budget.denials),
        (1, 0, 0)
    );

    // A breaker that opens by itself mid-call: the attempt it rejects ends the call.
    let downstream = Downstream::always(Answer::Fail(0));
    let policy = exact("payments")
        .retry(|retry| retry.max_attempts(5))
        .circuit_breaker(|breaker| breaker.without_failure_rate().consecutive_failures(2))
        .build()
        .unwrap();
    let handle = policy.handle();
    let err = policy
        .layer(downstream.clone())
        .oneshot(1)
        .await
        .unwrap_err();
    assert!(err.is::<CircuitOpen>(), "{err}");
    assert_eq!(downstream.calls(), 2, "two failures opened the breaker");
    let budget = handle.budget().unwrap().snapshot();
    // The second and third attempts were retries. The third, rejected by the breaker,
    // reached nobody: its retry went back to the budget, and it is not retried.
    assert_eq!((budget.withdrawals, budget.denials), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_bulkhead_rejection_is_not_retried_and_spends_no_budget() {
    let downstream = Downstream::new(|n| if n == 0 { Answer::Hang } else { Answer::Ok(0) });
    let policy = exact("payments")
        .bulkhead(|bulkhead| bulkhead.max_concurrent(1))
        .build()
        .unwrap();
    let handle = policy.handle();
    let svc = policy.layer(downstream.clone());

    let mut holder = Box::pin(svc.clone().oneshot(1));
    run_for(&mut holder, ms(10)).await;
    assert_eq!(handle.bulkhead().unwrap().in_flight(), 1);

    let err = svc.clone().oneshot(2).await.unwrap_err();
    assert!(err.is::<BulkheadFull>(), "{err}");
    assert_eq!(downstream.calls(), 1, "the rejected call reached nothing");
    let budget = handle.budget().unwrap().snapshot();
    assert_eq!(
        (budget.deposits, budget.withdrawals, budget.denials),
        (2, 0, 0)
    );
    drop(holder);
    assert_eq!(handle.bulkhead().unwrap().in_flight(), 0);
}

// ===== (2) attempt timeouts are breaker failures =====

#[tokio::test(start_paused = true)]
async fn attempt_timeouts_count_as_breaker_failures() {
    let downstream = Downstream::always(Answer::Hang);
    let policy = exact("payments")
        .without_retry()
        .attempt_timeout(ms(100))
        .circuit_breaker(|breaker| breaker.without_failure_rate().consecutive_failures(3))
        .build()
        .unwrap();
    let breaker = policy.handle().circuit_breaker().unwrap().clone();
    let svc = policy.layer(downstream.clone());

    for n in 1..=3 {
        let started = Instant::now();
        let err = svc.clone().oneshot(n).await.unwrap_err();
        assert_eq!(err.downcast_ref::<Elapsed>(), Some(&Elapsed::new(ms(100))));
        assert_eq!(started.elapsed(), ms(100));
    }
    assert_eq!(
        breaker.state(),
        State::Open,
        "three timeouts are three failures"
    );
    let err = svc.clone().oneshot(4).await.unwrap_err();
    assert!(err.is::<CircuitOpen>(), "{err}");
    assert_eq!(downstream.calls(), 3);
}

// ===== (3) bulkhead rejections are ignored by the breaker =====

#[tokio::test(start_paused = true)]
async fn bulkhead_rejections_are_ignored_by_the_breaker() {
    let downstream = Downstream::new(|n| if n == 0 { Answer::Hang } else { Answer::Ok(0) });
    // A classifier that calls every error a failure: the policy still ignores rejections.
    let every_error_fails = classify_fn(|result: &Result<u32, BoxError>| match result {
        Ok(_) => Classification::success(),
        Err(_) => Classification::failure(),
    });
    let policy = exact("payments")
        .classifier(every_error_fails)
        .circuit_breaker(|breaker| breaker.without_failure_rate().consecutive_failures(1))
        .bulkhead(|bulkhead| bulkhead.max_concurrent(1))
        .build()
        .unwrap();
    let handle = policy.handle();
    let svc = policy.layer(downstream.clone());

    let mut holder = Box::pin(svc.clone().oneshot(0));
    run_for(&mut holder, ms(10)).await;
    for n in 1..=50 {
        let err = svc.clone().oneshot(n).await.unwrap_err();
        assert!(err.is::<BulkheadFull>(), "{err}");
    }
    let breaker = handle.circuit_breaker().unwrap().snapshot();
    assert_eq!(breaker.state, State::Closed);
    assert_eq!((breaker.calls, breaker.failures), (0, 0));
    assert_eq!(handle.bulkhead().unwrap().rejections(), 50);
    assert_eq!(handle.budget().unwrap().snapshot().withdrawals, 0);
    drop(holder);
}

// ===== (4) hedges and retries share one budget; a call deposits once =====

#[tokio::test(start_paused = true)]
async fn hedges_and_retries_share_one_budget_and_a_call_deposits_once() {
    // Every attempt, first or hedge, fails after 30 ms.
    let downstream = Downstream::always(Answer::Fail(30));
    let policy = exact("search")
        .retry(|retry| retry.max_attempts(2).backoff(ConstantBackoff::new(ms(5))))
        .hedge(|hedge| hedge.delay(ms(10)))
        .circuit_breaker(|breaker| breaker.minimum_calls(100))
        .build()
        .unwrap();
    let handle = policy.handle();
    let svc = policy.layer(downstream.clone());

    for n in 0..5 {
        assert!(svc.clone().oneshot(n).await.is_err());
    }
    // Per call: attempt 1 and its hedge, then a retry and its hedge.
    assert_eq!(downstream.calls(), 20);
    let hedge = handle.hedge().unwrap().snapshot();
    assert_eq!((hedge.hedges, hedge.denials), (10, 0));
    let budget = handle.budget().unwrap().snapshot();
    assert_eq!(
        budget.deposits, 5,
        "one deposit per call, none per hedge or retry"
    );
    assert_eq!(
        budget.withdrawals, 15,
        "10 hedges and 5 retries from the one budget"
    );
    assert_eq!(handle.circuit_breaker().unwrap().snapshot().failures, 20);
}

#[tokio::test(start_paused = true)]
async fn a_hedge_rejected_by_the_bulkhead_spends_no_budget_and_counts_nothing() {
    // The first attempt holds the only permit for 50 ms; the hedge at 10 ms is rejected.
    let downstream = Downstream::always(Answer::Ok(50));
    let policy = exact("search")
        .hedge(|hedge| hedge.delay(ms(10)))
        .bulkhead(|bulkhead| bulkhead.max_concurrent(1))
        .circuit_breaker(|breaker| breaker.without_failure_rate().consecutive_failures(1))
        .build()
        .unwrap();
    let handle = policy.handle();
    let started = Instant::now();
    assert_eq!(
        policy.layer(downstream.clone()).oneshot(7).await.unwrap(),
        7
    );
    assert_eq!(started.elapsed(), ms(50));
    assert_eq!(downstream.calls(), 1);
    let hedge = handle.hedge().unwrap().snapshot();
    assert_eq!((hedge.rejected, hedge.wins), (1, 0));
    let budget = handle.budget().unwrap().snapshot();
    assert_eq!((budget.deposits, budget.withdrawals), (1, 0));
    let breaker = handle.circuit_breaker().unwrap().snapshot();
    assert_eq!(
        (breaker.state, breaker.calls, breaker.failures),
        (State::Closed, 1, 0)
    );
    assert_eq!(handle.bulkhead().unwrap().rejections(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_empty_budget_stops_hedges_and_retries_alike() {
    use seawall::retry::budget::RetryBudget;

    // Room for exactly one retry or hedge in the window.
    let budget = RetryBudget::builder()
        .ratio(0.0)
        .min_per_sec(0.1)
        .build()
        .unwrap();
    let downstream = Downstream::always(Answer::Fail(30));
    let policy = exact("search")
        .budget(budget.clone())
        .hedge(|hedge| hedge.delay(ms(10)))
        .build()
        .unwrap();
    let handle = policy.handle();
    assert!(svc_is_err(policy.layer(downstream.clone())).await);
    // The hedge took the only retry: the call is not retried.
    assert_eq!(downstream.calls(), 2);
    let s = budget.snapshot();
    assert_eq!((s.deposits, s.withdrawals, s.denials), (1, 1, 1));
    assert_eq!(handle.hedge().unwrap().snapshot().hedges, 1);
    // The budget is empty now: the next call is neither hedged nor retried.
    assert!(svc_is_err(policy.layer(downstream.clone())).await);
    assert_eq!(downstream.calls(), 3);
    let s = budget.snapshot();
    assert_eq!((s.deposits, s.withdrawals, s.denials), (2, 1, 3));
    let hedge = handle.hedge().unwrap().snapshot();
    assert_eq!((hedge.hedges, hedge.denials), (1, 1));
}

async fn svc_is_err(svc: Svc) -> bool {
    svc.oneshot(1).await.is_err()
}

#[tokio::test(start_paused = true)]
async fn with_retries_off_the_hedge_stage_deposits() {
    let downstream = Downstream::always(Answer::Ok(30));
    let policy = exact("search")
        .without_retry()
        .hedge(|hedge| hedge.delay(ms(10)))
        .build()
        .unwrap();
    let handle = policy.handle();
    let svc = policy.layer(downstream.clone());
    for n in 0..3 {
        assert_eq!(svc.clone().oneshot(n).await.unwrap(), n);
    }
    let budget = handle.budget().unwrap().snapshot();
    assert_eq!((budget.deposits, budget.withdrawals), (3, 3));
    assert_eq!(handle.hedge().unwrap().snapshot().hedges, 3);
}

// ===== (5) the deadline bounds every attempt and backoff =====

#[tokio::test(start_paused = true)]
async fn the_deadline_bounds_every_attempt_and_backoff() {
    // Attempts fail after 400 ms, 500 ms apart: the second is cut off at 1 s.
    let downstream = Downstream::always(Answer::Fail(400));
    let policy = exact("payments")
        .deadline(Duration::from_secs(1))
        .retry(|retry| retry.max_attempts(5).backoff(ConstantBackoff::new(ms(500))))
        .build()
        .unwrap();
    let handle = policy.handle();
    let started = Instant::now();
    let err = policy
        .layer(downstream.clone())
        .oneshot(1)
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    assert_eq!(downstream.calls(), 2);
    assert_eq!(handle.budget().unwrap().snapshot().withdrawals, 1);

    // A backoff that would end past the deadline is not started: the caller gets the
    // failure at once, and no budget is spent.
    let downstream = Downstream::always(Answer::Fail(0));
    let policy = exact("payments")
        .deadline(Duration::from_secs(1))
        .retry(|retry| retry.backoff(ConstantBackoff::new(Duration::from_secs(10))))
        .build()
        .unwrap();
    let handle = policy.handle();
    let started = Instant::now();
    let err = policy
        .layer(downstream.clone())
        .oneshot(1)
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(err.to_string(), "call 0 failed");
    assert_eq!(downstream.calls(), 1);
    assert_eq!(handle.budget().unwrap().snapshot().withdrawals, 0);
}

// ===== (6) the attempt timeout is capped by the remaining deadline =====

#[tokio::test(start_paused = true)]
async fn the_attempt_timeout_is_capped_by_the_remaining_deadline() {
    // Attempts at 0, 400 and 800 ms time out after 300 ms, except the last: 200 ms
    // are left of the deadline, and that is its timeout.
    let downstream = Downstream::always(Answer::Hang);
    let policy = exact("payments")
        .deadline(Duration::from_secs(1))
        .attempt_timeout(ms(300))
        .retry(|retry| retry.max_attempts(5).backoff(ConstantBackoff::new(ms(100))))
        .circuit_breaker(|breaker| breaker.minimum_calls(100))
        .build()
        .unwrap();
    let handle = policy.handle();
    let started = Instant::now();
    let err = policy
        .layer(downstream.clone())
        .oneshot(1)
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    assert_eq!(downstream.calls(), 3);
    // Each attempt sees its own end as the deadline (and sends it downstream): 300 ms,
    // and for the last the 200 ms left of the call.
    assert_eq!(
        downstream.deadlines(),
        [Some(ms(300)), Some(ms(300)), Some(ms(200))]
    );
    // The capped attempt ended below the breaker too: three failures.
    assert_eq!(handle.circuit_breaker().unwrap().snapshot().failures, 3);

    // The default attempt timeout (5 s) under a 1 s deadline: one attempt, cut at 1 s,
    // counted by the breaker (a hang trips it even when the deadline is the shorter).
    let downstream = Downstream::always(Answer::Hang);
    let policy = exact("payments")
        .deadline(Duration::from_secs(1))
        .build()
        .unwrap();
    let handle = policy.handle();
    let started = Instant::now();
    let err = policy
        .layer(downstream.clone())
        .oneshot(1)
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    assert_eq!(downstream.calls(), 1);
    assert_eq!(handle.circuit_breaker().unwrap().snapshot().failures, 1);
}

// ===== (7) every stage off: the bare service =====

#[tokio::test(start_paused = true)]
async fn every_stage_off_behaves_like_the_bare_service() {
    let bare = |builder: PolicyBuilder<_, _, _, _>| {
        builder
            .without_deadline()
            .without_retry()
            .without_hedge()
            .without_circuit_breaker()
            .without_bulkhead()
            .without_attempt_timeout()
            .build()
            .unwrap()
    };
    let policy = bare(exact("bare"));
    let handle = policy.handle();
    assert!(handle.budget().is_none() && handle.hedge().is_none());
    assert!(handle.circuit_breaker().is_none() && handle.bulkhead().is_none());
    assert_eq!((handle.deadline(), handle.attempt_timeout()), (None, None));

    // A failure: once, as it is.
    let failing = Downstream::always(Answer::Fail(0));
    let err = policy.layer(failing.clone()).oneshot(1).await.unwrap_err();
    assert_eq!(err.to_string(), "call 0 failed");
    assert_eq!(failing.calls(), 1);

    // A slow call: no timeout, no deadline.
    let slow = Downstream::always(Answer::Ok(3_600_000));
    let started = Instant::now();
    assert_eq!(policy.layer(slow.clone()).oneshot(7).await.unwrap(), 7);
    assert_eq!(started.elapsed(), Duration::from_secs(3600));
    assert_eq!(slow.deadlines(), [None]);

    // Many at once: no bulkhead.
    let downstream = Downstream::always(Answer::Ok(10));
    let svc = policy.layer(downstream.clone());
    let calls = (0..100).map(|n| svc.clone().oneshot(n));
    let answers = futures::future::join_all(calls).await;
    assert!(answers.iter().all(Result::is_ok));

    // The same type as the full stack.
    let full: Svc = exact("full").build().unwrap().layer(downstream.clone());
    let services: [Svc; 2] = [full, svc];
    assert_eq!(services.len(), 2);
}

// ===== (8) the canonical order =====

#[tokio::test(start_paused = true)]
async fn the_stack_is_in_the_canonical_order() {
    let downstream = Downstream::always(Answer::Fail(0));
    let policy = exact("payments")
        .circuit_breaker(|breaker| breaker.minimum_calls(100))
        .bulkhead(|bulkhead| bulkhead.max_concurrent(1))
        .build()
        .unwrap();
    let handle = policy.handle();
    let err = policy
        .layer(downstream.clone())
        .oneshot(1)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "call 2 failed");

    // Retry above the breaker: it sees each attempt, not each call.
    let breaker = handle.circuit_breaker().unwrap().snapshot();
    assert_eq!((breaker.calls, breaker.failures), (3, 3));
    // Bulkhead below the retry: a permit per attempt, none held over a backoff (with a
    // limit of 1, the retries were not rejected).
    assert_eq!(downstream.calls(), 3);
    assert_eq!(handle.bulkhead().unwrap().rejections(), 0);
    // Deadline above everything, attempt timeout below it: every attempt sees the lesser
    // of its own 5 s and what is left of the 15 s (see
    // `the_attempt_timeout_is_capped_by_the_remaining_deadline`).
    assert_eq!(downstream.deadlines(), [Some(Duration::from_secs(5)); 3]);
    // Hedge between the retry and the breaker: see
    // `hedges_and_retries_share_one_budget_and_a_call_deposits_once` (the breaker counts
    // each hedge); attempt timeout below the breaker: see
    // `attempt_timeouts_count_as_breaker_failures`.
}

// ===== (9) cancellation =====

#[tokio::test(start_paused = true)]
async fn dropping_a_call_mid_retry_leaves_no_permit_and_no_probe_held() {
    // Call 0 fails and opens the breaker for 50 ms; the retry 100 ms later is the
    // half-open probe, and hangs. Call 2 succeeds.
    let downstream = Downstream::new(|n| match n {
        0 => Answer::Fail(0),
        1 => Answer::Hang,
        _ => Answer::Ok(0),
    });
    let policy = exact("payments")
        .attempt_timeout(Duration::from_secs(60))
        .retry(|retry| retry.backoff(ConstantBackoff::new(ms(100))))
        .circuit_breaker(|breaker| {
            breaker
                .without_failure_rate()
                .consecutive_failures(1)
                .open_duration(ms(50))
        })
        .build()
        .unwrap();
    let handle = policy.handle();
    let breaker = handle.circuit_breaker().unwrap();
    let bulkhead = handle.bulkhead().unwrap();
    let svc = policy.layer(downstream.clone());

    let mut call = Box::pin(svc.clone().oneshot(1));
    run_for(&mut call, ms(150)).await;
    assert_eq!(downstream.calls(), 2);
    assert_eq!(breaker.state(), State::HalfOpen);
    assert_eq!(breaker.snapshot().probes_in_flight, 1);
    assert_eq!(bulkhead.in_flight(), 1);

    drop(call);
    assert_eq!(
        breaker.snapshot().probes_in_flight,
        0,
        "the probe slot came back"
    );
    assert_eq!(bulkhead.in_flight(), 0, "the permit came back");

    // Not stuck: the next call is admitted as a probe, succeeds, and closes the breaker.
    assert_eq!(svc.clone().oneshot(2).await.unwrap(), 2);
    assert_eq!(breaker.state(), State::Closed);

    // Dropped during a backoff: nothing is held, and the retry not sent is refunded.
    let downstream = Downstream::always(Answer::Fail(0));
    let policy = exact("payments")
        .retry(|retry| retry.backoff(ConstantBackoff::new(Duration::from_secs(1))))
        .build()
        .unwrap();
    let handle = policy.handle();
    let mut call = Box::pin(policy.layer(downstream.clone()).oneshot(1));
    run_for(&mut call, ms(500)).await;
    assert_eq!(handle.budget().unwrap().snapshot().withdrawals, 1);
    drop(call);
    assert_eq!(downstream.calls(), 1);
    assert_eq!(handle.bulkhead().unwrap().in_flight(), 0);
    assert_eq!(handle.budget().unwrap().snapshot().withdrawals, 0);
}

// ===== (10) bounds =====

#[test]
fn the_service_is_send_sync_static_and_its_future_send_static() {
    fn send_sync_static<T: Send + Sync + 'static>(_: &T) {}
    fn send_static<T: Send + 'static>(_: &T) {}

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let policy = exact("payments")
            .hedge(|hedge| hedge.delay(ms(10)))
            .build()
            .unwrap();
        send_sync_static(&policy);
        let mut svc = policy.layer(Downstream::always(Answer::Ok(0)));
        send_sync_static(&svc);
        let future = svc.ready().await.unwrap().call(1);
        send_static(&future);
        // And it can be spawned.
        assert_eq!(tokio::spawn(future).await.unwrap().unwrap(), 1);
    });
}

// ===== (11) configuration errors =====

#[test]
fn every_config_error_of_a_stage_surfaces_from_build_naming_its_component_and_field() {
    type Check = fn() -> seawall::error::ConfigError;
    let cases: [(Check, &str, &str); 8] = [
        (
            || Policy::builder("").build().unwrap_err(),
            "policy",
            "name",
        ),
        (
            || {
                Policy::builder("p")
                    .deadline(Duration::ZERO)
                    .build()
                    .unwrap_err()
            },
            "deadline",
            "timeout",
        ),
        (
            || {
                Policy::builder("p")
                    .attempt_timeout(Duration::ZERO)
                    .build()
                    .unwrap_err()
            },
            "timeout",
            "timeout",
        ),
        (
            || {
                Policy::builder("p")
                    .retry(|retry| retry.max_attempts(0))
                    .build()
                    .unwrap_err()
            },
            "retry",
            "max_attempts",
        ),
        (
            || {
                Policy::builder("p")
                    .hedge(|hedge| hedge.percentile(1.0))
                    .build()
                    .unwrap_err()
            },
            "hedge",
            "percentile",
        ),
        (
            || {
                Policy::builder("p")
                    .circuit_breaker(|breaker| breaker.failure_rate(1.5))
                    .build()
                    .unwrap_err()
            },
            "circuit_breaker",
            "failure_rate",
        ),
        (
            || {
                Policy::builder("p")
                    .circuit_breaker(|breaker| breaker.count_window(10).minimum_calls(11))
                    .build()
                    .unwrap_err()
            },
            "circuit_breaker",
            "minimum_calls",
        ),
        (
            || {
                Policy::builder("p")
                    .bulkhead(|bulkhead| bulkhead.max_concurrent(0))
                    .build()
                    .unwrap_err()
            },
            "bulkhead",
            "max_concurrent",
        ),
    ];
    for (check, component, field) in cases {
        let err = check();
        assert_eq!((err.component(), err.field()), (component, field), "{err}");
    }

    // A stage that is off is not checked.
    assert!(Policy::builder("p")
        .hedge(|hedge| hedge.percentile(1.0))
        .without_hedge()
        .bulkhead(|bulkhead| bulkhead.max_concurrent(0))
        .without_bulkhead()
        .build()
        .is_ok());
}

// ===== the defaults =====

#[test]
fn the_defaults_are_the_documented_ones() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let policy = Policy::builder("payments").build().unwrap();
        let handle = policy.handle();
        assert_eq!(handle.name(), "payments");
        assert_eq!(handle.deadline(), Some(Duration::from_secs(15)));
        assert_eq!(handle.attempt_timeout(), Some(Duration::from_secs(5)));
        assert!(handle.retries());
        assert!(handle.hedge().is_none(), "hedging is off by default");
        assert_eq!(handle.bulkhead().unwrap().limit(), 25);
        assert_eq!(handle.bulkhead().unwrap().name(), "payments");
        assert_eq!(handle.circuit_breaker().unwrap().name(), "payments");
        // The budget: 10 retries/s over 10 s with no traffic; 20 % of requests on top.
        let budget = handle.budget().unwrap();
        assert_eq!(budget.snapshot().balance, 100.0);
        for _ in 0..10 {
            budget.deposit();
        }
        assert_eq!(budget.snapshot().balance, 102.0);

        // 3 attempts in all.
        let downstream = Downstream::always(Answer::Fail(0));
        assert!(policy.layer(downstream.clone()).oneshot(1).await.is_err());
        assert_eq!(downstream.calls(), 3);

        // Hedging, once on, is named too.
        let policy = Policy::builder("search")
            .hedge(|hedge| hedge.name("ignored"))
            .build()
            .unwrap();
        assert_eq!(policy.handle().hedge().unwrap().name(), "search");
    });
}

// ===== the success path allocates nothing =====

#[test]
fn the_success_path_allocates_nothing() {
    use alloc_counter::alloc_calls_on_this_thread as allocations;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let ready = tower::service_fn(|x: u32| std::future::ready(Ok::<u32, BoxError>(x)));
        let full = Policy::builder("payments").build().unwrap().layer(ready);
        let hedged = Policy::builder("payments")
            .hedge(|hedge| hedge.delay(ms(50)))
            .build()
            .unwrap()
            .layer(ready);
        for svc in [full, hedged] {
            svc.clone().oneshot(0).await.unwrap();
            let before = allocations();
            for i in 0..100 {
                assert_eq!(svc.clone().oneshot(i).await.unwrap(), i);
            }
            assert_eq!(allocations() - before, 0);
        }
    });
}

// ===== HTTP and gRPC =====

#[cfg(feature = "http")]
mod http_and_grpc {
    use super::*;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use seawall::circuit_breaker::future::OutcomeRecorder;
    use seawall::grpc::{GrpcBody, GrpcClassifier};
    use seawall::http::{IdempotentReplay, PermitBody, StatusClassifier, UntilBodyEnd};

    type Request = http::Request<String>;

    /// An HTTP downstream that answers its `n`-th call with status `plan(n)`.
    fn http_downstream(
        calls: Arc<AtomicU32>,
        plan: fn(u32) -> u16,
    ) -> impl Service<
        Request,
        Response = http::Response<Full<Bytes>>,
        Error = BoxError,
        Future = impl Send,
    > + Clone
           + Send
           + Sync {
        tower::service_fn(move |_: Request| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            let response = http::Response::builder()
                .status(plan(n))
                .body(Full::new(Bytes::from("body")))
                .map_err(BoxError::from);
            std::future::ready(response)
        })
    }

    #[tokio::test(start_paused = true)]
    async fn an_http_policy_retries_idempotent_requests_and_holds_permits_until_body_end() {
        let calls = Arc::new(AtomicU32::new(0));
        let policy = Policy::builder("users")
            .classifier(StatusClassifier::new())
            .replay(IdempotentReplay::new())
            .release_on::<UntilBodyEnd>()
            .circuit_breaker(|breaker| breaker.minimum_calls(100))
            .build()
            .unwrap();
        let handle = policy.handle();
        let svc = policy.layer(http_downstream(calls.clone(), |n| {
            if n < 2 {
                503
            } else {
                200
            }
        }));

        // A GET: two 503s retried, then 200.
        let get = http::Request::get("/users/7").body(String::new()).unwrap();
        let response: http::Response<PermitBody<Full<Bytes>>> =
            svc.clone().oneshot(get).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let breaker = handle.circuit_breaker().unwrap().snapshot();
        assert_eq!((breaker.calls, breaker.failures), (3, 2));
        assert_eq!(handle.budget().unwrap().snapshot().withdrawals, 2);
        // The permit is held until the body is read.
        assert_eq!(handle.bulkhead().unwrap().in_flight(), 1);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "body");
        assert_eq!(handle.bulkhead().unwrap().in_flight(), 0);

        // A POST without an idempotency key: sent once.
        calls.store(0, Ordering::SeqCst);
        let post = http::Request::post("/users").body(String::new()).unwrap();
        let response = svc.clone().oneshot(post).await.unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // Bounds, with HTTP types.
        fn send_sync_static<T: Send + Sync + 'static>(_: &T) {}
        send_sync_static(&svc);
    }

    type GrpcBodyOf = http_body_util::combinators::WithTrailers<
        Full<Bytes>,
        std::future::Ready<Option<Result<http::HeaderMap, std::convert::Infallible>>>,
    >;

    /// A gRPC downstream: its `n`-th call answers `grpc-status` `plan(n)`, in the
    /// headers (`true`: trailers-only) or in the trailers (`false`).
    fn grpc_downstream(
        calls: Arc<AtomicU32>,
        plan: fn(u32) -> (&'static str, bool),
    ) -> impl Service<
        http::Request<String>,
        Response = http::Response<GrpcBodyOf>,
        Error = BoxError,
        Future = impl Send,
    > + Clone
           + Send
           + Sync {
        tower::service_fn(move |_: http::Request<String>| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            let (status, in_headers) = plan(n);
            let mut trailers = http::HeaderMap::new();
            let mut builder = http::Response::builder();
            if in_headers {
                builder = builder.header("grpc-status", status);
            } else {
                trailers.insert("grpc-status", http::HeaderValue::from_static(status));
            }
            let trailers = (!trailers.is_empty()).then_some(Ok(trailers));
            let body =
                Full::new(Bytes::from("message")).with_trailers(std::future::ready(trailers));
            std::future::ready(builder.body(body).map_err(BoxError::from))
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_grpc_policy_retries_trailers_only_unavailable_and_judges_streamed_status_at_body_end(
    ) {
        let calls = Arc::new(AtomicU32::new(0));
        // `Get` declared idempotent (its requests' bodies are `Clone` here).
        let policy = Policy::builder("inventory")
            .classifier(GrpcClassifier::new())
            .replay(
                seawall::grpc::GrpcReplay::with(seawall::retry::replay::CloneRequest)
                    .idempotent_methods(["/inventory.Stock/Get"]),
            )
            .circuit_breaker(|breaker| breaker.minimum_calls(100))
            .build()
            .unwrap();
        let handle = policy.handle();
        // UNAVAILABLE twice in the headers (retried), then UNAVAILABLE in the trailers,
        // after the response went back (for the breaker only).
        let svc = policy.layer(grpc_downstream(calls.clone(), |n| match n {
            0 | 1 => ("14", true),
            _ => ("14", false),
        }));
        let request = http::Request::post("/inventory.Stock/Get")
            .body(String::new())
            .unwrap();
        let response: http::Response<GrpcBody<GrpcBodyOf, OutcomeRecorder>> =
            svc.clone().oneshot(request).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let breaker = handle.circuit_breaker().unwrap();
        assert_eq!(
            (breaker.snapshot().calls, breaker.snapshot().failures),
            (2, 2)
        );
        assert!(response.body().is_pending());
        let body = response.into_body().collect().await.unwrap();
        assert_eq!(body.trailers().unwrap()["grpc-status"], "14");
        assert_eq!(
            (breaker.snapshot().calls, breaker.snapshot().failures),
            (3, 3),
            "the status in the trailers counted at the end of the body"
        );

        // The breaker off: the same response type, a body with no recorder.
        let policy = Policy::builder("inventory")
            .classifier(GrpcClassifier::new())
            .replay(seawall::grpc::GrpcReplay::with(
                seawall::retry::replay::CloneRequest,
            ))
            .without_circuit_breaker()
            .build()
            .unwrap();
        let svc = policy.layer(grpc_downstream(calls.clone(), |_| ("0", false)));
        let request = http::Request::post("/inventory.Stock/Get")
            .body(String::new())
            .unwrap();
        let response: http::Response<GrpcBody<GrpcBodyOf, OutcomeRecorder>> =
            svc.oneshot(request).await.unwrap();
        assert!(!response.body().is_pending());
        let body = response.into_body().collect().await.unwrap();
        assert_eq!(body.trailers().unwrap()["grpc-status"], "0");
    }
}
