//! Client-side adaptive throttling, as in the Google SRE book ("Handling Overload"): stop
//! sending most calls to a backend that rejects most of them, while a trickle still goes
//! through to notice when it recovers.
//!
//! A [`Throttle`] counts, over a sliding window (default two minutes), the *requests* the
//! application made and the *accepts*: requests the backend processed. Each new call is
//! refused locally, with [`Throttled`](error::Throttled) and without reaching the inner
//! service, with probability
//!
//! ```text
//! max(0, (requests - K * accepts) / (requests + 1))
//! ```
//!
//! once the window holds at least [`minimum_calls`](Builder::minimum_calls) requests that
//! were sent and answered (default 20; see [too few calls](#too-few-calls-to-judge)).
//! With `K = 2` (the default) calls pass freely while at most half of them fail. Beyond
//! that the client refuses just enough calls that what it sends is about `K` times what
//! the backend accepts: a rejected request is cheap for the backend but not free, and the
//! client stops spending its capacity on them. The probability never reaches 1, so some
//! calls always go through; as they start succeeding again, the probability falls back to
//! zero (see [recovery](#recovery)).
//!
//! ```
//! use seawall::throttle::ThrottleLayer;
//! use seawall::error::Throttled;
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let throttle = ThrottleLayer::builder().name("search").seed(7).build().unwrap();
//! let handle = throttle.handle();
//! // A backend that sheds every request.
//! let search = throttle.layer(service_fn(|_query: &'static str| async {
//!     Err::<String, _>("503 overloaded")
//! }));
//!
//! let mut throttled = 0;
//! for _ in 0..1_000 {
//!     if let Err(err) = search.clone().oneshot("rust").await {
//!         if err.is::<Throttled>() {
//!             throttled += 1; // refused locally: nothing was sent
//!         }
//!     }
//! }
//! assert!(throttled > 950, "most calls never reached the backend");
//! assert!(throttled < 1_000, "a trickle still did, to notice recovery");
//! assert!(handle.probability() > 0.99);
//! # }
//! ```
//!
//! # What counts
//!
//! Every call counts once, as one request, when its outcome is known:
//!
//! | the call | requests | accepts |
//! |---|---|---|
//! | sent; the [classifier](crate::classify) says [`Success`](crate::classify::Health::Success) | +1 | +1 |
//! | sent; the classifier says [`Failure`](crate::classify::Health::Failure) | +1 | |
//! | refused by this throttle ([`Throttled`](error::Throttled)) | +1 | |
//! | sent; the classifier says [`Ignored`](crate::classify::Health::Ignored) | | |
//! | sent; its response future (or, for an end-of-stream classifier, its body) dropped before the outcome | | |
//!
//! - **Refused calls are requests.** The SRE book counts the requests the application
//!   *attempted*, including those refused locally. This keeps the probability up while the
//!   client sends little, and makes the throttle self-limiting: with the application
//!   asking `R` calls per second of a backend that accepts `A` per second, the probability
//!   settles at `(R - K A) / R`, so the client sends `K A` per second whatever `R` is.
//!   (Counting only the calls sent would let the load grow like `sqrt(K A R)` with
//!   demand.) The trickle during a full outage is correspondingly small: one call in
//!   `requests + 1`.
//! - **A call counts when its outcome is known, not when it starts.** Calls in flight are
//!   in neither count, so a burst of concurrent calls from a fresh client is not throttled
//!   because none has been answered yet, and a call that ends
//!   [`Ignored`](crate::classify::Health::Ignored) needs nothing taken back. A call is
//!   counted in the window's time slot of its admission (so that a call costs one clock
//!   read); a call that outlives the whole window is not counted.
//! - **Local rejections are not the backend's.** The default classifier
//!   ([`ErrorsAsFailures`]) ignores rejections by other seawall layers
//!   below the throttle (a full bulkhead, an open breaker, another throttle), so a local
//!   fast-fail never makes the throttle believe the backend is rejecting. Use a
//!   [classifier](Builder::classifier) that says what "accepted" means for your protocol:
//!   the SRE book counts a request as accepted when the backend processed it, so an HTTP
//!   404 is accepted while a 503 or a 429 is not.
//! - **Classification at end of stream** works as for the breaker: the
//!   [`OutcomeRecorder`] travels with the response and counts
//!   the call when the stream ends (see
//!   [`classify`](crate::classify#classification-at-end-of-stream)).
//! - A backend that hangs rejects nothing: put a timeout (`seawall::timeout`) below the
//!   throttle so that hung calls end as failures.
//!
//! # Recovery
//!
//! After a full outage the trickle is small (one call in `requests + 1`), and the window
//! still holds the refused calls, so throttling fades gradually rather than at once:
//! every call that gets through and succeeds lets `K` more through, and the calls sent
//! grow about five-fold per window at `K = 2` until the probability reaches zero. In the
//! tests, at 100 calls per second over a 10 s window, that took nine windows after a
//! 20 s outage. An operator who knows the backend is back can end it at once with
//! [`Handle::reset`].
//!
//! # Too few calls to judge
//!
//! Alone, the formula is quick to throttle a quiet dependency: one failure in an empty
//! window refuses the next call with probability 1/2, and since refused calls count as
//! requests, each refusal raises the probability further; one success no longer brings
//! it to zero (after `n` refusals it takes about `n / 2` more accepts). One transient
//! error on a dependency called every 5 s would refuse several of its healthy calls over
//! the next two minutes. So nothing is refused while the window holds fewer than
//! [`minimum_calls`](Builder::minimum_calls) requests that were *sent* and answered
//! (default 20, as the circuit breaker's; refusals do not count towards it): one error,
//! or a few, on a quiet dependency refuses no call. Past the minimum the formula applies
//! unchanged. A client that calls so rarely that the window never holds that many
//! answers is never throttled: it sends the backend too little to matter (and during a
//! full outage it sends about `minimum_calls` per window). `minimum_calls(0)` gives the
//! SRE book's formula from the first answer.
//!
//! # Where it goes
//!
//! Outside the circuit breaker and the bulkhead (their rejections are then ignored, as
//! above), inside the retry layer: a [`Throttled`](error::Throttled) call is a local
//! rejection, which retry layers never retry and never charge to a budget.
//!
//! # Defaults
//!
//! | setting | default | why |
//! |---|---|---|
//! | `k` | 2.0 | the SRE book's |
//! | `minimum_calls` | 20 | a few answers cannot tell overload from a blip; the breaker's default |
//! | window | 120 s | the SRE book's two minutes |
//! | buckets | 12 (10 s each) | a smooth enough slide for a cheap per-call sum |
//! | classifier | [`ErrorsAsFailures`] | errors are not accepted; local rejections count as nothing |
//! | seed | random per throttle | |
//!
//! # Exactness and cost
//!
//! `poll_ready` decides the next call: one clock read, a sum of the window's buckets (a
//! few loads each), and, only while the probability is above zero, one `fetch_add` of a
//! seeded SplitMix64 stream for the coin. A call that is sent clones one `Arc` for its
//! response future and, when it ends, adds one to one counter of its bucket. Nothing
//! allocates or boxes; a refused call is a ready future with a zero-sized error. The only
//! wait is at a rotation, once per bucket per slot: the first thread to count in a new
//! slot zeroes the bucket, and a thread arriving in those few instructions waits for
//! them, so that no count is lost or lands in the wrong slot. A probability computed
//! while other threads are counting may miss the counts that land during its sum. For a
//! given seed, the same sequence of calls, outcomes and times is refused the same way
//! every time.
//!
//! # Observability
//!
//! [`ThrottleLayer::handle`] gives a [`Handle`] ([`Snapshot`]: requests, accepts,
//! probability, calls refused; [`reset`](Handle::reset)) without any feature. With
//! `metrics`, see [`crate::metrics`] for `seawall_throttle_rejections_total` and
//! `seawall_throttle_probability`; with `tracing`, a `debug` event when throttling starts
//! (the probability rises above zero) and when it stops, nothing per call.

