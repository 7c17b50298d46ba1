//! A [`reqwest::Client`] behind a policy, in one line (feature `reqwest`).
//!
//! `reqwest::Client` is a tower `Service<reqwest::Request>` (its error is
//! [`reqwest::Error`]), so any seawall layer, or a whole
//! [`Policy`], wraps it directly. This module supplies what the
//! layers need to know about reqwest:
//!
//! - [`ReqwestClassifier`]: responses by status, with `Retry-After` pushback, as
//!   [`StatusClassifier`] does for `http::Response`; reqwest's errors by kind (connect,
//!   timeout, body, decode, ...); see its table.
//! - [`ReqwestReplay`] (feature `retry`): copies a request for a retry or a hedge with
//!   [`reqwest::Request::try_clone`], and only when sending it twice is safe: an idempotent
//!   method, or an `Idempotency-Key` header (or an explicit opt-in).
//! - [`policy`] (feature `policy`): `Policy::builder(name)` with both already set; and
//!   [`ClientExt::with_policy`], [`PolicyClient`] and
//!   [`PolicyService::execute`](crate::policy::PolicyService::execute) to wrap a client
//!   and send requests through it.
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use axum::http::StatusCode;
//! use seawall::reqwest::ClientExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), seawall::BoxError> {
//! // A server on 127.0.0.1 that answers 503 twice, then 200.
//! let hits = Arc::new(AtomicU32::new(0));
//! let counter = hits.clone();
//! let app = axum::Router::new().route("/stock", axum::routing::get(move || async move {
//!     match counter.fetch_add(1, Ordering::SeqCst) {
//!         0 | 1 => StatusCode::SERVICE_UNAVAILABLE,
//!         _ => StatusCode::OK,
//!     }
//! }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let url = format!("http://{}/stock", listener.local_addr()?);
//! let server = tokio::spawn(async move { axum::serve(listener, app).await });
//!
//! // (`no_proxy`: to 127.0.0.1 directly, whatever proxy the environment names.)
//! let client = reqwest::Client::builder().no_proxy().build()?;
//! // The one line: a client of "inventory" with every stage of the canonical stack.
//! let inventory = client.with_policy(&seawall::reqwest::policy("inventory").build()?);
//!
//! // A GET is idempotent: the two 503s are retried (3 attempts in all, by default).
//! let response = inventory.execute(inventory.get_ref().get(&url).build()?).await?;
//! assert_eq!(response.status(), 200);
//! assert_eq!(hits.load(Ordering::SeqCst), 3);
//! server.abort();
//! # Ok(()) }
//! ```
//!
//! # What the policy sees, and what it does not
//!
//! - **The stages' futures end when the response headers arrive.** The attempt timeout,
//!   the deadline, the breaker and the bulkhead (with the policy's default
//!   [`OnResponse`]) are done with a call when `reqwest` hands back the
//!   [`reqwest::Response`]; reading its body (`bytes()`, `json()`, `chunk()`) is the
//!   caller's, after the policy. A server that sends its headers and then stalls the body
//!   is not caught by the attempt timeout: bound the body with reqwest's own
//!   [`timeout`](reqwest::ClientBuilder::timeout) (which covers the body too) or
//!   [`read_timeout`](reqwest::ClientBuilder::read_timeout), or a
//!   `tokio::time::timeout` around the read. A body error then reaches the caller, not
//!   the breaker. (`seawall::http::UntilBodyEnd` holds a permit until the body ends,
//!   but only for `http::Response` bodies; use hyper's client for that.)
//! - **The classifier sees the error as the stages below box it.** Inside a policy,
//!   results reach the classifier as `Result<reqwest::Response, BoxError>`: the attempt
//!   timeout's [`Elapsed`](crate::error::Elapsed), a local rejection such as
//!   [`BulkheadFull`](crate::error::BulkheadFull), or a boxed `reqwest::Error`.
//!   [`ReqwestClassifier`] looks for a `reqwest::Error` in the error's `source()`
//!   chain, so it classifies the same error the same way boxed or not. The caller gets
//!   the `BoxError` too: `err.downcast_ref::<reqwest::Error>()` gives reqwest's.
//! - **A 503 or 429 that is not retried again is a response, not an error.** When the
//!   attempts, the budget or the deadline run out, the caller gets the last response,
//!   status and all, as reqwest would have returned it.
//! - **Do not stack retries.** Leave reqwest's own retry policy
//!   ([`ClientBuilder::retry`](reqwest::ClientBuilder::retry)) at its default (only
//!   protocol-level refusals that are known to be safe) when a policy retries: two retry
//!   layers multiply their attempts, and reqwest's are not charged to the policy's
//!   budget.
//! - **reqwest's timeouts are failures too.** A `connect_timeout` or `timeout` set on the
//!   client fails an attempt with a `reqwest::Error` whose `is_timeout()` is true: a
//!   retryable failure, like the policy's own attempt timeout.

