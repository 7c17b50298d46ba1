//! The retry layer: when it retries, how long it waits, and what it never does.
#![cfg(feature = "retry")]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use seawall::classify::{classify_fn, Classification};
use seawall::retry::backoff::{ConstantBackoff, ExponentialBackoff, Jitter};
use seawall::retry::budget::RetryBudget;
use seawall::retry::replay::Replay;
use seawall::retry::RetryLayer;
use seawall::BoxError;
use tower::{Layer, ServiceExt};

/// A downstream that fails its first `failures` calls (then succeeds), counting calls.
#[derive(Clone)]
struct Flaky {
    calls: Arc<AtomicU32>,
    failures: u32,
}

impl Flaky {
    fn new(failures: u32) -> Self {
        Self {
            calls: Arc::default(),
            failures,
        }
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    fn service(
        &self,
    ) -> impl tower::Service<u32, Response = u32, Error = BoxError, Future = impl Send> + Clone
    {
        let this = self.clone();
        tower::service_fn(move |request: u32| {
            let n = this.calls.fetch_add(1, Ordering::SeqCst);
            let fail = n < this.failures;
            async move {
                if fail {
                    Err(BoxError::from(format!("failure {}", n + 1)))
                } else {
                    Ok(request)
                }
            }
        })
    }
}

fn constant(ms: u64) -> ConstantBackoff {
    ConstantBackoff::new(Duration::from_millis(ms))
}

#[tokio::test(start_paused = true)]
async fn retries_until_success_within_max_attempts() {
    let flaky = Flaky::new(2);
    let layer = RetryLayer::builder().backoff(constant(10)).build().unwrap();
    assert_eq!(layer.layer(flaky.service()).oneshot(7).await.unwrap(), 7);
    assert_eq!(flaky.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn gives_up_after_max_attempts_with_the_last_failure() {
    let flaky = Flaky::new(u32::MAX);
    let layer = RetryLayer::builder()
        .max_attempts(4)
        .backoff(constant(10))
        .build()
        .unwrap();
    let err = layer.layer(flaky.service()).oneshot(1).await.unwrap_err();
    assert_eq!(err.to_string(), "failure 4");
    assert_eq!(flaky.calls(), 4);
    // One attempt means no retry.
    let once = Flaky::new(u32::MAX);
    let layer = RetryLayer::builder().max_attempts(1).build().unwrap();
    assert!(layer.layer(once.service()).oneshot(1).await.is_err());
    assert_eq!(once.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn waits_as_the_backoff_says() {
    let flaky = Flaky::new(u32::MAX);
    let backoff = ExponentialBackoff::builder()
        .base(Duration::from_millis(10))
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let layer = RetryLayer::builder()
        .max_attempts(4)
        .backoff(backoff)
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    assert!(layer.layer(flaky.service()).oneshot(1).await.is_err());
    assert_eq!(started.elapsed(), Duration::from_millis(10 + 20 + 40));
}

#[tokio::test(start_paused = true)]
async fn non_retryable_failures_are_not_retried() {
    let flaky = Flaky::new(u32::MAX);
    let classifier = classify_fn(|r: &Result<u32, BoxError>| match r {
        Ok(_) => Classification::success(),
        Err(_) => Classification::failure().retryable(false),
    });
    let layer = RetryLayer::builder()
        .classifier(classifier)
        .build()
        .unwrap();
    assert!(layer.layer(flaky.service()).oneshot(1).await.is_err());
    assert_eq!(flaky.calls(), 1);
}

#[cfg(feature = "bulkhead")] // the rejection used here
#[tokio::test(start_paused = true)]
async fn local_rejections_are_never_retried_and_spend_no_budget() {
    let calls = Arc::new(AtomicU32::new(0));
    let rejecting = {
        let calls = calls.clone();
        tower::service_fn(move |_: ()| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), BoxError>(Box::new(seawall::error::BulkheadFull::new())) }
        })
    };
    let layer = RetryLayer::builder().build().unwrap();
    let budget = layer.budget().unwrap().clone();
    let err = layer.layer(rejecting).oneshot(()).await.unwrap_err();
    assert!(err.is::<seawall::error::BulkheadFull>());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let s = budget.snapshot();
    assert_eq!((s.withdrawals, s.denials), (0, 0));

    // The retry stage checks for itself: a classifier that calls every error retryable
    // (it does not know seawall's rejections) gets no retry of a rejection either.
    let naive = classify_fn(|r: &Result<(), BoxError>| match r {
        Ok(_) => Classification::success(),
        Err(_) => Classification::failure(),
    });
    let layer = RetryLayer::builder().classifier(naive).build().unwrap();
    let budget = layer.budget().unwrap().clone();
    let calls_before = calls.load(Ordering::SeqCst);
    let rejecting = {
        let calls = calls.clone();
        tower::service_fn(move |_: ()| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), BoxError>(Box::new(seawall::error::BulkheadFull::new())) }
        })
    };
    let err = layer.layer(rejecting).oneshot(()).await.unwrap_err();
    assert!(err.is::<seawall::error::BulkheadFull>());
    assert_eq!(calls.load(Ordering::SeqCst), calls_before + 1);
    let s = budget.snapshot();
    assert_eq!((s.withdrawals, s.denials), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn an_exhausted_budget_returns_the_last_real_failure() {
    let flaky = Flaky::new(u32::MAX);
    let budget = RetryBudget::builder()
        .ratio(0.0)
        .min_per_sec(0.0)
        .build()
        .unwrap();
    let layer = RetryLayer::builder()
        .budget(budget.clone())
        .build()
        .unwrap();
    let err = layer.layer(flaky.service()).oneshot(1).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "failure 1",
        "the real failure, not a budget error"
    );
    assert_eq!(flaky.calls(), 1);
    let s = budget.snapshot();
    assert_eq!((s.deposits, s.withdrawals, s.denials), (1, 0, 1));
}

