//! Hedged requests: when the first attempt is slow, send a copy and take whichever
//! answers first, charged to the same budget as retries.
//!
//! Most of a service's tail latency comes from a few slow replicas, GC pauses or queues
//! (Dean and Barroso, *The Tail at Scale*). [`Hedge`] sends the request once; if no
//! answer has come after a delay, it sends a copy (a *hedge*), and returns the first
//! answer that is not a failure. The attempts that lost are dropped (cancelled) at once.
//!
//! - **Delay**: fixed ([`Builder::delay`]), or the `p`-th percentile of the latencies
//!   seen over a rotating window ([`Builder::percentile`], default p95 over 30 s), so
//!   that only the slowest `1 - p` of the calls are hedged. No hedge is sent until the
//!   window holds [`min_samples`](Builder::min_samples) latencies (default 100).
//! - **At most** [`max_hedges`](Builder::max_hedges) copies per call (default 1), each
//!   one delay after the previous one.
//! - **Budgeted**: every hedge is withdrawn from a [`RetryBudget`]; an empty budget sends
//!   no hedge (the call waits for the attempt in flight). Share one budget between the
//!   [retry layer](crate::retry) and this one so that retries and hedges *together* add
//!   at most the budget's ratio to the load; see [Sharing a budget](#sharing-a-budget).
//! - **Idempotent requests only**: the copy is made by a [`Replay`] (default
//!   [`CloneRequest`]). A request it cannot copy is never hedged. For HTTP, pass
//!   `seawall::http::IdempotentReplay` (feature `http`): a POST without an
//!   `Idempotency-Key` is then sent exactly once.
//! - **Within the deadline**: a hedge that the call's
//!   [deadline](crate::timeout::Deadline) (feature `timeout`) would leave less time than
//!   the delay the first attempt was given is not sent: it would only add load.
//! - **What wins**: the first answer the [classifier](crate::classify) does not call a
//!   failure: a success, or an answer that counts as neither (a 404 is as final from a
//!   hedge as from the first attempt). A local rejection by a seawall layer below (an
//!   open breaker, a full bulkhead) counts as a failure. A failure while other attempts
//!   are in flight is held, no further hedge is sent, and the others are awaited; when
//!   all have failed, the last real failure is returned (a local rejection only if every
//!   attempt was rejected), so that a retry layer above can still retry it. A failure of
//!   the first attempt before any hedge was sent is returned at once: retrying failures
//!   is the retry layer's job.
//!
//! ```
//! use seawall::hedge::HedgeLayer;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tokio::time::Instant;
//! use tower::{Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let calls = Arc::new(AtomicU32::new(0));
//! let replicas = {
//!     let calls = calls.clone();
//!     tower::service_fn(move |key: &'static str| {
//!         // The first attempt reaches a slow replica (2 s); the hedge, a fast one (10 ms).
//!         let n = calls.fetch_add(1, Ordering::SeqCst);
//!         let latency = Duration::from_millis(if n == 0 { 2_000 } else { 10 });
//!         async move {
//!             tokio::time::sleep(latency).await;
//!             Ok::<_, std::convert::Infallible>(format!("{key} from replica {n}"))
//!         }
//!     })
//! };
//! let hedge = HedgeLayer::builder()
//!     .delay(Duration::from_millis(50))
//!     .build()
//!     .unwrap();
//! let handle = hedge.handle();
//!
//! let started = Instant::now();
//! let answer = hedge.layer(replicas).oneshot("user:7").await.unwrap();
//! assert_eq!(answer, "user:7 from replica 1");
//! assert_eq!(started.elapsed(), Duration::from_millis(60)); // the delay, then 10 ms
//! assert_eq!((handle.snapshot().hedges, handle.snapshot().wins), (1, 1));
//! # }
//! ```
//!
//! # Sharing a budget
//!
//! A budget counts requests (deposits) and spends retries (withdrawals). Give the hedge
//! layer its budget in one of two ways:
//!
//! - [`Builder::budget`]: the hedge layer deposits one per request it receives and
//!   withdraws one per hedge. Use it when no retry layer shares the budget.
//! - [`Builder::shared_budget`]: the hedge layer only withdraws. Use it when a
//!   [`Retry`](crate::retry::Retry) layer above already deposits into the same budget
//!   for each request: the retry layer sends each request (and each retry) through the
//!   hedge layer, so depositing again would count a request twice, and count retries as
//!   requests, letting the budget grow with the failures it is meant to bound.
//!
//! The canonical order puts hedging inside retries, with one budget:
//!
//! ```
//! use seawall::hedge::HedgeLayer;
//! use seawall::retry::budget::RetryBudget;
//! use seawall::retry::RetryLayer;
//! use seawall::BoxError;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
//! let budget = RetryBudget::builder().ratio(0.1).build()?;
//! let retry = RetryLayer::builder().budget(budget.clone()).build()?; // deposits per request
//! let hedge = HedgeLayer::builder()
//!     .name("profiles")
//!     .percentile(0.95)
//!     .shared_budget(budget.clone()) // withdraws per hedge, deposits nothing
//!     .build()?;
//! let client = ServiceBuilder::new()
//!     .layer(retry)
//!     .layer(hedge)
//!     .service(tower::service_fn(|id: u32| async move { Ok::<_, BoxError>(id) }));
//!
//! assert_eq!(client.oneshot(7).await?, 7);
//! assert_eq!(budget.snapshot().deposits, 1); // one request, counted once
//! # Ok(()) }
//! ```
//!
//! # The percentile delay
//!
//! Latencies are counted in a lock-free histogram: whole microseconds in log-linear
//! buckets (16 per power of two), so the delay is never below the true percentile of the
//! latencies in the window (to the microsecond) and at most 1/16 (6.25 %) above it. The
//! window is kept in 6 slices (5 s each by default), so a latency counts for between
//! five sixths of the window and all of it. Recording a latency is one load and one
//! `fetch_add` on the counter of its bucket (no lock, no waiting); the percentile is
//! recomputed at most once a second (or once a slice, if slices are shorter) by the one
//! caller that claims the refresh, and cached: other calls read the cached delay and the
//! time of the next refresh, on one cache line, and write nothing. (Tokio's timers fire
//! on whole milliseconds: a delay of a few hundred microseconds waits about one.)
//!
//! The histogram's counters are allocated one power of two at a time (768 bytes for the
//! 16 buckets of all six slices), on the first latency that falls in it: a layer built
//! with a percentile delay costs a few hundred bytes until it records, and one whose
//! latencies span 1 to 64 ms holds six of them (4.5 KB), rather than all 29 (22 KB).
//!
//! What is recorded:
//!
//! - every attempt that answered (a result the [classifier](crate::classify) does not call
//!   a failure: a success, or one that counts as neither), from its send to its answer;
//! - a failure only when it took at least the current delay. A fast failure (a refused
//!   connection, an error page served at once) says nothing of how long an answer takes:
//!   counted, an outage of fast errors would drag the percentile down to their latency,
//!   and every healthy call after it would be hedged, draining the budget that retries
//!   share just when they need it. A failure that took at least the delay (an attempt
//!   timeout, a slow error) lands on the slow side of the percentile, where a slow answer
//!   would: it can only raise the delay, so a downstream that fails slowly is hedged less,
//!   not more. While warming up (no delay yet), no failure is recorded;
//! - the first attempt, when a hedge won and it is cancelled: its time until then. This
//!   is a lower bound of its latency, and at least the delay, so it lands on the slow
//!   side of the percentile where it belongs. Leaving it out would leave out exactly the
//!   slow calls, and the percentile would drift down as hedges win (more hedges, a lower
//!   percentile, still more hedges);
//! - not a hedge cancelled because another attempt won: its time was cut short by
//!   another attempt's answer and can be far below the delay, which would pull the
//!   percentile down for no reason the downstream gave;
//! - not a local rejection (nothing was sent), and nothing when the caller drops the
//!   call's future.
//!
//! # Cost
//!
//! A call that is answered before the delay costs what the inner call costs, plus: one
//! cached delay read, a copy of the request (only when it may be hedged) and a clone of
//! the inner service (to send hedges with); with a percentile delay, two clock reads, the
//! classifier's verdict on the answer and one recorded latency. The timer is created
//! only when the first poll finds the first attempt not ready, so an inner future that is
//! ready at once costs no timer. The layer allocates nothing unless a hedge is sent (the
//! copy may: cloning an HTTP request clones its headers), except the first latency in
//! each power of two, which allocates the histogram's counters for it, once per layer.
//! The delay is measured from that first poll (with a percentile delay: from the call).

