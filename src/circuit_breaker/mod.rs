//! Stop calling a downstream that is failing, and find out cheaply when it recovers.
//!
//! A [`CircuitBreaker`] watches the outcomes of the calls that pass through it (as a
//! [classifier](crate::classify) judges them). When the downstream looks broken it
//! *opens*: calls fail at once with [`CircuitOpen`], without touching
//! the inner service, so a dead dependency costs nanoseconds instead of a timeout and
//! stops receiving load it cannot serve. After an open period it lets a few *probes*
//! through (*half-open*); if they succeed it *closes* again.
//!
//! ```
//! use seawall::circuit_breaker::CircuitBreakerLayer;
//! use seawall::BoxError;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
//! let breaker = CircuitBreakerLayer::builder()
//!     .name("inventory")
//!     .consecutive_failures(3)
//!     .build()?;
//! let handle = breaker.handle();
//!
//! let inventory = ServiceBuilder::new()
//!     .layer(breaker)
//!     .service(service_fn(|_sku: u32| async { Err::<u32, _>("connection refused") }));
//!
//! for _ in 0..3 {
//!     assert!(inventory.clone().oneshot(7).await.is_err());
//! }
//! // Three failures in a row opened the breaker: the next call fails fast.
//! let err = inventory.clone().oneshot(7).await.unwrap_err();
//! assert!(seawall::error::is_rejection(&*err));
//! assert_eq!(handle.snapshot().rejections, 1);
//! # Ok(()) }
//! ```
//!
//! # States
//!
//! | state | calls | leaves when |
//! |---|---|---|
//! | [`Closed`](State::Closed) | pass, and are counted | a trip rule holds → Open |
//! | [`Open`](State::Open) | rejected with [`CircuitOpen`] | the open duration is over → HalfOpen, at that instant |
//! | [`HalfOpen`](State::HalfOpen) | up to `half_open_probes` probes pass; others are rejected | every probe succeeded → Closed; one failed → Open; `max_half_open_duration` reached with a probe still out → Open, at that instant |
//! | [`ForcedOpen`](State::ForcedOpen) | rejected | an operator calls [`Handle::reset`] or [`Handle::disable`] |
//! | [`Disabled`](State::Disabled) | pass, still counted, never trip | an operator calls [`Handle::reset`] or [`Handle::force_open`] |
//!
//! # Trip rules
//!
//! Any combination of:
//!
//! - **failure rate**: the share of failed calls in the window reaches
//!   [`failure_rate`](Builder::failure_rate), once the window holds
//!   [`minimum_calls`](Builder::minimum_calls);
//! - **slow-call rate**: the share of calls slower than a threshold reaches a rate
//!   ([`slow_calls`](Builder::slow_calls)), with the same minimum;
//! - **consecutive failures**: [`consecutive_failures`](Builder::consecutive_failures) in
//!   a row.
//!
//! The window is either the last N calls ([`count_window`](Builder::count_window)) or the
//! calls of the last T seconds kept in buckets ([`time_window`](Builder::time_window)).
//! Both record a call in O(1) with atomics only. Calls that the classifier marks
//! [`Ignored`](crate::classify::Health::Ignored) (for example a rejection by a bulkhead
//! below the breaker) count as nothing.
//!
//! # Open duration
//!
//! The first trip opens the breaker for [`open_duration`](Builder::open_duration). Each
//! trip that follows without a healthy period in between (a failed probe, or a new trip
//! within [`reset_backoff_after`](Builder::reset_backoff_after) of closing) multiplies it
//! by [`open_duration_multiplier`](Builder::open_duration_multiplier), up to
//! [`max_open_duration`](Builder::max_open_duration). Each open duration is shortened by a
//! random share of up to [`jitter`](Builder::jitter) (seed it with
//! [`seed`](Builder::seed)), so a fleet of clients that tripped together does not probe
//! together.
//!
//! # Probes and cancellation
//!
//! Half-open admits exactly [`half_open_probes`](Builder::half_open_probes) probes. A
//! probe takes its slot in `call`, not in `poll_ready`: a service that is readied and
//! never called (parked in tower's `ReadyCache` or `Balance`, or an abandoned `ready()`)
//! holds no slot and starves no one. A probe whose response future is dropped (the
//! caller gave up) frees its slot and counts as nothing. A probe that never finishes is
//! bounded by [`max_half_open_duration`](Builder::max_half_open_duration), so a
//! half-open breaker cannot get stuck: at that limit, with a probe still out, the breaker
//! is open again, and its next open period counts from the limit.
//!
//! # Timed transitions
//!
//! The end of an open period and the half-open limit are transitions that happen at a
//! known instant. The breaker makes them when it is next looked at (a call,
//! `poll_ready`, [`Handle::state`], [`Handle::snapshot`], a subscriber's
//! [`recv`](Transitions::recv), which waits for them on a timer), dated at the instant
//! they were due, so what it reports is always true at that instant and no call needs to
//! arrive. It runs no task of its own. (The `metrics` state gauge moves when the
//! transition is made, that is, at the next such look.)
//!
//! # Readiness: fail fast or backpressure
//!
//! - [`Readiness::FailFast`] (default): while the breaker rejects, `poll_ready` is ready
//!   at once without polling the inner service, and `call` returns a ready `CircuitOpen`
//!   carrying the time until the next probe.
//! - [`Readiness::Backpressure`]: while the breaker rejects, `poll_ready` is `Pending` and
//!   wakes when a probe may go. Use it for one endpoint of a pool under
//!   `tower::balance::p2c::Balance`: an open endpoint is not ready, so the balancer sends
//!   its traffic to the others (per-endpoint ejection, as Envoy and Linkerd do).
//!
//! Waiting in backpressure mode costs O(1) per waiting service and is cancel-safe: each
//! waiting service holds one place in a queue, which it gives up when it is dropped, so
//! callers that give up leave nothing behind. The breaker wakes only as many waiters as
//! can proceed: as many as there are free probe slots when it goes half-open, one when a
//! probe slot is given back, and everyone when it closes. `poll_ready` only observes a
//! free probe slot, so a readied service can still be rejected by `call` when other
//! callers took the last slots in between.
//!
//! # Defaults
//!
//! | setting | default | why |
//! |---|---|---|
//! | window | last 100 calls | Resilience4j |
//! | failure rate | 50 % | Resilience4j, Hystrix |
//! | minimum calls | 20 | Hystrix; below this a rate says little |
//! | slow calls, consecutive failures | off | |
//! | open duration | 5 s, ×2 per repeated trip, capped at 300 s, 10 % jitter | Polly's 5 s; Envoy's and Finagle's growth to 300 s |
//! | backoff reset | after 300 s closed | |
//! | half-open probes | 1 | Polly, Hystrix, Linkerd |
//! | max half-open duration | 30 s | |
//! | readiness | fail fast | |
//!
//! # Observability
//!
//! [`CircuitBreakerLayer::handle`] gives a [`Handle`] (state, [`Snapshot`], force open,
//! reset, disable, [`subscribe`](Handle::subscribe) to [`Transition`]s) without any
//! feature. With `metrics`, see [`crate::metrics`] for the metric names; with `tracing`, every
//! transition is an event (`warn` when opening, `info` otherwise) and nothing is logged
//! per call.
//!
//! # Cost
//!
//! In the Closed state, while a count window holds only successes (a healthy
//! downstream), a call takes no lock, allocates nothing, boxes nothing, reads no clock and
//! makes no atomic read-modify-write: it loads the state word and the window's totals, and
//! its response future holds a `&'static` reference to the breaker's pooled *lane* instead
//! of an `Arc`. A success that still finds the window clean records nothing, because it
//! would overwrite a success with a success. Anything else (a failure, or a window that
//! changed meanwhile) is recorded exactly through the lane. Every other call (an unclean
//! window, a time window, a slow-call rule, or the `metrics` feature) clones one `Arc`
//! and takes one `fetch_add` for its window slot. See `BENCHMARKS.md` for the
//! measurements against other breakers.

