//! A bulkhead permit held until the HTTP response body ends.
#![cfg(feature = "http")]

use std::convert::Infallible;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use seawall::bulkhead::BulkheadLayer;
use seawall::http::UntilBodyEnd;
use tokio::sync::mpsc;
use tower::{Layer, ServiceExt};

type Chunk = Result<Frame<Bytes>, std::io::Error>;
type Streamed = StreamBody<futures::stream::BoxStream<'static, Chunk>>;

/// A service whose response body streams whatever is sent through the channel it
/// returns.
fn streaming_service() -> impl tower::Service<
    mpsc::Receiver<Chunk>,
    Response = http::Response<Streamed>,
    Error = Infallible,
> + Clone {
    tower::service_fn(|rx: mpsc::Receiver<Chunk>| async move {
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|chunk| (chunk, rx))
        });
        let body: Streamed = StreamBody::new(futures::StreamExt::boxed(stream));
        Ok::<_, Infallible>(http::Response::new(body))
    })
}

#[tokio::test(start_paused = true)]
async fn the_permit_is_held_until_the_body_ends_and_given_back_on_drop_or_error() {
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .build()
        .unwrap()
        .release_on::<UntilBodyEnd>();
    let handle = layer.handle();
    let svc = layer.layer(streaming_service());

    // Read to the end: held while streaming, given back at the end.
    let (tx, rx) = mpsc::channel(4);
    let response = svc.clone().oneshot(rx).await.unwrap();
    assert_eq!(handle.in_flight(), 1);
    assert!(
        svc.clone().oneshot(mpsc::channel(1).1).await.is_err(),
        "the body still holds it"
    );
    tx.send(Ok(Frame::data(Bytes::from("part one "))))
        .await
        .unwrap();
    tx.send(Ok(Frame::data(Bytes::from("part two"))))
        .await
        .unwrap();
    drop(tx);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "part one part two");
    assert_eq!(handle.in_flight(), 0);

    // Dropped half-way: given back.
    let (tx, rx) = mpsc::channel(4);
    let response = svc.clone().oneshot(rx).await.unwrap();
    tx.send(Ok(Frame::data(Bytes::from("some")))).await.unwrap();
    let mut body = response.into_body();
    assert!(body.frame().await.is_some());
    assert_eq!(handle.in_flight(), 1);
    drop(body);
    assert_eq!(handle.in_flight(), 0);

    // An error ends the body: given back.
    let (tx, rx) = mpsc::channel(4);
    let response = svc.clone().oneshot(rx).await.unwrap();
    tx.send(Err(std::io::Error::other("connection reset")))
        .await
        .unwrap();
    let mut body = response.into_body();
    assert!(body.frame().await.unwrap().is_err());
    assert_eq!(handle.in_flight(), 0);
    drop(body);
    assert_eq!(handle.in_flight(), 0);
}
