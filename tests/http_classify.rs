//! The HTTP status classifier: every status class, errors, `Retry-After` pushback, and
//! the outcome as a real breaker and retry layer act on it.
#![cfg(all(
    feature = "http",
    feature = "circuit-breaker",
    feature = "retry",
    feature = "timeout"
))]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::{Response, StatusCode};
use seawall::circuit_breaker::{CircuitBreaker, CircuitBreakerLayer, Handle, State};
use seawall::classify::{Classification, Classify, Health, Verdict};
use seawall::error::{BulkheadFull, CircuitOpen, DeadlineExceeded, Elapsed};
use seawall::http::StatusClassifier;
use seawall::retry::backoff::ConstantBackoff;
use seawall::retry::{Retry, RetryLayer};
use seawall::timeout::TimeoutLayer;
use seawall::BoxError;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

fn judge(classifier: StatusClassifier, result: Result<Response<()>, BoxError>) -> Classification {
    match classifier.classify(&result) {
        Verdict::Classified(c) => c,
        Verdict::AtEndOfStream(never) => match never {},
    }
}

fn status(code: u16) -> Response<()> {
    Response::builder().status(code).body(()).unwrap()
}

fn with_retry_after(code: u16, value: &str) -> Response<()> {
    Response::builder()
        .status(code)
        .header("retry-after", value)
        .body(())
        .unwrap()
}

/// (health, retryable) of a response.
fn verdict(classifier: StatusClassifier, code: u16) -> (Health, bool) {
    let c = judge(classifier, Ok(status(code)));
    (c.health(), c.is_retryable())
}

#[test]
fn every_status_class() {
    let c = StatusClassifier::new();
    for code in [100, 101, 200, 201, 204, 206, 301, 302, 304, 307, 399] {
        assert_eq!(verdict(c, code), (Health::Success, false), "{code}");
    }
    for code in [408, 429] {
        assert_eq!(verdict(c, code), (Health::Failure, true), "{code}");
    }
    for code in [400, 401, 403, 404, 405, 409, 410, 413, 422, 451, 499] {
        assert_eq!(verdict(c, code), (Health::Ignored, false), "{code}");
    }
    for code in [502, 503, 504] {
        assert_eq!(verdict(c, code), (Health::Failure, true), "{code}");
    }
    for code in [500, 501, 505, 507, 511, 599] {
        assert_eq!(verdict(c, code), (Health::Failure, false), "{code}");
    }
    // Not an HTTP status class at all.
    for code in [600, 799, 999] {
        assert_eq!(verdict(c, code), (Health::Failure, false), "{code}");
    }
}

#[test]
fn every_server_error_is_retried_when_asked() {
    let c = StatusClassifier::new().retry_all_server_errors();
    for code in 500..=599 {
        assert_eq!(verdict(c, code), (Health::Failure, true), "{code}");
    }
    // Nothing else changes.
    assert_eq!(verdict(c, 404), (Health::Ignored, false));
    assert_eq!(verdict(c, 200), (Health::Success, false));
    assert_eq!(verdict(c, 600), (Health::Failure, false));
}

#[test]
fn retry_after_on_429_and_503_in_both_forms() {
    let c = StatusClassifier::new();
    let delta = judge(c, Ok(with_retry_after(429, "7")));
    assert_eq!(delta.pushback(), Some(Duration::from_secs(7)));
    assert!(delta.is_failure() && delta.is_retryable());

    let in_two_minutes = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
    let date = judge(c, Ok(with_retry_after(503, &in_two_minutes)));
    let pushback = date.pushback().expect("a date is a delay");
    assert!(
        pushback <= Duration::from_secs(120) && pushback >= Duration::from_secs(115),
        "{pushback:?}"
    );

    // A date in the past: retry at once.
    let past = judge(
        c,
        Ok(with_retry_after(503, "Wed, 21 Oct 2015 07:28:00 GMT")),
    );
    assert_eq!(past.pushback(), Some(Duration::ZERO));
}

