//! Per-endpoint circuit breakers in backpressure mode under `tower::balance::p2c`, over
//! five real HTTP servers on 127.0.0.1: a bad replica (failing with 503, or hanging
//! behind an attempt timeout) is ejected while the others serve, and comes back once it
//! recovers.
//!
//! Requests go one at a time, so the bounds are exact: a breaker that trips after `k`
//! failures in a row lets at most `k` requests plus its half-open probes reach the bad
//! server. No assertion reads the clock; the only real time spent is the hang timeouts
//! and the short open duration of the recovery test.
#![cfg(all(feature = "circuit-breaker", feature = "timeout", feature = "http"))]

use std::collections::hash_map::DefaultHasher;
use std::future::Future;
use std::hash::BuildHasherDefault;
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
use seawall::circuit_breaker::{
    Builder, Cause, CircuitBreakerLayer, Handle, Readiness, State, Transition, Transitions,
};
use seawall::error::Elapsed;
use seawall::http::StatusClassifier;
use seawall::timeout::TimeoutLayer;
use seawall::BoxError;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tower::balance::p2c::Balance;
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PendingRequestsDiscover};
use tower::util::rng::HasherRng;
use tower::{Service, ServiceBuilder, ServiceExt};

const REPLICAS: usize = 5;
const BAD: usize = 2;
const TRIP_AFTER: u32 = 3;

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

impl Replica {
    fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }
}

async fn serve(Extract(replica): Extract<Arc<Replica>>) -> StatusCode {
    replica.received.fetch_add(1, Ordering::SeqCst);
    match replica.mode.load(Ordering::SeqCst) {
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
    task: tokio::task::JoinHandle<()>,
}

async fn start_server(mode: u8) -> Server {
    let replica = Arc::new(Replica::default());
    replica.mode.store(mode, Ordering::SeqCst);
    let app = axum::Router::new()
        .fallback(serve)
        .with_state(replica.clone());
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
        replica,
        stop,
        task,
    }
}

/// Stop the servers: gracefully, or cut off after a short wait when a hanging request
/// holds a connection open.
async fn stop_servers(servers: Vec<Server>) {
    for server in servers {
        let _ = server.stop.send(());
        let abort = server.task.abort_handle();
        if tokio::time::timeout(Duration::from_millis(500), server.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

// ===== the client =====

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// What one endpoint's stack returned, seen from the client.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    ok: AtomicU64,
    bad_status: AtomicU64,
    timeouts: AtomicU64,
    other_errors: AtomicU64,
}

impl Tally {
    fn record<B>(&self, result: &Result<Response<B>, BoxError>) {
        self.sent.fetch_add(1, Ordering::SeqCst);
        let counter = match result {
            Ok(response) if response.status().is_success() => &self.ok,
            Ok(_) => &self.bad_status,
            Err(error) if error.is::<Elapsed>() => &self.timeouts,
            Err(_) => &self.other_errors,
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::SeqCst)
    }
}

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
        .unwrap();
    request
}

/// One endpoint: tally, breaker (backpressure), attempt timeout, client bound to `addr`.
fn endpoint(
    client: HttpClient,
    addr: SocketAddr,
    breaker: CircuitBreakerLayer<StatusClassifier>,
    timeout: Duration,
    tally: Arc<Tally>,
) -> impl Service<
    Request<Empty<Bytes>>,
    Response = Response<Incoming>,
    Error = BoxError,
    Future = impl Future<Output = Result<Response<Incoming>, BoxError>>,
> {
    ServiceBuilder::new()
        .map_result(move |result: Result<Response<Incoming>, BoxError>| {
            tally.record(&result);
            result
        })
        .layer(breaker)
        .layer(TimeoutLayer::new(timeout).unwrap())
        .map_request(move |request| to_endpoint(request, addr))
        .service(client)
}

/// A breaker that trips after `TRIP_AFTER` failures in a row and stays open for `open`,
/// in backpressure mode, without jitter or growth so that its open duration is exact.
fn breaker(name: String, open: Duration) -> Builder<StatusClassifier> {
    CircuitBreakerLayer::builder()
        .name(name)
        .without_failure_rate()
        .consecutive_failures(TRIP_AFTER)
        .open_duration(open)
        .open_duration_multiplier(1.0)
        .jitter(0.0)
        .half_open_probes(1)
        .readiness(Readiness::Backpressure)
        .seed(7)
        .classifier(StatusClassifier::new())
}

/// Five servers (replica `BAD` in `bad_mode`) and a p2c balancer over five endpoints.
struct Pool<B> {
    servers: Vec<Server>,
    balance: B,
    handles: Vec<Handle>,
    tallies: Vec<Arc<Tally>>,
    bad_transitions: Transitions,
    /// Successes of the requests sent so far.
    succeeded: u64,
}

async fn pool(
    bad_mode: u8,
    open: Duration,
    timeout: Duration,
) -> Pool<impl Service<Request<Empty<Bytes>>, Response = Response<Incoming>, Error = BoxError>> {
    let mut servers = Vec::new();
    for i in 0..REPLICAS {
        servers.push(start_server(if i == BAD { bad_mode } else { HEALTHY }).await);
    }
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let mut handles = Vec::new();
    let mut tallies = Vec::new();
    let mut endpoints = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let layer = breaker(format!("replica-{i}"), open).build().unwrap();
        let tally = Arc::new(Tally::default());
        handles.push(layer.handle());
        tallies.push(tally.clone());
        endpoints.push(endpoint(client.clone(), server.addr, layer, timeout, tally));
    }
    let bad_transitions = handles[BAD].subscribe();
    let discover =
        PendingRequestsDiscover::new(ServiceList::new(endpoints), CompleteOnResponse::default());
    // A fixed seed for the balancer's random picks.
    let rng = HasherRng::with_hasher(BuildHasherDefault::<DefaultHasher>::default());
    Pool {
        servers,
        balance: Balance::from_rng(discover, rng),
        handles,
        tallies,
        bad_transitions,
        succeeded: 0,
    }
}

