//! Waiting for a permit: FIFO order, the max wait, the bound on waiters, cancellation.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use seawall::bulkhead::{BulkheadLayer, Handle};
use seawall::error::BulkheadFull;
use tower::{Layer, Service, ServiceExt};

use crate::support::{Do, Downstream};

fn waiting_bulkhead(
    limit: u32,
    max_wait: Duration,
    max_waiting: Option<u32>,
) -> (seawall::bulkhead::Bulkhead<Downstream>, Handle) {
    let mut builder = BulkheadLayer::builder()
        .max_concurrent(limit)
        .max_wait(max_wait);
    if let Some(n) = max_waiting {
        builder = builder.max_waiting(n);
    }
    let layer = builder.build().unwrap();
    let handle = layer.handle();
    (layer.layer(Downstream::default()), handle)
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_arrival_order() {
    let (svc, handle) = waiting_bulkhead(1, Duration::from_secs(60), None);
    let order = Arc::new(Mutex::new(Vec::new()));
    // The first call holds the permit for 1 s; five more queue behind it.
    let first = tokio::spawn(
        svc.clone()
            .oneshot(Do::SucceedAfter(Duration::from_secs(1))),
    );
    tokio::task::yield_now().await;
    let mut waiters = Vec::new();
    for i in 0..5 {
        let svc = svc.clone();
        let order = order.clone();
        waiters.push(tokio::spawn(async move {
            let result = svc
                .oneshot(Do::SucceedAfter(Duration::from_millis(10)))
                .await;
            order.lock().unwrap().push(i);
            result
        }));
        tokio::task::yield_now().await; // arrive in order
    }
    assert_eq!(handle.waiting(), 5);
    // A newcomer does not jump the queue even when it arrives as a permit frees.
    assert!(first.await.unwrap().is_ok());
    for w in waiters {
        assert!(w.await.unwrap().is_ok());
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    assert_eq!((handle.in_flight(), handle.waiting()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_waiter_is_rejected_after_the_max_wait() {
    let (svc, handle) = waiting_bulkhead(1, Duration::from_millis(100), None);
    let _hold = tokio::spawn(svc.clone().oneshot(Do::Hang));
    tokio::task::yield_now().await;
    let started = tokio::time::Instant::now();
    // A wait the max wait no longer bounds fails here rather than hang the test.
    let err = tokio::time::timeout(Duration::from_secs(10), svc.clone().oneshot(Do::Succeed))
        .await
        .expect("the wait ends at the max wait")
        .unwrap_err();
    assert!(err.is::<BulkheadFull>());
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    assert_eq!((handle.waiting(), handle.rejections()), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_waiter_gets_a_permit_freed_before_its_max_wait() {
    let (svc, handle) = waiting_bulkhead(1, Duration::from_millis(100), None);
    let hold = tokio::spawn(
        svc.clone()
            .oneshot(Do::SucceedAfter(Duration::from_millis(99))),
    );
    tokio::task::yield_now().await;
    let started = tokio::time::Instant::now();
    assert!(svc.clone().oneshot(Do::Succeed).await.is_ok());
    assert_eq!(started.elapsed(), Duration::from_millis(99));
    assert!(hold.await.unwrap().is_ok());
    assert_eq!(handle.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_queue_is_bounded() {
    let (svc, handle) = waiting_bulkhead(1, Duration::from_secs(60), Some(2));
    let _hold = tokio::spawn(svc.clone().oneshot(Do::Hang));
    tokio::task::yield_now().await;
    let queued: Vec<_> = (0..2)
        .map(|_| tokio::spawn(svc.clone().oneshot(Do::Succeed)))
        .collect();
    tokio::task::yield_now().await;
    assert_eq!(handle.waiting(), 2);
    // The third would-be waiter is rejected at once.
    let result = svc.clone().oneshot(Do::Succeed).now_or_never();
    assert!(result.expect("at once").unwrap_err().is::<BulkheadFull>());
    for q in queued {
        q.abort();
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_leaves_the_queue_and_the_next_one_is_served() {
    let (svc, handle) = waiting_bulkhead(1, Duration::from_secs(60), None);
    let hold = tokio::spawn(
        svc.clone()
            .oneshot(Do::SucceedAfter(Duration::from_secs(1))),
    );
    tokio::task::yield_now().await;
    let mut cancelled = svc.clone();
    let mut ready = Box::pin(async move {
        std::future::poll_fn(|cx| cancelled.poll_ready(cx))
            .await
            .unwrap();
        cancelled
    });
    assert!((&mut ready).now_or_never().is_none());
    let next = tokio::spawn(svc.clone().oneshot(Do::Succeed));
    tokio::task::yield_now().await;
    assert_eq!(handle.waiting(), 2);
    drop(ready); // the first waiter gives up
    assert_eq!(handle.waiting(), 1);
    assert!(hold.await.unwrap().is_ok());
    assert!(
        next.await.unwrap().is_ok(),
        "served after the cancelled one left"
    );
    assert_eq!((handle.in_flight(), handle.waiting()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_waiter_granted_but_never_called_gives_its_permit_back() {
    let (svc, handle) = waiting_bulkhead(1, Duration::from_secs(60), None);
    let mut hold_svc = svc.clone();
    std::future::poll_fn(|cx| hold_svc.poll_ready(cx))
        .await
        .unwrap();
    let hold = hold_svc.call(Do::Hang);
    let mut waiter = svc.clone();
    assert!(std::future::poll_fn(|cx| waiter.poll_ready(cx))
        .now_or_never()
        .is_none());
    drop(hold); // the permit goes to the waiter...
    assert_eq!(handle.in_flight(), 1);
    drop(waiter); // ...which is dropped before it is polled again
    assert_eq!((handle.in_flight(), handle.waiting()), (0, 0));
    assert!(svc.clone().oneshot(Do::Succeed).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn an_unbounded_wait_waits_as_long_as_it_takes() {
    let (svc, _) = waiting_bulkhead(1, Duration::MAX, None);
    let hold = tokio::spawn(
        svc.clone()
            .oneshot(Do::SucceedAfter(Duration::from_secs(3600))),
    );
    tokio::task::yield_now().await;
    let waiter = tokio::spawn(svc.clone().oneshot(Do::Succeed));
    assert!(hold.await.unwrap().is_ok());
    assert!(waiter.await.unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn the_queue_is_bounded_by_default() {
    let (svc, handle) = waiting_bulkhead(1, Duration::from_secs(60), None);
    let _hold = tokio::spawn(svc.clone().oneshot(Do::Hang));
    tokio::task::yield_now().await;
    let queued: Vec<_> = (0..seawall::bulkhead::DEFAULT_MAX_WAITING)
        .map(|_| tokio::spawn(svc.clone().oneshot(Do::Succeed)))
        .collect();
    settle(|| handle.waiting() == 1024).await;
    assert_eq!(handle.waiting(), 1024);
    // One more would-be waiter is rejected at once.
    let result = svc.clone().oneshot(Do::Succeed).now_or_never();
    let result = result.expect("rejected at once, not queued");
    assert!(result.unwrap_err().is::<BulkheadFull>());
    for q in queued {
        q.abort();
    }
}

/// A storm of callers giving up in a long queue (each times out, from the back of the
/// queue forward, the worst order for a queue searched from the front) leaves the queue
/// empty, and the callers behind the ones that left are served in order.
#[tokio::test(start_paused = true)]
async fn a_timeout_storm_over_a_long_queue_leaves_it_empty_and_in_order() {
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .max_wait(Duration::from_secs(60))
        .max_waiting(20_000)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(Downstream::default());
    let hold = tokio::spawn(
        svc.clone()
            .oneshot(Do::SucceedAfter(Duration::from_secs(30))),
    );
    tokio::task::yield_now().await;
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut callers = Vec::new();
    for i in 0..10_000u64 {
        let svc = svc.clone();
        let order = order.clone();
        // Every other caller gives up, the later ones sooner.
        let patience = if i % 2 == 0 {
            Duration::from_secs(59)
        } else {
            Duration::from_millis(10_000 - i)
        };
        callers.push(tokio::spawn(async move {
            let result = tokio::time::timeout(patience, svc.oneshot(Do::Succeed)).await;
            if matches!(result, Ok(Ok(_))) {
                order.lock().unwrap().push(i);
            }
        }));
    }
    settle(|| handle.waiting() == 10_000).await;
    assert_eq!(handle.waiting(), 10_000);
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(handle.waiting(), 5_000, "the impatient half left");
    assert!(hold.await.unwrap().is_ok());
    for c in callers {
        c.await.unwrap();
    }
    let served = order.lock().unwrap().clone();
    assert_eq!(served, (0..10_000).step_by(2).collect::<Vec<u64>>());
    assert_eq!((handle.in_flight(), handle.waiting()), (0, 0));
}

/// Let the spawned tasks run (tokio polls about 61 of them per yield) until `done`.
async fn settle(done: impl Fn() -> bool) {
    for _ in 0..1_000 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
}
