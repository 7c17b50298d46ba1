//! hyper-util's client behind a seawall policy, against a real HTTP server that has a
//! bad day.
//!
//! The program starts an axum server on 127.0.0.1 (a random port) that answers each
//! request as a script says, and a `hyper_util::client::legacy::Client` behind a policy:
//!
//! ```text
//! let policy = Policy::builder("inventory")
//!     .classifier(StatusClassifier::new())      // statuses, Retry-After, transport errors
//!     .replay(IdempotentReplay::new())          // copy GETs; a POST only with Idempotency-Key
//!     .release_on::<UntilBodyEnd>()             // a bulkhead permit lasts until the body ends
//!     ...
//!     .build()?;
//! let inventory = policy.layer(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
//! ```
//!
//! `seawall::http` needs nothing specific to hyper: the client is a tower
//! `Service<http::Request<B>>` whose response is an `http::Response<Incoming>`, which
//! `StatusClassifier` reads (5xx, 408 and 429 are failures; 502 to 504, 408 and 429
//! are retried, after `Retry-After`). Its error, `hyper_util::client::legacy::Error`,
//! reaches the classifier boxed; `StatusClassifier::classify_error` counts every
//! transport error (refused, reset, `is_connect()` or not) as a retryable failure, and
//! tells seawall's own rejections and deadline apart. The caller gets the `BoxError`:
//! `err.downcast_ref::<hyper_util::client::legacy::Error>()` gives hyper's, with
//! `is_connect()`.
//!
//! Requests here have `Full<Bytes>` bodies, which are `Clone`, so
//! `IdempotentReplay::new()` copies them by cloning. For streamed bodies, put
//! `seawall::http::ReplayBodyLayer` outside the policy and replay with
//! `IdempotentReplay::with(BodyReplay)`: it buffers the body (64 KiB by default) as the
//! first attempt sends it, so a retry can send it again.
//!
//! Seven phases:
//!
//! 1. **healthy**: calls succeed at once.
//! 2. **a burst of 503s**: two, then the server recovers; the policy retries.
//! 3. **pushback**: `429` with `Retry-After: 1` is retried after a second.
//! 4. **POSTs**: a POST that gets a 503 is sent once; with an `Idempotency-Key` it is
//!    retried, body and all.
//! 5. **a hang, then recovery**: each attempt is cut at 200 ms and is a breaker failure;
//!    after five in a row the breaker opens and calls fail fast without reaching the
//!    server; the server comes back, a probe closes the breaker (a call whose retry finds the
//!    breaker just opened ends with `CircuitOpen`: that retry is not sent).
//! 6. **a slow body**: the headers come at once and the body stalls. With
//!    `UntilBodyEnd` the call keeps its bulkhead permit while the caller reads the body
//!    (a stalled download counts against the concurrency limit); the caller's 300 ms
//!    bound ends the read, and dropping the body gives the permit back.
//! 7. **connection refused**: the server is stopped; each attempt fails to connect
//!    (`is_connect()`), a retryable failure.
//!
//! It checks, and exits with status 1 if one does not hold:
//!
//! - healthy calls succeed, one request each;
//! - the burst: one call, three requests, a success;
//! - the 429 was retried once, after at least the second the server asked for;
//! - the POST without a key reached the server once; with a key, twice, with the whole
//!   body both times;
//! - in the hang, no call made more than 3 attempts, and every call failed with a
//!   timeout or `CircuitOpen`; the breaker opened; while open, no request reached the
//!   server; after recovery the breaker closed;
//! - the slow body: the permit was held while the body was unread and given back when
//!   it was dropped; the caller's bound ended the read;
//! - connection refused: the error is hyper's `is_connect()`, and all three attempts were
//!   made (the breaker counted three failures).
//!
//! The program exits by itself, in about three seconds.
//!
//! ```text
//! cargo run --example hyper_client --features http
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State as Extract};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use seawall::circuit_breaker::State;
use seawall::error::{is_rejection, CircuitOpen, DeadlineExceeded, Elapsed};
use seawall::http::{IdempotentReplay, StatusClassifier, UntilBodyEnd};
use seawall::policy::{Policy, PolicyHandle, PolicyService};
use seawall::BoxError;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

// ===== the server =====

/// What the server does with one request.
#[derive(Debug, Clone, Copy)]
enum Reply {
    Ok,
    Status(StatusCode),
    /// The status, with `Retry-After: <seconds>`.
    RetryAfter(StatusCode, u32),
    /// Never answer.
    Hang,
    /// 200 and a first chunk of the body at once, then nothing.
    SlowBody,
}

