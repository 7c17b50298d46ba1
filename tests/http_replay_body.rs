//! Streamed request bodies replayed by a retry, below and above the buffer limit, checked
//! at a real HTTP server on loopback that counts every body it receives intact; and the
//! buffer's rules in process (partial reads, trailers, failures, size hints).
#![cfg(all(feature = "http", feature = "retry"))]

use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream;
use http::{HeaderMap, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use seawall::classify::{classify_fn, Classification};
use seawall::error::ReplayBodyError;
use seawall::http::{BodyReplay, IdempotentReplay, ReplayBody, ReplayBodyLayer};
use seawall::retry::backoff::ConstantBackoff;
use seawall::retry::replay::Replay;
use seawall::retry::RetryLayer;
use tokio::net::TcpListener;
use tower::{ServiceBuilder, ServiceExt};

/// Byte `i` of every test body: a pattern a truncated or reordered body cannot match.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(31) % 251) as u8).collect()
}

type Chunks = stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>;

/// `len` bytes of the pattern, streamed in chunks of `chunk` bytes (no length known up
/// front, so the client sends it chunked).
fn streamed(len: usize, chunk: usize) -> StreamBody<Chunks> {
    let frames: Vec<_> = pattern(len)
        .chunks(chunk)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    StreamBody::new(stream::iter(frames))
}

/// What the server saw.
#[derive(Default)]
struct Received {
    requests: AtomicU32,
    intact: AtomicU32,
}

/// A server on 127.0.0.1 that answers 503 to its first `fail_first` requests and 200
/// after, and counts the bodies it receives equal to `pattern(len)`.
async fn start_server(
    fail_first: u32,
    len: usize,
) -> (
    std::net::SocketAddr,
    Arc<Received>,
    tokio::sync::oneshot::Sender<()>,
) {
    let received = Arc::new(Received::default());
    let expected = Bytes::from(pattern(len));
    let app = {
        let received = received.clone();
        axum::Router::new().route(
            "/orders/7",
            axum::routing::put(move |body: Bytes| {
                let received = received.clone();
                let expected = expected.clone();
                async move {
                    let n = received.requests.fetch_add(1, Ordering::SeqCst);
                    if body == expected {
                        received.intact.fetch_add(1, Ordering::SeqCst);
                    }
                    if n < fail_first {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    }
                }
            }),
        )
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (addr, received, stop)
}

/// PUT `pattern(len)` streamed in 4 KiB chunks through a retrying client (3 attempts,
/// 503 is retryable) to a server that fails its first `fail_first` requests.
async fn put_with_retries(len: usize, fail_first: u32) -> (StatusCode, u32, u32) {
    let (addr, received, stop) = start_server(fail_first, len).await;
    let client =
        Client::builder(TokioExecutor::new()).build_http::<ReplayBody<StreamBody<Chunks>>>();
    let classifier = classify_fn(
        |result: &Result<Response<Incoming>, hyper_util::client::legacy::Error>| match result {
            Ok(response) if response.status() == StatusCode::SERVICE_UNAVAILABLE => {
                Classification::failure()
            }
            Ok(_) => Classification::success(),
            Err(_) => Classification::failure(),
        },
    );
    let retry = RetryLayer::builder()
        .max_attempts(3)
        .classifier(classifier)
        .backoff(ConstantBackoff::new(Duration::from_millis(1)))
        .replay(IdempotentReplay::with(BodyReplay))
        .build()
        .unwrap();
    let client = ServiceBuilder::new()
        .layer(ReplayBodyLayer::default())
        .layer(retry)
        .service(client);
    let request = http::Request::put(format!("http://{addr}/orders/7"))
        .body(streamed(len, 4096))
        .unwrap();
    let response = client.oneshot(request).await.unwrap();
    let status = response.status();
    drop(response);
    let _ = stop.send(());
    (
        status,
        received.requests.load(Ordering::SeqCst),
        received.intact.load(Ordering::SeqCst),
    )
}

#[tokio::test]
async fn a_body_below_the_limit_is_sent_intact_by_every_attempt() {
    let (status, requests, intact) = put_with_retries(48 * 1024, 2).await;
    assert_eq!(status, StatusCode::OK, "the third attempt succeeds");
    assert_eq!(requests, 3);
    assert_eq!(intact, 3, "each attempt carried the whole body");
}

#[tokio::test]
async fn a_body_at_the_limit_is_still_replayed() {
    let (status, requests, intact) = put_with_retries(64 * 1024, 1).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((requests, intact), (2, 2));
}

#[tokio::test]
async fn a_body_above_the_limit_is_sent_once_and_not_retried() {
    let (status, requests, intact) = put_with_retries(64 * 1024 + 1, 1).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the caller gets the real failure"
    );
    assert_eq!(requests, 1, "never sent twice");
    assert_eq!(intact, 1, "and nothing lost the one time it was sent");
}

