//! Operator controls and observation through the handle.

use std::time::Duration;

use seawall::circuit_breaker::{Cause, CircuitBreakerLayer, State};
use tower::Layer;

use crate::support::{call, is_open, trips_after, Do, Downstream};

#[tokio::test(start_paused = true)]
async fn force_open_rejects_everything_until_reset() {
    let layer = CircuitBreakerLayer::builder()
        .name("orders")
        .build()
        .unwrap();
    let handle = layer.handle();
    assert_eq!(handle.name(), "orders");
    let downstream = Downstream::default();
    let svc = layer.layer(downstream.clone());
    handle.force_open();
    for _ in 0..5 {
        let result = call(&svc, Do::Succeed).await;
        assert!(is_open(&result));
        let err = result.unwrap_err();
        assert_eq!(
            err.downcast_ref::<seawall::error::CircuitOpen>()
                .unwrap()
                .retry_after(),
            None
        );
    }
    // Time does not end a forced open.
    tokio::time::advance(Duration::from_secs(86_400)).await;
    assert!(is_open(&call(&svc, Do::Succeed).await));
    assert_eq!(downstream.received(), 0);
    assert_eq!(handle.snapshot().rejections, 6);
    handle.reset();
    assert!(call(&svc, Do::Succeed).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn disabled_passes_everything_and_keeps_measuring() {
    let layer = CircuitBreakerLayer::builder()
        .count_window(10)
        .minimum_calls(1)
        .consecutive_failures(1)
        .build()
        .unwrap();
    let handle = layer.handle();
    let downstream = Downstream::default();
    let svc = layer.layer(downstream.clone());
    handle.disable();
    for _ in 0..8 {
        assert!(call(&svc, Do::Fail).await.is_err());
    }
    assert!(call(&svc, Do::Succeed).await.is_ok());
    assert_eq!(handle.state(), State::Disabled);
    assert_eq!(downstream.received(), 9, "nothing rejected");
    let snap = handle.snapshot();
    assert_eq!((snap.calls, snap.failures), (9, 8), "still measuring");
    // Reset resumes normal operation with a fresh window.
    handle.reset();
    assert_eq!(handle.snapshot().calls, 0);
    let _ = call(&svc, Do::Fail).await;
    assert_eq!(handle.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn reset_closes_an_open_breaker_and_restarts_the_backoff() {
    let layer = trips_after(1, Duration::from_secs(1)).build().unwrap();
    let handle = layer.handle();
    let svc = layer.layer(Downstream::default());
    let _ = call(&svc, Do::Fail).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    let _ = call(&svc, Do::Fail).await; // failed probe: open for 2 s
    assert_eq!(handle.snapshot().trips, 2);
    handle.reset();
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(handle.snapshot().trips, 0);
    let _ = call(&svc, Do::Fail).await;
    assert_eq!(
        handle.snapshot().next_probe_in,
        Some(Duration::from_secs(1))
    );
}

#[tokio::test(start_paused = true)]
async fn subscribers_see_every_transition_with_its_cause_and_time() {
    let layer = trips_after(2, Duration::from_secs(3)).build().unwrap();
    let handle = layer.handle();
    let mut transitions = handle.subscribe();
    let svc = layer.layer(Downstream::default());
    let start = tokio::time::Instant::now();
    let _ = call(&svc, Do::Fail).await;
    let _ = call(&svc, Do::Fail).await;
    tokio::time::advance(Duration::from_secs(3)).await;
    let _ = call(&svc, Do::Succeed).await;
    handle.force_open();
    handle.disable();
    handle.reset();
    let mut seen = Vec::new();
    while let Some(t) = transitions.try_recv() {
        seen.push((t.from, t.to, t.cause, t.at - start));
    }
    let s = Duration::from_secs;
    assert_eq!(
        seen,
        vec![
            (State::Closed, State::Open, Cause::ConsecutiveFailures, s(0)),
            (State::Open, State::HalfOpen, Cause::OpenElapsed, s(3)),
            (State::HalfOpen, State::Closed, Cause::ProbesSucceeded, s(3)),
            (State::Closed, State::ForcedOpen, Cause::Forced, s(3)),
            (State::ForcedOpen, State::Disabled, Cause::Disabled, s(3)),
            (State::Disabled, State::Closed, Cause::Reset, s(3)),
        ]
    );
    assert_eq!(transitions.missed(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_slow_subscriber_is_told_how_many_it_missed() {
    let layer = CircuitBreakerLayer::builder().build().unwrap();
    let handle = layer.handle();
    let mut transitions = handle.subscribe();
    for _ in 0..50 {
        handle.force_open();
        handle.reset();
    }
    let mut received = 0;
    while transitions.try_recv().is_some() {
        received += 1;
    }
    assert_eq!(received + transitions.missed(), 100);
    assert!(transitions.missed() > 0);
}

#[tokio::test(start_paused = true)]
async fn subscription_ends_when_the_breaker_is_gone() {
    let layer = CircuitBreakerLayer::builder().build().unwrap();
    let mut transitions = layer.handle().subscribe();
    drop(layer);
    assert!(transitions.recv().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn snapshot_reports_window_counts_and_rates() {
    let layer = CircuitBreakerLayer::builder()
        .count_window(10)
        .minimum_calls(10)
        .slow_calls(Duration::from_millis(10), 1.0)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(Downstream::default());
    for what in [
        Do::Fail,
        Do::Succeed,
        Do::SucceedAfter(Duration::from_millis(20)),
        Do::FailAfter(Duration::from_millis(20)),
    ] {
        let _ = call(&svc, what).await;
    }
    let snap = handle.snapshot();
    assert_eq!(snap.state, State::Closed);
    assert_eq!((snap.calls, snap.failures, snap.slow_calls), (4, 2, 2));
    assert_eq!(snap.failure_rate(), 0.5);
    assert_eq!(snap.slow_call_rate(), 0.5);
    assert_eq!(snap.next_probe_in, None);
    assert!(format!("{handle:?}").contains("Closed"));
}
