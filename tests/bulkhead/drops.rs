//! Permits come back whenever a caller gives up, and the limit holds under load.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use seawall::bulkhead::BulkheadLayer;
use seawall::BoxError;
use tower::{Layer, Service, ServiceExt};

use crate::support::{Do, Downstream, Rng};

#[tokio::test(start_paused = true)]
async fn dropping_at_every_point_gives_the_permit_back() {
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .max_wait(Duration::from_secs(1))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(Downstream::default());

    // After poll_ready, before call.
    let mut reserved = svc.clone();
    std::future::poll_fn(|cx| reserved.poll_ready(cx))
        .await
        .unwrap();
    assert_eq!(handle.in_flight(), 1);
    drop(reserved);
    assert_eq!(handle.in_flight(), 0);

    // After call, before the future is polled.
    let mut called = svc.clone();
    std::future::poll_fn(|cx| called.poll_ready(cx))
        .await
        .unwrap();
    let future = called.call(Do::Hang);
    drop(future);
    assert_eq!(handle.in_flight(), 0);

    // While the call is in flight.
    let mut in_flight = Box::pin(svc.clone().oneshot(Do::Hang));
    assert!((&mut in_flight).now_or_never().is_none());
    assert_eq!(handle.in_flight(), 1);
    drop(in_flight);
    assert_eq!(handle.in_flight(), 0);

    // While waiting in the queue.
    let hold = Box::pin(svc.clone().oneshot(Do::Hang));
    let mut hold = hold;
    assert!((&mut hold).now_or_never().is_none());
    let mut waiting = Box::pin(svc.clone().oneshot(Do::Succeed));
    assert!((&mut waiting).now_or_never().is_none());
    assert_eq!(handle.waiting(), 1);
    drop(waiting);
    assert_eq!(handle.waiting(), 0);
    drop(hold);
    assert_eq!((handle.in_flight(), handle.waiting()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn many_tasks_dropping_at_random_points_never_leak_a_permit() {
    for (seed, max_wait) in [(1u64, Duration::ZERO), (2, Duration::from_millis(20))] {
        let layer = BulkheadLayer::builder()
            .max_concurrent(8)
            .max_wait(max_wait)
            .build()
            .unwrap();
        let handle = layer.handle();
        let max_seen = Arc::new(AtomicU32::new(0));
        let svc = layer.layer(Downstream::default());
        let mut tasks = Vec::new();
        for task in 0..64u64 {
            let svc = svc.clone();
            let handle = handle.clone();
            let max_seen = max_seen.clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = Rng(seed * 1_000 + task);
                for _ in 0..200 {
                    let what = match rng.below(4) {
                        0 => Do::Hang,
                        1 => Do::Fail,
                        _ => Do::SucceedAfter(Duration::from_millis(rng.below(30))),
                    };
                    let patience = Duration::from_millis(rng.below(40));
                    let _ = tokio::time::timeout(patience, svc.clone().oneshot(what)).await;
                    max_seen.fetch_max(handle.in_flight(), Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(max_seen.load(Ordering::Relaxed) <= 8);
        assert_eq!(
            (handle.in_flight(), handle.waiting()),
            (0, 0),
            "seed {seed}"
        );
    }
}

/// Counts concurrent calls inside the inner service and remembers the most it saw.
#[derive(Clone, Default)]
struct Gauge {
    now: Arc<AtomicU32>,
    max: Arc<AtomicU32>,
}

/// Lowers the gauge when the call ends, however it ends (a dropped call too).
struct InCall(Arc<AtomicU32>);

impl Drop for InCall {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn measured(gauge: Gauge, work: u32) -> Result<(), BoxError> {
    let now = gauge.now.fetch_add(1, Ordering::SeqCst) + 1;
    let _in_call = InCall(gauge.now.clone());
    gauge.max.fetch_max(now, Ordering::SeqCst);
    for _ in 0..work {
        tokio::task::yield_now().await;
    }
    Ok(())
}

#[test]
fn in_flight_inside_the_service_never_passes_the_limit_under_threads() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        const LIMIT: u32 = 6;
        let layer = BulkheadLayer::builder()
            .max_concurrent(LIMIT)
            .max_wait(Duration::from_millis(2))
            .build()
            .unwrap();
        let handle = layer.handle();
        let gauge = Gauge::default();
        let inner = {
            let gauge = gauge.clone();
            tower::service_fn(move |work: u32| measured(gauge.clone(), work))
        };
        let svc = layer.layer(inner);
        let mut tasks = Vec::new();
        for task in 0..32u64 {
            let svc = svc.clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = Rng(task);
                for _ in 0..2_000 {
                    let fut = svc.clone().oneshot(rng.below(4) as u32);
                    if rng.below(8) == 0 {
                        let _ = fut.now_or_never(); // dropped wherever it got to
                    } else {
                        let _ = fut.await;
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(
            gauge.max.load(Ordering::SeqCst) <= LIMIT,
            "max {}",
            gauge.max.load(Ordering::SeqCst)
        );
        assert!(
            gauge.max.load(Ordering::SeqCst) >= 2,
            "the test must exercise concurrency"
        );
        assert_eq!((handle.in_flight(), handle.waiting()), (0, 0));
    });
}

#[test]
fn resizing_under_load_never_loses_or_double_counts_permits() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let layer = BulkheadLayer::builder()
            .max_concurrent(4)
            .max_wait(Duration::from_millis(1))
            .build()
            .unwrap();
        let handle = layer.handle();
        let gauge = Gauge::default();
        let inner = {
            let gauge = gauge.clone();
            tower::service_fn(move |work: u32| measured(gauge.clone(), work))
        };
        let svc = layer.layer(inner);
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for task in 0..16u64 {
            let svc = svc.clone();
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = Rng(100 + task);
                while !stop.load(Ordering::Relaxed) {
                    let _ = svc.clone().oneshot(rng.below(3) as u32).await;
                }
            }));
        }
        // Resize repeatedly while the calls run; end at 3.
        for limit in [8, 2, 16, 1, 5, 3] {
            handle.set_limit(limit).unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Let the calls admitted under larger limits drain, then measure afresh.
        tokio::time::sleep(Duration::from_millis(20)).await;
        gauge.max.store(0, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        assert!(
            gauge.max.load(Ordering::SeqCst) <= 3,
            "max {}",
            gauge.max.load(Ordering::SeqCst)
        );
        assert_eq!(
            (handle.in_flight(), handle.waiting(), handle.limit()),
            (0, 0, 3)
        );
    });
}

#[tokio::test(start_paused = true)]
async fn permits_outliving_their_bulkhead_never_touch_the_next_one() {
    let layer = BulkheadLayer::builder().max_concurrent(2).build().unwrap();
    let svc = layer.layer(Downstream::default());
    let mut late: Vec<_> = (0..2)
        .map(|_| Box::pin(svc.clone().oneshot(Do::Hang)))
        .collect();
    for f in &mut late {
        assert!(f.now_or_never().is_none());
    }
    drop(svc);
    drop(layer);
    // Other bulkheads come and go while the old permits are out.
    let next = BulkheadLayer::builder().max_concurrent(1).build().unwrap();
    let handle = next.handle();
    let svc = next.layer(Downstream::default());
    let mut held = Box::pin(svc.clone().oneshot(Do::Hang));
    assert!((&mut held).now_or_never().is_none());
    assert_eq!(handle.in_flight(), 1);
    drop(late); // the old permits come back: the new bulkhead is unaffected
    assert_eq!(handle.in_flight(), 1);
    drop(held);
    assert_eq!(handle.in_flight(), 0);
}
