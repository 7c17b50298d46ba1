//! The outage demo: one dependency of a gateway goes down, and takes every route of the
//! gateway down with it; unless each call to it goes through a seawall policy.
//!
//! ```text
//! cargo run --release --example outage --features full
//! ```
//!
//! # The system
//!
//! A small microservice system of the kind every architecture diagram shows, every part
//! of it a real server on 127.0.0.1 (port 0) that this program starts and stops:
//!
//! ```text
//!                                        ┌─▶ users          HTTP (axum)   GET  /users/{id}
//!   load generator ──HTTP──▶ gateway ────┼─▶ search         HTTP (axum)   GET  /search
//!   open loop, 300 req/s    (axum, 64    ├─▶ orders         gRPC (tonic)  orders.Orders/Get
//!   gives up after 2 s       workers)    ├─▶ payments       HTTP (axum)   POST /charge
//!                                        └─▶ notifications  HTTP (axum)   POST /notify
//! ```
//!
//! | gateway route | calls | share of the load |
//! |---|---|---|
//! | `GET /users/{id}` | users | 25 % |
//! | `GET /search` | search | 20 % |
//! | `GET /orders/{id}` | orders (gRPC) | 20 % |
//! | `POST /checkout` | orders and payments at once, then notifications | 15 % |
//! | `POST /pay` | payments | 20 % |
//!
//! Each downstream takes a few milliseconds per request (3 to 12 ms, seeded), so that
//! latency is service time rather than scheduler noise.
//!
//! The gateway has a pool of 64 workers, as a Tomcat or Netty server has: a request waits
//! for a free worker, and a worker, once it has a request, sees it through, even after
//! the client has given up (a thread blocked on a socket does not notice). That shared
//! pool is what a hanging dependency eats, and how it takes down the routes that never
//! call it. (Left to itself an async server drops the work of a client that hung up,
//! which would hide this; the pool is modelled in `worker_pool`.)
//!
//! The load generator is open loop: it sends requests at a fixed rate (a task per
//! request), whatever became of the ones before, and gives up on a request after 2 s,
//! which counts as a failure.
//!
//! # The script
//!
//! | phase | length | payments |
//! |---|---|---|
//! | healthy | 5 s | answers in 5 to 10 ms |
//! | hang | 5 s | never answers; its own front door (a load balancer) gives up after 3 s with a `504` |
//! | fail fast | 4 s | answers `503` at once |
//! | recovered | 5 s | healthy again |
//!
//! The faults are two `seawall::chaos::http::HttpFaultLayer`s on the payments server
//! (a hang, a `503`), switched on and off through their `Handle`s. The same script, with
//! the same seed (the same requests at the same times, the same service times), runs
//! twice:
//!
//! 1. **unprotected**: the gateway as it is often written: plain `reqwest` and `tonic`
//!    clients, no timeouts, and the retry loop people write by hand (on an error or a
//!    5xx, try again at once; three tries in all, no backoff, no budget).
//! 2. **seawall**: the same gateway with a `seawall::policy::Policy` per downstream,
//!    built with `Policy::builder` (through `seawall::reqwest::policy` for HTTP, and
//!    `seawall::grpc::GrpcClientLayer` for the tonic channel). Payments' policy: a
//!    300 ms deadline, 100 ms per attempt, at most two attempts, retries from a budget,
//!    a circuit breaker (five failures in a row, or half of the last 50 calls, trip it;
//!    open for 1 s; then one probe), and a bulkhead of 20 calls in flight. The other
//!    downstreams get generous ones (500 ms deadline, 250 ms per attempt). When the
//!    policy rejects a payments call without sending anything (breaker open, bulkhead
//!    full), `/checkout` and `/pay` answer `503` at once, marked `x-fast-fail`.
//!
//! # Reading the output
//!
//! While it runs, a line per second: the time and the phase; the requests sent in that
//! second; of the requests answered in that second, the share that succeeded, for the
//! routes without payments (`ok other`) and with (`ok pay`); the share of all answered
//! so far; the calls in flight at payments; the gateway's busy workers and the requests
//! waiting for one; and, with seawall, the state of payments' breaker.
//!
//! Then, per route, the two runs side by side (`unprot.`, `seawall`), for the whole run
//! and for the fault alone (the hang and fail-fast phases, by arrival time):
//!
//! - **success**: requests answered `200`;
//! - **p50, p99, max**: latency of every request, failed ones included, at the load
//!   generator, from sending to the end of the answer (a client timeout counts as 2 s);
//! - **attempts/call**: requests the downstream servers received, per call the gateway
//!   made to them (both counted in the phase they happen in). Above 1, retries add load
//!   (the hand-written loop makes 3 of every failing call); below 1, calls failed fast
//!   without being sent.
//!
//! Then payments and the gateway:
//!
//! - the peaks of the calls in flight at payments, of the gateway's busy workers and of
//!   the requests waiting for one;
//! - **time to detect**: from the fault's start to the breaker's first opening (`never`
//!   without a breaker: nothing notices);
//! - **time to recover**: from the fault's end to the first successful payments-route
//!   request from which on every 250 ms of payments-route requests is at least 99 %
//!   successful. With seawall that is the rest of the breaker's open time: it learns
//!   that payments is back from its next probe. (The unprotected gateway, its pool
//!   drained during the fail-fast phase, is back at once, having failed everything
//!   before.)
//! - **fast failures**: the payments-route requests failed fast while payments was down,
//!   their latency at the client, and in the gateway (its `Server-Timing` header).
//!
//! Then the targets, checked on the seawall run, each PASS or FAIL:
//!
//! - the routes without payments keep at least 99.9 % success during the fault, and a
//!   p99 within 1.2x of the healthy phase's (without its first second, while
//!   connections warm up);
//! - the payments routes fail fast while it is down: the p99 of the fast failures, at
//!   the client, is under 1 ms;
//! - at most 1.2 downstream attempts per call, on every route, over the whole run and
//!   during the fault;
//! - detection within 1 s;
//! - recovery within the breaker's open time plus one probe (1 s + 100 ms).
//!
//! Last, a plot (`target/outage.svg`): per 250 ms of arrivals, the success rate and the
//! p99 of the routes with and without payments, and the peaks of busy workers and calls
//! in flight at payments; one column per run, the phases marked, the breaker's open and
//! half-open times shaded.
//!
//! Timings on a busy machine are noisy: a target that fails by a little (a p99 of the
//! fast failures of 2 ms while something else compiles) says more about the machine
//! than about the gateway. The gateway's own time is printed next to it.
//!
//! # Options
//!
//! - `--rate N`: requests per second (default 300);
//! - `--seed N`: the seed of the requests and the service times (default 42);
//! - `--svg PATH`: where to write the plot (default `target/outage.svg`);
//! - `--quick`: 2 s phases at 100 req/s, a smoke test (in CI, with a debug build);
//! - `--strict`: exit with status 1 if a target fails (without it, the status is 0
//!   whatever the figures).
//!
//! Both runs take about 40 s in all.

#[path = "proto/orders.rs"]
// The generated items are `pub`, in a module that is not.
#[allow(unreachable_pub)]
mod orders;

use std::cell::Cell;
use std::error::Error as StdError;
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::serve::ListenerExt;
use axum::Router;
use futures::stream::{BoxStream, StreamExt};
use seawall::chaos::http::HttpFaultLayer;
use seawall::chaos::Handle as FaultSwitch;
use seawall::circuit_breaker::{Handle as BreakerHandle, State as BreakerState};
use seawall::error::{is_rejection, ConfigError, DeadlineExceeded, Elapsed};
use seawall::grpc::{GrpcClassifier, GrpcClient, GrpcClientLayer};
use seawall::http::{BodyReplay, ReplayBody, IDEMPOTENCY_KEY};
use seawall::policy::{Policy, PolicyService};
use seawall::reqwest::{ReqwestClassifier, ReqwestReplay};
use seawall::BoxError;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tonic::codegen::tokio_stream::wrappers::TcpListenerStream;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tower::{Layer, Service, ServiceExt};

use orders::orders_client::OrdersClient;
use orders::orders_server::{Orders, OrdersServer};
use orders::{GetOrder, Line, Order};

// ===== the knobs =====

/// The gateway's worker pool (a small one: this is a small machine).
const WORKERS: usize = 64;
/// The load generator gives up on a request after this long.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// Payments' own front door (its load balancer) answers 504 after this long.
const PAYMENTS_FRONT_DOOR_TIMEOUT: Duration = Duration::from_secs(3);
/// The unprotected gateway's hand-written retry loop: tries in all.
const NAIVE_TRIES: u32 = 3;

/// Payments' policy in the seawall run.
const PAYMENTS_DEADLINE: Duration = Duration::from_millis(300);
const PAYMENTS_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(100);
const PAYMENTS_BULKHEAD: u32 = 20;
const TRIP_AFTER_IN_A_ROW: u32 = 5;
const OPEN_FOR: Duration = Duration::from_secs(1);
const OPEN_JITTER: f64 = 0.1;
/// The other downstreams' policies: generous, since they stay healthy.
const OTHERS_DEADLINE: Duration = Duration::from_millis(500);
const OTHERS_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(250);
const OTHERS_BULKHEAD: u32 = 64;

/// The resolution of the plot and of the recovery measurement, in seconds.
const BUCKET: f64 = 0.25;