use std::any::Any;
use std::error::Error;

use crate::classify::{Classification, Classify, NoEos, Verdict};
use crate::http::StatusClassifier;

#[cfg(feature = "policy")]
use crate::bulkhead::OnResponse;
#[cfg(feature = "policy")]
use crate::policy::{Policy, PolicyBuilder, PolicyService};
#[cfg(feature = "policy")]
use crate::retry::backoff::ExponentialBackoff;
#[cfg(feature = "retry")]
use crate::retry::replay::{DefaultReplay, Replay};

/// Classifies the results of a [`reqwest::Client`]: responses by status, errors by
/// kind; for the breaker (health) and the retry and hedge stages (retryable, pushback).
///
/// Responses follow [`StatusClassifier`] exactly (its
/// [`classify_status`](StatusClassifier::classify_status) table, and for a retryable
/// status the `Retry-After` delay, a number of seconds or an HTTP-date, which the retry
/// stage caps at its `max_pushback` and never waits past the deadline). Errors:
///
/// | error | health | retried |
/// |---|---|---|
/// | a local rejection by a seawall layer (open breaker, full bulkhead, deadline spent before sending) | ignored | no |
/// | seawall's `DeadlineExceeded` while the request was out | failure | no: the call's time is spent |
/// | seawall's attempt timeout `Elapsed` | failure | yes |
/// | [`is_connect`](reqwest::Error::is_connect): refused, unreachable, DNS, TLS handshake, connect timeout | failure | yes |
/// | [`is_timeout`](reqwest::Error::is_timeout): reqwest's own `timeout` or `read_timeout` | failure | yes |
/// | [`is_body`](reqwest::Error::is_body): the response body broke off (or a decode error caused by one, or by the connection failing under the body, as `bytes()`, `text()` and `json()` report it) | failure | yes |
/// | [`is_decode`](reqwest::Error::is_decode) otherwise: the server sent what cannot be decoded | failure | no: the same bytes come back |
/// | [`is_redirect`](reqwest::Error::is_redirect): a redirect loop, too many redirects | failure | no: it would loop again |
/// | [`is_status`](reqwest::Error::is_status) (from `error_for_status`) | by its status, as above (no pushback: the headers are gone) | by its status |
/// | [`is_builder`](reqwest::Error::is_builder): a bad URL, scheme or header | ignored: the caller's mistake, nothing was sent | no |
/// | anything else ([`is_request`](reqwest::Error::is_request): a reset, a closed connection, a protocol error) | failure | yes |
///
/// "Retried" means the failure is *worth* a retry. Whether the request *may* be sent
/// twice is the replay's decision ([`ReqwestReplay`]): a POST without an
/// `Idempotency-Key` is sent once even after a connect error. (A connect error is the
/// one failure after which a POST is known not to have reached the server; this
/// classifier does not see the request, so it cannot make that exception. Opt such
/// requests in with an idempotency key, or with
/// [`ReqwestReplay::allow_non_idempotent`] for a server that tolerates duplicates.)
///
/// Why these rules: connect errors, timeouts, resets and broken bodies are the
/// downstream (or the way to it) failing, and may well succeed on another try; a body
/// that does not decode, or a redirect loop, is the downstream answering wrongly and
/// will do so again; a request that reqwest could not even build says nothing about the
/// downstream at all.
///
/// ```
/// use seawall::classify::{Classify, Verdict};
/// use seawall::reqwest::ReqwestClassifier;
/// use std::time::Duration;
///
/// let classifier = ReqwestClassifier::new();
/// let judge = |response: http::Response<&'static str>| {
///     let response = reqwest::Response::from(response);
///     match classifier.classify(&Ok::<_, reqwest::Error>(response)) {
///         Verdict::Classified(c) => c,
///         Verdict::AtEndOfStream(never) => match never {},
///     }
/// };
///
/// let busy = http::Response::builder().status(429).header("retry-after", "2").body("").unwrap();
/// let c = judge(busy);
/// assert!(c.is_failure() && c.is_retryable());
/// assert_eq!(c.pushback(), Some(Duration::from_secs(2)));
///
/// let ok = judge(http::Response::new("hello"));
/// assert!(ok.is_success());
/// ```
///
/// Errors, boxed as a policy's stages box them or not:
///
/// ```
/// use seawall::classify::Health;
/// use seawall::reqwest::ReqwestClassifier;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// // Nothing listens on this port: bind one, and let it go.
/// let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
/// let client = reqwest::Client::builder().no_proxy().build().unwrap();
/// let refused = client.get(format!("http://{addr}/")).send().await.unwrap_err();
/// assert!(refused.is_connect());
///
/// let c = ReqwestClassifier::new().classify_reqwest_error(&refused);
/// assert!(c.is_failure() && c.is_retryable());
///
/// let boxed: seawall::BoxError = Box::new(refused);
/// assert_eq!(ReqwestClassifier::new().classify_error(&boxed), c);
///
/// // A URL reqwest will not send: the caller's mistake, not the server's.
/// let bad = reqwest::Client::new().get("ftp://127.0.0.1/").send().await.unwrap_err();
/// assert_eq!(ReqwestClassifier::new().classify_reqwest_error(&bad).health(), Health::Ignored);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ReqwestClassifier {
    status: StatusClassifier,
}

