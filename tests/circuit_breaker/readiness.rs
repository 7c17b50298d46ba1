//! Fail-fast and backpressure readiness.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use seawall::circuit_breaker::{CircuitBreakerLayer, Readiness, State};
use seawall::BoxError;
use tower::{Layer, Service, ServiceExt};

use crate::support::{call, trips_after, Do, Downstream};

/// An inner service that is never ready, and counts how often it was asked.
#[derive(Clone, Default)]
struct NeverReady {
    polls: Arc<AtomicUsize>,
}

impl Service<Do> for NeverReady {
    type Response = &'static str;
    type Error = BoxError;
    type Future = std::future::Ready<Result<&'static str, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        Poll::Pending
    }

    fn call(&mut self, _: Do) -> Self::Future {
        std::future::ready(Ok("unreachable"))
    }
}

#[tokio::test(start_paused = true)]
async fn fail_fast_rejects_without_touching_the_inner_service() {
    let layer = CircuitBreakerLayer::builder().build().unwrap();
    let handle = layer.handle();
    handle.force_open();
    let inner = NeverReady::default();
    let mut svc = layer.layer(inner.clone());
    // Ready at once although the inner service never is.
    let ready = std::future::poll_fn(|cx| svc.poll_ready(cx)).now_or_never();
    assert!(matches!(ready, Some(Ok(()))));
    let result = svc
        .call(Do::Succeed)
        .now_or_never()
        .expect("a ready rejection");
    assert!(result.unwrap_err().is::<seawall::error::CircuitOpen>());
    assert_eq!(inner.polls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn fail_fast_rejection_carries_time_until_the_next_probe() {
    let layer = trips_after(1, Duration::from_secs(4)).build().unwrap();
    let svc = layer.layer(Downstream::default());
    let _ = call(&svc, Do::Fail).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    let err = call(&svc, Do::Succeed).await.unwrap_err();
    let open = err.downcast_ref::<seawall::error::CircuitOpen>().unwrap();
    assert_eq!(open.retry_after(), Some(Duration::from_secs(3)));
}

#[tokio::test(start_paused = true)]
async fn backpressure_is_pending_while_open_and_wakes_for_the_probe() {
    let layer = trips_after(1, Duration::from_secs(2))
        .readiness(Readiness::Backpressure)
        .build()
        .unwrap();
    let handle = layer.handle();
    let downstream = Downstream::default();
    let svc = layer.layer(downstream.clone());
    let _ = call(&svc, Do::Fail).await;
    assert_eq!(handle.state(), State::Open);

    // A caller waits for readiness; it is not rejected.
    let waiting = tokio::spawn({
        let svc = svc.clone();
        async move {
            let started = tokio::time::Instant::now();
            let result = svc.oneshot(Do::Succeed).await;
            (result, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(1999)).await;
    assert!(!waiting.is_finished());
    assert_eq!(downstream.received(), 1);
    let (result, waited) = waiting.await.unwrap();
    assert!(result.is_ok());
    assert_eq!(
        waited,
        Duration::from_secs(2),
        "woken exactly when the probe may go"
    );
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(handle.snapshot().rejections, 0);
}

#[tokio::test(start_paused = true)]
async fn backpressure_waiters_wake_when_a_probe_slot_frees() {
    let layer = trips_after(1, Duration::from_secs(1))
        .half_open_probes(1)
        .readiness(Readiness::Backpressure)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(Downstream::default());
    let _ = call(&svc, Do::Fail).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    // The probe takes 1 s; a second caller waits for it rather than failing.
    let probe = tokio::spawn(
        svc.clone()
            .oneshot(Do::SucceedAfter(Duration::from_secs(1))),
    );
    tokio::task::yield_now().await;
    assert_eq!(handle.state(), State::HalfOpen);
    let second = tokio::spawn(svc.clone().oneshot(Do::Succeed));
    tokio::task::yield_now().await;
    assert!(!second.is_finished());
    assert!(probe.await.unwrap().is_ok());
    assert!(
        second.await.unwrap().is_ok(),
        "woken when the probe closed the breaker"
    );
    assert_eq!(handle.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn backpressure_is_pending_while_forced_open_and_wakes_on_reset() {
    let layer = CircuitBreakerLayer::builder()
        .readiness(Readiness::Backpressure)
        .build()
        .unwrap();
    let handle = layer.handle();
    handle.force_open();
    let svc = layer.layer(Downstream::default());
    let waiting = tokio::spawn(svc.clone().oneshot(Do::Succeed));
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(!waiting.is_finished());
    handle.reset();
    assert!(waiting.await.unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn p2c_routes_around_an_open_endpoint() {
    use tower::balance::p2c::Balance;
    use tower::discover::ServiceList;
    use tower::load::{CompleteOnResponse, PendingRequestsDiscover};

    let bad = Downstream::default();
    let good = Downstream::default();
    let breaker = |name: &str| {
        CircuitBreakerLayer::builder()
            .name(name)
            .without_failure_rate()
            .consecutive_failures(1)
            .open_duration(Duration::from_secs(60))
            .readiness(Readiness::Backpressure)
            .build()
            .unwrap()
    };
    let bad_breaker = breaker("bad");
    let bad_handle = bad_breaker.handle();
    // The bad endpoint fails whatever it is asked to do.
    let bad_svc = tower::util::MapRequestLayer::new(|_: Do| Do::Fail).layer(bad.clone());
    let bad_endpoint = bad_breaker.layer(tower::util::BoxCloneSyncService::new(bad_svc));
    // The bad endpoint fails once and its breaker opens (the clone shares the breaker).
    assert!(bad_endpoint.clone().oneshot(Do::Succeed).await.is_err());
    assert_eq!(bad_handle.state(), State::Open);

    let endpoints = vec![
        bad_endpoint,
        breaker("good").layer(tower::util::BoxCloneSyncService::new(good.clone())),
    ];
    let discover =
        PendingRequestsDiscover::new(ServiceList::new(endpoints), CompleteOnResponse::default());
    let mut balance = Balance::new(discover);
    for _ in 0..200 {
        let svc = balance.ready().await.unwrap();
        assert!(
            svc.call(Do::Succeed).await.is_ok(),
            "the open endpoint is never picked"
        );
    }
    assert_eq!(bad.received(), 1);
    assert_eq!(good.received(), 200);
    assert_eq!(
        bad_handle.snapshot().rejections,
        0,
        "not rejected: not ready"
    );
}

#[tokio::test(start_paused = true)]
async fn a_second_poll_ready_looks_again_instead_of_repeating_an_old_rejection() {
    let layer = CircuitBreakerLayer::builder().build().unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Downstream::default());
    handle.force_open();
    std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    handle.reset();
    // Ready again: the breaker closed meanwhile, so the call goes through.
    std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    assert!(svc.call(Do::Succeed).await.is_ok());
}

/// A waker that counts its wakes.
#[derive(Default)]
struct Counted(AtomicUsize);

impl std::task::Wake for Counted {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Backpressure wakes only as many waiters as can proceed: one probe slot given back
/// wakes one waiter, not every one; closing wakes the rest.
#[tokio::test(start_paused = true)]
async fn one_freed_probe_slot_wakes_one_waiter_not_all() {
    let layer = trips_after(1, Duration::from_secs(1))
        .half_open_probes(1)
        .readiness(Readiness::Backpressure)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(Downstream::default());
    let _ = call(&svc, Do::Fail).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    // The only probe slot is taken by a probe that hangs.
    let mut probe = svc.clone().oneshot(Do::Hang);
    assert!((&mut probe).now_or_never().is_none());
    assert_eq!(handle.snapshot().probes_in_flight, 1);

    // Ten services wait, each polled from its own task (waker).
    let mut waiters: Vec<_> = (0..10)
        .map(|_| (svc.clone(), Arc::new(Counted::default())))
        .collect();
    for (waiter, woken) in &mut waiters {
        let waker = std::task::Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(waiter.poll_ready(&mut cx).is_pending());
    }
    let wakes = |waiters: &[(_, Arc<Counted>)]| -> Vec<usize> {
        waiters
            .iter()
            .map(|(_, w)| w.0.load(Ordering::SeqCst))
            .collect()
    };
    assert_eq!(wakes(&waiters).iter().sum::<usize>(), 0);

    // The probe is dropped: one slot comes back, one waiter is woken.
    drop(probe);
    let woken = wakes(&waiters);
    assert_eq!(
        woken.iter().sum::<usize>(),
        1,
        "one slot, one wake: {woken:?}"
    );
    let first = woken.iter().position(|&n| n == 1).unwrap();
    assert_eq!(first, 0, "the oldest waiter first");

    // It proceeds and its probe closes the breaker: now everyone is woken.
    let (waiter, counted) = &mut waiters[first];
    let waker = std::task::Waker::from(counted.clone());
    let mut cx = Context::from_waker(&waker);
    assert!(matches!(waiter.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    assert!(waiter.call(Do::Succeed).await.is_ok());
    assert_eq!(handle.state(), State::Closed);
    assert!(
        wakes(&waiters).iter().all(|&n| n == 1),
        "{:?}",
        wakes(&waiters)
    );
}
