//! One deadline shared along a chain of three real HTTP services on loopback (A calls B
//! calls C), and fail-fast once it is spent; plus the header formats, fuzzed.
#![cfg(all(feature = "http", feature = "timeout"))]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use http::{HeaderValue, StatusCode};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use proptest::prelude::*;
use seawall::error::{is_rejection, DeadlineExceeded};
use seawall::http::deadline::{format_grpc_timeout, parse_grpc_timeout, parse_millis};
use seawall::http::{PropagateDeadlineLayer, ServerDeadlineLayer};
use tokio::net::TcpListener;
use tower::{ServiceBuilder, ServiceExt};

type Body = Empty<bytes::Bytes>;

/// What one service of the chain saw.
#[derive(Default)]
struct Hop {
    /// `x-request-timeout-ms` of each request it received.
    received: Mutex<Vec<u64>>,
    requests: AtomicU32,
}

#[derive(Clone)]
struct HopState {
    hop: Arc<Hop>,
    /// Where this service sends its own call, if anywhere.
    next: Option<SocketAddr>,
    /// How long the handler works before calling on.
    work: Duration,
}

async fn handler(State(state): State<HopState>, headers: HeaderMap) -> StatusCode {
    state.hop.requests.fetch_add(1, Ordering::SeqCst);
    if let Some(ms) = headers.get("x-request-timeout-ms").and_then(parse_millis) {
        state
            .hop
            .received
            .lock()
            .unwrap()
            .push(u64::try_from(ms.as_millis()).unwrap());
    }
    tokio::time::sleep(state.work).await;
    let Some(next) = state.next else {
        return StatusCode::OK;
    };
    // The handler's own client: it writes what is left of the deadline it inherited.
    let client = ServiceBuilder::new()
        .layer(PropagateDeadlineLayer::new())
        .service(Client::builder(TokioExecutor::new()).build_http::<Body>());
    let request = http::Request::get(format!("http://{next}/"))
        .body(Body::new())
        .unwrap();
    match client.oneshot(request).await {
        Ok(response) => response.status(),
        Err(error) if error.downcast_ref::<DeadlineExceeded>().is_some() => {
            assert!(is_rejection(&*error), "failed before sending");
            StatusCode::GATEWAY_TIMEOUT
        }
        Err(_) => StatusCode::BAD_GATEWAY,
    }
}

/// Start one service of the chain on 127.0.0.1; returns its address and a stop switch.
async fn start(
    hop: Arc<Hop>,
    next: Option<SocketAddr>,
    work: Duration,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let app = axum::Router::new()
        .route("/", axum::routing::get(handler))
        .with_state(HopState { hop, next, work })
        .layer(ServerDeadlineLayer::builder().build().unwrap());
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
    (addr, stop)
}

/// Run A → B → C with B working `b_work` before its call; the caller gives A
/// `budget_ms`. Returns A's answer and the three hops.
async fn chain(budget_ms: u64, b_work: Duration) -> (StatusCode, [Arc<Hop>; 3]) {
    let hops = [(); 3].map(|_| Arc::new(Hop::default()));
    let (c, stop_c) = start(hops[2].clone(), None, Duration::ZERO).await;
    let (b, stop_b) = start(hops[1].clone(), Some(c), b_work).await;
    let (a, stop_a) = start(hops[0].clone(), Some(b), Duration::ZERO).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Body>();
    let request = http::Request::get(format!("http://{a}/"))
        .header("x-request-timeout-ms", budget_ms)
        .body(Body::new())
        .unwrap();
    let status = client.request(request).await.unwrap().status();
    for stop in [stop_a, stop_b, stop_c] {
        let _ = stop.send(());
    }
    (status, hops)
}

fn received(hop: &Hop) -> Vec<u64> {
    hop.received.lock().unwrap().clone()
}

#[tokio::test]
async fn one_deadline_is_shared_along_the_chain() {
    let (status, [a, b, c]) = chain(5_000, Duration::from_millis(50)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(received(&a), vec![5_000]);
    let at_b = received(&b)[0];
    let at_c = received(&c)[0];
    assert!(at_b <= 5_000, "B got what was left of A's budget: {at_b}");
    assert!(
        at_c + 50 <= at_b,
        "C got what was left after B's 50 ms of work: {at_c} vs {at_b}"
    );
    assert!(at_c > 0);
}

#[tokio::test]
async fn a_spent_deadline_fails_fast_and_the_next_service_never_sees_the_call() {
    // A gives the chain 100 ms; B works 150 ms before its call to C.
    let (status, [a, b, c]) = chain(100, Duration::from_millis(150)).await;
    assert_eq!(
        status,
        StatusCode::GATEWAY_TIMEOUT,
        "B failed fast, A passed it on"
    );
    assert_eq!(a.requests.load(Ordering::SeqCst), 1);
    assert_eq!(b.requests.load(Ordering::SeqCst), 1);
    assert_eq!(
        c.requests.load(Ordering::SeqCst),
        0,
        "nothing was sent to C"
    );
}

#[tokio::test]
async fn a_hostile_deadline_is_capped_along_the_chain() {
    let (status, [_, b, _]) = chain(u64::MAX / 2, Duration::ZERO).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        received(&b)[0] <= 30_000,
        "capped at the default 30 s: {:?}",
        received(&b)
    );
}