impl ReqwestClassifier {
    /// The rules in the table above, with [`StatusClassifier::new`] for statuses.
    ///
    /// ```
    /// use seawall::reqwest::ReqwestClassifier;
    ///
    /// assert_eq!(ReqwestClassifier::new(), ReqwestClassifier::default());
    /// ```
    pub const fn new() -> Self {
        Self::with_status_classifier(StatusClassifier::new())
    }

    /// The rules in the table above, with `status` for statuses (for example a
    /// [`StatusClassifier`] that [retries every 5xx](StatusClassifier::retry_all_server_errors)).
    ///
    /// ```
    /// use http::StatusCode;
    /// use seawall::http::StatusClassifier;
    /// use seawall::reqwest::ReqwestClassifier;
    ///
    /// let c = ReqwestClassifier::with_status_classifier(StatusClassifier::new().retry_all_server_errors());
    /// assert!(c.status_classifier().classify_status(StatusCode::INTERNAL_SERVER_ERROR).is_retryable());
    /// ```
    pub const fn with_status_classifier(status: StatusClassifier) -> Self {
        Self { status }
    }

    /// Retry every 5xx, 500 included, not only 502, 503 and 504; see
    /// [`StatusClassifier::retry_all_server_errors`].
    ///
    /// ```
    /// use seawall::reqwest::ReqwestClassifier;
    ///
    /// let c = ReqwestClassifier::new().retry_all_server_errors();
    /// let response = reqwest::Response::from(http::Response::builder().status(500).body("").unwrap());
    /// assert!(c.classify_response(&response).is_retryable());
    /// ```
    #[must_use]
    pub const fn retry_all_server_errors(self) -> Self {
        Self::with_status_classifier(self.status.retry_all_server_errors())
    }