/// The header that names the gateway route a downstream call is made for, so that the
/// downstream servers can count attempts per route.
const ROUTE_HEADER: &str = "x-route";
/// The gateway's answers carry the time it spent on them (the W3C `Server-Timing`).
const SERVER_TIMING: &str = "server-timing";
/// The header on the gateway's answer when a downstream was rejected locally.
const FAST_FAIL_HEADER: &str = "x-fast-fail";

// ===== routes and phases =====

struct Route {
    name: &'static str,
    key: &'static str,
    needs_payments: bool,
    /// Share of the load, in percent.
    weight: u64,
}

const ROUTES: [Route; 5] = [
    Route {
        name: "GET  /users/{id}",
        key: "users",
        needs_payments: false,
        weight: 25,
    },
    Route {
        name: "GET  /search",
        key: "search",
        needs_payments: false,
        weight: 20,
    },
    Route {
        name: "GET  /orders/{id} (gRPC)",
        key: "orders",
        needs_payments: false,
        weight: 20,
    },
    Route {
        name: "POST /checkout",
        key: "checkout",
        needs_payments: true,
        weight: 15,
    },
    Route {
        name: "POST /pay",
        key: "pay",
        needs_payments: true,
        weight: 20,
    },
];
const USERS: usize = 0;
const SEARCH: usize = 1;
const ORDERS: usize = 2;
const CHECKOUT: usize = 3;
const PAY: usize = 4;

fn route_of(key: &str) -> Option<usize> {
    ROUTES.iter().position(|route| route.key == key)
}

const HEALTHY: usize = 0;
const HANG: usize = 1;
const FAIL_FAST: usize = 2;
const RECOVERED: usize = 3;
const PHASE_NAMES: [&str; 4] = ["healthy", "hang", "fail fast", "recovered"];

/// The lengths of the four phases, in seconds.
#[derive(Clone, Copy)]
struct Script {
    phases: [f64; 4],
}

impl Script {
    fn new(quick: bool) -> Self {
        let phases = if quick {
            [2.0, 2.0, 2.0, 2.5]
        } else {
            [5.0, 5.0, 4.0, 5.0]
        };
        Self { phases }
    }

    fn start(&self, phase: usize) -> f64 {
        self.phases[..phase].iter().sum()
    }

    fn total(&self) -> f64 {
        self.start(self.phases.len())
    }

    /// The fault: from the hang's start to the fail-fast phase's end.
    fn fault(&self) -> (f64, f64) {
        (self.start(HANG), self.start(RECOVERED))
    }

    fn phase_at(&self, t: f64) -> &'static str {
        (0..4)
            .rev()
            .find(|&phase| t >= self.start(phase))
            .filter(|_| t < self.total())
            .map_or("draining", |phase| PHASE_NAMES[phase])
    }
}

// ===== options =====

struct Options {
    svg: PathBuf,
    seed: u64,
    rate: f64,
    quick: bool,
    strict: bool,
}

const USAGE: &str = "usage: cargo run --release --example outage --features full -- \
[--rate REQ_PER_S] [--seed N] [--svg PATH] [--quick] [--strict]";

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        svg: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join("outage.svg"),
        seed: 42,
        rate: 0.0,
        quick: false,
        strict: false,
    };
    let mut rate = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--svg" => options.svg = value("--svg")?.into(),
            "--seed" => {
                options.seed = value("--seed")?
                    .parse()
                    .map_err(|e| format!("--seed: {e}"))?
            }
            "--rate" => {
                rate = Some(
                    value("--rate")?
                        .parse::<f64>()
                        .map_err(|e| format!("--rate: {e}"))?,
                )
            }
            "--quick" => options.quick = true,
            "--strict" => options.strict = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    options.rate = rate.unwrap_or(if options.quick { 100.0 } else { 300.0 });
    if !(10.0..=2000.0).contains(&options.rate) {
        return Err(format!(
            "--rate must be from 10 to 2000 requests per second (got {})",
            options.rate
        ));
    }
    Ok(options)
}

// ===== seeded randomness =====

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = splitmix64(self.0);
        self.0 % n
    }
}

/// A downstream's service time: uniform in `[min, max]` microseconds, the n-th draw a
/// function of the seed (so both runs see the same sequence).
struct ServiceTime {
    min_us: u64,
    max_us: u64,
    seed: u64,
    draws: AtomicU64,
}

impl ServiceTime {
    fn new(min_ms: u64, max_ms: u64, seed: u64) -> Arc<Self> {
        Arc::new(Self {
            min_us: min_ms * 1000,
            max_us: max_ms * 1000,
            seed,
            draws: AtomicU64::new(0),
        })
    }

    fn draw(&self) -> Duration {
        let n = self.draws.fetch_add(1, Ordering::Relaxed);
        let spread = self.max_us - self.min_us + 1;
        Duration::from_micros(self.min_us + splitmix64(self.seed ^ n) % spread)
    }
}

// ===== what is measured while a run goes =====

/// A gauge that remembers its peak.
#[derive(Default)]
struct Gauge {
    now: AtomicU64,
    peak: AtomicU64,
}

impl Gauge {
    /// One more, until the guard drops.
    fn enter(&self) -> GaugeGuard<'_> {
        let now = self.now.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
        GaugeGuard(self)
    }

    fn now(&self) -> u64 {
        self.now.load(Ordering::Relaxed)
    }

    fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

struct GaugeGuard<'a>(&'a Gauge);

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counters shared by the servers, the gateway and the load generator of one run.
#[derive(Default)]
struct Meter {
    /// The script's current phase.
    phase: AtomicUsize,
    /// Calls the gateway made to downstreams, per phase and route.
    calls: [[AtomicU64; 5]; 4],
    /// Requests the downstream servers received, per phase and route.
    attempts: [[AtomicU64; 5]; 4],
    payments_in_flight: Gauge,
    workers_busy: Gauge,
    waiting_for_worker: Gauge,
    /// The load generator's requests: sent; and answered, and answered with a 200, for
    /// the routes without payments (0) and with (1).
    sent: AtomicU64,
    done: [AtomicU64; 2],
    ok: [AtomicU64; 2],
}

impl Meter {
    fn phase(&self) -> usize {
        self.phase.load(Ordering::Relaxed)
    }

    fn call(&self, route: usize) {
        self.calls[self.phase()][route].fetch_add(1, Ordering::Relaxed);
    }

