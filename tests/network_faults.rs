//! Real network faults on 127.0.0.1, from raw TCP servers that misbehave precisely:
//! a reset before the response head ends, a body cut off halfway (by a reset, or by a
//! close before the announced length), a server that accepts and never answers, a body
//! that stalls halfway (`Content-Length: 1000`, 500 bytes sent), malformed HTTP, a status
//! over 599, and a `429` whose `Retry-After` is ten years away (as an HTTP-date, and as
//! a number too large for any clock).
//!
//! Each goes through a whole seawall policy over a `reqwest::Client` (the stalled body
//! through hyper's client and `UntilBodyEnd`, the path that holds a permit for the body)
//! and each test asserts how the fault was classified, how many requests the server
//! received (what the policy retried), and what the caller gets: seawall's error or
//! reqwest's, downcast, never taken for a local rejection. Every test runs under a
//! 10 s hang guard; none asserts a wall-clock duration. Every server is stopped at the
//! end of its test.
//!
//! Covered in tests/reqwest.rs, and not repeated here: a refused connection (retried,
//! `is_connect`, trips the breaker; a POST is sent once), a hang cut by the attempt
//! timeout and by the deadline, a chunked body that stalls past the policy (bounded by
//! reqwest's `read_timeout`), and a `Retry-After` of ten years in delta-seconds (capped
//! by `max_pushback`; not retried when the cap passes the deadline).
#![cfg(all(feature = "reqwest", feature = "policy"))]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use seawall::error::{is_rejection, BulkheadFull, DeadlineExceeded};
use seawall::http::{IdempotentReplay, StatusClassifier, UntilBodyEnd};
use seawall::policy::{Policy, PolicyBuilder, PolicyHandle};
use seawall::reqwest::{ClientExt, ReqwestClassifier, ReqwestReplay};
use seawall::retry::backoff::ConstantBackoff;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tower::{Layer, ServiceExt};

// ===== the servers =====

/// A raw TCP server on 127.0.0.1 that hands each connection to a handler, and counts
/// connections and complete request heads.
struct RawServer {
    addr: SocketAddr,
    connections: Arc<AtomicU32>,
    requests: Arc<AtomicU32>,
    task: JoinHandle<()>,
}

/// What a handler gets: the connection and the request counter.
type Requests = Arc<AtomicU32>;

impl RawServer {
    async fn start<F, Fut>(handler: F) -> Self
    where
        F: Fn(TcpStream, Requests) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicU32::new(0));
        let requests = Arc::new(AtomicU32::new(0));
        let task = {
            let (connections, requests) = (connections.clone(), requests.clone());
            tokio::spawn(async move {
                // Dropped (and every connection with it) when the server stops.
                let mut handlers = JoinSet::new();
                while let Ok((stream, _)) = listener.accept().await {
                    connections.fetch_add(1, Ordering::SeqCst);
                    handlers.spawn(handler(stream, requests.clone()));
                }
            })
        };
        Self {
            addr,
            connections,
            requests,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/items/7", self.addr)
    }

    fn connections(&self) -> u32 {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> u32 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Stop listening and drop every connection still open.
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Read one request head (up to the blank line) and count it; `false` at the end of
/// the connection.
async fn read_head(stream: &mut TcpStream, requests: &Requests) -> bool {
    let mut head = Vec::new();
    let mut buf = [0_u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    requests.fetch_add(1, Ordering::SeqCst);
    true
}

/// Write `bytes`, let them reach the client, then abort the connection: `SO_LINGER`
/// of zero makes the close send a TCP RST instead of a FIN.
async fn write_then_reset(mut stream: TcpStream, bytes: &[u8]) {
    let _ = stream.write_all(bytes).await;
    let _ = stream.flush().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Deprecated only because a non-zero linger blocks the thread on drop; zero does not.
    #[allow(deprecated)]
    stream.set_linger(Some(Duration::ZERO)).unwrap();
    drop(stream);
}

// ===== helpers =====

/// The hang guard: a test that has not finished in 10 s has hung.
async fn guarded<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), test)
        .await
        .expect("the test hung: no bound of the policy ended it")
}