/// The script: the replies to the next requests, then `otherwise` for the rest; and
/// the bodies received.
struct Script {
    next: Mutex<VecDeque<Reply>>,
    otherwise: Mutex<Reply>,
    received: AtomicU32,
    bodies: Mutex<Vec<Bytes>>,
}

impl Script {
    fn then(&self, replies: &[Reply], otherwise: Reply) {
        self.next.lock().unwrap().extend(replies);
        *self.otherwise.lock().unwrap() = otherwise;
    }

    fn received(&self) -> u32 {
        self.received.load(Ordering::SeqCst)
    }
}

async fn serve(Extract(script): Extract<Arc<Script>>, request: Request) -> Response {
    script.received.fetch_add(1, Ordering::SeqCst);
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    script.bodies.lock().unwrap().push(body);
    let reply = script.next.lock().unwrap().pop_front();
    let reply = reply.unwrap_or(*script.otherwise.lock().unwrap());
    match reply {
        Reply::Ok => "12 in stock".into_response(),
        Reply::Status(status) => status.into_response(),
        Reply::RetryAfter(status, seconds) => {
            (status, [(header::RETRY_AFTER, seconds.to_string())]).into_response()
        }
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
        Reply::SlowBody => {
            let first = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(
                b"the first line of a long report\n",
            ))]);
            let stalled = futures::StreamExt::chain(first, futures::stream::pending());
            Response::new(Body::from_stream(stalled))
        }
    }
}

