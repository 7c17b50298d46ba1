//! Fault injection for HTTP servers (axum, hyper, tonic): answer a share of the requests
//! with a status code of your choice, abort them, delay them or hang them, before the
//! handler runs, so that the server's *clients* meet the faults.
//!
//! [`HttpFaultLayer`] wraps any service of `http::Request<B>` to `http::Response<ResBody>`
//! and keeps its error type, so it fits servers whose services may not fail (axum's are
//! `Infallible`). Its responses carry a [`FaultBody`], which is the handler's body
//! unchanged, the empty body of an injected status, or the body of an aborted response.
//!
//! | fault | what the client sees |
//! |---|---|
//! | [`status`](Builder::status) | a response with that status and an empty body, with `Retry-After` if [set](Builder::retry_after) |
//! | [`abort`](Builder::abort) | HTTP/1: the connection closed before any byte of a response (hyper's client: an incomplete-message error); HTTP/2: the stream reset (`INTERNAL_ERROR`), possibly after the response head |
//! | [`latency`](Builder::latency) | the handler's response, `latency` later |
//! | [`hang`](Builder::hang) | nothing until it gives up (the handler is not called) |
//!
//! How the abort works: the response's body fails on its first read. hyper's HTTP/1
//! server writes a response head together with the first body bytes, so a body that
//! fails at once makes it close the connection with nothing written; on HTTP/2 it resets
//! the stream. That is what a crashed or killed upstream looks like to a client, and it
//! works under `axum::serve`, where a service cannot return an error.
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use seawall::chaos::http::HttpFaultLayer;
//! use std::time::Duration;
//! use tower::{Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let chaos = HttpFaultLayer::builder()
//!     .name("api")
//!     .rate(1.0)
//!     .status(503)
//!     .retry_after(Duration::from_secs(2))
//!     .build()
//!     .unwrap();
//! let handle = chaos.handle();
//! handle.enable(); // a fault layer does nothing until switched on
//! let server = chaos.layer(tower::service_fn(|_req: http::Request<()>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from("ok"))))
//! }));
//!
//! let response = server.clone().oneshot(http::Request::new(())).await.unwrap();
//! assert_eq!(response.status(), 503);
//! assert_eq!(response.headers()["retry-after"], "2");
//!
//! handle.disable();
//! let response = server.oneshot(http::Request::new(())).await.unwrap();
//! assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "ok");
//! # }
//! ```
//!
//! With axum, add it to a router with `Router::layer`; axum turns the [`FaultBody`]
//! into its own body. It is a [`Handle`] like the generic layer's, so the same admin
//! endpoint can switch both.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::future::Delayed;
use super::layer::Common;
use super::state::{Action, Decision, Shared};
use super::{decide_ready, Handle, InjectedFault};
use crate::error::ConfigError;
use crate::BoxError;

/// Injects faults into a server's requests: a status code, an aborted connection, added
/// latency or a hang, on a seeded random share of the requests, switched on and off at
/// run time through a [`Handle`]. See the [module docs](self).
///
/// ```
/// use seawall::chaos::http::HttpFaultLayer;
///
/// // 2% of requests get a 500, 1% a dropped connection.
/// let layer = HttpFaultLayer::builder()
///     .name("checkout")
///     .rate(0.03)
///     .status(500)
///     .weight(2)
///     .abort()
///     .build()?;
/// assert_eq!(layer.handle().rate(), 0.03);
/// # Ok::<(), seawall::error::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct HttpFaultLayer {
    shared: Arc<Shared>,
}

impl HttpFaultLayer {
    /// A builder. [`rate`](Builder::rate) and at least one fault must be set.
    ///
    /// ```
    /// use seawall::chaos::http::HttpFaultLayer;
    ///
    /// let layer = HttpFaultLayer::builder().rate(0.1).abort().build().unwrap();
    /// # let _ = layer;
    /// ```
    pub fn builder() -> Builder {
        Builder {
            common: Common::new(),
        }
    }