mod handle;
mod latency;
mod layer;

pub mod future;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower::Service;

pub use self::handle::{Handle, HedgeSnapshot};
pub use self::layer::{Builder, HedgeLayer};

use self::future::ResponseFuture;
use self::latency::LatencyWindow;
use crate::classify::{Classify, ErrorsAsFailures, Verdict};
use crate::retry::budget::RetryBudget;
use crate::retry::replay::{CloneRequest, Replay};

/// When hedges go out.
// Built once per layer and kept in an `Arc`: boxing the window would only add a pointer
// to every call's read of the cached delay.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Delay {
    Fixed(Duration),
    Percentile(LatencyWindow),
}

/// The part of a hedge layer that does not depend on its classifier or replay: shared
/// by every service, future and [`Handle`].
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    pub(crate) metrics: crate::metrics::HedgeMetrics,
    pub(crate) delay: Delay,
    pub(crate) max_hedges: u32,
    pub(crate) budget: RetryBudget,
    /// Deposit one per request (`budget`), or only withdraw (`shared_budget`).
    pub(crate) deposit: bool,
    hedges: AtomicU64,
    wins: AtomicU64,
    denials: AtomicU64,
    rejected: AtomicU64,
}

impl Shared {
    pub(crate) fn new(
        name: Arc<str>,
        delay: Delay,
        max_hedges: u32,
        budget: RetryBudget,
        deposit: bool,
    ) -> Self {
        let metrics = crate::metrics::HedgeMetrics::new(&name);
        metrics.delay(match &delay {
            Delay::Fixed(delay) => Some(*delay),
            Delay::Percentile(_) => None,
        });
        Self {
            name,
            metrics,
            delay,
            max_hedges,
            budget,
            deposit,
            hedges: AtomicU64::new(0),
            wins: AtomicU64::new(0),
            denials: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        }
    }