pub mod error;
pub mod future;
mod handle;
mod layer;
mod state;
mod window;

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::Service;

pub use self::handle::Handle;
pub use self::layer::{Builder, ThrottleLayer};

use self::future::{OutcomeRecorder, ResponseFuture};
use self::state::{Decision, Shared};
use crate::classify::{Classify, ClassifyEos, ErrorsAsFailures};
use crate::BoxError;

/// A throttle's window and probability at one moment, from [`Handle::snapshot`].
///
/// ```
/// use seawall::throttle::ThrottleLayer;
/// use tower::{Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let layer = ThrottleLayer::builder().k(1.0).minimum_calls(0).build().unwrap();
/// let handle = layer.handle();
/// let svc = layer.layer(tower::service_fn(|fail: bool| async move {
///     if fail { Err("unavailable") } else { Ok(()) }
/// }));
/// for fail in [false, false, true, true] {
///     let _ = svc.clone().oneshot(fail).await;
/// }
/// let snap = handle.snapshot();
/// assert_eq!((snap.requests, snap.accepts), (4, 2));
/// assert_eq!(snap.probability, (4.0 - 1.0 * 2.0) / (4.0 + 1.0));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
    /// Requests in the window: calls sent whose outcome counted, plus calls refused.
    pub requests: u64,
    /// Requests in the window that the backend accepted.
    pub accepts: u64,
    /// Requests in the window that were sent and answered (accepted or failed): nothing
    /// is refused while fewer than [`minimum_calls`](Builder::minimum_calls).
    pub sent: u64,
    /// The probability of refusing the next call:
    /// `max(0, (requests - k * accepts) / (requests + 1))`, or zero while `sent` is below
    /// [`minimum_calls`](Builder::minimum_calls).
    pub probability: f64,
    /// Calls refused with [`Throttled`](error::Throttled) since the throttle was built.
    pub rejections: u64,
}

