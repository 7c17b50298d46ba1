//! What counts as success, failure or neither; what may be retried; and when the server
//! asked us to come back.
//!
//! Every layer that learns from results (the circuit breaker now; the retry layer,
//! adaptive limits and throttling later) asks a [`Classify`] implementation about each
//! call's `Result`. The answer is a [`Classification`]:
//!
//! - [`Health`]: `Success`, `Failure` or `Ignored` (counts as nothing, e.g. a 404 or a
//!   local rejection by another seawall layer);
//! - `retryable`: whether a retry could help;
//! - `pushback`: a delay the server asked for (`Retry-After`, `grpc-retry-pushback-ms`).
//!
//! # Classification at end of stream
//!
//! Some outcomes are known only when a response body ends: a gRPC status sent in the
//! trailers of a streaming response. A classifier says so by returning
//! [`Verdict::AtEndOfStream`] with an end-of-stream classifier ([`ClassifyEos`]). The layer
//! then hands that classifier a [`RecordOutcome`] (its own bookkeeping for the call: a
//! probe slot, a permit, a start time) and the classifier attaches it to the response,
//! typically by wrapping the body, so that the outcome is recorded when the stream ends.
//! A recorder that is dropped without recording (the body was dropped half-way) counts as
//! nothing and releases whatever it holds.
//!
//! Classifiers that always answer at once use [`NoEos`], an end-of-stream classifier that
//! cannot exist; the layer's response type is then the inner service's response type,
//! unchanged.
//!
//! # Built-ins
//!
//! - [`ErrorsAsFailures`] (the default): `Ok` is a success; `Err` is a retryable failure,
//!   except a local rejection by a seawall layer ([`crate::error::is_rejection`]), which is
//!   ignored and never retryable.
//! - [`classify_fn`]: a closure from `&Result<T, E>` to a [`Classification`].
//!
//! ```
//! use seawall::classify::{classify_fn, Classification, Classify, Verdict};
//!
//! // An HTTP-ish status code: 5xx are failures, 429 asks us to wait, the rest succeed.
//! let classifier = classify_fn(|result: &Result<u16, std::io::Error>| match result {
//!     Ok(status) if *status >= 500 => Classification::failure(),
//!     Ok(429) => Classification::ignored()
//!         .retryable(true)
//!         .with_pushback(std::time::Duration::from_secs(1)),
//!     Ok(_) => Classification::success(),
//!     Err(_) => Classification::failure(),
//! });
//! match classifier.classify(&Ok(503)) {
//!     Verdict::Classified(c) => assert!(c.is_failure() && c.is_retryable()),
//!     Verdict::AtEndOfStream(never) => match never {},
//! }
//! ```

use std::fmt;
use std::time::Duration;

/// How a call affects the health of the downstream, as the breaker and other
/// health-tracking layers count it.
///
/// ```
/// use seawall::classify::{Classification, Health};
///
/// assert_eq!(Classification::ignored().health(), Health::Ignored);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    /// The downstream did its job.
    Success,
    /// The downstream failed; this counts against it.
    Failure,
    /// Counts as nothing: neither success nor failure (e.g. a client error such as 404,
    /// or a call that a seawall layer rejected locally before sending it).
    Ignored,
}

/// The verdict on one call: its [`Health`], whether a retry could help, and any delay
/// the server asked for.
///
/// Build one with [`success`](Self::success), [`failure`](Self::failure) or
/// [`ignored`](Self::ignored), then adjust it:
///
/// ```
/// use seawall::classify::{Classification, Health};
/// use std::time::Duration;
///
/// let c = Classification::failure().retryable(false);
/// assert_eq!(c.health(), Health::Failure);
/// assert!(!c.is_retryable());
///
/// let busy = Classification::ignored().retryable(true).with_pushback(Duration::from_secs(2));
/// assert_eq!(busy.pushback(), Some(Duration::from_secs(2)));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Classification {
    health: Health,
    retryable: bool,
    pushback: Option<Duration>,
}

impl Classification {
    /// A success; not retryable; no pushback.
    pub const fn success() -> Self {
        Self {
            health: Health::Success,
            retryable: false,
            pushback: None,
        }
    }

    /// A failure; retryable (change it with [`retryable`](Self::retryable)); no pushback.
    pub const fn failure() -> Self {
        Self {
            health: Health::Failure,
            retryable: true,
            pushback: None,
        }
    }

    /// Counts as nothing for health; not retryable; no pushback.
    pub const fn ignored() -> Self {
        Self {
            health: Health::Ignored,
            retryable: false,
            pushback: None,
        }
    }

    /// The same classification with `retryable` set.
    #[must_use]
    pub const fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// The same classification with a server pushback delay (how long the server asked
    /// the client to wait before trying again). Layers bound it before use: seawall never
    /// trusts a delay from the network unbounded.
    #[must_use]
    pub const fn with_pushback(mut self, delay: Duration) -> Self {
        self.pushback = Some(delay);
        self
    }

