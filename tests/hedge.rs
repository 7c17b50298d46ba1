//! The hedge layer: when it hedges, what wins, what it costs the budget, and the
//! percentile delay.
#![cfg(feature = "hedge")]

// Counts allocations per thread, for the test that the no-hedge path allocates nothing.
#[path = "../benches/support/alloc_counter.rs"]
mod alloc_counter;

// Only the shared seeded `Rng` is used here.
#[path = "support/mod.rs"]
mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use seawall::hedge::{Handle, Hedge, HedgeLayer};
use seawall::retry::budget::RetryBudget;
use seawall::retry::replay::Replay;
use seawall::BoxError;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What one attempt does.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// `Ok(attempt number)` after this many ms.
    Ok(u64),
    /// `Err("attempt N failed")` after this many ms.
    Fail(u64),
    /// A local rejection (`BulkheadFull`) after this many ms.
    #[cfg(feature = "bulkhead")]
    Reject(u64),
    /// Never answers.
    Hang,
}

/// Counts an attempt dropped before it answered.
struct CancelGuard {
    cancelled: Arc<AtomicU32>,
    done: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.done {
            self.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

type Plan = dyn Fn(u32) -> Answer + Send + Sync;

/// Replicas of a downstream: attempt `n` (counted over all calls, from 0) does what
/// `plan(n)` says and answers with `n`. Counts attempts, cancellations and send times.
#[derive(Clone)]
struct Replicas {
    plan: Arc<Plan>,
    calls: Arc<AtomicU32>,
    cancelled: Arc<AtomicU32>,
    sent_at: Arc<Mutex<Vec<Duration>>>,
    epoch: Instant,
}

impl Replicas {
    fn new(plan: impl Fn(u32) -> Answer + Send + Sync + 'static) -> Self {
        Self {
            plan: Arc::new(plan),
            calls: Arc::default(),
            cancelled: Arc::default(),
            sent_at: Arc::default(),
            epoch: Instant::now(),
        }
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    fn cancelled(&self) -> u32 {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// When each attempt was sent, in ms since the replicas were made.
    fn sent_at(&self) -> Vec<u128> {
        let sent = self.sent_at.lock().unwrap();
        sent.iter().map(|d| d.as_millis()).collect()
    }
}

impl<Req> Service<Req> for Replicas {
    type Response = u32;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<u32, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Req) -> Self::Future {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        self.sent_at.lock().unwrap().push(self.epoch.elapsed());
        let answer = (self.plan)(n);
        let guard = CancelGuard {
            cancelled: self.cancelled.clone(),
            done: false,
        };
        Box::pin(async move {
            let mut guard = guard; // the whole guard, not just its `done` field
            let result = match answer {
                Answer::Ok(after) => {
                    tokio::time::sleep(ms(after)).await;
                    Ok(n)
                }
                Answer::Fail(after) => {
                    tokio::time::sleep(ms(after)).await;
                    Err(format!("attempt {n} failed").into())
                }
                #[cfg(feature = "bulkhead")]
                Answer::Reject(after) => {
                    tokio::time::sleep(ms(after)).await;
                    Err(Box::new(seawall::error::BulkheadFull::new()) as BoxError)
                }
                Answer::Hang => std::future::pending().await,
            };
            guard.done = true;
            result
        })
    }
}

/// A budget with room for 10 000 hedges and no ratio.
fn plenty() -> RetryBudget {
    RetryBudget::builder()
        .ratio(0.0)
        .min_per_sec(1_000.0)
        .build()
        .unwrap()
}

/// A budget that refuses every withdrawal.
fn empty() -> RetryBudget {
    RetryBudget::builder()
        .ratio(0.0)
        .min_per_sec(0.0)
        .build()
        .unwrap()
}

fn fixed(delay_ms: u64) -> seawall::hedge::Builder {
    HedgeLayer::builder().delay(ms(delay_ms)).budget(plenty())
}

/// Sends one call through `svc`; its result and how long it took.
async fn timed<S>(svc: &S, request: u32) -> (Result<u32, BoxError>, Duration)
where
    S: Service<u32, Response = u32, Error = BoxError> + Clone,
{
    let started = Instant::now();
    let result = svc.clone().oneshot(request).await;
    (result, started.elapsed())
}

#[tokio::test(start_paused = true)]
async fn a_hedge_wins_when_the_first_attempt_is_slow() {
    let replicas = Replicas::new(|n| {
        if n == 0 {
            Answer::Ok(1_000)
        } else {
            Answer::Ok(10)
        }
    });
    let layer = fixed(50).build().unwrap();
    let svc = layer.layer(replicas.clone());
    let (result, took) = timed(&svc, 0).await;
    assert_eq!(result.unwrap(), 1, "the hedge answered");
    assert_eq!(took, ms(60), "50 ms delay, then the hedge's 10 ms");
    assert_eq!(replicas.sent_at(), [0, 50]);
    assert_eq!(replicas.cancelled(), 1, "the first attempt was cancelled");
    let s = layer.handle().snapshot();
    assert_eq!((s.hedges, s.wins, s.denials), (1, 1, 0));
    let b = layer.budget().snapshot();
    assert_eq!((b.deposits, b.withdrawals), (1, 1));
}

#[cfg(feature = "timeout")]
#[tokio::test(start_paused = true)]
async fn no_hedge_goes_out_that_the_deadline_leaves_less_time_than_the_delay() {
    use seawall::timeout::Deadline;
    let slow_first = |n| {
        if n == 0 {
            Answer::Ok(1_000)
        } else {
            Answer::Ok(10)
        }
    };
    // 50 ms delay, 90 ms deadline: at 50 ms only 40 ms are left, less than the delay.
    let replicas = Replicas::new(slow_first);
    let layer = fixed(50).build().unwrap();
    let svc = layer.layer(replicas.clone());
    let call = Deadline::after(ms(90)).scope(svc.oneshot(0));
    assert!(
        tokio::time::timeout(ms(500), call).await.is_err(),
        "still waiting for the first"
    );
    assert_eq!(replicas.calls(), 1, "no hedge");
    assert_eq!(layer.budget().snapshot().withdrawals, 0);
    // With 200 ms, the hedge has 150 ms left: it goes out and wins.
    let replicas = Replicas::new(slow_first);
    let layer = fixed(50).build().unwrap();
    let svc = layer.layer(replicas.clone());
    let result = Deadline::after(ms(200)).scope(svc.oneshot(0)).await;
    assert_eq!(result.unwrap(), 1);
    assert_eq!(replicas.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_answer_before_the_delay_sends_no_hedge_and_spends_no_budget() {
    let replicas = Replicas::new(|_| Answer::Ok(30));
    let layer = fixed(50).build().unwrap();
    let svc = layer.layer(replicas.clone());
    let (result, took) = timed(&svc, 0).await;
    assert_eq!(result.unwrap(), 0);
    assert_eq!(took, ms(30));
    tokio::time::sleep(ms(500)).await;
    assert_eq!(replicas.calls(), 1, "no hedge, not even late");
    assert_eq!(replicas.cancelled(), 0);
    let b = layer.budget().snapshot();
    assert_eq!((b.deposits, b.withdrawals, b.denials), (1, 0, 0));
    assert_eq!(layer.handle().snapshot().hedges, 0);
}

#[tokio::test(start_paused = true)]
async fn at_most_max_hedges_each_one_delay_after_the_last() {
    for max in 1..=3u32 {
        // Every attempt takes a second: the first one sent answers first.
        let replicas = Replicas::new(|_| Answer::Ok(1_000));
        let layer = fixed(50).max_hedges(max).build().unwrap();
        let svc = layer.layer(replicas.clone());
        let (result, took) = timed(&svc, 0).await;
        assert_eq!(result.unwrap(), 0);
        assert_eq!(took, ms(1_000));
        let expected: Vec<u128> = (0..=u128::from(max)).map(|k| 50 * k).collect();
        assert_eq!(replicas.sent_at(), expected, "max_hedges {max}");
        assert_eq!(
            replicas.cancelled(),
            max,
            "the hedges lost and were cancelled"
        );
        assert_eq!(layer.budget().snapshot().withdrawals, u64::from(max));
        let s = layer.handle().snapshot();
        assert_eq!((s.hedges, s.wins), (u64::from(max), 0));
    }
}

#[tokio::test(start_paused = true)]
async fn an_empty_budget_sends_no_hedge_and_counts_the_denial() {
    let replicas = Replicas::new(|_| Answer::Ok(200));
    let layer = HedgeLayer::builder()
        .delay(ms(50))
        .budget(empty())
        .build()
        .unwrap();
    let svc = layer.layer(replicas.clone());
    let (result, took) = timed(&svc, 0).await;
    assert_eq!(result.unwrap(), 0, "the first attempt's answer");
    assert_eq!(took, ms(200));
    assert_eq!(replicas.calls(), 1);
    let s = layer.handle().snapshot();
    assert_eq!((s.hedges, s.denials), (0, 1));
    let b = layer.budget().snapshot();
    assert_eq!((b.withdrawals, b.denials), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_shared_budget_is_withdrawn_from_but_never_deposited_into() {
    let shared = plenty();
    let own = plenty();
    let replicas = Replicas::new(|n| {
        if n < 10 {
            Answer::Ok(1)
        } else {
            Answer::Ok(100)
        }
    });
    let sharing = HedgeLayer::builder()
        .delay(ms(50))
        .shared_budget(shared.clone())
        .build()
        .unwrap()
        .layer(replicas.clone());
    let owning = HedgeLayer::builder()
        .delay(ms(50))
        .budget(own.clone())
        .build()
        .unwrap()
        .layer(replicas.clone());
    for i in 0..5 {
        timed(&sharing, i).await.0.unwrap();
        timed(&owning, i).await.0.unwrap();
    }
    assert_eq!(shared.snapshot().deposits, 0);
    assert_eq!(own.snapshot().deposits, 5);
    // A slow call still withdraws its hedge from the shared budget.
    timed(&sharing, 0).await.0.unwrap();
    let s = shared.snapshot();
    assert_eq!((s.deposits, s.withdrawals), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_shared_budget_counts_each_request_once_under_a_retry_layer() {
    use seawall::retry::backoff::ConstantBackoff;
    use seawall::retry::RetryLayer;

    let budget = plenty();
    let replicas = Replicas::new(|n| match n {
        0 => Answer::Fail(10),
        _ => Answer::Ok(10),
    });
    let svc = tower::ServiceBuilder::new()
        .layer(
            RetryLayer::builder()
                .budget(budget.clone())
                .backoff(ConstantBackoff::new(ms(5)))
                .build()
                .unwrap(),
        )
        .layer(
            HedgeLayer::builder()
                .delay(ms(50))
                .shared_budget(budget.clone())
                .build()
                .unwrap(),
        )
        .service(replicas.clone());
    assert_eq!(svc.oneshot(0).await.unwrap(), 1, "retried once");
    let s = budget.snapshot();
    assert_eq!(
        (s.deposits, s.withdrawals),
        (1, 1),
        "one request, one retry"
    );
}

/// Copies nothing: no request can be hedged.
#[derive(Clone, Copy)]
struct NoReplay;

impl<Req> Replay<Req> for NoReplay {
    fn replay(&self, _: &Req) -> Option<Req> {
        None
    }
}

/// Copies requests, but says a copy is never whole (a body that outgrew its buffer).
#[derive(Clone, Copy)]
struct NeverWhole;

impl<Req: Clone> Replay<Req> for NeverWhole {
    fn replay(&self, request: &Req) -> Option<Req> {
        Some(request.clone())
    }

    fn can_replay(&self, _: &Req) -> bool {
        false
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_that_cannot_be_copied_is_never_hedged() {
    let replicas = Replicas::new(|_| Answer::Ok(500));
    let layer = fixed(50).replay(NoReplay).build().unwrap();
    let (result, took) = timed(&layer.layer(replicas.clone()), 0).await;
    assert_eq!((result.unwrap(), took), (0, ms(500)));
    assert_eq!(replicas.calls(), 1);
    assert_eq!(layer.budget().snapshot().withdrawals, 0);
}

#[tokio::test(start_paused = true)]
async fn a_copy_that_is_not_whole_is_not_sent_and_spends_no_budget() {
    let replicas = Replicas::new(|_| Answer::Ok(500));
    let layer = fixed(50).replay(NeverWhole).build().unwrap();
    let (result, took) = timed(&layer.layer(replicas.clone()), 0).await;
    assert_eq!((result.unwrap(), took), (0, ms(500)));
    assert_eq!(replicas.calls(), 1);
    assert_eq!(layer.budget().snapshot().withdrawals, 0);
}

#[cfg(feature = "http")]
#[tokio::test(start_paused = true)]
async fn a_non_idempotent_http_request_is_never_hedged() {
    use http::{Method, Request};
    use seawall::http::IdempotentReplay;

    let request = |method: Method, key: Option<&str>| {
        let mut builder = Request::builder().method(method).uri("/orders");
        if let Some(key) = key {
            builder = builder.header("Idempotency-Key", key);
        }
        builder.body(String::from("{}")).unwrap()
    };
    for (method, key, hedged) in [
        (Method::POST, None, false),
        (Method::PATCH, None, false),
        (Method::POST, Some("4f1c"), true),
        (Method::GET, None, true),
        (Method::PUT, None, true),
    ] {
        // The first attempt is slow, a hedge fast.
        let replicas = Replicas::new(|n| {
            if n == 0 {
                Answer::Ok(500)
            } else {
                Answer::Ok(10)
            }
        });
        let layer = HedgeLayer::builder()
            .delay(ms(50))
            .budget(plenty())
            .replay(IdempotentReplay::new())
            .build()
            .unwrap();
        let started = Instant::now();
        let answered_by = layer
            .layer(replicas.clone())
            .oneshot(request(method.clone(), key))
            .await
            .unwrap();
        let label = format!("{method} {key:?}");
        if hedged {
            assert_eq!((answered_by, started.elapsed()), (1, ms(60)), "{label}");
            assert_eq!(replicas.calls(), 2, "{label}");
        } else {
            assert_eq!((answered_by, started.elapsed()), (0, ms(500)), "{label}");
            assert_eq!(replicas.calls(), 1, "{label}: sent exactly once");
            assert_eq!(layer.budget().snapshot().withdrawals, 0, "{label}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_failure_with_a_hedge_in_flight_waits_for_the_hedge() {
    // The first attempt fails at 80 ms; the hedge, sent at 50 ms, answers at 150 ms.
    let replicas = Replicas::new(|n| {
        if n == 0 {
            Answer::Fail(80)
        } else {
            Answer::Ok(100)
        }
    });
    let layer = fixed(50).max_hedges(2).build().unwrap();
    let (result, took) = timed(&layer.layer(replicas.clone()), 0).await;
    assert_eq!((result.unwrap(), took), (1, ms(150)));
    assert_eq!(
        replicas.sent_at(),
        [0, 50],
        "no further hedge after a failure"
    );
    assert_eq!(layer.handle().snapshot().wins, 1);
}

#[tokio::test(start_paused = true)]
async fn when_every_attempt_fails_the_last_failure_is_returned() {
    // The hedge fails last.
    let replicas = Replicas::new(|_| Answer::Fail(100));
    let layer = fixed(50).build().unwrap();
    let (result, took) = timed(&layer.layer(replicas.clone()), 0).await;
    assert_eq!(result.unwrap_err().to_string(), "attempt 1 failed");
    assert_eq!(took, ms(150));
    // The first attempt fails last.
    let replicas = Replicas::new(|n| {
        if n == 0 {
            Answer::Fail(200)
        } else {
            Answer::Fail(20)
        }
    });
    let layer = fixed(50).build().unwrap();
    let (result, took) = timed(&layer.layer(replicas.clone()), 0).await;
    assert_eq!(result.unwrap_err().to_string(), "attempt 0 failed");
    assert_eq!(took, ms(200));
    assert_eq!(replicas.cancelled(), 0);
}

#[cfg(feature = "bulkhead")]
#[tokio::test(start_paused = true)]
async fn a_hedge_rejected_below_goes_back_to_the_budget() {
    // The hedge (sent at 50 ms) is rejected locally at 60 ms; the first answers at 200.
    let replicas = Replicas::new(|n| {
        if n == 0 {
            Answer::Ok(200)
        } else {
            Answer::Reject(10)
        }
    });
    let layer = fixed(50).build().unwrap();
    let (result, took) = timed(&layer.layer(replicas.clone()), 0).await;
    assert_eq!((result.unwrap(), took), (0, ms(200)));
    let s = layer.handle().snapshot();
    assert_eq!((s.hedges, s.rejected, s.wins), (1, 1, 0));
    assert_eq!(
        layer.budget().snapshot().withdrawals,
        0,
        "the rejected hedge reached nobody: refunded"
    );
}

#[cfg(feature = "bulkhead")]
#[tokio::test(start_paused = true)]
async fn a_real_failure_is_returned_before_a_local_rejection() {
    // First attempt fails for real at 100 ms; the hedge is rejected locally at 130 ms.
    let replicas = Replicas::new(|n| {
        if n == 0 {
            Answer::Fail(100)
        } else {
            Answer::Reject(80)
        }
    });
    let layer = fixed(50).build().unwrap();
    let (result, took) = timed(&layer.layer(replicas), 0).await;
    let err = result.unwrap_err();
    assert!(!seawall::error::is_rejection(&*err));
    assert_eq!(
        (err.to_string(), took),
        ("attempt 0 failed".to_owned(), ms(130))
    );
    // The first attempt is rejected; the hedge fails for real later.
    let replicas = Replicas::new(|n| {
        if n == 0 {
            Answer::Reject(100)
        } else {
            Answer::Fail(100)
        }
    });
    let layer = fixed(50).build().unwrap();
    let (result, took) = timed(&layer.layer(replicas), 0).await;
    assert_eq!(
        (result.unwrap_err().to_string(), took),
        ("attempt 1 failed".to_owned(), ms(150))
    );
    // Every attempt rejected: the rejection.
    let replicas = Replicas::new(|_| Answer::Reject(100));
    let layer = fixed(50).build().unwrap();
    let (result, _) = timed(&layer.layer(replicas), 0).await;
    assert!(seawall::error::is_rejection(&*result.unwrap_err()));
}

#[tokio::test(start_paused = true)]
async fn a_failure_before_any_hedge_is_returned_at_once() {
    let replicas = Replicas::new(|_| Answer::Fail(20));
    let layer = fixed(50).build().unwrap();
    let (result, took) = timed(&layer.layer(replicas.clone()), 0).await;
    assert_eq!(
        (result.unwrap_err().to_string(), took),
        ("attempt 0 failed".to_owned(), ms(20))
    );
    tokio::time::sleep(ms(500)).await;
    assert_eq!(replicas.calls(), 1);
    assert_eq!(layer.budget().snapshot().withdrawals, 0);
}

#[test]
fn an_answer_ready_at_once_needs_no_timer_and_no_runtime() {
    // No tokio runtime: creating a timer would panic.
    let layer = HedgeLayer::builder().delay(ms(1)).build().unwrap();
    let svc = layer.layer(tower::service_fn(|x: u32| async move {
        if x == 0 {
            Err::<u32, BoxError>("no".into())
        } else {
            Ok(x)
        }
    }));
    assert_eq!(
        futures::executor::block_on(svc.clone().oneshot(7)).unwrap(),
        7
    );
    assert!(futures::executor::block_on(svc.oneshot(0)).is_err());
    assert_eq!(layer.budget().snapshot().withdrawals, 0);
}

#[test]
fn no_allocation_unless_a_hedge_is_sent() {
    use alloc_counter::alloc_calls_on_this_thread as allocations;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let ready = tower::service_fn(|x: u32| std::future::ready(Ok::<u32, BoxError>(x)));
        let fixed = fixed(50).build().unwrap();
        let percentile = percentile_layer(0.9, 1, Duration::from_secs(30));
        let handle = percentile.handle();
        let percentile = percentile.layer(ready);
        percentile.clone().oneshot(0).await.unwrap(); // one latency: 0 µs
        assert_eq!(
            refreshed(&handle).await,
            Some(Duration::ZERO),
            "hedging is on"
        );
        for svc in [fixed.layer(ready), percentile] {
            svc.clone().oneshot(1).await.unwrap();
            let before = allocations();
            for i in 0..100 {
                assert_eq!(svc.clone().oneshot(i).await.unwrap(), i);
            }
            assert_eq!(allocations() - before, 0);
        }
        // The counter does see the allocations of a hedge.
        let slow = Replicas::new(|n| {
            if n == 0 {
                Answer::Ok(100)
            } else {
                Answer::Ok(10)
            }
        });
        let svc = fixed.layer(slow);
        let before = allocations();
        svc.oneshot(0).await.unwrap();
        assert!(allocations() > before);
    });
}

#[tokio::test(start_paused = true)]
async fn dropping_the_call_cancels_every_attempt() {
    let replicas = Replicas::new(|_| Answer::Hang);
    let layer = fixed(50).max_hedges(2).build().unwrap();
    let call = layer.layer(replicas.clone()).oneshot(0);
    assert!(tokio::time::timeout(ms(120), call).await.is_err());
    assert_eq!(replicas.calls(), 3);
    assert_eq!(replicas.cancelled(), 3);
}

/// Ready for the first call only: every later `poll_ready` fails.
#[derive(Clone)]
struct ReadyOnce<S> {
    inner: S,
    polls: Arc<AtomicU32>,
}

impl<S: Service<u32, Error = BoxError>> Service<u32> for ReadyOnce<S> {
    type Response = S::Response;
    type Error = BoxError;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.polls.fetch_add(1, Ordering::SeqCst) > 0 {
            return Poll::Ready(Err("not ready".into()));
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: u32) -> S::Future {
        self.inner.call(request)
    }
}

#[tokio::test(start_paused = true)]
async fn a_service_that_cannot_get_ready_for_a_hedge_is_not_hedged() {
    let replicas = Replicas::new(|_| Answer::Ok(300));
    let svc = ReadyOnce {
        inner: replicas.clone(),
        polls: Arc::default(),
    };
    let layer = fixed(50).build().unwrap();
    let (result, took) = timed(&layer.layer(svc), 0).await;
    assert_eq!(
        (result.unwrap(), took),
        (0, ms(300)),
        "the first attempt's answer"
    );
    assert_eq!(replicas.calls(), 1);
    assert_eq!(
        layer.budget().snapshot().withdrawals,
        0,
        "readiness comes before the budget"
    );
}

/// Sends `count` calls at once and waits for them all to succeed.
async fn concurrent<S>(svc: &S, count: usize)
where
    S: Service<u32, Response = u32, Error = BoxError> + Clone,
{
    let calls = (0..count).map(|i| svc.clone().oneshot(i as u32));
    for result in futures::future::join_all(calls).await {
        result.unwrap();
    }
}

fn percentile_layer(p: f64, min_samples: u32, window: Duration) -> HedgeLayer {
    HedgeLayer::builder()
        .percentile(p)
        .min_samples(min_samples)
        .window(window)
        .budget(plenty())
        .build()
        .unwrap()
}

/// The delay `handle` reports once the cached percentile has been refreshed.
async fn refreshed(handle: &Handle) -> Option<Duration> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    handle.delay()
}

/// Whether `estimate` is within the documented precision of `truth`: never below it,
/// at most 1/16 above it.
fn within_precision(estimate: Duration, truth: Duration) -> bool {
    estimate >= truth && (estimate - truth) * 16 <= truth
}

#[tokio::test(start_paused = true)]
async fn no_hedging_until_the_window_holds_min_samples() {
    // Calls 0..19 take 10, 20, ..., 190 ms; call 19 takes 5 s; later first attempts
    // take 5 s and their hedges 10 ms.
    let replicas = Replicas::new(|n| match n {
        0..=18 => Answer::Ok(10 * (u64::from(n) + 1)),
        19 | 20 => Answer::Ok(5_000),
        _ => Answer::Ok(10),
    });
    let layer = percentile_layer(0.9, 20, Duration::from_secs(30));
    let handle = layer.handle();
    let svc = layer.layer(replicas.clone());
    assert_eq!(handle.delay(), None);
    concurrent(&svc, 19).await;
    assert_eq!(handle.snapshot().samples, 19);
    assert_eq!(
        refreshed(&handle).await,
        None,
        "19 latencies: still warming up"
    );

    // A slow call while warming up is not hedged; its latency is the 20th.
    let (result, took) = timed(&svc, 0).await;
    assert_eq!((result.unwrap(), took), (19, ms(5_000)));
    assert_eq!(replicas.calls(), 20);
    assert_eq!(handle.snapshot().hedges, 0);

    // Now the p90 of {10, ..., 190, 5000} ms is 180 ms.
    let delay = refreshed(&handle).await.expect("warmed up");
    assert!(within_precision(delay, ms(180)), "{delay:?}");
    let (result, took) = timed(&svc, 0).await;
    assert_eq!(result.unwrap(), 21, "the hedge answered");
    let sent = replicas.sent_at();
    let hedged_after = Duration::from_millis((sent[21] - sent[20]) as u64);
    // Timers fire on whole milliseconds.
    assert!(
        hedged_after >= delay && hedged_after < delay + ms(1),
        "{hedged_after:?}"
    );
    assert_eq!(took, hedged_after + ms(10));
    assert_eq!(handle.snapshot().hedges, 1);
}

#[tokio::test(start_paused = true)]
async fn the_delay_is_the_percentile_of_a_known_distribution() {
    let mut rng = support::Rng(0x5eed);
    let latencies: Arc<Vec<u64>> = Arc::new((0..1_000).map(|_| 1 + rng.below(2_000)).collect());
    let mut sorted = latencies.to_vec();
    sorted.sort_unstable();
    for p in [0.5, 0.9, 0.95, 0.99] {
        let replicas = {
            let latencies = latencies.clone();
            Replicas::new(move |n| Answer::Ok(latencies[n as usize]))
        };
        let layer = percentile_layer(p, 100, Duration::from_secs(30));
        // Every call starts while the window is empty: none is hedged.
        concurrent(&layer.layer(replicas.clone()), latencies.len()).await;
        assert_eq!(replicas.calls(), 1_000);
        let delay = refreshed(&layer.handle()).await.unwrap();
        let rank = (p * sorted.len() as f64).ceil() as usize;
        let truth = ms(sorted[rank - 1]);
        assert!(
            within_precision(delay, truth),
            "p{p}: delay {delay:?}, the samples' percentile {truth:?}"
        );
        assert_eq!(layer.handle().snapshot().samples, 1_000);
    }
}

#[tokio::test(start_paused = true)]
async fn old_latencies_leave_the_window() {
    // Window of 6 s in slices of 1 s.
    let replicas = Replicas::new(|n| {
        if n < 10 {
            Answer::Ok(100)
        } else {
            Answer::Ok(300)
        }
    });
    let layer = percentile_layer(0.5, 10, Duration::from_secs(6));
    let handle = layer.handle();
    let svc = layer.layer(replicas);
    concurrent(&svc, 10).await;
    let delay = refreshed(&handle).await.unwrap();
    assert!(within_precision(delay, ms(100)), "{delay:?}");
    // Six seconds later, the 100 ms latencies are gone.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(handle.snapshot().samples, 0);
    assert_eq!(
        handle.delay(),
        None,
        "too few latencies: hedging is off again"
    );
    concurrent(&svc, 10).await;
    let delay = refreshed(&handle).await.unwrap();
    assert!(
        within_precision(delay, ms(300)),
        "{delay:?}: only the new latencies"
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_first_attempt_counts_as_slow_and_a_cancelled_hedge_not_at_all() {
    let replicas = Replicas::new(|n| match n {
        0..=9 => Answer::Ok(100),
        10 => Answer::Ok(5_000), // first attempt: cancelled when its hedge wins
        11 => Answer::Ok(10),    // the winning hedge
        12 => Answer::Ok(150),   // first attempt: wins
        _ => Answer::Ok(5_000),  // its hedge: cancelled
    });
    let layer = percentile_layer(0.5, 10, Duration::from_secs(30));
    let handle = layer.handle();
    let svc = layer.layer(replicas.clone());
    concurrent(&svc, 10).await;
    let delay = refreshed(&handle).await.unwrap();

    let (result, took) = timed(&svc, 0).await;
    assert_eq!(result.unwrap(), 11);
    assert!(took > delay, "{took:?}");
    assert_eq!(
        handle.snapshot().samples,
        12,
        "the hedge's latency and the first attempt's time until cancelled"
    );

    let (result, took) = timed(&svc, 0).await;
    assert_eq!((result.unwrap(), took), (12, ms(150)));
    assert_eq!(replicas.cancelled(), 2);
    assert_eq!(
        handle.snapshot().samples,
        13,
        "the first attempt's latency only"
    );
}

#[tokio::test(start_paused = true)]
async fn fast_failures_do_not_drag_the_delay_down() {
    // An outage: the first 300 calls fail after 1 ms. Then the downstream is healthy again
    // and answers in 40 ms. Fast failures say nothing about how long an answer takes: were
    // they latencies, the p95 would be about 1 ms and every healthy call would be hedged,
    // draining the budget that retries share right after the outage.
    let replicas = Replicas::new(|n| {
        if n < 300 {
            Answer::Fail(1)
        } else {
            Answer::Ok(40)
        }
    });
    let layer = percentile_layer(0.95, 100, Duration::from_secs(30));
    let handle = layer.handle();
    let svc = layer.layer(replicas.clone());
    let calls = (0..300).map(|i| svc.clone().oneshot(i));
    for result in futures::future::join_all(calls).await {
        assert!(result.is_err());
    }
    let delay = refreshed(&handle).await;
    for _ in 0..20 {
        let (result, took) = timed(&svc, 0).await;
        result.unwrap();
        assert_eq!(took, ms(40));
    }
    assert_eq!(
        handle.snapshot().hedges,
        0,
        "healthy calls hedged after a delay of {delay:?}"
    );
    assert_eq!(replicas.calls(), 320);
    assert_eq!(delay, None, "no failure is a latency: still warming up");
    assert_eq!(handle.snapshot().samples, 20);
}

#[tokio::test(start_paused = true)]
async fn a_failure_counts_only_when_it_took_at_least_the_delay() {
    // 20 answers of 100 ms set the p50; then 30 failures after 10 ms (faster than the
    // delay: left out), then 30 failures after 500 ms (at least the delay: a call that
    // slow is on the slow side whatever it ended with, so it raises the delay).
    let replicas = Replicas::new(|n| match n {
        0..=19 => Answer::Ok(100),
        20..=49 => Answer::Fail(10),
        _ => Answer::Fail(500),
    });
    let layer = HedgeLayer::builder()
        .percentile(0.5)
        .min_samples(10)
        .budget(empty()) // no hedge goes out: each call is one attempt
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(replicas.clone());
    concurrent(&svc, 20).await;
    let delay = refreshed(&handle).await.unwrap();
    assert!(within_precision(delay, ms(100)), "{delay:?}");

    let fast = (0..30).map(|i| svc.clone().oneshot(i));
    for result in futures::future::join_all(fast).await {
        assert!(result.is_err());
    }
    assert_eq!(handle.snapshot().samples, 20, "fast failures are left out");
    assert_eq!(refreshed(&handle).await, Some(delay));

    let slow = (0..30).map(|i| svc.clone().oneshot(i));
    for result in futures::future::join_all(slow).await {
        assert!(result.is_err());
    }
    assert_eq!(handle.snapshot().samples, 50, "slow failures count");
    let raised = refreshed(&handle).await.unwrap();
    assert!(within_precision(raised, ms(500)), "{raised:?}");
    assert_eq!(replicas.calls(), 80);
}

#[test]
fn every_bad_value_is_a_config_error_naming_its_field() {
    let field = |b: seawall::hedge::Builder| b.build().unwrap_err().field();
    let b = HedgeLayer::builder;
    assert_eq!(field(b().name("")), "name");
    for p in [0.0, 1.0, -0.5, 1.5, f64::NAN, f64::INFINITY] {
        assert_eq!(field(b().percentile(p)), "percentile", "{p}");
    }
    assert_eq!(field(b().max_hedges(0)), "max_hedges");
    assert_eq!(field(b().max_hedges(17)), "max_hedges");
    assert_eq!(field(b().min_samples(0)), "min_samples");
    assert_eq!(field(b().window(ms(5))), "window");
    assert_eq!(field(b().window(Duration::ZERO)), "window");
    assert_eq!(field(b().window(Duration::from_secs(86_401))), "window");
    assert_eq!(field(b().delay(ms(5)).percentile(0.9)), "delay");
    assert_eq!(field(b().delay(ms(5)).window(ms(600))), "window");
    assert_eq!(field(b().delay(ms(5)).min_samples(5)), "min_samples");
    let err = b().percentile(1.5).build().unwrap_err();
    assert_eq!(err.component(), "hedge");
    assert!(err.to_string().contains("1.5"), "{err}");

    // The edges that are valid.
    assert!(b().max_hedges(16).build().is_ok());
    assert!(b().window(ms(6)).build().is_ok());
    assert!(b().window(Duration::from_secs(86_400)).build().is_ok());
    assert!(b().percentile(0.999).min_samples(1).build().is_ok());
    assert!(b().delay(Duration::ZERO).build().is_ok());
    assert!(b().delay(Duration::MAX).build().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_zero_delay_sends_every_copy_at_once() {
    let replicas = Replicas::new(|n| Answer::Ok(100 - 10 * u64::from(n)));
    let layer = fixed(0).max_hedges(2).build().unwrap();
    let (result, took) = timed(&layer.layer(replicas.clone()), 0).await;
    assert_eq!((result.unwrap(), took), (2, ms(80)));
    assert_eq!(replicas.sent_at(), [0, 0, 0]);
    assert_eq!(replicas.cancelled(), 2);
}

#[test]
fn layers_services_handles_and_futures_are_send_sync_static() {
    fn send_sync_static<T: Send + Sync + 'static>() {}
    fn send_static<T: Send + 'static>() {}
    send_sync_static::<HedgeLayer>();
    send_sync_static::<seawall::hedge::Builder>();
    send_sync_static::<Handle>();
    send_sync_static::<seawall::hedge::HedgeSnapshot>();
    send_sync_static::<Hedge<Replicas>>();
    send_static::<<Hedge<Replicas> as Service<u32>>::Future>();
}

#[cfg(feature = "metrics")]
#[test]
fn hedges_wins_denials_and_the_delay_are_reported() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(async {
                // One hedge from the budget's floor, then none.
                let budget = RetryBudget::builder()
                    .ratio(0.0)
                    .min_per_sec(0.1)
                    .build()
                    .unwrap();
                let replicas = Replicas::new(|n| match n {
                    0 | 2 => Answer::Ok(1_000),
                    _ => Answer::Ok(10),
                });
                let layer = HedgeLayer::builder()
                    .name("hedged")
                    .delay(ms(50))
                    .budget(budget)
                    .build()
                    .unwrap();
                let svc = layer.layer(replicas);
                assert_eq!(timed(&svc, 0).await.0.unwrap(), 1); // hedged, won
                assert_eq!(timed(&svc, 0).await.0.unwrap(), 2); // denied
            });
    });
    let snapshot = snapshotter.snapshot().into_vec();
    let find = |name: &str, kind: Option<&str>| {
        snapshot.iter().find_map(|(k, _, _, v)| {
            let key = k.key();
            let has = |label: &str, value: &str| {
                key.labels().any(|l| l.key() == label && l.value() == value)
            };
            let wanted = has("policy", "hedged") && kind.is_none_or(|kind| has("kind", kind));
            (key.name() == name && wanted).then_some(v)
        })
    };
    let counter = |v: Option<&DebugValue>| match v {
        Some(DebugValue::Counter(n)) => Some(*n),
        _ => None,
    };
    assert_eq!(
        counter(find("seawall_retry_attempts_total", Some("hedge"))),
        Some(1)
    );
    assert_eq!(counter(find("seawall_hedge_wins_total", None)), Some(1));
    assert_eq!(
        counter(find("seawall_hedge_budget_denials_total", None)),
        Some(1)
    );
    match find("seawall_hedge_delay_seconds", None) {
        Some(DebugValue::Gauge(delay)) => assert!((delay.into_inner() - 0.05).abs() < 1e-9),
        other => panic!("no delay gauge: {other:?}"),
    }
}