    /// A handle to this layer's switch, rate and counts, shared by every service it
    /// builds.
    ///
    /// ```
    /// use seawall::chaos::http::HttpFaultLayer;
    ///
    /// let layer = HttpFaultLayer::builder().rate(0.1).status(503).build().unwrap();
    /// layer.handle().enable();
    /// assert!(layer.handle().is_enabled());
    /// ```
    pub fn handle(&self) -> Handle {
        Handle::new(self.shared.clone())
    }
}

impl fmt::Debug for HttpFaultLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpFaultLayer")
            .field("name", &self.shared.name)
            .field("enabled", &self.shared.is_enabled())
            .field("rate", &self.shared.rate())
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for HttpFaultLayer {
    type Service = HttpFaultInjection<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpFaultInjection {
            inner,
            shared: self.shared.clone(),
            decision: None,
        }
    }
}

/// Configures an [`HttpFaultLayer`]: the share of requests that get a fault
/// ([`rate`](Self::rate), required) and the faults ([`status`](Self::status),
/// [`abort`](Self::abort), [`latency`](Self::latency), [`hang`](Self::hang); at least
/// one), each with a [`weight`](Self::weight).
///
/// Every setter takes the value as given; [`build`](Self::build) checks them all and
/// names the first bad one.
///
/// ```
/// use seawall::chaos::http::HttpFaultLayer;
///
/// let err = HttpFaultLayer::builder().rate(0.1).status(42).build().unwrap_err();
/// assert_eq!((err.component(), err.field()), ("chaos", "status"));
/// ```
#[derive(Clone)]
pub struct Builder {
    common: Common,
}