pub mod error;
pub mod future;
mod handle;
mod layer;
mod state;
mod wait;
mod window;

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::Service;

pub use self::handle::{Handle, Transitions};
pub use self::layer::{Builder, CircuitBreakerLayer};

use self::error::CircuitOpen;
use self::future::{OutcomeRecorder, ResponseFuture};
use self::state::Shared;
use crate::classify::{Classify, ClassifyEos, ErrorsAsFailures};
use crate::BoxError;

/// A breaker's state.
///
/// ```
/// use seawall::circuit_breaker::{CircuitBreakerLayer, State};
///
/// let handle = CircuitBreakerLayer::builder().build().unwrap().handle();
/// assert_eq!(handle.state(), State::Closed);
/// assert_eq!(State::HalfOpen.as_str(), "half_open");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum State {
    /// Calls pass and are counted.
    Closed = 0,
    /// Calls are rejected until the open duration is over.
    Open = 1,
    /// A limited number of probes pass; their outcomes decide.
    HalfOpen = 2,
    /// An operator forced the breaker open: every call is rejected.
    ForcedOpen = 3,
    /// An operator disabled the breaker: every call passes and is still counted.
    Disabled = 4,
}

impl State {
    fn from_tag(tag: u8) -> Self {
        match tag {
            0 => State::Closed,
            1 => State::Open,
            2 => State::HalfOpen,
            3 => State::ForcedOpen,
            _ => State::Disabled,
        }
    }