#[test]
fn retry_after_is_read_only_on_retryable_responses_and_never_trusted_blindly() {
    let c = StatusClassifier::new();
    // Garbage: no pushback, still retryable (the backoff decides).
    let garbage = judge(c, Ok(with_retry_after(503, "soon")));
    assert!(garbage.is_retryable());
    assert_eq!(garbage.pushback(), None);
    // Not retried: the header is not read.
    assert_eq!(judge(c, Ok(with_retry_after(500, "5"))).pushback(), None);
    assert_eq!(judge(c, Ok(with_retry_after(404, "5"))).pushback(), None);
    assert_eq!(judge(c, Ok(with_retry_after(200, "5"))).pushback(), None);
    // Any retryable status honours it (a gateway that sends one on 502).
    assert_eq!(
        judge(c, Ok(with_retry_after(502, "2"))).pushback(),
        Some(Duration::from_secs(2))
    );
    // A huge value is parsed and saturates; the retry layer caps it.
    assert_eq!(
        judge(c, Ok(with_retry_after(429, "99999999999999999999"))).pushback(),
        Some(Duration::from_secs(u64::MAX))
    );
}

/// An error that wraps another, to check that the source chain is searched.
#[derive(Debug)]
struct Wrapped(BoxError);

impl std::fmt::Display for Wrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "client error: {}", self.0)
    }
}

impl std::error::Error for Wrapped {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

#[test]
fn errors() {
    let c = StatusClassifier::new();
    let e = |err: BoxError| {
        let c = judge(c, Err(err));
        (c.health(), c.is_retryable())
    };
    // Connect errors, resets, anything from the network: retryable failures.
    assert_eq!(e("connection refused".into()), (Health::Failure, true));
    // An attempt timeout: a retryable failure.
    assert_eq!(
        e(Box::new(Elapsed::new(Duration::from_millis(100)))),
        (Health::Failure, true)
    );
    // The call's deadline ran out while the request was out: a failure, but no time is
    // left for another attempt.
    assert_eq!(
        e(Box::new(DeadlineExceeded::while_sent())),
        (Health::Failure, false)
    );
    assert_eq!(
        e(Box::new(Wrapped(Box::new(DeadlineExceeded::while_sent())))),
        (Health::Failure, false),
        "found along the source chain"
    );
    // Local rejections by seawall layers: nothing reached the downstream.
    assert_eq!(
        e(Box::new(CircuitOpen::new(None))),
        (Health::Ignored, false)
    );
    assert_eq!(e(Box::new(BulkheadFull::new())), (Health::Ignored, false));
    assert_eq!(
        e(Box::new(DeadlineExceeded::before_send())),
        (Health::Ignored, false)
    );
    assert_eq!(
        e(Box::new(Wrapped(Box::new(CircuitOpen::new(None))))),
        (Health::Ignored, false)
    );

    // Unboxed error types work too.
    let raw: Result<Response<()>, std::io::Error> = Err(std::io::Error::other("reset"));
    let Verdict::Classified(c) = c.classify(&raw);
    assert!(c.is_failure() && c.is_retryable());
    let raw: Result<Response<()>, DeadlineExceeded> = Err(DeadlineExceeded::while_sent());
    let Verdict::Classified(c) = StatusClassifier::new().classify(&raw);
    assert!(c.is_failure() && !c.is_retryable());
}

type Answer = Result<Response<()>, BoxError>;

/// A downstream that answers each call with the next scripted result, and counts calls.
#[derive(Clone)]
struct Scripted {
    script: Arc<Mutex<VecDeque<Answer>>>,
    calls: Arc<AtomicUsize>,
    hang: bool,
}

impl Scripted {
    fn new(script: impl IntoIterator<Item = Answer>) -> Self {
        Self {
            script: Arc::new(Mutex::new(script.into_iter().collect())),
            calls: Arc::new(AtomicUsize::new(0)),
            hang: false,
        }
    }