    /// The classifier of statuses in use.
    ///
    /// ```
    /// use seawall::http::StatusClassifier;
    /// use seawall::reqwest::ReqwestClassifier;
    ///
    /// assert_eq!(ReqwestClassifier::new().status_classifier(), StatusClassifier::new());
    /// ```
    pub const fn status_classifier(&self) -> StatusClassifier {
        self.status
    }

    /// The classification of a response: its status, and for a retryable one the
    /// `Retry-After` delay (as [`StatusClassifier::classify_response`] does for an
    /// `http::Response`). Only a retryable response's headers are read.
    ///
    /// ```
    /// use seawall::reqwest::ReqwestClassifier;
    /// use std::time::Duration;
    ///
    /// let unavailable = http::Response::builder()
    ///     .status(503)
    ///     .header("retry-after", "120")
    ///     .body("")
    ///     .unwrap();
    /// let c = ReqwestClassifier::new().classify_response(&reqwest::Response::from(unavailable));
    /// assert_eq!(c.pushback(), Some(Duration::from_secs(120)));
    /// ```
    pub fn classify_response(&self, response: &reqwest::Response) -> Classification {
        self.status
            .classify_head(response.status(), response.headers())
    }

    /// The classification of an error as the policy's stages hand it over: a
    /// `reqwest::Error` itself, or a [`BoxError`](crate::BoxError) (or another boxed
    /// error) holding one somewhere in its `source()` chain, is classified by
    /// [`classify_reqwest_error`](Self::classify_reqwest_error); a local rejection by a
    /// seawall layer is ignored (whatever it wraps); anything else (seawall's
    /// `Elapsed` and `DeadlineExceeded`, your own errors) as
    /// [`StatusClassifier::classify_error`] says.
    ///
    /// ```
    /// use seawall::reqwest::ReqwestClassifier;
    /// use seawall::BoxError;
    ///
    /// let other: BoxError = "something else broke".into();
    /// let c = ReqwestClassifier::new().classify_error(&other);
    /// assert!(c.is_failure() && c.is_retryable());
    /// ```
    pub fn classify_error<E: 'static>(&self, error: &E) -> Classification {
        if crate::error::is_rejection_any(error) {
            return Classification::ignored();
        }
        match find_reqwest_error(error) {
            Some(error) => self.classify_reqwest_error(error),
            None => StatusClassifier::classify_error(error),
        }
    }

    /// The classification of a `reqwest::Error`, by its kind; see the table above.
    ///
    /// ```
    /// use seawall::reqwest::ReqwestClassifier;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let bad_url = reqwest::Client::new().get("ftp://127.0.0.1/").send().await.unwrap_err();
    /// assert!(bad_url.is_builder());
    /// let c = ReqwestClassifier::new().classify_reqwest_error(&bad_url);
    /// assert!(!c.is_failure() && !c.is_retryable());
    /// # }
    /// ```
    pub fn classify_reqwest_error(&self, error: &reqwest::Error) -> Classification {
        if error.is_builder() {
            return Classification::ignored();
        }
        if let Some(status) = error.status() {
            return self.status.classify_status(status);
        }
        if error.is_connect() || error.is_timeout() || error.is_body() {
            return Classification::failure();
        }
        // `bytes()`, `text()`, `json()` and `chunk()` report a body that broke off as a
        // decode error caused by a body error, or by the connection's own error: that is
        // the transport failing, not the content.
        if (error.is_decode() && !caused_by_body_error(error)) || error.is_redirect() {
            return Classification::failure().retryable(false);
        }
        Classification::failure()
    }
}

impl From<StatusClassifier> for ReqwestClassifier {
    fn from(status: StatusClassifier) -> Self {
        Self::with_status_classifier(status)
    }
}

impl<E: 'static> Classify<reqwest::Response, E> for ReqwestClassifier {
    type Eos = NoEos;

    #[inline]
    fn classify(&self, result: &Result<reqwest::Response, E>) -> Verdict<NoEos> {
        Verdict::Classified(match result {
            Ok(response) => self.classify_response(response),
            Err(error) => self.classify_error(error),
        })
    }
}

