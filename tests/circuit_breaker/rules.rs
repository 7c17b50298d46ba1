//! Trip rules, windows and the open duration.

use std::time::Duration;

use seawall::circuit_breaker::{Cause, CircuitBreakerLayer, State};
use seawall::classify::{classify_fn, Classification};
use tower::{Layer, ServiceExt};

use crate::support::{call, is_open, Do, Downstream};

#[tokio::test(start_paused = true)]
async fn failure_rate_trips_only_after_minimum_calls() {
    let layer = CircuitBreakerLayer::builder()
        .count_window(10)
        .minimum_calls(4)
        .failure_rate(0.5)
        .build()
        .unwrap();
    let handle = layer.handle();
    let downstream = Downstream::default();
    let svc = layer.layer(downstream.clone());

    // Three failures: 100 % failing, but below the minimum of four calls.
    for _ in 0..3 {
        assert!(call(&svc, Do::Fail).await.is_err());
    }
    assert_eq!(handle.state(), State::Closed);
    // A success completes the minimum with 3/4 = 75 % failing: trip.
    assert!(call(&svc, Do::Succeed).await.is_ok());
    assert_eq!(handle.state(), State::Open);
    assert!(is_open(&call(&svc, Do::Succeed).await));
    assert_eq!(
        downstream.received(),
        4,
        "the rejected call never reached it"
    );
}

#[tokio::test(start_paused = true)]
async fn failure_rate_below_threshold_does_not_trip() {
    let layer = CircuitBreakerLayer::builder()
        .count_window(10)
        .minimum_calls(10)
        .failure_rate(0.5)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(Downstream::default());
    // 4 failures in 10 calls (40 %), then keep the mix going: never 50 %.
    for i in 0..50 {
        let what = if i % 5 < 2 { Do::Fail } else { Do::Succeed };
        let _ = call(&svc, what).await;
        assert_eq!(handle.state(), State::Closed, "call {i}");
    }
    let snap = handle.snapshot();
    assert_eq!(snap.calls, 10);
    assert_eq!(snap.failures, 4);
    assert!((snap.failure_rate() - 0.4).abs() < 1e-9);
}