impl Builder {
    /// The layer's name: the `policy` label of its metrics and tracing events. Default
    /// `"default"`.
    ///
    /// ```
    /// use seawall::chaos::http::HttpFaultLayer;
    ///
    /// let layer = HttpFaultLayer::builder().name("api").rate(0.1).abort().build().unwrap();
    /// assert_eq!(layer.handle().name(), "api");
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.common.name(name.into());
        self
    }

    /// The probability that a request gets a fault, from 0.0 to 1.0. Required.
    ///
    /// ```
    /// use seawall::chaos::http::HttpFaultLayer;
    ///
    /// let layer = HttpFaultLayer::builder().rate(0.5).abort().build().unwrap();
    /// assert_eq!(layer.handle().rate(), 0.5);
    /// ```
    pub fn rate(mut self, rate: f64) -> Self {
        self.common.rate(rate);
        self
    }

    /// Seed the generator that decides which requests get a fault (by default, a
    /// different seed for every layer).
    ///
    /// ```
    /// use seawall::chaos::http::HttpFaultLayer;
    ///
    /// let layer = HttpFaultLayer::builder().rate(0.5).seed(1).abort().build().unwrap();
    /// # let _ = layer;
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.common.seed(seed);
        self
    }

    /// Whether the layer injects faults from the start (default `false`: it does nothing
    /// until switched on with [`Handle::enable`](crate::chaos::Handle::enable)). `true`
    /// starts it injecting, for a test or a game-day binary.
    ///
    /// ```
    /// use seawall::chaos::http::HttpFaultLayer;
    ///
    /// let layer = HttpFaultLayer::builder().rate(0.5).abort().build().unwrap();
    /// assert!(!layer.handle().is_enabled());
    /// let layer = HttpFaultLayer::builder().rate(0.5).abort().enabled(true).build().unwrap();
    /// assert!(layer.handle().is_enabled());
    /// ```
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.common.enabled(enabled);
        self
    }

    /// Add a status fault: answer with this status code (200 to 999; an informational
    /// 1xx cannot end a response) and an empty body, without calling the handler.
    ///
    /// ```
    /// use seawall::chaos::http::HttpFaultLayer;
    ///
    /// let layer = HttpFaultLayer::builder().rate(0.1).status(429).build().unwrap();
    /// # let _ = layer;
    /// ```
    pub fn status(mut self, status: u16) -> Self {
        match StatusCode::from_u16(status) {
            Ok(code) if !code.is_informational() => self.common.push(Action::Status {
                status: code,
                retry_after: None,
            }),
            _ => self.common.misuse("status", || {
                format!("must be a final status code, 200 to 999 (got {status})")
            }),
        }
        self
    }

    /// Send `Retry-After` (in whole seconds, rounded up) with the status fault added just
    /// before. Calling it after any other fault is a [`ConfigError`].
    ///
    /// ```
    /// use seawall::chaos::http::HttpFaultLayer;
    /// use std::time::Duration;
    ///
    /// let layer = HttpFaultLayer::builder()
    ///     .rate(0.1)
    ///     .status(503)
    ///     .retry_after(Duration::from_millis(1500)) // "Retry-After: 2"
    ///     .build()
    ///     .unwrap();
    /// # let _ = layer;
    /// ```
    pub fn retry_after(mut self, wait: Duration) -> Self {
        let secs = wait
            .as_secs()
            .saturating_add(u64::from(wait.subsec_nanos() > 0));
        match self.common.last_mut() {
            Some(Action::Status { retry_after, .. }) => {
                *retry_after = Some(HeaderValue::from(secs));
            }
            _ => self.common.misuse("retry_after", || {
                "applies to the status fault added just before it".to_owned()
            }),
        }
        self
    }

    /// Add an abort fault: the client gets no response. On HTTP/1 the connection is
    /// closed before any byte of a response; on HTTP/2 the stream is reset. The handler
    /// is not called. See the [module docs](self) for how.
    ///
    /// ```
    /// use seawall::chaos::http::HttpFaultLayer;
    ///
    /// let layer = HttpFaultLayer::builder().rate(0.01).abort().build().unwrap();
    /// # let _ = layer;
    /// ```
    pub fn abort(mut self) -> Self {
        self.common.push(Action::Abort);
        self
    }

    /// Add a latency fault: the handler is called at once and its response is awaited
    /// after `latency` (more than zero); for `async` handlers, which do nothing until
    /// polled, the handler runs after the delay.
    ///
    /// ```
    /// use seawall::chaos::http::HttpFaultLayer;
    /// use std::time::Duration;
    ///
    /// let layer = HttpFaultLayer::builder()
    ///     .rate(0.1)
    ///     .latency(Duration::from_secs(3))
    ///     .build()
    ///     .unwrap();
    /// # let _ = layer;
    /// ```
    pub fn latency(mut self, latency: Duration) -> Self {
        self.common.push(Action::Latency(latency));
        self
    }

    /// Add a hang fault: never answer, until the client gives up (or the server's own
    /// timeout ends the request). The handler is not called.
    ///
    /// ```
    /// use seawall::chaos::http::HttpFaultLayer;
    ///
    /// let layer = HttpFaultLayer::builder().rate(0.01).hang().build().unwrap();
    /// # let _ = layer;
    /// ```
    pub fn hang(mut self) -> Self {
        self.common.push(Action::Hang);
        self
    }

    /// The weight of the fault added just before (default 1): when a request gets a
    /// fault, each fault is chosen in proportion to its weight. At least 1.
    ///
    /// ```
    /// use seawall::chaos::http::HttpFaultLayer;
    ///
    /// // Of the faults, three 503s for each abort.
    /// let layer = HttpFaultLayer::builder()
    ///     .rate(0.2)
    ///     .status(503)
    ///     .weight(3)
    ///     .abort()
    ///     .build()
    ///     .unwrap();
    /// # let _ = layer;
    /// ```
    pub fn weight(mut self, weight: u32) -> Self {
        self.common.weight(weight);
        self
    }

    /// Check every value and build the layer.
    ///
    /// ```
    /// use seawall::chaos::http::HttpFaultLayer;
    ///
    /// let err = HttpFaultLayer::builder().rate(0.1).abort().retry_after(
    ///     std::time::Duration::from_secs(1),
    /// ).build().unwrap_err();
    /// assert_eq!(err.field(), "retry_after");
    /// ```
    pub fn build(self) -> Result<HttpFaultLayer, ConfigError> {
        Ok(HttpFaultLayer {
            shared: self.common.build()?,
        })
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.common.fmt(f)
    }
}

