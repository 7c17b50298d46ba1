//! Changing the limit at run time.

use std::time::Duration;

use seawall::bulkhead::BulkheadLayer;
use tower::{Layer, ServiceExt};

use crate::support::{Do, Downstream};

#[tokio::test(start_paused = true)]
async fn raising_the_limit_admits_waiters_at_once() {
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .max_wait(Duration::from_secs(60))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(Downstream::default());
    let _hold = tokio::spawn(svc.clone().oneshot(Do::Hang));
    tokio::task::yield_now().await;
    let waiters: Vec<_> = (0..3)
        .map(|_| tokio::spawn(svc.clone().oneshot(Do::Hang)))
        .collect();
    tokio::task::yield_now().await;
    assert_eq!((handle.in_flight(), handle.waiting()), (1, 3));
    handle.set_limit(3).unwrap();
    tokio::task::yield_now().await;
    assert_eq!((handle.in_flight(), handle.waiting()), (3, 1));
    for w in waiters {
        w.abort();
    }
}

#[tokio::test(start_paused = true)]
async fn lowering_the_limit_lets_calls_finish_and_admits_nobody_until_below_it() {
    let layer = BulkheadLayer::builder().max_concurrent(4).build().unwrap();
    let handle = layer.handle();
    let svc = layer.layer(Downstream::default());
    let calls: Vec<_> = (1..=4)
        .map(|i| {
            tokio::spawn(
                svc.clone()
                    .oneshot(Do::SucceedAfter(Duration::from_secs(i))),
            )
        })
        .collect();
    tokio::task::yield_now().await;
    handle.set_limit(2).unwrap();
    assert_eq!(handle.in_flight(), 4, "no permit is taken away");
    assert!(svc.clone().oneshot(Do::Succeed).await.is_err());
    tokio::time::advance(Duration::from_millis(2500)).await; // two finished: 2 in flight
    tokio::task::yield_now().await;
    assert_eq!(handle.in_flight(), 2);
    assert!(
        svc.clone().oneshot(Do::Succeed).await.is_err(),
        "at the new limit"
    );
    tokio::time::advance(Duration::from_secs(1)).await; // one more finished
    tokio::task::yield_now().await;
    assert!(svc.clone().oneshot(Do::Succeed).await.is_ok());
    for c in calls {
        assert!(c.await.unwrap().is_ok());
    }
    assert_eq!(handle.in_flight(), 0);
}