    fn attempt(&self, headers: &HeaderMap) {
        let route = headers
            .get(ROUTE_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(route_of);
        if let Some(route) = route {
            self.attempts[self.phase()][route].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn snapshot(counters: &[[AtomicU64; 5]; 4]) -> [[u64; 5]; 4] {
        counters
            .each_ref()
            .map(|phase| phase.each_ref().map(|c| c.load(Ordering::Relaxed)))
    }
}

// ===== the downstream services =====

/// A server this program started, and how to stop it.
struct Server {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn stop(self) {
        let _ = self.stop.send(());
        let abort = self.task.abort_handle();
        // Connections that hang would hold a graceful shutdown forever.
        if tokio::time::timeout(Duration::from_millis(500), self.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

async fn serve_axum(app: Router) -> std::io::Result<Server> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    // Small responses go out at once, not after the client's delayed ACK (Nagle).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok(Server { addr, stop, task })
}

/// What every downstream's front door does: count the request for its route and, at
/// payments, count it in flight and give up after 3 s (a load balancer's timeout).
#[derive(Clone)]
struct FrontDoor {
    meter: Arc<Meter>,
    payments: bool,
}

async fn front_door(State(door): State<FrontDoor>, request: Request, next: Next) -> Response {
    door.meter.attempt(request.headers());
    if !door.payments {
        return next.run(request).await;
    }
    let _in_flight = door.meter.payments_in_flight.enter();
    match tokio::time::timeout(PAYMENTS_FRONT_DOOR_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => StatusCode::GATEWAY_TIMEOUT.into_response(),
    }
}

/// An HTTP downstream: one path that answers `ok` after its service time, behind its
/// front door, with payments' fault injection in between when given.
async fn start_http_service(
    path: &str,
    time: Arc<ServiceTime>,
    meter: Arc<Meter>,
    faults: Option<(HttpFaultLayer, HttpFaultLayer)>,
) -> std::io::Result<Server> {
    let handler = move || {
        let time = time.clone();
        async move {
            tokio::time::sleep(time.draw()).await;
            "ok"
        }
    };
    let mut app = Router::new().route(path, any(handler));
    let payments = faults.is_some();
    if let Some((hang, fail)) = faults {
        app = app.layer(hang).layer(fail);
    }
    let door = FrontDoor { meter, payments };
    serve_axum(app.layer(middleware::from_fn_with_state(door, front_door))).await
}

/// The orders service, over gRPC.
struct OrdersService {
    meter: Arc<Meter>,
    time: Arc<ServiceTime>,
}

#[tonic::async_trait]
impl Orders for OrdersService {
    async fn get(
        &self,
        request: tonic::Request<GetOrder>,
    ) -> Result<tonic::Response<Order>, tonic::Status> {
        // tonic hands the handler the request's headers as metadata.
        self.meter
            .attempt(&request.metadata().clone().into_headers());
        tokio::time::sleep(self.time.draw()).await;
        Ok(tonic::Response::new(Order {
            id: request.get_ref().id,
            status: "placed".to_owned(),
        }))
    }

    type LinesStream = BoxStream<'static, Result<Line, tonic::Status>>;

    async fn lines(
        &self,
        _request: tonic::Request<GetOrder>,
    ) -> Result<tonic::Response<Self::LinesStream>, tonic::Status> {
        // The gateway does not use it.
        Ok(tonic::Response::new(futures::stream::empty().boxed()))
    }
}

async fn start_orders(time: Arc<ServiceTime>, meter: Arc<Meter>) -> std::io::Result<Server> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let service = OrdersServer::new(OrdersService { meter, time });
    // Without TCP_NODELAY, HTTP/2's small frames wait for delayed ACKs: 40 ms tails.
    let incoming = TcpListenerStream::new(listener).map(|tcp| {
        let tcp = tcp?;
        tcp.set_nodelay(true)?;
        Ok::<_, std::io::Error>(tcp)
    });
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok(Server { addr, stop, task })
}

/// The five downstreams of one run, and the switches of payments' faults.
struct Downstreams {
    users: Server,
    search: Server,
    orders: Server,
    payments: Server,
    notifications: Server,
    hang: FaultSwitch,
    fail: FaultSwitch,
}

async fn start_downstreams(seed: u64, meter: &Arc<Meter>) -> Result<Downstreams, BoxError> {
    // Payments' faults, off until the script switches them on (a fault layer is built
    // off). Every request gets the fault while one is on (rate 1.0): payments is down,
    // not flaky.
    let hang = HttpFaultLayer::builder()
        .name("payments")
        .rate(1.0)
        .seed(seed)
        .hang()
        .build()?;
    let fail = HttpFaultLayer::builder()
        .name("payments")
        .rate(1.0)
        .seed(seed)
        .status(503)
        .build()?;
    let (hang_switch, fail_switch) = (hang.handle(), fail.handle());
    let time = |min, max, n: u64| ServiceTime::new(min, max, splitmix64(seed ^ n));
    Ok(Downstreams {
        users: start_http_service("/users/{id}", time(4, 8, 1), meter.clone(), None).await?,
        search: start_http_service("/search", time(6, 12, 2), meter.clone(), None).await?,
        orders: start_orders(time(4, 8, 3), meter.clone()).await?,
        payments: start_http_service("/charge", time(5, 10, 4), meter.clone(), Some((hang, fail)))
            .await?,
        notifications: start_http_service("/notify", time(3, 6, 5), meter.clone(), None).await?,
        hang: hang_switch,
        fail: fail_switch,
    })
}

impl Downstreams {
    async fn stop(self) {
        for server in [
            self.users,
            self.search,
            self.orders,
            self.payments,
            self.notifications,
        ] {
            server.stop().await;
        }
    }
}

// ===== the gateway's clients =====

/// Why a downstream call failed, as the gateway answers it.
enum Failure {
    /// Rejected by the gateway's own policy (breaker open, bulkhead full): `503`. If
    /// nothing at all was sent for the call, it is a fast failure, marked with
    /// `x-fast-fail`; otherwise an attempt went out first (and, say, timed out) and a
    /// retry found the breaker open.
    Rejected { name: &'static str, sent: bool },
    /// The policy's attempt timeout or deadline ran out: `504`.
    TimedOut(&'static str),
    /// The downstream failed: `502`.
    Failed(&'static str),
}

impl Failure {
    fn of(downstream: &'static str, err: &(dyn StdError + 'static), sent: u32) -> Self {
        if is_rejection(err) {
            return Failure::Rejected {
                name: downstream,
                sent: sent > 0,
            };
        }
        let mut source = Some(err);
        while let Some(err) = source {
            if err.is::<Elapsed>() || err.is::<DeadlineExceeded>() {
                return Failure::TimedOut(downstream);
            }
            source = err.source();
        }
        Failure::Failed(downstream)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self {
            Failure::Rejected { name, sent: false } => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(FAST_FAIL_HEADER, name)],
                format!("{name} is unavailable"),
            )
                .into_response(),
            Failure::Rejected { name, sent: true } => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{name} is unavailable"),
            )
                .into_response(),
            Failure::TimedOut(name) => {
                (StatusCode::GATEWAY_TIMEOUT, format!("{name} timed out")).into_response()
            }
            Failure::Failed(name) => {
                (StatusCode::BAD_GATEWAY, format!("{name} failed")).into_response()
            }
        }
    }
}

tokio::task_local! {
    /// The requests one downstream call has sent so far (retries included), counted
    /// below the policy by `CountSends`: zero when the policy rejected the call outright.
    static SENT: Cell<u32>;
}

/// Counts each request into the calling task's `SENT`. It sits below the policy, just
/// above the client, so it sees what the policy lets through; the policy's stages call
/// it from the caller's task (nothing in the stack is spawned).
#[derive(Clone)]
struct CountSends<S>(S);

impl<S: Service<R>, R> Service<R> for CountSends<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> S::Future {
        let _ = SENT.try_with(|sent| sent.set(sent.get() + 1));
        self.0.call(request)
    }
}

/// Runs one downstream call; what it returned, and how many requests it sent.
async fn counting_sends<F: Future>(call: F) -> (F::Output, u32) {
    SENT.scope(Cell::new(0), async {
        let output = call.await;
        (output, SENT.with(Cell::get))
    })
    .await
}

/// A `reqwest::Client` behind a policy (with the `ReqwestClassifier` and
/// `ReqwestReplay` of `seawall::reqwest::policy`).
type ProtectedHttp = PolicyService<CountSends<reqwest::Client>, ReqwestClassifier, ReqwestReplay>;

enum HttpClient {
    /// A plain client: no timeout, and the hand-written retry loop.
    Plain(reqwest::Client),
    /// The client (to build requests with) and the client behind a seawall policy.
    Protected(reqwest::Client, Box<ProtectedHttp>),
}

/// An HTTP downstream, as the gateway calls it.
struct HttpDownstream {
    name: &'static str,
    base: String,
    client: HttpClient,
}

impl HttpDownstream {
    async fn call(
        &self,
        meter: &Meter,
        route: usize,
        method: Method,
        path: &str,
        idempotency_key: Option<String>,
    ) -> Result<(), Failure> {
        meter.call(route);
        let client = match &self.client {
            HttpClient::Plain(client) => client,
            HttpClient::Protected(client, _) => client,
        };
        let mut request = client
            .request(method, format!("{}{path}", self.base))
            .header(ROUTE_HEADER, ROUTES[route].key);
        if let Some(key) = idempotency_key {
            // A payment may be sent twice only with a key the server deduplicates on;
            // seawall's replay retries a POST only with one.
            request = request.header(IDEMPOTENCY_KEY, key);
        }
        let request = request.build().map_err(|_| Failure::Failed(self.name))?;
        let (result, sent) = counting_sends(async {
            match &self.client {
                HttpClient::Plain(client) => naive_retry(client, request).await,
                HttpClient::Protected(_, policy) => (**policy).clone().oneshot(request).await,
            }
        })
        .await;
        let response = result.map_err(|err| Failure::of(self.name, &*err, sent))?;
        if !response.status().is_success() {
            return Err(Failure::Failed(self.name));
        }
        response
            .bytes()
            .await
            .map(drop)
            .map_err(|_| Failure::Failed(self.name))
    }
}

/// The retry loop people write by hand: on an error or a 5xx, try again at once, three
/// tries in all. No timeout, no backoff, no budget.
async fn naive_retry(
    client: &reqwest::Client,
    mut request: reqwest::Request,
) -> Result<reqwest::Response, BoxError> {
    let mut tries = 1;
    loop {
        let again = (tries < NAIVE_TRIES).then(|| request.try_clone()).flatten();
        let result = client.execute(request).await;
        let failed = match &result {
            Ok(response) => response.status().is_server_error(),
            Err(_) => true,
        };
        match again {
            Some(copy) if failed => {
                request = copy;
                tries += 1;
            }
            _ => return result.map_err(Into::into),
        }
    }
}

/// What turns the policy's buffered request body back into tonic's.
type IntoTonicBody = fn(ReplayBody<tonic::body::BoxBody>) -> tonic::body::BoxBody;
/// A tonic channel behind a policy, through `GrpcClientLayer`.
type ProtectedChannel =
    GrpcClient<CountSends<Channel>, Policy<GrpcClassifier, BodyReplay>, IntoTonicBody>;

/// The orders service, as the gateway calls it.
enum OrdersDownstream {
    Plain(OrdersClient<Channel>),
    Protected(Box<OrdersClient<ProtectedChannel>>),
}

impl OrdersDownstream {
    async fn get(&self, meter: &Meter, route: usize, id: u64) -> Result<(), Failure> {
        meter.call(route);
        let request = || {
            let mut request = tonic::Request::new(GetOrder { id });
            request
                .metadata_mut()
                .insert(ROUTE_HEADER, MetadataValue::from_static(ROUTES[route].key));
            request
        };
        match self {
            OrdersDownstream::Plain(client) => {
                let mut client = client.clone();
                let mut tries = 1;
                loop {
                    match client.get(request()).await {
                        Ok(_) => return Ok(()),
                        Err(_) if tries < NAIVE_TRIES => tries += 1,
                        Err(_) => return Err(Failure::Failed("orders")),
                    }
                }
            }
            OrdersDownstream::Protected(client) => {
                let mut client = (**client).clone();
                let (result, sent) = counting_sends(client.get(request())).await;
                result
                    .map(drop)
                    .map_err(|status| Failure::of("orders", &status, sent))
            }
        }
    }
}

// ===== the gateway =====

struct Gateway {
    meter: Arc<Meter>,
    users: HttpDownstream,
    search: HttpDownstream,
    orders: OrdersDownstream,
    payments: HttpDownstream,
    notifications: HttpDownstream,
}

type Answer = Result<&'static str, Failure>;

async fn get_user(State(gw): State<Arc<Gateway>>, Path(id): Path<u64>) -> Answer {
    let path = format!("/users/{id}");
    gw.users
        .call(&gw.meter, USERS, Method::GET, &path, None)
        .await?;
    Ok("user")
}

async fn get_search(State(gw): State<Arc<Gateway>>, uri: Uri) -> Answer {
    let path = format!("/search?{}", uri.query().unwrap_or_default());
    gw.search
        .call(&gw.meter, SEARCH, Method::GET, &path, None)
        .await?;
    Ok("results")
}

async fn get_order(State(gw): State<Arc<Gateway>>, Path(id): Path<u64>) -> Answer {
    gw.orders.get(&gw.meter, ORDERS, id).await?;
    Ok("order")
}

/// The order id in `?order=N`.
fn order_id(uri: &Uri) -> u64 {
    uri.query()
        .and_then(|query| query.strip_prefix("order="))
        .and_then(|id| id.parse().ok())
        .unwrap_or_default()
}

async fn post_checkout(State(gw): State<Arc<Gateway>>, uri: Uri) -> Answer {
    let id = order_id(&uri);
    let charge = format!("/charge?order={id}");
    // The order and the payment at once; the first failure answers (and cancels the
    // other), so a payments call rejected locally fails the checkout at once.
    tokio::try_join!(
        gw.orders.get(&gw.meter, CHECKOUT, id),
        gw.payments.call(
            &gw.meter,
            CHECKOUT,
            Method::POST,
            &charge,
            Some(format!("checkout-{id}")),
        ),
    )?;
    let notify = format!("/notify?order={id}");
    let key = Some(format!("notify-{id}"));
    gw.notifications
        .call(&gw.meter, CHECKOUT, Method::POST, &notify, key)
        .await?;
    Ok("checked out")
}

async fn post_pay(State(gw): State<Arc<Gateway>>, uri: Uri) -> Answer {
    let id = order_id(&uri);
    let charge = format!("/charge?order={id}");
    let key = Some(format!("pay-{id}"));
    gw.payments
        .call(&gw.meter, PAY, Method::POST, &charge, key)
        .await?;
    Ok("paid")
}

/// The gateway's worker pool.
struct Pool {
    workers: Semaphore,
    meter: Arc<Meter>,
    shutdown: watch::Receiver<bool>,
}

/// Every request waits for one of the 64 workers, and the worker sees it through to the
/// end, even if the client has gone: a worker thread blocked on a downstream socket does
/// not notice that its client hung up. (Left to itself, an async server would drop the
/// work of a client that hung up, which hides how a thread pool drowns.)
async fn worker_pool(State(pool): State<Arc<Pool>>, request: Request, next: Next) -> Response {
    let arrived = Instant::now();
    let (answer, answered) = oneshot::channel();
    let mut shutdown = pool.shutdown.clone();
    tokio::spawn(async move {
        let work = async {
            let waiting = pool.meter.waiting_for_worker.enter();
            let Ok(_worker) = pool.workers.acquire().await else {
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            };
            drop(waiting);
            let _busy = pool.meter.workers_busy.enter();
            let mut response = next.run(request).await;
            // The time spent in the gateway, for the load generator's records.
            let took = arrived.elapsed().as_secs_f64() * 1000.0;
            if let Ok(timing) = HeaderValue::from_str(&format!("gateway;dur={took:.3}")) {
                response.headers_mut().insert(SERVER_TIMING, timing);
            }
            response
        };
        tokio::select! {
            response = work => {
                // The client may be gone: then nobody reads this.
                let _ = answer.send(response);
            }
            // The end of the run: stop whatever work is left.
            _ = shutdown.wait_for(|&stop| stop) => {}
        }
    });
    answered
        .await
        .unwrap_or_else(|_| StatusCode::SERVICE_UNAVAILABLE.into_response())
}

// ===== the seawall policies =====

/// The policies of the HTTP downstreams: `seawall::reqwest::policy(name)` builds them
/// with `ReqwestClassifier` (5xx, 408, 429 and transport errors are failures) and
/// `ReqwestReplay` (GETs are retried; POSTs only with an `Idempotency-Key`).
type HttpPolicy = Policy<ReqwestClassifier, ReqwestReplay>;

/// Payments: give each attempt 100 ms (it answers in 10), retry at most once and only
/// from the budget (by default 20 % of the calls plus 10 a second), open the breaker
/// after five failures in a row or half of the last 50 calls, and never have more than
/// 20 calls in flight, so that a payments outage costs the gateway at most 20 workers
/// for at most 300 ms each, and then nothing.
fn payments_policy(seed: u64) -> Result<HttpPolicy, ConfigError> {
    seawall::reqwest::policy("payments")
        .deadline(PAYMENTS_DEADLINE)
        .attempt_timeout(PAYMENTS_ATTEMPT_TIMEOUT)
        .retry(|retry| retry.max_attempts(2))
        .circuit_breaker(|breaker| {
            breaker
                .count_window(50)
                .minimum_calls(10)
                .failure_rate(0.5)
                .consecutive_failures(TRIP_AFTER_IN_A_ROW)
                .open_duration(OPEN_FOR)
                // The same open time after every trip (by default it doubles), so
                // that the recovery target is one open time.
                .open_duration_multiplier(1.0)
                // Each open time shortened by up to 10 %, at random (the default).
                .jitter(OPEN_JITTER)
                .seed(seed)
        })
        .bulkhead(|bulkhead| bulkhead.max_concurrent(PAYMENTS_BULKHEAD))
        .build()
}

/// The other HTTP downstreams stay healthy: generous limits, and the defaults for the
/// rest (three attempts from a budget, a breaker over the last 100 calls).
fn http_policy(name: &str) -> Result<HttpPolicy, ConfigError> {
    seawall::reqwest::policy(name)
        .deadline(OTHERS_DEADLINE)
        .attempt_timeout(OTHERS_ATTEMPT_TIMEOUT)
        .bulkhead(|bulkhead| bulkhead.max_concurrent(OTHERS_BULKHEAD))
        .build()
}

/// Orders, over gRPC: the status decides (`GrpcClassifier`), and every call may be sent
/// again (`BodyReplay`; `UNAVAILABLE` is retried).
fn orders_policy() -> Result<Policy<GrpcClassifier, BodyReplay>, ConfigError> {
    Policy::builder("orders")
        .classifier(GrpcClassifier::new())
        .replay(BodyReplay)
        .deadline(OTHERS_DEADLINE)
        .attempt_timeout(OTHERS_ATTEMPT_TIMEOUT)
        .bulkhead(|bulkhead| bulkhead.max_concurrent(OTHERS_BULKHEAD))
        .build()
}

// ===== the gateway, wired up =====

/// A running gateway.
struct GatewayServer {
    server: Server,
    shutdown: watch::Sender<bool>,
    /// Payments' breaker, in the seawall run.
    breaker: Option<BreakerHandle>,
}

async fn start_gateway(
    protected: bool,
    downstreams: &Downstreams,
    meter: &Arc<Meter>,
    seed: u64,
) -> Result<GatewayServer, BoxError> {
    // (`no_proxy`: talk to 127.0.0.1 directly, whatever proxy the environment names.)
    let client = reqwest::Client::builder().no_proxy().build()?;
    let base = |server: &Server| format!("http://{}", server.addr);
    let channel = Endpoint::from_shared(base(&downstreams.orders))?
        .connect()
        .await?;

    let policy = |name: &str| -> Result<Option<HttpPolicy>, ConfigError> {
        Ok(match (protected, name) {
            (false, _) => None,
            (true, "payments") => Some(payments_policy(seed)?),
            (true, _) => Some(http_policy(name)?),
        })
    };
    let http = |name: &'static str, server: &Server, policy: Option<HttpPolicy>| {
        let client = match policy {
            None => HttpClient::Plain(client.clone()),
            // The policy around the client, with `CountSends` in between.
            Some(policy) => {
                let protected = Box::new(policy.layer(CountSends(client.clone())));
                HttpClient::Protected(client.clone(), protected)
            }
        };
        HttpDownstream {
            name,
            base: base(server),
            client,
        }
    };
    let payments_policy = policy("payments")?;
    let breaker = payments_policy
        .as_ref()
        .and_then(|policy| policy.handle().circuit_breaker().cloned());
    let users = http("users", &downstreams.users, policy("users")?);
    let search = http("search", &downstreams.search, policy("search")?);
    let payments = http("payments", &downstreams.payments, payments_policy);
    let notifications = http(
        "notifications",
        &downstreams.notifications,
        policy("notifications")?,
    );

    let orders = if protected {
        // The channel behind the policy, in one layer (with `CountSends` in between).
        let into_body: IntoTonicBody = tonic::body::boxed;
        let channel = GrpcClientLayer::new(orders_policy()?, into_body).layer(CountSends(channel));
        OrdersDownstream::Protected(Box::new(OrdersClient::new(channel)))
    } else {
        OrdersDownstream::Plain(OrdersClient::new(channel))
    };

    let gateway = Arc::new(Gateway {
        meter: meter.clone(),
        users,
        search,
        orders,
        payments,
        notifications,
    });
    let (shutdown, stop_work) = watch::channel(false);
    let pool = Arc::new(Pool {
        workers: Semaphore::new(WORKERS),
        meter: meter.clone(),
        shutdown: stop_work,
    });
    let app = Router::new()
        .route("/users/{id}", get(get_user))
        .route("/search", get(get_search))
        .route("/orders/{id}", get(get_order))
        .route("/checkout", post(post_checkout))
        .route("/pay", post(post_pay))
        .layer(middleware::from_fn_with_state(pool, worker_pool))
        .with_state(gateway);
    Ok(GatewayServer {
        server: serve_axum(app).await?,
        shutdown,
        breaker,
    })
}

// ===== the load generator =====

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    /// `503` with `x-fast-fail`: rejected by the gateway's policy, unsent.
    FastFail,
    /// Any other error status from the gateway.
    Failed,
    /// No answer within the client's 2 s.
    Timeout,
}

