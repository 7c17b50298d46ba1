//! Deadlines that travel between services in request headers.
//!
//! On the client, [`PropagateDeadlineLayer`] writes what is left of the current
//! [`Deadline`] into each outgoing request (under a policy's attempt timeout, that is
//! the attempt's: the lesser of its timeout and what is left of the call's deadline, as
//! Envoy sends, so that a server stops working on an attempt the client has given up):
//! `grpc-timeout` on gRPC requests (`content-type: application/grpc...`), and a header
//! of your choice (default [`DEFAULT_HEADER`], `x-request-timeout-ms`, in whole
//! milliseconds, rounded down) on the others. A request with less than a millisecond left fails at once with
//! [`DeadlineExceeded`] and is not sent.
//!
//! On the server, [`ServerDeadlineLayer`] reads the incoming value, caps it (default
//! 30 s), and makes it the deadline of the handler: the handler's own outgoing calls,
//! made on the same task, inherit it (through [`Deadline::current`]), so a chain of
//! services shares one budget of time. The handler also finds it in the request's
//! extensions: the deadline that applies, the lesser of the incoming one and any
//! enclosing [`Deadline::scope`], as [`Deadline::current`] reports it. Garbage is
//! ignored and huge values are capped, never trusted.
//!
//! ```
//! use seawall::http::{PropagateDeadlineLayer, ServerDeadlineLayer};
//! use seawall::timeout::Deadline;
//! use std::time::Duration;
//! use tower::{Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), seawall::BoxError> {
//! // A handler that calls the next service with whatever time its caller gave it.
//! let next_hop = PropagateDeadlineLayer::new().layer(tower::service_fn(
//!     |request: http::Request<()>| async move {
//!         Ok::<_, seawall::BoxError>(request.headers()["x-request-timeout-ms"].clone())
//!     },
//! ));
//! let server = ServerDeadlineLayer::builder().build()?.layer(tower::service_fn(
//!     move |_incoming: http::Request<()>| {
//!         let next_hop = next_hop.clone();
//!         async move {
//!             tokio::time::sleep(Duration::from_millis(200)).await; // some work first
//!             next_hop.oneshot(http::Request::new(())).await
//!         }
//!     },
//! ));
//!
//! let incoming = http::Request::get("/").header("x-request-timeout-ms", "1000").body(())?;
//! assert_eq!(server.oneshot(incoming).await?, "800", "200 ms of the 1 s were spent here");
//! # Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::Request;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::{Layer, Service};

use crate::error::{ConfigError, DeadlineExceeded};
use crate::timeout::{after, current_instant, Deadline, Scoped};
use crate::BoxError;

/// The header carrying the remaining time on non-gRPC requests, unless configured
/// otherwise: whole milliseconds.
pub const DEFAULT_HEADER: &str = "x-request-timeout-ms";
/// gRPC's timeout header.
pub const GRPC_TIMEOUT: &str = "grpc-timeout";
/// The default cap on an incoming deadline.
pub const DEFAULT_MAX: Duration = Duration::from_secs(30);

/// gRPC allows at most 8 digits in a timeout value.
const GRPC_MAX_VALUE: u64 = 99_999_999;
/// The most milliseconds [`DEFAULT_HEADER`] holds: 19 digits, as [`parse_millis`] reads.
const MAX_MILLIS: u128 = 9_999_999_999_999_999_999;

/// Whether `request` is a gRPC request (`content-type: application/grpc`, with or
/// without a `+proto` style suffix).
fn is_grpc<B>(request: &Request<B>) -> bool {
    is_grpc_headers(request.headers())
}

