//! Fault injection for your own tests and game days, after Polly's Simmy: make a share of
//! the calls through a service fail, slow down or hang, on purpose, to see what the rest
//! of the stack (and the people on call) do about it.
//!
//! A [`FaultLayer`] decides for each call, with a seeded generator, whether it gets a
//! fault (with probability [`rate`](Builder::rate)) and which one (in proportion to the
//! faults' [weights](Builder::weight)):
//!
//! | fault | what the caller sees | the inner service |
//! |---|---|---|
//! | [`error`](Builder::error), [`error_value`](Builder::error_value) | the error, boxed as [`BoxError`] | not called |
//! | [`latency`](Builder::latency) | the answer, `latency` later | called; its future polled after the delay |
//! | [`hang`](Builder::hang) | nothing, ever, until it drops the future | not called |
//! | [`status`](http::Builder::status) (HTTP servers, [`http`]) | a response with that status, e.g. 503 with `Retry-After` | not called |
//! | [`abort`](http::Builder::abort) (HTTP servers, [`http`]) | the connection closed with no response (HTTP/2: the stream reset) | not called |
//!
//! A [`Handle`] switches injection on and off and changes the rate at run time, from a
//! test, an admin endpoint or a game-day script, and counts what was injected.
//!
//! ```
//! use seawall::chaos::{FaultLayer, InjectedFault};
//! use seawall::BoxError;
//! use std::time::Duration;
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//! // 10% of calls fail and 5% hang (a weighted mix: 15% get a fault, split 2 to 1).
//! let chaos = FaultLayer::builder()
//!     .name("inventory")
//!     .rate(0.15)
//!     .seed(7) // the same faults on the same calls every run
//!     .error_value(InjectedFault::new())
//!     .weight(2)
//!     .hang()
//!     .build()?; // inert until switched on: deploy it, switch it on for the game day
//! let handle = chaos.handle();
//! let inventory = chaos.layer(service_fn(|sku: u32| async move { Ok::<_, BoxError>(sku) }));
//! // A timeout above the faults turns a hang into an error, as it should for a real one.
//! let client = tower::timeout::TimeoutLayer::new(Duration::from_secs(1)).layer(inventory);
//!
//! handle.enable();
//! let mut failed = 0;
//! for sku in 0..1_000 {
//!     if client.clone().oneshot(sku).await.is_err() {
//!         failed += 1;
//!     }
//! }
//! handle.disable();
//!
//! let snap = handle.snapshot();
//! assert_eq!(snap.calls, 1_000);
//! assert_eq!(failed, snap.errors + snap.hangs);
//! assert!((100..200).contains(&failed), "about 15%: {failed}");
//! # Ok(()) }
//! ```
//!
//! # Where it goes
//!
//! Innermost, just above the client: the faults then stand for the downstream's, and
//! every layer above meets them as it would meet the real thing. A timeout ends hangs
//! and long delays, the breaker counts the errors and trips, the retry layer retries
//! them within its budget. The injected errors are not local rejections
//! ([`is_rejection`](crate::error::is_rejection) says `false`), so nothing above treats
//! them as its own stack's fast-fails. On a server, [`http::HttpFaultLayer`] answers
//! requests itself, so that the server's clients see the faults.
//!
//! # Decisions
//!
//! Each call is decided once, in `poll_ready`, from the n-th output of a SplitMix64
//! generator seeded by [`seed`](Builder::seed) (random by default), where n counts the
//! calls decided so far: for a given seed, the same sequence of calls gets the same
//! faults every run (with calls from many tasks, which call is n-th depends on their
//! order; how many get a fault does not). A call that gets an error, a hang, or (on a
//! server) a status or an abort does not wait for the inner service to be ready, and the
//! inner service is not called: nothing below reserves a permit or a probe slot for it.
//! A decision made in `poll_ready` stands until `call`, even if the layer is switched
//! off in between; a clone of the service starts with no decision.
//!
//! A layer is built disabled (switch it on with [`Handle::enable`], or build it with
//! [`enabled(true)`](Builder::enabled)): a fault layer built or deployed by mistake
//! injects nothing. A disabled layer decides nothing and counts nothing. It costs one relaxed atomic load
//! per call, and every clone of the layer's services shares the same switch.
//!
//! # Cost
//!
//! Disabled: one relaxed atomic load per call. Enabled: that load, one `fetch_add` on a
//! counter shared by every clone, and one SplitMix64 mix. A call without a fault
//! allocates nothing (its future holds the inner future, with room for a delay's timer
//! inline), and nothing boxes a future. An injected error is built and boxed when it is
//! injected. The shared counter is one cache line written
//! by every call while enabled: fine for tests and game days, not something to leave
//! enabled in a latency benchmark.
//!
//! # Observability
//!
//! [`Handle::snapshot`] gives the switch, the rate, the calls decided while enabled, and
//! the faults injected by kind, without any feature. With `metrics`, the counter
//! `seawall_chaos_faults_total` (labels `policy`, and `fault` = `error` / `latency` /
//! `hang` / `status` / `abort`) and the gauge `seawall_chaos_injection_rate` (the rate
//! while enabled, 0 while disabled). With `tracing`, a `debug` event when injection is
//! enabled or disabled, or the rate changes, and a `trace` event per injected fault.

