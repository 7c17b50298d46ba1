//! Servers shed load too: reject work over the limit before doing it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::bulkhead::{BulkheadLayer, Handle, Permit, Shared};
use crate::error::ConfigError;

/// Protects a server (axum, tonic, hyper) from more concurrent requests than it can
/// serve: a request over the limit is answered at once, before the handler runs, with
/// `503 Service Unavailable` and a `Retry-After` header, or, for a gRPC request
/// (`content-type: application/grpc…`), with a trailers-only `RESOURCE_EXHAUSTED`
/// status and a `grpc-retry-pushback-ms` header.
///
/// The permits come from a [`BulkheadLayer`], so its [`Handle`] shows and resizes the
/// limit. The permit is given back when the handler returns its response.
///
/// ```
/// use seawall::bulkhead::BulkheadLayer;
/// use seawall::http::ShedLoadLayer;
/// use std::time::Duration;
/// use tower::{Layer, Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let limit = BulkheadLayer::builder().max_concurrent(1).build().unwrap();
/// let shed = ShedLoadLayer::new(limit).unwrap().retry_after(Duration::from_secs(2)).unwrap();
/// let mut svc = shed.layer(tower::service_fn(|_req: http::Request<()>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("done")))
/// }));
///
/// let busy = svc.ready().await.unwrap().call(http::Request::new(())); // holds the permit
/// let shed = svc.ready().await.unwrap().call(http::Request::new(())).await.unwrap();
/// assert_eq!(shed.status(), 503);
/// assert_eq!(shed.headers()["retry-after"], "2");
/// assert_eq!(busy.await.unwrap().into_body(), "done");
/// # }
/// ```
#[derive(Clone)]
pub struct ShedLoadLayer {
    shared: Arc<Shared>,
    retry_after: Duration,
}

impl ShedLoadLayer {
    /// Shed load over `bulkhead`'s limit. The bulkhead must not wait for permits (a
    /// server sheds at once); one with a positive max wait is a [`ConfigError`].
    pub fn new<H>(bulkhead: BulkheadLayer<H>) -> Result<Self, ConfigError> {
        let (shared, max_wait) = bulkhead.parts();
        if !max_wait.is_zero() {
            return Err(ConfigError::new(
                "shed_load",
                "max_wait",
                format!("a server sheds at once: the bulkhead must not wait (got {max_wait:?})"),
            ));
        }
        Ok(Self {
            shared,
            retry_after: Duration::from_secs(1),
        })
    }

    /// What to tell shed clients to wait before retrying (default 1 s): sent in whole
    /// seconds, rounded up, in `Retry-After` (so 1.5 s and 1 ms are sent as `2` and
    /// `1`), and in whole milliseconds, rounded up, in `grpc-retry-pushback-ms`.
    ///
    /// The wait must be from 1 ms to `i32::MAX` ms (about 24.8 days), so that both
    /// headers can say it: zero would have every shed client retry at once, and gRPC
    /// clients (seawall's included) read a pushback above `i32::MAX` as "never retry".
    /// A wait outside that range is a [`ConfigError`] (component `shed_load`, field
    /// `retry_after`).
    ///
    /// ```
    /// use seawall::bulkhead::BulkheadLayer;
    /// use seawall::http::ShedLoadLayer;
    /// use std::time::Duration;
    ///
    /// let limit = || BulkheadLayer::builder().max_concurrent(8).build().unwrap();
    /// let shed = ShedLoadLayer::new(limit())?.retry_after(Duration::from_millis(500))?;
    /// # let _ = shed;
    /// let err = ShedLoadLayer::new(limit())?.retry_after(Duration::ZERO).unwrap_err();
    /// assert_eq!((err.component(), err.field()), ("shed_load", "retry_after"));
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn retry_after(mut self, wait: Duration) -> Result<Self, ConfigError> {
        if wait < MIN_RETRY_AFTER || wait > MAX_RETRY_AFTER {
            return Err(ConfigError::new(
                "shed_load",
                "retry_after",
                format!(
                    "must be from 1ms to {}ms (i32::MAX ms), so that both Retry-After and \
                     grpc-retry-pushback-ms can say it (got {wait:?})",
                    i32::MAX
                ),
            ));
        }
        self.retry_after = wait;
        Ok(self)
    }

    /// A handle to the limit.
    pub fn handle(&self) -> Handle {
        Handle::new(self.shared.clone())
    }
}

