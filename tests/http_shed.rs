//! A server shedding load over its limit.
#![cfg(feature = "http")]

use std::convert::Infallible;
use std::time::Duration;

use futures::FutureExt;
use seawall::bulkhead::BulkheadLayer;
use seawall::http::ShedLoadLayer;
use tokio::sync::oneshot;
use tower::{Layer, Service, ServiceExt};

type Req = http::Request<Option<oneshot::Receiver<()>>>;

/// A handler that answers when its request's channel fires (or at once without one).
async fn handler(request: Req) -> Result<http::Response<String>, Infallible> {
    if let Some(done) = request.into_body() {
        let _ = done.await;
    }
    Ok(http::Response::new("handled".to_owned()))
}

fn shed(limit: u32) -> (ShedLoadLayer, seawall::bulkhead::Handle) {
    let layer = ShedLoadLayer::new(
        BulkheadLayer::builder()
            .max_concurrent(limit)
            .build()
            .unwrap(),
    )
    .unwrap()
    .retry_after(Duration::from_millis(1500));
    let handle = layer.handle();
    (layer, handle)
}

#[tokio::test]
async fn requests_over_the_limit_get_503_with_retry_after_without_running_the_handler() {
    let (layer, handle) = shed(2);
    let mut svc = layer.layer(tower::service_fn(handler));
    let (tx1, rx1) = oneshot::channel();
    let (tx2, rx2) = oneshot::channel();
    let mut first = Box::pin(
        svc.ready()
            .await
            .unwrap()
            .call(http::Request::new(Some(rx1))),
    );
    let mut second = Box::pin(
        svc.ready()
            .await
            .unwrap()
            .call(http::Request::new(Some(rx2))),
    );
    assert!((&mut first).now_or_never().is_none());
    assert!((&mut second).now_or_never().is_none());
    assert_eq!(handle.in_flight(), 2);

    let shed = svc
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(None))
        .now_or_never();
    let shed = shed.expect("answered at once").unwrap();
    assert_eq!(shed.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(shed.headers()["retry-after"], "2", "1.5 s rounds up to 2 s");
    assert_eq!(shed.into_body(), "", "the handler never ran");
    assert_eq!(handle.rejections(), 1);

    tx1.send(()).unwrap();
    assert_eq!(first.await.unwrap().into_body(), "handled");
    assert_eq!(handle.in_flight(), 1);
    drop(second); // a client that went away gives its permit back too
    drop(tx2);
    assert_eq!(handle.in_flight(), 0);
    let ok = svc
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(None))
        .await
        .unwrap();
    assert_eq!(ok.status(), http::StatusCode::OK);
}

#[tokio::test]
async fn grpc_requests_are_shed_with_resource_exhausted() {
    let (layer, _) = shed(1);
    let mut svc = layer.layer(tower::service_fn(handler));
    let (_tx, rx) = oneshot::channel();
    let mut held = Box::pin(
        svc.ready()
            .await
            .unwrap()
            .call(http::Request::new(Some(rx))),
    );
    assert!((&mut held).now_or_never().is_none());
    let request = http::Request::builder()
        .header("content-type", "application/grpc+proto")
        .body(None)
        .unwrap();
    let shed = svc.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(
        shed.status(),
        http::StatusCode::OK,
        "gRPC status travels in headers"
    );
    assert_eq!(shed.headers()["grpc-status"], "8");
    assert_eq!(shed.headers()["grpc-retry-pushback-ms"], "1500");
    assert_eq!(shed.headers()["content-type"], "application/grpc");
}

#[test]
fn a_waiting_bulkhead_is_a_config_error() {
    let waiting = BulkheadLayer::builder()
        .max_wait(Duration::from_millis(10))
        .build()
        .unwrap();
    let err = ShedLoadLayer::new(waiting).unwrap_err();
    assert_eq!((err.component(), err.field()), ("shed_load", "max_wait"));
}

#[tokio::test]
async fn an_enormous_retry_after_saturates_instead_of_overflowing() {
    let layer = ShedLoadLayer::new(BulkheadLayer::builder().max_concurrent(1).build().unwrap())
        .unwrap()
        .retry_after(Duration::MAX);
    let mut svc = layer.layer(tower::service_fn(handler));
    let (_tx, rx) = oneshot::channel();
    let mut held = Box::pin(
        svc.ready()
            .await
            .unwrap()
            .call(http::Request::new(Some(rx))),
    );
    assert!((&mut held).now_or_never().is_none());
    let shed = svc
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(None))
        .await
        .unwrap();
    assert_eq!(shed.headers()["retry-after"], u64::MAX.to_string().as_str());
}
