//! A breaker's hot state lives in a pooled lane that the next breaker reuses once the
//! first is dropped. Calls of the dropped breaker that are still in flight (they hold no
//! reference to it) must never count toward the next one.
//!
//! One test in its own binary, so that no other test takes lanes from the pool.
#![cfg(feature = "circuit-breaker")]

use std::time::Duration;

use futures::FutureExt;
use seawall::circuit_breaker::{CircuitBreakerLayer, State};
use seawall::BoxError;
use tokio::sync::oneshot;
use tower::{Layer, ServiceExt};

fn breaker() -> CircuitBreakerLayer {
    CircuitBreakerLayer::builder()
        .count_window(2)
        .minimum_calls(1)
        .failure_rate(0.5)
        .consecutive_failures(1)
        .build()
        .unwrap()
}

async fn answer(rx: oneshot::Receiver<bool>) -> Result<(), BoxError> {
    match rx.await {
        Ok(true) => Ok(()),
        _ => Err(BoxError::from("failed")),
    }
}

#[tokio::test(start_paused = true)]
async fn late_calls_of_a_dropped_breaker_never_touch_the_next_one() {
    let first = breaker();
    let first_handle = first.handle();
    let svc = first.layer(tower::service_fn(answer));
    // Fill the window with successes: later calls take the fast path (no reference).
    for _ in 0..2 {
        let (tx, rx) = oneshot::channel();
        tx.send(true).unwrap();
        svc.clone().oneshot(rx).await.unwrap();
    }
    let mut late = Vec::new();
    for _ in 0..3 {
        let (tx, rx) = oneshot::channel();
        let mut call = Box::pin(svc.clone().oneshot(rx));
        assert!((&mut call).now_or_never().is_none(), "in flight");
        late.push((tx, call));
    }
    drop(svc);
    drop(first_handle);
    drop(first);

    // The next breaker takes the pooled lane.
    let second = breaker();
    let handle = second.handle();
    let svc = second.layer(tower::service_fn(answer));
    let (tx, rx) = oneshot::channel();
    tx.send(true).unwrap();
    svc.clone().oneshot(rx).await.unwrap();
    assert_eq!(handle.snapshot().calls, 1);

    // The first breaker's calls finish now: one success, two failures. Any of the
    // failures would trip the second breaker if it counted.
    for (i, (tx, call)) in late.into_iter().enumerate() {
        tx.send(i == 0).unwrap();
        let _ = call.await;
    }
    let snap = handle.snapshot();
    assert_eq!(snap.state, State::Closed);
    assert_eq!((snap.calls, snap.failures), (1, 0));

    // And the second breaker works normally.
    let (tx, rx) = oneshot::channel();
    tx.send(false).unwrap();
    assert!(svc.clone().oneshot(rx).await.is_err());
    assert_eq!(handle.state(), State::Open);
    tokio::time::advance(Duration::from_secs(60)).await;
}
