//! Permits: the limit holds, rejections are immediate, permits come back.

use std::time::Duration;

use futures::FutureExt;
use seawall::bulkhead::{Bulkhead, BulkheadLayer, Handle};
use seawall::error::BulkheadFull;
use seawall::BoxError;
use tower::{Layer, Service, ServiceExt};

use crate::support::{Do, Downstream};

pub(crate) fn bulkhead(limit: u32) -> (Bulkhead<Downstream>, Handle, Downstream) {
    let layer = BulkheadLayer::builder()
        .max_concurrent(limit)
        .build()
        .unwrap();
    let handle = layer.handle();
    let downstream = Downstream::default();
    (layer.layer(downstream.clone()), handle, downstream)
}

#[tokio::test(start_paused = true)]
async fn the_limit_holds_and_excess_calls_are_rejected_at_once() {
    let (svc, handle, downstream) = bulkhead(3);
    let held: Vec<_> = (0..3)
        .map(|_| tokio::spawn(svc.clone().oneshot(Do::Hang)))
        .collect();
    tokio::task::yield_now().await;
    assert_eq!(handle.in_flight(), 3);
    for _ in 0..5 {
        let err = svc.clone().oneshot(Do::Succeed).await.unwrap_err();
        assert!(err.is::<BulkheadFull>());
        assert!(seawall::error::is_rejection(&*err));
    }
    assert_eq!(downstream.received(), 3, "rejected calls never reached it");
    assert_eq!(handle.rejections(), 5);
    for h in held {
        h.abort();
        let _ = h.await;
    }
    assert_eq!(
        handle.in_flight(),
        0,
        "aborted calls gave their permits back"
    );
    assert!(svc.clone().oneshot(Do::Succeed).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_permit_comes_back_when_the_response_arrives() {
    let (svc, handle, _) = bulkhead(1);
    let slow = tokio::spawn(
        svc.clone()
            .oneshot(Do::SucceedAfter(Duration::from_secs(1))),
    );
    tokio::task::yield_now().await;
    assert_eq!(handle.in_flight(), 1);
    assert!(slow.await.unwrap().is_ok());
    assert_eq!(handle.in_flight(), 0);
    // Failures give their permits back too.
    assert!(svc.clone().oneshot(Do::Fail).await.is_err());
    assert_eq!(handle.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn clones_and_services_of_one_layer_share_the_permits() {
    let layer = BulkheadLayer::builder().max_concurrent(2).build().unwrap();
    let handle = layer.handle();
    let a = layer.layer(Downstream::default());
    let b = layer.layer(Downstream::default());
    let _x = tokio::spawn(a.clone().oneshot(Do::Hang));
    let _y = tokio::spawn(b.clone().oneshot(Do::Hang));
    tokio::task::yield_now().await;
    assert_eq!(handle.in_flight(), 2);
    assert!(a.clone().oneshot(Do::Succeed).await.is_err());
    assert!(b.clone().oneshot(Do::Succeed).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_rejection_is_ready_without_polling_the_inner_service() {
    let (mut svc, handle, downstream) = bulkhead(1);
    let hold = svc.ready().await.unwrap().call(Do::Hang);
    let mut second = svc.clone();
    let ready = std::future::poll_fn(|cx| second.poll_ready(cx)).now_or_never();
    assert!(
        matches!(ready, Some(Ok(()))),
        "ready at once, with a rejection reserved"
    );
    let result = second
        .call(Do::Succeed)
        .now_or_never()
        .expect("a ready rejection");
    assert!(result.unwrap_err().is::<BulkheadFull>());
    assert_eq!(downstream.received(), 1);
    drop(hold);
    assert_eq!(handle.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_repeated_poll_ready_looks_again() {
    let (mut svc, handle, _) = bulkhead(1);
    let hold = svc.clone().ready_oneshot().await.unwrap().call(Do::Hang);
    std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap(); // a rejection reserved
    drop(hold);
    std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap(); // looks again: a permit
    assert_eq!(handle.in_flight(), 1);
    assert!(svc.call(Do::Succeed).await.is_ok());
}

#[test]
fn layers_services_futures_and_handles_are_send_sync_static() {
    fn send_sync_static<T: Send + Sync + 'static>() {}
    fn send_static<T: Send + 'static>() {}
    type Inner = tower::util::BoxCloneSyncService<u32, u32, BoxError>;
    send_sync_static::<BulkheadLayer>();
    send_sync_static::<Bulkhead<Inner>>();
    send_sync_static::<Handle>();
    send_sync_static::<BulkheadFull>();
    send_static::<
        seawall::bulkhead::future::ResponseFuture<
            std::pin::Pin<Box<dyn std::future::Future<Output = Result<u32, BoxError>> + Send>>,
        >,
    >();
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "polled after completion")]
async fn a_response_future_polled_after_completion_panics() {
    let (mut svc, _, _) = bulkhead(1);
    let mut call = Box::pin(svc.ready().await.unwrap().call(Do::Succeed));
    assert!(call.as_mut().await.is_ok());
    // A silent `Pending` forever would hang the caller: it must be loud instead.
    let _ = call.as_mut().now_or_never();
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "polled after completion")]
async fn a_rejected_response_future_polled_again_panics() {
    let (svc, _, _) = bulkhead(1);
    let _hold = tokio::spawn(svc.clone().oneshot(Do::Hang));
    tokio::task::yield_now().await;
    let mut svc = svc.clone();
    let mut call = Box::pin(svc.ready().await.unwrap().call(Do::Succeed));
    assert!(call.as_mut().await.unwrap_err().is::<BulkheadFull>());
    let _ = call.as_mut().now_or_never();
}