    /// The health verdict.
    pub const fn health(&self) -> Health {
        self.health
    }

    /// Whether this is a [`Health::Success`].
    pub const fn is_success(&self) -> bool {
        matches!(self.health, Health::Success)
    }

    /// Whether this is a [`Health::Failure`].
    pub const fn is_failure(&self) -> bool {
        matches!(self.health, Health::Failure)
    }

    /// Whether a retry could help.
    pub const fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The delay the server asked for, if any.
    pub const fn pushback(&self) -> Option<Duration> {
        self.pushback
    }
}

impl fmt::Debug for Classification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Classification");
        d.field("health", &self.health)
            .field("retryable", &self.retryable);
        if let Some(p) = self.pushback {
            d.field("pushback", &p);
        }
        d.finish()
    }
}

/// What a classifier says about a result: classified now, or only when the response's
/// stream ends.
///
/// ```
/// use seawall::classify::{Classify, ErrorsAsFailures, Verdict};
///
/// match ErrorsAsFailures.classify(&Ok::<_, std::io::Error>("hello")) {
///     Verdict::Classified(c) => assert!(c.is_success()),
///     Verdict::AtEndOfStream(never) => match never {},
/// }
/// ```
#[derive(Debug)]
pub enum Verdict<Eos> {
    /// The outcome is known now.
    Classified(Classification),
    /// The outcome is known only at the end of the response stream (e.g. a gRPC status in
    /// the trailers). The layer attaches its recorder to the response through `Eos`.
    AtEndOfStream(Eos),
}

/// Turns a call's result into a [`Verdict`].
///
/// `T` is the inner service's response type and `E` its error type, before any seawall
/// layer boxes the error. Implement it for your own classifier, or use
/// [`classify_fn`] for a closure.
///
/// ```
/// use seawall::classify::{Classification, Classify, NoEos, Verdict};
///
/// /// Timeouts are failures; "not found" counts as nothing.
/// #[derive(Clone)]
/// struct NotFoundIsFine;
///
/// impl<T> Classify<T, std::io::Error> for NotFoundIsFine {
///     type Eos = NoEos;
///     fn classify(&self, result: &Result<T, std::io::Error>) -> Verdict<NoEos> {
///         Verdict::Classified(match result {
///             Ok(_) => Classification::success(),
///             Err(e) if e.kind() == std::io::ErrorKind::NotFound => Classification::ignored(),
///             Err(_) => Classification::failure(),
///         })
///     }
/// }
/// # let _ = NotFoundIsFine.classify(&Ok::<(), _>(()));
/// ```
pub trait Classify<T, E> {
    /// The end-of-stream classifier for results that are decided when the stream ends;
    /// [`NoEos`] for classifiers that always decide at once.
    type Eos: ClassifyEos<T>;

    /// Classify one result.
    fn classify(&self, result: &Result<T, E>) -> Verdict<Self::Eos>;
}

/// Classifies a response whose outcome is decided when its stream ends.
///
/// [`defer`](Self::defer) receives the response and the layer's [`RecordOutcome`], and
/// returns the response the layer hands back (usually the same response with its body
/// wrapped) that calls [`RecordOutcome::record`] when the stream ends, or drops the
/// recorder unrecorded if the body is dropped first.
///
/// A stream whose status arrives at its end, and a circuit breaker that counts it then:
///
/// ```
/// use seawall::circuit_breaker::{CircuitBreakerLayer, State};
/// use seawall::classify::{Classification, Classify, ClassifyEos, RecordOutcome, Verdict};
/// use tokio::sync::oneshot;
/// use tower::{Layer, ServiceExt};
///
/// /// A response whose status (0 = OK) comes after the body, like gRPC trailers.
/// struct Stream { status: oneshot::Receiver<u8> }
///
/// /// The response the layer returns: the stream with the layer's recorder attached.
/// struct Tracked<R> { stream: Stream, recorder: Option<R> }
///
/// impl<R: RecordOutcome> Tracked<R> {
///     async fn finish(self) -> u8 {
///         let status = self.stream.status.await.unwrap_or(2);
///         if let Some(recorder) = self.recorder {
///             recorder.record(if status == 0 {
///                 Classification::success()
///             } else {
///                 Classification::failure()
///             });
///         }
///         status
///     }
/// }
///
/// #[derive(Clone)]
/// struct StatusAtEnd;
/// struct AtEnd;
///
/// impl Classify<Stream, std::convert::Infallible> for StatusAtEnd {
///     type Eos = AtEnd;
///     fn classify(&self, _: &Result<Stream, std::convert::Infallible>) -> Verdict<AtEnd> {
///         Verdict::AtEndOfStream(AtEnd)
///     }
/// }
///
/// impl ClassifyEos<Stream> for AtEnd {
///     type Response<R: RecordOutcome> = Tracked<R>;
///     fn defer<R: RecordOutcome>(self, stream: Stream, recorder: R) -> Tracked<R> {
///         Tracked { stream, recorder: Some(recorder) }
///     }
///     fn passthrough<R: RecordOutcome>(stream: Stream) -> Tracked<R> {
///         Tracked { stream, recorder: None }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let layer = CircuitBreakerLayer::builder()
///     .without_failure_rate()
///     .consecutive_failures(1)
///     .classifier(StatusAtEnd)
///     .build()
///     .unwrap();
/// let handle = layer.handle();
/// let (tx, rx) = oneshot::channel();
/// let mut rx = Some(rx);
/// let svc = layer.layer(tower::service_fn(move |()| {
///     let status = rx.take().unwrap();
///     async move { Ok::<_, std::convert::Infallible>(Stream { status }) }
/// }));
///
/// let response = svc.oneshot(()).await.unwrap();
/// assert_eq!(handle.state(), State::Closed); // the headers say nothing yet
/// tx.send(14).unwrap(); // UNAVAILABLE, at the end of the stream
/// assert_eq!(response.finish().await, 14);
/// assert_eq!(handle.state(), State::Open);
/// # }
/// ```
pub trait ClassifyEos<T> {
    /// The response the layer returns in place of `T`, holding a recorder of type `R`.
    type Response<R: RecordOutcome>;

