//! The HTTP status classifier.

use std::any::Any;
use std::error::Error;
use std::time::SystemTime;

use http::{header::RETRY_AFTER, Response, StatusCode};

use super::pushback::retry_after;
use crate::classify::{Classification, Classify, NoEos, Verdict};

/// Classifies HTTP responses by status, and transport errors, for the breaker (health)
/// and the retry layer (retryable, pushback).
///
/// | result | health | retried (default) |
/// |---|---|---|
/// | 1xx, 2xx, 3xx | success | no |
/// | 408 Request Timeout, 429 Too Many Requests | failure | yes |
/// | other 4xx (400, 401, 404, 409, ...) | ignored: the caller's fault | no |
/// | 502, 503, 504 | failure | yes |
/// | 500 and other 5xx | failure | no; yes with [`retry_all_server_errors`](Self::retry_all_server_errors) |
/// | a status over 599 (not HTTP) | failure | no |
/// | `Err`: a local rejection by a seawall layer | ignored | no |
/// | `Err`: `DeadlineExceeded` while the request was out | failure | no: the call's time is spent |
/// | `Err`: anything else (connect, reset, attempt timeout `Elapsed`) | failure | yes |
///
/// A retryable response that carries `Retry-After` (delta-seconds or an HTTP-date,
/// parsed by [`retry_after`](super::pushback::retry_after)) asks the retry layer to wait
/// that long, capped by its `max_pushback`; without the header the retry layer's backoff
/// decides. Only a retryable response is read, so a 5xx the classifier does not retry
/// never costs a header lookup.
///
/// Why these rules: 5xx and transport errors are the downstream failing; 408 and 429
/// are the server saying it could not or would not serve now, which is worth counting
/// and worth retrying later; the other 4xx are the caller's own mistakes, which say
/// nothing about the downstream's health and fail again if retried. Only the gateway
/// statuses (502, 503, 504: the request most likely never reached a working origin) are
/// retried by default, as Envoy's `gateway-error` retry policy does; a plain 500 is often
/// a deterministic bug that a retry only repeats, so retrying every 5xx (Envoy's `5xx`
/// policy) is an opt-in. Whether a request may be sent twice at all is the retry
/// layer's [`IdempotentReplay`](crate::http::IdempotentReplay) decision, not this one.
///
/// ```
/// use seawall::classify::{Classify, Health, Verdict};
/// use seawall::http::StatusClassifier;
/// use std::time::Duration;
///
/// let classifier = StatusClassifier::new();
/// let judge = |response: http::Response<()>| {
///     match classifier.classify(&Ok::<_, std::io::Error>(response)) {
///         Verdict::Classified(c) => c,
///         Verdict::AtEndOfStream(never) => match never {},
///     }
/// };
///
/// let busy = http::Response::builder().status(429).header("retry-after", "3").body(()).unwrap();
/// let c = judge(busy);
/// assert!(c.is_failure() && c.is_retryable());
/// assert_eq!(c.pushback(), Some(Duration::from_secs(3)));
///
/// let missing = http::Response::builder().status(404).body(()).unwrap();
/// assert_eq!(judge(missing).health(), Health::Ignored);
///
/// let bug = judge(http::Response::builder().status(500).body(()).unwrap());
/// assert!(bug.is_failure() && !bug.is_retryable());
/// ```
///
/// With a retry layer and a breaker (the canonical order: retry outside the breaker):
///
/// ```
/// use seawall::circuit_breaker::CircuitBreakerLayer;
/// use seawall::http::StatusClassifier;
/// use seawall::retry::RetryLayer;
/// use tower::ServiceBuilder;
///
/// # fn main() -> Result<(), seawall::error::ConfigError> {
/// let client = ServiceBuilder::new()
///     .layer(RetryLayer::builder().classifier(StatusClassifier::new()).build()?)
///     .layer(CircuitBreakerLayer::builder().classifier(StatusClassifier::new()).build()?)
///     .service(tower::service_fn(|_req: http::Request<()>| async {
///         Ok::<_, std::io::Error>(http::Response::new(()))
///     }));
/// # let _ = client;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct StatusClassifier {
    retry_all_server_errors: bool,
}

impl StatusClassifier {
    /// The rules in the table above.
    ///
    /// ```
    /// use seawall::http::StatusClassifier;
    ///
    /// assert_eq!(StatusClassifier::new(), StatusClassifier::default());
    /// ```
    pub const fn new() -> Self {
        Self {
            retry_all_server_errors: false,
        }
    }

    /// Retry every 5xx, 500 included (Envoy's `5xx` retry policy), not only 502, 503 and
    /// 504. Still failures for health either way.
    ///
    /// ```
    /// use http::StatusCode;
    /// use seawall::http::StatusClassifier;
    ///
    /// let c = StatusClassifier::new().retry_all_server_errors();
    /// assert!(c.classify_status(StatusCode::INTERNAL_SERVER_ERROR).is_retryable());
    /// assert!(!StatusClassifier::new().classify_status(StatusCode::INTERNAL_SERVER_ERROR).is_retryable());
    /// ```
    #[must_use]
    pub const fn retry_all_server_errors(mut self) -> Self {
        self.retry_all_server_errors = true;
        self
    }