/// The first `reqwest::Error` in `error`, or in its `source()` chain if it is a boxed
/// error.
fn find_reqwest_error<E: 'static>(error: &E) -> Option<&reqwest::Error> {
    let any = error as &dyn Any;
    if let Some(error) = any.downcast_ref::<reqwest::Error>() {
        return Some(error);
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
    while let Some(error) = next {
        if let Some(error) = error.downcast_ref::<reqwest::Error>() {
            return Some(error);
        }
        next = error.source();
    }
    None
}

/// Whether `error` was caused by the response body breaking off: a `reqwest::Error`
/// in its `source()` chain that is a body error (reqwest wraps body errors so when the
/// client has a `timeout` or `read_timeout`), or, without one, the connection failing
/// under the body (hyper's error then holds the `io::Error`: a reset, a connection
/// closed before the announced length).
fn caused_by_body_error(error: &reqwest::Error) -> bool {
    use std::io::ErrorKind;
    let mut next = error.source();
    while let Some(error) = next {
        if error
            .downcast_ref::<reqwest::Error>()
            .is_some_and(reqwest::Error::is_body)
        {
            return true;
        }
        let broke = error.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
                    | ErrorKind::NotConnected
                    | ErrorKind::UnexpectedEof
                    | ErrorKind::TimedOut
            )
        });
        // An HTTP/2 stream or connection that broke off: `h2::Error` keeps its I/O
        // error to itself (it has no `source()`).
        let broke = broke
            || error
                .downcast_ref::<h2::Error>()
                .is_some_and(|h2| h2.is_io() || h2.is_reset() || h2.is_go_away());
        if broke {
            return true;
        }
        next = error.source();
    }
    false
}

/// Copies a [`reqwest::Request`] for a retry or a hedge, only when sending it twice is
/// safe: an idempotent method (GET, HEAD, OPTIONS, TRACE, PUT, DELETE; see
/// [`is_idempotent`](crate::http::is_idempotent)), or a request that carries an
/// [`Idempotency-Key`](crate::http::IDEMPOTENCY_KEY) header, unless the user opts in
/// with [`allow_non_idempotent`](Self::allow_non_idempotent). The copy is
/// [`reqwest::Request::try_clone`]'s, which cannot copy a streamed body
/// (`Body::wrap_stream`): such a request is sent once.
///
/// The retry stage copies a request before its first attempt, so a request it may
/// retry costs a copy even when it succeeds at once: the URL, the headers and the
/// extensions are cloned (a buffered body is reference-counted, not copied). A request
/// that is not safe to send twice costs nothing.
///
/// ```
/// use seawall::reqwest::ReqwestReplay;
/// use seawall::retry::replay::Replay;
///
/// let client = reqwest::Client::new();
/// let replay = ReqwestReplay::new();
/// let get = client.get("http://127.0.0.1/orders/7").build()?;
/// let post = client.post("http://127.0.0.1/orders").body("{}").build()?;
/// let keyed = client
///     .post("http://127.0.0.1/orders")
///     .header("idempotency-key", "4f1c")
///     .body("{}")
///     .build()?;
/// assert!(replay.replay(&get).is_some());
/// assert!(replay.replay(&post).is_none(), "a POST is sent once");
/// assert!(replay.replay(&keyed).is_some(), "unless it carries an idempotency key");
/// assert!(ReqwestReplay::new().allow_non_idempotent().replay(&post).is_some());
/// # Ok::<(), reqwest::Error>(())
/// ```
#[cfg(feature = "retry")]
#[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ReqwestReplay {
    allow_non_idempotent: bool,
}

#[cfg(feature = "retry")]
impl ReqwestReplay {
    /// Copy requests that are safe to send twice.
    ///
    /// ```
    /// use seawall::reqwest::ReqwestReplay;
    ///
    /// assert_eq!(ReqwestReplay::new(), ReqwestReplay::default());
    /// ```
    pub const fn new() -> Self {
        Self {
            allow_non_idempotent: false,
        }
    }

