//! A tonic client behind a seawall policy, in one line, against a real gRPC server that
//! goes down and comes back.
//!
//! The program starts a tonic server on 127.0.0.1 (a random port) for the `Orders`
//! service of `examples/proto/orders.proto` (the generated code is checked in as
//! `examples/proto/orders.rs`; `examples/proto/generate.sh` regenerates it, so building
//! this needs no protoc). The client connects a `tonic::transport::Channel` and puts it
//! behind a policy in one line:
//!
//! ```text
//! let mut orders = OrdersClient::new(GrpcClientLayer::new(policy, tonic::body::boxed).layer(channel));
//! ```
//!
//! `GrpcClientLayer` buffers each request body so that a retry can send it again, puts
//! the policy around the channel (deadline, retry with a budget, circuit breaker,
//! bulkhead, attempt timeout) and writes what is left of the deadline into
//! `grpc-timeout`; the generated `OrdersClient` calls through it unchanged.
//!
//! Four phases:
//!
//! 1. **healthy**: calls succeed, and the server reports the `grpc-timeout` it received
//!    (the client's 1 s deadline, less the time on the way).
//! 2. **a blip**: the server answers two calls with `UNAVAILABLE` (a trailers-only
//!    response: the status is in the headers), then recovers. The policy retries, and
//!    the caller sees a success.
//! 3. **an outage**: the server fails everything: unary calls with a trailers-only
//!    `UNAVAILABLE`, and a server-streaming call with two messages and then
//!    `UNAVAILABLE` in the trailers (counted by the breaker when the stream ends; not
//!    retried, since the messages were already the caller's). The breaker trips, and the
//!    calls after it fail fast without reaching the server: tonic reports them as
//!    `UNKNOWN`, with seawall's `CircuitOpen` as the status's `source()`.
//! 4. **recovery**: the server is back; once the breaker's open time is over, a probe
//!    goes through and the breaker closes.
//!
//! It checks, and exits with status 1 if one does not hold:
//!
//! - healthy calls succeed;
//! - every `grpc-timeout` the server received was at most the 1 s deadline;
//! - the blip cost the caller nothing: one call, three attempts, a success;
//! - the streamed `UNAVAILABLE` was counted by the breaker at the end of the stream;
//! - the breaker opened, and while it was open no call reached the server, each failing
//!   with a status whose source is `CircuitOpen` (`seawall::error::is_rejection`);
//! - no retry budget was spent on the calls the open breaker rejected;
//! - after recovery the breaker closed and calls succeed.
//!
//! The program stops its server and exits by itself, in about a second.
//!
//! ```text
//! cargo run --example tonic_client --features policy,http
//! ```

#[path = "proto/orders.rs"]
// The generated items are `pub`, in a module that is not.
#[allow(unreachable_pub)]
mod orders;

use std::error::Error as _;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt};
use http::HeaderValue;
use seawall::circuit_breaker::{Handle, State};
use seawall::error::{is_rejection, CircuitOpen};
use seawall::grpc::{GrpcClassifier, GrpcClientLayer};
use seawall::http::deadline::parse_grpc_timeout;
use seawall::http::BodyReplay;
use seawall::policy::Policy;
use seawall::retry::budget::RetryBudget;
use seawall::BoxError;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::codegen::tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Endpoint, Server};
use tonic::{Code, Request, Response, Status};
use tower::Layer;

use orders::orders_client::OrdersClient;
use orders::orders_server::{Orders, OrdersServer};
use orders::{GetOrder, Line, Order};

const DEADLINE: Duration = Duration::from_secs(1);
/// Failures in a row that trip the breaker: the streamed failure and the three attempts
/// of the next call.
const TRIP_AFTER: u32 = 4;
const OPEN_FOR: Duration = Duration::from_millis(300);

// ===== the server =====

/// The downstream: healthy, or failing every call; or failing the next few calls.
#[derive(Default)]
struct Downstream {
    down: AtomicBool,
    /// Calls to fail before answering again (the blip).
    fail_next: AtomicU32,
    received: AtomicU32,
    /// The largest `grpc-timeout` received.
    max_timeout: Mutex<Option<Duration>>,
    /// Calls received without a `grpc-timeout`.
    without_timeout: AtomicU32,
}

impl Downstream {
    fn received(&self) -> u32 {
        self.received.load(Ordering::SeqCst)
    }