#[tokio::test]
async fn a_large_body_that_succeeds_is_sent_once_in_full() {
    let (status, requests, intact) = put_with_retries(1024 * 1024, 0).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((requests, intact), (1, 1));
}

// ---- the buffer's rules, in process ----

async fn read_all<B>(body: B) -> Result<(Bytes, Option<HeaderMap>), B::Error>
where
    B: Body<Data = Bytes>,
{
    let collected = body.collect().await?;
    let trailers = collected.trailers().cloned();
    Ok((collected.to_bytes(), trailers))
}

#[tokio::test]
async fn a_copy_reads_on_from_where_a_dropped_attempt_stopped() {
    let first = ReplayBody::new(streamed(16, 4), 1024);
    let second = first.try_clone().unwrap();
    {
        let mut first = std::pin::pin!(first);
        // The first attempt reads two of four chunks, then is dropped (say, the server
        // answered early).
        for _ in 0..2 {
            first.frame().await.unwrap().unwrap();
        }
        assert!(
            !second.can_replay(),
            "the first attempt still holds the rest"
        );
    }
    assert!(second.can_replay(), "the rest is free again");
    let third = second.try_clone().unwrap();
    let (bytes, _) = read_all(second).await.unwrap();
    assert_eq!(
        bytes,
        Bytes::from(pattern(16)),
        "buffered half, then the source"
    );
    let (bytes, _) = read_all(third).await.unwrap();
    assert_eq!(
        bytes,
        Bytes::from(pattern(16)),
        "and all of it from the buffer"
    );
}

/// A body whose chunks ("a", "b") become available at 0 ms and 100 ms.
fn trickle() -> StreamBody<impl futures::Stream<Item = Result<Frame<Bytes>, Infallible>> + Unpin> {
    StreamBody::new(Box::pin(stream::unfold(0_u8, |n| async move {
        match n {
            0 => Some((Ok(Frame::data(Bytes::from_static(b"a"))), 1)),
            1 => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Some((Ok(Frame::data(Bytes::from_static(b"b"))), 2))
            }
            _ => None,
        }
    })))
}

#[tokio::test(start_paused = true)]
async fn a_copy_that_catches_up_with_the_reader_waits_for_it() {
    let first = ReplayBody::new(trickle(), 1024);
    let second = first.try_clone().unwrap();
    assert!(first.can_replay() && second.can_replay(), "both fresh");
    let reader = tokio::spawn(read_all(first));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let follower = tokio::spawn(read_all(second));
    let (first, second) = (reader.await.unwrap(), follower.await.unwrap());
    assert_eq!(first.unwrap().0, "ab");
    assert_eq!(
        second.unwrap().0,
        "ab",
        "the follower waited for the second chunk"
    );
}

#[tokio::test(start_paused = true)]
async fn a_follower_takes_over_when_the_reader_is_dropped() {
    let first = ReplayBody::new(trickle(), 1024);
    let second = first.try_clone().unwrap();
    let reader = tokio::spawn(read_all(first));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let follower = tokio::spawn(read_all(second));
    tokio::time::sleep(Duration::from_millis(10)).await;
    reader.abort(); // say, the hedge won and this attempt was cancelled
    assert_eq!(follower.await.unwrap().unwrap().0, "ab");
}