/// Parse a `grpc-timeout` value: 1 to 8 ASCII digits and a unit (`H`, `M`, `S`, `m`,
/// `u`, `n`). Anything else is `None`.
///
/// ```
/// use http::HeaderValue;
/// use seawall::http::deadline::parse_grpc_timeout;
/// use std::time::Duration;
///
/// assert_eq!(parse_grpc_timeout(&HeaderValue::from_static("250m")), Some(Duration::from_millis(250)));
/// assert_eq!(parse_grpc_timeout(&HeaderValue::from_static("3S")), Some(Duration::from_secs(3)));
/// assert_eq!(parse_grpc_timeout(&HeaderValue::from_static("123456789m")), None, "9 digits");
/// assert_eq!(parse_grpc_timeout(&HeaderValue::from_static("-1S")), None);
/// ```
pub fn parse_grpc_timeout(value: &HeaderValue) -> Option<Duration> {
    let bytes = value.as_bytes();
    let (&unit, digits) = bytes.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0_u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Write `timeout` as a `grpc-timeout` value, in the finest unit that fits in 8 digits,
/// rounded down (a receiver is never given more time than is left).
///
/// ```
/// use seawall::http::deadline::format_grpc_timeout;
/// use std::time::Duration;
///
/// assert_eq!(format_grpc_timeout(Duration::from_millis(250)), "250000u");
/// assert_eq!(format_grpc_timeout(Duration::from_secs(3600)), "3600000m");
/// assert_eq!(format_grpc_timeout(Duration::MAX), "99999999H");
/// ```
pub fn format_grpc_timeout(timeout: Duration) -> HeaderValue {
    let units: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    let nanos = timeout.as_nanos();
    let (value, unit) = units
        .iter()
        .map(|&(per, unit)| (nanos / per, unit))
        .find(|&(value, _)| value <= u128::from(GRPC_MAX_VALUE))
        .unwrap_or((u128::from(GRPC_MAX_VALUE), 'H'));
    header_value(format_args!("{value}{unit}"))
}

/// Parse a whole number of milliseconds (at most 19 ASCII digits); anything else is
/// `None`.
///
/// ```
/// use http::HeaderValue;
/// use seawall::http::deadline::parse_millis;
/// use std::time::Duration;
///
/// assert_eq!(parse_millis(&HeaderValue::from_static("1500")), Some(Duration::from_millis(1500)));
/// assert_eq!(parse_millis(&HeaderValue::from_static("1.5")), None);
/// assert_eq!(parse_millis(&HeaderValue::from_static("")), None);
/// ```
pub fn parse_millis(value: &HeaderValue) -> Option<Duration> {
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > 19 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let millis = bytes
        .iter()
        .fold(0_u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(Duration::from_millis(millis))
}

/// The headers a deadline may not travel in: the request's framing and routing, which a
/// millisecond count would corrupt (or, read on a server, would turn a body length into
/// a deadline), and gRPC's own, whose values have formats of their own.
const RESERVED_HEADERS: [&str; 11] = [
    "connection",
    "content-encoding",
    "content-length",
    "content-type",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// `Ok` unless `header` is one a deadline may not travel in (see [`RESERVED_HEADERS`]).
fn check_header(component: &'static str, header: &HeaderName) -> Result<(), ConfigError> {
    // A `HeaderName` is always lowercase.
    let name = header.as_str();
    let reserved = RESERVED_HEADERS.contains(&name) || name.starts_with("grpc-");
    ConfigError::check(component, !reserved, "header", || {
        format!(
            "cannot carry a deadline (got `{name}`): it is a header of the request's framing \
             or of gRPC; use a header of its own, such as `{DEFAULT_HEADER}`"
        )
    })
}

/// A header value from ASCII digits and a unit: always valid.
fn header_value(text: std::fmt::Arguments<'_>) -> HeaderValue {
    let text = text.to_string();
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// Writes what is left of the call's [`Deadline`] into each outgoing request; see the
/// [module docs](self). Requests made with no deadline pass unchanged.
///
/// ```
/// use seawall::http::PropagateDeadlineLayer;
/// use seawall::timeout::Deadline;
/// use std::time::Duration;
/// use tower::{Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let client = PropagateDeadlineLayer::new().layer(tower::service_fn(
///     |request: http::Request<()>| async move { Ok::<_, seawall::BoxError>(request) },
/// ));
/// let grpc = http::Request::post("/pkg.Svc/Get")
///     .header("content-type", "application/grpc")
///     .body(())
///     .unwrap();
/// let sent = Deadline::after(Duration::from_millis(1500)).scope(client.oneshot(grpc)).await.unwrap();
/// assert_eq!(sent.headers()["grpc-timeout"], "1500000u");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PropagateDeadlineLayer {
    header: HeaderName,
}

impl PropagateDeadlineLayer {
    /// Write `grpc-timeout` on gRPC requests and [`DEFAULT_HEADER`] on others.
    pub fn new() -> Self {
        Self {
            header: HeaderName::from_static(DEFAULT_HEADER),
        }
    }

    /// Write the remaining milliseconds of non-gRPC requests into `header` instead.
    ///
    /// A header that a millisecond count would corrupt is a [`ConfigError`] (field
    /// `header`): the request's framing and routing (`content-type`, `content-length`,
    /// `transfer-encoding`, `host`, `connection` and the other hop-by-hop headers), and
    /// gRPC's own `grpc-*` headers, whose values have formats of their own.
    ///
    /// ```
    /// use http::HeaderName;
    /// use seawall::http::PropagateDeadlineLayer;
    ///
    /// let layer = PropagateDeadlineLayer::new().header(HeaderName::from_static("x-deadline-ms"))?;
    /// # let _ = layer;
    /// let err = PropagateDeadlineLayer::new().header(http::header::CONTENT_LENGTH).unwrap_err();
    /// assert_eq!((err.component(), err.field()), ("propagate_deadline", "header"));
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn header(mut self, header: HeaderName) -> Result<Self, ConfigError> {
        check_header("propagate_deadline", &header)?;
        self.header = header;
        Ok(self)
    }
}

impl Default for PropagateDeadlineLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for PropagateDeadlineLayer {
    type Service = PropagateDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateDeadline {
            inner,
            header: self.header.clone(),
        }
    }
}

/// The service made by [`PropagateDeadlineLayer`]; see there.
///
/// ```
/// use seawall::http::PropagateDeadlineLayer;
/// use seawall::timeout::Deadline;
/// use std::time::Duration;
/// use tower::{Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let client = PropagateDeadlineLayer::new().layer(tower::service_fn(
///     |_: http::Request<()>| async { Ok::<_, seawall::BoxError>("sent") },
/// ));
/// let deadline = Deadline::after(Duration::from_millis(10));
/// tokio::time::advance(Duration::from_millis(20)).await;
/// let error = deadline.scope(client.oneshot(http::Request::new(()))).await.unwrap_err();
/// assert!(seawall::error::is_rejection(&*error), "not sent: the deadline had passed");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PropagateDeadline<S> {
    inner: S,
    header: HeaderName,
}

impl<S, B> Service<Request<B>> for PropagateDeadline<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = PropagateFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if let Some(deadline) = current_instant() {
            let remaining = deadline.saturating_duration_since(Instant::now());
            // Less than a millisecond left would be written as 0 ms, which some servers
            // read as "no timeout": the call is as good as expired.
            if remaining < Duration::from_millis(1) {
                return PropagateFuture {
                    kind: PropagateKind::Rejected,
                };
            }
            let headers = request.headers_mut();
            if is_grpc_headers(headers) {
                // Keep a tighter value the caller set by hand.
                let tighter = headers
                    .get(GRPC_TIMEOUT)
                    .and_then(parse_grpc_timeout)
                    .is_some_and(|set| set <= remaining);
                if !tighter {
                    headers.insert(GRPC_TIMEOUT, format_grpc_timeout(remaining));
                }
            } else {
                let tighter = headers
                    .get(&self.header)
                    .and_then(parse_millis)
                    .is_some_and(|set| set <= remaining);
                if !tighter {
                    // At most the 19 digits a server reads (`parse_millis`): a deadline
                    // further away than that (317 million years) is sent as that.
                    let millis = remaining.as_millis().min(MAX_MILLIS);
                    headers.insert(self.header.clone(), header_value(format_args!("{millis}")));
                }
            }
        }
        PropagateFuture {
            kind: PropagateKind::Sent {
                future: self.inner.call(request),
            },
        }
    }
}

