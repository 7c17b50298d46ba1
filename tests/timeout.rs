//! Per-attempt timeouts and the call's deadline: every rule, on paused time.
#![cfg(feature = "timeout")]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use seawall::error::{is_rejection, DeadlineExceeded, Elapsed};
use seawall::timeout::{Deadline, DeadlineLayer, TimeoutLayer};
use seawall::BoxError;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

const MS: Duration = Duration::from_millis(1);

/// A service that answers after `delay`, counting calls and futures dropped unfinished.
#[derive(Clone, Default)]
struct Slow {
    delay: Duration,
    calls: Arc<AtomicU32>,
    cancelled: Arc<AtomicU32>,
}

struct CancelGuard(Arc<AtomicU32>, bool);

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Slow {
    fn new(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    fn cancelled(&self) -> u32 {
        self.cancelled.load(Ordering::SeqCst)
    }
}

impl Service<u32> for Slow {
    type Response = u32;
    type Error = BoxError;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<u32, BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, n: u32) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let delay = self.delay;
        let guard = CancelGuard(self.cancelled.clone(), false);
        Box::pin(async move {
            // Move the whole guard in (not just the field the block writes).
            let mut guard = guard;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            guard.1 = true;
            Ok(n)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn an_attempt_within_its_timeout_answers() {
    let svc = TimeoutLayer::new(100 * MS)
        .unwrap()
        .layer(Slow::new(99 * MS));
    assert_eq!(svc.oneshot(7).await.unwrap(), 7);
}

#[tokio::test(start_paused = true)]
async fn an_attempt_ready_at_once_answers() {
    let svc = TimeoutLayer::new(MS)
        .unwrap()
        .layer(Slow::new(Duration::ZERO));
    assert_eq!(svc.oneshot(7).await.unwrap(), 7);
}

#[tokio::test(start_paused = true)]
async fn a_slow_attempt_is_dropped_at_its_timeout() {
    let slow = Slow::new(Duration::from_secs(10));
    let svc = TimeoutLayer::new(250 * MS).unwrap().layer(slow.clone());
    let start = Instant::now();
    let error = svc.oneshot(1).await.unwrap_err();
    assert_eq!(start.elapsed(), 250 * MS);
    assert_eq!(
        error.downcast_ref::<Elapsed>(),
        Some(&Elapsed::new(250 * MS))
    );
    assert!(!is_rejection(&*error), "the attempt was sent");
    assert_eq!(slow.cancelled(), 1, "the attempt's future was dropped");
}

#[tokio::test(start_paused = true)]
async fn the_attempt_timeout_is_capped_by_what_is_left_of_the_deadline() {
    let svc = TimeoutLayer::new(Duration::from_secs(5))
        .unwrap()
        .layer(Slow::new(Duration::from_secs(10)));
    let start = Instant::now();
    let error = Deadline::after(300 * MS)
        .scope(svc.oneshot(1))
        .await
        .unwrap_err();
    assert_eq!(
        start.elapsed(),
        300 * MS,
        "the deadline, not the 5 s timeout"
    );
    let exceeded = error.downcast_ref::<DeadlineExceeded>().unwrap();
    assert!(exceeded.was_sent());
}

#[tokio::test(start_paused = true)]
async fn the_own_timeout_wins_when_it_is_shorter_than_the_deadline() {
    let svc = TimeoutLayer::new(100 * MS)
        .unwrap()
        .layer(Slow::new(Duration::from_secs(10)));
    let error = Deadline::after(Duration::from_secs(5))
        .scope(svc.oneshot(1))
        .await
        .unwrap_err();
    assert!(error.downcast_ref::<Elapsed>().is_some());
}

#[tokio::test(start_paused = true)]
async fn an_attempt_past_its_deadline_is_not_sent() {
    let slow = Slow::new(MS);
    let svc = TimeoutLayer::new(Duration::from_secs(1))
        .unwrap()
        .layer(slow.clone());
    let deadline = Deadline::after(10 * MS);
    tokio::time::advance(10 * MS).await;
    let error = deadline.scope(svc.oneshot(1)).await.unwrap_err();
    let exceeded = error.downcast_ref::<DeadlineExceeded>().unwrap();
    assert!(!exceeded.was_sent());
    assert!(is_rejection(&*error), "a local rejection: nothing was sent");
    assert_eq!(slow.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_bounds_the_whole_call_and_drops_it() {
    let slow = Slow::new(Duration::from_secs(10));
    let svc = DeadlineLayer::new(Duration::from_secs(2))
        .unwrap()
        .layer(slow.clone());
    let start = Instant::now();
    let error = svc.oneshot(1).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert!(error.downcast_ref::<DeadlineExceeded>().unwrap().was_sent());
    assert_eq!(slow.cancelled(), 1);
}

#[tokio::test(start_paused = true)]
async fn inner_layers_see_the_deadline_on_every_poll() {
    let svc = DeadlineLayer::new(Duration::from_secs(2))
        .unwrap()
        .layer(tower::service_fn(|_: ()| async {
            let at_call = Deadline::current().unwrap().remaining();
            tokio::time::sleep(Duration::from_millis(500)).await;
            let later = Deadline::current().unwrap().remaining();
            Ok::<_, BoxError>((at_call, later))
        }));
    let (at_call, later) = svc.oneshot(()).await.unwrap();
    assert_eq!(at_call, Duration::from_secs(2));
    assert_eq!(later, Duration::from_millis(1500));
    assert_eq!(Deadline::current(), None, "restored after the call");
}

#[tokio::test(start_paused = true)]
async fn an_earlier_inherited_deadline_wins_and_a_later_one_is_not_extended() {
    let svc = DeadlineLayer::new(Duration::from_secs(2))
        .unwrap()
        .layer(tower::service_fn(|_: ()| async {
            Ok::<_, BoxError>(Deadline::current().unwrap().remaining())
        }));
    let tighter = Deadline::after(Duration::from_millis(500))
        .scope(svc.clone().oneshot(()))
        .await
        .unwrap();
    assert_eq!(tighter, Duration::from_millis(500));
    let looser = Deadline::after(Duration::from_secs(60))
        .scope(svc.oneshot(()))
        .await
        .unwrap();
    assert_eq!(looser, Duration::from_secs(2), "the layer's own is earlier");
}

#[tokio::test(start_paused = true)]
async fn a_call_whose_inherited_deadline_passed_fails_unsent() {
    let slow = Slow::new(MS);
    let svc = DeadlineLayer::new(Duration::from_secs(2))
        .unwrap()
        .layer(slow.clone());
    let deadline = Deadline::after(MS);
    tokio::time::advance(2 * MS).await;
    let error = deadline.scope(svc.oneshot(1)).await.unwrap_err();
    assert!(is_rejection(&*error));
    assert_eq!(slow.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn inner_errors_pass_through_unchanged() {
    let svc = DeadlineLayer::new(Duration::from_secs(1)).unwrap().layer(
        TimeoutLayer::new(Duration::from_secs(1))
            .unwrap()
            .layer(tower::service_fn(|_: ()| async {
                Err::<(), BoxError>("connection reset".into())
            })),
    );
    let error = svc.oneshot(()).await.unwrap_err();
    assert_eq!(error.to_string(), "connection reset");
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_call_drops_its_attempt_and_leaves_no_deadline_behind() {
    let slow = Slow::new(Duration::from_secs(10));
    let svc = DeadlineLayer::new(Duration::from_secs(5)).unwrap().layer(
        TimeoutLayer::new(Duration::from_secs(5))
            .unwrap()
            .layer(slow.clone()),
    );
    let call = svc.oneshot(1);
    // The caller gives up after 1 s.
    assert!(tokio::time::timeout(Duration::from_secs(1), call)
        .await
        .is_err());
    assert_eq!(slow.cancelled(), 1);
    assert_eq!(Deadline::current(), None);
}

#[tokio::test(start_paused = true)]
async fn huge_timeouts_never_fire_and_never_panic() {
    let svc = DeadlineLayer::new(Duration::MAX).unwrap().layer(
        TimeoutLayer::new(Duration::MAX)
            .unwrap()
            .layer(Slow::new(Duration::from_secs(3600))),
    );
    assert_eq!(svc.oneshot(3).await.unwrap(), 3);
}

#[test]
fn zero_timeouts_are_config_errors() {
    let err = TimeoutLayer::new(Duration::ZERO).unwrap_err();
    assert_eq!((err.component(), err.field()), ("timeout", "timeout"));
    let err = DeadlineLayer::new(Duration::ZERO).unwrap_err();
    assert_eq!((err.component(), err.field()), ("deadline", "timeout"));
}

#[test]
fn services_and_futures_are_send_sync_and_static() {
    fn send_sync_static<T: Send + Sync + 'static>() {}
    send_sync_static::<seawall::timeout::Timeout<Slow>>();
    send_sync_static::<seawall::timeout::DeadlineService<Slow>>();
    fn send_static<T: Send + 'static>() {}
    send_static::<seawall::timeout::future::ResponseFuture<<Slow as Service<u32>>::Future>>();
    send_static::<seawall::timeout::future::DeadlineFuture<<Slow as Service<u32>>::Future>>();
}

#[tokio::test(start_paused = true)]
async fn a_future_built_outside_a_tighter_scope_never_extends_it() {
    let svc = DeadlineLayer::new(Duration::from_secs(60))
        .unwrap()
        .layer(tower::service_fn(|_: ()| async {
            Ok::<_, BoxError>(Deadline::current().unwrap().remaining())
        }));
    // Both futures are built with no deadline around them, then polled inside a 1 s one.
    let scoped = Deadline::after(Duration::from_secs(60))
        .scope(async { Deadline::current().unwrap().remaining() });
    let call = svc.oneshot(());
    let (seen_by_scope, seen_by_call) = Deadline::after(Duration::from_secs(1))
        .scope(async { (scoped.await, call.await.unwrap()) })
        .await;
    assert_eq!(seen_by_scope, Duration::from_secs(1));
    assert_eq!(seen_by_call, Duration::from_secs(1));
}

#[cfg(feature = "bulkhead")]
mod waiting_for_readiness {
    use super::*;
    use seawall::bulkhead::BulkheadLayer;

    /// A deadline over a one-permit bulkhead that queues for up to 1 s; the permit is
    /// held by another caller for `held`.
    async fn call_behind_a_held_permit(
        deadline: Duration,
        held: Duration,
    ) -> (Result<Duration, BoxError>, Duration) {
        let bulkhead = BulkheadLayer::builder()
            .max_concurrent(1)
            .max_wait(Duration::from_secs(1))
            .build()
            .unwrap();
        let inner = bulkhead.layer(tower::service_fn(|hold: Duration| async move {
            let left = Deadline::current().map_or(Duration::MAX, |d| d.remaining());
            tokio::time::sleep(hold).await;
            Ok::<_, BoxError>(left)
        }));
        let svc = DeadlineLayer::new(deadline).unwrap().layer(inner.clone());
        // The holder comes in past the deadline layer.
        let holder = tokio::spawn(inner.oneshot(held));
        tokio::task::yield_now().await;
        let start = Instant::now();
        let result = svc.oneshot(Duration::ZERO).await;
        let took = start.elapsed();
        assert!(holder.await.unwrap().is_ok(), "the holder is not disturbed");
        (result, took)
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_for_a_permit_ends_at_the_deadline_and_the_call_is_not_sent() {
        let (result, took) = call_behind_a_held_permit(100 * MS, 900 * MS).await;
        let error = result.unwrap_err();
        assert!(!error.downcast_ref::<DeadlineExceeded>().unwrap().was_sent());
        assert_eq!(took, 100 * MS, "not the 900 ms the permit was held");
    }

    /// The wait is bounded by the deadline's timeout, but not charged to the call: the
    /// layer cannot tell the caller that began a wait from a later one (after the first
    /// gave up), and a later caller must not inherit an old wait's deadline.
    #[tokio::test(start_paused = true)]
    async fn a_call_after_a_wait_for_a_permit_has_its_own_deadline() {
        let (result, took) = call_behind_a_held_permit(500 * MS, 200 * MS).await;
        assert_eq!(took, 200 * MS);
        assert_eq!(
            result.unwrap(),
            500 * MS,
            "the call's deadline starts at the call"
        );
    }
}

/// Found by the soak: a fired timeout kept its hung attempt alive until the caller
/// dropped the whole future, so the call lived on below while its result had gone up.
#[tokio::test(start_paused = true)]
async fn a_fired_timeout_drops_its_attempt_at_once() {
    let slow = Slow::new(Duration::from_secs(3600));
    let svc = TimeoutLayer::new(5 * MS).unwrap().layer(slow.clone());
    let mut call = Box::pin(svc.oneshot(1));
    let error = (&mut call).await.unwrap_err();
    assert!(error.is::<Elapsed>());
    // The future is still held by the caller, and the attempt is gone already.
    assert_eq!(slow.cancelled(), 1);
    drop(call);
    assert_eq!(slow.cancelled(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_passed_deadline_drops_the_call_at_once() {
    let slow = Slow::new(Duration::from_secs(3600));
    let svc = DeadlineLayer::new(5 * MS).unwrap().layer(slow.clone());
    let mut call = Box::pin(svc.oneshot(1));
    let error = (&mut call).await.unwrap_err();
    assert!(error.is::<DeadlineExceeded>());
    assert_eq!(slow.cancelled(), 1);
}

/// The soak's finding end to end: a bulkhead of one over a timed-out attempt. The next
/// call may take the permit only once the hung call is gone, so the downstream never
/// has more calls alive than the limit.
#[cfg(feature = "bulkhead")]
#[tokio::test(start_paused = true)]
async fn a_bulkhead_permit_never_outlives_the_timed_out_call_below_it() {
    use seawall::bulkhead::BulkheadLayer;

    let slow = Slow::new(Duration::from_secs(3600));
    let bulkhead = BulkheadLayer::builder().max_concurrent(1).build().unwrap();
    let mut svc = bulkhead.layer(TimeoutLayer::new(5 * MS).unwrap().layer(slow.clone()));
    let mut first = Box::pin(svc.ready().await.unwrap().call(1));
    assert!((&mut first).await.unwrap_err().is::<Elapsed>());
    // `first` is still alive here; its call below it is not.
    let alive = slow.calls() - slow.cancelled();
    assert_eq!(alive, 0);
    let second = svc.ready().await.unwrap().call(2);
    tokio::pin!(second);
    assert!(futures::poll!(&mut second).is_pending());
    assert_eq!(
        slow.calls() - slow.cancelled(),
        1,
        "one call alive for a limit of one"
    );
    drop(first);
}

// ===== a readiness wait belongs to nobody after it is given up =====

/// A service that is ready only once its gate is open; each call answers with what was
/// left of the call's deadline when it was made.
#[derive(Clone, Default)]
struct Gate {
    open: Arc<std::sync::atomic::AtomicBool>,
    waker: Arc<std::sync::Mutex<Option<std::task::Waker>>>,
}

impl Gate {
    fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
        if let Some(waker) = self.waker.lock().unwrap().take() {
            waker.wake();
        }
    }

    fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
    }
}

impl Service<()> for Gate {
    type Response = Option<Duration>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Option<Duration>, BoxError>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        if self.open.load(Ordering::SeqCst) {
            return std::task::Poll::Ready(Ok(()));
        }
        *self.waker.lock().unwrap() = Some(cx.waker().clone());
        std::task::Poll::Pending
    }

    fn call(&mut self, (): ()) -> Self::Future {
        std::future::ready(Ok(Deadline::current().map(|d| d.remaining())))
    }
}

/// A caller waits `waited` for readiness and gives up (a timeout around `ready()`); the
/// gate opens; `later` after the wait began, an unrelated call is made. Returns what
/// that call had of its deadline.
async fn call_after_an_abandoned_wait<S>(
    mut svc: S,
    gate: &Gate,
    waited: Duration,
    later: Duration,
) -> Result<Option<Duration>, BoxError>
where
    S: Service<(), Response = Option<Duration>, Error = BoxError>,
{
    let start = Instant::now();
    assert!(
        tokio::time::timeout(waited, svc.ready()).await.is_err(),
        "the service was not ready"
    );
    gate.open();
    tokio::time::sleep_until(start + later).await;
    svc.ready().await?.call(()).await
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_readiness_wait_never_fails_a_later_call() {
    let gate = Gate::default();
    let svc = DeadlineLayer::new(100 * MS).unwrap().layer(gate.clone());
    // The later call comes long after the abandoned wait's deadline would have passed.
    let left = call_after_an_abandoned_wait(svc, &gate, 30 * MS, Duration::from_secs(1))
        .await
        .expect("a call to a ready service is sent");
    assert_eq!(left, Some(100 * MS), "the call has its whole deadline");
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_readiness_wait_never_shortens_a_later_calls_deadline() {
    let gate = Gate::default();
    let svc = DeadlineLayer::new(100 * MS).unwrap().layer(gate.clone());
    // The later call comes while the abandoned wait's deadline is still ahead.
    let left = call_after_an_abandoned_wait(svc, &gate, 30 * MS, 60 * MS)
        .await
        .unwrap();
    assert_eq!(
        left,
        Some(100 * MS),
        "not the 40 ms the abandoned wait had left"
    );
}

#[tokio::test(start_paused = true)]
async fn a_readiness_that_ran_out_and_went_unused_never_fails_a_later_call() {
    let gate = Gate::default();
    let mut svc = DeadlineLayer::new(100 * MS).unwrap().layer(gate.clone());
    {
        // A caller waits until its wait runs out (readiness then says "ready", and the
        // call would fail unsent), and goes away without calling.
        let mut wait = std::pin::pin!(ServiceExt::<()>::ready(&mut svc));
        assert!(futures::poll!(&mut wait).is_pending());
        tokio::time::sleep(150 * MS).await;
        assert!(futures::poll!(&mut wait).is_ready());
    }
    gate.open();
    let left = svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(left, Some(100 * MS));
}

/// A later caller that finds the service not ready (again) waits afresh, whatever an
/// earlier, unused readiness left: a wait that ran out, or one that ended in readiness.
#[tokio::test(start_paused = true)]
async fn a_later_caller_that_finds_the_service_not_ready_waits_afresh() {
    // The gate opens 50 ms into the later caller's wait: its call has a whole deadline.
    async fn later_call<S>(svc: &mut S, gate: &Gate) -> Result<Option<Duration>, BoxError>
    where
        S: Service<(), Response = Option<Duration>, Error = BoxError>,
    {
        let opener = async {
            tokio::time::sleep(50 * MS).await;
            gate.open();
        };
        let (_, left) = futures::join!(opener, async { svc.ready().await?.call(()).await });
        left
    }

    // A wait that ran out (readiness said "ready") and went unused.
    let gate = Gate::default();
    let mut svc = DeadlineLayer::new(100 * MS).unwrap().layer(gate.clone());
    {
        let mut wait = std::pin::pin!(ServiceExt::<()>::ready(&mut svc));
        assert!(futures::poll!(&mut wait).is_pending());
        tokio::time::sleep(150 * MS).await;
        assert!(futures::poll!(&mut wait).is_ready());
    }
    let left = later_call(&mut svc, &gate)
        .await
        .expect("the later caller waited afresh");
    assert_eq!(left, Some(100 * MS));

    // A wait given up; the service became ready (readiness seen, no call), then not.
    let gate = Gate::default();
    let mut svc = DeadlineLayer::new(100 * MS).unwrap().layer(gate.clone());
    assert!(tokio::time::timeout(30 * MS, svc.ready()).await.is_err());
    gate.open();
    std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    gate.close();
    tokio::time::sleep(200 * MS).await;
    let left = later_call(&mut svc, &gate)
        .await
        .expect("the later caller waited afresh");
    assert_eq!(left, Some(100 * MS));
}

#[tokio::test(start_paused = true)]
async fn a_readiness_wait_still_ends_at_the_deadline_and_the_call_is_not_sent() {
    let gate = Gate::default();
    let mut svc = DeadlineLayer::new(100 * MS).unwrap().layer(gate.clone());
    let start = Instant::now();
    // A wait the deadline no longer bounds fails here rather than hang the test.
    let ready = tokio::time::timeout(Duration::from_secs(10), svc.ready())
        .await
        .expect("the readiness wait ends at the deadline")
        .unwrap();
    assert_eq!(start.elapsed(), 100 * MS, "the wait ended at the deadline");
    let error = ready.call(()).await.unwrap_err();
    let exceeded = error.downcast_ref::<DeadlineExceeded>().unwrap();
    assert!(!exceeded.was_sent() && is_rejection(&*error));
}

#[cfg(feature = "policy")]
#[tokio::test(start_paused = true)]
async fn a_policy_never_fails_a_call_for_a_readiness_wait_given_up_before_it() {
    use seawall::policy::Policy;
    for later in [60 * MS, Duration::from_secs(1)] {
        let gate = Gate::default();
        let svc = Policy::builder("payments")
            .deadline(100 * MS)
            .build()
            .unwrap()
            .layer(gate.clone());
        let left = call_after_an_abandoned_wait(svc, &gate, 30 * MS, later)
            .await
            .unwrap_or_else(|error| panic!("the call {later:?} later failed: {error}"));
        assert_eq!(left, Some(100 * MS), "the call {later:?} later");
    }
}

// ===== polled after completion: a loud contract violation, never a silent hang =====

/// Polls `future` to its answer, then once more.
async fn poll_after_completion<F: std::future::Future>(future: F) {
    let mut future = std::pin::pin!(future);
    let _answer = (&mut future).await;
    let _ = futures::poll!(&mut future);
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "`seawall::timeout::future::ResponseFuture` polled after completion")]
async fn an_attempt_polled_after_it_answered_panics() {
    let mut svc = TimeoutLayer::new(MS)
        .unwrap()
        .layer(Slow::new(Duration::ZERO));
    poll_after_completion(svc.call(1)).await;
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "`seawall::timeout::future::ResponseFuture` polled after completion")]
async fn an_attempt_polled_after_it_timed_out_panics() {
    let mut svc = TimeoutLayer::new(MS)
        .unwrap()
        .layer(Slow::new(Duration::from_secs(1)));
    poll_after_completion(svc.call(1)).await;
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "`seawall::timeout::future::ResponseFuture` polled after completion")]
async fn an_attempt_polled_after_its_rejection_panics() {
    let mut svc = TimeoutLayer::new(MS).unwrap().layer(Slow::new(MS));
    let deadline = Deadline::after(MS);
    tokio::time::advance(MS).await;
    // Made (not awaited) inside the scope: wrapped, so that the block yields no future.
    let [attempt] = deadline.scope(async { [svc.call(1)] }).await;
    poll_after_completion(attempt).await;
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "`seawall::timeout::future::DeadlineFuture` polled after completion")]
async fn a_call_polled_after_it_answered_panics() {
    let mut svc = DeadlineLayer::new(MS)
        .unwrap()
        .layer(Slow::new(Duration::ZERO));
    poll_after_completion(svc.call(1)).await;
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "`seawall::timeout::future::DeadlineFuture` polled after completion")]
async fn a_call_polled_after_its_deadline_panics() {
    let mut svc = DeadlineLayer::new(MS)
        .unwrap()
        .layer(Slow::new(Duration::from_secs(1)));
    poll_after_completion(svc.call(1)).await;
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "`seawall::timeout::future::DeadlineFuture` polled after completion")]
async fn a_call_polled_after_its_rejection_panics() {
    let mut svc = DeadlineLayer::new(Duration::from_secs(1))
        .unwrap()
        .layer(Slow::new(MS));
    let deadline = Deadline::after(MS);
    tokio::time::advance(MS).await;
    let [call] = deadline.scope(async { [svc.call(1)] }).await;
    poll_after_completion(call).await;
}

/// The downstream (or the transport: tonic's client does) may enforce the attempt's end
/// it was sent, and give up at the same instant as the attempt timeout: the caller gets
/// the attempt timeout's own error.
#[tokio::test(start_paused = true)]
async fn an_attempt_timeout_wins_a_tie_with_a_downstream_that_enforces_the_same_end() {
    for deadline in [None, Some(Duration::from_secs(10))] {
        let svc = TimeoutLayer::new(200 * MS)
            .unwrap()
            .layer(tower::service_fn(|_: ()| {
                let end = Deadline::current().expect("the attempt's end is the deadline");
                async move {
                    tokio::time::sleep_until(end.instant()).await;
                    Err::<(), BoxError>("transport: timeout expired".into())
                }
            }));
        let start = Instant::now();
        let error = match deadline {
            Some(deadline) => Deadline::after(deadline).scope(svc.oneshot(())).await,
            None => svc.oneshot(()).await,
        }
        .unwrap_err();
        assert_eq!(start.elapsed(), 200 * MS);
        assert!(error.is::<Elapsed>(), "{deadline:?}: {error}");
    }
}
