//! The gRPC classifier: codes from headers (trailers-only), from trailers at the end of
//! the stream, and from HTTP statuses; pushback; and the outcome as a real breaker and
//! retry layer record it.
#![cfg(all(feature = "http", feature = "circuit-breaker", feature = "retry"))]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use http::{HeaderMap, HeaderValue, Response};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use proptest::prelude::*;
use seawall::circuit_breaker::{CircuitBreakerLayer, Handle, State};
use seawall::classify::{Classification, Classify, Health, Verdict};
use seawall::grpc::{Code, GrpcClassifier};
use seawall::http::pushback::Pushback;
use seawall::retry::backoff::ConstantBackoff;
use seawall::retry::RetryLayer;
use seawall::BoxError;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

type Chunk = Result<Frame<Bytes>, std::io::Error>;
type Body = StreamBody<BoxStream<'static, Chunk>>;

// ---------------------------------------------------------------------------------
// Codes

const ALL: [(i32, Code, &str); 17] = [
    (0, Code::Ok, "OK"),
    (1, Code::Cancelled, "CANCELLED"),
    (2, Code::Unknown, "UNKNOWN"),
    (3, Code::InvalidArgument, "INVALID_ARGUMENT"),
    (4, Code::DeadlineExceeded, "DEADLINE_EXCEEDED"),
    (5, Code::NotFound, "NOT_FOUND"),
    (6, Code::AlreadyExists, "ALREADY_EXISTS"),
    (7, Code::PermissionDenied, "PERMISSION_DENIED"),
    (8, Code::ResourceExhausted, "RESOURCE_EXHAUSTED"),
    (9, Code::FailedPrecondition, "FAILED_PRECONDITION"),
    (10, Code::Aborted, "ABORTED"),
    (11, Code::OutOfRange, "OUT_OF_RANGE"),
    (12, Code::Unimplemented, "UNIMPLEMENTED"),
    (13, Code::Internal, "INTERNAL"),
    (14, Code::Unavailable, "UNAVAILABLE"),
    (15, Code::DataLoss, "DATA_LOSS"),
    (16, Code::Unauthenticated, "UNAUTHENTICATED"),
];

#[test]
fn every_code_reads_and_writes_back() {
    for (number, code, name) in ALL {
        assert_eq!(Code::from_i32(number), code);
        assert_eq!(code.as_i32(), number);
        assert_eq!(code.as_str(), name);
        assert_eq!(code.to_string(), name);
        let value = HeaderValue::from_str(&number.to_string()).unwrap();
        assert_eq!(Code::from_header_value(&value), code);
    }
}

#[test]
fn garbage_status_is_unknown() {
    for garbage in [
        "",
        " ",
        "-1",
        "+14",
        "14 ",
        " 14",
        "1 4",
        "fourteen",
        "0x0e",
        "17",
        "99",
        "2147483648",
        "99999999999999999999",
        "14.0",
        "\t",
    ] {
        let value = HeaderValue::from_str(garbage).unwrap();
        assert_eq!(
            Code::from_header_value(&value),
            Code::Unknown,
            "{garbage:?}"
        );
    }
    let non_utf8 = HeaderValue::from_bytes(b"\xff\xfe").unwrap();
    assert_eq!(Code::from_header_value(&non_utf8), Code::Unknown);
    for number in [-1, 17, 99, i32::MIN, i32::MAX] {
        assert_eq!(Code::from_i32(number), Code::Unknown);
    }
}

proptest! {
    /// Any bytes a header can hold read as some code, never a panic; one to nine ASCII
    /// digits read as their number when it is a code.
    #[test]
    fn any_header_value_reads_as_a_code(bytes in proptest::collection::vec(any::<u8>(), 0..24)) {
        if let Ok(value) = HeaderValue::from_bytes(&bytes) {
            let code = Code::from_header_value(&value);
            let digits = !bytes.is_empty() && bytes.len() <= 9 && bytes.iter().all(u8::is_ascii_digit);
            let number = std::str::from_utf8(&bytes).ok().and_then(|t| t.parse::<i32>().ok());
            match number {
                Some(n) if digits && n <= 16 => prop_assert_eq!(code.as_i32(), n),
                _ => prop_assert!(code == Code::Unknown || digits),
            }
        }
    }
}

