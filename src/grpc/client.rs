//! A gRPC client (a tonic `Channel`) behind a policy, in one layer.

use std::fmt;
use std::task::{Context, Poll};

use http::Request;
use tower::{Layer, Service};

use crate::http::replay_body::DEFAULT_LIMIT;
use crate::http::{PropagateDeadline, PropagateDeadlineLayer, ReplayBodyLayer, ReplayBodyService};

/// Puts a gRPC client, such as a tonic `Channel`, behind `layer` (a
/// [`Policy`](crate::policy::Policy), or any stack of seawall layers), so that a
/// generated client can call through it:
///
/// ```text
/// ReplayBodyLayer        each request body buffered (64 KiB), so a retry can send it again
///  └ layer               the policy: deadline, retry, breaker, bulkhead, attempt timeout
///     └ PropagateDeadline what is left of the attempt, as `grpc-timeout`
///        └ into_body     the buffered body back into the client's own body type
///           └ the client (a tonic `Channel`)
/// ```
///
/// With tonic:
///
/// ```text
/// let policy = Policy::builder("orders")
///     .classifier(GrpcClassifier::new()) // and with it `GrpcReplay`: gRPC's retry rules
///     .build()?;
/// let mut orders = OrdersClient::new(GrpcClientLayer::new(policy, tonic::body::boxed).layer(channel));
/// ```
///
/// `into_body` turns the buffered request body ([`ReplayBody`](crate::http::ReplayBody)
/// of the client's body) back into the body the client takes; for tonic that is
/// `tonic::body::boxed`. (Seawall does not depend on tonic: this is the one thing it
/// cannot name.)
///
/// The service it builds takes and returns what the client does, with the response body
/// as the layer makes it (with a [`GrpcClassifier`](super::GrpcClassifier), a
/// [`GrpcBody`](super::GrpcBody) that records the call at the end of the stream), and
/// its error is the layer's (a policy's is a [`BoxError`](crate::BoxError)). So a tonic
/// `Channel` stays a `tonic::client::GrpcService<tonic::body::BoxBody>`.
///
/// # Retries
///
/// Every gRPC call is a `POST`, so HTTP's idempotency rules
/// ([`IdempotentReplay`](crate::http::IdempotentReplay)) would never retry one. gRPC's
/// rules (gRFC A6) decide instead, and the [`GrpcClassifier`](super::GrpcClassifier)
/// brings them: its replay, [`GrpcReplay`](super::GrpcReplay), is the policy's unless
/// another is set after it. A call is sent again only when it is safe:
///
/// - its method is declared idempotent
///   ([`GrpcReplay::idempotent_methods`](super::GrpcReplay::idempotent_methods), as a
///   service owner lists the methods of a gRPC retry policy), the call is not yet
///   committed (no response headers: a transport error, or a status in the response
///   headers, the Trailers-Only response with which a server fails a call before
///   sending a message), and the classifier's
///   [`retryable_codes`](super::GrpcClassifier::retryable_codes) retry that status (by
///   default `UNAVAILABLE`, and `RESOURCE_EXHAUSTED` when the server sent a
///   `grpc-retry-pushback-ms`); only these calls are hedged;
/// - or, whatever its method, the failure shows that the server never processed it: the
///   connection was refused, or the server refused the stream (HTTP/2
///   `REFUSED_STREAM`): gRFC A6's transparent retry.
///
/// A reset or a timeout in the middle of a call that is not declared idempotent is not
/// retried: the server may have done the work. A status in the trailers after messages
/// counts for the breaker only (see [the module docs](crate::grpc#retries-and-trailers)).
/// [`GrpcReplay::allow_non_idempotent`](super::GrpcReplay::allow_non_idempotent)
/// declares every method idempotent, for servers that tolerate duplicates.
///
/// A request body larger than the replay limit ([`replay_limit`](Self::replay_limit),
/// default 64 KiB) is sent once and not retried. A client-streaming call is retried only
/// if its whole stream fits in the buffer and the failed attempt has stopped reading it
/// (a server that fails the call at once, before the client has sent everything, may
/// leave the first attempt still holding the stream: the call is then not retried).
///
/// # What a generated client sees
///
/// tonic turns the service's error into a `tonic::Status`: a transport error that means
/// the server could not be reached is `UNAVAILABLE`; seawall's own errors
/// ([`CircuitOpen`](crate::error::CircuitOpen), [`Elapsed`](crate::error::Elapsed),
/// [`DeadlineExceeded`](crate::error::DeadlineExceeded), ...) are `UNKNOWN` with the
/// error as the status's `source()`, so that
/// [`is_rejection(&status)`](crate::error::is_rejection) and a `downcast_ref` on the
/// source find them. (Seawall's layers reject from the response future, not from
/// `poll_ready`: tonic's generated code keeps only the message of a `poll_ready` error.)
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::combinators::UnsyncBoxBody;
/// use http_body_util::{BodyExt, Full};
/// use seawall::grpc::{GrpcClassifier, GrpcClientLayer, GrpcReplay};
/// use seawall::http::deadline::parse_grpc_timeout;
/// use seawall::http::ReplayBody;
/// use seawall::policy::Policy;
/// use seawall::BoxError;
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
/// use tower::{Layer, ServiceExt};
///
/// // The body a client takes (tonic's is `tonic::body::BoxBody`).
/// type Body = UnsyncBoxBody<Bytes, BoxError>;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), BoxError> {
/// let attempts = Arc::new(AtomicU32::new(0));
/// let seen = attempts.clone();
/// // A stand-in for a channel to a server that is UNAVAILABLE once, then answers.
/// let channel = tower::service_fn(move |request: http::Request<Body>| {
///     let attempt = seen.fetch_add(1, Ordering::SeqCst);
///     async move {
///         // What is left of the call's 2 s deadline travels with each attempt.
///         let timeout = parse_grpc_timeout(&request.headers()["grpc-timeout"]).unwrap();
///         assert!(timeout <= Duration::from_secs(2));
///         let message = request.into_body().collect().await?.to_bytes();
///         assert_eq!(message, "order 7", "every attempt sends the whole message");
///         let status = if attempt == 0 { "14" } else { "0" };
///         let response = http::Response::builder().header("grpc-status", status).body(Full::new(Bytes::new()))?;
///         Ok::<_, BoxError>(response)
///     }
/// });
///
/// let policy = Policy::builder("orders")
///     .classifier(GrpcClassifier::new())
///     // `Get` only reads: a gRPC retry policy would list it.
///     .replay(GrpcReplay::new().idempotent_methods(["/orders.Orders/Get"]))
///     .deadline(Duration::from_secs(2))
///     .build()?;
/// let into_body = |body: ReplayBody<Body>| body.boxed_unsync();
/// let client = GrpcClientLayer::new(policy, into_body).layer(channel);
///
/// let request = http::Request::post("/orders.Orders/Get")
///     .header("content-type", "application/grpc")
///     .body(Full::new(Bytes::from("order 7")).map_err(BoxError::from).boxed_unsync())?;
/// let response = client.oneshot(request).await?;
/// assert_eq!(response.headers()["grpc-status"], "0");
/// assert_eq!(attempts.load(Ordering::SeqCst), 2, "UNAVAILABLE was retried");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct GrpcClientLayer<L, F> {
    layer: L,
    into_body: F,
    limit: usize,
}