#[tokio::test(start_paused = true)]
async fn a_server_deadline_never_extends_the_one_it_runs_under() {
    use seawall::timeout::Deadline;
    use tower::Layer;
    let server = ServerDeadlineLayer::builder()
        .build()
        .unwrap()
        .layer(tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, seawall::BoxError>(Deadline::current().map(|d| d.remaining()))
        }));
    let request = http::Request::get("/")
        .header("x-request-timeout-ms", "5000")
        .body(())
        .unwrap();
    let seen = Deadline::after(Duration::from_millis(100))
        .scope(server.oneshot(request))
        .await
        .unwrap();
    assert_eq!(seen, Some(Duration::from_millis(100)));
}

#[tokio::test(start_paused = true)]
async fn less_than_a_millisecond_left_is_not_sent() {
    use seawall::timeout::Deadline;
    use tower::Layer;
    let sent = Arc::new(AtomicU32::new(0));
    let client = {
        let sent = sent.clone();
        PropagateDeadlineLayer::new().layer(tower::service_fn(move |_: http::Request<()>| {
            sent.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, seawall::BoxError>(()) }
        }))
    };
    let deadline = Deadline::after(Duration::from_micros(999));
    let error = deadline
        .scope(client.oneshot(http::Request::new(())))
        .await
        .unwrap_err();
    assert!(is_rejection(&*error));
    assert_eq!(sent.load(Ordering::SeqCst), 0);
}

proptest! {
    #[test]
    fn grpc_timeouts_round_trip_rounded_down(nanos in any::<u64>()) {
        let timeout = Duration::from_nanos(nanos);
        let parsed = parse_grpc_timeout(&format_grpc_timeout(timeout)).unwrap();
        prop_assert!(parsed <= timeout, "never more time than was left");
        // Rounded down to the finest unit that fits 8 digits: at least 10^5 of them, so
        // the loss is under one part in 10^5.
        prop_assert!(timeout - parsed <= timeout / 100_000 + Duration::from_nanos(1));
    }

    #[test]
    fn header_parsers_never_panic_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..24)) {
        if let Ok(value) = HeaderValue::from_bytes(&bytes) {
            let _ = parse_grpc_timeout(&value);
            let _ = parse_millis(&value);
        }
    }

    #[test]
    fn millis_parse_exactly(ms in 0_u64..=9_999_999_999_999_999) {
        let value = HeaderValue::from_str(&ms.to_string()).unwrap();
        prop_assert_eq!(parse_millis(&value), Some(Duration::from_millis(ms)));
    }
}