/// One request of the load.
#[derive(Clone, Copy)]
struct Record {
    route: usize,
    /// When it was due, in seconds from the start of the run.
    at: f64,
    /// From sending to the end of the response, in milliseconds.
    latency_ms: f64,
    /// The part of it spent in the gateway (its `Server-Timing`), if it answered.
    gateway_ms: f64,
    outcome: Outcome,
}

impl Record {
    fn ok(&self) -> bool {
        self.outcome == Outcome::Ok
    }
}

async fn one_request(
    client: reqwest::Client,
    gateway: SocketAddr,
    route: usize,
    id: u64,
    at: f64,
    meter: Arc<Meter>,
) -> Record {
    let (method, url) = match route {
        USERS => (Method::GET, format!("http://{gateway}/users/{id}")),
        SEARCH => (Method::GET, format!("http://{gateway}/search?q=item{id}")),
        ORDERS => (Method::GET, format!("http://{gateway}/orders/{id}")),
        CHECKOUT => (
            Method::POST,
            format!("http://{gateway}/checkout?order={id}"),
        ),
        _ => (Method::POST, format!("http://{gateway}/pay?order={id}")),
    };
    meter.sent.fetch_add(1, Ordering::Relaxed);
    let sent = Instant::now();
    let mut gateway_ms = f64::NAN;
    let outcome = match client.request(method, url).send().await {
        Ok(response) => {
            let status = response.status();
            gateway_ms = response
                .headers()
                .get(SERVER_TIMING)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.split("dur=").nth(1))
                .and_then(|dur| dur.parse().ok())
                .unwrap_or(f64::NAN);
            let fast = response.headers().contains_key(FAST_FAIL_HEADER);
            match response.bytes().await {
                Ok(_) if status == StatusCode::OK => Outcome::Ok,
                Ok(_) if fast => Outcome::FastFail,
                Ok(_) => Outcome::Failed,
                Err(err) if err.is_timeout() => Outcome::Timeout,
                Err(_) => Outcome::Failed,
            }
        }
        Err(err) if err.is_timeout() => Outcome::Timeout,
        Err(_) => Outcome::Failed,
    };
    let latency_ms = sent.elapsed().as_secs_f64() * 1000.0;
    let group = usize::from(ROUTES[route].needs_payments);
    meter.done[group].fetch_add(1, Ordering::Relaxed);
    if outcome == Outcome::Ok {
        meter.ok[group].fetch_add(1, Ordering::Relaxed);
    }
    Record {
        route,
        at,
        latency_ms,
        gateway_ms,
        outcome,
    }
}