impl<B> Pool<B>
where
    B: Service<Request<Empty<Bytes>>, Response = Response<Incoming>, Error = BoxError>,
{
    /// Send one request through the balancer; whether it succeeded (a 2xx).
    async fn send(&mut self) -> bool {
        let request = Request::get("/work").body(Empty::new()).unwrap();
        let svc = self
            .balance
            .ready()
            .await
            .expect("four endpoints are always ready");
        let ok = matches!(svc.call(request).await, Ok(r) if r.status().is_success());
        self.succeeded += u64::from(ok);
        ok
    }

    /// Send requests until the bad replica's breaker opens (at most `limit`).
    async fn send_until_bad_opens(&mut self, limit: u32) {
        for _ in 0..limit {
            if self.bad().state() == State::Open {
                return;
            }
            self.send().await;
        }
        assert_eq!(
            self.bad().state(),
            State::Open,
            "the bad replica's breaker should open within {limit} requests"
        );
    }

    fn bad(&self) -> &Handle {
        &self.handles[BAD]
    }

    fn transitions(&mut self) -> Vec<Transition> {
        let mut all = Vec::new();
        while let Some(t) = self.bad_transitions.try_recv() {
            all.push(t);
        }
        all
    }

    /// Every request the balancer sent a healthy replica reached it and succeeded.
    fn assert_healthy_replicas_served_everything(&self) {
        for (i, server) in self.servers.iter().enumerate().filter(|(i, _)| *i != BAD) {
            let t = &self.tallies[i];
            let sent = Tally::get(&t.sent);
            assert!(sent > 0, "replica-{i} got traffic");
            assert_eq!(
                Tally::get(&t.ok),
                sent,
                "replica-{i}: every request succeeded"
            );
            assert_eq!(
                server.replica.received(),
                sent,
                "replica-{i}: each one arrived"
            );
            assert_eq!(self.handles[i].state(), State::Closed, "replica-{i}");
        }
    }
}

/// The requests after the trip: at least 99 % succeeded (all of them, sent one at a time
/// with the bad replica out of the pool).
fn assert_success_rate(succeeded: u64, sent: u64) {
    assert!(
        succeeded * 100 >= sent * 99,
        "{succeeded} of {sent} requests after the trip succeeded, under 99 %"
    );
}

// ===== the tests =====

