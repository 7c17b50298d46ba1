//! Cancellation and concurrency: dropped futures never leak a probe slot, and the shared
//! state stays consistent when many threads use one breaker.
#![cfg(feature = "circuit-breaker")]

#[path = "support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use seawall::circuit_breaker::{CircuitBreakerLayer, Readiness, State};
use seawall::BoxError;
use tower::{Layer, ServiceExt};

use support::Rng;

/// The downstream: fails or succeeds after a delay, as the request says.
fn downstream(
) -> impl tower::Service<(bool, u64), Response = (), Error = BoxError, Future = impl Send>
       + Clone
       + Send
       + Sync {
    tower::service_fn(|(fail, delay_ms): (bool, u64)| async move {
        if delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        }
        if fail {
            Err::<(), BoxError>("failed".into())
        } else {
            Ok(())
        }
    })
}

#[tokio::test(start_paused = true)]
async fn many_tasks_dropping_futures_at_random_points_never_leak_a_probe_slot() {
    for (seed, readiness) in [
        (1u64, Readiness::FailFast),
        (2, Readiness::Backpressure),
        (3, Readiness::FailFast),
    ] {
        let layer = CircuitBreakerLayer::builder()
            .count_window(20)
            .minimum_calls(5)
            .failure_rate(0.5)
            .consecutive_failures(3)
            .open_duration(Duration::from_millis(50))
            .max_open_duration(Duration::from_millis(200))
            .half_open_probes(3)
            .max_half_open_duration(Duration::from_secs(3600))
            .readiness(readiness)
            .seed(seed)
            .build()
            .unwrap();
        let handle = layer.handle();
        let svc = layer.layer(downstream());
        let max_probes_seen = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for task in 0..64u64 {
            let svc = svc.clone();
            let handle = handle.clone();
            let max_probes_seen = max_probes_seen.clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = Rng(seed * 1_000 + task);
                for _ in 0..200 {
                    let fail = rng.below(100) < 40;
                    let delay = rng.below(30);
                    // Give up after a random time: sometimes before the call is admitted,
                    // sometimes while it is in flight, sometimes never.
                    let patience = Duration::from_millis(rng.below(40));
                    let _ =
                        tokio::time::timeout(patience, svc.clone().oneshot((fail, delay))).await;
                    max_probes_seen
                        .fetch_max(handle.snapshot().probes_in_flight, Ordering::Relaxed);
                    if rng.below(4) == 0 {
                        tokio::time::sleep(Duration::from_millis(rng.below(20))).await;
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(
            max_probes_seen.load(Ordering::Relaxed) <= 3,
            "never more than K probes"
        );
        // Every future is gone: no probe slot may still be held.
        assert_eq!(
            handle.snapshot().probes_in_flight,
            0,
            "seed {seed}: a slot leaked"
        );
        // And the breaker can always close again.
        tokio::time::advance(Duration::from_millis(250)).await;
        for _ in 0..3 {
            let _ = svc.clone().oneshot((false, 0)).await;
        }
        assert_eq!(handle.state(), State::Closed, "seed {seed}");
    }
}

async fn yield_then_answer(fail: bool) -> Result<(), BoxError> {
    tokio::task::yield_now().await;
    if fail {
        Err(BoxError::from("failed"))
    } else {
        Ok(())
    }
}

#[test]
fn shared_state_stays_consistent_across_threads() {
    const WINDOW: u32 = 64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let layer = CircuitBreakerLayer::builder()
            .count_window(WINDOW)
            .minimum_calls(10)
            .failure_rate(0.3)
            .open_duration(Duration::from_millis(1))
            .max_open_duration(Duration::from_millis(2))
            .jitter(0.0)
            .half_open_probes(2)
            .build()
            .unwrap();
        let handle = layer.handle();
        let svc = layer.layer(tower::service_fn(yield_then_answer));
        let stop = Arc::new(AtomicBool::new(false));
        let monitor = {
            let handle = handle.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut samples = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let s = handle.snapshot();
                    assert!(s.calls <= u64::from(WINDOW), "{s:?}");
                    assert!(s.failures <= s.calls, "{s:?}");
                    assert!(s.probes_in_flight + s.probe_successes <= 2, "{s:?}");
                    samples += 1;
                    tokio::task::yield_now().await;
                }
                samples
            })
        };
        let mut tasks = Vec::new();
        for task in 0..32u64 {
            let svc = svc.clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = Rng(task);
                let mut outcomes = 0u64;
                for _ in 0..3_000 {
                    let fail = rng.below(100) < 35;
                    let fut = svc.clone().oneshot(fail);
                    if rng.below(10) == 0 {
                        // Drop it after one poll, wherever it got to.
                        let _ = futures::FutureExt::now_or_never(fut);
                    } else {
                        let _ = fut.await;
                        outcomes += 1;
                    }
                }
                outcomes
            }));
        }
        let mut completed = 0;
        for t in tasks {
            completed += t.await.unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        assert!(monitor.await.unwrap() > 0);
        assert!(completed > 0);
        assert!(
            handle.snapshot().trips > 0 || handle.snapshot().rejections > 0,
            "the test must exercise trips"
        );
        assert_eq!(handle.snapshot().probes_in_flight, 0);

        // Drive the breaker closed and fill the window with successes: the packed totals
        // must come back to exactly "WINDOW calls, no failures" (no drift from races).
        tokio::time::sleep(Duration::from_millis(5)).await;
        for _ in 0..(WINDOW * 4) {
            let _ = svc.clone().oneshot(false).await;
            if handle.state() != State::Closed {
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        }
        let s = handle.snapshot();
        assert_eq!(s.state, State::Closed, "{s:?}");
        assert_eq!(
            (s.calls, s.failures, s.slow_calls),
            (u64::from(WINDOW), 0, 0),
            "{s:?}"
        );
    });
}