/// A route, at random, in proportion to the routes' weights.
fn pick_route(rng: &mut Rng) -> usize {
    let weights: u64 = ROUTES.iter().map(|route| route.weight).sum();
    let mut pick = rng.below(weights);
    for (i, route) in ROUTES.iter().enumerate() {
        if pick < route.weight {
            return i;
        }
        pick -= route.weight;
    }
    PAY
}

/// Open loop: `rate` requests per second from `start` for the script's length, each in
/// its own task, whatever becomes of the ones before; then wait for the last answers.
async fn generate(
    gateway: SocketAddr,
    options: &Options,
    script: &Script,
    start: Instant,
    meter: &Arc<Meter>,
) -> Result<Vec<Record>, BoxError> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(CLIENT_TIMEOUT)
        .build()?;
    let total = (script.total() * options.rate).round() as u64;
    let mut ticks = tokio::time::interval_at(start, Duration::from_secs_f64(1.0 / options.rate));
    // Late ticks fire at once: the number of requests per second stays the rate.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut rng = Rng(options.seed);
    let mut tasks = JoinSet::new();
    let mut records = Vec::with_capacity(total as usize);
    for n in 0..total {
        ticks.tick().await;
        let route = pick_route(&mut rng);
        let id = rng.below(100_000);
        let at = n as f64 / options.rate;
        tasks.spawn(one_request(
            client.clone(),
            gateway,
            route,
            id,
            at,
            meter.clone(),
        ));
        while let Some(done) = tasks.try_join_next() {
            records.push(done?);
        }
    }
    while let Some(done) = tasks.join_next().await {
        records.push(done?);
    }
    records.sort_by(|a, b| a.at.total_cmp(&b.at));
    Ok(records)
}

// ===== one run =====

struct Run {
    records: Vec<Record>,
    /// The payments breaker's transitions: when (seconds from the start), and to what.
    transitions: Vec<(f64, BreakerState)>,
    /// Every 50 ms: when, the gateway's busy workers, the calls in flight at payments.
    samples: Vec<(f64, u64, u64)>,
    calls: [[u64; 5]; 4],
    attempts: [[u64; 5]; 4],
    payments_peak: u64,
    workers_peak: u64,
    waiting_peak: u64,
}

/// The script: switch payments' faults at the phase boundaries.
async fn drive(
    script: Script,
    start: Instant,
    meter: Arc<Meter>,
    hang: FaultSwitch,
    fail: FaultSwitch,
) {
    let at = |phase: usize| start + Duration::from_secs_f64(script.start(phase));
    tokio::time::sleep_until(at(HANG)).await;
    meter.phase.store(HANG, Ordering::Relaxed);
    hang.enable();
    tokio::time::sleep_until(at(FAIL_FAST)).await;
    // Requests already hanging go on hanging (until payments' front door cuts them).
    hang.disable();
    fail.enable();
    meter.phase.store(FAIL_FAST, Ordering::Relaxed);
    tokio::time::sleep_until(at(RECOVERED)).await;
    fail.disable();
    meter.phase.store(RECOVERED, Ordering::Relaxed);
}

/// A line a second while the run goes; the breaker's transitions, when it is over.
async fn watch_run(
    label: &'static str,
    script: Script,
    start: Instant,
    meter: Arc<Meter>,
    breaker: Option<BreakerHandle>,
    mut stop: watch::Receiver<bool>,
) -> Vec<(f64, BreakerState)> {
    let mut subscription = breaker.as_ref().map(BreakerHandle::subscribe);
    let mut transitions = Vec::new();
    let mut drain = |transitions: &mut Vec<(f64, BreakerState)>| {
        while let Some(t) = subscription.as_mut().and_then(|s| s.try_recv()) {
            let at = t.at.saturating_duration_since(start).as_secs_f64();
            transitions.push((at, t.to));
        }
    };
    let mut ticks =
        tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let percent = |ok: u64, done: u64| {
        if done == 0 {
            "-".to_owned()
        } else {
            format!("{:.1}%", ok as f64 * 100.0 / done as f64)
        }
    };
    println!(
        "  run            t  phase     req/s  ok other    ok pay  \
         ok so far  at payments  workers  waiting  breaker"
    );
    let (mut sent, mut done, mut ok) = (0, [0; 2], [0; 2]);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|&stop| stop) => break,
        }
        drain(&mut transitions);
        let t = start.elapsed().as_secs_f64();
        let now_sent = load(&meter.sent);
        let now_done = meter.done.each_ref().map(load);
        let now_ok = meter.ok.each_ref().map(load);
        let state = breaker.as_ref().map_or("-", |b| b.state().as_str());
        println!(
            "  {label:<12}{:>2} s  {:<10}{:>5}  {:>8}  {:>8}  {:>9}  {:>11}  {:>4}/{WORKERS}  {:>7}  {state}",
            t.round(),
            script.phase_at(t),
            now_sent - sent,
            percent(now_ok[0] - ok[0], now_done[0] - done[0]),
            percent(now_ok[1] - ok[1], now_done[1] - done[1]),
            percent(now_ok.iter().sum(), now_done.iter().sum()),
            meter.payments_in_flight.now(),
            meter.workers_busy.now(),
            meter.waiting_for_worker.now(),
        );
        (sent, done, ok) = (now_sent, now_done, now_ok);
    }
    drain(&mut transitions);
    transitions
}

/// Every 50 ms, until told to stop: the gateway's busy workers and the calls in flight
/// at payments, for the plot.
async fn sample_gauges(
    start: Instant,
    meter: Arc<Meter>,
    mut stop: watch::Receiver<bool>,
) -> Vec<(f64, u64, u64)> {
    let mut samples = Vec::new();
    let mut ticks = tokio::time::interval_at(start, Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|&stop| stop) => break,
        }
        let t = start.elapsed().as_secs_f64();
        samples.push((t, meter.workers_busy.now(), meter.payments_in_flight.now()));
    }
    samples
}

