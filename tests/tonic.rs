//! A tonic `Channel` behind a policy, called through a generated client, against real
//! tonic servers on 127.0.0.1: gRPC statuses in the response headers (trailers-only)
//! and in the trailers after a stream, server pushback, deadlines that travel as
//! `grpc-timeout`, and what a generated client sees when the breaker is open.
//!
//! The servers follow a script, one reply per call, so every count is exact. No
//! assertion reads the clock but the two pushback tests, which check a lower bound that
//! the client's timer guarantees; the real time spent is a few 5 ms backoffs, two
//! 300 ms pushbacks and one 200 ms attempt timeout.
#![cfg(all(feature = "policy", feature = "http"))]

#[path = "../examples/proto/orders.rs"]
// The generated items are `pub`, in a module that is not.
#[allow(unreachable_pub)]
mod orders;

use std::collections::VecDeque;
use std::error::Error as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt};
use http::HeaderValue;
use seawall::bulkhead::{BulkheadLayer, OnResponse};
use seawall::circuit_breaker::State;
use seawall::error::{is_rejection, CircuitOpen, Elapsed};
use seawall::grpc::{GrpcClassifier, GrpcClientLayer, GrpcReplay, GRPC_RETRY_PUSHBACK_MS};
use seawall::http::deadline::parse_grpc_timeout;
use seawall::http::ShedLoadLayer;
use seawall::policy::{Policy, PolicyBuilder};
use seawall::retry::backoff::ConstantBackoff;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Semaphore};
use tokio::time::Instant;
use tonic::codegen::tokio_stream::wrappers::TcpListenerStream;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Request, Response, Status};
use tower::Layer;

use orders::orders_client::OrdersClient;
use orders::orders_server::{Orders, OrdersServer};
use orders::{GetOrder, Line, Order};

// ===== the server =====

/// What the server does with one call.
#[derive(Debug, Clone, Copy)]
enum Reply {
    Ok,
    /// An error status: trailers-only for `Get`; for `Lines`, in the trailers after two
    /// lines.
    Fail(Code),
    /// An error status with a `grpc-retry-pushback-ms` of this many milliseconds.
    PushBack(Code, u64),
    /// Never answer.
    Hang,
    /// Answer once the test opens the gate.
    Wait,
}

/// The server's script and what it saw.
struct Downstream {
    script: Mutex<VecDeque<Reply>>,
    /// The reply once the script has run out.
    then: Mutex<Option<Reply>>,
    received: AtomicU32,
    /// The `grpc-timeout` of each call, as the handler saw it.
    timeouts: Mutex<Vec<Option<Duration>>>,
    /// When each call arrived.
    arrivals: Mutex<Vec<Instant>>,
    /// What `Reply::Wait` waits for.
    gate: Semaphore,
}

impl Downstream {
    fn scripted(replies: impl IntoIterator<Item = Reply>) -> Arc<Self> {
        Arc::new(Self {
            script: Mutex::new(replies.into_iter().collect()),
            then: Mutex::new(None),
            received: AtomicU32::new(0),
            timeouts: Mutex::new(Vec::new()),
            arrivals: Mutex::new(Vec::new()),
            gate: Semaphore::new(0),
        })
    }

    fn always(reply: Reply) -> Arc<Self> {
        let downstream = Self::scripted([]);
        *downstream.then.lock().unwrap() = Some(reply);
        downstream
    }

    fn received(&self) -> u32 {
        self.received.load(Ordering::SeqCst)
    }

    fn timeouts(&self) -> Vec<Option<Duration>> {
        self.timeouts.lock().unwrap().clone()
    }

    fn arrivals(&self) -> Vec<Instant> {
        self.arrivals.lock().unwrap().clone()
    }

    /// Note the call and take its reply.
    fn next<T>(&self, request: &Request<T>) -> Reply {
        self.received.fetch_add(1, Ordering::SeqCst);
        self.arrivals.lock().unwrap().push(Instant::now());
        let timeout = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|value| HeaderValue::from_bytes(value.as_bytes()).ok())
            .and_then(|value| parse_grpc_timeout(&value));
        self.timeouts.lock().unwrap().push(timeout);
        let scripted = self.script.lock().unwrap().pop_front();
        scripted.or(*self.then.lock().unwrap()).unwrap_or(Reply::Ok)
    }
}

fn status(code: Code, pushback_ms: Option<u64>) -> Status {
    let mut metadata = MetadataMap::new();
    if let Some(ms) = pushback_ms {
        metadata.insert(GRPC_RETRY_PUSHBACK_MS, MetadataValue::from(ms));
    }
    Status::with_metadata(code, "scripted failure", metadata)
}

