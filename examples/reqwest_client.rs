//! A `reqwest::Client` behind a seawall policy, in one line, against a real HTTP server
//! that has a bad day.
//!
//! The program starts an axum server on 127.0.0.1 (a random port) that answers each
//! request as a script says, and a client of it:
//!
//! ```text
//! let inventory = reqwest::Client::new().with_policy(&policy);
//! ```
//!
//! where `policy` is `seawall::reqwest::policy("inventory")...build()?`: the canonical
//! stack (deadline 2 s, retries with a budget, circuit breaker, bulkhead, 200 ms per
//! attempt) with `seawall::reqwest::ReqwestClassifier` (5xx, 408, 429, and connect and
//! timeout errors are failures; 502 to 504, 408 and 429 are retried, after `Retry-After`
//! when the server sends one) and `seawall::reqwest::ReqwestReplay` (a GET is copied
//! for a retry; a POST only with an
//! `Idempotency-Key`). Six phases:
//!
//! 1. **healthy**: calls succeed at once.
//! 2. **a burst of 503s**: the server answers two requests with `503`, then recovers.
//!    The policy retries; the caller sees one success.
//! 3. **pushback**: the server answers `429 Too Many Requests` with `Retry-After: 1`.
//!    The policy waits the second the server asked for (not its 25 ms backoff), then
//!    retries. A `Retry-After: 5` would end past the call's 2 s deadline: the caller
//!    gets that 503 at once, unretried.
//! 4. **a hang**: the server stops answering. Each attempt is cut at 200 ms and counts
//!    as a breaker failure; the deadline bounds each call; after five failures in a row
//!    the breaker opens, and calls fail fast with `CircuitOpen` without reaching the
//!    server, and without spending retry budget. (A call whose retry finds the breaker
//!    just opened ends with `CircuitOpen`: that retry is not sent.)
//! 5. **recovery**: the server is back; once the open time (500 ms) is over, a probe goes
//!    through and the breaker closes.
//! 6. **a slow body**: the server sends its headers and then stalls the body. The policy
//!    is done at the headers (a success); the body is the caller's to bound, here with
//!    a 300 ms `tokio::time::timeout`.
//!
//! It checks, and exits with status 1 if one does not hold:
//!
//! - healthy calls succeed, one request each;
//! - the burst cost the caller nothing: one call, three requests, a success, two retries
//!   from the budget;
//! - the 429 was retried once, after at least the second the server asked for; the
//!   503 whose `Retry-After` ends past the deadline was returned at once, one request,
//!   no retry budget spent;
//! - in the hang, no call made more than 3 attempts, each call failed with a timeout
//!   (`Elapsed` or `DeadlineExceeded`) or, once the breaker had opened, `CircuitOpen`;
//!   the breaker opened;
//! - while it was open no request reached the server and no retry budget was spent;
//! - after recovery the breaker closed and a call succeeded;
//! - the slow body: the call succeeded at the headers, the breaker counted a success,
//!   the bulkhead permit was back, and the caller's bound ended the read.
//!
//! The program stops its server and exits by itself, in about three seconds.
//!
//! ```text
//! cargo run --example reqwest_client --features reqwest
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State as Extract;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use seawall::circuit_breaker::State;
use seawall::error::{is_rejection, CircuitOpen, DeadlineExceeded, Elapsed};
use seawall::policy::PolicyHandle;
use seawall::reqwest::{ClientExt, PolicyClient};
use seawall::BoxError;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::Instant;

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

