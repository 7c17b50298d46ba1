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
    .retry_after(Duration::from_millis(1500))
    .unwrap();
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

/// The headers a shed (HTTP and gRPC) request gets from a layer that says `wait`.
async fn shed_headers(wait: Duration) -> (String, String) {
    let layer = ShedLoadLayer::new(BulkheadLayer::builder().max_concurrent(1).build().unwrap())
        .unwrap()
        .retry_after(wait)
        .unwrap();
    let mut svc = layer.layer(tower::service_fn(handler));
    let (_tx, rx) = oneshot::channel();
    let mut held = Box::pin(
        svc.ready()
            .await
            .unwrap()
            .call(http::Request::new(Some(rx))),
    );
    assert!((&mut held).now_or_never().is_none());
    let http = svc
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(None))
        .await
        .unwrap();
    let grpc = http::Request::builder()
        .header("content-type", "application/grpc")
        .body(None)
        .unwrap();
    let grpc = svc.ready().await.unwrap().call(grpc).await.unwrap();
    let text = |v: &http::HeaderValue| v.to_str().unwrap().to_owned();
    (
        text(&http.headers()["retry-after"]),
        text(&grpc.headers()["grpc-retry-pushback-ms"]),
    )
}

#[test]
fn a_retry_after_neither_header_can_say_is_a_config_error() {
    let layer =
        || ShedLoadLayer::new(BulkheadLayer::builder().max_concurrent(1).build().unwrap()).unwrap();
    for wait in [
        Duration::ZERO,                             // every client back at once
        Duration::from_micros(999),                 // a pushback of 0 ms
        Duration::from_millis(i32::MAX as u64 + 1), // "never retry" to gRPC clients
        Duration::from_secs(3_000_000),             // the review's example
        Duration::MAX,
    ] {
        let err = layer().retry_after(wait).unwrap_err();
        assert_eq!(
            (err.component(), err.field()),
            ("shed_load", "retry_after"),
            "{wait:?}"
        );
        assert!(err.reason().contains("1ms"), "{err}");
    }
}

#[tokio::test]
async fn both_headers_round_up_and_stay_within_what_clients_read() {
    use seawall::http::pushback::{grpc_retry_pushback, Pushback};

    // The shortest wait: one second in Retry-After (its unit), one millisecond in gRPC.
    assert_eq!(
        shed_headers(Duration::from_millis(1)).await,
        ("1".into(), "1".into())
    );
    // Part of a millisecond is never dropped: 1.5 ms is 2 ms, not 1.
    assert_eq!(
        shed_headers(Duration::from_micros(1_500)).await,
        ("1".into(), "2".into())
    );
    assert_eq!(
        shed_headers(Duration::from_millis(500)).await,
        ("1".into(), "500".into())
    );
    // The longest: i32::MAX ms, which a gRPC client reads as a wait, not a refusal.
    let longest = Duration::from_millis(i32::MAX as u64);
    let (retry_after, pushback) = shed_headers(longest).await;
    assert_eq!(retry_after, "2147484", "2 147 483.647 s, rounded up");
    assert_eq!(pushback, "2147483647");
    assert_eq!(
        grpc_retry_pushback(&http::HeaderValue::from_str(&pushback).unwrap()),
        Pushback::After(longest)
    );
}