async fn run(protected: bool, options: &Options, script: Script) -> Result<Run, BoxError> {
    let label = if protected { "seawall" } else { "unprotected" };
    let meter = Arc::new(Meter::default());
    let downstreams = start_downstreams(options.seed, &meter).await?;
    let gateway = start_gateway(protected, &downstreams, &meter, options.seed).await?;

    let start = Instant::now() + Duration::from_millis(50);
    let (stop_watch, stop) = watch::channel(false);
    let watcher = tokio::spawn(watch_run(
        label,
        script,
        start,
        meter.clone(),
        gateway.breaker.clone(),
        stop.clone(),
    ));
    let sampler = tokio::spawn(sample_gauges(start, meter.clone(), stop));
    let driver = tokio::spawn(drive(
        script,
        start,
        meter.clone(),
        downstreams.hang.clone(),
        downstreams.fail.clone(),
    ));
    let records = generate(gateway.server.addr, options, &script, start, &meter).await;
    let _ = stop_watch.send(true);
    let transitions = watcher.await?;
    let samples = sampler.await?;
    driver.abort();

    let _ = gateway.shutdown.send(true);
    gateway.server.stop().await;
    downstreams.stop().await;
    Ok(Run {
        records: records?,
        transitions,
        samples,
        calls: Meter::snapshot(&meter.calls),
        attempts: Meter::snapshot(&meter.attempts),
        payments_peak: meter.payments_in_flight.peak(),
        workers_peak: meter.workers_busy.peak(),
        waiting_peak: meter.waiting_for_worker.peak(),
    })
}

// ===== the figures =====

#[derive(Clone, Copy, Default)]
struct Summary {
    n: usize,
    ok: usize,
    p50: f64,
    p99: f64,
    max: f64,
}

impl Summary {
    /// Of the records' latencies at the client.
    fn of_records<'a>(records: impl Iterator<Item = &'a Record>) -> Self {
        Self::of(records.map(|r| (r.latency_ms, r.ok())))
    }

    /// Of (latency, success) pairs.
    fn of(samples: impl Iterator<Item = (f64, bool)>) -> Self {
        let mut latencies = Vec::new();
        let mut ok = 0;
        for (latency, success) in samples {
            latencies.push(latency);
            ok += usize::from(success);
        }
        latencies.sort_by(f64::total_cmp);
        // Nearest rank.
        let rank = |q: f64| {
            let i = ((q * latencies.len() as f64).ceil() as usize).max(1) - 1;
            latencies.get(i).copied().unwrap_or(f64::NAN)
        };
        Summary {
            n: latencies.len(),
            ok,
            p50: rank(0.50),
            p99: rank(0.99),
            max: latencies.last().copied().unwrap_or(f64::NAN),
        }
    }

    fn success(&self) -> f64 {
        if self.n == 0 {
            f64::NAN
        } else {
            self.ok as f64 * 100.0 / self.n as f64
        }
    }
}

impl Run {
    fn summary(&self, route: usize, from: f64, to: f64) -> Summary {
        Summary::of_records(
            self.records
                .iter()
                .filter(|r| r.route == route && r.at >= from && r.at < to),
        )
    }

    /// Downstream attempts per call, over the given phases.
    fn amplification(&self, route: usize, phases: &[usize]) -> f64 {
        let calls: u64 = phases.iter().map(|&p| self.calls[p][route]).sum();
        let attempts: u64 = phases.iter().map(|&p| self.attempts[p][route]).sum();
        if calls == 0 {
            f64::NAN
        } else {
            attempts as f64 / calls as f64
        }
    }

    /// From the fault's start to the breaker's first opening.
    fn detection(&self, script: &Script) -> Option<f64> {
        let (onset, _) = script.fault();
        self.transitions
            .iter()
            .find(|(at, to)| *at >= onset && *to == BreakerState::Open)
            .map(|(at, _)| at - onset)
    }

    /// From the fault's end to the first successful payments-route request from which
    /// on every 250 ms of payments-route requests is at least 99 % successful; `None` if
    /// that never happens before the run ends.
    fn recovery(&self, script: &Script) -> Option<f64> {
        let (_, end) = script.fault();
        let after: Vec<&Record> = self
            .records
            .iter()
            .filter(|r| ROUTES[r.route].needs_payments && r.at >= end)
            .collect();
        let buckets = ((script.total() - end) / BUCKET).ceil() as usize;
        let bucket_of = |r: &Record| (((r.at - end) / BUCKET) as usize).min(buckets - 1);
        let mut counts = vec![(0usize, 0usize); buckets];
        for r in &after {
            let b = &mut counts[bucket_of(r)];
            b.0 += 1;
            b.1 += usize::from(r.ok());
        }
        let bad = |&(n, ok): &(usize, usize)| n > 0 && (ok as f64) < 0.99 * n as f64;
        let first_ok_after = |t: f64| {
            after
                .iter()
                .find(|r| r.at > t && r.ok())
                .map(|r| (r.at - end).max(0.0))
        };
        match counts.iter().rposition(bad) {
            None => first_ok_after(end - 1.0),
            Some(last) if last + 1 == buckets => None,
            Some(last) => {
                let last_failure = after
                    .iter()
                    .filter(|r| bucket_of(r) <= last && !r.ok())
                    .map(|r| r.at)
                    .fold(end, f64::max);
                first_ok_after(last_failure)
            }
        }
    }

    /// The fast failures while payments was down: their latency at the client, and in
    /// the gateway.
    fn fast_failures(&self, script: &Script) -> (Summary, Summary) {
        let (from, to) = script.fault();
        let fast = || {
            self.records.iter().filter(move |r| {
                ROUTES[r.route].needs_payments
                    && r.outcome == Outcome::FastFail
                    && r.at >= from
                    && r.at < to
            })
        };
        (
            Summary::of_records(fast()),
            Summary::of(fast().map(|r| (r.gateway_ms, false))),
        )
    }
}