#[tokio::test(start_paused = true)]
async fn count_window_forgets_old_failures() {
    let layer = CircuitBreakerLayer::builder()
        .count_window(4)
        .minimum_calls(4)
        .failure_rate(0.75)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(Downstream::default());
    // F F S S: 50 %. Then S pushes out one F (25 %), then F F: S S F F... never 3 of 4.
    for what in [
        Do::Fail,
        Do::Fail,
        Do::Succeed,
        Do::Succeed,
        Do::Succeed,
        Do::Fail,
        Do::Fail,
    ] {
        let _ = call(&svc, what).await;
    }
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(handle.snapshot().failures, 2);
    // One more failure: the last four are S F F F = 75 %.
    let _ = call(&svc, Do::Fail).await;
    assert_eq!(handle.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn time_window_forgets_calls_older_than_its_length() {
    let layer = CircuitBreakerLayer::builder()
        .time_window(Duration::from_secs(10), 10)
        .minimum_calls(4)
        .failure_rate(0.5)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(Downstream::default());
    for _ in 0..3 {
        let _ = call(&svc, Do::Fail).await;
    }
    assert_eq!(handle.snapshot().calls, 3);
    // Eleven seconds later those failures have left the window.
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(handle.snapshot().calls, 0);
    for _ in 0..3 {
        let _ = call(&svc, Do::Succeed).await;
    }
    let _ = call(&svc, Do::Fail).await;
    assert_eq!(
        handle.state(),
        State::Closed,
        "1 of 4 failing in the window"
    );
    for _ in 0..3 {
        let _ = call(&svc, Do::Fail).await;
    }
    assert_eq!(handle.state(), State::Open, "4 of 7 failing");
}

#[tokio::test(start_paused = true)]
async fn slow_call_rate_trips() {
    let layer = CircuitBreakerLayer::builder()
        .count_window(10)
        .minimum_calls(5)
        .without_failure_rate()
        .slow_calls(Duration::from_millis(100), 0.6)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(Downstream::default());
    let slow = Do::SucceedAfter(Duration::from_millis(100));
    let fast = Do::SucceedAfter(Duration::from_millis(99));
    for what in [fast, fast, slow, slow] {
        assert!(call(&svc, what).await.is_ok());
    }
    assert_eq!(handle.snapshot().slow_calls, 2);
    assert_eq!(handle.state(), State::Closed);
    // 3 slow of 5 calls = 60 %.
    assert!(call(&svc, slow).await.is_ok());
    assert_eq!(handle.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_trip_and_a_success_resets_the_streak() {
    let layer = CircuitBreakerLayer::builder()
        .without_failure_rate()
        .consecutive_failures(3)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(Downstream::default());
    for what in [Do::Fail, Do::Fail, Do::Succeed, Do::Fail, Do::Fail] {
        let _ = call(&svc, what).await;
    }
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(handle.snapshot().consecutive_failures, 2);
    let mut transitions = handle.subscribe();
    let _ = call(&svc, Do::Fail).await;
    assert_eq!(handle.state(), State::Open);
    let t = transitions.try_recv().unwrap();
    assert_eq!(
        (t.from, t.to, t.cause),
        (State::Closed, State::Open, Cause::ConsecutiveFailures)
    );
}

#[tokio::test(start_paused = true)]
async fn rules_combine_whichever_holds_first_trips() {
    let layer = CircuitBreakerLayer::builder()
        .count_window(100)
        .minimum_calls(50)
        .failure_rate(0.5)
        .consecutive_failures(5)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut transitions = handle.subscribe();
    let svc = layer.layer(Downstream::default());
    for _ in 0..5 {
        let _ = call(&svc, Do::Fail).await;
    }
    assert_eq!(
        transitions.try_recv().unwrap().cause,
        Cause::ConsecutiveFailures
    );
}

#[tokio::test(start_paused = true)]
async fn ignored_outcomes_count_as_nothing() {
    // 404-like results are ignored; only "500" counts as a failure.
    let classifier = classify_fn(|r: &Result<u16, std::convert::Infallible>| match r {
        Ok(500) => Classification::failure(),
        Ok(404) => Classification::ignored(),
        _ => Classification::success(),
    });
    let layer = CircuitBreakerLayer::builder()
        .count_window(4)
        .minimum_calls(2)
        .failure_rate(0.5)
        .classifier(classifier)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(tower::service_fn(|status: u16| async move {
        Ok::<_, std::convert::Infallible>(status)
    }));
    for _ in 0..10 {
        assert_eq!(svc.clone().oneshot(404).await.unwrap(), 404);
    }
    let snap = handle.snapshot();
    assert_eq!((snap.calls, snap.failures), (0, 0));
    svc.clone().oneshot(200).await.unwrap();
    svc.clone().oneshot(500).await.unwrap();
    assert_eq!(handle.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn local_rejections_from_an_inner_breaker_are_ignored_by_the_outer_one() {
    let inner = CircuitBreakerLayer::builder()
        .without_failure_rate()
        .consecutive_failures(1)
        .build()
        .unwrap();
    let outer = CircuitBreakerLayer::builder()
        .without_failure_rate()
        .consecutive_failures(2)
        .build()
        .unwrap();
    let outer_handle = outer.handle();
    let svc = outer.layer(inner.layer(Downstream::default()));
    let _ = call(&svc, Do::Fail).await; // inner trips; outer sees 1 failure
    for _ in 0..10 {
        assert!(is_open(&call(&svc, Do::Fail).await), "inner rejects");
    }
    // The inner rejections are not failures of the downstream.
    assert_eq!(outer_handle.state(), State::Closed);
    assert_eq!(outer_handle.snapshot().consecutive_failures, 1);
}

#[tokio::test(start_paused = true)]
async fn open_duration_grows_caps_and_resets_after_a_healthy_period() {
    let layer = CircuitBreakerLayer::builder()
        .without_failure_rate()
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(1))
        .open_duration_multiplier(3.0)
        .max_open_duration(Duration::from_secs(5))
        .reset_backoff_after(Duration::from_secs(60))
        .jitter(0.0)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(Downstream::default());

    let _ = call(&svc, Do::Fail).await;
    // Each failed probe re-opens for longer: 1 s, 3 s, 5 s (capped), 5 s.
    for expected in [1u64, 3, 5, 5] {
        let snap = handle.snapshot();
        assert_eq!(snap.state, State::Open);
        assert_eq!(snap.next_probe_in, Some(Duration::from_secs(expected)));
        tokio::time::advance(Duration::from_secs(expected) - Duration::from_millis(1)).await;
        assert!(
            is_open(&call(&svc, Do::Fail).await),
            "still open just before {expected}s"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        let _ = call(&svc, Do::Fail).await; // the probe, failing
    }
    // A successful probe closes it; a trip soon after keeps growing.
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(call(&svc, Do::Succeed).await.is_ok());
    assert_eq!(handle.state(), State::Closed);
    tokio::time::advance(Duration::from_secs(10)).await;
    let _ = call(&svc, Do::Fail).await;
    assert_eq!(
        handle.snapshot().next_probe_in,
        Some(Duration::from_secs(5))
    );
    // After a healthy minute closed, the next trip starts from the base again.
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(call(&svc, Do::Succeed).await.is_ok());
    tokio::time::advance(Duration::from_secs(60)).await;
    let _ = call(&svc, Do::Fail).await;
    assert_eq!(
        handle.snapshot().next_probe_in,
        Some(Duration::from_secs(1))
    );
    assert_eq!(handle.snapshot().trips, 1);
}

#[tokio::test(start_paused = true)]
async fn jitter_is_seeded_and_only_shortens() {
    async fn open_for(seed: u64) -> Vec<Duration> {
        let layer = CircuitBreakerLayer::builder()
            .without_failure_rate()
            .consecutive_failures(1)
            .open_duration(Duration::from_secs(10))
            .open_duration_multiplier(1.0)
            .jitter(0.5)
            .seed(seed)
            .build()
            .unwrap();
        let handle = layer.handle();
        let svc = layer.layer(Downstream::default());
        let mut seen = Vec::new();
        let _ = call(&svc, Do::Fail).await;
        for _ in 0..5 {
            let d = handle.snapshot().next_probe_in.unwrap();
            seen.push(d);
            tokio::time::advance(d).await;
            let _ = call(&svc, Do::Fail).await; // failed probe: re-open
        }
        seen
    }
    let a = open_for(7).await;
    assert_eq!(a, open_for(7).await, "same seed, same durations");
    assert_ne!(a, open_for(8).await, "another seed, other durations");
    for d in &a {
        assert!(
            *d > Duration::from_secs(5) && *d <= Duration::from_secs(10),
            "{d:?}"
        );
    }
}