#[tonic::async_trait]
impl Orders for Arc<Downstream> {
    async fn get(&self, request: Request<GetOrder>) -> Result<Response<Order>, Status> {
        let id = request.get_ref().id;
        match self.next(&request) {
            Reply::Ok => Ok(Response::new(Order {
                id,
                status: "shipped".to_owned(),
            })),
            Reply::Fail(code) => Err(status(code, None)),
            Reply::PushBack(code, ms) => Err(status(code, Some(ms))),
            Reply::Hang => std::future::pending().await,
            Reply::Wait => {
                self.gate.acquire().await.unwrap().forget();
                Ok(Response::new(Order {
                    id,
                    status: "shipped".to_owned(),
                }))
            }
        }
    }

    type LinesStream = BoxStream<'static, Result<Line, Status>>;

    async fn lines(
        &self,
        request: Request<GetOrder>,
    ) -> Result<Response<Self::LinesStream>, Status> {
        let end = match self.next(&request) {
            Reply::Ok => None,
            Reply::Fail(code) => Some(status(code, None)),
            Reply::PushBack(code, ms) => Some(status(code, Some(ms))),
            Reply::Hang | Reply::Wait => return std::future::pending().await,
        };
        let lines = ["apples", "pears"].map(|sku| Line {
            sku: sku.to_owned(),
            quantity: 1,
        });
        // Two messages, then the status: in the trailers.
        let stream = stream::iter(lines)
            .map(Ok)
            .chain(stream::iter(end.map(Err)));
        Ok(Response::new(stream.boxed()))
    }
}

/// A tonic server on 127.0.0.1, stopped when dropped.
struct TestServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    async fn start(downstream: Arc<Downstream>) -> Self {
        Self::start_with(downstream, None).await
    }

    /// A server that sheds load with seawall's `ShedLoadLayer`, if one is given.
    async fn start_with(downstream: Arc<Downstream>, shed: Option<ShedLoadLayer>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, signal) = oneshot::channel::<()>();
        let server = Server::builder()
            .layer(tower::util::option_layer(shed))
            .add_service(OrdersServer::new(downstream))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = signal.await;
            });
        let task = tokio::spawn(async move {
            server.await.unwrap();
        });
        Self {
            addr,
            shutdown: Some(shutdown),
            task,
        }
    }

    async fn channel(&self) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.task.abort();
    }
}

// ===== the client =====

/// The policy of every test but what each one changes: gRPC classification, every
/// method of `Orders` declared idempotent (as a gRPC retry policy would list them),
/// short constant backoffs, no bulkhead.
fn policy() -> PolicyBuilder<GrpcClassifier, GrpcReplay, OnResponse, ConstantBackoff> {
    default_policy().replay(GrpcReplay::new().idempotent_methods(["/orders.Orders/"]))
}

/// The same with the replay that comes with the gRPC classifier: no method declared
/// idempotent.
fn default_policy() -> PolicyBuilder<GrpcClassifier, GrpcReplay, OnResponse, ConstantBackoff> {
    Policy::builder("orders")
        .classifier(GrpcClassifier::new())
        .deadline(Duration::from_secs(5))
        .retry(|retry| {
            retry
                .max_attempts(3)
                .backoff(ConstantBackoff::new(Duration::from_millis(5)))
        })
        .circuit_breaker(|breaker| breaker.consecutive_failures(100))
        .without_bulkhead()
}

fn get(id: u64) -> GetOrder {
    GetOrder { id }
}

// ===== the tests =====

#[tokio::test]
async fn unavailable_in_the_headers_is_retried_and_counted_by_the_breaker() {
    let downstream = Downstream::scripted([
        Reply::Fail(Code::Unavailable),
        Reply::Fail(Code::Unavailable),
    ]);
    let server = TestServer::start(downstream.clone()).await;
    let policy = policy().build().unwrap();
    let handle = policy.handle();

    // The one line.
    let mut orders = OrdersClient::new(
        GrpcClientLayer::new(policy, tonic::body::boxed).layer(server.channel().await),
    );

    let order = orders.get(get(7)).await.unwrap().into_inner();
    assert_eq!((order.id, order.status.as_str()), (7, "shipped"));
    assert_eq!(
        downstream.received(),
        3,
        "two trailers-only UNAVAILABLE, retried"
    );
    let breaker = handle.circuit_breaker().unwrap().snapshot();
    assert_eq!((breaker.calls, breaker.failures), (3, 2));
    assert_eq!(handle.budget().unwrap().snapshot().withdrawals, 2);
}