    /// The state's name in snake case, as metrics label it (`"half_open"`).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
            State::Disabled => "disabled",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a transition happened; see [`Transition`] for an example.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cause {
    /// The failure rate reached its threshold.
    FailureRate,
    /// The slow-call rate reached its threshold.
    SlowCallRate,
    /// Too many failures in a row.
    ConsecutiveFailures,
    /// The open duration is over; calls may probe.
    OpenElapsed,
    /// Every half-open probe succeeded.
    ProbesSucceeded,
    /// A half-open probe failed (or was slow, with the slow-call rule on).
    ProbeFailed,
    /// A probe was still out when the max half-open duration was reached.
    HalfOpenTimeout,
    /// [`Handle::force_open`].
    Forced,
    /// [`Handle::reset`].
    Reset,
    /// [`Handle::disable`].
    Disabled,
}

/// One state transition, as [`Handle::subscribe`] reports it.
///
/// ```
/// use seawall::circuit_breaker::{Cause, CircuitBreakerLayer, State};
///
/// let handle = CircuitBreakerLayer::builder().build().unwrap().handle();
/// let mut transitions = handle.subscribe();
/// handle.disable();
/// let t = transitions.try_recv().unwrap();
/// assert_eq!((t.from, t.to, t.cause), (State::Closed, State::Disabled, Cause::Disabled));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transition {
    /// The state before.
    pub from: State,
    /// The state after.
    pub to: State,
    /// Why.
    pub cause: Cause,
    /// When, on tokio's clock.
    pub at: tokio::time::Instant,
}

/// A breaker's state and counts at one moment, from [`Handle::snapshot`].
///
/// ```
/// use seawall::circuit_breaker::CircuitBreakerLayer;
/// use tower::{Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let layer = CircuitBreakerLayer::builder().build().unwrap();
/// let handle = layer.handle();
/// let svc = layer.layer(tower::service_fn(|fail: bool| async move {
///     if fail { Err("boom") } else { Ok(()) }
/// }));
/// for fail in [true, false, false, false] {
///     let _ = svc.clone().oneshot(fail).await;
/// }
/// let snap = handle.snapshot();
/// assert_eq!((snap.calls, snap.failures), (4, 1));
/// assert_eq!(snap.failure_rate(), 0.25);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The state.
    pub state: State,
    /// Calls in the window (since the breaker last closed, at most the window's size).
    pub calls: u64,
    /// Failed calls in the window.
    pub failures: u64,
    /// Slow calls in the window (with a slow-call rule).
    pub slow_calls: u64,
    /// Failures in a row (with a consecutive-failure rule).
    pub consecutive_failures: u32,
    /// Calls rejected since the breaker was built.
    pub rejections: u64,
    /// Trips in a row without a healthy period (drives the open duration's growth).
    pub trips: u32,
    /// Half-open probes in flight.
    pub probes_in_flight: u32,
    /// Half-open probes that have succeeded in this half-open period.
    pub probe_successes: u32,
    /// While open: the time until the next probe may go.
    pub next_probe_in: Option<Duration>,
}

