//! gRPC classification: the status of each call, whether it comes in the response
//! headers or in the trailers at the end of the stream, and the server's pushback.
//!
//! gRPC runs over HTTP/2, so a gRPC client (a tonic `Channel`, a hyper client) is a
//! tower service of `http::Response<B>`, and [`GrpcClassifier`] is a [`Classify`] for
//! it:
//!
//! - **trailers-only**: a response whose headers carry `grpc-status` (a call that failed
//!   before sending any message, or a server shedding load) is classified at once;
//! - **not gRPC**: a non-200 HTTP status without `grpc-status` (an HTTP proxy or load
//!   balancer answered) is read as the gRPC code the spec maps it to
//!   ([`Code::from_http_status`]: 502, 503, 504 and 429 are `UNAVAILABLE`) and classified
//!   at once;
//! - **streamed**: otherwise the status comes in the trailers. The classifier answers
//!   [`Verdict::AtEndOfStream`] and the layer (a circuit breaker) gets back a response
//!   whose body is a [`GrpcBody`]: it watches the body's frames and records the call's
//!   outcome exactly once: when the trailers arrive (by their `grpc-status`), when the
//!   body ends without trailers (a protocol error: `UNKNOWN`), or when the body fails (a
//!   failure). A body dropped before its end records nothing: the call counts as
//!   nothing, and a half-open probe slot it held is given back.
//!
//! # What counts
//!
//! | code | health | retried (default) |
//! |---|---|---|
//! | `OK` | success | no |
//! | `UNAVAILABLE` | failure | yes |
//! | `RESOURCE_EXHAUSTED` | failure | only with a `grpc-retry-pushback-ms` of 0 or more |
//! | `DEADLINE_EXCEEDED`, `INTERNAL`, `UNKNOWN` | failure | no |
//! | any other (`INVALID_ARGUMENT`, `NOT_FOUND`, `PERMISSION_DENIED`, ...) | ignored: the caller's fault | no |
//! | `Err` from the transport | as [`StatusClassifier::classify_error`](crate::http::StatusClassifier::classify_error) | |
//!
//! The failures are those of the design's classification rules; the retry rules follow
//! Google's AIP-194 ("clients should retry UNAVAILABLE"; `DEADLINE_EXCEEDED` and
//! `INTERNAL` are not retried; `RESOURCE_EXHAUSTED` is generally not, since it may mean a
//! quota that stays spent for hours) and the gRPC retry design (gRFC A6): a server that
//! sends `grpc-retry-pushback-ms` with a value of 0 or more is asked to be retried after
//! that delay, and one with a negative or unreadable value asks not to be retried at
//! all. Seawall's own [`ShedLoadLayer`](crate::http::ShedLoadLayer) sheds gRPC calls with
//! `RESOURCE_EXHAUSTED` and a pushback, so a shed call is retried once the server asked.
//! Change the sets with [`GrpcClassifier::failure_codes`] and
//! [`GrpcClassifier::retryable_codes`].
//!
//! # Retries and trailers
//!
//! A retry layer decides when the response arrives, so it can only act on a status that
//! is in the headers (trailers-only responses, which is how servers answer calls that
//! fail before sending a message) or in the HTTP status. A status in the trailers
//! arrives after the response went back to the caller: it counts for the breaker, but
//! no retry can act on it.
//!
//! Which calls may be sent again at all is [`GrpcReplay`]'s decision (the replay that
//! comes with [`GrpcClassifier`] in a policy or a retry layer): gRFC A6's rules, a
//! method declared idempotent, or a failure that shows the server never processed the
//! call (see [`GrpcClientLayer`]).
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use seawall::circuit_breaker::{CircuitBreakerLayer, State};
//! use seawall::grpc::GrpcClassifier;
//! use tower::{Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let breaker = CircuitBreakerLayer::builder()
//!     .without_failure_rate()
//!     .consecutive_failures(1)
//!     .classifier(GrpcClassifier::new())
//!     .build()
//!     .unwrap();
//! let handle = breaker.handle();
//! let svc = breaker.layer(tower::service_fn(|_req: http::Request<()>| async {
//!     // A message, then trailers with UNAVAILABLE.
//!     let mut trailers = http::HeaderMap::new();
//!     trailers.insert("grpc-status", http::HeaderValue::from_static("14"));
//!     let body = Full::new(Bytes::from("message")).with_trailers(async { Some(Ok(trailers)) });
//!     Ok::<_, std::convert::Infallible>(http::Response::new(body))
//! }));
//!
//! let response = svc.oneshot(http::Request::new(())).await.unwrap();
//! assert_eq!(handle.state(), State::Closed, "the status is not known yet");
//! let body = response.into_body().collect().await.unwrap();
//! assert_eq!(body.trailers().unwrap()["grpc-status"], "14");
//! assert_eq!(handle.state(), State::Open, "UNAVAILABLE in the trailers");
//! # }
//! ```