#[tokio::test]
async fn unavailable_in_the_trailers_after_a_stream_counts_at_the_end_and_is_not_retried() {
    let downstream = Downstream::scripted([Reply::Fail(Code::Unavailable)]);
    let server = TestServer::start(downstream.clone()).await;
    let policy = policy().build().unwrap();
    let breaker = policy.handle().circuit_breaker().unwrap().clone();
    let mut orders = OrdersClient::new(
        GrpcClientLayer::new(policy, tonic::body::boxed).layer(server.channel().await),
    );

    let mut lines = orders.lines(get(7)).await.unwrap().into_inner();
    // The headers said nothing: the call is not counted yet.
    assert_eq!(breaker.snapshot().calls, 0);
    let mut skus = Vec::new();
    let status = loop {
        match lines.message().await {
            Ok(Some(line)) => skus.push(line.sku),
            Ok(None) => panic!("the stream ended without its status"),
            Err(status) => break status,
        }
    };
    assert_eq!(skus, ["apples", "pears"]);
    assert_eq!(status.code(), Code::Unavailable);
    // Counted when the trailers arrived; not retried (the response was already the
    // caller's): a documented limitation of retries.
    let snapshot = breaker.snapshot();
    assert_eq!((snapshot.calls, snapshot.failures), (1, 1));
    assert_eq!(downstream.received(), 1);

    // A stream that ends OK is a success, recorded at its trailers too.
    let lines = orders.lines(get(8)).await.unwrap().into_inner();
    let all: Vec<Line> = lines.map(Result::unwrap).collect().await;
    assert_eq!(all.len(), 2);
    let snapshot = breaker.snapshot();
    assert_eq!((snapshot.calls, snapshot.failures), (2, 1));
}

#[tokio::test]
async fn not_found_is_the_callers_business_not_a_breaker_failure() {
    let downstream = Downstream::always(Reply::Fail(Code::NotFound));
    let server = TestServer::start(downstream.clone()).await;
    let policy = policy()
        .circuit_breaker(|breaker| breaker.consecutive_failures(2))
        .build()
        .unwrap();
    let breaker = policy.handle().circuit_breaker().unwrap().clone();
    let mut orders = OrdersClient::new(
        GrpcClientLayer::new(policy, tonic::body::boxed).layer(server.channel().await),
    );

    for id in 0..5 {
        let status = orders.get(get(id)).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
    }
    assert_eq!(downstream.received(), 5, "not retried");
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.state, State::Closed);
    assert_eq!((snapshot.calls, snapshot.failures), (0, 0), "ignored");
}