struct Server {
    addr: SocketAddr,
    script: Arc<Script>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Stop: gracefully, or cut off after a short wait when a hanging request or a
    /// stalled body holds a connection open.
    async fn stop(self) {
        let _ = self.stop.send(());
        let abort = self.task.abort_handle();
        if tokio::time::timeout(Duration::from_millis(300), self.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

async fn start_server() -> std::io::Result<Server> {
    let script = Arc::new(Script {
        next: Mutex::new(VecDeque::new()),
        otherwise: Mutex::new(Reply::Ok),
        received: AtomicU32::new(0),
        bodies: Mutex::new(Vec::new()),
    });
    let app = axum::Router::new()
        .fallback(serve)
        .with_state(script.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    Ok(Server {
        addr,
        script,
        stop,
        task,
    })
}

// ===== the client =====

type HttpClient = Client<HttpConnector, Full<Bytes>>;
type Inventory = PolicyService<HttpClient, StatusClassifier, IdempotentReplay, UntilBodyEnd>;
type Answer = http::Response<seawall::http::PermitBody<hyper::body::Incoming>>;

/// One call through the policy, its response body read to the end (which gives its
/// bulkhead permit back): the status or the error, how many requests the server
/// received for it, and how long it took.
struct Call {
    result: Result<StatusCode, BoxError>,
    requests: u32,
    took: Duration,
}

async fn send(
    client: &Inventory,
    server: &Server,
    request: http::Request<Full<Bytes>>,
) -> Result<Call, BoxError> {
    let before = server.script.received();
    let started = Instant::now();
    let result = match client.clone().oneshot(request).await {
        Ok(response) => read_to_end(response).await,
        Err(err) => Err(err),
    };
    Ok(Call {
        result,
        requests: server.script.received() - before,
        took: started.elapsed(),
    })
}

async fn read_to_end(response: Answer) -> Result<StatusCode, BoxError> {
    let status = response.status();
    response.into_body().collect().await?;
    Ok(status)
}

fn get_request(addr: SocketAddr) -> Result<http::Request<Full<Bytes>>, BoxError> {
    Ok(http::Request::get(format!("http://{addr}/stock/42")).body(Full::default())?)
}

async fn get(client: &Inventory, server: &Server) -> Result<Call, BoxError> {
    send(client, server, get_request(server.addr)?).await
}

fn describe(result: &Result<StatusCode, BoxError>) -> String {
    match result {
        Ok(status) => format!("{status}"),
        Err(err) if err.is::<Elapsed>() => "error: attempt timed out (Elapsed)".to_owned(),
        Err(err) if err.is::<DeadlineExceeded>() => "error: deadline exceeded".to_owned(),
        Err(err) if err.is::<CircuitOpen>() => "error: circuit open (CircuitOpen)".to_owned(),
        Err(err) => match err.downcast_ref::<hyper_util::client::legacy::Error>() {
            Some(hyper) if hyper.is_connect() => "error: hyper, could not connect".to_owned(),
            _ => format!("error: {err}"),
        },
    }
}

fn print_call(label: &str, call: &Call, policy: &PolicyHandle) {
    let breaker = policy.circuit_breaker().map(|b| b.snapshot());
    let budget = policy.budget().map(|b| b.snapshot());
    println!(
        "  {label:<10} {:<38} requests {}  {:>6.0} ms  breaker {:<9} (failures in a row {})  budget: {} retries taken",
        describe(&call.result),
        call.requests,
        call.took.as_secs_f64() * 1000.0,
        breaker.map_or("-", |b| b.state.as_str()),
        breaker.map_or(0, |b| b.consecutive_failures),
        budget.map_or(0, |b| b.withdrawals),
    );
}

fn status_of(call: &Call) -> Option<StatusCode> {
    call.result.as_ref().ok().copied()
}

async fn run() -> Result<Vec<String>, BoxError> {
    let server = start_server().await?;
    println!("inventory server on http://{}\n", server.addr);

    let policy = Policy::builder("inventory")
        .classifier(StatusClassifier::new())
        .replay(IdempotentReplay::new())
        .release_on::<UntilBodyEnd>()
        .deadline(Duration::from_secs(2))
        .attempt_timeout(Duration::from_millis(200))
        .circuit_breaker(|breaker| {
            breaker
                .consecutive_failures(5)
                .open_duration(Duration::from_millis(500))
        })
        .build()?;
    let inventory: Inventory =
        policy.layer(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    let policy = policy.handle();
    let breaker = policy.circuit_breaker().ok_or("no breaker")?.clone();
    let bulkhead = policy.bulkhead().ok_or("no bulkhead")?.clone();
    let mut failed = Vec::new();
    let mut claim = |holds: bool, what: String| {
        if !holds {
            failed.push(what);
        }
    };

    println!("1. healthy");
    for i in 0..3 {
        let call = get(&inventory, &server).await?;
        print_call(&format!("call {}", i + 1), &call, &policy);
        claim(
            status_of(&call) == Some(StatusCode::OK) && call.requests == 1,
            format!("healthy call {} should succeed with one request", i + 1),
        );
    }

    println!("\n2. a burst of 503s: two, then the server recovers");
    server.script.then(
        &[
            Reply::Status(StatusCode::SERVICE_UNAVAILABLE),
            Reply::Status(StatusCode::SERVICE_UNAVAILABLE),
        ],
        Reply::Ok,
    );
    let call = get(&inventory, &server).await?;
    print_call("call", &call, &policy);
    claim(
        status_of(&call) == Some(StatusCode::OK) && call.requests == 3,
        format!(
            "the burst should cost one successful call of three requests (got {}, {} requests)",
            describe(&call.result),
            call.requests
        ),
    );

    println!("\n3. pushback: 429 with Retry-After: 1");
    server.script.then(
        &[Reply::RetryAfter(StatusCode::TOO_MANY_REQUESTS, 1)],
        Reply::Ok,
    );
    let call = get(&inventory, &server).await?;
    print_call("call", &call, &policy);
    claim(
        status_of(&call) == Some(StatusCode::OK)
            && call.requests == 2
            && call.took >= Duration::from_secs(1),
        format!(
            "the 429 should be retried once after at least 1 s (got {}, {} requests, {:?})",
            describe(&call.result),
            call.requests,
            call.took
        ),
    );

    println!("\n4. POSTs that get a 503");
    let order = Bytes::from_static(br#"{"sku":42,"qty":1}"#);
    let post = |key: Option<&str>| -> Result<http::Request<Full<Bytes>>, BoxError> {
        let mut builder = http::Request::post(format!("http://{}/orders", server.addr));
        if let Some(key) = key {
            builder = builder.header("idempotency-key", key);
        }
        Ok(builder.body(Full::new(order.clone()))?)
    };
    server
        .script
        .then(&[Reply::Status(StatusCode::SERVICE_UNAVAILABLE)], Reply::Ok);
    let call = send(&inventory, &server, post(None)?).await?;
    print_call("no key", &call, &policy);
    claim(
        status_of(&call) == Some(StatusCode::SERVICE_UNAVAILABLE) && call.requests == 1,
        format!(
            "a POST without a key should be sent once (got {}, {} requests)",
            describe(&call.result),
            call.requests
        ),
    );
    server
        .script
        .then(&[Reply::Status(StatusCode::SERVICE_UNAVAILABLE)], Reply::Ok);
    let bodies_before = server.script.bodies.lock().unwrap().len();
    let call = send(&inventory, &server, post(Some("order-42"))?).await?;
    print_call("with key", &call, &policy);
    let intact = server.script.bodies.lock().unwrap()[bodies_before..]
        .iter()
        .all(|body| *body == order);
    claim(
        status_of(&call) == Some(StatusCode::OK) && call.requests == 2 && intact,
        format!(
            "a POST with a key should be retried with its whole body (got {}, {} requests, intact: {intact})",
            describe(&call.result),
            call.requests
        ),
    );

    println!("\n5. a hang: 200 ms per attempt, 2 s per call, open after 5 failures in a row");
    server.script.then(&[], Reply::Hang);
    let mut calls = 0;
    while breaker.state() != State::Open && calls < 5 {
        calls += 1;
        let call = get(&inventory, &server).await?;
        print_call(&format!("call {calls}"), &call, &policy);
        let timed_out = matches!(&call.result, Err(e) if e.is::<Elapsed>() || e.is::<DeadlineExceeded>() || e.is::<CircuitOpen>());
        claim(
            timed_out && call.requests <= 3,
            format!(
                "hang call {calls} should fail with a timeout in at most 3 attempts (got {}, {} requests)",
                describe(&call.result),
                call.requests
            ),
        );
    }
    claim(
        breaker.state() == State::Open,
        format!("the breaker should have opened (it is {})", breaker.state()),
    );
    let received_before = server.script.received();
    for i in 0..3 {
        let call = get(&inventory, &server).await?;
        print_call(&format!("open {}", i + 1), &call, &policy);
        claim(
            matches!(&call.result, Err(e) if e.is::<CircuitOpen>() && is_rejection(&**e)),
            format!(
                "a call while open should fail fast with CircuitOpen (got {})",
                describe(&call.result)
            ),
        );
    }
    claim(
        server.script.received() == received_before,
        "no request should reach the server while the breaker is open".to_owned(),
    );
    println!("   the server is back");
    server.script.then(&[], Reply::Ok);
    let wait = breaker.snapshot().next_probe_in.unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(20)).await;
    let call = get(&inventory, &server).await?;
    print_call("probe", &call, &policy);
    claim(
        status_of(&call) == Some(StatusCode::OK) && breaker.state() == State::Closed,
        format!(
            "after recovery the probe should succeed and close the breaker (got {}, breaker {})",
            describe(&call.result),
            breaker.state()
        ),
    );

    println!("\n6. a slow body: headers at once, then the body stalls");
    server.script.then(&[Reply::SlowBody], Reply::Ok);
    let in_flight_before = bulkhead.in_flight();
    let response = inventory.clone().oneshot(get_request(server.addr)?).await?;
    println!("  call       {}", response.status());
    let held = bulkhead.in_flight();
    let mut body = response.into_body();
    let mut read = 0;
    let bounded = tokio::time::timeout(Duration::from_millis(300), async {
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                read += data.len();
            }
        }
        Ok::<_, hyper::Error>(())
    })
    .await;
    let held_while_reading = bulkhead.in_flight();
    drop(body);
    let after = bulkhead.in_flight();
    println!(
        "  permits in flight: {held} at the headers, {held_while_reading} after {read} bytes and \
         a stall; the caller's 300 ms bound: {}; {after} once the body is dropped",
        if bounded.is_err() {
            "timed out"
        } else {
            "the body ended?"
        }
    );
    claim(
        in_flight_before == 0
            && held == 1
            && held_while_reading == 1
            && after == 0
            && bounded.is_err(),
        format!(
            "the slow body should hold its permit until dropped (held {held}, {held_while_reading}, then {after}) and be bounded by the caller"
        ),
    );

    println!("\n7. connection refused: the server is stopped");
    let addr = server.addr;
    server.stop().await;
    let failures_before = breaker.snapshot().failures;
    let started = Instant::now();
    let result = match inventory.clone().oneshot(get_request(addr)?).await {
        Ok(response) => read_to_end(response).await,
        Err(err) => Err(err),
    };
    let call = Call {
        result,
        requests: 0,
        took: started.elapsed(),
    };
    print_call("call", &call, &policy);
    let failures = breaker.snapshot().failures - failures_before;
    let connect = matches!(&call.result, Err(e)
        if e.downcast_ref::<hyper_util::client::legacy::Error>().is_some_and(|e| e.is_connect()));
    println!("  the breaker counted {failures} failures: each attempt, retried");
    claim(
        connect && failures == 3,
        format!(
            "a refused connection should be hyper's is_connect(), retried: 3 failures (got {}, {failures})",
            describe(&call.result)
        ),
    );
    println!();
    Ok(failed)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // Bounded in time whatever happens.
    let failed = tokio::time::timeout(Duration::from_secs(20), run())
        .await
        .map_err(|_| "the example did not finish within 20 s")??;
    if failed.is_empty() {
        println!("all claims hold");
        Ok(())
    } else {
        for claim in &failed {
            eprintln!("FAILED: {claim}");
        }
        std::process::exit(1);
    }
}