fn is_grpc_headers(headers: &http::HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

pin_project! {
    /// Response future of [`PropagateDeadline`].
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct PropagateFuture<F> {
        #[pin]
        kind: PropagateKind<F>,
    }
}

pin_project! {
    #[project = PropagateProj]
    #[derive(Debug)]
    enum PropagateKind<F> {
        // The deadline had passed: nothing was sent.
        Rejected,
        Sent { #[pin] future: F },
    }
}

impl<F, T, E> Future for PropagateFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            PropagateProj::Rejected => Poll::Ready(Err(DeadlineExceeded::before_send().into())),
            PropagateProj::Sent { future } => future.poll(cx).map_err(Into::into),
        }
    }
}

/// Reads the deadline an incoming request carries and makes it the deadline of its
/// handler; see the [module docs](self). Built with [`ServerDeadlineLayer::builder`].
///
/// ```
/// use seawall::http::ServerDeadlineLayer;
/// use seawall::timeout::Deadline;
/// use std::time::Duration;
/// use tower::{Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), seawall::BoxError> {
/// let server = ServerDeadlineLayer::builder()
///     .max(Duration::from_secs(5))
///     .build()?
///     .layer(tower::service_fn(|request: http::Request<()>| async move {
///         let from_extensions = request.extensions().get::<Deadline>().map(|d| d.remaining());
///         Ok::<_, seawall::BoxError>((Deadline::current().map(|d| d.remaining()), from_extensions))
///     }));
/// // A hostile caller asks for a day: it gets the 5 s cap.
/// let request = http::Request::get("/").header("x-request-timeout-ms", "86400000").body(())?;
/// let five = Some(Duration::from_secs(5));
/// assert_eq!(server.clone().oneshot(request).await?, (five, five));
/// // Garbage is ignored: no deadline.
/// let request = http::Request::get("/").header("x-request-timeout-ms", "soon").body(())?;
/// assert_eq!(server.oneshot(request).await?, (None, None));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ServerDeadlineLayer {
    header: HeaderName,
    max: Duration,
    default: Option<Duration>,
}