mod body;
#[cfg(all(feature = "retry", feature = "timeout"))]
mod client;
mod code;
#[cfg(feature = "retry")]
mod replay;

pub use self::body::GrpcBody;
#[cfg(all(feature = "retry", feature = "timeout"))]
pub use self::client::{GrpcClient, GrpcClientLayer, MapRequestBody};
pub use self::code::{Code, GRPC_STATUS};
#[cfg(feature = "retry")]
pub use self::replay::GrpcReplay;

use http::{header::RETRY_AFTER, HeaderMap, Response, StatusCode};

use self::code::CodeSet;
use crate::classify::{Classification, Classify, ClassifyEos, RecordOutcome, Verdict};
use crate::http::pushback::{grpc_retry_pushback, retry_after, Pushback};
use crate::http::StatusClassifier;

/// The header (or trailer) in which a gRPC server asks the client to wait before
/// retrying, or not to retry (gRFC A6); parsed by
/// [`grpc_retry_pushback`].
///
/// ```
/// use seawall::grpc::{GrpcClassifier, GRPC_RETRY_PUSHBACK_MS, GRPC_STATUS};
/// use std::time::Duration;
///
/// let mut trailers = http::HeaderMap::new();
/// trailers.insert(GRPC_STATUS, http::HeaderValue::from_static("14"));
/// trailers.insert(GRPC_RETRY_PUSHBACK_MS, http::HeaderValue::from_static("250"));
/// let c = GrpcClassifier::new().classify_trailers(&trailers);
/// assert_eq!(c.pushback(), Some(Duration::from_millis(250)));
/// ```
pub const GRPC_RETRY_PUSHBACK_MS: &str = "grpc-retry-pushback-ms";

/// Classifies gRPC calls by status code, in the headers or at the end of the stream;
/// see the [module docs](self) for the rules and their sources.
///
/// ```
/// use seawall::classify::{Classify, Health, Verdict};
/// use seawall::grpc::GrpcClassifier;
///
/// let trailers_only = http::Response::builder()
///     .header("grpc-status", "5") // NOT_FOUND
///     .body(())
///     .unwrap();
/// match GrpcClassifier::new().classify(&Ok::<_, std::io::Error>(trailers_only)) {
///     Verdict::Classified(c) => assert_eq!(c.health(), Health::Ignored),
///     Verdict::AtEndOfStream(_) => unreachable!("the status was in the headers"),
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GrpcClassifier {
    failures: CodeSet,
    retryable: CodeSet,
    retry_pushed_back_resource_exhausted: bool,
}

impl Default for GrpcClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl GrpcClassifier {
    /// The default rules: failures are `UNAVAILABLE`, `DEADLINE_EXCEEDED`,
    /// `RESOURCE_EXHAUSTED`, `INTERNAL` and `UNKNOWN`; `UNAVAILABLE` is retried, and so
    /// is `RESOURCE_EXHAUSTED` when the server sent a pushback of 0 or more.
    ///
    /// ```
    /// use seawall::grpc::{Code, GrpcClassifier};
    ///
    /// let c = GrpcClassifier::new();
    /// assert!(c.classify_code(Code::Internal, None).is_failure());
    /// assert!(!c.classify_code(Code::Internal, None).is_retryable());
    /// ```
    pub const fn new() -> Self {
        Self {
            failures: CodeSet::of(&[
                Code::Unavailable,
                Code::DeadlineExceeded,
                Code::ResourceExhausted,
                Code::Internal,
                Code::Unknown,
            ]),
            retryable: CodeSet::of(&[Code::Unavailable]),
            retry_pushed_back_resource_exhausted: true,
        }
    }