    /// Note the call; the status to fail it with, if it is to fail.
    fn admit<T>(&self, request: &Request<T>) -> Option<Status> {
        let n = self.received.fetch_add(1, Ordering::SeqCst) + 1;
        // tonic hands the handler the request's headers as metadata.
        let timeout = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|value| HeaderValue::from_bytes(value.as_bytes()).ok())
            .and_then(|value| parse_grpc_timeout(&value));
        match timeout {
            Some(timeout) => {
                println!("    server: call #{n}, grpc-timeout {timeout:.1?}");
                let mut max = self.max_timeout.lock().unwrap();
                *max = Some(max.map_or(timeout, |max| max.max(timeout)));
            }
            None => {
                println!("    server: call #{n}, no grpc-timeout");
                self.without_timeout.fetch_add(1, Ordering::SeqCst);
            }
        }
        let blip = self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        (blip || self.down.load(Ordering::SeqCst)).then(|| Status::unavailable("orders is down"))
    }
}

#[tonic::async_trait]
impl Orders for Arc<Downstream> {
    async fn get(&self, request: Request<GetOrder>) -> Result<Response<Order>, Status> {
        // An error before any message: tonic sends a trailers-only response.
        if let Some(status) = self.admit(&request) {
            return Err(status);
        }
        Ok(Response::new(Order {
            id: request.get_ref().id,
            status: "shipped".to_owned(),
        }))
    }

    type LinesStream = BoxStream<'static, Result<Line, Status>>;

    async fn lines(
        &self,
        request: Request<GetOrder>,
    ) -> Result<Response<Self::LinesStream>, Status> {
        // Two messages, then the status: in the trailers.
        let end = self.admit(&request);
        let lines = ["apples", "pears"].map(|sku| Line {
            sku: sku.to_owned(),
            quantity: 3,
        });
        let stream = stream::iter(lines)
            .map(Ok)
            .chain(stream::iter(end.map(Err)));
        Ok(Response::new(stream.boxed()))
    }
}

// ===== the claims =====

#[derive(Default)]
struct Claims {
    failed: Vec<String>,
}

impl Claims {
    fn check(&mut self, holds: bool, claim: &str) {
        println!("  [{}] {claim}", if holds { "ok" } else { "FAILED" });
        if !holds {
            self.failed.push(claim.to_owned());
        }
    }
}

/// What a unary call returned, in words.
fn outcome(result: &Result<Response<Order>, Status>) -> String {
    match result {
        Ok(order) => format!("order {} {}", order.get_ref().id, order.get_ref().status),
        Err(status) => format!("{:?}: {}", status.code(), status.message()),
    }
}