    /// Whether calls record their latency (and so read the clock).
    #[inline]
    pub(crate) fn tracks_latency(&self) -> bool {
        matches!(self.delay, Delay::Percentile(_))
    }

    /// The delay before the first hedge of a call made at `now` (needed only with a
    /// percentile delay); `None`: not hedging.
    #[inline]
    pub(crate) fn delay(&self, now: Option<Instant>) -> Option<Duration> {
        match &self.delay {
            Delay::Fixed(delay) => Some(*delay),
            Delay::Percentile(window) => {
                let now = window.nanos(now.unwrap_or_else(Instant::now));
                if window.claim_refresh(now) {
                    self.refresh(window, now);
                }
                window.cached()
            }
        }
    }

    #[cold]
    fn refresh(&self, window: &LatencyWindow, now: u64) {
        let (before, after) = window.refresh(now);
        self.metrics.delay(after);
        #[cfg(feature = "tracing")]
        {
            let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            match (before, after) {
                (None, Some(delay)) => tracing::debug!(
                    target: "seawall::hedge",
                    policy = &*self.name,
                    delay_ms = ms(delay),
                    "hedging on: enough latencies in the window"
                ),
                (Some(_), None) => tracing::debug!(
                    target: "seawall::hedge",
                    policy = &*self.name,
                    "hedging off: too few latencies in the window"
                ),
                _ => tracing::trace!(
                    target: "seawall::hedge",
                    policy = &*self.name,
                    delay_ms = after.map(ms),
                    "hedge delay recomputed"
                ),
            }
        }
        #[cfg(not(feature = "tracing"))]
        let _ = before;
    }