    /// The codes that count as failures of the downstream (replacing the default set).
    /// `OK` is always a success; every other code not listed is ignored.
    ///
    /// ```
    /// use seawall::classify::Health;
    /// use seawall::grpc::{Code, GrpcClassifier};
    ///
    /// // Count only UNAVAILABLE against the downstream.
    /// let c = GrpcClassifier::new().failure_codes(&[Code::Unavailable]);
    /// assert_eq!(c.classify_code(Code::Internal, None).health(), Health::Ignored);
    /// ```
    #[must_use]
    pub const fn failure_codes(mut self, codes: &[Code]) -> Self {
        self.failures = CodeSet::of(codes);
        self
    }

    /// The codes a retry may help with (replacing the default set, `UNAVAILABLE`),
    /// whether they are failures or ignored. `OK` is never retried, and a negative
    /// `grpc-retry-pushback-ms` forbids a retry whatever the code.
    ///
    /// ```
    /// use seawall::grpc::{Code, GrpcClassifier};
    ///
    /// // Also retry ABORTED (a concurrency conflict), without counting it as a failure.
    /// let c = GrpcClassifier::new().retryable_codes(&[Code::Unavailable, Code::Aborted]);
    /// let aborted = c.classify_code(Code::Aborted, None);
    /// assert!(aborted.is_retryable() && !aborted.is_failure());
    /// ```
    #[must_use]
    pub const fn retryable_codes(mut self, codes: &[Code]) -> Self {
        self.retryable = CodeSet::of(codes);
        self
    }

    /// Whether a `RESOURCE_EXHAUSTED` that comes with a `grpc-retry-pushback-ms` of 0
    /// or more is retried after that delay (default `true`: the server said when to
    /// come back, as [`ShedLoadLayer`](crate::http::ShedLoadLayer) does). Without a
    /// pushback it is retried only if it is in
    /// [`retryable_codes`](Self::retryable_codes).
    ///
    /// ```
    /// use seawall::grpc::{Code, GrpcClassifier};
    /// use seawall::http::pushback::Pushback;
    /// use std::time::Duration;
    ///
    /// let pushback = Some(Pushback::After(Duration::from_millis(250)));
    /// let c = GrpcClassifier::new();
    /// assert!(c.classify_code(Code::ResourceExhausted, pushback).is_retryable());
    /// let c = c.retry_pushed_back_resource_exhausted(false);
    /// assert!(!c.classify_code(Code::ResourceExhausted, pushback).is_retryable());
    /// ```
    #[must_use]
    pub const fn retry_pushed_back_resource_exhausted(mut self, retry: bool) -> Self {
        self.retry_pushed_back_resource_exhausted = retry;
        self
    }

    /// The classification of a code, with the server's pushback if it sent one.
    ///
    /// ```
    /// use seawall::grpc::{Code, GrpcClassifier};
    /// use seawall::http::pushback::Pushback;
    /// use std::time::Duration;
    ///
    /// let c = GrpcClassifier::new();
    /// let later = c.classify_code(Code::Unavailable, Some(Pushback::After(Duration::from_secs(1))));
    /// assert_eq!(later.pushback(), Some(Duration::from_secs(1)));
    /// let never = c.classify_code(Code::Unavailable, Some(Pushback::DoNotRetry));
    /// assert!(never.is_failure() && !never.is_retryable());
    /// assert!(c.classify_code(Code::Ok, None).is_success());
    /// ```
    pub const fn classify_code(&self, code: Code, pushback: Option<Pushback>) -> Classification {
        if matches!(code, Code::Ok) {
            return Classification::success();
        }
        let base = if self.failures.contains(code) {
            Classification::failure()
        } else {
            Classification::ignored()
        };
        let listed = self.retryable.contains(code);
        match pushback {
            None => base.retryable(listed),
            Some(Pushback::DoNotRetry) => base.retryable(false),
            Some(Pushback::After(delay)) => {
                let invited = self.retry_pushed_back_resource_exhausted
                    && matches!(code, Code::ResourceExhausted);
                if listed || invited {
                    base.retryable(true).with_pushback(delay)
                } else {
                    base.retryable(false)
                }
            }
        }
    }