/// Fault injection around a server's service `S`, made by [`HttpFaultLayer`]. Its
/// responses carry a [`FaultBody`]; its error type is the inner service's.
///
/// ```
/// use seawall::chaos::http::{HttpFaultInjection, HttpFaultLayer};
/// use tower::Layer;
///
/// let svc: HttpFaultInjection<_> = HttpFaultLayer::builder()
///     .rate(0.1)
///     .abort()
///     .build()
///     .unwrap()
///     .layer(tower::service_fn(|_req: http::Request<()>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
///     }));
/// assert!(!svc.handle().is_enabled(), "inert until switched on");
/// ```
pub struct HttpFaultInjection<S> {
    inner: S,
    shared: Arc<Shared>,
    /// Decided in `poll_ready`, acted on in `call`.
    decision: Option<Decision>,
}

impl<S> HttpFaultInjection<S> {
    /// A handle to the layer this service shares with its clones.
    ///
    /// ```
    /// use seawall::chaos::http::HttpFaultLayer;
    /// use tower::Layer;
    ///
    /// let svc = HttpFaultLayer::builder().name("api").rate(0.1).abort().build().unwrap().layer(());
    /// assert_eq!(svc.handle().name(), "api");
    /// ```
    pub fn handle(&self) -> Handle {
        Handle::new(self.shared.clone())
    }

    /// The inner service.
    ///
    /// ```
    /// use seawall::chaos::http::HttpFaultLayer;
    /// use tower::Layer;
    ///
    /// let svc = HttpFaultLayer::builder().rate(0.1).abort().build().unwrap().layer(5u8);
    /// assert_eq!(*svc.get_ref(), 5);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    ///
    /// ```
    /// use seawall::chaos::http::HttpFaultLayer;
    /// use tower::Layer;
    ///
    /// let mut svc = HttpFaultLayer::builder().rate(0.1).abort().build().unwrap().layer(5u8);
    /// *svc.get_mut() += 1;
    /// assert_eq!(*svc.get_ref(), 6);
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the wrapper.
    ///
    /// ```
    /// use seawall::chaos::http::HttpFaultLayer;
    /// use tower::Layer;
    ///
    /// let svc = HttpFaultLayer::builder().rate(0.1).abort().build().unwrap().layer(5u8);
    /// assert_eq!(svc.into_inner(), 5);
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for HttpFaultInjection<S> {
    fn clone(&self) -> Self {
        // A clone shares the layer but not this service's pending decision.
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            decision: None,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for HttpFaultInjection<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpFaultInjection")
            .field("inner", &self.inner)
            .field("name", &self.shared.name)
            .field("decision", &self.decision)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HttpFaultInjection<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<FaultBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if decide_ready(&self.shared, &mut self.decision) {
            return Poll::Ready(Ok(()));
        }
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let decision = self.decision.take().unwrap_or_else(|| self.shared.decide());
        let Some(entry) = self.shared.entry(decision) else {
            return ResponseFuture::new(Kind::Called {
                future: self.inner.call(request),
            });
        };
        let kind = match &entry.action {
            Action::Status {
                status,
                retry_after,
            } => Kind::Status {
                status: *status,
                retry_after: retry_after.clone(),
            },
            Action::Abort => Kind::Abort,
            Action::Hang => Kind::Hang,
            Action::Latency(latency) => Kind::Delayed {
                future: Delayed::new(tokio::time::sleep(*latency), self.inner.call(request)),
            },
            // Never in this layer's list (its builder cannot add one).
            Action::Error(_) => {
                return ResponseFuture::new(Kind::Called {
                    future: self.inner.call(request),
                })
            }
        };
        self.shared.injected(entry);
        ResponseFuture::new(kind)
    }
}

pin_project! {
    /// Response future of [`HttpFaultInjection`]: the handler's response (at once, or
    /// after an injected delay), an injected status or abort, or a hang.
    ///
    /// ```
    /// use seawall::chaos::http::HttpFaultLayer;
    /// use tower::{Layer, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let mut svc = HttpFaultLayer::builder().rate(1.0).status(503).enabled(true).build().unwrap().layer(
    ///     tower::service_fn(|_req: http::Request<()>| async {
    ///         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    ///     }),
    /// );
    /// let future = svc.ready().await.unwrap().call(http::Request::new(()));
    /// assert_eq!(tokio::spawn(future).await.unwrap().unwrap().status(), 503);
    /// # }
    /// ```
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called {
            #[pin]
            future: F,
        },
        Delayed {
            #[pin]
            future: Delayed<F>,
        },
        Status {
            status: StatusCode,
            retry_after: Option<HeaderValue>,
        },
        Abort,
        Hang,
    }
}