impl<L, F> GrpcClientLayer<L, F> {
    /// Put clients behind `layer`, turning the buffered request body back into the
    /// client's with `into_body` (for tonic, `tonic::body::boxed`).
    pub fn new(layer: L, into_body: F) -> Self {
        Self {
            layer,
            into_body,
            limit: DEFAULT_LIMIT,
        }
    }

    /// Keep up to `limit` bytes of each request body for retries (default 64 KiB); a
    /// larger body is sent once. Every limit is valid: zero keeps nothing, so that only
    /// requests with an empty body are retried.
    ///
    /// ```
    /// use seawall::grpc::GrpcClientLayer;
    ///
    /// let layer = GrpcClientLayer::new(tower::layer::util::Identity::new(), |body: ()| body)
    ///     .replay_limit(1024 * 1024);
    /// assert_eq!(layer.limit(), 1024 * 1024);
    /// ```
    #[must_use]
    pub fn replay_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// The most bytes of a request body kept for retries.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The layer the client is put behind (the policy).
    pub fn get_ref(&self) -> &L {
        &self.layer
    }
}

impl<L: fmt::Debug, F> fmt::Debug for GrpcClientLayer<L, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcClientLayer")
            .field("layer", &self.layer)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

/// The service that [`GrpcClientLayer`] builds around a client `S`.
pub type GrpcClient<S, L, F> =
    ReplayBodyService<<L as Layer<PropagateDeadline<MapRequestBody<S, F>>>>::Service>;

impl<S, L, F> Layer<S> for GrpcClientLayer<L, F>
where
    L: Layer<PropagateDeadline<MapRequestBody<S, F>>>,
    F: Clone,
{
    type Service = GrpcClient<S, L, F>;

    fn layer(&self, client: S) -> Self::Service {
        let client = MapRequestBody::new(client, self.into_body.clone());
        let client = PropagateDeadlineLayer::new().layer(client);
        ReplayBodyLayer::new(self.limit).layer(self.layer.layer(client))
    }
}

/// Passes each request on with its body changed by `F`: the last step of a
/// [`GrpcClientLayer`], which gives the client back its own body type.
///
/// ```
/// use seawall::grpc::MapRequestBody;
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let svc = MapRequestBody::new(
///     tower::service_fn(|request: http::Request<usize>| async move {
///         Ok::<_, std::convert::Infallible>(*request.body())
///     }),
///     |body: &str| body.len(),
/// );
/// assert_eq!(svc.oneshot(http::Request::new("four")).await.unwrap(), 4);
/// # }
/// ```
#[derive(Clone)]
pub struct MapRequestBody<S, F> {
    inner: S,
    f: F,
}

impl<S, F> MapRequestBody<S, F> {
    /// Change each request's body with `f` before `inner` gets it.
    pub fn new(inner: S, f: F) -> Self {
        Self { inner, f }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, consuming this one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug, F> fmt::Debug for MapRequestBody<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapRequestBody")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, F, B1, B2> Service<Request<B1>> for MapRequestBody<S, F>
where
    S: Service<Request<B2>>,
    F: FnMut(B1) -> B2,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Request<B1>) -> S::Future {
        self.inner.call(request.map(&mut self.f))
    }
}