impl Snapshot {
    /// Failed calls / calls in the window (0 for an empty window).
    pub fn failure_rate(&self) -> f64 {
        ratio(self.failures, self.calls)
    }

    /// Slow calls / calls in the window (0 for an empty window).
    pub fn slow_call_rate(&self) -> f64 {
        ratio(self.slow_calls, self.calls)
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// What the breaker does to readiness while it rejects calls.
///
/// ```
/// use seawall::circuit_breaker::{CircuitBreakerLayer, Readiness};
///
/// // For one endpoint of a `tower::balance::p2c::Balance`: not ready while open.
/// let layer = CircuitBreakerLayer::builder()
///     .readiness(Readiness::Backpressure)
///     .build()
///     .unwrap();
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Readiness {
    /// `poll_ready` is ready at once (without polling the inner service) and `call`
    /// returns a ready [`CircuitOpen`] error.
    #[default]
    FailFast,
    /// `poll_ready` is `Pending` until a probe may go; use under a load balancer. Waiting
    /// uses a tokio timer, so it needs a tokio runtime with time enabled. A readied
    /// service holds no probe slot: `call` takes it, and may still reject if other
    /// callers took the last slots in between.
    Backpressure,
}

/// What `poll_ready` left for `call` or for the next `poll_ready`. On the success path it
/// is `None` and nothing is written between `poll_ready` and `call`. Nothing here holds a
/// probe slot: `call` takes one, so that a service readied and never called (parked in
/// a `ReadyCache`, or an abandoned `ready()`) starves no one.
enum Reservation {
    None,
    /// Fail-fast: `poll_ready` found the breaker rejecting and did not poll the inner
    /// service, so `call` must reject.
    Rejected(CircuitOpen),
    /// Backpressure: this service is queued to be woken.
    Waiting(Waiter),
}

/// A service's place among the breaker's waiters (backpressure mode); dropping it (with
/// the service) takes the service out of the queue.
struct Waiter {
    shared: Arc<Shared>,
    key: usize,
    /// Dropped without proceeding: a wake it was given and never used goes on.
    pass_on: bool,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.shared.waiters.remove(self.key, self.pass_on);
    }
}

/// A circuit breaker around a service `S`, judging results with classifier `C`.
///
/// Made by [`CircuitBreakerLayer`]; every clone shares the breaker. See the
/// [module docs](self).
///
/// ```
/// use seawall::circuit_breaker::{CircuitBreaker, CircuitBreakerLayer};
/// use tower::Layer;
///
/// let svc: CircuitBreaker<_> = CircuitBreakerLayer::builder()
///     .build()
///     .unwrap()
///     .layer(tower::service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
/// let handle = svc.handle(); // the same breaker as the layer's handle
/// # let _ = handle;
/// ```
pub struct CircuitBreaker<S, C = ErrorsAsFailures> {
    inner: S,
    shared: Arc<Shared>,
    /// The breaker's lane, kept here so the success path reads it in one hop.
    lane: crate::lane::LaneRef<state::Lane>,
    classifier: C,
    readiness: Readiness,
    reservation: Reservation,
    /// Backpressure mode: wakes `poll_ready` when the breaker's next timed transition is
    /// due, if this service keeps the waiters' timer.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S, C> CircuitBreaker<S, C> {
    fn from_parts(inner: S, shared: Arc<Shared>, classifier: C, readiness: Readiness) -> Self {
        Self {
            inner,
            lane: shared.lane.clone(),
            shared,
            classifier,
            readiness,
            reservation: Reservation::None,
            sleep: None,
        }
    }

    /// A handle to the breaker this service shares with its clones.
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