/// Client-side throttling around a service `S`, judging results with classifier `C`.
///
/// Made by [`ThrottleLayer`]; every clone shares the throttle. `poll_ready` decides
/// whether the next call is refused; if so it is ready at once, without polling the inner
/// service (no permit or probe slot below is reserved for a call that will not be sent),
/// and `call` returns a ready [`Throttled`](error::Throttled) error. See the
/// [module docs](self).
///
/// ```
/// use seawall::throttle::{Throttle, ThrottleLayer};
/// use tower::Layer;
///
/// let svc: Throttle<_> = ThrottleLayer::builder()
///     .build()
///     .unwrap()
///     .layer(tower::service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
/// let handle = svc.handle(); // the same throttle as the layer's handle
/// assert_eq!(handle.snapshot().requests, 0);
/// ```
pub struct Throttle<S, C = ErrorsAsFailures> {
    inner: S,
    shared: Arc<Shared>,
    classifier: C,
    /// Decided in `poll_ready`, acted on in `call`.
    decision: Option<Decision>,
}

impl<S, C> Throttle<S, C> {
    fn from_parts(inner: S, shared: Arc<Shared>, classifier: C) -> Self {
        Self {
            inner,
            shared,
            classifier,
            decision: None,
        }
    }

    /// A handle to the throttle this service shares with its clones.
    pub fn handle(&self) -> Handle {
        Handle::new(self.shared.clone())
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the throttle.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, Req> Service<Req> for Throttle<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = <C::Eos as ClassifyEos<S::Response>>::Response<OutcomeRecorder>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Decided once per call: polled again while the inner service is pending, the
        // decision stands.
        match *self.decision.get_or_insert_with(|| self.shared.decide()) {
            // Refused: nothing below needs to be ready for a call that is not sent.
            Decision::Throttle { .. } => Poll::Ready(Ok(())),
            Decision::Send { .. } => self.inner.poll_ready(cx).map_err(Into::into),
        }
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        // Without a decision, `call` came without `poll_ready` (a contract breach by the
        // caller): decide now.
        let decision = self.decision.take().unwrap_or_else(|| self.shared.decide());
        match decision {
            Decision::Send { slot } => ResponseFuture::called(
                self.inner.call(request),
                self.classifier.clone(),
                OutcomeRecorder::new(self.shared.clone(), slot),
            ),
            Decision::Throttle { slot } => {
                self.shared.throttled(slot);
                ResponseFuture::throttled()
            }
        }
    }
}

impl<S: Clone, C: Clone> Clone for Throttle<S, C> {
    fn clone(&self) -> Self {
        // A clone shares the throttle but not this service's pending decision.
        Self::from_parts(
            self.inner.clone(),
            self.shared.clone(),
            self.classifier.clone(),
        )
    }
}

impl<S: fmt::Debug, C> fmt::Debug for Throttle<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Throttle")
            .field("inner", &self.inner)
            .field("name", &self.shared.config.name)
            .field("decision", &self.decision)
            .finish_non_exhaustive()
    }
}