#[cfg(feature = "hedge")]
#[tokio::test(start_paused = true)]
async fn a_hedge_and_its_first_attempt_both_send_the_whole_body() {
    use seawall::hedge::HedgeLayer;
    use std::sync::Mutex;
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(AtomicU32::new(0));
    let replicas = {
        let (bodies, calls) = (bodies.clone(), calls.clone());
        tower::service_fn(move |request: http::Request<ReplayBody<_>>| {
            let (bodies, n) = (bodies.clone(), calls.fetch_add(1, Ordering::SeqCst));
            async move {
                if n == 0 {
                    // The first attempt is still connecting when the hedge goes out.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let body = read_all(request.into_body()).await.map(|(b, _)| b);
                bodies
                    .lock()
                    .unwrap()
                    .push((n, body.as_ref().map(|b| b.clone()).ok()));
                if n == 1 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                body.map(|_| n)
            }
        })
    };
    let svc = ServiceBuilder::new()
        .layer(ReplayBodyLayer::default())
        .layer(
            HedgeLayer::builder()
                .delay(Duration::from_millis(20))
                .replay(BodyReplay)
                .build()
                .unwrap(),
        )
        .service(replicas);
    let started = tokio::time::Instant::now();
    let answer = svc.oneshot(http::Request::new(trickle())).await.unwrap();
    assert_eq!(
        answer, 0,
        "the first attempt, not broken by its hedge, answered first"
    );
    // The hedge read the source from 20 ms, and its second chunk came 100 ms later; the
    // first attempt followed from the buffer (before the fix it failed instead).
    assert_eq!(started.elapsed(), Duration::from_millis(120));
    let bodies = bodies.lock().unwrap().clone();
    assert!(bodies.contains(&(0, Some(Bytes::from_static(b"ab")))));
}

#[tokio::test]
async fn trailers_are_replayed() {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", "0".parse().unwrap());
    let frames = vec![
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"abc"))),
        Ok(Frame::trailers(trailers.clone())),
    ];
    let first = ReplayBody::new(StreamBody::new(stream::iter(frames)), 1024);
    let second = first.try_clone().unwrap();
    assert_eq!(
        read_all(first).await.unwrap(),
        (Bytes::from_static(b"abc"), Some(trailers.clone()))
    );
    assert_eq!(
        read_all(second).await.unwrap(),
        (Bytes::from_static(b"abc"), Some(trailers))
    );
}

#[tokio::test]
async fn a_failed_source_is_never_replayed() {
    let frames = vec![
        Ok(Frame::data(Bytes::from_static(b"abc"))),
        Err(std::io::Error::other("client went away")),
    ];
    let first = ReplayBody::new(StreamBody::new(stream::iter(frames)), 1024);
    let second = first.try_clone().unwrap();
    assert!(read_all(first).await.is_err());
    assert!(!second.can_replay());
    assert!(second.try_clone().is_none());
    let error = read_all(second).await.unwrap_err();
    assert_eq!(
        error.downcast_ref::<ReplayBodyError>(),
        Some(&ReplayBodyError::Spoiled)
    );
}

#[tokio::test]
async fn a_body_over_the_limit_spoils_every_copy_but_reaches_its_end() {
    let first = ReplayBody::new(streamed(10, 3), 5);
    let second = first.try_clone().unwrap();
    let (bytes, _) = read_all(first).await.unwrap();
    assert_eq!(
        bytes,
        Bytes::from(pattern(10)),
        "the one attempt sends it all"
    );
    assert!(!second.can_replay());
    assert!(
        BodyReplay.replay(&http::Request::new(second)).is_none(),
        "no copy is made"
    );
}

#[tokio::test]
async fn empty_and_known_length_bodies_keep_their_size_hints() {
    let empty = ReplayBody::new(Full::new(Bytes::new()), 1024);
    assert!(empty.is_end_stream());
    assert!(empty.try_clone().unwrap().can_replay());

    let sized = ReplayBody::new(Full::new(Bytes::from_static(b"0123456789")), 1024);
    assert_eq!(sized.size_hint().exact(), Some(10));
    let copy = sized.try_clone().unwrap();
    let (bytes, _) = read_all(sized).await.unwrap();
    assert_eq!(bytes.len(), 10);
    assert_eq!(copy.size_hint().exact(), Some(10), "a fresh copy is whole");
    assert!(!copy.is_end_stream());
    let mut copy = std::pin::pin!(copy);
    copy.frame().await.unwrap().unwrap();
    assert_eq!(copy.size_hint().exact(), Some(0));
    assert!(copy.is_end_stream());
    assert!(copy.frame().await.is_none());
}

#[tokio::test]
async fn a_post_without_an_idempotency_key_is_not_copied_even_if_buffered() {
    let request = http::Request::post("/orders")
        .body(ReplayBody::new(Full::new(Bytes::from_static(b"{}")), 1024))
        .unwrap();
    let replay = IdempotentReplay::with(BodyReplay);
    assert!(replay.replay(&request).is_none());
    let copy = IdempotentReplay::with(BodyReplay)
        .allow_non_idempotent()
        .replay(&request)
        .unwrap();
    assert!(replay.can_replay(&copy));
}
