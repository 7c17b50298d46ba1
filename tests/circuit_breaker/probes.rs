//! Half-open probes: exactly K, their outcomes, drops and hung probes.

use std::time::Duration;

use futures::FutureExt;
use seawall::circuit_breaker::{Cause, CircuitBreakerLayer, State};
use tower::{Layer, Service, ServiceExt};

use crate::support::{call, is_open, trips_after, Do, Downstream};

fn tripped_on_first_failure(probes: u32) -> CircuitBreakerLayer {
    trips_after(1, Duration::from_secs(1))
        .half_open_probes(probes)
        .max_half_open_duration(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_exactly_k_probes_and_closes_when_all_succeed() {
    let layer = tripped_on_first_failure(3);
    let handle = layer.handle();
    let downstream = Downstream::default();
    let svc = layer.layer(downstream.clone());
    let _ = call(&svc, Do::Fail).await;
    tokio::time::advance(Duration::from_secs(1)).await;

    // Start three slow probes; the fourth call is rejected while they are in flight.
    let slow = Do::SucceedAfter(Duration::from_millis(50));
    let probes: Vec<_> = (0..3)
        .map(|_| tokio::spawn(svc.clone().oneshot(slow)))
        .collect();
    tokio::task::yield_now().await;
    assert_eq!(handle.state(), State::HalfOpen);
    assert_eq!(handle.snapshot().probes_in_flight, 3);
    let extra = call(&svc, Do::Succeed).await;
    assert!(is_open(&extra));
    assert_eq!(
        extra
            .unwrap_err()
            .downcast_ref::<seawall::error::CircuitOpen>()
            .unwrap()
            .retry_after(),
        None,
        "no probe is scheduled while probes are in flight"
    );
    assert_eq!(downstream.received(), 4, "1 failure + 3 probes");

    for p in probes {
        assert!(p.await.unwrap().is_ok());
    }
    assert_eq!(handle.state(), State::Closed);
    assert!(call(&svc, Do::Succeed).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn one_failed_probe_reopens() {
    let layer = tripped_on_first_failure(3);
    let handle = layer.handle();
    let mut transitions = handle.subscribe();
    let svc = layer.layer(Downstream::default());
    let _ = call(&svc, Do::Fail).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(call(&svc, Do::Succeed).await.is_ok());
    assert_eq!(handle.snapshot().probe_successes, 1);
    let _ = call(&svc, Do::Fail).await;
    assert_eq!(handle.state(), State::Open);
    let causes: Vec<_> = std::iter::from_fn(|| transitions.try_recv())
        .map(|t| (t.from, t.to, t.cause))
        .collect();
    assert_eq!(
        causes,
        vec![
            (State::Closed, State::Open, Cause::ConsecutiveFailures),
            (State::Open, State::HalfOpen, Cause::OpenElapsed),
            (State::HalfOpen, State::Open, Cause::ProbeFailed),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_frees_its_slot_and_counts_as_nothing() {
    let layer = tripped_on_first_failure(1);
    let handle = layer.handle();
    let svc = layer.layer(Downstream::default());
    let _ = call(&svc, Do::Fail).await;
    tokio::time::advance(Duration::from_secs(1)).await;

    // The probe hangs; the caller gives up and drops it before it answers.
    let mut probe = svc.clone().oneshot(Do::Hang);
    assert!((&mut probe).now_or_never().is_none());
    assert_eq!(handle.snapshot().probes_in_flight, 1);
    assert!(
        is_open(&call(&svc, Do::Succeed).await),
        "the only slot is taken"
    );
    drop(probe);
    assert_eq!(handle.snapshot().probes_in_flight, 0);
    assert_eq!(
        handle.state(),
        State::HalfOpen,
        "a dropped probe decides nothing"
    );

    // The next caller gets the slot, succeeds, and closes the breaker.
    assert!(call(&svc, Do::Succeed).await.is_ok());
    assert_eq!(handle.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn poll_ready_only_observes_a_free_probe_slot() {
    let layer = tripped_on_first_failure(1);
    let handle = layer.handle();
    let svc = layer.layer(Downstream::default());
    let _ = call(&svc, Do::Fail).await;
    tokio::time::advance(Duration::from_secs(1)).await;

    let mut readied = svc.clone();
    std::future::poll_fn(|cx| readied.poll_ready(cx))
        .await
        .unwrap();
    assert_eq!(
        handle.snapshot().probes_in_flight,
        0,
        "poll_ready takes no probe slot"
    );
    // The call takes it.
    let mut probe = readied.call(Do::Hang);
    assert!((&mut probe).now_or_never().is_none());
    assert_eq!(handle.snapshot().probes_in_flight, 1);
    drop(probe);
    assert_eq!(handle.snapshot().probes_in_flight, 0);
    assert!(call(&svc, Do::Succeed).await.is_ok());
    assert_eq!(handle.state(), State::Closed);
}

/// `poll_ready` only observes, so two services can both see the last probe slot free:
/// the call decides, and only the first call gets the slot.
#[tokio::test(start_paused = true)]
async fn two_services_readied_for_the_last_probe_slot_send_one_probe() {
    let layer = tripped_on_first_failure(1);
    let handle = layer.handle();
    let downstream = Downstream::default();
    let svc = layer.layer(downstream.clone());
    let _ = call(&svc, Do::Fail).await;
    tokio::time::advance(Duration::from_secs(1)).await;

    let (mut first, mut second) = (svc.clone(), svc.clone());
    std::future::poll_fn(|cx| first.poll_ready(cx))
        .await
        .unwrap();
    std::future::poll_fn(|cx| second.poll_ready(cx))
        .await
        .unwrap();
    let mut probe = first.call(Do::Hang);
    assert!((&mut probe).now_or_never().is_none());
    assert_eq!(handle.snapshot().probes_in_flight, 1);
    let late = second.call(Do::Succeed).await;
    assert!(
        is_open(&late),
        "the slot is taken: the second call is rejected"
    );
    assert_eq!(handle.snapshot().probes_in_flight, 1);
    assert_eq!(downstream.received(), 2, "1 failure + 1 probe");
    drop(probe);
    assert_eq!(handle.snapshot().probes_in_flight, 0);
}

/// A service readied and never called (parked in a `ReadyCache`, or an abandoned
/// `ready()`) must not hold the only probe slot: others probe, and the half-open limit
/// passing counts no trip.
#[tokio::test(start_paused = true)]
async fn a_readied_but_never_called_service_starves_no_one() {
    let layer = tripped_on_first_failure(1);
    let handle = layer.handle();
    let svc = layer.layer(Downstream::default());
    let _ = call(&svc, Do::Fail).await;
    tokio::time::advance(Duration::from_secs(1)).await;

    let mut parked = svc.clone();
    std::future::poll_fn(|cx| parked.poll_ready(cx))
        .await
        .unwrap();
    // Past the half-open limit: nothing failed, so nothing trips.
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(handle.state(), State::HalfOpen);
    assert!(
        call(&svc, Do::Succeed).await.is_ok(),
        "another caller probes while the readied service is parked"
    );
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(
        handle.snapshot().trips,
        1,
        "only the first trip: the limit passing counted none"
    );
    // The parked service is still usable.
    assert!(parked.call(Do::Succeed).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn hung_probes_cannot_keep_the_breaker_half_open() {
    let layer = tripped_on_first_failure(2);
    let handle = layer.handle();
    let svc = layer.layer(Downstream::default());
    let _ = call(&svc, Do::Fail).await;
    tokio::time::advance(Duration::from_secs(1)).await;

    // Both probes hang forever and are never dropped.
    let hung: Vec<_> = (0..2)
        .map(|_| tokio::spawn(svc.clone().oneshot(Do::Hang)))
        .collect();
    tokio::task::yield_now().await;
    assert_eq!(handle.snapshot().probes_in_flight, 2);
    tokio::time::advance(Duration::from_secs(29)).await;
    assert!(is_open(&call(&svc, Do::Succeed).await));
    assert_eq!(handle.state(), State::HalfOpen);

    // After the max half-open duration the breaker is open again...
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(handle.state(), State::Open);
    assert!(is_open(&call(&svc, Do::Succeed).await));
    // ...and probes afresh after the (grown) open duration, ignoring the hung ones.
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(call(&svc, Do::Succeed).await.is_ok());
    assert!(call(&svc, Do::Succeed).await.is_ok());
    assert_eq!(handle.state(), State::Closed);
    for h in hung {
        h.abort();
    }
}

#[tokio::test(start_paused = true)]
async fn late_outcomes_of_calls_admitted_while_closed_do_not_decide_half_open() {
    let layer = tripped_on_first_failure(1);
    let handle = layer.handle();
    let svc = layer.layer(Downstream::default());
    // A slow call admitted while closed...
    let late = tokio::spawn(svc.clone().oneshot(Do::FailAfter(Duration::from_secs(2))));
    tokio::task::yield_now().await;
    // ...the breaker trips and goes half-open; a probe is in flight...
    let _ = call(&svc, Do::Fail).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    let probe = tokio::spawn(
        svc.clone()
            .oneshot(Do::SucceedAfter(Duration::from_secs(5))),
    );
    tokio::task::yield_now().await;
    assert_eq!(handle.state(), State::HalfOpen);
    // ...the old call fails now: it must not re-open the half-open breaker.
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(late.await.unwrap().is_err());
    assert_eq!(handle.state(), State::HalfOpen);
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(probe.await.unwrap().is_ok());
    assert_eq!(handle.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_slow_probe_fails_when_the_slow_call_rule_is_on() {
    let layer = CircuitBreakerLayer::builder()
        .without_failure_rate()
        .consecutive_failures(1)
        .slow_calls(Duration::from_millis(100), 1.0)
        .open_duration(Duration::from_secs(1))
        .jitter(0.0)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(Downstream::default());
    let _ = call(&svc, Do::Fail).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(call(&svc, Do::SucceedAfter(Duration::from_millis(150)))
        .await
        .is_ok());
    assert_eq!(handle.state(), State::Open);
}

/// A hung probe: at the half-open limit the breaker is open again without any call
/// arriving (`state()`, snapshots and subscribers say so), the transition is dated at
/// the limit, and the next open period counts from the limit.
#[tokio::test(start_paused = true)]
async fn a_hung_probe_reopens_the_breaker_at_the_limit_without_a_call() {
    let layer = tripped_on_first_failure(1);
    let handle = layer.handle();
    let mut transitions = handle.subscribe();
    let svc = layer.layer(Downstream::default());
    let start = tokio::time::Instant::now();
    let _ = call(&svc, Do::Fail).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    let hung = tokio::spawn(svc.clone().oneshot(Do::Hang));
    tokio::task::yield_now().await;
    assert_eq!(handle.snapshot().probes_in_flight, 1);

    // Well past the limit (1 s + 30 s), and no call arrives.
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(handle.state(), State::Open, "open again at the limit");
    let snap = handle.snapshot();
    assert_eq!(snap.trips, 2);
    // Open for 2 s (the grown period) from the limit at 31 s: half-open again at 33 s.
    assert_eq!(snap.next_probe_in, Some(Duration::from_secs(1)));
    let seen: Vec<_> = std::iter::from_fn(|| transitions.try_recv())
        .map(|t| (t.from, t.to, t.cause, t.at - start))
        .collect();
    let s = Duration::from_secs;
    assert_eq!(
        seen,
        vec![
            (State::Closed, State::Open, Cause::ConsecutiveFailures, s(0)),
            (State::Open, State::HalfOpen, Cause::OpenElapsed, s(1)),
            (State::HalfOpen, State::Open, Cause::HalfOpenTimeout, s(31)),
        ]
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(handle.state(), State::HalfOpen);
    let t = transitions.try_recv().unwrap();
    assert_eq!(
        (t.to, t.cause, t.at - start),
        (State::HalfOpen, Cause::OpenElapsed, s(33))
    );
    hung.abort();
}

/// Resilience4j's scenario: a hung probe, and the next call arrives well after the
/// half-open limit. The open period counted from the limit is over by then, so that
/// call probes (and closes the breaker) instead of re-opening it from its own arrival.
#[tokio::test(start_paused = true)]
async fn a_call_after_the_half_open_limit_finds_the_open_period_counted_from_the_limit() {
    let layer = tripped_on_first_failure(1);
    let handle = layer.handle();
    let svc = layer.layer(Downstream::default());
    let _ = call(&svc, Do::Fail).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    let hung = tokio::spawn(svc.clone().oneshot(Do::Hang));
    tokio::task::yield_now().await;
    // The limit is at 31 s; re-opened for 2 s from there; the call comes at 40 s.
    tokio::time::advance(Duration::from_secs(39)).await;
    assert!(call(&svc, Do::Succeed).await.is_ok(), "the call is a probe");
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(handle.snapshot().trips, 2);
    hung.abort();
}

/// A hung probe's half-open limit is seen by a subscriber waiting in `recv`, with no
/// call and no other look at the breaker, dated at the limit.
#[tokio::test(start_paused = true)]
async fn a_subscriber_waiting_in_recv_sees_a_hung_probe_reopen_the_breaker_at_the_limit() {
    let layer = tripped_on_first_failure(1);
    let handle = layer.handle();
    let mut transitions = handle.subscribe();
    let svc = layer.layer(Downstream::default());
    let start = tokio::time::Instant::now();
    let _ = call(&svc, Do::Fail).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    let hung = tokio::spawn(svc.clone().oneshot(Do::Hang));
    tokio::task::yield_now().await;
    assert_eq!(handle.snapshot().probes_in_flight, 1);
    let seen: Vec<_> = std::iter::from_fn(|| transitions.try_recv())
        .map(|t| t.to)
        .collect();
    assert_eq!(seen, vec![State::Open, State::HalfOpen]);
    // The paused clock jumps to the next timer: the limit (31 s), if `recv` set one.
    let next = tokio::time::timeout(Duration::from_secs(60), transitions.recv())
        .await
        .expect("recv sees the half-open limit pass without a call")
        .unwrap();
    assert_eq!(
        (next.from, next.to, next.cause, next.at - start),
        (
            State::HalfOpen,
            State::Open,
            Cause::HalfOpenTimeout,
            Duration::from_secs(31)
        )
    );
    assert_eq!(tokio::time::Instant::now() - start, Duration::from_secs(31));
    hung.abort();
}

/// The end of an open period is seen without a call: by `state()`, and by a subscriber
/// waiting in `recv`, dated at the end of the period.
#[tokio::test(start_paused = true)]
async fn the_end_of_an_open_period_is_seen_without_a_call() {
    let layer = tripped_on_first_failure(1);
    let handle = layer.handle();
    let mut transitions = handle.subscribe();
    let svc = layer.layer(Downstream::default());
    let start = tokio::time::Instant::now();
    let _ = call(&svc, Do::Fail).await;
    assert_eq!(transitions.recv().await.unwrap().to, State::Open);
    // A subscriber waiting in `recv` (the paused clock jumps to the next timer).
    let next = tokio::time::timeout(Duration::from_secs(10), transitions.recv())
        .await
        .expect("recv sees the open period end without a call")
        .unwrap();
    assert_eq!(
        (next.from, next.to, next.cause, next.at - start),
        (
            State::Open,
            State::HalfOpen,
            Cause::OpenElapsed,
            Duration::from_secs(1)
        )
    );
    assert_eq!(handle.state(), State::HalfOpen);
}