    /// Copy every request that can be copied, idempotent or not: only for a server that
    /// tolerates duplicates.
    ///
    /// ```
    /// use seawall::reqwest::ReqwestReplay;
    ///
    /// let post = reqwest::Client::new().post("http://127.0.0.1/events").body("{}").build()?;
    /// assert!(!ReqwestReplay::new().is_safe(&post));
    /// assert!(ReqwestReplay::new().allow_non_idempotent().is_safe(&post));
    /// # Ok::<(), reqwest::Error>(())
    /// ```
    #[must_use]
    pub const fn allow_non_idempotent(mut self) -> Self {
        self.allow_non_idempotent = true;
        self
    }

    /// Whether `request` may be sent twice: an idempotent method, an `Idempotency-Key`
    /// header, or [`allow_non_idempotent`](Self::allow_non_idempotent). (It may still
    /// not be copied: a streamed body cannot be.)
    ///
    /// ```
    /// use seawall::reqwest::ReqwestReplay;
    ///
    /// let delete = reqwest::Client::new().delete("http://127.0.0.1/orders/7").build()?;
    /// assert!(ReqwestReplay::new().is_safe(&delete));
    /// # Ok::<(), reqwest::Error>(())
    /// ```
    pub fn is_safe(&self, request: &reqwest::Request) -> bool {
        self.allow_non_idempotent
            || crate::http::is_idempotent(request.method())
            || request.headers().contains_key(crate::http::IDEMPOTENCY_KEY)
    }
}

/// reqwest's classifier goes with its replay: a POST or PATCH without an
/// `Idempotency-Key` is sent once.
#[cfg(feature = "retry")]
impl DefaultReplay for ReqwestClassifier {
    type Replay = ReqwestReplay;

    fn default_replay(&self) -> ReqwestReplay {
        ReqwestReplay::new()
    }
}

#[cfg(feature = "retry")]
impl Replay<reqwest::Request> for ReqwestReplay {
    fn replay(&self, request: &reqwest::Request) -> Option<reqwest::Request> {
        if self.is_safe(request) {
            request.try_clone()
        } else {
            None
        }
    }
}

/// A [`Policy`] for a [`reqwest::Client`]: the canonical stack with
/// [`ReqwestClassifier`] and [`ReqwestReplay`].
#[cfg(feature = "policy")]
#[cfg_attr(docsrs, doc(cfg(feature = "policy")))]
pub type ReqwestPolicy<H = OnResponse, B = ExponentialBackoff> =
    Policy<ReqwestClassifier, ReqwestReplay, H, B>;

/// A [`reqwest::Client`] behind a [`ReqwestPolicy`]: what
/// [`ClientExt::with_policy`] returns, named, for a field of your own type.
///
/// ```
/// use seawall::reqwest::{ClientExt, PolicyClient};
///
/// struct Payments {
///     client: PolicyClient,
///     base: String,
/// }
///
/// let policy = seawall::reqwest::policy("payments").build()?;
/// let payments = Payments {
///     client: reqwest::Client::new().with_policy(&policy),
///     base: "http://127.0.0.1:8080".to_owned(),
/// };
/// # let _ = (payments.client, payments.base);
/// # Ok::<(), seawall::error::ConfigError>(())
/// ```
#[cfg(feature = "policy")]
#[cfg_attr(docsrs, doc(cfg(feature = "policy")))]
pub type PolicyClient<H = OnResponse, B = ExponentialBackoff> =
    PolicyService<reqwest::Client, ReqwestClassifier, ReqwestReplay, H, B>;

