//! Per-endpoint circuit breakers under a `tower::balance::p2c` load balancer: one bad
//! replica out of five is ejected while the other four serve (per-host outlier
//! ejection, as Envoy and Linkerd do it).
//!
//! The program starts five real HTTP servers (axum) on 127.0.0.1, one of which is bad,
//! and a client that balances requests over them. Each endpoint of the client is
//!
//! ```text
//! tally (counts what the balancer sent to this endpoint, for the report)
//!  └ CircuitBreaker (Readiness::Backpressure: not ready while open)
//!     └ Timeout (250 ms per attempt: a hang becomes a failure)
//!        └ hyper-util client, request URI pointed at this endpoint's address
//! ```
//!
//! with `seawall::http::StatusClassifier` judging the results (503, and a timeout, are
//! failures). `PendingRequestsDiscover` gives each endpoint a load (its requests in
//! flight) and `p2c::Balance` sends each request to the less loaded of two ready
//! endpoints picked at random. An open breaker is *not ready*, so the balancer routes
//! around its endpoint instead of sending it requests that would fail; when the open
//! duration is over the breaker becomes ready for one half-open probe.
//!
//! Two phases of 500 requests each, paced at one every 4 ms (at most 16 in flight):
//!
//! 1. the bad replica answers every request at once with `503 Service Unavailable`;
//! 2. the bad replica hangs, and the 250 ms timeout turns each hang into a failure.
//!
//! Each phase prints, per endpoint, the requests the balancer sent it, what came back,
//! the requests its server received, and its breaker's state and transitions; then the
//! success rate. It checks, and exits with status 1 if one does not hold:
//!
//! - the bad replica's breaker opened and is not closed at the end;
//! - the bad replica received at most: the trip threshold + the requests already in
//!   flight when it tripped + its half-open probes;
//! - every request a healthy replica received succeeded;
//! - at least 99 % of the requests sent after the bad replica's breaker opened succeeded.
//!
//! The program stops its servers and exits by itself, in about five seconds.
//!
//! ```text
//! cargo run --example per_host --features http
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State as Extract;
use axum::http::StatusCode;
use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use seawall::circuit_breaker::{CircuitBreakerLayer, Handle, Readiness, State, Transition};
use seawall::http::StatusClassifier;
use seawall::timeout::TimeoutLayer;
use seawall::BoxError;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::balance::p2c::Balance;
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PendingRequestsDiscover};
use tower::{Service, ServiceBuilder, ServiceExt};

const REPLICAS: usize = 5;
/// The bad replica.
const BAD: usize = 3;
const REQUESTS_PER_PHASE: u64 = 500;
const PACE: Duration = Duration::from_millis(4);
const MAX_IN_FLIGHT: usize = 16;
/// A replica's breaker opens after this many failures in a row.
const TRIP_AFTER: u32 = 3;
const OPEN_FOR: Duration = Duration::from_secs(1);
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(250);

// ===== the servers =====

const HEALTHY: u8 = 0;
const FAILING: u8 = 1;
const HANGING: u8 = 2;

/// One replica's server: what it does with a request, and how many it received.
#[derive(Default)]
struct Replica {
    mode: AtomicU8,
    received: AtomicU64,
}

async fn serve(Extract(replica): Extract<Arc<Replica>>) -> StatusCode {
    replica.received.fetch_add(1, Ordering::Relaxed);
    match replica.mode.load(Ordering::Relaxed) {
        HEALTHY => StatusCode::OK,
        FAILING => StatusCode::SERVICE_UNAVAILABLE,
        _ => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK
        }
    }
}

struct Server {
    addr: SocketAddr,
    replica: Arc<Replica>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start_server() -> std::io::Result<Server> {
    let replica = Arc::new(Replica::default());
    let app = axum::Router::new()
        .fallback(serve)
        .with_state(replica.clone());
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
        replica,
        stop,
        task,
    })
}

// ===== the client =====

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// What the balancer sent to one endpoint, and what came back (seen from the client).
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    ok: AtomicU64,
    bad_status: AtomicU64,
    errors: AtomicU64,
}