fn breaker_line(breaker: &Handle, budget: &RetryBudget) -> String {
    let b = breaker.snapshot();
    let r = budget.snapshot();
    format!(
        "breaker {:?} (calls {}, failures {}, in a row {}, rejected {}); budget: {} retries taken, {} denied",
        b.state, b.calls, b.failures, b.consecutive_failures, b.rejections, r.withdrawals, r.denials
    )
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let downstream = Arc::new(Downstream::default());
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(
        Server::builder()
            .add_service(OrdersServer::new(downstream.clone()))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            }),
    );
    println!("orders server on {addr}");

    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let policy = Policy::builder("orders")
        .classifier(GrpcClassifier::new())
        // Every call may be sent again; the status decides (UNAVAILABLE is retried).
        .replay(BodyReplay)
        .deadline(DEADLINE)
        .attempt_timeout(Duration::from_millis(300))
        .retry(|retry| retry.max_attempts(3))
        .circuit_breaker(|breaker| {
            breaker
                .consecutive_failures(TRIP_AFTER)
                .open_duration(OPEN_FOR)
        })
        .bulkhead(|bulkhead| bulkhead.max_concurrent(16))
        .build()?;
    let handle = policy.handle();
    let (breaker, budget) = match (handle.circuit_breaker(), handle.budget()) {
        (Some(breaker), Some(budget)) => (breaker.clone(), budget.clone()),
        _ => return Err("the policy has a breaker and a budget".into()),
    };

    // The one line: a generated client over a Channel behind the policy.
    let mut orders =
        OrdersClient::new(GrpcClientLayer::new(policy, tonic::body::boxed).layer(channel));

    let mut claims = Claims::default();

    println!("\n1. healthy");
    let mut healthy = 0;
    for id in 1..=3 {
        let result = orders.get(GetOrder { id }).await;
        println!("  call {id}: {}", outcome(&result));
        healthy += u32::from(result.is_ok());
    }
    println!("  {}", breaker_line(&breaker, &budget));
    claims.check(healthy == 3, "healthy calls succeed");

    println!("\n2. a blip: the next two calls the server gets fail with UNAVAILABLE");
    downstream.fail_next.store(2, Ordering::SeqCst);
    let before = downstream.received();
    let result = orders.get(GetOrder { id: 4 }).await;
    let attempts = downstream.received() - before;
    println!("  call 4: {} after {attempts} attempts", outcome(&result));
    println!("  {}", breaker_line(&breaker, &budget));
    claims.check(
        result.is_ok() && attempts == 3,
        "the blip was retried away: one call, three attempts, a success",
    );

    println!("\n3. an outage: the server fails every call");
    downstream.down.store(true, Ordering::SeqCst);
    let failures_before = breaker.snapshot().failures;
    let mut lines = orders.lines(GetOrder { id: 5 }).await?.into_inner();
    let mut received_lines = 0;
    let end = loop {
        match lines.message().await {
            Ok(Some(line)) => {
                received_lines += 1;
                println!("  stream: {} x{}", line.sku, line.quantity);
            }
            Ok(None) => break None,
            Err(status) => break Some(status),
        }
    };
    println!(
        "  stream ended with {:?} in the trailers",
        end.as_ref().map(Status::code)
    );
    claims.check(
        received_lines == 2
            && end.as_ref().map(Status::code) == Some(Code::Unavailable)
            && breaker.snapshot().failures == failures_before + 1,
        "the UNAVAILABLE after the stream's messages was counted by the breaker at its end",
    );

    let mut call = 6;
    while breaker.state() != State::Open && call < 20 {
        let before = downstream.received();
        let result = orders.get(GetOrder { id: call }).await;
        println!(
            "  call {call}: {} after {} attempts",
            outcome(&result),
            downstream.received() - before,
        );
        println!("  {}", breaker_line(&breaker, &budget));
        call += 1;
    }
    claims.check(breaker.state() == State::Open, "the breaker opened");

    let received_when_open = downstream.received();
    let withdrawals_when_open = budget.snapshot().withdrawals;
    let mut fast_fails = 0;
    for _ in 0..3 {
        match orders.get(GetOrder { id: call }).await {
            Ok(_) => println!("  call {call}: answered"),
            Err(status) => {
                let open = status
                    .source()
                    .and_then(|source| source.downcast_ref::<CircuitOpen>());
                match open {
                    Some(open) if is_rejection(&status) => {
                        println!("  call {call}: {:?} at once, source: {open}", status.code());
                        fast_fails += 1;
                    }
                    _ => println!("  call {call}: {status}"),
                }
            }
        }
        call += 1;
    }
    println!("  {}", breaker_line(&breaker, &budget));
    claims.check(
        fast_fails == 3 && downstream.received() == received_when_open,
        "while open, calls failed fast (CircuitOpen in the status's source) and none reached the server",
    );
    claims.check(
        budget.snapshot().withdrawals == withdrawals_when_open,
        "no retry budget was spent on the calls the open breaker rejected",
    );

    println!("\n4. recovery: the server is back");
    downstream.down.store(false, Ordering::SeqCst);
    let wait = breaker.snapshot().next_probe_in.unwrap_or_default();
    println!("  waiting {wait:.0?} for the breaker's probe");
    tokio::time::sleep(wait + Duration::from_millis(20)).await;
    let mut recovered = 0;
    for _ in 0..3 {
        let result = orders.get(GetOrder { id: call }).await;
        println!("  call {call}: {}", outcome(&result));
        recovered += u32::from(result.is_ok());
        call += 1;
    }
    println!("  {}", breaker_line(&breaker, &budget));
    claims.check(
        recovered == 3 && breaker.state() == State::Closed,
        "the breaker closed after its probe, and calls succeed",
    );

    println!();
    let max_timeout = *downstream.max_timeout.lock().unwrap();
    claims.check(
        downstream.without_timeout.load(Ordering::SeqCst) == 0
            && max_timeout.is_some_and(|max| max <= DEADLINE),
        "every call reached the server with a grpc-timeout of at most the 1 s deadline",
    );

    let _ = stop.send(());
    // The channel holds a connection open; do not wait on it long.
    drop(orders);
    let _ = tokio::time::timeout(Duration::from_secs(1), server).await;

    if claims.failed.is_empty() {
        println!("all claims hold");
        Ok(())
    } else {
        eprintln!("claims that failed: {:?}", claims.failed);
        std::process::exit(1);
    }
}