/// Milliseconds, with the digits that matter.
fn ms(v: f64) -> String {
    if v.is_nan() {
        "-".to_owned()
    } else if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

fn seconds(v: Option<f64>) -> String {
    match v {
        None => "never".to_owned(),
        Some(v) if v < 1.0 => format!("{:.0} ms", v * 1000.0),
        Some(v) => format!("{v:.2} s"),
    }
}

fn percent(v: f64) -> String {
    if v.is_nan() {
        "-".to_owned()
    } else {
        format!("{v:.2}%")
    }
}

fn ratio(v: f64) -> String {
    if v.is_nan() {
        "-".to_owned()
    } else {
        format!("{v:.2}x")
    }
}

fn print_routes(runs: &[Run; 2], title: &str, from: f64, to: f64, phases: &[usize]) {
    println!("\n{title}");
    let groups = format!(
        "{:<25}{:^18}  {:^16}  {:^16}  {:^16}  {:^16}",
        "", "success", "p50 ms", "p99 ms", "max ms", "attempts/call"
    );
    println!("{}", groups.trim_end());
    let pair = ["unprot.", "seawall"];
    println!(
        "{:<25}{:>9}{:>9}  {:>8}{:>8}  {:>8}{:>8}  {:>8}{:>8}  {:>8}{:>8}",
        "route",
        pair[0],
        pair[1],
        pair[0],
        pair[1],
        pair[0],
        pair[1],
        pair[0],
        pair[1],
        pair[0],
        pair[1]
    );
    for (i, route) in ROUTES.iter().enumerate() {
        let [a, b] = [&runs[0], &runs[1]].map(|run| run.summary(i, from, to));
        let [x, y] = [&runs[0], &runs[1]].map(|run| run.amplification(i, phases));
        println!(
            "{:<25}{:>9}{:>9}  {:>8}{:>8}  {:>8}{:>8}  {:>8}{:>8}  {:>8}{:>8}",
            route.name,
            percent(a.success()),
            percent(b.success()),
            ms(a.p50),
            ms(b.p50),
            ms(a.p99),
            ms(b.p99),
            ms(a.max),
            ms(b.max),
            ratio(x),
            ratio(y),
        );
    }
}

fn print_payments(runs: &[Run; 2], script: &Script) {
    println!(
        "\nPayments and the gateway{:>26}{:>14}",
        "unprotected", "seawall"
    );
    let row = |what: &str, f: &dyn Fn(&Run) -> String| {
        println!("  {what:<46}{:>14}{:>14}", f(&runs[0]), f(&runs[1]));
    };
    let fault = [HANG, FAIL_FAST];
    row("calls in flight at payments, peak", &|r| {
        r.payments_peak.to_string()
    });
    row("gateway workers busy, peak (of 64)", &|r| {
        r.workers_peak.to_string()
    });
    row("requests waiting for a worker, peak", &|r| {
        r.waiting_peak.to_string()
    });
    row("payments attempts per call, during the fault", &|r| {
        let (calls, attempts) = [CHECKOUT, PAY].iter().fold((0, 0), |(c, a), &route| {
            let sum = |m: &[[u64; 5]; 4]| fault.iter().map(|&p| m[p][route]).sum::<u64>();
            (c + sum(&r.calls), a + sum(&r.attempts))
        });
        ratio(attempts as f64 / calls.max(1) as f64)
    });
    row("time to detect (fault start -> breaker open)", &|r| {
        seconds(r.detection(script))
    });
    row("time to recover (fault end -> back to normal)", &|r| {
        seconds(r.recovery(script))
    });
    row("fast failures while down: how many", &|r| {
        r.fast_failures(script).0.n.to_string()
    });
    let p50_p99 = |s: Summary| {
        if s.n == 0 {
            "-".to_owned()
        } else {
            format!("{} / {}", ms(s.p50), ms(s.p99))
        }
    };
    row("  p50 / p99 ms at the client", &|r| {
        p50_p99(r.fast_failures(script).0)
    });
    row("  p50 / p99 ms in the gateway", &|r| {
        p50_p99(r.fast_failures(script).1)
    });
}

struct Target {
    what: String,
    pass: bool,
    detail: String,
}

fn targets(run: &Run, script: &Script) -> Vec<Target> {
    let (from, to) = script.fault();
    let others = [USERS, SEARCH, ORDERS];
    let mut targets = Vec::new();

    let success: Vec<(usize, f64)> = others
        .iter()
        .map(|&i| (i, run.summary(i, from, to).success()))
        .collect();
    targets.push(Target {
        what: "routes without payments: >= 99.9% success during the fault".to_owned(),
        pass: success.iter().all(|(_, s)| *s >= 99.9),
        detail: success
            .iter()
            .map(|(i, s)| format!("{} {}", ROUTES[*i].key, percent(*s)))
            .collect::<Vec<_>>()
            .join(", "),
    });

    // The healthy phase without its first second, while connections warm up.
    let p99: Vec<(usize, f64, f64)> = others
        .iter()
        .map(|&i| {
            let healthy = run.summary(i, 1.0_f64.min(from / 2.0), from).p99;
            (i, healthy, run.summary(i, from, to).p99)
        })
        .collect();
    targets.push(Target {
        what: "routes without payments: p99 during the fault <= 1.2x healthy".to_owned(),
        pass: p99.iter().all(|(_, h, f)| *f <= 1.2 * h),
        detail: p99
            .iter()
            .map(|(i, h, f)| format!("{} {} ms (healthy {})", ROUTES[*i].key, ms(*f), ms(*h)))
            .collect::<Vec<_>>()
            .join(", "),
    });

    let (fast, in_gateway) = run.fast_failures(script);
    targets.push(Target {
        what: "payments routes fail fast while it is down: p99 < 1 ms".to_owned(),
        pass: fast.n > 0 && fast.p99 < 1.0,
        detail: format!(
            "p99 {} ms over {} fast failures (in the gateway {} ms)",
            ms(fast.p99),
            fast.n,
            ms(in_gateway.p99)
        ),
    });

    let worst = (0..ROUTES.len())
        .flat_map(|i| {
            [
                (
                    i,
                    "whole run",
                    run.amplification(i, &[HEALTHY, HANG, FAIL_FAST, RECOVERED]),
                ),
                (i, "fault", run.amplification(i, &[HANG, FAIL_FAST])),
            ]
        })
        .filter(|(_, _, a)| !a.is_nan())
        .max_by(|a, b| a.2.total_cmp(&b.2));
    targets.push(Target {
        what: "amplification <= 1.2x (attempts per call, every route)".to_owned(),
        pass: worst.is_some_and(|(_, _, a)| a <= 1.2),
        detail: worst.map_or("-".to_owned(), |(i, when, a)| {
            format!("at most {} ({}, {})", ratio(a), ROUTES[i].key, when)
        }),
    });

    let detection = run.detection(script);
    targets.push(Target {
        what: "time to detect <= 1 s".to_owned(),
        pass: detection.is_some_and(|d| d <= 1.0),
        detail: seconds(detection),
    });

    // (The jitter only ever shortens the open time.)
    let bound = OPEN_FOR.as_secs_f64() + PAYMENTS_ATTEMPT_TIMEOUT.as_secs_f64();
    let recovery = run.recovery(script);
    targets.push(Target {
        what: format!(
            "time to recover <= open duration + one probe ({})",
            seconds(Some(bound))
        ),
        pass: recovery.is_some_and(|r| r <= bound),
        detail: seconds(recovery),
    });
    targets
}

// ===== the plot =====

/// One run's series per 250 ms bucket: success rate and p99 for the routes without and
/// with payments, and the peaks of the gateway's busy workers and the calls in flight
/// at payments.
struct Series {
    success: [Vec<Option<f64>>; 2],
    p99: [Vec<Option<f64>>; 2],
    gauges: [Vec<Option<f64>>; 2],
}

fn series(run: &Run, script: &Script) -> Series {
    let buckets = (script.total() / BUCKET).ceil() as usize;
    let bucket_of = |t: f64| ((t / BUCKET) as usize).min(buckets - 1);
    let mut groups: [Vec<Vec<&Record>>; 2] = [vec![Vec::new(); buckets], vec![Vec::new(); buckets]];
    for r in &run.records {
        groups[usize::from(ROUTES[r.route].needs_payments)][bucket_of(r.at)].push(r);
    }
    let per = |f: &dyn Fn(&Summary) -> f64| {
        groups.each_ref().map(|group| {
            group
                .iter()
                .map(|records| {
                    let s = Summary::of_records(records.iter().copied());
                    (s.n > 0).then(|| f(&s))
                })
                .collect()
        })
    };
    let mut gauges = [vec![None; buckets], vec![None; buckets]];
    for &(t, workers, payments) in run.samples.iter().filter(|s| s.0 < script.total()) {
        for (series, value) in gauges.iter_mut().zip([workers, payments]) {
            let peak = &mut series[bucket_of(t)];
            *peak = Some(peak.unwrap_or(0.0_f64).max(value as f64));
        }
    }
    Series {
        success: per(&|s| s.success()),
        p99: per(&|s| s.p99),
        gauges,
    }
}

/// The breaker's open and half-open periods, from its transitions.
fn breaker_periods(run: &Run, total: f64) -> Vec<(f64, f64, BreakerState)> {
    let mut periods = Vec::new();
    for (i, &(at, state)) in run.transitions.iter().enumerate() {
        let until = run.transitions.get(i + 1).map_or(total, |next| next.0);
        if matches!(
            state,
            BreakerState::Open | BreakerState::ForcedOpen | BreakerState::HalfOpen
        ) {
            periods.push((at, until.min(total), state));
        }
    }
    periods
}

/// The plot's rows: what each shows and how its values map to heights.
#[derive(Clone, Copy, PartialEq)]
enum Row {
    Success,
    P99,
    Gauges,
}

impl Row {
    fn title(self) -> &'static str {
        match self {
            Row::Success => "success %",
            Row::P99 => "p99 latency, ms",
            Row::Gauges => "in use (peak)",
        }
    }

    fn ticks(self) -> &'static [(f64, &'static str)] {
        match self {
            Row::Success => &[
                (0.0, "0"),
                (25.0, "25"),
                (50.0, "50"),
                (75.0, "75"),
                (100.0, "100"),
            ],
            Row::P99 => &[
                (0.1, "0.1"),
                (1.0, "1"),
                (10.0, "10"),
                (100.0, "100"),
                (1000.0, "1000"),
            ],
            Row::Gauges => &[
                (0.0, "0"),
                (16.0, "16"),
                (32.0, "32"),
                (48.0, "48"),
                (64.0, "64"),
            ],
        }
    }

    /// From the bottom (0) to the top (1) of the panel.
    fn height(self, v: f64) -> f64 {
        let h = match self {
            Row::Success => v / 100.0,
            // Logarithmic, from 0.1 ms to 3 s.
            Row::P99 => (v.max(0.1).log10() + 1.0) / (3000_f64.log10() + 1.0),
            Row::Gauges => v / WORKERS as f64,
        };
        h.clamp(0.0, 1.0)
    }
}

/// The colours of the routes without payments, the payments routes, the busy workers
/// and the calls in flight at payments.
const COLORS: [&str; 4] = ["#1f77b4", "#e4572e", "#333333", "#8e44ad"];
const OPEN_FILL: (&str, f64) = ("#d62728", 0.16);
const HALF_OPEN_FILL: (&str, f64) = ("#f5a623", 0.9);
const DOWN_FILL: (&str, f64) = ("#ececec", 1.0);

fn polyline(
    s: &mut String,
    points: &[Option<f64>],
    color: &str,
    dashed: bool,
    xy: impl Fn(usize, f64) -> (f64, f64),
) {
    let dash = if dashed {
        r#" stroke-dasharray="5 3""#
    } else {
        ""
    };
    let mut segment = String::new();
    let mut flush = |segment: &mut String| {
        if !segment.is_empty() {
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.8"{dash} points="{}"/>"#,
                segment.trim_end()
            );
            segment.clear();
        }
    };
    for (b, v) in points.iter().enumerate() {
        match v {
            Some(v) => {
                let (x, y) = xy(b, *v);
                let _ = write!(segment, "{x:.1},{y:.1} ");
            }
            // No requests in the bucket: a gap.
            None => flush(&mut segment),
        }
    }
    flush(&mut segment);
}

