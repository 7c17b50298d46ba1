//! The wiring between a bulkhead and its adaptive limit, with a scripted algorithm that
//! records what it is told. (The algorithms themselves: tests/bulkhead_adaptive.rs.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use seawall::bulkhead::adaptive::{LimitAlgorithm, Sample};
use seawall::bulkhead::BulkheadLayer;
use seawall::circuit_breaker::CircuitBreakerLayer;
use tower::{Layer, ServiceExt};

use crate::support::{Do, Downstream};

/// Starts at 4 and answers each sample with the next scripted limit (or keeps it).
#[derive(Debug, Clone, Default)]
struct Scripted {
    samples: Arc<Mutex<Vec<Sample>>>,
    next: Arc<Mutex<Vec<u32>>>,
}

impl LimitAlgorithm for Scripted {
    fn initial_limit(&self) -> u32 {
        4
    }
    fn min_limit(&self) -> u32 {
        1
    }
    fn max_limit(&self) -> u32 {
        100
    }
    fn update(&self, sample: Sample) -> u32 {
        self.samples.lock().unwrap().push(sample);
        self.next.lock().unwrap().pop().unwrap_or(sample.limit)
    }
}

#[tokio::test(start_paused = true)]
async fn every_answered_call_teaches_the_algorithm_and_the_limit_follows_it() {
    let script = Scripted::default();
    let layer = BulkheadLayer::builder()
        .adaptive(script.clone())
        .build()
        .unwrap();
    let handle = layer.handle();
    assert_eq!(handle.limit(), 4, "starts at the algorithm's initial limit");
    let svc = layer.layer(Downstream::default());

    // Two calls in flight together: 30 ms and 50 ms; the second fails.
    let a = tokio::spawn(
        svc.clone()
            .oneshot(Do::SucceedAfter(Duration::from_millis(30))),
    );
    let b = tokio::spawn(
        svc.clone()
            .oneshot(Do::FailAfter(Duration::from_millis(50))),
    );
    script.next.lock().unwrap().extend([2, 7]); // popped from the end: 7 then 2
    assert!(a.await.unwrap().is_ok());
    assert_eq!(handle.limit(), 7);
    assert!(b.await.unwrap().is_err());
    assert_eq!(handle.limit(), 2);

    let samples = script.samples.lock().unwrap().clone();
    assert_eq!(samples.len(), 2);
    assert_eq!(samples[0].rtt, Duration::from_millis(30));
    assert!(!samples[0].dropped);
    assert_eq!(samples[1].rtt, Duration::from_millis(50));
    assert!(samples[1].dropped, "a failed call counts as a drop");
    assert_eq!((samples[0].in_flight, samples[1].in_flight), (1, 2));
    assert_eq!((samples[0].limit, samples[1].limit), (4, 4));
}

#[tokio::test(start_paused = true)]
async fn cancelled_calls_and_local_rejections_teach_nothing() {
    let script = Scripted::default();
    let layer = BulkheadLayer::builder()
        .adaptive(script.clone())
        .build()
        .unwrap();
    let handle = layer.handle();
    // An inner breaker that is forced open rejects locally: nothing reached the downstream.
    let breaker = CircuitBreakerLayer::builder().build().unwrap();
    let breaker_handle = breaker.handle();
    let svc = layer.layer(breaker.layer(Downstream::default()));

    let mut cancelled = Box::pin(svc.clone().oneshot(Do::Hang));
    assert!((&mut cancelled).now_or_never().is_none());
    drop(cancelled);
    breaker_handle.force_open();
    assert!(svc.clone().oneshot(Do::Succeed).await.is_err());
    assert!(script.samples.lock().unwrap().is_empty());
    assert_eq!(handle.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_lowered_adaptive_limit_sheds_and_a_raised_one_admits_waiters() {
    let script = Scripted::default();
    let layer = BulkheadLayer::builder()
        .adaptive(script.clone())
        .max_wait(Duration::from_secs(10))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(Downstream::default());
    script.next.lock().unwrap().push(1);
    assert!(svc.clone().oneshot(Do::Succeed).await.is_ok());
    assert_eq!(handle.limit(), 1);
    let held = tokio::spawn(
        svc.clone()
            .oneshot(Do::SucceedAfter(Duration::from_millis(5))),
    );
    tokio::task::yield_now().await;
    let waiting = tokio::spawn(svc.clone().oneshot(Do::Succeed));
    tokio::task::yield_now().await;
    assert_eq!(handle.waiting(), 1);
    script.next.lock().unwrap().push(3); // the held call's answer raises the limit
    assert!(held.await.unwrap().is_ok());
    assert!(waiting.await.unwrap().is_ok());
    assert_eq!(handle.limit(), 3);
}

#[test]
fn an_adaptive_limit_owns_the_limit() {
    let err = BulkheadLayer::builder()
        .adaptive(Scripted::default())
        .max_concurrent(10)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "max_concurrent");
    let err = BulkheadLayer::builder()
        .adaptive(Scripted::default())
        .partition("a", 1.0)
        .build_partitioned(|_: &()| "a")
        .unwrap_err();
    assert_eq!(err.field(), "adaptive");
}

/// A downstream of capacity `C` on tokio's paused clock: 10 ms while at most `C` calls
/// are in it, then queueing (10 ms × calls / C), and failures past 2C.
#[derive(Clone)]
struct Capacity {
    in_call: Arc<std::sync::atomic::AtomicU32>,
    capacity: u32,
}

impl tower::Service<()> for Capacity {
    type Response = ();
    type Error = seawall::BoxError;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), seawall::BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, (): ()) -> Self::Future {
        use std::sync::atomic::Ordering;
        let now = self.in_call.fetch_add(1, Ordering::SeqCst) + 1;
        let capacity = self.capacity;
        let in_call = self.in_call.clone();
        Box::pin(async move {
            let latency =
                Duration::from_micros(10_000 * u64::from(now.max(capacity)) / u64::from(capacity));
            tokio::time::sleep(latency).await;
            in_call.fetch_sub(1, Ordering::SeqCst);
            if now > 2 * capacity {
                Err("overloaded".into())
            } else {
                Ok(())
            }
        })
    }
}

/// Run a Gradient2 bulkhead against a saturated downstream of `capacity`; the limit it
/// ends with after 40 000 calls.
async fn gradient2_limit_against(capacity: u32) -> u32 {
    use seawall::bulkhead::adaptive::Gradient2;
    let layer = BulkheadLayer::builder()
        .adaptive(Gradient2::builder().max_limit(1_000).build().unwrap())
        .max_wait(Duration::from_secs(60))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(Capacity {
        in_call: Arc::default(),
        capacity,
    });
    // 200 callers keep the downstream saturated: far more than it can serve.
    let callers: Vec<_> = (0..200)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move {
                for _ in 0..200 {
                    let _ = svc.clone().oneshot(()).await;
                }
            })
        })
        .collect();
    for c in callers {
        c.await.unwrap();
    }
    handle.limit()
}

#[tokio::test(start_paused = true)]
async fn a_gradient2_bulkhead_finds_the_capacity_of_a_saturated_downstream() {
    // Through the whole layer (permits, waiting, samples) on tokio's paused clock; the
    // algorithms alone, with halving and recovering capacity: tests/bulkhead_adaptive.rs.
    for capacity in [20, 40, 80] {
        let limit = gradient2_limit_against(capacity).await;
        assert!(
            (capacity * 3 / 4..=capacity * 5 / 4).contains(&limit),
            "capacity {capacity}: the limit is {limit}"
        );
    }
}