/// A client that talks to 127.0.0.1 directly, whatever proxy the environment names.
fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A reqwest policy whose retries are 1 ms apart.
fn policy(
    name: &str,
) -> PolicyBuilder<ReqwestClassifier, ReqwestReplay, seawall::bulkhead::OnResponse, ConstantBackoff>
{
    seawall::reqwest::policy(name)
        .retry(|retry| retry.backoff(ConstantBackoff::new(Duration::from_millis(1))))
}

/// `(calls, failures)` the breaker counted.
fn breaker_counts(handle: &PolicyHandle) -> (u64, u64) {
    let snapshot = handle.circuit_breaker().unwrap().snapshot();
    (snapshot.calls, snapshot.failures)
}

/// The first error of type `T` in `err`'s `source()` chain.
fn find_in_chain<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        next = err.source();
    }
    None
}

/// `err`, and every error under it, in one line.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(err) = next {
        out.push_str(": ");
        out.push_str(&err.to_string());
        next = err.source();
    }
    out
}

/// The response head every well-formed reply here starts with.
const HEAD_1000: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 1000\r\n\r\n";

// ===== resets =====

#[tokio::test]
async fn a_reset_before_the_head_ends_is_retried_within_the_policy_and_surfaces_as_reqwest_s_error()
{
    guarded(async {
        // Half a status line and half a header, then RST.
        let server = RawServer::start(|mut stream, requests| async move {
            if read_head(&mut stream, &requests).await {
                write_then_reset(stream, b"HTTP/1.1 200 OK\r\nContent-Le").await;
            }
        })
        .await;
        let policy = policy("reset-head")
            .circuit_breaker(|breaker| breaker.minimum_calls(100))
            .build()
            .unwrap();
        let handle = policy.handle();
        let client = client().with_policy(&policy);

        let request = client.get_ref().get(server.url()).build().unwrap();
        let err = client.execute(request).await.unwrap_err();

        // Reqwest's error, as the client reported it: a broken exchange, not a refusal,
        // not a timeout; the remote failed, nothing of ours rejected it.
        let reqwest = err
            .downcast_ref::<reqwest::Error>()
            .unwrap_or_else(|| panic!("reqwest's error, not: {}", chain(&*err)));
        assert!(
            !reqwest.is_connect() && !reqwest.is_timeout(),
            "{reqwest:?}"
        );
        assert!(!is_rejection(&*err));
        let broken = find_in_chain::<std::io::Error>(&*err)
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionReset)
            || find_in_chain::<hyper::Error>(&*err)
                .is_some_and(hyper::Error::is_incomplete_message);
        assert!(broken, "a reset or an incomplete message: {}", chain(&*err));

        // A retryable failure: every attempt the policy allows (3) reached the server,
        // each a breaker failure, the two retries paid from the budget.
        let c = ReqwestClassifier::new().classify_error(&err);
        assert!(c.is_failure() && c.is_retryable(), "{c:?}");
        assert_eq!(server.requests(), 3);
        assert_eq!(server.connections(), 3, "a reset connection is not reused");
        assert_eq!(breaker_counts(&handle), (3, 3));
        assert_eq!(handle.budget().unwrap().snapshot().withdrawals, 2);
        assert_eq!(handle.bulkhead().unwrap().in_flight(), 0);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_body_cut_off_halfway_reaches_the_caller_as_a_retryable_body_error() {
    guarded(async {
        // The whole head, 500 of the 1000 bytes it announces, then RST; or then a plain
        // close (FIN), the body cut short.
        for reset in [true, false] {
            let server = RawServer::start(move |mut stream, requests| async move {
                if read_head(&mut stream, &requests).await {
                    let mut reply = HEAD_1000.to_vec();
                    reply.extend_from_slice(&[b'x'; 500]);
                    if reset {
                        write_then_reset(stream, &reply).await;
                    } else {
                        let _ = stream.write_all(&reply).await;
                        let _ = stream.shutdown().await;
                    }
                }
            })
            .await;
            let policy = policy("cut-body").build().unwrap();
            let handle = policy.handle();
            // A plain client: no `timeout` or `read_timeout` for reqwest to wrap the body's
            // error in.
            let client = client().with_policy(&policy);

            // The head arrived whole: for the policy (whose stages end at the head) the
            // call succeeded, once.
            let request = client.get_ref().get(server.url()).build().unwrap();
            let response = client.execute(request).await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(breaker_counts(&handle), (1, 0));
            assert_eq!(handle.bulkhead().unwrap().in_flight(), 0);

            // The body breaks off: `bytes()` reports a decode error caused by the
            // connection's failure, which the classifier calls a retryable failure of the
            // transport, not content that cannot be decoded.
            let err = response.bytes().await.unwrap_err();
            assert!(err.is_body() || err.is_decode(), "{err:?}: {}", chain(&err));
            let io = find_in_chain::<std::io::Error>(&err).map(std::io::Error::kind);
            let expected = if reset {
                std::io::ErrorKind::ConnectionReset
            } else {
                std::io::ErrorKind::UnexpectedEof
            };
            assert_eq!(io, Some(expected), "{}", chain(&err));
            let c = ReqwestClassifier::new().classify_reqwest_error(&err);
            assert!(c.is_failure() && c.is_retryable(), "{c:?}: {}", chain(&err));
            assert_eq!(
                server.requests(),
                1,
                "the policy was done before the body broke"
            );
            assert_eq!(
                breaker_counts(&handle),
                (1, 0),
                "the breaker never hears of the body"
            );
            server.stop().await;
        }
    })
    .await;
}

// ===== a server that accepts and never answers =====

#[tokio::test]
async fn a_server_that_accepts_and_never_answers_is_cut_by_the_deadline() {
    guarded(async {
        // Accept, then neither read nor write: hold the connection until stopped.
        let server = RawServer::start(|stream, _requests| async move {
            std::future::pending::<()>().await;
            drop(stream);
        })
        .await;
        // No attempt timeout: only the deadline bounds the call.
        let policy = policy("silent")
            .deadline(Duration::from_millis(300))
            .without_attempt_timeout()
            .build()
            .unwrap();
        let handle = policy.handle();
        let client = client().with_policy(&policy);

        let request = client.get_ref().get(server.url()).build().unwrap();
        let err = client.execute(request).await.unwrap_err();

        // The policy's own error: the deadline passed with the request out, which is
        // the downstream's failure, not a local rejection; and not retried (the call's
        // time is spent).
        let exceeded = err
            .downcast_ref::<DeadlineExceeded>()
            .unwrap_or_else(|| panic!("DeadlineExceeded, not: {}", chain(&*err)));
        assert!(exceeded.was_sent());
        assert!(!is_rejection(&*err));
        assert!(err.downcast_ref::<reqwest::Error>().is_none());
        assert_eq!(server.connections(), 1, "one attempt, not retried");
        // The deadline sits above the breaker: a call it cuts off counts as nothing there
        // (only an attempt timeout makes a hang a breaker failure), and the attempt's
        // bulkhead permit is given back.
        assert_eq!(breaker_counts(&handle), (0, 0));
        assert_eq!(handle.bulkhead().unwrap().in_flight(), 0);
        assert_eq!(handle.budget().unwrap().snapshot().withdrawals, 0);
        server.stop().await;
    })
    .await;
}

// ===== a body that stalls halfway =====

#[tokio::test]
async fn a_body_that_stalls_halfway_holds_its_permit_until_the_caller_gives_up() {
    guarded(async {
        // The head, 500 of the 1000 bytes it announces, then nothing, ever.
        let server = RawServer::start(|mut stream, requests| async move {
            if read_head(&mut stream, &requests).await {
                let mut reply = HEAD_1000.to_vec();
                reply.extend_from_slice(&[b'x'; 500]);
                let _ = stream.write_all(&reply).await;
                std::future::pending::<()>().await;
            }
        })
        .await;
        // hyper's client, whose response is an `http::Response`: with `UntilBodyEnd` the
        // call keeps its bulkhead permit until the body ends, fails or is dropped.
        let policy = Policy::builder("stalled-body")
            .classifier(StatusClassifier::new())
            .replay(IdempotentReplay::new())
            .release_on::<UntilBodyEnd>()
            .bulkhead(|bulkhead| bulkhead.max_concurrent(1))
            .build()
            .unwrap();
        let handle = policy.handle();
        let bulkhead = handle.bulkhead().unwrap().clone();
        let client =
            policy.layer(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
        let get = || {
            http::Request::get(server.url())
                .body(Full::<Bytes>::default())
                .unwrap()
        };

        let response = client.clone().oneshot(get()).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(breaker_counts(&handle), (1, 0), "a success, at the head");
        assert_eq!(bulkhead.in_flight(), 1, "the unread body holds the permit");

        // A stalled download counts against the limit: the next call is shed locally,
        // unsent, and not retried.
        let err = client.clone().oneshot(get()).await.unwrap_err();
        assert!(err.is::<BulkheadFull>(), "{}", chain(&*err));
        assert!(is_rejection(&*err));
        assert_eq!(server.requests(), 1, "nothing was sent");

        // The caller's own bound ends the read, after the half that came.
        let mut body = response.into_body();
        let mut received = 0;
        loop {
            match tokio::time::timeout(Duration::from_millis(200), body.frame()).await {
                Ok(Some(Ok(frame))) => received += frame.into_data().map_or(0, |d| d.len()),
                Ok(other) => panic!("the body should stall, not end: {other:?}"),
                Err(_elapsed) => break,
            }
        }
        assert_eq!(received, 500);
        assert_eq!(
            bulkhead.in_flight(),
            1,
            "still held: the body has not ended"
        );

        // Giving up on the body gives the permit back: the next call goes out.
        drop(body);
        assert_eq!(bulkhead.in_flight(), 0);
        let response = client.clone().oneshot(get()).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(server.requests(), 2);
        drop(response);
        assert_eq!(bulkhead.in_flight(), 0);
        server.stop().await;
    })
    .await;
}

// ===== malformed HTTP =====

#[tokio::test]
async fn malformed_responses_are_retryable_failures_that_surface_as_parse_errors() {
    guarded(async {
        let garbage: [(&str, &'static [u8]); 6] = [
            (
                "a status line that is not one",
                b"HTTP/1.1 abc Oops\r\n\r\n",
            ),
            (
                "a status under 100",
                b"HTTP/1.1 099 Low\r\ncontent-length: 0\r\n\r\n",
            ),
            ("not HTTP at all", b"SSH-2.0-OpenSSH_9.6\r\n"),
            (
                "a header line without a colon",
                b"HTTP/1.1 200 OK\r\nthis is not a header\r\ncontent-length: 0\r\n\r\n",
            ),
            (
                "a header value with a NUL",
                b"HTTP/1.1 200 OK\r\nx-note: a\0b\r\ncontent-length: 0\r\n\r\n",
            ),
            (
                "a content-length that is not a number",
                b"HTTP/1.1 200 OK\r\ncontent-length: ten\r\n\r\n",
            ),
        ];
        for (what, reply) in garbage {
            let server = RawServer::start(move |mut stream, requests| async move {
                if read_head(&mut stream, &requests).await {
                    let _ = stream.write_all(reply).await;
                    let _ = stream.shutdown().await;
                }
            })
            .await;
            let policy = policy("malformed")
                .circuit_breaker(|breaker| breaker.minimum_calls(100))
                .build()
                .unwrap();
            let handle = policy.handle();
            let client = client().with_policy(&policy);

            let request = client.get_ref().get(server.url()).build().unwrap();
            let err = client.execute(request).await.unwrap_err();
            let reqwest = err
                .downcast_ref::<reqwest::Error>()
                .unwrap_or_else(|| panic!("{what}: reqwest's error, not: {}", chain(&*err)));
            assert!(
                !reqwest.is_connect() && !reqwest.is_timeout(),
                "{what}: {reqwest:?}"
            );
            assert!(!is_rejection(&*err), "{what}");
            let parse = find_in_chain::<hyper::Error>(&*err).is_some_and(hyper::Error::is_parse);
            assert!(parse, "{what}: hyper's parse error: {}", chain(&*err));

            // A protocol error: a failure the classifier retries (as a reset), within the
            // policy's 3 attempts, each a breaker failure.
            let c = ReqwestClassifier::new().classify_error(&err);
            assert!(c.is_failure() && c.is_retryable(), "{what}: {c:?}");
            assert_eq!(server.requests(), 3, "{what}");
            assert_eq!(breaker_counts(&handle), (3, 3), "{what}");
            server.stop().await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_status_over_599_is_a_failure_that_is_not_retried() {
    guarded(async {
        // Three digits, so HTTP/1.1 parses it; but no status of HTTP's.
        let server = RawServer::start(|mut stream, requests| async move {
            if read_head(&mut stream, &requests).await {
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 999 Whatever\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .await;
            }
        })
        .await;
        let policy = policy("not-http").build().unwrap();
        let handle = policy.handle();
        let client = client().with_policy(&policy);

        let request = client.get_ref().get(server.url()).build().unwrap();
        let response = client.execute(request).await.unwrap();
        assert_eq!(response.status().as_u16(), 999, "a response, not an error");
        let c = ReqwestClassifier::new().classify_response(&response);
        assert!(c.is_failure() && !c.is_retryable(), "{c:?}");
        assert_eq!(server.requests(), 1, "not retried");
        assert_eq!(breaker_counts(&handle), (1, 1));
        server.stop().await;
    })
    .await;
}

// ===== 429 with a Retry-After of ten years =====

/// `at` as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn http_date(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's `civil_from_days`.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year:04} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

#[tokio::test]
async fn a_429_asking_for_ten_years_is_retried_after_max_pushback_with_no_deadline_at_all() {
    guarded(async {
        const TEN_YEARS: Duration = Duration::from_secs(10 * 365 * 86_400);
        let as_a_date = http_date(SystemTime::now() + TEN_YEARS);
        // Ten years as an HTTP-date, and a number of seconds past any clock.
        for retry_after in [as_a_date.as_str(), "99999999999999999999999"] {
            let reply = format!(
                "HTTP/1.1 429 Too Many Requests\r\nretry-after: {retry_after}\r\n\
                 content-length: 0\r\nconnection: close\r\n\r\n"
            );
            let server = RawServer::start(move |mut stream, requests| {
                let reply = reply.clone();
                async move {
                    if read_head(&mut stream, &requests).await {
                        let _ = stream.write_all(reply.as_bytes()).await;
                    }
                }
            })
            .await;
            // No deadline: only `max_pushback` stands between the caller and ten years.
            let policy = policy("ten-years")
                .without_deadline()
                .retry(|retry| retry.max_pushback(Duration::from_millis(50)))
                .circuit_breaker(|breaker| breaker.minimum_calls(100))
                .build()
                .unwrap();
            let handle = policy.handle();
            let client = client().with_policy(&policy);

            let request = client.get_ref().get(server.url()).build().unwrap();
            let response = client.execute(request).await.unwrap();

            // Read, not trusted: a retryable failure whose pushback is the ten years (or
            // the saturated number) the server asked for ...
            let c = ReqwestClassifier::new().classify_response(&response);
            assert!(c.is_failure() && c.is_retryable(), "{retry_after}: {c:?}");
            assert!(c.pushback().unwrap() >= TEN_YEARS - Duration::from_secs(60));
            // ... which the retry stage cut to 50 ms: every attempt was made, and once
            // they ran out the caller got the last 429 as a response.
            assert_eq!(response.status(), 429, "{retry_after}");
            assert_eq!(server.requests(), 3, "{retry_after}");
            assert_eq!(breaker_counts(&handle), (3, 3), "{retry_after}");
            assert_eq!(handle.budget().unwrap().snapshot().withdrawals, 2);
            server.stop().await;
        }
    })
    .await;
}

/// The helper's dates are the ones `Retry-After` parsing reads.
#[test]
fn http_dates_are_written_as_servers_write_them() {
    assert_eq!(
        http_date(UNIX_EPOCH + Duration::from_secs(784_111_777)),
        "Sun, 06 Nov 1994 08:49:37 GMT"
    );
    assert_eq!(
        http_date(UNIX_EPOCH + Duration::from_secs(1_445_412_480)),
        "Wed, 21 Oct 2015 07:28:00 GMT"
    );
}