impl ServerDeadlineLayer {
    /// A builder: reads `grpc-timeout` and [`DEFAULT_HEADER`], caps at [`DEFAULT_MAX`]
    /// (30 s), and sets no deadline for requests that carry none.
    pub fn builder() -> ServerDeadlineBuilder {
        ServerDeadlineBuilder {
            header: HeaderName::from_static(DEFAULT_HEADER),
            max: DEFAULT_MAX,
            default: None,
        }
    }

    /// The deadline an incoming request asks for, capped, measured from `now`.
    fn deadline_of<B>(&self, request: &Request<B>, now: Instant) -> Option<Instant> {
        let headers = request.headers();
        let asked = if is_grpc(request) {
            headers.get(GRPC_TIMEOUT).and_then(parse_grpc_timeout)
        } else {
            headers.get(&self.header).and_then(parse_millis)
        };
        let timeout = asked.or(self.default)?.min(self.max);
        Some(after(now, timeout))
    }
}

/// Builds a [`ServerDeadlineLayer`]; every value is checked by
/// [`build`](Self::build).
///
/// ```
/// use seawall::http::ServerDeadlineLayer;
/// use std::time::Duration;
///
/// let err = ServerDeadlineLayer::builder().max(Duration::ZERO).build().unwrap_err();
/// assert_eq!(err.field(), "max");
/// ```
#[derive(Debug, Clone)]
pub struct ServerDeadlineBuilder {
    header: HeaderName,
    max: Duration,
    default: Option<Duration>,
}

