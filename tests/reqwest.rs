//! A `reqwest::Client` behind a policy, against real HTTP servers (axum) on 127.0.0.1
//! that each test starts and stops: bursts of 5xx, a refused connection, a hang, a slow
//! body, `429` with `Retry-After` (sane and absurd), and POSTs with and without an
//! idempotency key.
//!
//! Every assertion is on counts (requests the server received, the breaker's and the
//! budget's counters) or on lower bounds of elapsed time that the rule under test
//! guarantees (a pushback is waited out in full); the only upper bounds on time are
//! orders of magnitude away from what the test expects (a call that must fail "at once"
//! rather than after a ten-year `Retry-After`). Real time: about 2.5 s in all.
#![cfg(all(feature = "reqwest", feature = "policy"))]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use seawall::circuit_breaker::{CircuitBreakerLayer, State as BreakerState};
use seawall::classify::Health;
use seawall::error::{is_rejection, CircuitOpen, DeadlineExceeded, Elapsed};
use seawall::reqwest::{ClientExt, ReqwestClassifier};
use seawall::retry::backoff::ConstantBackoff;
use seawall::retry::budget::RetryBudget;
use seawall::BoxError;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

// ===== the servers =====

/// What the server does with one request.
#[derive(Debug, Clone, Copy)]
enum Reply {
    Status(StatusCode),
    /// The status with a `Retry-After` header.
    RetryAfter(StatusCode, &'static str),
    /// Never answer.
    Hang,
    /// 200 and the first chunk of the body at once, then nothing, ever.
    SlowBody,
}

/// What the server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: http::Method,
    idempotency_key: Option<HeaderValue>,
    body: Bytes,
}

type Script = dyn Fn(u32) -> Reply + Send + Sync;

struct Shared {
    script: Box<Script>,
    hits: AtomicU32,
    seen: Mutex<Vec<Seen>>,
}

struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Requests received (every attempt is one).
    fn hits(&self) -> u32 {
        self.shared.hits.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// Stop gracefully, or cut it off after a short wait when a hanging request or a
    /// stalled body holds a connection open.
    async fn stop(self) {
        let _ = self.stop.send(());
        let abort = self.task.abort_handle();
        if tokio::time::timeout(Duration::from_millis(200), self.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let n = shared.hits.fetch_add(1, Ordering::SeqCst);
    let method = request.method().clone();
    let idempotency_key = request.headers().get("idempotency-key").cloned();
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    shared.seen.lock().unwrap().push(Seen {
        method,
        idempotency_key,
        body,
    });
    match (shared.script)(n) {
        Reply::Status(status) => status.into_response(),
        Reply::RetryAfter(status, after) => {
            (status, [(header::RETRY_AFTER, after)]).into_response()
        }
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
        Reply::SlowBody => {
            let first = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(
                b"the first chunk, and then nothing",
            ))]);
            let body = futures::StreamExt::chain(first, futures::stream::pending());
            Response::new(Body::from_stream(body))
        }
    }
}