    /// Attach `recorder` to `response` so that the outcome is recorded at end of stream.
    fn defer<R: RecordOutcome>(self, response: T, recorder: R) -> Self::Response<R>;

    /// Convert a response that was classified at once (no recorder to attach) into the
    /// layer's response type, e.g. a gRPC response whose status came in its headers.
    fn passthrough<R: RecordOutcome>(response: T) -> Self::Response<R>;
}

/// A layer's bookkeeping for one call, waiting for the call's outcome.
///
/// Call [`record`](Self::record) exactly once with the outcome, or drop it to count the
/// call as nothing (and release whatever it holds, such as a half-open probe slot). See
/// [`ClassifyEos`] for an example.
pub trait RecordOutcome: Send + 'static {
    /// Record the call's outcome.
    fn record(self, classification: Classification);
}

/// The end-of-stream classifier of classifiers that always decide at once. It has no
/// values, so a layer's response type stays the inner response type.
///
/// ```
/// use seawall::classify::{Classify, ErrorsAsFailures, NoEos};
///
/// fn decides_at_once<C: Classify<u32, std::io::Error, Eos = NoEos>>(_: C) {}
/// decides_at_once(ErrorsAsFailures);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoEos {}

impl<T> ClassifyEos<T> for NoEos {
    type Response<R: RecordOutcome> = T;

    fn defer<R: RecordOutcome>(self, _response: T, _recorder: R) -> T {
        match self {}
    }

    #[inline]
    fn passthrough<R: RecordOutcome>(response: T) -> T {
        response
    }
}

/// The default classifier: `Ok` is a success; `Err` is a retryable failure, except a
/// local rejection by a seawall layer (for example [`CircuitOpen`](crate::error) from an
/// inner breaker), which is ignored and not retryable because nothing reached the
/// downstream.
///
/// ```
/// use seawall::classify::{Classify, ErrorsAsFailures, Health, Verdict};
///
/// let Verdict::Classified(c) = ErrorsAsFailures.classify(&Err::<(), _>("boom")) else { unreachable!() };
/// assert_eq!(c.health(), Health::Failure);
/// assert!(c.is_retryable());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorsAsFailures;

impl<T, E: 'static> Classify<T, E> for ErrorsAsFailures {
    type Eos = NoEos;

    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Verdict<NoEos> {
        Verdict::Classified(match result {
            Ok(_) => Classification::success(),
            Err(e) if crate::error::is_rejection_any(e) => Classification::ignored(),
            Err(_) => Classification::failure(),
        })
    }
}

/// A classifier made from a closure; see [`classify_fn`] for an example.
#[derive(Clone, Copy)]
pub struct ClassifyFn<F> {
    f: F,
}

impl<F> fmt::Debug for ClassifyFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClassifyFn").finish_non_exhaustive()
    }
}

/// A classifier from a closure that sees each `&Result<T, E>` and returns its
/// [`Classification`] at once.
///
/// ```
/// use seawall::classify::{classify_fn, Classification};
///
/// // Count every error except "not found" against the downstream.
/// let classifier = classify_fn(|r: &Result<String, std::io::Error>| match r {
///     Err(e) if e.kind() != std::io::ErrorKind::NotFound => Classification::failure(),
///     Err(_) => Classification::ignored(),
///     Ok(_) => Classification::success(),
/// });
/// # let _ = classifier;
/// ```
pub fn classify_fn<F>(f: F) -> ClassifyFn<F> {
    ClassifyFn { f }
}

impl<T, E, F> Classify<T, E> for ClassifyFn<F>
where
    F: Fn(&Result<T, E>) -> Classification,
{
    type Eos = NoEos;

    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Verdict<NoEos> {
        Verdict::Classified((self.f)(result))
    }
}