    /// The classification of a status alone, without pushback. Use it (with
    /// [`classify_response`](Self::classify_response) and
    /// [`classify_error`](Self::classify_error)) to build your own rules in a
    /// [`classify_fn`](crate::classify::classify_fn).
    ///
    /// ```
    /// use http::StatusCode;
    /// use seawall::classify::Health;
    /// use seawall::http::StatusClassifier;
    ///
    /// let c = StatusClassifier::new();
    /// assert!(c.classify_status(StatusCode::OK).is_success());
    /// assert!(c.classify_status(StatusCode::REQUEST_TIMEOUT).is_retryable());
    /// assert_eq!(c.classify_status(StatusCode::CONFLICT).health(), Health::Ignored);
    /// assert!(c.classify_status(StatusCode::BAD_GATEWAY).is_retryable());
    /// ```
    pub const fn classify_status(&self, status: StatusCode) -> Classification {
        match status.as_u16() {
            0..=399 => Classification::success(),
            408 | 429 => Classification::failure(),
            400..=499 => Classification::ignored(),
            502..=504 => Classification::failure(),
            500..=599 => Classification::failure().retryable(self.retry_all_server_errors),
            _ => Classification::failure().retryable(false),
        }
    }

    /// The classification of a response: its status, and for a retryable one the
    /// `Retry-After` delay, measured from [`SystemTime::now`] when it is a date.
    ///
    /// ```
    /// use seawall::http::StatusClassifier;
    /// use std::time::Duration;
    ///
    /// let unavailable = http::Response::builder()
    ///     .status(503)
    ///     .header("retry-after", "120")
    ///     .body(())
    ///     .unwrap();
    /// let c = StatusClassifier::new().classify_response(&unavailable);
    /// assert_eq!(c.pushback(), Some(Duration::from_secs(120)));
    /// ```
    pub fn classify_response<B>(&self, response: &Response<B>) -> Classification {
        self.classify_head(response.status(), response.headers())
    }

    /// The classification of a response from its status and headers alone, for clients
    /// whose response type is not `http::Response` (reqwest's): as
    /// [`classify_response`](Self::classify_response).
    ///
    /// ```
    /// use http::{HeaderMap, StatusCode};
    /// use seawall::http::StatusClassifier;
    /// use std::time::Duration;
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert("retry-after", "3".parse().unwrap());
    /// let c = StatusClassifier::new().classify_head(StatusCode::TOO_MANY_REQUESTS, &headers);
    /// assert_eq!(c.pushback(), Some(Duration::from_secs(3)));
    /// ```
    pub fn classify_head(
        &self,
        status: http::StatusCode,
        headers: &http::HeaderMap,
    ) -> Classification {
        let classification = self.classify_status(status);
        if !classification.is_retryable() {
            return classification;
        }
        match headers
            .get(RETRY_AFTER)
            .and_then(|value| retry_after(value, SystemTime::now()))
        {
            Some(delay) => classification.with_pushback(delay),
            None => classification,
        }
    }

    /// The classification of an error from the inner service (the same for the gRPC
    /// classifier): a local rejection by a seawall layer below (an open breaker, a full
    /// bulkhead, a deadline spent before sending) is ignored and not retried; a
    /// `DeadlineExceeded` while the request was out is a failure that is not retried
    /// (the call has no time left for another attempt); anything else (a connect error,
    /// a reset, an attempt timeout `Elapsed`) is a retryable failure. A [`BoxError`]
    /// (or another boxed error) is searched along its `source()` chain.
    ///
    /// [`BoxError`]: crate::BoxError
    ///
    /// ```
    /// use seawall::http::StatusClassifier;
    /// use seawall::BoxError;
    ///
    /// let reset: BoxError = "connection reset by peer".into();
    /// let c = StatusClassifier::classify_error(&reset);
    /// assert!(c.is_failure() && c.is_retryable());
    /// ```
    pub fn classify_error<E: 'static>(error: &E) -> Classification {
        if crate::error::is_rejection_any(error) {
            return Classification::ignored();
        }
        #[cfg(feature = "timeout")]
        if chain_has::<crate::error::DeadlineExceeded, E>(error) {
            return Classification::failure().retryable(false);
        }
        Classification::failure()
    }
}

impl<B, E: 'static> Classify<Response<B>, E> for StatusClassifier {
    type Eos = NoEos;

    #[inline]
    fn classify(&self, result: &Result<Response<B>, E>) -> Verdict<NoEos> {
        Verdict::Classified(match result {
            Ok(response) => self.classify_response(response),
            Err(error) => Self::classify_error(error),
        })
    }
}

/// Whether `error` is a `T`, or is a boxed error with a `T` in its `source()` chain.
#[cfg_attr(not(feature = "timeout"), allow(dead_code))]
fn chain_has<T: Error + 'static, E: 'static>(error: &E) -> bool {
    let any = error as &dyn Any;
    if any.is::<T>() {
        return true;
    }
    let mut next: Option<&(dyn Error + 'static)> =
        if let Some(boxed) = any.downcast_ref::<crate::BoxError>() {
            Some(&**boxed)
        } else if let Some(boxed) = any.downcast_ref::<Box<dyn Error + Send + 'static>>() {
            Some(&**boxed)
        } else if let Some(boxed) = any.downcast_ref::<Box<dyn Error + 'static>>() {
            Some(&**boxed)
        } else {
            None
        };
    while let Some(err) = next {
        if err.is::<T>() {
            return true;
        }
        next = err.source();
    }
    false
}
