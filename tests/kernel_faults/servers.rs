//! The servers, on a thread of their own inside the lab's server namespace: an axum
//! server (HTTP/1 and HTTP/2 cleartext on one port) and a tonic server, counting every
//! request that reaches a handler.

use std::future::IntoFuture;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::codegen::tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

use crate::lab::{enter, Lab};
use crate::orders::orders_server::{Orders, OrdersServer};
use crate::orders::{GetOrder, Line, Order};

/// The size of `GET /big`, and about the size of the `Lines` stream: large enough that
/// a fault can strike in the middle of it.
pub(crate) const BIG: usize = 256 * 1024;
/// The lines of a `Lines` stream, each with a SKU of 1 KiB.
pub(crate) const LINES: usize = BIG / 1024;

/// What reached the handlers.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    /// `GET` requests, any path.
    pub(crate) gets: AtomicU32,
    /// `POST /orders` without an `Idempotency-Key`.
    pub(crate) posts: AtomicU32,
    /// `POST /orders` with an `Idempotency-Key`.
    pub(crate) keyed_posts: AtomicU32,
    /// gRPC calls, both methods, through the retrying policy.
    pub(crate) grpc: AtomicU32,
    /// gRPC `Get` calls through the policy without retries (their ids are `ONCE`).
    pub(crate) grpc_once: AtomicU32,
}

impl Counts {
    pub(crate) fn get(counter: &AtomicU32) -> u32 {
        counter.load(Ordering::SeqCst)
    }

    /// Every request that reached a handler.
    pub(crate) fn total(&self) -> u32 {
        [
            &self.gets,
            &self.posts,
            &self.keyed_posts,
            &self.grpc,
            &self.grpc_once,
        ]
        .into_iter()
        .map(Self::get)
        .sum()
    }
}

/// The running servers; stopped (every connection dropped) on drop.
#[derive(Debug)]
pub(crate) struct Servers {
    pub(crate) counts: Arc<Counts>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Servers {
    /// Start both servers in `lab`'s server namespace, listening on the server's
    /// address only; returns once both listen.
    pub(crate) fn start(lab: &Lab) -> Self {
        let counts = Arc::new(Counts::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready, listening) = std::sync::mpsc::channel::<Result<(), String>>();
        let ns = lab.server_ns().to_owned();
        let (http_addr, grpc_addr) = (lab.http_addr(), lab.grpc_addr());
        let thread = {
            let counts = counts.clone();
            std::thread::spawn(move || {
                if let Err(why) = enter(&ns) {
                    let _ = ready.send(Err(format!("setns into {ns}: {why}")));
                    return;
                }
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let (http, grpc) = match (
                        TcpListener::bind(http_addr).await,
                        TcpListener::bind(grpc_addr).await,
                    ) {
                        (Ok(http), Ok(grpc)) => (http, grpc),
                        (Err(e), _) | (_, Err(e)) => {
                            let _ = ready.send(Err(format!("bind: {e}")));
                            return;
                        }
                    };
                    let _ = ready.send(Ok(()));
                    let app = axum::Router::new()
                        .route("/small", axum::routing::get(small))
                        .route("/big", axum::routing::get(big))
                        .route("/orders", axum::routing::post(order))
                        .with_state(counts.clone());
                    let http = axum::serve(http, app).into_future();
                    let grpc = tonic::transport::Server::builder()
                        .add_service(OrdersServer::new(Downstream(counts)))
                        .serve_with_incoming(TcpListenerStream::new(grpc));
                    tokio::select! {
                        _ = http => {}
                        _ = grpc => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime drops every connection task still alive.
                drop(runtime);
            })
        };
        match listening.recv() {
            Ok(Ok(())) => {}
            Ok(Err(why)) => panic!("the servers did not start: {why}"),
            Err(_) => panic!("the server thread died before listening"),
        }
        Self {
            counts,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn small(axum::extract::State(counts): axum::extract::State<Arc<Counts>>) -> &'static str {
    counts.gets.fetch_add(1, Ordering::SeqCst);
    "ok"
}

async fn big(axum::extract::State(counts): axum::extract::State<Arc<Counts>>) -> Bytes {
    counts.gets.fetch_add(1, Ordering::SeqCst);
    Bytes::from(vec![b'x'; BIG])
}

async fn order(
    axum::extract::State(counts): axum::extract::State<Arc<Counts>>,
    headers: HeaderMap,
    _body: Bytes,
) -> StatusCode {
    if headers.contains_key("idempotency-key") {
        counts.keyed_posts.fetch_add(1, Ordering::SeqCst);
    } else {
        counts.posts.fetch_add(1, Ordering::SeqCst);
    }
    StatusCode::CREATED
}

/// The gRPC service: `Get` answers at once, `Lines` streams [`LINES`] lines.
#[derive(Debug)]
struct Downstream(Arc<Counts>);

#[tonic::async_trait]
impl Orders for Downstream {
    async fn get(&self, request: Request<GetOrder>) -> Result<Response<Order>, Status> {
        if request.get_ref().id >= crate::ONCE {
            self.0.grpc_once.fetch_add(1, Ordering::SeqCst);
        } else {
            self.0.grpc.fetch_add(1, Ordering::SeqCst);
        }
        Ok(Response::new(Order {
            id: request.get_ref().id,
            status: "shipped".to_owned(),
        }))
    }

    type LinesStream = BoxStream<'static, Result<Line, Status>>;

    // The item is tonic's `Result<Line, Status>`, large as it is.
    #[allow(clippy::result_large_err)]
    async fn lines(
        &self,
        _request: Request<GetOrder>,
    ) -> Result<Response<Self::LinesStream>, Status> {
        self.0.grpc.fetch_add(1, Ordering::SeqCst);
        let sku = "x".repeat(1024);
        let lines = stream::iter(0..LINES).map(move |_| {
            Ok(Line {
                sku: sku.clone(),
                quantity: 1,
            })
        });
        Ok(Response::new(lines.boxed()))
    }
}