    /// The inner service, consuming the breaker.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// `poll_ready` off the success path: a breaker that does not admit calls right now,
    /// or a service that was rejected or waiting.
    #[cold]
    fn poll_ready_slow<Req>(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>>
    where
        S: Service<Req>,
        S::Error: Into<BoxError>,
    {
        loop {
            // Asked again: look again rather than repeat an old rejection.
            if let Reservation::Rejected(_) = self.reservation {
                self.reservation = Reservation::None;
            }
            let rejection = match self.shared.observe() {
                Ok(()) => {
                    self.stop_waiting();
                    return self.inner.poll_ready(cx).map_err(Into::into);
                }
                Err(rejection) => rejection,
            };
            match self.readiness {
                Readiness::FailFast => {
                    self.reservation =
                        Reservation::Rejected(CircuitOpen::new(rejection.retry_after));
                    return Poll::Ready(Ok(()));
                }
                Readiness::Backpressure => {
                    if self.wait(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
            }
        }
    }

    /// Backpressure: queue this service to be woken when the breaker may admit again.
    /// `Ready` means look again now.
    fn wait(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let key = match &self.reservation {
            Reservation::Waiting(waiter) => Some(waiter.key),
            _ => None,
        };
        let (key, keeps_timer) = self.shared.waiters.register(key, cx.waker());
        if !matches!(self.reservation, Reservation::Waiting(_)) {
            self.reservation = Reservation::Waiting(Waiter {
                shared: self.shared.clone(),
                key,
                pass_on: true,
            });
        }
        // Queued before looking again, so a change in between is not missed.
        let rejection = match self.shared.observe() {
            Ok(()) => return Poll::Ready(()),
            Err(rejection) => rejection,
        };
        // One waiter sleeps until the breaker's next timed transition; the others wait
        // for a wake (see `wait.rs`).
        match rejection.recheck_at.filter(|_| keeps_timer) {
            Some(at) => {
                let deadline = self.shared.clock.instant(at);
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                sleep.as_mut().reset(deadline);
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(());
                }
            }
            None => self.sleep = None,
        }
        Poll::Pending
    }

    /// The service proceeds: leave the queue (a wake it was given is used).
    fn stop_waiting(&mut self) {
        if let Reservation::Waiting(waiter) = &mut self.reservation {
            waiter.pass_on = false;
            self.reservation = Reservation::None;
        }
        self.sleep = None;
    }
}

use std::future::Future as _;

impl<S, C, Req> Service<Req> for CircuitBreaker<S, C>
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
        // The success path: nothing reserved and the breaker admits calls (one load).
        if matches!(self.reservation, Reservation::None) && self.lane.admits_calls() {
            return self.inner.poll_ready(cx).map_err(Into::into);
        }
        self.poll_ready_slow(cx)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        let admitted = match &self.reservation {
            // The success path: nothing reserved; admit now from the lane.
            Reservation::None => match self.lane.try_admit() {
                Some(state::Ticket::Fast { generation }) => {
                    Ok(OutcomeRecorder::fast(self.lane.clone(), generation))
                }
                _ => self.acquire(),
            },
            Reservation::Rejected(_) | Reservation::Waiting(_) => {
                match std::mem::replace(&mut self.reservation, Reservation::None) {
                    Reservation::Rejected(error) => Err(error),
                    // Called without a ready `poll_ready` (a contract breach): decide now.
                    _ => self.acquire(),
                }
            }
        };
        match admitted {
            Ok(recorder) => {
                ResponseFuture::called(self.inner.call(request), self.classifier.clone(), recorder)
            }
            Err(error) => {
                self.shared.note_rejection();
                ResponseFuture::rejected(error)
            }
        }
    }
}

impl<S, C> CircuitBreaker<S, C> {
    /// Admit a call off the fast path: a half-open probe takes its slot here. A
    /// backpressure service that `poll_ready` found admissible may still be rejected
    /// here if other callers took the last probe slots in between.
    fn acquire(&self) -> Result<OutcomeRecorder, CircuitOpen> {
        self.shared
            .try_acquire()
            .map(|ticket| OutcomeRecorder::starting_now(&self.shared, ticket))
            .map_err(|rejection| CircuitOpen::new(rejection.retry_after))
    }
}

impl<S: Clone, C: Clone> Clone for CircuitBreaker<S, C> {
    fn clone(&self) -> Self {
        // A clone shares the breaker but not this service's reservation or timer.
        Self::from_parts(
            self.inner.clone(),
            self.shared.clone(),
            self.classifier.clone(),
            self.readiness,
        )
    }
}

impl<S: fmt::Debug, C> fmt::Debug for CircuitBreaker<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("name", &self.shared.config.name)
            .field("state", &self.shared.state())
            .field("readiness", &self.readiness)
            .finish_non_exhaustive()
    }
}