fn plot(runs: &[Run; 2], script: &Script, options: &Options) -> String {
    const W: f64 = 1100.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 20.0;
    const GAP: f64 = 50.0;
    const TOP: f64 = 95.0;
    const PH: f64 = 170.0;
    const VGAP: f64 = 55.0;
    const ROWS: [Row; 3] = [Row::Success, Row::P99, Row::Gauges];
    let h = TOP + ROWS.len() as f64 * (PH + VGAP) + 30.0;
    let pw = (W - LEFT - RIGHT - GAP) / 2.0;
    let total = script.total();

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="Helvetica, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="26" text-anchor="middle" font-size="17" font-weight="bold">Payments hangs, then fails fast: the gateway without and with seawall</text>"#,
        W / 2.0
    );
    let _ = writeln!(
        s,
        r##"<text x="{}" y="46" text-anchor="middle" fill="#555">{} req/s, open loop, seed {}; per 250 ms of arrivals; a client timeout counts as 2 s</text>"##,
        W / 2.0,
        options.rate,
        options.seed
    );

    for (col, run) in runs.iter().enumerate() {
        let px = LEFT + col as f64 * (pw + GAP);
        let x_of = |t: f64| px + pw * (t / total).clamp(0.0, 1.0);
        let data = series(run, script);
        let heading = if col == 0 {
            "unprotected: plain clients, no timeouts, 3 tries"
        } else {
            "seawall: a Policy per downstream"
        };
        let _ = writeln!(
            s,
            r#"<text x="{}" y="72" text-anchor="middle" font-size="15" font-weight="bold">{heading}</text>"#,
            px + pw / 2.0
        );
        for (i, &row) in ROWS.iter().enumerate() {
            let py = TOP + i as f64 * (PH + VGAP);
            let y_of = |v: f64| py + PH * (1.0 - row.height(v));
            let rect = |s: &mut String, from: f64, to: f64, (fill, opacity): (&str, f64)| {
                let width = (x_of(to) - x_of(from)).max(1.5);
                let _ = writeln!(
                    s,
                    r#"<rect x="{:.1}" y="{py}" width="{width:.1}" height="{PH}" fill="{fill}" fill-opacity="{opacity}"/>"#,
                    x_of(from)
                );
            };
            let (fault_from, fault_to) = script.fault();
            rect(&mut s, fault_from, fault_to, DOWN_FILL);
            for (from, to, state) in breaker_periods(run, total) {
                let fill = if state == BreakerState::HalfOpen {
                    HALF_OPEN_FILL
                } else {
                    OPEN_FILL
                };
                rect(&mut s, from, to, fill);
            }
            for &(v, label) in row.ticks() {
                let y = y_of(v);
                let _ = writeln!(
                    s,
                    r##"<line x1="{px}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#d8d8d8"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#444">{label}</text>"##,
                    px + pw,
                    px - 6.0,
                    y + 4.0
                );
            }
            if col == 0 {
                let (x, y) = (px - 46.0, py + PH / 2.0);
                let _ = writeln!(
                    s,
                    r#"<text x="{x}" y="{y}" text-anchor="middle" transform="rotate(-90 {x} {y})" font-size="13">{}</text>"#,
                    row.title()
                );
            }
            // The phases: dashed lines between them, names above.
            for phase in 0..4 {
                let (from, to) = (script.start(phase), script.start(phase + 1));
                if phase > 0 {
                    let x = x_of(from);
                    let _ = writeln!(
                        s,
                        r##"<line x1="{x:.1}" x2="{x:.1}" y1="{py}" y2="{}" stroke="#888" stroke-dasharray="4 3"/>"##,
                        py + PH
                    );
                }
                let label = ["healthy", "payments hangs", "fails fast", "recovered"][phase];
                let _ = writeln!(
                    s,
                    r##"<text x="{:.1}" y="{}" text-anchor="middle" fill="#555">{label}</text>"##,
                    (x_of(from) + x_of(to)) / 2.0,
                    py - 6.0
                );
            }
            let xy = |b: usize, v: f64| (x_of((b as f64 + 0.5) * BUCKET), y_of(v));
            let (lines, colors, dashed) = match row {
                Row::Success => (&data.success, [COLORS[0], COLORS[1]], false),
                Row::P99 => (&data.p99, [COLORS[0], COLORS[1]], false),
                Row::Gauges => (&data.gauges, [COLORS[2], COLORS[3]], true),
            };
            for (points, color) in lines.iter().zip(colors) {
                polyline(&mut s, points, color, dashed && color == COLORS[3], xy);
            }
            let _ = writeln!(
                s,
                r##"<rect x="{px}" y="{py}" width="{pw:.1}" height="{PH}" fill="none" stroke="#333"/>"##
            );
            let step = if total > 10.0 { 5.0 } else { 1.0 };
            let mut t = 0.0;
            while t <= total + 1e-9 {
                let x = x_of(t);
                let _ = writeln!(
                    s,
                    r##"<line x1="{x:.1}" x2="{x:.1}" y1="{}" y2="{}" stroke="#333"/><text x="{x:.1}" y="{}" text-anchor="middle" fill="#444">{t:.0} s</text>"##,
                    py + PH,
                    py + PH + 4.0,
                    py + PH + 17.0
                );
                t += step;
            }
        }
    }

    // The legend, in two lines: the series, then the shadings.
    let mut x = LEFT;
    let mut y = h - 38.0;
    let series = [
        (
            COLORS[0],
            false,
            "routes without payments (users, search, orders)",
        ),
        (COLORS[1], false, "payments routes (checkout, pay)"),
        (COLORS[2], false, "busy gateway workers (of 64)"),
        (COLORS[3], true, "calls in flight at payments"),
    ];
    for (color, dashed, label) in series {
        let dash = if dashed {
            r#" stroke-dasharray="5 3""#
        } else {
            ""
        };
        let _ = writeln!(
            s,
            r#"<line x1="{x:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="2.5"{dash}/><text x="{:.1}" y="{y}">{label}</text>"#,
            x + 22.0,
            y - 4.0,
            y - 4.0,
            x + 28.0
        );
        x += 44.0 + 6.4 * label.len() as f64;
    }
    (x, y) = (LEFT, h - 14.0);
    for ((fill, opacity), label) in [
        (DOWN_FILL, "payments down (hang, then fail fast)"),
        (OPEN_FILL, "seawall's payments breaker open"),
        (HALF_OPEN_FILL, "breaker half-open (one probe)"),
    ] {
        let _ = writeln!(
            s,
            r##"<rect x="{x:.1}" y="{:.1}" width="22" height="12" fill="{fill}" fill-opacity="{opacity}" stroke="#999"/><text x="{:.1}" y="{y}">{label}</text>"##,
            y - 10.0,
            x + 28.0
        );
        x += 44.0 + 6.4 * label.len() as f64;
    }
    let _ = writeln!(s, "</svg>");
    s
}

// ===== main =====

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let script = Script::new(options.quick);
    let began = Instant::now();
    println!(
        "seawall outage demo: a gateway in front of users, search, orders (gRPC), payments \
         and notifications, all on 127.0.0.1"
    );
    println!(
        "  {} req/s open loop (seed {}), each run {} s: healthy {} s | payments hangs {} s \
         | fails fast {} s | recovered {} s",
        options.rate,
        options.seed,
        script.total(),
        script.phases[HEALTHY],
        script.phases[HANG],
        script.phases[FAIL_FAST],
        script.phases[RECOVERED],
    );

    println!("\nrun 1 of 2: unprotected");
    println!(
        "  every downstream: a plain client, no timeout, {NAIVE_TRIES} tries on an error or \
         a 5xx; the gateway has {WORKERS} workers"
    );
    let unprotected = run(false, &options, script).await?;
    println!("\nrun 2 of 2: seawall");
    println!(
        "  payments: {PAYMENTS_DEADLINE:?} deadline, {PAYMENTS_ATTEMPT_TIMEOUT:?} per \
         attempt, 2 attempts from a retry budget, breaker ({TRIP_AFTER_IN_A_ROW} failures \
         in a row or half of 50 calls; open {OPEN_FOR:?}), bulkhead {PAYMENTS_BULKHEAD}"
    );
    println!(
        "  the others: {OTHERS_DEADLINE:?} deadline, {OTHERS_ATTEMPT_TIMEOUT:?} per attempt, \
         default retries and breaker, bulkhead {OTHERS_BULKHEAD}"
    );
    let protected = run(true, &options, script).await?;
    let runs = [unprotected, protected];

    let (from, to) = script.fault();
    println!(
        "\nLatency: of every request, failed ones included, at the load generator (a client \
         timeout counts as its 2 s).\nattempts/call: requests the downstreams received, per \
         call the gateway made to them (below 1: calls failed fast, unsent)."
    );
    print_routes(
        &runs,
        &format!("Per route, whole run ({} s)", script.total()),
        0.0,
        script.total(),
        &[HEALTHY, HANG, FAIL_FAST, RECOVERED],
    );
    print_routes(
        &runs,
        &format!(
            "Per route, while payments was down ({from:.0} s to {to:.0} s: hang and fail fast)"
        ),
        from,
        to,
        &[HANG, FAIL_FAST],
    );
    print_payments(&runs, &script);

    println!("\nTargets (the seawall run)");
    let targets = targets(&runs[1], &script);
    for target in &targets {
        println!(
            "  [{}] {:<62} {}",
            if target.pass { "PASS" } else { "FAIL" },
            target.what,
            target.detail
        );
    }

    if let Some(dir) = options.svg.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&options.svg, plot(&runs, &script, &options))?;
    println!("\nplot: {}", options.svg.display());
    println!("took {:.1} s", began.elapsed().as_secs_f64());

    let failed = targets.iter().filter(|t| !t.pass).count();
    if failed > 0 && options.strict {
        eprintln!("{failed} target(s) failed (--strict)");
        std::process::exit(1);
    }
    Ok(())
}