/// A policy builder for a [`reqwest::Client`]: [`Policy::builder`] with
/// [`ReqwestClassifier`] and [`ReqwestReplay`] already set, and every default of the
/// [policy](crate::policy#defaults). Configure it further as any policy builder.
///
/// ```
/// use std::time::Duration;
///
/// let policy = seawall::reqwest::policy("payments")
///     .deadline(Duration::from_secs(2))
///     .attempt_timeout(Duration::from_millis(500))
///     .circuit_breaker(|breaker| breaker.consecutive_failures(5))
///     .build()?;
/// assert_eq!(policy.name(), "payments");
/// # Ok::<(), seawall::error::ConfigError>(())
/// ```
///
/// It is the same as:
///
/// ```
/// use seawall::policy::Policy;
/// use seawall::reqwest::ReqwestClassifier;
///
/// let policy = Policy::builder("payments")
///     .classifier(ReqwestClassifier::new()) // and with it, its replay: ReqwestReplay
///     .build()?;
/// # let _ = policy;
/// # Ok::<(), seawall::error::ConfigError>(())
/// ```
#[cfg(feature = "policy")]
#[cfg_attr(docsrs, doc(cfg(feature = "policy")))]
pub fn policy(name: impl Into<String>) -> PolicyBuilder<ReqwestClassifier, ReqwestReplay> {
    Policy::builder(name).classifier(ReqwestClassifier::new())
}

#[cfg(feature = "policy")]
mod sealed {
    pub trait Sealed {}
    impl Sealed for reqwest::Client {}
}

/// Wraps a [`reqwest::Client`] with a policy, in one line.
///
/// ```
/// use seawall::reqwest::ClientExt;
///
/// let policy = seawall::reqwest::policy("search").build()?;
/// let search = reqwest::Client::new().with_policy(&policy);
/// # let _ = search;
/// # Ok::<(), seawall::error::ConfigError>(())
/// ```
#[cfg(feature = "policy")]
#[cfg_attr(docsrs, doc(cfg(feature = "policy")))]
pub trait ClientExt: sealed::Sealed + Sized {
    /// This client behind `policy`: the same as `policy.layer(client)`. Every client
    /// wrapped by one policy (or its clones) shares its breaker, bulkhead and budget.
    fn with_policy<C: Clone, R, H, B>(
        self,
        policy: &Policy<C, R, H, B>,
    ) -> PolicyService<Self, C, R, H, B>;
}

#[cfg(feature = "policy")]
impl ClientExt for reqwest::Client {
    fn with_policy<C: Clone, R, H, B>(
        self,
        policy: &Policy<C, R, H, B>,
    ) -> PolicyService<Self, C, R, H, B> {
        tower::Layer::layer(policy, self)
    }
}

#[cfg(feature = "policy")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
impl<C, R, H, B> PolicyService<reqwest::Client, C, R, H, B> {
    /// Send `request` through the policy (a clone of this service, so `&self` will do),
    /// as [`reqwest::Client::execute`] sends it without one. Build the request with
    /// the client, [`get_ref`](Self::get_ref)`().get(url)...build()?`.
    ///
    /// The error is the policy's: the `reqwest::Error` boxed (downcast it), or one of
    /// seawall's (see [`error`](crate::error)). A status that the policy stopped
    /// retrying (a 503 after the last attempt) is a response, not an error.
    ///
    /// ```
    /// use seawall::reqwest::ClientExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), seawall::BoxError> {
    /// let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let url = format!("http://{}/", listener.local_addr()?);
    /// tokio::spawn(async move { axum::serve(listener, app).await });
    ///
    /// let client = reqwest::Client::builder().no_proxy().build()?;
    /// let client = client.with_policy(&seawall::reqwest::policy("hello").build()?);
    /// let response = client.execute(client.get_ref().get(&url).build()?).await?;
    /// assert_eq!(response.text().await?, "hello");
    /// # Ok(()) }
    /// ```
    pub async fn execute(
        &self,
        request: reqwest::Request,
    ) -> Result<<Self as tower::Service<reqwest::Request>>::Response, crate::BoxError>
    where
        Self: tower::Service<reqwest::Request, Error = crate::BoxError> + Clone,
    {
        tower::ServiceExt::oneshot(self.clone(), request).await
    }
}