    /// An attempt sent at `sent` ended at `now` as `outcome`: an answer counts; a failure
    /// only if it took at least the current delay (see the [module docs](self)); a local
    /// rejection never.
    #[inline]
    pub(crate) fn record(&self, sent: Instant, now: Instant, outcome: Outcome) {
        if let Delay::Percentile(window) = &self.delay {
            let latency = now.saturating_duration_since(sent);
            let counts = match outcome {
                Outcome::Answer => true,
                Outcome::Failure => window.cached().is_some_and(|delay| latency >= delay),
                Outcome::Rejected => false,
            };
            if counts {
                window.record(latency, window.nanos(now));
            }
        }
    }

    /// The first attempt, sent at `sent`, was cancelled at `now` by a winning hedge: its
    /// time so far counts, a lower bound of its latency.
    #[inline]
    pub(crate) fn record_cancelled(&self, sent: Instant, now: Instant) {
        if let Delay::Percentile(window) = &self.delay {
            window.record(now.saturating_duration_since(sent), window.nanos(now));
        }
    }

    /// Latencies in the window now (0 with a fixed delay).
    pub(crate) fn samples(&self) -> u64 {
        match &self.delay {
            Delay::Fixed(_) => 0,
            Delay::Percentile(window) => window.samples(window.nanos(Instant::now())),
        }
    }

    pub(crate) fn hedged(&self, hedge: u32, delay: Duration) {
        self.hedges.fetch_add(1, Ordering::Relaxed);
        self.metrics.hedge();
        #[cfg(feature = "tracing")]
        tracing::debug!(
            target: "seawall::hedge",
            policy = &*self.name,
            hedge,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "hedge sent"
        );
        #[cfg(not(feature = "tracing"))]
        let _ = (hedge, delay);
    }

    pub(crate) fn won(&self) {
        self.wins.fetch_add(1, Ordering::Relaxed);
        self.metrics.won();
        #[cfg(feature = "tracing")]
        tracing::debug!(target: "seawall::hedge", policy = &*self.name, "a hedge won");
    }

    pub(crate) fn denied(&self) {
        self.denials.fetch_add(1, Ordering::Relaxed);
        self.metrics.denied();
        #[cfg(feature = "tracing")]
        tracing::debug!(
            target: "seawall::hedge",
            policy = &*self.name,
            "hedge budget exhausted: not hedging"
        );
    }

    /// The hedges sent, won and denied so far.
    pub(crate) fn counts(&self) -> (u64, u64, u64, u64) {
        (
            self.hedges.load(Ordering::Relaxed),
            self.wins.load(Ordering::Relaxed),
            self.denials.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed),
        )
    }

    /// A hedge was rejected by a seawall layer below (an open breaker, a full bulkhead,
    /// a throttle): it never reached the downstream, so its retry goes back to the budget.
    pub(crate) fn rejected_below(&self, withdrawal: Option<crate::retry::budget::Withdrawal>) {
        if let Some(withdrawal) = withdrawal {
            self.budget.refund(withdrawal);
        }
        self.rejected.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "tracing")]
        tracing::debug!(
            target: "seawall::hedge",
            policy = &*self.name,
            "hedge rejected below: refunded to the budget"
        );
    }
}

/// What a hedge layer does: shared by every service and future it makes.
pub(crate) struct Policy<C, R> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) classifier: C,
    pub(crate) replay: R,
}

/// How an attempt ended, for deciding the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// An answer that is not a failure: it is the call's answer.
    Answer,
    /// A failure from the downstream.
    Failure,
    /// A local rejection by a seawall layer below: nothing was sent.
    Rejected,
}