/// The script: the replies to the next requests, then `otherwise` for the rest.
struct Script {
    next: Mutex<VecDeque<Reply>>,
    otherwise: Mutex<Reply>,
    received: AtomicU32,
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

async fn serve(Extract(script): Extract<Arc<Script>>) -> Response {
    script.received.fetch_add(1, Ordering::SeqCst);
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

async fn start_server() -> std::io::Result<Server> {
    let script = Arc::new(Script {
        next: Mutex::new(VecDeque::new()),
        otherwise: Mutex::new(Reply::Ok),
        received: AtomicU32::new(0),
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

/// One call through the policy: what came back, how many requests the server received
/// for it, and how long it took.
struct Call {
    result: Result<reqwest::Response, BoxError>,
    requests: u32,
    took: Duration,
}

async fn get(client: &PolicyClient, server: &Server) -> Result<Call, BoxError> {
    let before = server.script.received();
    let started = Instant::now();
    let request = client
        .get_ref()
        .get(format!("http://{}/stock/42", server.addr))
        .build()?;
    let result = client.execute(request).await;
    Ok(Call {
        result,
        requests: server.script.received() - before,
        took: started.elapsed(),
    })
}

fn describe(result: &Result<reqwest::Response, BoxError>) -> String {
    match result {
        Ok(response) => format!("{}", response.status()),
        Err(err) if err.is::<Elapsed>() => "error: attempt timed out (Elapsed)".to_owned(),
        Err(err) if err.is::<DeadlineExceeded>() => "error: deadline exceeded".to_owned(),
        Err(err) if err.is::<CircuitOpen>() => "error: circuit open (CircuitOpen)".to_owned(),
        Err(err) => format!("error: {err}"),
    }
}

fn print_call(label: &str, call: &Call, policy: &PolicyHandle) {
    let breaker = policy.circuit_breaker().map(|b| b.snapshot());
    let budget = policy.budget().map(|b| b.snapshot());
    println!(
        "  {label:<10} {:<38} requests {}  {:>6.0} ms  breaker {:<9} (failures in a row {})  budget: {} retries taken, {} denied",
        describe(&call.result),
        call.requests,
        call.took.as_secs_f64() * 1000.0,
        breaker.map_or("-", |b| b.state.as_str()),
        breaker.map_or(0, |b| b.consecutive_failures),
        budget.map_or(0, |b| b.withdrawals),
        budget.map_or(0, |b| b.denials),
    );
}

fn is_ok_status(call: &Call) -> bool {
    matches!(&call.result, Ok(response) if response.status().is_success())
}

async fn run() -> Result<Vec<String>, BoxError> {
    let server = start_server().await?;
    println!("inventory server on http://{}\n", server.addr);

    let policy = seawall::reqwest::policy("inventory")
        .deadline(Duration::from_secs(2))
        .attempt_timeout(Duration::from_millis(200))
        .circuit_breaker(|breaker| {
            breaker
                .consecutive_failures(5)
                .open_duration(Duration::from_millis(500))
        })
        .build()?;
    // The one line. (`no_proxy`: talk to 127.0.0.1 directly, whatever proxy the
    // environment names.)
    let inventory = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .with_policy(&policy);
    let policy = policy.handle();
    let mut transitions = policy.circuit_breaker().ok_or("no breaker")?.subscribe();
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
            is_ok_status(&call) && call.requests == 1,
            format!("healthy call {} should succeed with one request", i + 1),
        );
    }

    println!("\n2. a burst of 503s: two, then the server recovers");
    let budget_before = policy.budget().ok_or("no budget")?.snapshot();
    server.script.then(
        &[
            Reply::Status(StatusCode::SERVICE_UNAVAILABLE),
            Reply::Status(StatusCode::SERVICE_UNAVAILABLE),
        ],
        Reply::Ok,
    );
    let call = get(&inventory, &server).await?;
    print_call("call", &call, &policy);
    let budget = policy.budget().ok_or("no budget")?.snapshot();
    claim(
        is_ok_status(&call) && call.requests == 3,
        format!(
            "the burst should cost one successful call of three requests (got {}, {} requests)",
            describe(&call.result),
            call.requests
        ),
    );
    claim(
        budget.withdrawals - budget_before.withdrawals == 2,
        "the burst should take two retries from the budget".to_owned(),
    );

    println!("\n3. pushback: 429 with Retry-After: 1");
    server.script.then(
        &[Reply::RetryAfter(StatusCode::TOO_MANY_REQUESTS, 1)],
        Reply::Ok,
    );
    let call = get(&inventory, &server).await?;
    print_call("call", &call, &policy);
    claim(
        is_ok_status(&call) && call.requests == 2 && call.took >= Duration::from_secs(1),
        format!(
            "the 429 should be retried once after at least 1 s (got {}, {} requests, {:?})",
            describe(&call.result),
            call.requests,
            call.took
        ),
    );

    println!("\n   and 503 with Retry-After: 5, past the 2 s deadline");
    let budget_before = policy.budget().ok_or("no budget")?.snapshot();
    server.script.then(
        &[Reply::RetryAfter(StatusCode::SERVICE_UNAVAILABLE, 5)],
        Reply::Ok,
    );
    let call = get(&inventory, &server).await?;
    print_call("call", &call, &policy);
    let budget = policy.budget().ok_or("no budget")?.snapshot();
    claim(
        matches!(&call.result, Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE)
            && call.requests == 1
            && budget.withdrawals == budget_before.withdrawals,
        format!(
            "a pushback past the deadline should return the 503 at once, unretried (got {}, {} requests)",
            describe(&call.result),
            call.requests
        ),
    );

    println!("\n4. a hang: 200 ms per attempt, 2 s per call, open after 5 failures in a row");
    server.script.then(&[], Reply::Hang);
    let breaker = policy.circuit_breaker().ok_or("no breaker")?;
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
    let budget_before = policy.budget().ok_or("no budget")?.snapshot();
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
    let budget = policy.budget().ok_or("no budget")?.snapshot();
    claim(
        server.script.received() == received_before,
        "no request should reach the server while the breaker is open".to_owned(),
    );
    claim(
        budget.withdrawals == budget_before.withdrawals,
        "no retry budget should be spent on calls the open breaker rejected".to_owned(),
    );

    println!("\n5. recovery");
    server.script.then(&[], Reply::Ok);
    let wait = breaker.snapshot().next_probe_in.unwrap_or_default();
    println!(
        "  the next probe may go in {:.0} ms; waiting",
        wait.as_secs_f64() * 1000.0
    );
    tokio::time::sleep(wait + Duration::from_millis(20)).await;
    let call = get(&inventory, &server).await?;
    print_call("probe", &call, &policy);
    claim(
        is_ok_status(&call) && breaker.state() == State::Closed,
        format!(
            "after recovery the probe should succeed and close the breaker (got {}, breaker {})",
            describe(&call.result),
            breaker.state()
        ),
    );
    print!("  breaker transitions:");
    while let Some(t) = transitions.try_recv() {
        print!(" {} -> {} ({:?});", t.from, t.to, t.cause);
    }
    println!();

    println!("\n6. a slow body: headers at once, then the body stalls");
    server.script.then(&[Reply::SlowBody], Reply::Ok);
    let before = breaker.snapshot();
    let call = get(&inventory, &server).await?;
    print_call("call", &call, &policy);
    let after = breaker.snapshot();
    let in_flight = policy.bulkhead().ok_or("no bulkhead")?.in_flight();
    let read = match call.result {
        Ok(response) => tokio::time::timeout(Duration::from_millis(300), response.bytes()).await,
        Err(err) => return Err(err),
    };
    println!(
        "  the policy returned at the headers (a success for the breaker, {in_flight} permits \
         in flight); the caller's 300 ms bound on the body: {}",
        match &read {
            Err(_) => "timed out, as it should".to_owned(),
            Ok(Ok(body)) => format!("read {} bytes?", body.len()),
            Ok(Err(err)) => format!("error {err}"),
        }
    );
    claim(
        after.calls == before.calls + 1
            && after.failures == before.failures
            && in_flight == 0
            && read.is_err(),
        "the slow body: a success at the headers, the permit back, the read bounded by the caller"
            .to_owned(),
    );

    // Stop the server; the hanging and stalled connections are cut after a short wait.
    let _ = server.stop.send(());
    let abort = server.task.abort_handle();
    if tokio::time::timeout(Duration::from_millis(300), server.task)
        .await
        .is_err()
    {
        abort.abort();
    }
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