#[tokio::test]
async fn resource_exhausted_is_retried_after_the_pushback_and_only_with_one() {
    const PUSHBACK: Duration = Duration::from_millis(300);
    let downstream = Downstream::scripted([
        Reply::PushBack(Code::ResourceExhausted, 300),
        Reply::Ok,
        Reply::Fail(Code::ResourceExhausted),
    ]);
    let server = TestServer::start(downstream.clone()).await;
    let policy = policy().build().unwrap();
    let handle = policy.handle();
    let mut orders = OrdersClient::new(
        GrpcClientLayer::new(policy, tonic::body::boxed).layer(server.channel().await),
    );

    // Shed with a pushback: retried once the server asked, not after the 5 ms backoff.
    orders.get(get(1)).await.unwrap();
    let arrivals = downstream.arrivals();
    assert_eq!(arrivals.len(), 2);
    assert!(
        arrivals[1] - arrivals[0] >= PUSHBACK,
        "{:?}",
        arrivals[1] - arrivals[0]
    );

    // Without a pushback, RESOURCE_EXHAUSTED may be a quota spent for hours: not retried.
    let status = orders.get(get(2)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(downstream.received(), 3);

    let breaker = handle.circuit_breaker().unwrap().snapshot();
    assert_eq!(
        (breaker.calls, breaker.failures),
        (3, 2),
        "both count against it"
    );
}

#[tokio::test]
async fn the_deadline_travels_as_grpc_timeout() {
    const DEADLINE: Duration = Duration::from_secs(2);
    let downstream = Downstream::scripted([Reply::Fail(Code::Unavailable), Reply::Ok, Reply::Ok]);
    let server = TestServer::start(downstream.clone()).await;
    let policy = policy()
        .deadline(DEADLINE)
        .retry(|retry| retry.backoff(ConstantBackoff::new(Duration::from_millis(50))))
        .build()
        .unwrap();
    let mut orders = OrdersClient::new(
        GrpcClientLayer::new(policy, tonic::body::boxed).layer(server.channel().await),
    );

    // Two attempts: each carries what is left of the one deadline.
    orders.get(get(1)).await.unwrap();
    let timeouts = downstream.timeouts();
    let first = timeouts[0].expect("the first attempt carried grpc-timeout");
    let second = timeouts[1].expect("the retry carried grpc-timeout");
    assert!(first <= DEADLINE, "{first:?}");
    assert!(
        second + Duration::from_millis(50) <= first,
        "{second:?} after {first:?}"
    );

    // A tighter timeout set on the request by the caller is kept.
    let mut request = Request::new(get(2));
    request.set_timeout(Duration::from_millis(500));
    orders.get(request).await.unwrap();
    let third = downstream.timeouts()[2].unwrap();
    assert!(third <= Duration::from_millis(500), "{third:?}");
}

#[tokio::test]
async fn an_open_breaker_fails_fast_and_the_status_says_why() {
    let downstream = Downstream::always(Reply::Fail(Code::Unavailable));
    let server = TestServer::start(downstream.clone()).await;
    let policy = policy()
        .circuit_breaker(|breaker| {
            breaker
                .consecutive_failures(3)
                .open_duration(Duration::from_secs(60))
        })
        .build()
        .unwrap();
    let handle = policy.handle();
    let mut orders = OrdersClient::new(
        GrpcClientLayer::new(policy, tonic::body::boxed).layer(server.channel().await),
    );

    // One call, three attempts, three failures: the breaker trips.
    let status = orders.get(get(1)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(downstream.received(), 3);
    let breaker = handle.circuit_breaker().unwrap();
    assert_eq!(breaker.state(), State::Open);

    // The next call is not sent. tonic reports a service error as UNKNOWN, with the
    // error as its source: `is_rejection` finds the `CircuitOpen` there.
    let status = orders.get(get(2)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unknown);
    assert!(is_rejection(&status), "{status:?}");
    let open = status
        .source()
        .and_then(|source| source.downcast_ref::<CircuitOpen>())
        .expect("the CircuitOpen is the status's source");
    assert!(open.retry_after().unwrap() <= Duration::from_secs(60));
    assert_eq!(downstream.received(), 3, "nothing sent");
    assert_eq!(breaker.snapshot().rejections, 1);
    assert_eq!(
        handle.budget().unwrap().snapshot().withdrawals,
        2,
        "no retry of a rejection"
    );
}

#[tokio::test]
async fn a_hanging_server_times_out_per_attempt_and_counts_as_a_failure() {
    let downstream = Downstream::scripted([Reply::Hang]);
    let server = TestServer::start(downstream.clone()).await;
    let policy = policy()
        .attempt_timeout(Duration::from_millis(200))
        .without_retry()
        .build()
        .unwrap();
    let breaker = policy.handle().circuit_breaker().unwrap().clone();
    let mut orders = OrdersClient::new(
        GrpcClientLayer::new(policy, tonic::body::boxed).layer(server.channel().await),
    );

    let status = orders.get(get(1)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unknown);
    assert!(
        status.source().is_some_and(|source| source.is::<Elapsed>()),
        "{status:?}"
    );
    assert!(!is_rejection(&status), "it was sent");
    assert_eq!(breaker.snapshot().failures, 1);

    // The next call is answered.
    orders.get(get(2)).await.unwrap();
    assert_eq!(downstream.received(), 2);
}

#[tokio::test]
async fn a_server_that_is_gone_is_unavailable_and_a_failure() {
    // A port with nothing listening on it.
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    let policy = policy().build().unwrap();
    let breaker = policy.handle().circuit_breaker().unwrap().clone();
    let mut orders =
        OrdersClient::new(GrpcClientLayer::new(policy, tonic::body::boxed).layer(channel));

    let status = orders.get(get(1)).await.unwrap_err();
    // tonic reads the connect error in the source chain as UNAVAILABLE.
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(!is_rejection(&status));
    let snapshot = breaker.snapshot();
    assert_eq!(
        (snapshot.calls, snapshot.failures),
        (3, 3),
        "retried, each attempt a failure"
    );
}

// ===== what the gRPC classifier's own replay sends again =====

/// gRPC's default (gRFC A6): a method not declared idempotent may have been processed
/// by a server that answers UNAVAILABLE; it is sent once.
#[tokio::test]
async fn by_default_a_call_failed_by_the_server_is_not_retried() {
    let downstream = Downstream::scripted([Reply::Fail(Code::Unavailable)]);
    let server = TestServer::start(downstream.clone()).await;
    let policy = default_policy().build().unwrap();
    let breaker = policy.handle().circuit_breaker().unwrap().clone();
    let mut orders = OrdersClient::new(
        GrpcClientLayer::new(policy, tonic::body::boxed).layer(server.channel().await),
    );
    let status = orders.get(get(1)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(downstream.received.load(Ordering::SeqCst), 1, "sent once");
    assert_eq!(breaker.snapshot().failures, 1);
}

/// A connection reset in the middle of a call that is not idempotent: the server may
/// have done the work, so the call is not sent again.
#[tokio::test]
async fn by_default_a_call_reset_midway_is_not_retried() {
    use tokio::io::AsyncReadExt;
    // A server that reads the start of each call, then resets the connection.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU32::new(0));
    let server = tokio::spawn({
        let accepted = accepted.clone();
        async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0_u8; 4096];
                    let _ = socket.read(&mut buf).await;
                    socket.set_zero_linger().unwrap();
                    drop(socket); // RST
                });
            }
        }
    });
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    let policy = default_policy().build().unwrap();
    let breaker = policy.handle().circuit_breaker().unwrap().clone();
    let mut orders =
        OrdersClient::new(GrpcClientLayer::new(policy, tonic::body::boxed).layer(channel));

    let status = orders.get(get(1)).await.unwrap_err();
    assert!(!is_rejection(&status), "{status:?}");
    assert_eq!(breaker.snapshot().calls, 1, "sent once: {status:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    server.abort();
}