impl fmt::Debug for ShedLoadLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShedLoadLayer")
            .field("limit", &self.shared.lane.limit())
            .field("retry_after", &self.retry_after)
            .finish()
    }
}

impl<S> Layer<S> for ShedLoadLayer {
    type Service = ShedLoad<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ShedLoad {
            inner,
            shared: self.shared.clone(),
            headers: ShedHeaders::new(self.retry_after),
        }
    }
}

/// The shortest wait a shed response may ask for: zero would send every shed client
/// back at once.
const MIN_RETRY_AFTER: Duration = Duration::from_millis(1);
/// The longest: `grpc-retry-pushback-ms` is a signed 32-bit count of milliseconds, and a
/// value that does not fit means "do not retry" to gRPC clients.
const MAX_RETRY_AFTER: Duration = Duration::from_millis(i32::MAX as u64);

/// Precomputed header values of a shed response.
#[derive(Debug, Clone)]
struct ShedHeaders {
    retry_after: HeaderValue,
    pushback_ms: HeaderValue,
}

impl ShedHeaders {
    /// The headers for `wait`, which `retry_after` checked: both round up, so that no
    /// client is told to come back sooner than `wait`.
    fn new(wait: Duration) -> Self {
        let secs = wait
            .as_secs()
            .saturating_add(u64::from(wait.subsec_nanos() > 0));
        let millis = u64::try_from(wait.as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(u64::from(wait.subsec_nanos() % 1_000_000 > 0));
        Self {
            retry_after: HeaderValue::from(secs),
            pushback_ms: HeaderValue::from(millis),
        }
    }
}

/// The service made by [`ShedLoadLayer`].
#[derive(Clone)]
pub struct ShedLoad<S> {
    inner: S,
    shared: Arc<Shared>,
    headers: ShedHeaders,
}

impl<S: fmt::Debug> fmt::Debug for ShedLoad<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShedLoad")
            .field("inner", &self.inner)
            .field("in_flight", &self.shared.lane.in_flight())
            .finish_non_exhaustive()
    }
}

fn is_grpc<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

impl<S> ShedLoad<S> {
    fn shed_response<B: Default>(&self, grpc: bool) -> Response<B> {
        let mut response = Response::new(B::default());
        let headers = response.headers_mut();
        if grpc {
            // A trailers-only gRPC response: HTTP 200, the status in the headers.
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            headers.insert("grpc-status", HeaderValue::from_static("8")); // RESOURCE_EXHAUSTED
            headers.insert(
                "grpc-message",
                HeaderValue::from_static("server%20overloaded"),
            );
            headers.insert("grpc-retry-pushback-ms", self.headers.pushback_ms.clone());
        } else {
            headers.insert(http::header::RETRY_AFTER, self.headers.retry_after.clone());
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        }
        response
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ShedLoad<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ShedFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // Decide before any work: a permit, or a shed answer.
        if self.shared.lane.try_acquire() {
            let permit = Permit::taken(&self.shared);
            return ShedFuture {
                kind: ShedKind::Called {
                    future: self.inner.call(request),
                    permit: Some(permit),
                },
            };
        }
        self.shared.note_rejection();
        ShedFuture {
            kind: ShedKind::Shed {
                response: Some(self.shed_response(is_grpc(&request))),
            },
        }
    }
}

pin_project! {
    /// Response future of [`ShedLoad`].
    pub struct ShedFuture<F, B> {
        #[pin]
        kind: ShedKind<F, B>,
    }
}

pin_project! {
    #[project = ShedKindProj]
    enum ShedKind<F, B> {
        Called { #[pin] future: F, permit: Option<Permit> },
        Shed { response: Option<Response<B>> },
    }
}

impl<F, B, E> Future for ShedFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            ShedKindProj::Called { future, permit } => {
                let result = ready!(future.poll(cx));
                if let Some(mut permit) = permit.take() {
                    // A server with an adaptive limit learns from its handler's latency;
                    // an error from the handler counts as overload.
                    permit.observe(Some(result.is_err()));
                }
                Poll::Ready(result)
            }
            ShedKindProj::Shed { response } => {
                Poll::Ready(Ok(response.take().unwrap_or_else(|| {
                    // Polled again after completion: answer the same way.
                    let mut r = Response::new(B::default());
                    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    r
                })))
            }
        }
    }
}

impl<F, B> fmt::Debug for ShedFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShedFuture").finish_non_exhaustive()
    }
}