mod error;
pub mod future;
mod handle;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
mod layer;
mod state;

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::Service;

pub use self::error::InjectedFault;
pub use self::handle::Handle;
pub use self::layer::{Builder, FaultLayer};

use self::future::ResponseFuture;
use self::state::{Action, Decision, Shared};
use crate::BoxError;

/// A fault layer's switch, rate and counts at one moment, from [`Handle::snapshot`].
///
/// ```
/// use seawall::chaos::{FaultLayer, InjectedFault};
/// use tower::{Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let layer = FaultLayer::builder()
///     .rate(1.0)
///     .error_value(InjectedFault::new())
///     .enabled(true)
///     .build()
///     .unwrap();
/// let handle = layer.handle();
/// let svc = layer.layer(tower::service_fn(|x: u32| async move {
///     Ok::<_, std::io::Error>(x)
/// }));
/// for x in 0..3 {
///     let _ = svc.clone().oneshot(x).await;
/// }
/// let snap = handle.snapshot();
/// assert!(snap.enabled);
/// assert_eq!(snap.rate, 1.0);
/// assert_eq!((snap.calls, snap.errors, snap.injected()), (3, 3, 3));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
    /// Whether the layer injects faults now.
    pub enabled: bool,
    /// The probability that a call gets a fault while enabled.
    pub rate: f64,
    /// Calls decided while the layer was enabled (a disabled layer counts nothing).
    pub calls: u64,
    /// Error faults injected.
    pub errors: u64,
    /// Latency faults injected.
    pub delays: u64,
    /// Hang faults injected.
    pub hangs: u64,
    /// Status-code faults injected (HTTP layer only; zero otherwise).
    pub statuses: u64,
    /// Aborted responses injected (HTTP layer only; zero otherwise).
    pub aborts: u64,
}

impl Snapshot {
    /// Faults injected, of every kind.
    ///
    /// ```
    /// use seawall::chaos::FaultLayer;
    ///
    /// let layer = FaultLayer::builder().rate(0.5).hang().build().unwrap();
    /// assert_eq!(layer.handle().snapshot().injected(), 0);
    /// ```
    pub fn injected(&self) -> u64 {
        self.errors + self.delays + self.hangs + self.statuses + self.aborts
    }
}

/// Fault injection around a service `S`, made by [`FaultLayer`]; every clone shares the
/// layer's switch, rate and seeded sequence. Its error type is [`BoxError`]: the inner
/// service's errors, or the injected ones. See the [module docs](self).
///
/// ```
/// use seawall::chaos::{FaultInjection, FaultLayer};
/// use tower::Layer;
///
/// let svc: FaultInjection<_> = FaultLayer::builder()
///     .rate(0.1)
///     .hang()
///     .build()
///     .unwrap()
///     .layer(tower::service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
/// let handle = svc.handle(); // the same switch as the layer's handle
/// assert!(!handle.is_enabled());
/// ```
pub struct FaultInjection<S> {
    inner: S,
    shared: Arc<Shared>,
    /// Decided in `poll_ready`, acted on in `call`.
    decision: Option<Decision>,
}