#[test]
fn grpc_timeout_rejects_every_malformed_form() {
    for bad in [
        "",
        "m",
        "1",
        "1x",
        "123456789S",
        "-1m",
        "1.5S",
        " 1S",
        "1S ",
        "+1S",
    ] {
        let value = HeaderValue::from_str(bad).unwrap();
        assert_eq!(parse_grpc_timeout(&value), None, "{bad:?}");
    }
    for (good, expected) in [
        ("1H", Duration::from_secs(3600)),
        ("2M", Duration::from_secs(120)),
        ("99999999n", Duration::from_nanos(99_999_999)),
        ("0m", Duration::ZERO),
    ] {
        let value = HeaderValue::from_str(good).unwrap();
        assert_eq!(parse_grpc_timeout(&value), Some(expected), "{good:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_server_deadline_in_the_extensions_is_the_one_that_applies() {
    use seawall::timeout::Deadline;
    use tower::Layer;
    let server = ServerDeadlineLayer::builder()
        .build()
        .unwrap()
        .layer(tower::service_fn(|request: http::Request<()>| async move {
            let current = Deadline::current().map(|d| d.remaining());
            let extension = request
                .extensions()
                .get::<Deadline>()
                .map(|d| d.remaining());
            Ok::<_, seawall::BoxError>((current, extension))
        }));
    let hundred = Some(Duration::from_millis(100));
    // The request asks for 5 s, inside a scope with 100 ms left: 100 ms applies.
    let request = http::Request::get("/")
        .header("x-request-timeout-ms", "5000")
        .body(())
        .unwrap();
    let seen = Deadline::after(Duration::from_millis(100))
        .scope(server.clone().oneshot(request))
        .await
        .unwrap();
    assert_eq!(seen, (hundred, hundred));
    // A request that asks for nothing, inside the same scope: still 100 ms.
    let seen = Deadline::after(Duration::from_millis(100))
        .scope(server.clone().oneshot(http::Request::new(())))
        .await
        .unwrap();
    assert_eq!(seen, (hundred, hundred));
    // A tighter one asked for wins over the scope.
    let request = http::Request::get("/")
        .header("x-request-timeout-ms", "40")
        .body(())
        .unwrap();
    let forty = Some(Duration::from_millis(40));
    let seen = Deadline::after(Duration::from_millis(100))
        .scope(server.oneshot(request))
        .await
        .unwrap();
    assert_eq!(seen, (forty, forty));
}

/// The attempt timeout reaches the downstream: each attempt of a policy carries the
/// lesser of what is left of the deadline and the attempt's own time.
#[cfg(feature = "policy")]
mod attempt_timeout_travels {
    use super::*;
    use seawall::http::IdempotentReplay;
    use seawall::policy::Policy;
    use seawall::retry::backoff::ConstantBackoff;
    use tower::Layer;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Calls a hung downstream (below `PropagateDeadline`) through a policy with
    /// `deadline` (none if `None`), 500 ms attempts, three attempts 100 ms apart, and
    /// returns the deadline header each attempt carried (`grpc-timeout` on gRPC
    /// requests, `x-request-timeout-ms` on others).
    async fn headers_of_each_attempt(
        deadline: Option<Duration>,
        grpc: bool,
    ) -> Vec<Option<String>> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let downstream = {
            let seen = seen.clone();
            PropagateDeadlineLayer::new().layer(tower::service_fn(
                move |request: http::Request<()>| {
                    let name = if grpc {
                        "grpc-timeout"
                    } else {
                        "x-request-timeout-ms"
                    };
                    let value = request
                        .headers()
                        .get(name)
                        .map(|v| v.to_str().unwrap().to_owned());
                    seen.lock().unwrap().push(value);
                    std::future::pending::<Result<(), seawall::BoxError>>()
                },
            ))
        };
        let mut policy = Policy::builder("orders")
            .replay(IdempotentReplay::new().allow_non_idempotent())
            .attempt_timeout(ms(500))
            .retry(|retry| retry.max_attempts(3).backoff(ConstantBackoff::new(ms(100))))
            .circuit_breaker(|breaker| breaker.minimum_calls(100));
        policy = match deadline {
            Some(deadline) => policy.deadline(deadline),
            None => policy.without_deadline(),
        };
        let mut request = http::Request::post("/orders.Orders/Get");
        if grpc {
            request = request.header("content-type", "application/grpc");
        }
        let error = policy
            .build()
            .unwrap()
            .layer(downstream)
            .oneshot(request.body(()).unwrap())
            .await
            .unwrap_err();
        assert!(
            error.is::<seawall::error::Elapsed>() || error.is::<DeadlineExceeded>(),
            "{error}"
        );
        seen.lock().unwrap().clone()
    }

    fn all(value: &str) -> Vec<Option<String>> {
        vec![Some(value.to_owned()); 3]
    }

    #[tokio::test(start_paused = true)]
    async fn each_attempt_carries_its_own_timeout_not_the_whole_deadline() {
        let ten_seconds = Some(Duration::from_secs(10));
        assert_eq!(
            headers_of_each_attempt(ten_seconds, true).await,
            all("500000u")
        );
        assert_eq!(
            headers_of_each_attempt(ten_seconds, false).await,
            all("500")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_deadline_each_attempt_carries_its_timeout() {
        assert_eq!(headers_of_each_attempt(None, true).await, all("500000u"));
        assert_eq!(headers_of_each_attempt(None, false).await, all("500"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_the_deadline_cuts_short_carries_what_is_left_of_it() {
        // Attempts at 0, 600 and 1200 ms; the deadline is at 1300 ms.
        let deadline = Some(ms(1300));
        let carried = headers_of_each_attempt(deadline, true).await;
        assert_eq!(
            carried,
            ["500000u", "500000u", "100000u"].map(|v| Some(v.to_owned()))
        );
        let carried = headers_of_each_attempt(deadline, false).await;
        assert_eq!(carried, ["500", "500", "100"].map(|v| Some(v.to_owned())));
    }
}