impl<C, R> Policy<C, R> {
    pub(crate) fn judge<T, E: 'static>(&self, result: &Result<T, E>) -> Outcome
    where
        C: Classify<T, E>,
    {
        if let Err(e) = result {
            if crate::error::is_rejection_any(e) {
                return Outcome::Rejected;
            }
        }
        match self.classifier.classify(result) {
            Verdict::Classified(c) if c.is_failure() => Outcome::Failure,
            // Success, ignored, or decided at the end of the stream: an answer.
            _ => Outcome::Answer,
        }
    }
}

/// Sends copies of slow calls to `S`; see the [module docs](self).
///
/// Made by a [`HedgeLayer`]. `S` must be `Clone`: hedges are sent with a clone of the
/// service, readied before each hedge.
///
/// ```
/// use seawall::hedge::{Hedge, HedgeLayer};
/// use std::time::Duration;
/// use tower::{Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let layer = HedgeLayer::builder().delay(Duration::from_millis(20)).build().unwrap();
/// let svc: Hedge<_> = layer.layer(tower::service_fn(|x: u8| async move {
///     Ok::<_, std::io::Error>(x + 1)
/// }));
/// assert_eq!(svc.oneshot(1).await.unwrap(), 2);
/// # }
/// ```
pub struct Hedge<S, C = ErrorsAsFailures, R = CloneRequest> {
    inner: S,
    policy: Arc<Policy<C, R>>,
}

impl<S, C, R> Hedge<S, C, R> {
    pub(crate) fn new(inner: S, policy: Arc<Policy<C, R>>) -> Self {
        Self { inner, policy }
    }

    /// The inner service.
    ///
    /// ```
    /// use seawall::hedge::HedgeLayer;
    /// use tower::Layer;
    ///
    /// let layer = HedgeLayer::builder().build().unwrap();
    /// let svc = layer.layer(tower::service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) }));
    /// let _inner = svc.get_ref();
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, consuming the hedge.
    ///
    /// ```
    /// use seawall::hedge::HedgeLayer;
    /// use tower::Layer;
    ///
    /// let layer = HedgeLayer::builder().build().unwrap();
    /// let svc = layer.layer(tower::service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) }));
    /// let _inner = svc.into_inner();
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// A handle to the layer's delay and counts, shared with the layer and every
    /// service it made.
    ///
    /// ```
    /// use seawall::hedge::HedgeLayer;
    /// use std::time::Duration;
    /// use tower::Layer;
    ///
    /// let layer = HedgeLayer::builder().delay(Duration::from_millis(20)).build().unwrap();
    /// let svc = layer.layer(tower::service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) }));
    /// assert_eq!(svc.handle().delay(), Some(Duration::from_millis(20)));
    /// ```
    pub fn handle(&self) -> Handle {
        Handle::new(self.policy.shared.clone())
    }
}

impl<S: Clone, C, R> Clone for Hedge<S, C, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            policy: self.policy.clone(),
        }
    }
}

impl<S: fmt::Debug, C, R> fmt::Debug for Hedge<S, C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hedge")
            .field("inner", &self.inner)
            .field("name", &self.policy.shared.name)
            .field("max_hedges", &self.policy.shared.max_hedges)
            .finish_non_exhaustive()
    }
}

impl<S, Req, C, R> Service<Req> for Hedge<S, C, R>
where
    S: Service<Req> + Clone,
    S::Error: 'static,
    C: Classify<S::Response, S::Error>,
    R: Replay<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, Req, C, R>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let policy = &*self.policy;
        let shared = &*policy.shared;
        if shared.deposit {
            shared.budget.deposit();
        }
        let started = shared.tracks_latency().then(Instant::now);
        // No delay (warming up): no copy, no clone.
        let hedging = shared.delay(started).and_then(|delay| {
            let copy = policy.replay.replay(&request)?;
            // The readied service sends this call; the clone (readied before each use)
            // sends the hedges.
            Some(future::Hedging::new(self.inner.clone(), copy, delay))
        });
        let primary = self.inner.call(request);
        ResponseFuture::new(primary, hedging, started, self.policy.clone())
    }
}