impl<S> FaultInjection<S> {
    fn from_parts(inner: S, shared: Arc<Shared>) -> Self {
        Self {
            inner,
            shared,
            decision: None,
        }
    }

    /// A handle to the layer this service shares with its clones.
    ///
    /// ```
    /// use seawall::chaos::FaultLayer;
    /// use tower::Layer;
    ///
    /// let layer = FaultLayer::builder().name("db").rate(0.1).hang().build().unwrap();
    /// let svc = layer.layer(tower::service_fn(|x: u32| async move {
    ///     Ok::<_, std::io::Error>(x)
    /// }));
    /// assert_eq!(svc.handle().name(), "db");
    /// ```
    pub fn handle(&self) -> Handle {
        Handle::new(self.shared.clone())
    }

    /// The inner service.
    ///
    /// ```
    /// use seawall::chaos::FaultLayer;
    /// use tower::Layer;
    ///
    /// let svc = FaultLayer::builder().rate(0.1).hang().build().unwrap().layer(5u8);
    /// assert_eq!(*svc.get_ref(), 5);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    ///
    /// ```
    /// use seawall::chaos::FaultLayer;
    /// use tower::Layer;
    ///
    /// let mut svc = FaultLayer::builder().rate(0.1).hang().build().unwrap().layer(5u8);
    /// *svc.get_mut() += 1;
    /// assert_eq!(*svc.get_ref(), 6);
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the wrapper.
    ///
    /// ```
    /// use seawall::chaos::FaultLayer;
    /// use tower::Layer;
    ///
    /// let svc = FaultLayer::builder().rate(0.1).hang().build().unwrap().layer(5u8);
    /// assert_eq!(svc.into_inner(), 5);
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// Decides the call's fault in `poll_ready` (both fault layers), once per call: polled
/// again while the inner service is pending, the decision stands. Returns whether the
/// fault answers without the inner service (every fault but a latency; each layer's
/// builder adds only its own faults), which then need not be ready.
#[inline]
pub(crate) fn decide_ready(shared: &Shared, decision: &mut Option<Decision>) -> bool {
    let decision = *decision.get_or_insert_with(|| shared.decide());
    shared
        .entry(decision)
        .is_some_and(|entry| !matches!(entry.action, Action::Latency(_)))
}

impl<S, Req> Service<Req> for FaultInjection<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if decide_ready(&self.shared, &mut self.decision) {
            // Nothing below needs to be ready for a call that is not sent.
            return Poll::Ready(Ok(()));
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        // Without a decision, `call` came without `poll_ready` (a contract breach by the
        // caller): decide now.
        let decision = self.decision.take().unwrap_or_else(|| self.shared.decide());
        let Some(entry) = self.shared.entry(decision) else {
            return ResponseFuture::called(self.inner.call(request));
        };
        match &entry.action {
            Action::Error(make) => {
                self.shared.injected(entry);
                ResponseFuture::error(make())
            }
            Action::Latency(latency) => {
                self.shared.injected(entry);
                ResponseFuture::delayed(tokio::time::sleep(*latency), self.inner.call(request))
            }
            Action::Hang => {
                self.shared.injected(entry);
                ResponseFuture::hang()
            }
            // HTTP faults are never in this layer's list (its builder cannot add them).
            #[cfg(feature = "http")]
            Action::Status { .. } | Action::Abort => {
                ResponseFuture::called(self.inner.call(request))
            }
        }
    }
}

impl<S: Clone> Clone for FaultInjection<S> {
    fn clone(&self) -> Self {
        // A clone shares the layer but not this service's pending decision.
        Self::from_parts(self.inner.clone(), self.shared.clone())
    }
}

impl<S: fmt::Debug> fmt::Debug for FaultInjection<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultInjection")
            .field("inner", &self.inner)
            .field("name", &self.shared.name)
            .field("decision", &self.decision)
            .finish_non_exhaustive()
    }
}