/// A refused connection shows that nothing was sent: retried whatever the method
/// (gRFC A6's transparent retry).
#[tokio::test]
async fn by_default_a_refused_connection_is_retried() {
    // A port with nothing listening on it.
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    let policy = default_policy().build().unwrap();
    let breaker = policy.handle().circuit_breaker().unwrap().clone();
    let mut orders =
        OrdersClient::new(GrpcClientLayer::new(policy, tonic::body::boxed).layer(channel));

    let status = orders.get(get(1)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(
        breaker.snapshot().calls,
        3,
        "every attempt refused, every one retried"
    );
}

#[tokio::test]
async fn a_server_shedding_load_is_retried_after_its_pushback() {
    const PUSHBACK: Duration = Duration::from_millis(300);
    // The server: seawall's load shedding, one call at a time; the first call waits for
    // the test to let it finish.
    let limit = BulkheadLayer::builder().max_concurrent(1).build().unwrap();
    let shed = ShedLoadLayer::new(limit)
        .unwrap()
        .retry_after(PUSHBACK)
        .unwrap();
    let shed_handle = shed.handle();
    let downstream = Downstream::scripted([Reply::Wait, Reply::Ok]);
    let server = TestServer::start_with(downstream.clone(), Some(shed)).await;
    let policy = policy().build().unwrap();
    let breaker = policy.handle().circuit_breaker().unwrap().clone();
    let orders = OrdersClient::new(
        GrpcClientLayer::new(policy, tonic::body::boxed).layer(server.channel().await),
    );

    let first = tokio::spawn({
        let mut orders = orders.clone();
        async move { orders.get(get(1)).await }
    });
    wait_until(|| downstream.received() == 1).await;

    // The server is busy: the second call is shed (RESOURCE_EXHAUSTED, trailers-only,
    // with grpc-retry-pushback-ms) before its handler runs.
    let started = Instant::now();
    let second = tokio::spawn({
        let mut orders = orders.clone();
        async move { orders.get(get(2)).await }
    });
    wait_until(|| shed_handle.rejections() == 1).await;
    // Let the first call finish: the retry, 300 ms later, finds the server free.
    downstream.gate.add_permits(1);

    first.await.unwrap().unwrap();
    let order = second.await.unwrap().unwrap().into_inner();
    assert_eq!(order.id, 2);
    assert!(started.elapsed() >= PUSHBACK, "{:?}", started.elapsed());
    assert_eq!(
        downstream.received(),
        2,
        "the shed call never reached the handler"
    );
    assert_eq!(
        breaker.snapshot().failures,
        1,
        "RESOURCE_EXHAUSTED is a failure"
    );
}

/// Wait (briefly, boundedly) for the servers to reach a state.
async fn wait_until(mut done: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("timed out waiting for the server");
}