    /// The classification of a call from its trailers (or the headers of a
    /// trailers-only response): their `grpc-status` and `grpc-retry-pushback-ms`.
    /// Trailers without a `grpc-status` are a protocol error, read as `UNKNOWN`.
    ///
    /// ```
    /// use seawall::grpc::GrpcClassifier;
    ///
    /// let mut trailers = http::HeaderMap::new();
    /// trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    /// assert!(GrpcClassifier::new().classify_trailers(&trailers).is_success());
    /// assert!(GrpcClassifier::new().classify_trailers(&http::HeaderMap::new()).is_failure());
    /// ```
    pub fn classify_trailers(&self, trailers: &HeaderMap) -> Classification {
        let code = Code::from_headers(trailers).unwrap_or(Code::Unknown);
        self.classify_code(code, pushback(trailers))
    }

    /// The classification of a response from its headers alone, or `None` when the
    /// status will come in the trailers (an HTTP 200 without `grpc-status`).
    ///
    /// ```
    /// use seawall::grpc::GrpcClassifier;
    ///
    /// let c = GrpcClassifier::new();
    /// let streamed = http::Response::new(());
    /// assert!(c.classify_headers(&streamed).is_none());
    /// let proxy = http::Response::builder().status(502).body(()).unwrap();
    /// assert!(c.classify_headers(&proxy).unwrap().is_retryable(), "UNAVAILABLE");
    /// ```
    pub fn classify_headers<B>(&self, response: &Response<B>) -> Option<Classification> {
        let headers = response.headers();
        if let Some(code) = Code::from_headers(headers) {
            // grpc-status, when present, must be used (http-grpc-status-mapping.md).
            return Some(self.classify_code(code, pushback(headers)));
        }
        let status = response.status();
        if status == StatusCode::OK {
            return None;
        }
        // An HTTP intermediary answered: its status stands for the gRPC code, and a
        // `Retry-After` (on 429 or 503) for the pushback.
        let code = Code::from_http_status(status);
        let pushback = pushback(headers).or_else(|| {
            headers
                .get(RETRY_AFTER)
                .and_then(|value| retry_after(value, std::time::SystemTime::now()))
                .map(Pushback::After)
        });
        Some(self.classify_code(code, pushback))
    }
}

/// The server's `grpc-retry-pushback-ms`, if it sent one.
fn pushback(headers: &HeaderMap) -> Option<Pushback> {
    headers.get(GRPC_RETRY_PUSHBACK_MS).map(grpc_retry_pushback)
}

impl<B, E: 'static> Classify<Response<B>, E> for GrpcClassifier {
    type Eos = GrpcEos;

    #[inline]
    fn classify(&self, result: &Result<Response<B>, E>) -> Verdict<GrpcEos> {
        match result {
            Ok(response) => match self.classify_headers(response) {
                Some(classification) => Verdict::Classified(classification),
                None => Verdict::AtEndOfStream(GrpcEos { classifier: *self }),
            },
            Err(error) => Verdict::Classified(StatusClassifier::classify_error(error)),
        }
    }
}

/// The end-of-stream half of [`GrpcClassifier`]: wraps a streamed response's body in a
/// [`GrpcBody`] that records the call's outcome from its trailers.
///
/// A layer gets one from [`GrpcClassifier`]'s verdict; call
/// [`defer`](ClassifyEos::defer) yourself only to write a layer of your own.
///
/// ```
/// use seawall::classify::{Classify, Verdict};
/// use seawall::grpc::GrpcClassifier;
///
/// let streamed = http::Response::new(()); // 200, no grpc-status yet
/// let verdict = GrpcClassifier::new().classify(&Ok::<_, std::io::Error>(streamed));
/// assert!(matches!(verdict, Verdict::AtEndOfStream(_)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcEos {
    classifier: GrpcClassifier,
}

impl<B> ClassifyEos<Response<B>> for GrpcEos {
    type Response<R: RecordOutcome> = Response<GrpcBody<B, R>>;

    #[inline]
    fn defer<R: RecordOutcome>(self, response: Response<B>, recorder: R) -> Self::Response<R> {
        response.map(|body| GrpcBody::new(body, Some((recorder, self.classifier))))
    }

    #[inline]
    fn passthrough<R: RecordOutcome>(response: Response<B>) -> Self::Response<R> {
        response.map(|body| GrpcBody::new(body, None))
    }
}