#[test]
fn http_statuses_from_intermediaries_map_as_the_spec_says() {
    let map = |s: u16| Code::from_http_status(http::StatusCode::from_u16(s).unwrap());
    assert_eq!(map(400), Code::Internal);
    assert_eq!(map(401), Code::Unauthenticated);
    assert_eq!(map(403), Code::PermissionDenied);
    assert_eq!(map(404), Code::Unimplemented);
    for s in [429, 502, 503, 504] {
        assert_eq!(map(s), Code::Unavailable, "{s}");
    }
    for s in [200, 301, 405, 409, 500, 501, 505] {
        assert_eq!(map(s), Code::Unknown, "{s}");
    }
}

// ---------------------------------------------------------------------------------
// The rules, one response at a time

fn verdict(response: Response<()>) -> Verdict<seawall::grpc::GrpcEos> {
    GrpcClassifier::new().classify(&Ok::<_, BoxError>(response))
}

fn at_once(response: Response<()>) -> Classification {
    match verdict(response) {
        Verdict::Classified(c) => c,
        Verdict::AtEndOfStream(_) => panic!("expected a verdict from the headers"),
    }
}

fn trailers_only(code: &str, pushback: Option<&str>) -> Response<()> {
    let mut builder = Response::builder()
        .header("content-type", "application/grpc")
        .header("grpc-status", code);
    if let Some(ms) = pushback {
        builder = builder.header("grpc-retry-pushback-ms", ms);
    }
    builder.body(()).unwrap()
}

#[test]
fn every_code_in_a_trailers_only_response() {
    let expect = |code: Code| -> (Health, bool) {
        match code {
            Code::Ok => (Health::Success, false),
            Code::Unavailable => (Health::Failure, true),
            Code::DeadlineExceeded | Code::ResourceExhausted | Code::Internal | Code::Unknown => {
                (Health::Failure, false)
            }
            _ => (Health::Ignored, false),
        }
    };
    for (number, code, _) in ALL {
        let c = at_once(trailers_only(&number.to_string(), None));
        assert_eq!((c.health(), c.is_retryable()), expect(code), "{code}");
        assert_eq!(c.pushback(), None);
    }
    // Garbage is UNKNOWN: a failure.
    let garbage = at_once(trailers_only("garbage", None));
    assert_eq!(
        (garbage.health(), garbage.is_retryable()),
        (Health::Failure, false)
    );
}

#[test]
fn server_pushback() {
    // A retryable code waits as asked.
    let c = at_once(trailers_only("14", Some("1500")));
    assert!(c.is_retryable());
    assert_eq!(c.pushback(), Some(Duration::from_millis(1500)));
    // A negative or unreadable pushback forbids the retry; the failure still counts.
    for no in ["-1", "-1000", "soon", "", "99999999999"] {
        let c = at_once(trailers_only("14", Some(no)));
        assert!(c.is_failure() && !c.is_retryable(), "{no:?}");
        assert_eq!(c.pushback(), None);
    }
    // RESOURCE_EXHAUSTED is retried only when the server asked for it.
    let shed = at_once(trailers_only("8", Some("250")));
    assert!(shed.is_failure() && shed.is_retryable());
    assert_eq!(shed.pushback(), Some(Duration::from_millis(250)));
    assert!(!at_once(trailers_only("8", None)).is_retryable());
    assert!(!at_once(trailers_only("8", Some("-1"))).is_retryable());
    // A pushback does not make other codes retryable.
    let not_found = at_once(trailers_only("5", Some("100")));
    assert_eq!(not_found.health(), Health::Ignored);
    assert!(!not_found.is_retryable() && not_found.pushback().is_none());
    let internal = at_once(trailers_only("13", Some("100")));
    assert!(internal.is_failure() && !internal.is_retryable());
    // OK is never retried.
    assert!(!at_once(trailers_only("0", Some("100"))).is_retryable());

    let strict = GrpcClassifier::new().retry_pushed_back_resource_exhausted(false);
    let c = strict.classify_code(
        Code::ResourceExhausted,
        Some(Pushback::After(Duration::from_millis(250))),
    );
    assert!(c.is_failure() && !c.is_retryable());
}