    /// A downstream that never answers.
    fn hanging() -> Self {
        Self {
            hang: true,
            ..Self::new([])
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Service<()> for Scripted {
    type Response = Response<()>;
    type Error = BoxError;
    type Future = futures::future::BoxFuture<'static, Result<Response<()>, BoxError>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, (): ()) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.hang {
            return Box::pin(std::future::pending());
        }
        let next = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| Ok(status(200)));
        Box::pin(async move { next })
    }
}

/// A breaker that trips after 3 failures in a row.
fn breaker(classifier: StatusClassifier) -> CircuitBreakerLayer<StatusClassifier> {
    CircuitBreakerLayer::builder()
        .without_failure_rate()
        .consecutive_failures(3)
        .open_duration(Duration::from_secs(30))
        .jitter(0.0)
        .classifier(classifier)
        .build()
        .unwrap()
}

type Stack = Retry<CircuitBreaker<Scripted, StatusClassifier>, StatusClassifier, ConstantBackoff>;

/// Retry (up to `attempts`, 1 s backoff, no budget) over a breaker over `downstream`,
/// both judging with `classifier`.
fn stack(classifier: StatusClassifier, attempts: u32, downstream: Scripted) -> (Stack, Handle) {
    let breaker = breaker(classifier);
    let handle = breaker.handle();
    let retry = RetryLayer::builder()
        .max_attempts(attempts)
        .without_budget()
        .backoff(ConstantBackoff::new(Duration::from_secs(1)))
        .max_pushback(Duration::from_secs(300))
        .classifier(classifier)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(retry)
        .layer(breaker)
        .service(downstream);
    (svc, handle)
}

#[tokio::test(start_paused = true)]
async fn a_503_with_retry_after_is_retried_after_the_delay_the_server_asked_for() {
    let downstream = Scripted::new([Ok(with_retry_after(503, "7"))]);
    let (svc, handle) = stack(StatusClassifier::new(), 3, downstream.clone());

    let start = Instant::now();
    let response = svc.oneshot(()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(downstream.calls(), 2);
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(7),
        "not the 1 s backoff"
    );
    let snap = handle.snapshot();
    assert_eq!(snap.failures, 1, "the 503 counted against the downstream");
    assert_eq!(snap.consecutive_failures, 0, "then the success");
}

#[tokio::test(start_paused = true)]
async fn a_429_with_an_http_date_is_retried_at_that_date() {
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
    let downstream = Scripted::new([Ok(with_retry_after(429, &date))]);
    let (svc, _) = stack(StatusClassifier::new(), 3, downstream.clone());

    let start = Instant::now();
    let response = svc.oneshot(()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(downstream.calls(), 2);
    let waited = start.elapsed();
    assert!(
        waited <= Duration::from_secs(120) && waited >= Duration::from_secs(115),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_retryable_status_without_retry_after_waits_as_the_backoff_says() {
    let downstream = Scripted::new([Ok(status(502)), Ok(status(504))]);
    let (svc, handle) = stack(StatusClassifier::new(), 3, downstream.clone());

    let start = Instant::now();
    assert_eq!(svc.oneshot(()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(downstream.calls(), 3);
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(handle.snapshot().failures, 2);
}

#[tokio::test(start_paused = true)]
async fn client_errors_are_neither_retried_nor_counted() {
    let downstream = Scripted::new((0..5).map(|_| Ok(status(404))));
    let (svc, handle) = stack(StatusClassifier::new(), 3, downstream.clone());

    for _ in 0..5 {
        let response = svc.clone().oneshot(()).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
    assert_eq!(downstream.calls(), 5, "never retried");
    let snap = handle.snapshot();
    assert_eq!((snap.failures, snap.consecutive_failures), (0, 0));
    assert_eq!(snap.state, State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_500_counts_but_is_retried_only_when_asked() {
    let downstream = Scripted::new([Ok(status(500))]);
    let (svc, handle) = stack(StatusClassifier::new(), 3, downstream.clone());
    assert_eq!(svc.oneshot(()).await.unwrap().status(), 500);
    assert_eq!(downstream.calls(), 1, "not retried by default");
    assert_eq!(handle.snapshot().failures, 1);

    let downstream = Scripted::new([Ok(status(500))]);
    let (svc, _) = stack(
        StatusClassifier::new().retry_all_server_errors(),
        3,
        downstream.clone(),
    );
    assert_eq!(svc.oneshot(()).await.unwrap().status(), 200);
    assert_eq!(downstream.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn too_many_requests_and_server_errors_trip_the_breaker() {
    let downstream = Scripted::new([Ok(status(429)), Ok(status(503)), Ok(status(408))]);
    // One attempt: every failure reaches the caller and the breaker.
    let (svc, handle) = stack(StatusClassifier::new(), 1, downstream.clone());
    for expected in [429, 503, 408] {
        assert_eq!(svc.clone().oneshot(()).await.unwrap().status(), expected);
    }
    assert_eq!(handle.state(), State::Open);

    // The open breaker's rejection is not retried, and does not reach the downstream.
    let err = svc.clone().oneshot(()).await.unwrap_err();
    assert!(err.is::<CircuitOpen>());
    assert_eq!(downstream.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn connection_errors_are_retried_failures() {
    let downstream = Scripted::new([Err("connection refused".into()), Err("reset".into())]);
    let (svc, handle) = stack(StatusClassifier::new(), 3, downstream.clone());
    assert_eq!(svc.oneshot(()).await.unwrap().status(), 200);
    assert_eq!(downstream.calls(), 3);
    assert_eq!(handle.snapshot().failures, 2);
}

#[tokio::test(start_paused = true)]
async fn an_attempt_timeout_is_a_retried_failure() {
    let downstream = Scripted::hanging();
    let breaker = breaker(StatusClassifier::new());
    let handle = breaker.handle();
    let svc = ServiceBuilder::new()
        .layer(
            RetryLayer::builder()
                .max_attempts(2)
                .without_budget()
                .backoff(ConstantBackoff::new(Duration::from_secs(1)))
                .classifier(StatusClassifier::new())
                .build()
                .unwrap(),
        )
        .layer(breaker)
        .layer(TimeoutLayer::new(Duration::from_millis(250)).unwrap())
        .service(downstream.clone());

    let start = Instant::now();
    let err = svc.oneshot(()).await.unwrap_err();
    assert!(err.is::<Elapsed>(), "{err}");
    assert_eq!(downstream.calls(), 2, "the timeout was retried");
    assert_eq!(start.elapsed(), Duration::from_millis(1500));
    assert_eq!(handle.snapshot().failures, 2);
}

#[tokio::test(start_paused = true)]
async fn a_closure_can_build_on_the_status_rules() {
    use seawall::classify::classify_fn;

    // 404 is a success for this service (a cache miss); the rest as usual.
    let base = StatusClassifier::new();
    let classifier = classify_fn(
        move |result: &Result<Response<()>, BoxError>| match result {
            Ok(r) if r.status() == StatusCode::NOT_FOUND => Classification::success(),
            Ok(r) => base.classify_response(r),
            Err(e) => StatusClassifier::classify_error(e),
        },
    );
    let svc = CircuitBreakerLayer::builder()
        .without_failure_rate()
        .consecutive_failures(1)
        .classifier(classifier)
        .build()
        .unwrap();
    let handle = svc.handle();
    let svc = svc.layer(Scripted::new([Ok(status(404)), Ok(status(503))]));
    svc.clone().oneshot(()).await.unwrap();
    assert_eq!(handle.state(), State::Closed);
    svc.clone().oneshot(()).await.unwrap();
    assert_eq!(handle.state(), State::Open);
}