impl ServerDeadlineBuilder {
    /// Read the remaining milliseconds of non-gRPC requests from `header`. A header of
    /// the request's framing or routing (`content-type`, `content-length`, `host`, the
    /// hop-by-hop headers) or of gRPC (`grpc-*`) is a [`ConfigError`] at
    /// [`build`](Self::build).
    pub fn header(mut self, header: HeaderName) -> Self {
        self.header = header;
        self
    }

    /// The longest deadline a caller may set (default 30 s): longer ones are cut to it.
    /// Zero is a [`ConfigError`] at [`build`](Self::build).
    pub fn max(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    /// The deadline of requests that carry none (default: none). Zero, or more than
    /// [`max`](Self::max), is a [`ConfigError`] at [`build`](Self::build).
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default = Some(timeout);
        self
    }

    /// The layer, or the first invalid value: `max` and `default_timeout` must be more
    /// than zero, `default_timeout` at most `max`, and `header` not one of the request's
    /// framing or of gRPC.
    pub fn build(self) -> Result<ServerDeadlineLayer, ConfigError> {
        const COMPONENT: &str = "server_deadline";
        check_header(COMPONENT, &self.header)?;
        ConfigError::check(COMPONENT, !self.max.is_zero(), "max", || {
            "must be more than zero".to_owned()
        })?;
        if let Some(default) = self.default {
            ConfigError::check(COMPONENT, !default.is_zero(), "default_timeout", || {
                "must be more than zero".to_owned()
            })?;
            ConfigError::check(COMPONENT, default <= self.max, "default_timeout", || {
                format!("{default:?} is more than max ({:?})", self.max)
            })?;
        }
        Ok(ServerDeadlineLayer {
            header: self.header,
            max: self.max,
            default: self.default,
        })
    }
}

impl<S> Layer<S> for ServerDeadlineLayer {
    type Service = ServerDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerDeadline {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`ServerDeadlineLayer`]; see there.
///
/// ```
/// use seawall::http::ServerDeadlineLayer;
/// use seawall::timeout::Deadline;
/// use std::time::Duration;
/// use tower::{Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), seawall::BoxError> {
/// let server = ServerDeadlineLayer::builder().build()?.layer(tower::service_fn(
///     |_: http::Request<()>| async { Ok::<_, seawall::BoxError>(Deadline::current().map(|d| d.remaining())) },
/// ));
/// let grpc = http::Request::post("/pkg.Svc/Get")
///     .header("content-type", "application/grpc+proto")
///     .header("grpc-timeout", "750m")
///     .body(())?;
/// assert_eq!(server.oneshot(grpc).await?, Some(Duration::from_millis(750)));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ServerDeadline<S> {
    inner: S,
    layer: ServerDeadlineLayer,
}

impl<S, B> Service<Request<B>> for ServerDeadline<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Scoped<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let asked = self.layer.deadline_of(&request, Instant::now());
        // The deadline that applies to the handler: what the request asks for, or an
        // enclosing one if that is earlier (a scope never extends the one it runs under).
        // The extensions carry that one, as `Deadline::current` reports it.
        let applies = match (asked, current_instant()) {
            (Some(asked), Some(enclosing)) => Some(asked.min(enclosing)),
            (asked, enclosing) => asked.or(enclosing),
        };
        if let Some(deadline) = applies {
            request.extensions_mut().insert(Deadline::at(deadline));
        }
        match asked {
            Some(deadline) => {
                let inner = &mut self.inner;
                let future = crate::timeout::in_scope(deadline, || inner.call(request));
                Scoped::new(future, Some(deadline))
            }
            None => Scoped::new(self.inner.call(request), None),
        }
    }
}