#[test]
fn http_statuses_without_grpc_status() {
    let plain = |status: u16, retry_after: Option<&str>| {
        let mut b = Response::builder().status(status);
        if let Some(v) = retry_after {
            b = b.header("retry-after", v);
        }
        at_once(b.body(()).unwrap())
    };
    for s in [429, 502, 503, 504] {
        let c = plain(s, None);
        assert!(c.is_failure() && c.is_retryable(), "{s}: UNAVAILABLE");
    }
    assert_eq!(
        plain(503, Some("3")).pushback(),
        Some(Duration::from_secs(3))
    );
    let c = plain(500, None);
    assert!(c.is_failure() && !c.is_retryable(), "UNKNOWN");
    let c = plain(400, None);
    assert!(c.is_failure() && !c.is_retryable(), "INTERNAL");
    for s in [401, 403, 404] {
        assert_eq!(plain(s, None).health(), Health::Ignored, "{s}");
    }

    // grpc-status, when present, wins over the HTTP status.
    let both = Response::builder()
        .status(503)
        .header("grpc-status", "5")
        .body(())
        .unwrap();
    assert_eq!(at_once(both).health(), Health::Ignored);

    // A 200 without grpc-status: decided by the trailers.
    assert!(matches!(
        verdict(Response::new(())),
        Verdict::AtEndOfStream(_)
    ));
}

#[test]
fn trailers_judged_alone() {
    let c = GrpcClassifier::new();
    let mut trailers = HeaderMap::new();
    assert!(
        c.classify_trailers(&trailers).is_failure(),
        "no status: UNKNOWN"
    );
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    assert!(c.classify_trailers(&trailers).is_success());
    trailers.insert("grpc-status", HeaderValue::from_static("14"));
    trailers.insert("grpc-retry-pushback-ms", HeaderValue::from_static("20"));
    assert_eq!(
        c.classify_trailers(&trailers).pushback(),
        Some(Duration::from_millis(20))
    );
}

#[test]
fn the_sets_can_be_changed() {
    let c = GrpcClassifier::new()
        .failure_codes(&[Code::Unavailable, Code::DataLoss])
        .retryable_codes(&[Code::Unavailable, Code::Aborted]);
    assert_eq!(
        c.classify_code(Code::Internal, None).health(),
        Health::Ignored
    );
    assert!(c.classify_code(Code::DataLoss, None).is_failure());
    let aborted = c.classify_code(Code::Aborted, None);
    assert!(aborted.is_retryable() && aborted.health() == Health::Ignored);
    // OK stays a success that is never retried, whatever the sets say.
    let odd = GrpcClassifier::new()
        .failure_codes(&[Code::Ok])
        .retryable_codes(&[Code::Ok]);
    let ok = odd.classify_code(Code::Ok, None);
    assert!(ok.is_success() && !ok.is_retryable());
}

#[test]
fn transport_errors() {
    let c = |e: BoxError| match GrpcClassifier::new().classify(&Err::<Response<()>, _>(e)) {
        Verdict::Classified(c) => (c.health(), c.is_retryable()),
        Verdict::AtEndOfStream(_) => panic!("an error has no stream"),
    };
    assert_eq!(c("h2 protocol error".into()), (Health::Failure, true));
    assert_eq!(
        c(Box::new(seawall::error::CircuitOpen::new(None))),
        (Health::Ignored, false)
    );
}

// ---------------------------------------------------------------------------------
// Through a real breaker and retry layer

/// What the fake gRPC server does with one call.
enum Reply {
    /// A trailers-only response: `grpc-status` (and pushback) in the headers.
    TrailersOnly(&'static str, Option<&'static str>),
    /// A message, then these trailers (or the end without any).
    Streamed(Option<HeaderMap>),
    /// A message, then a body error.
    BodyError,
    /// A message, then nothing ever again (the caller gives up on it).
    Stalls,
    /// A plain HTTP status with no gRPC status (a proxy answered).
    Http(u16),
}

fn status_trailers(code: &'static str) -> Option<HeaderMap> {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static(code));
    Some(trailers)
}