#[tokio::test]
async fn a_replica_failing_with_503_is_ejected_while_the_others_serve() {
    // Open long enough that no probe falls within the test.
    let mut pool = pool(FAILING, Duration::from_secs(60), Duration::from_secs(5)).await;
    pool.send_until_bad_opens(200).await;
    let before_trip = pool.succeeded;

    let after_trip = 200;
    for _ in 0..after_trip {
        pool.send().await;
    }
    let succeeded_after_trip = pool.succeeded - before_trip;

    let transitions = pool.transitions();
    let probes = transitions
        .iter()
        .filter(|t| t.to == State::HalfOpen)
        .count() as u64;
    assert_eq!(pool.bad().state(), State::Open);
    assert_eq!(
        (transitions[0].to, transitions[0].cause),
        (State::Open, Cause::ConsecutiveFailures)
    );
    let reached_bad = pool.servers[BAD].replica.received();
    assert!(
        reached_bad <= u64::from(TRIP_AFTER) + probes,
        "the bad replica received {reached_bad} requests: more than {TRIP_AFTER} + {probes} probes"
    );
    assert_eq!(reached_bad, u64::from(TRIP_AFTER), "no probe went");
    let bad = &pool.tallies[BAD];
    assert_eq!(Tally::get(&bad.sent), reached_bad);
    assert_eq!(Tally::get(&bad.bad_status), reached_bad, "each one a 503");
    assert_eq!(
        pool.bad().snapshot().rejections,
        0,
        "an open endpoint is not ready, so the balancer never calls it"
    );
    pool.assert_healthy_replicas_served_everything();
    assert_success_rate(succeeded_after_trip, after_trip);
    assert_eq!(succeeded_after_trip, after_trip);

    drop(pool.balance);
    stop_servers(pool.servers).await;
}

#[tokio::test]
async fn a_hanging_replica_is_ejected_once_timeouts_turn_hangs_into_failures() {
    let mut pool = pool(HANGING, Duration::from_secs(60), Duration::from_millis(500)).await;
    pool.send_until_bad_opens(200).await;
    let before_trip = pool.succeeded;

    let after_trip = 100;
    for _ in 0..after_trip {
        pool.send().await;
    }
    let succeeded_after_trip = pool.succeeded - before_trip;

    let probes = pool
        .transitions()
        .iter()
        .filter(|t| t.to == State::HalfOpen)
        .count() as u64;
    assert_eq!(pool.bad().state(), State::Open);
    let reached_bad = pool.servers[BAD].replica.received();
    assert!(
        reached_bad <= u64::from(TRIP_AFTER) + probes,
        "the bad replica received {reached_bad} requests: more than {TRIP_AFTER} + {probes} probes"
    );
    let bad = &pool.tallies[BAD];
    assert_eq!(Tally::get(&bad.sent), u64::from(TRIP_AFTER));
    assert_eq!(
        Tally::get(&bad.timeouts),
        u64::from(TRIP_AFTER),
        "each hang ended by the attempt timeout"
    );
    pool.assert_healthy_replicas_served_everything();
    assert_success_rate(succeeded_after_trip, after_trip);

    drop(pool.balance);
    stop_servers(pool.servers).await;
}

#[tokio::test]
async fn an_ejected_replica_comes_back_and_gets_traffic_again_once_it_recovers() {
    let open = Duration::from_millis(200);
    let mut pool = pool(FAILING, open, Duration::from_secs(5)).await;
    pool.send_until_bad_opens(200).await;
    assert_eq!(pool.servers[BAD].replica.received(), u64::from(TRIP_AFTER));

    // The replica recovers. Keep sending (all of it succeeds, the bad replica being out
    // of the pool or healthy) until the open duration is over, a probe has gone to it
    // and its breaker has closed: a few dozen rounds of 10 ms; bounded by 500.
    pool.servers[BAD]
        .replica
        .mode
        .store(HEALTHY, Ordering::SeqCst);
    let mut rounds = 0;
    while pool.bad().state() != State::Closed {
        assert!(rounds < 500, "the breaker never closed again");
        rounds += 1;
        assert!(pool.send().await, "every request succeeds");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let transitions: Vec<_> = pool
        .transitions()
        .iter()
        .map(|t| (t.from, t.to, t.cause))
        .collect();
    assert_eq!(
        transitions,
        [
            (State::Closed, State::Open, Cause::ConsecutiveFailures),
            (State::Open, State::HalfOpen, Cause::OpenElapsed),
            (State::HalfOpen, State::Closed, Cause::ProbesSucceeded),
        ]
    );
    assert_eq!(
        pool.servers[BAD].replica.received(),
        u64::from(TRIP_AFTER) + 1,
        "exactly one probe"
    );

    // Back in the pool: it gets its share of the next requests, and serves them.
    let sent_before = Tally::get(&pool.tallies[BAD].sent);
    for _ in 0..100 {
        assert!(pool.send().await);
    }
    let bad = &pool.tallies[BAD];
    let sent_after = Tally::get(&bad.sent) - sent_before;
    assert!(sent_after > 0, "the recovered replica gets traffic again");
    assert_eq!(
        pool.servers[BAD].replica.received(),
        u64::from(TRIP_AFTER) + 1 + sent_after
    );
    assert_eq!(Tally::get(&bad.ok), 1 + sent_after);
    assert_eq!(pool.bad().state(), State::Closed);
    pool.assert_healthy_replicas_served_everything();

    drop(pool.balance);
    stop_servers(pool.servers).await;
}