impl<F> ResponseFuture<F> {
    #[inline]
    fn new(kind: Kind<F>) -> Self {
        Self { kind }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<FaultBody<B>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { future } => future
                .poll(cx)
                .map(|result| result.map(|response| response.map(FaultBody::inner))),
            KindProj::Delayed { future } => future
                .poll(cx)
                .map(|result| result.map(|response| response.map(FaultBody::inner))),
            KindProj::Status {
                status,
                retry_after,
            } => {
                let mut response = Response::new(FaultBody::empty());
                *response.status_mut() = *status;
                if let Some(value) = retry_after.take() {
                    response
                        .headers_mut()
                        .insert(http::header::RETRY_AFTER, value);
                }
                Poll::Ready(Ok(response))
            }
            KindProj::Abort => Poll::Ready(Ok(Response::new(FaultBody::aborted()))),
            KindProj::Hang => Poll::Pending,
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Called { .. } => "called",
            Kind::Delayed { .. } => "delayed",
            Kind::Status { .. } => "status",
            Kind::Abort => "abort",
            Kind::Hang => "hang",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// The response body of [`HttpFaultInjection`]: the handler's body unchanged (its
    /// errors boxed), the empty body of an injected status, or the body of an aborted
    /// response, which fails with [`InjectedFault`] on its first read so that the server
    /// drops the connection (HTTP/1) or resets the stream (HTTP/2).
    ///
    /// ```
    /// use http_body::Body;
    /// use http_body_util::BodyExt;
    /// use seawall::chaos::http::HttpFaultLayer;
    /// use seawall::chaos::InjectedFault;
    /// use tower::{Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let svc = HttpFaultLayer::builder().rate(1.0).abort().enabled(true).build().unwrap().layer(
    ///     tower::service_fn(|_req: http::Request<()>| async {
    ///         Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hi")))
    ///     }),
    /// );
    /// let body = svc.oneshot(http::Request::new(())).await.unwrap().into_body();
    /// assert!(!body.is_end_stream());
    /// let err = body.collect().await.unwrap_err();
    /// assert!(err.is::<InjectedFault>());
    /// # }
    /// ```
    pub struct FaultBody<B> {
        #[pin]
        kind: BodyKind<B>,
    }
}

pin_project! {
    #[project = BodyKindProj]
    enum BodyKind<B> {
        Inner {
            #[pin]
            body: B,
        },
        Empty,
        Aborted {
            failed: bool,
        },
    }
}

impl<B> FaultBody<B> {
    #[inline]
    fn inner(body: B) -> Self {
        Self {
            kind: BodyKind::Inner { body },
        }
    }

    fn empty() -> Self {
        Self {
            kind: BodyKind::Empty,
        }
    }

    fn aborted() -> Self {
        Self {
            kind: BodyKind::Aborted { failed: false },
        }
    }
}

impl<B> Body for FaultBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            BodyKindProj::Inner { body } => body
                .poll_frame(cx)
                .map(|frame| frame.map(|result| result.map_err(Into::into))),
            BodyKindProj::Empty => Poll::Ready(None),
            BodyKindProj::Aborted { failed } => {
                if *failed {
                    Poll::Ready(None)
                } else {
                    *failed = true;
                    Poll::Ready(Some(Err(Box::new(InjectedFault::new()))))
                }
            }
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Inner { body } => body.is_end_stream(),
            BodyKind::Empty => true,
            BodyKind::Aborted { failed } => *failed,
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Inner { body } => body.size_hint(),
            BodyKind::Empty => SizeHint::with_exact(0),
            BodyKind::Aborted { .. } => SizeHint::default(),
        }
    }
}

impl<B> fmt::Debug for FaultBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            BodyKind::Inner { .. } => "inner",
            BodyKind::Empty => "empty",
            BodyKind::Aborted { .. } => "aborted",
        };
        f.debug_struct("FaultBody")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}