impl Reply {
    fn into_response(self) -> Response<Body> {
        let message = || Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\x01m")));
        let (builder, frames): (_, BoxStream<'static, Chunk>) = match self {
            Reply::TrailersOnly(code, pushback) => {
                let mut b = Response::builder()
                    .header("content-type", "application/grpc")
                    .header("grpc-status", code);
                if let Some(ms) = pushback {
                    b = b.header("grpc-retry-pushback-ms", ms);
                }
                (b, stream::empty().boxed())
            }
            Reply::Streamed(trailers) => (
                Response::builder().header("content-type", "application/grpc"),
                stream::iter([message()])
                    .chain(stream::iter(trailers.map(|t| Ok(Frame::trailers(t)))))
                    .boxed(),
            ),
            Reply::BodyError => (
                Response::builder().header("content-type", "application/grpc"),
                stream::iter([message(), Err(std::io::Error::other("stream reset"))]).boxed(),
            ),
            Reply::Stalls => (
                Response::builder().header("content-type", "application/grpc"),
                stream::iter([message()]).chain(stream::pending()).boxed(),
            ),
            Reply::Http(status) => (Response::builder().status(status), stream::empty().boxed()),
        };
        builder.body(StreamBody::new(frames)).unwrap()
    }
}

/// A fake gRPC server: answers each call with the next scripted reply (then OK in the
/// trailers), and counts calls.
#[derive(Clone)]
struct Server {
    script: Arc<Mutex<VecDeque<Reply>>>,
    calls: Arc<AtomicUsize>,
}

impl Server {
    fn new(script: impl IntoIterator<Item = Reply>) -> Self {
        Self {
            script: Arc::new(Mutex::new(script.into_iter().collect())),
            calls: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Service<()> for Server {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, (): ()) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let reply = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Reply::Streamed(status_trailers("0")));
        std::future::ready(Ok(reply.into_response()))
    }
}

/// A breaker judging with the gRPC classifier that trips after 2 failures in a row.
fn breaker() -> CircuitBreakerLayer<GrpcClassifier> {
    CircuitBreakerLayer::builder()
        .without_failure_rate()
        .consecutive_failures(2)
        .open_duration(Duration::from_secs(1))
        .jitter(0.0)
        .classifier(GrpcClassifier::new())
        .build()
        .unwrap()
}

/// Read a body to its end (or its error); returns the trailers' grpc-status, if any.
async fn finish<B>(body: B) -> Option<String>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    let mut body = body;
    let mut status = None;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(t) = frame.trailers_ref() {
            status = t.get("grpc-status").map(|v| v.to_str().unwrap().to_owned());
        }
    }
    status
}

/// The breaker's counters that matter here.
fn counts(handle: &Handle) -> (u64, u64, u32) {
    let snap = handle.snapshot();
    (snap.calls, snap.failures, snap.consecutive_failures)
}