impl Tally {
    fn record<B>(&self, result: &Result<Response<B>, BoxError>) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        let counter = match result {
            Ok(response) if response.status().is_success() => &self.ok,
            Ok(_) => &self.bad_status,
            Err(_) => &self.errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Send the request to `addr`, keeping its path and query.
fn to_endpoint<B>(mut request: Request<B>, addr: SocketAddr) -> Request<B> {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    *request.uri_mut() = Uri::builder()
        .scheme("http")
        .authority(addr.to_string())
        .path_and_query(path)
        .build()
        .expect("a socket address and a path make a URI");
    request
}

/// What an endpoint returns.
type Answer = Result<Response<Incoming>, BoxError>;

/// One endpoint of the pool: a breaker (backpressure) over a timeout over the client.
fn endpoint(
    client: HttpClient,
    addr: SocketAddr,
    breaker: CircuitBreakerLayer<StatusClassifier>,
    timeout: TimeoutLayer,
    tally: Arc<Tally>,
) -> impl Service<
    Request<Empty<Bytes>>,
    Response = Response<Incoming>,
    Error = BoxError,
    Future = impl Future<Output = Answer> + Send,
> {
    ServiceBuilder::new()
        .map_result(move |result: Answer| {
            tally.record(&result);
            result
        })
        .layer(breaker)
        .layer(timeout)
        .map_request(move |request| to_endpoint(request, addr))
        .service(client)
}

fn breaker(name: String) -> Result<CircuitBreakerLayer<StatusClassifier>, BoxError> {
    Ok(CircuitBreakerLayer::builder()
        .name(name)
        // Three failures in a row, or half of the last 20 calls (once there are 10).
        .consecutive_failures(TRIP_AFTER)
        .count_window(20)
        .minimum_calls(10)
        .failure_rate(0.5)
        .open_duration(OPEN_FOR)
        .half_open_probes(1)
        .max_half_open_duration(Duration::from_secs(5))
        // Not ready while open: the balancer picks another endpoint.
        .readiness(Readiness::Backpressure)
        .classifier(StatusClassifier::new())
        .build()?)
}

// ===== one phase =====

struct Outcome {
    succeeded: u64,
    sent_after_trip: u64,
    succeeded_after_trip: u64,
}

async fn run_phase(title: &str, servers: &[Server], bad_mode: u8) -> Result<Vec<String>, BoxError> {
    println!("== {title} ==");
    for (i, server) in servers.iter().enumerate() {
        let mode = if i == BAD { bad_mode } else { HEALTHY };
        server.replica.mode.store(mode, Ordering::Relaxed);
        server.replica.received.store(0, Ordering::Relaxed);
    }

    // A fresh client pool: five endpoints, each with its own breaker.
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let timeout = TimeoutLayer::new(ATTEMPT_TIMEOUT)?;
    let mut handles: Vec<Handle> = Vec::new();
    let mut tallies: Vec<Arc<Tally>> = Vec::new();
    let mut endpoints = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let layer = breaker(format!("replica-{i}"))?;
        let tally = Arc::new(Tally::default());
        handles.push(layer.handle());
        tallies.push(tally.clone());
        endpoints.push(endpoint(client.clone(), server.addr, layer, timeout, tally));
    }
    let mut transitions = handles[BAD].subscribe();
    let discover =
        PendingRequestsDiscover::new(ServiceList::new(endpoints), CompleteOnResponse::default());
    let mut balance = Balance::new(discover);

    let started = Instant::now();
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut calls = JoinSet::new();
    let mut tripped = false;
    let mut next_at = started;
    for _ in 0..REQUESTS_PER_PHASE {
        tokio::time::sleep_until(next_at).await;
        next_at += PACE;
        let permit = in_flight.clone().acquire_owned().await?;
        let svc = balance.ready().await?;
        // Dispatched after the bad replica's breaker first opened?
        tripped |= handles[BAD].state() != State::Closed;
        let after_trip = tripped;
        let request = Request::get("/work").body(Empty::new())?;
        let call = svc.call(request);
        calls.spawn(async move {
            let ok = matches!(call.await, Ok(r) if r.status().is_success());
            drop(permit);
            (after_trip, ok)
        });
    }
    let mut outcome = Outcome {
        succeeded: 0,
        sent_after_trip: 0,
        succeeded_after_trip: 0,
    };
    while let Some(done) = calls.join_next().await {
        let (after_trip, ok) = done?;
        outcome.succeeded += u64::from(ok);
        outcome.sent_after_trip += u64::from(after_trip);
        outcome.succeeded_after_trip += u64::from(after_trip && ok);
    }
    let elapsed = started.elapsed();

    // The bad replica's transitions during the phase.
    let mut history: Vec<Transition> = Vec::new();
    while let Some(t) = transitions.try_recv() {
        history.push(t);
    }
    let probes = history.iter().filter(|t| t.to == State::HalfOpen).count() as u64;
    let opened = history.iter().any(|t| t.to == State::Open);

    println!(
        "{:<10} {:>5} {:>6} {:>9} {:>7} {:>9}  {:<9} transitions",
        "endpoint", "sent", "2xx", "non-2xx", "errors", "received", "breaker"
    );
    for (i, server) in servers.iter().enumerate() {
        let t = &tallies[i];
        let path: String = if i == BAD && !history.is_empty() {
            history
                .iter()
                .map(|t| format!("-> {} at {:.2}s ", t.to, (t.at - started).as_secs_f64()))
                .collect()
        } else {
            "-".to_owned()
        };
        println!(
            "{:<10} {:>5} {:>6} {:>9} {:>7} {:>9}  {:<9} {}",
            format!("replica-{i}"),
            t.sent.load(Ordering::Relaxed),
            t.ok.load(Ordering::Relaxed),
            t.bad_status.load(Ordering::Relaxed),
            t.errors.load(Ordering::Relaxed),
            server.replica.received.load(Ordering::Relaxed),
            handles[i].state().as_str(),
            path,
        );
    }
    let rate = |ok: u64, of: u64| 100.0 * ok as f64 / of.max(1) as f64;
    println!(
        "{} requests in {:.2}s: {} succeeded ({:.1} %); after the bad replica's breaker \
         opened: {} of {} ({:.2} %)",
        REQUESTS_PER_PHASE,
        elapsed.as_secs_f64(),
        outcome.succeeded,
        rate(outcome.succeeded, REQUESTS_PER_PHASE),
        outcome.succeeded_after_trip,
        outcome.sent_after_trip,
        rate(outcome.succeeded_after_trip, outcome.sent_after_trip),
    );

    // The claims.
    let mut failed = Vec::new();
    let bad_state = handles[BAD].state();
    if !opened || bad_state == State::Closed {
        failed.push(format!(
            "{title}: the bad replica's breaker should have opened and stayed out \
             (opened: {opened}, now {bad_state})"
        ));
    }
    let reached_bad = servers[BAD].replica.received.load(Ordering::Relaxed);
    let bound = u64::from(TRIP_AFTER) + (MAX_IN_FLIGHT as u64 - 1) + probes;
    println!(
        "the bad replica received {reached_bad} requests (bound: {TRIP_AFTER} to trip + \
         up to {} already in flight + {probes} half-open probes = {bound})\n",
        MAX_IN_FLIGHT - 1
    );
    if reached_bad > bound {
        failed.push(format!(
            "{title}: the bad replica received {reached_bad} requests, more than {bound}"
        ));
    }
    for (i, server) in servers.iter().enumerate().filter(|(i, _)| *i != BAD) {
        let t = &tallies[i];
        let (sent, ok) = (t.sent.load(Ordering::Relaxed), t.ok.load(Ordering::Relaxed));
        let received = server.replica.received.load(Ordering::Relaxed);
        if ok != sent || received != sent {
            failed.push(format!(
                "{title}: replica-{i} is healthy but {ok} of the {sent} requests sent to it \
                 succeeded ({received} received)"
            ));
        }
    }
    if outcome.sent_after_trip == 0
        || outcome.succeeded_after_trip * 100 < outcome.sent_after_trip * 99
    {
        failed.push(format!(
            "{title}: {} of {} requests after the trip succeeded, under 99 %",
            outcome.succeeded_after_trip, outcome.sent_after_trip
        ));
    }
    Ok(failed)
}

async fn run() -> Result<Vec<String>, BoxError> {
    let mut servers = Vec::new();
    for _ in 0..REPLICAS {
        servers.push(start_server().await?);
    }
    let addrs: Vec<String> = servers.iter().map(|s| s.addr.to_string()).collect();
    println!(
        "{REPLICAS} replicas on {}; replica-{BAD} is the bad one\n",
        addrs.join(", ")
    );

    let mut failed = run_phase(
        "phase 1: replica-3 answers every request with 503",
        &servers,
        FAILING,
    )
    .await?;
    failed.extend(
        run_phase(
            "phase 2: replica-3 hangs; a 250 ms timeout makes each hang a failure",
            &servers,
            HANGING,
        )
        .await?,
    );

    // Stop the servers; a connection still hanging is cut after a short grace period.
    for server in servers {
        let _ = server.stop.send(());
        let task = server.task;
        let abort = task.abort_handle();
        if tokio::time::timeout(Duration::from_millis(500), task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    Ok(failed)
}

#[tokio::main(flavor = "current_thread")]
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