#[tokio::test(start_paused = true)]
async fn server_pushback_sets_the_delay_capped() {
    let pushback = |secs: u64| {
        classify_fn(move |r: &Result<u32, BoxError>| match r {
            Ok(_) => Classification::success(),
            Err(_) => Classification::failure().with_pushback(Duration::from_secs(secs)),
        })
    };
    for (asked, cap, waited) in [(5, 30, 5), (315_360_000, 30, 30), (60, 10, 10)] {
        let flaky = Flaky::new(1);
        let layer = RetryLayer::builder()
            .classifier(pushback(asked))
            .backoff(constant(1))
            .max_pushback(Duration::from_secs(cap))
            .build()
            .unwrap();
        let started = tokio::time::Instant::now();
        assert!(layer.layer(flaky.service()).oneshot(1).await.is_ok());
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(waited),
            "asked {asked}s, cap {cap}s"
        );
    }
}

/// Replays nothing: every request can be sent only once.
#[derive(Clone, Copy)]
struct NoReplay;

impl<Req> Replay<Req> for NoReplay {
    fn replay(&self, _: &Req) -> Option<Req> {
        None
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_that_cannot_be_copied_is_sent_once() {
    let flaky = Flaky::new(u32::MAX);
    let layer = RetryLayer::builder().replay(NoReplay).build().unwrap();
    assert!(layer.layer(flaky.service()).oneshot(1).await.is_err());
    assert_eq!(flaky.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_gives_up_while_waiting_stops_the_retries() {
    let flaky = Flaky::new(u32::MAX);
    let layer = RetryLayer::builder()
        .backoff(constant(1_000))
        .build()
        .unwrap();
    let mut call = Box::pin(layer.layer(flaky.service()).oneshot(1));
    assert!((&mut call).now_or_never().is_none());
    assert_eq!(
        flaky.calls(),
        1,
        "the first attempt failed; now waiting 1 s"
    );
    drop(call);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(flaky.calls(), 1, "no retry after the caller left");
}

/// A budget of exactly `retries` retries per 10 s window, and no ratio: easy to count.
fn floor_of(retries: u32) -> RetryBudget {
    RetryBudget::builder()
        .ratio(0.0)
        .min_per_sec(f64::from(retries) / 10.0)
        .window(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The budget's balance and the retries it counts as taken.
fn taken(budget: &RetryBudget) -> (f64, u64) {
    let s = budget.snapshot();
    (s.balance, s.withdrawals)
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_gives_up_during_the_backoff_gets_the_retry_refunded() {
    let flaky = Flaky::new(u32::MAX);
    let budget = floor_of(10);
    let layer = RetryLayer::builder()
        .budget(budget.clone())
        .backoff(constant(1_000))
        .build()
        .unwrap();
    let mut call = Box::pin(layer.layer(flaky.service()).oneshot(1));
    assert!((&mut call).now_or_never().is_none());
    assert_eq!(taken(&budget), (9.0, 1), "the retry is taken when decided");
    tokio::time::advance(Duration::from_millis(500)).await;
    drop(call);
    assert_eq!(taken(&budget), (10.0, 0), "never sent: refunded");
    assert_eq!(flaky.calls(), 1);
}

/// A downstream whose every call fails, and which is ready for its first call only:
/// afterwards `poll_ready` fails (`ready_fails`) or never completes.
#[derive(Clone)]
struct ReadyOnce {
    calls: Arc<AtomicU32>,
    readied: Arc<AtomicU32>,
    ready_fails: bool,
}

impl ReadyOnce {
    fn new(ready_fails: bool) -> Self {
        Self {
            calls: Arc::default(),
            readied: Arc::default(),
            ready_fails,
        }
    }
}

impl tower::Service<u32> for ReadyOnce {
    type Response = u32;
    type Error = BoxError;
    type Future = std::future::Ready<Result<u32, BoxError>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        if self.readied.fetch_add(1, Ordering::SeqCst) == 0 {
            std::task::Poll::Ready(Ok(()))
        } else if self.ready_fails {
            std::task::Poll::Ready(Err("connection pool closed".into()))
        } else {
            std::task::Poll::Pending
        }
    }

    fn call(&mut self, _: u32) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Err("failure".into()))
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_whose_service_fails_to_become_ready_is_refunded() {
    let downstream = ReadyOnce::new(true);
    let budget = floor_of(10);
    let layer = RetryLayer::builder()
        .budget(budget.clone())
        .backoff(constant(10))
        .build()
        .unwrap();
    let err = layer
        .layer(downstream.clone())
        .oneshot(1)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "connection pool closed");
    assert_eq!(downstream.calls.load(Ordering::SeqCst), 1, "no retry sent");
    assert_eq!(taken(&budget), (10.0, 0), "its retry refunded");
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_gives_up_while_the_service_is_not_ready_gets_the_retry_refunded() {
    let downstream = ReadyOnce::new(false);
    let budget = floor_of(10);
    let layer = RetryLayer::builder()
        .budget(budget.clone())
        .backoff(constant(10))
        .build()
        .unwrap();
    let mut call = Box::pin(layer.layer(downstream.clone()).oneshot(1));
    assert!((&mut call).now_or_never().is_none()); // first attempt failed; backoff
    tokio::time::advance(Duration::from_millis(20)).await;
    assert!((&mut call).now_or_never().is_none()); // backoff over; waiting for readiness
    assert!(downstream.readied.load(Ordering::SeqCst) >= 2);
    assert_eq!(taken(&budget), (9.0, 1));
    drop(call);
    assert_eq!(taken(&budget), (10.0, 0));
    assert_eq!(downstream.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_refund_after_the_retry_came_back_with_its_window_adds_nothing() {
    // The server asks for 20 s; the budget's window is 10 s: the retry's slot leaves the
    // window (and the retry comes back) while the call waits. Dropping the call then
    // must not give it back a second time.
    let flaky = Flaky::new(u32::MAX);
    let budget = floor_of(10);
    let classifier = classify_fn(|r: &Result<u32, BoxError>| match r {
        Ok(_) => Classification::success(),
        Err(_) => Classification::failure().with_pushback(Duration::from_secs(20)),
    });
    let layer = RetryLayer::builder()
        .budget(budget.clone())
        .classifier(classifier)
        .build()
        .unwrap();
    let mut call = Box::pin(layer.layer(flaky.service()).oneshot(1));
    assert!((&mut call).now_or_never().is_none());
    assert_eq!(taken(&budget), (9.0, 1));
    tokio::time::advance(Duration::from_secs(12)).await;
    assert_eq!(taken(&budget), (10.0, 1), "its slot left the window");
    drop(call);
    assert_eq!(
        taken(&budget),
        (10.0, 0),
        "not 11: refunded once, in the counter only"
    );
}

#[tokio::test(start_paused = true)]
async fn retries_that_are_sent_stay_spent() {
    let flaky = Flaky::new(2);
    let budget = floor_of(10);
    let layer = RetryLayer::builder()
        .budget(budget.clone())
        .backoff(constant(10))
        .build()
        .unwrap();
    assert_eq!(layer.layer(flaky.service()).oneshot(7).await.unwrap(), 7);
    assert_eq!(flaky.calls(), 3);
    assert_eq!(taken(&budget), (8.0, 2));
}

#[tokio::test(start_paused = true)]
async fn a_full_outage_costs_at_most_one_plus_the_budget_ratio() {
    // 1 000 requests to a downstream that fails every call: a naive 3-attempt retry
    // would send 3 000 calls. The budget (20 %, no floor) allows 200 retries.
    let flaky = Flaky::new(u32::MAX);
    let budget = RetryBudget::builder()
        .ratio(0.2)
        .min_per_sec(0.0)
        .build()
        .unwrap();
    let layer = RetryLayer::builder()
        .budget(budget.clone())
        .backoff(constant(1))
        .build()
        .unwrap();
    let svc = layer.layer(flaky.service());
    for i in 0..1_000 {
        assert!(svc.clone().oneshot(i).await.is_err());
    }
    assert_eq!(flaky.calls(), 1_200, "amplification exactly 1.2");
    assert_eq!(budget.snapshot().withdrawals, 200);
}

#[test]
fn zero_attempts_is_a_config_error() {
    let err = RetryLayer::builder().max_attempts(0).build().unwrap_err();
    assert_eq!((err.component(), err.field()), ("retry", "max_attempts"));
}

#[test]
fn layers_and_services_are_send_sync_static() {
    fn send_sync_static<T: Send + Sync + 'static>() {}
    send_sync_static::<RetryLayer>();
    send_sync_static::<seawall::retry::Retry<tower::util::BoxCloneSyncService<u32, u32, BoxError>>>(
    );
    send_sync_static::<RetryBudget>();
}

#[cfg(feature = "timeout")]
mod deadline {
    use super::*;
    use seawall::timeout::Deadline;
    use tokio::time::Instant;

    fn budget() -> RetryBudget {
        RetryBudget::builder().min_per_sec(100.0).build().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_backoff_that_would_end_past_the_deadline_is_not_started() {
        let flaky = Flaky::new(1);
        let layer = RetryLayer::builder()
            .backoff(constant(300))
            .budget(budget())
            .build()
            .unwrap();
        let svc = layer.layer(flaky.service());
        let start = Instant::now();
        let result = Deadline::after(Duration::from_millis(250))
            .scope(svc.oneshot(1))
            .await;
        assert_eq!(
            result.unwrap_err().to_string(),
            "failure 1",
            "the real failure, now"
        );
        assert_eq!(start.elapsed(), Duration::ZERO, "no wait");
        assert_eq!(flaky.calls(), 1);
        assert_eq!(
            layer.budget().unwrap().snapshot().withdrawals,
            0,
            "no budget spent"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_backoff_that_ends_in_time_is_retried() {
        let flaky = Flaky::new(1);
        let layer = RetryLayer::builder()
            .backoff(constant(200))
            .budget(budget())
            .build()
            .unwrap();
        let svc = layer.layer(flaky.service());
        let result = Deadline::after(Duration::from_millis(250))
            .scope(svc.oneshot(1))
            .await;
        assert_eq!(result.unwrap(), 1);
        assert_eq!(flaky.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pushback_past_the_deadline_fails_now() {
        let flaky = Flaky::new(1);
        // The server asks for 5 s; the caller has 1 s.
        let classifier = classify_fn(|result: &Result<u32, BoxError>| match result {
            Ok(_) => Classification::success(),
            Err(_) => Classification::failure().with_pushback(Duration::from_secs(5)),
        });
        let layer = RetryLayer::builder()
            .classifier(classifier)
            .budget(budget())
            .build()
            .unwrap();
        let svc = layer.layer(flaky.service());
        let start = Instant::now();
        let result = Deadline::after(Duration::from_secs(1))
            .scope(svc.oneshot(1))
            .await;
        assert!(result.is_err());
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(flaky.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn with_no_deadline_the_backoff_is_not_bounded() {
        let flaky = Flaky::new(1);
        let layer = RetryLayer::builder()
            .backoff(constant(300))
            .budget(budget())
            .build()
            .unwrap();
        let svc = layer.layer(flaky.service());
        assert_eq!(svc.oneshot(1).await.unwrap(), 1);
        assert_eq!(flaky.calls(), 2);
    }
}

#[cfg(feature = "circuit-breaker")]
#[tokio::test(start_paused = true)]
async fn a_retry_rejected_by_the_breaker_below_goes_back_to_the_budget() {
    use seawall::circuit_breaker::CircuitBreakerLayer;
    let flaky = Flaky::new(10);
    // The first attempt's failure trips the breaker; the retry is rejected by it.
    let breaker = CircuitBreakerLayer::builder()
        .without_failure_rate()
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(60))
        .build()
        .unwrap();
    let layer = RetryLayer::builder()
        .backoff(constant(1))
        .budget(RetryBudget::builder().min_per_sec(100.0).build().unwrap())
        .build()
        .unwrap();
    let svc = layer.layer(breaker.layer(flaky.service()));
    let error = svc.oneshot(1).await.unwrap_err();
    assert!(error.is::<seawall::error::CircuitOpen>());
    assert_eq!(flaky.calls(), 1, "the retry reached nobody");
    let budget = layer.budget().unwrap().snapshot();
    assert_eq!(budget.withdrawals, 0, "so it was refunded");
}

/// A retry future polled again after its result: a contract violation that panics with
/// a clear message, instead of polling a finished attempt (here one that would answer
/// `Pending` forever) or hanging.
#[tokio::test(start_paused = true)]
#[should_panic(expected = "`seawall::retry::future::ResponseFuture` polled after completion")]
async fn a_future_polled_after_completion_panics() {
    use tower::Service;
    // A finished `Fuse` answers `Pending` forever, registering nothing.
    let client = tower::service_fn(|x: u32| std::future::ready(Ok::<_, BoxError>(x)).fuse());
    let mut svc = RetryLayer::builder().build().unwrap().layer(client);
    let mut future = std::pin::pin!(svc.ready().await.unwrap().call(7));
    assert_eq!(future.as_mut().await.unwrap(), 7);
    let _ = futures::poll!(future.as_mut());
}

/// The same after a retry whose service failed to become ready: polled again, it must
/// not ready the service and send the request once more.
#[tokio::test(start_paused = true)]
#[should_panic(expected = "`seawall::retry::future::ResponseFuture` polled after completion")]
async fn a_future_that_ended_unready_panics_when_polled_again() {
    use tower::Service;
    let downstream = ReadyOnce::new(true);
    let mut svc = RetryLayer::builder()
        .backoff(constant(10))
        .build()
        .unwrap()
        .layer(downstream.clone());
    let mut future = std::pin::pin!(svc.ready().await.unwrap().call(1));
    assert!(future.as_mut().await.is_err());
    let _ = futures::poll!(future.as_mut());
    unreachable!("sent {} times", downstream.calls.load(Ordering::SeqCst));
}