#[tokio::test(start_paused = true)]
async fn unavailable_in_the_trailers_trips_the_breaker_when_the_stream_ends() {
    let server = Server::new([
        Reply::Streamed(status_trailers("14")),
        Reply::Streamed(status_trailers("14")),
    ]);
    let breaker = breaker();
    let handle = breaker.handle();
    let svc = breaker.layer(server.clone());

    let first = svc.clone().oneshot(()).await.unwrap();
    let second = svc.clone().oneshot(()).await.unwrap();
    assert!(first.body().is_pending() && second.body().is_pending());
    assert_eq!(counts(&handle).1, 0, "the headers said nothing yet");

    assert_eq!(finish(first.into_body()).await.as_deref(), Some("14"));
    assert_eq!(handle.snapshot().consecutive_failures, 1);
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(finish(second.into_body()).await.as_deref(), Some("14"));
    assert_eq!(handle.state(), State::Open);

    // Fail fast now, without reaching the server.
    assert!(svc.clone().oneshot(()).await.is_err());
    assert_eq!(server.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn not_found_in_the_trailers_counts_as_nothing() {
    let server = Server::new((0..5).map(|_| Reply::Streamed(status_trailers("5"))));
    let breaker = breaker();
    let handle = breaker.handle();
    let svc = breaker.layer(server);
    for _ in 0..5 {
        let response = svc.clone().oneshot(()).await.unwrap();
        let mut body = response.into_body();
        assert!(body.is_pending());
        while let Some(frame) = body.frame().await {
            frame.unwrap();
        }
        assert!(!body.is_pending(), "recorded (as nothing) at the trailers");
    }
    assert_eq!(counts(&handle), (0, 0, 0));
    assert_eq!(handle.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn ok_in_the_trailers_is_a_success_and_is_recorded_once() {
    let server = Server::new([
        Reply::Streamed(status_trailers("14")),
        Reply::Streamed(status_trailers("0")),
    ]);
    let breaker = breaker();
    let handle = breaker.handle();
    let svc = breaker.layer(server);

    let failed = svc.clone().oneshot(()).await.unwrap();
    let mut body = failed.into_body();
    while body.frame().await.is_some() {}
    // Polling past the end records nothing more.
    assert!(body.frame().await.is_none());
    assert_eq!(counts(&handle), (1, 1, 1));

    let ok = svc.clone().oneshot(()).await.unwrap();
    assert_eq!(finish(ok.into_body()).await.as_deref(), Some("0"));
    let (calls, failures, in_a_row) = counts(&handle);
    assert_eq!(
        (calls, failures, in_a_row),
        (2, 1, 0),
        "the OK reset the run"
    );
}

#[tokio::test(start_paused = true)]
async fn garbage_status_in_the_trailers_is_unknown_a_failure() {
    let server = Server::new([
        Reply::Streamed(status_trailers("garbage")),
        Reply::Streamed(status_trailers("-3")),
    ]);
    let breaker = breaker();
    let handle = breaker.handle();
    let svc = breaker.layer(server);
    for _ in 0..2 {
        let r = svc.clone().oneshot(()).await.unwrap();
        finish(r.into_body()).await;
    }
    assert_eq!(handle.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_ends_without_trailers_is_a_failure() {
    let server = Server::new([
        Reply::Streamed(None),
        Reply::Streamed(Some(HeaderMap::new())), // trailers without a status
    ]);
    let breaker = breaker();
    let handle = breaker.handle();
    let svc = breaker.layer(server);
    for _ in 0..2 {
        let r = svc.clone().oneshot(()).await.unwrap();
        assert_eq!(finish(r.into_body()).await, None);
    }
    assert_eq!(counts(&handle).1, 2);
    assert_eq!(handle.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn a_body_error_is_a_failure() {
    let server = Server::new([Reply::BodyError, Reply::BodyError]);
    let breaker = breaker();
    let handle = breaker.handle();
    let svc = breaker.layer(server);
    let r = svc.clone().oneshot(()).await.unwrap();
    let mut body = r.into_body();
    assert!(body.frame().await.unwrap().is_ok(), "the message");
    assert!(body.frame().await.unwrap().is_err(), "the reset");
    assert!(!body.is_pending());
    assert_eq!(counts(&handle), (1, 1, 1));
    let r = svc.clone().oneshot(()).await.unwrap();
    finish(r.into_body()).await;
    assert_eq!(handle.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn a_body_dropped_before_its_end_records_nothing() {
    let server = Server::new([Reply::Stalls, Reply::Streamed(status_trailers("14"))]);
    let breaker = breaker();
    let handle = breaker.handle();
    let svc = breaker.layer(server);

    let r = svc.clone().oneshot(()).await.unwrap();
    let mut body = r.into_body();
    assert!(
        body.frame().await.unwrap().is_ok(),
        "one message, then it stalls"
    );
    drop(body);
    assert_eq!(counts(&handle), (0, 0, 0));

    // A status-less drop of the headers alone, too.
    let r = svc.clone().oneshot(()).await.unwrap();
    drop(r);
    assert_eq!(counts(&handle), (0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_half_open_probe_dropped_half_way_frees_its_slot() {
    let server = Server::new([
        Reply::TrailersOnly("14", None),
        Reply::TrailersOnly("14", None),
        Reply::Stalls,
        Reply::Streamed(status_trailers("0")),
    ]);
    let breaker = breaker();
    let handle = breaker.handle();
    let svc = breaker.layer(server);
    for _ in 0..2 {
        let r = svc.clone().oneshot(()).await.unwrap();
        assert!(!r.body().is_pending(), "classified from the headers");
    }
    assert_eq!(handle.state(), State::Open);
    tokio::time::advance(Duration::from_secs(1)).await;

    let probe = svc.clone().oneshot(()).await.unwrap();
    assert_eq!(handle.snapshot().probes_in_flight, 1);
    let mut body = probe.into_body();
    assert!(body.frame().await.unwrap().is_ok());
    drop(body);
    assert_eq!(handle.snapshot().probes_in_flight, 0);
    assert_eq!(handle.state(), State::HalfOpen);

    let probe = svc.clone().oneshot(()).await.unwrap();
    assert_eq!(finish(probe.into_body()).await.as_deref(), Some("0"));
    assert_eq!(handle.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_plain_http_503_from_a_proxy_counts_as_unavailable() {
    let server = Server::new([Reply::Http(503), Reply::Http(502)]);
    let breaker = breaker();
    let handle = breaker.handle();
    let svc = breaker.layer(server);
    for _ in 0..2 {
        let r = svc.clone().oneshot(()).await.unwrap();
        assert!(!r.body().is_pending());
    }
    assert_eq!(handle.state(), State::Open);
}

/// Retry (3 attempts, 100 ms backoff, no budget) over a breaker over `server`.
fn retrying(
    server: Server,
) -> (
    impl Service<
            (),
            Response = Response<impl http_body::Body<Data = Bytes> + Unpin>,
            Error = BoxError,
        > + Clone,
    Handle,
) {
    let breaker = CircuitBreakerLayer::builder()
        .without_failure_rate()
        .consecutive_failures(5)
        .classifier(GrpcClassifier::new())
        .build()
        .unwrap();
    let handle = breaker.handle();
    let svc = ServiceBuilder::new()
        .layer(
            RetryLayer::builder()
                .max_attempts(3)
                .without_budget()
                .backoff(ConstantBackoff::new(Duration::from_millis(100)))
                .classifier(GrpcClassifier::new())
                .build()
                .unwrap(),
        )
        .layer(breaker)
        .service(server);
    (svc, handle)
}

#[tokio::test(start_paused = true)]
async fn unavailable_in_a_trailers_only_response_is_retried() {
    let server = Server::new([Reply::TrailersOnly("14", None)]);
    let (svc, handle) = retrying(server.clone());
    let start = Instant::now();
    let response = svc.oneshot(()).await.unwrap();
    assert_eq!(server.calls(), 2);
    assert_eq!(start.elapsed(), Duration::from_millis(100), "the backoff");
    assert_eq!(finish(response.into_body()).await.as_deref(), Some("0"));
    assert_eq!(counts(&handle), (2, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn pushback_sets_the_wait_before_the_retry() {
    let server = Server::new([Reply::TrailersOnly("14", Some("1500"))]);
    let (svc, _) = retrying(server.clone());
    let start = Instant::now();
    let response = svc.oneshot(()).await.unwrap();
    assert_eq!(server.calls(), 2);
    assert_eq!(start.elapsed(), Duration::from_millis(1500));
    finish(response.into_body()).await;
}

#[tokio::test(start_paused = true)]
async fn a_negative_pushback_is_not_retried() {
    let server = Server::new([Reply::TrailersOnly("14", Some("-1"))]);
    let (svc, handle) = retrying(server.clone());
    let response = svc.oneshot(()).await.unwrap();
    assert_eq!(response.headers()["grpc-status"], "14");
    assert_eq!(server.calls(), 1, "the server said not to retry");
    assert_eq!(
        counts(&handle),
        (1, 1, 1),
        "it still counts against the server"
    );
}

#[tokio::test(start_paused = true)]
async fn a_shed_call_is_retried_when_the_server_says() {
    // What seawall's own ShedLoadLayer answers: RESOURCE_EXHAUSTED with a pushback.
    let server = Server::new([Reply::TrailersOnly("8", Some("250"))]);
    let (svc, _) = retrying(server.clone());
    let start = Instant::now();
    let response = svc.oneshot(()).await.unwrap();
    assert_eq!(server.calls(), 2);
    assert_eq!(start.elapsed(), Duration::from_millis(250));
    finish(response.into_body()).await;

    // Without a pushback: a quota, maybe for hours; not retried.
    let server = Server::new([Reply::TrailersOnly("8", None)]);
    let (svc, _) = retrying(server.clone());
    svc.oneshot(()).await.unwrap();
    assert_eq!(server.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn unavailable_in_the_trailers_is_counted_but_cannot_be_retried() {
    // The limitation: the retry layer has handed the response back by the time the
    // trailers arrive.
    let server = Server::new([Reply::Streamed(status_trailers("14"))]);
    let (svc, handle) = retrying(server.clone());
    let response = svc.oneshot(()).await.unwrap();
    assert_eq!(server.calls(), 1);
    assert_eq!(counts(&handle).1, 0);
    assert_eq!(finish(response.into_body()).await.as_deref(), Some("14"));
    assert_eq!(counts(&handle), (1, 1, 1), "the breaker still learns of it");
}