/// A server on 127.0.0.1 that answers its `n`th request (from 0) as `script(n)` says.
async fn serve(script: impl Fn(u32) -> Reply + Send + Sync + 'static) -> Server {
    let shared = Arc::new(Shared {
        script: Box::new(script),
        hits: AtomicU32::new(0),
        seen: Mutex::new(Vec::new()),
    });
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(shared.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Server {
        addr,
        shared,
        stop,
        task,
    }
}

/// A client that talks to 127.0.0.1 directly, whatever proxy the environment names.
fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A policy for quick tests: retries 1 ms apart (no jitter to wait out).
fn policy(
    name: &str,
) -> seawall::policy::PolicyBuilder<
    ReqwestClassifier,
    seawall::reqwest::ReqwestReplay,
    seawall::bulkhead::OnResponse,
    ConstantBackoff,
> {
    seawall::reqwest::policy(name)
        .retry(|retry| retry.backoff(ConstantBackoff::new(Duration::from_millis(1))))
}

fn failures_of(policy: &seawall::policy::PolicyHandle) -> u64 {
    policy.circuit_breaker().unwrap().snapshot().failures
}

// ===== bursts of 5xx =====

#[tokio::test]
async fn a_burst_of_503s_is_retried_and_each_attempt_counts_for_the_breaker() {
    // Two 503s, then the server recovers.
    let server = serve(|n| match n {
        0 | 1 => Reply::Status(StatusCode::SERVICE_UNAVAILABLE),
        _ => Reply::Status(StatusCode::OK),
    })
    .await;
    let policy = policy("burst").build().unwrap();
    let handle = policy.handle();
    let client = client().with_policy(&policy);

    let response = client
        .execute(client.get_ref().get(server.url("/items")).build().unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.hits(), 3, "two retries");
    let breaker = handle.circuit_breaker().unwrap().snapshot();
    assert_eq!(
        (breaker.calls, breaker.failures),
        (3, 2),
        "the breaker sees attempts"
    );
    let budget = handle.budget().unwrap().snapshot();
    assert_eq!((budget.deposits, budget.withdrawals), (1, 2));
    server.stop().await;
}

#[tokio::test]
async fn a_long_burst_returns_the_last_503_and_the_budget_bounds_the_retries() {
    let server = serve(|_| Reply::Status(StatusCode::SERVICE_UNAVAILABLE)).await;
    // Half a retry per request, nothing whatever the traffic: at most 1.5x the load.
    let budget = RetryBudget::builder()
        .ratio(0.5)
        .min_per_sec(0.0)
        .build()
        .unwrap();
    let policy = policy("outage")
        .budget(budget.clone())
        .circuit_breaker(|breaker| breaker.minimum_calls(100))
        .build()
        .unwrap();
    let handle = policy.handle();
    let client = client().with_policy(&policy);

    const CALLS: u32 = 10;
    for _ in 0..CALLS {
        let request = client.get_ref().get(server.url("/items")).build().unwrap();
        // Not an error: once the policy stops retrying, the caller gets the response.
        let response = client.execute(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    let budget = budget.snapshot();
    assert_eq!(budget.deposits, u64::from(CALLS));
    assert!(budget.withdrawals <= u64::from(CALLS) / 2, "{budget:?}");
    assert!(budget.denials > 0, "the budget said no: {budget:?}");
    assert_eq!(
        u64::from(server.hits()),
        u64::from(CALLS) + budget.withdrawals,
        "one request per call, plus one per retry the budget allowed"
    );
    assert_eq!(failures_of(&handle), u64::from(server.hits()));
    server.stop().await;
}

#[tokio::test]
async fn a_500_is_a_failure_but_not_retried_unless_asked() {
    let server = serve(|_| Reply::Status(StatusCode::INTERNAL_SERVER_ERROR)).await;
    let once = policy("bug").build().unwrap();
    let handle = once.handle();
    let client = client().with_policy(&once);
    let request = client.get_ref().get(server.url("/")).build().unwrap();
    let response = client.execute(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(server.hits(), 1);
    assert_eq!(failures_of(&handle), 1);

    let every_5xx = policy("bug")
        .classifier(ReqwestClassifier::new().retry_all_server_errors())
        .build()
        .unwrap();
    let client = client.into_inner().with_policy(&every_5xx);
    let request = client.get_ref().get(server.url("/")).build().unwrap();
    let _ = client.execute(request).await.unwrap();
    assert_eq!(server.hits(), 1 + 3, "all three attempts");
    server.stop().await;
}

// ===== connection refused =====

/// An address on which nothing listens: a port bound, then let go.
fn refused_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn connection_refused_is_a_retryable_failure_and_trips_the_breaker() {
    let addr = refused_addr();
    let policy = policy("refused")
        .retry(|retry| retry.max_attempts(2))
        .circuit_breaker(|breaker| breaker.without_failure_rate().consecutive_failures(4))
        .build()
        .unwrap();
    let handle = policy.handle();
    let client = client().with_policy(&policy);
    let url = format!("http://{addr}/");

    // Two calls of two attempts each: four connect failures in a row.
    for call in 1..=2 {
        let err = client
            .execute(client.get_ref().get(&url).build().unwrap())
            .await
            .unwrap_err();
        let reqwest = err
            .downcast_ref::<reqwest::Error>()
            .expect("reqwest's error");
        assert!(reqwest.is_connect(), "{reqwest:?}");
        assert!(!is_rejection(&*err));
        let breaker = handle.circuit_breaker().unwrap().snapshot();
        assert_eq!(
            breaker.consecutive_failures,
            2 * call,
            "both attempts went out"
        );
    }
    assert_eq!(
        handle.circuit_breaker().unwrap().state(),
        BreakerState::Open
    );
    assert_eq!(handle.budget().unwrap().snapshot().withdrawals, 2);

    // Open: the next call fails fast, unsent, and is not retried.
    let err = client
        .execute(client.get_ref().get(&url).build().unwrap())
        .await
        .unwrap_err();
    assert!(err.is::<CircuitOpen>(), "{err}");
    assert_eq!(handle.budget().unwrap().snapshot().withdrawals, 2);
}

#[tokio::test]
async fn a_post_that_could_not_connect_is_still_not_retried_without_a_key() {
    // A refused connection means the POST never left; but the replay, which decides
    // whether a copy exists, does not know why an attempt failed (see ReqwestClassifier).
    let addr = refused_addr();
    let policy = policy("refused-post").build().unwrap();
    let handle = policy.handle();
    let client = client().with_policy(&policy);
    let post = client
        .get_ref()
        .post(format!("http://{addr}/orders"))
        .body("{}")
        .build()
        .unwrap();
    let err = client.execute(post).await.unwrap_err();
    assert!(err.downcast_ref::<reqwest::Error>().unwrap().is_connect());
    assert_eq!(failures_of(&handle), 1, "sent once");

    let keyed = client
        .get_ref()
        .post(format!("http://{addr}/orders"))
        .header("idempotency-key", "order-42")
        .body("{}")
        .build()
        .unwrap();
    let _ = client.execute(keyed).await.unwrap_err();
    assert_eq!(failures_of(&handle), 1 + 3, "with a key: every attempt");
}

// ===== hangs =====

#[tokio::test]
async fn a_hang_is_cut_by_the_attempt_timeout_and_trips_the_breaker() {
    let server = serve(|_| Reply::Hang).await;
    let policy = policy("hang")
        .without_retry()
        .attempt_timeout(Duration::from_millis(100))
        .circuit_breaker(|breaker| breaker.without_failure_rate().consecutive_failures(2))
        .build()
        .unwrap();
    let handle = policy.handle();
    let client = client().with_policy(&policy);

    for _ in 0..2 {
        let request = client.get_ref().get(server.url("/hang")).build().unwrap();
        let err = client.execute(request).await.unwrap_err();
        assert!(err.is::<Elapsed>(), "{err}");
    }
    assert_eq!(
        handle.circuit_breaker().unwrap().state(),
        BreakerState::Open
    );
    let received = server.hits();
    assert!(received <= 2);
    let request = client.get_ref().get(server.url("/hang")).build().unwrap();
    assert!(client
        .execute(request)
        .await
        .unwrap_err()
        .is::<CircuitOpen>());
    assert_eq!(server.hits(), received, "the open breaker sent nothing");
    assert_eq!(
        handle.bulkhead().unwrap().in_flight(),
        0,
        "timed-out attempts gave their permits back"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_deadline_bounds_the_retries_of_a_hang() {
    let server = serve(|_| Reply::Hang).await;
    let deadline = Duration::from_millis(250);
    let policy = policy("hang-deadline")
        .deadline(deadline)
        .attempt_timeout(Duration::from_millis(100))
        .retry(|retry| retry.max_attempts(10))
        .circuit_breaker(|breaker| breaker.minimum_calls(100))
        .build()
        .unwrap();
    let handle = policy.handle();
    let client = client().with_policy(&policy);

    let started = Instant::now();
    let request = client.get_ref().get(server.url("/slow")).build().unwrap();
    let err = client.execute(request).await.unwrap_err();
    let took = started.elapsed();

    // 100 ms attempts in a 250 ms deadline: two whole attempts and a third cut short by
    // the deadline (fewer only on a machine that stalls for a good part of it); never
    // the ten that `max_attempts` allows.
    assert!(err.is::<DeadlineExceeded>() || err.is::<Elapsed>(), "{err}");
    let breaker = handle.circuit_breaker().unwrap().snapshot();
    assert!((1..=3).contains(&breaker.calls), "{breaker:?}");
    assert_eq!(
        breaker.failures, breaker.calls,
        "every attempt that timed out is a breaker failure"
    );
    assert!(u64::from(server.hits()) <= breaker.calls);
    assert!(took >= Duration::from_millis(100), "{took:?}");
    assert!(
        took < Duration::from_secs(10),
        "the deadline bounds the call: {took:?}"
    );
    server.stop().await;
}

// ===== slow bodies =====

#[tokio::test]
async fn a_stalled_body_is_past_the_policy_and_bounded_by_the_caller() {
    let server = serve(|_| Reply::SlowBody).await;
    let policy = policy("slow-body")
        .attempt_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let handle = policy.handle();
    // reqwest's read timeout bounds each read of the body, which the policy never sees.
    let client = reqwest::Client::builder()
        .no_proxy()
        .read_timeout(Duration::from_millis(600))
        .build()
        .unwrap()
        .with_policy(&policy);

    let request = client.get_ref().get(server.url("/file")).build().unwrap();
    let response = client.execute(request).await.unwrap();
    // The headers came: the policy is done with the call, a success.
    assert_eq!(response.status(), StatusCode::OK);
    let breaker = handle.circuit_breaker().unwrap().snapshot();
    assert_eq!((breaker.calls, breaker.failures), (1, 0));
    assert_eq!(
        handle.bulkhead().unwrap().in_flight(),
        0,
        "given back at the headers"
    );

    // The body stalls past the attempt timeout; only the caller's bound ends the read.
    let err = response.bytes().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    let c = ReqwestClassifier::new().classify_reqwest_error(&err);
    assert!(c.is_failure() && c.is_retryable());
    let breaker = handle.circuit_breaker().unwrap().snapshot();
    assert_eq!(
        (breaker.calls, breaker.failures),
        (1, 0),
        "the breaker never hears of the body"
    );
    assert_eq!(server.hits(), 1);
    server.stop().await;
}

// ===== 429 and Retry-After =====

#[tokio::test]
async fn a_429_with_retry_after_is_retried_after_the_pushback() {
    let server = serve(|n| match n {
        0 => Reply::RetryAfter(StatusCode::TOO_MANY_REQUESTS, "1"),
        _ => Reply::Status(StatusCode::OK),
    })
    .await;
    let policy = policy("busy").build().unwrap();
    let handle = policy.handle();
    let client = client().with_policy(&policy);

    let started = Instant::now();
    let request = client.get_ref().get(server.url("/")).build().unwrap();
    let response = client.execute(request).await.unwrap();
    let took = started.elapsed();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.hits(), 2);
    assert!(
        took >= Duration::from_secs(1),
        "the server's 1 s, not the 1 ms backoff: {took:?}"
    );
    assert_eq!(failures_of(&handle), 1, "a 429 is a failure");
    server.stop().await;
}

#[tokio::test]
async fn a_retry_after_of_ten_years_never_waits_past_the_deadline() {
    const TEN_YEARS: &str = "315360000";
    let server = serve(|n| match n {
        0 => Reply::RetryAfter(StatusCode::SERVICE_UNAVAILABLE, TEN_YEARS),
        _ => Reply::Status(StatusCode::OK),
    })
    .await;
    // The pushback is capped at 30 s (the default), still past the 2 s deadline: the
    // caller gets the 503 at once, and no budget is spent.
    let policy = policy("ten-years")
        .deadline(Duration::from_secs(2))
        .build()
        .unwrap();
    let handle = policy.handle();
    let client = client().with_policy(&policy);
    let started = Instant::now();
    let request = client.get_ref().get(server.url("/")).build().unwrap();
    let response = client.execute(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "at once, not at the deadline"
    );
    assert_eq!(server.hits(), 1);
    assert_eq!(handle.budget().unwrap().snapshot().withdrawals, 0);
    server.stop().await;
}

#[tokio::test]
async fn a_retry_after_of_ten_years_is_capped_by_max_pushback() {
    let server = serve(|n| match n {
        0 => Reply::RetryAfter(StatusCode::TOO_MANY_REQUESTS, "315360000"),
        _ => Reply::Status(StatusCode::OK),
    })
    .await;
    let cap = Duration::from_millis(200);
    let policy = policy("capped")
        .deadline(Duration::from_secs(5))
        .retry(|retry| retry.max_pushback(cap))
        .build()
        .unwrap();
    let client = client().with_policy(&policy);
    let started = Instant::now();
    let request = client.get_ref().get(server.url("/")).build().unwrap();
    let response = client.execute(request).await.unwrap();
    let took = started.elapsed();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.hits(), 2);
    assert!(took >= cap, "waited the cap: {took:?}");
    assert!(took < Duration::from_secs(5), "not ten years: {took:?}");
    server.stop().await;
}

// ===== idempotency =====

#[tokio::test]
async fn a_post_is_retried_only_with_an_idempotency_key() {
    let server = serve(|n| match n {
        0 | 1 => Reply::Status(StatusCode::SERVICE_UNAVAILABLE),
        _ => Reply::Status(StatusCode::CREATED),
    })
    .await;
    let policy = policy("orders").build().unwrap();
    let client = client().with_policy(&policy);

    let post = client
        .get_ref()
        .post(server.url("/orders"))
        .body(r#"{"sku":7}"#)
        .build()
        .unwrap();
    let response = client.execute(post).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(server.hits(), 1, "a POST without a key is sent once");

    let keyed = client
        .get_ref()
        .post(server.url("/orders"))
        .header("idempotency-key", "order-7")
        .body(r#"{"sku":7}"#)
        .build()
        .unwrap();
    let response = client.execute(keyed).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(server.hits(), 3, "with a key: retried");

    let seen = server.seen();
    for retry in &seen[1..] {
        assert_eq!(retry.method, http::Method::POST);
        assert_eq!(retry.idempotency_key.as_ref().unwrap(), "order-7");
        assert_eq!(retry.body, r#"{"sku":7}"#, "the whole body, every attempt");
    }
    server.stop().await;
}

// ===== the classifier alone =====

#[tokio::test]
async fn the_classifier_works_in_a_layer_alone_on_reqwest_s_own_error() {
    // A breaker straight over the client: the classifier sees `reqwest::Error` unboxed.
    let layer = CircuitBreakerLayer::builder()
        .without_failure_rate()
        .consecutive_failures(1)
        .classifier(ReqwestClassifier::new())
        .build()
        .unwrap();
    let handle = layer.handle();
    let breaker = layer.layer(client());

    // A request reqwest will not send counts as nothing.
    let bad = reqwest::Request::new(http::Method::GET, "ftp://127.0.0.1/".parse().unwrap());
    let err: BoxError = breaker.clone().oneshot(bad).await.unwrap_err();
    assert!(err.downcast_ref::<reqwest::Error>().unwrap().is_builder());
    assert_eq!(handle.snapshot().calls, 0);
    let c = ReqwestClassifier::new().classify_error(&err);
    assert_eq!(c.health(), Health::Ignored);

    // A refused connection trips it.
    let url = format!("http://{}/", refused_addr());
    let refused = reqwest::Request::new(http::Method::GET, url.parse().unwrap());
    assert!(breaker.clone().oneshot(refused).await.is_err());
    assert_eq!(handle.state(), BreakerState::Open);
}
