//! Bound how many calls may be in flight to a downstream at once.
//!
//! A slow dependency must not be able to take every connection, task and permit of its
//! caller. A [`Bulkhead`] lets at most `max_concurrent` calls through at once; the rest
//! are rejected with [`BulkheadFull`](error::BulkheadFull) at once (the default), or wait
//! in FIFO order up to [`max_wait`](Builder::max_wait) for a permit.
//!
//! ```
//! use seawall::bulkhead::BulkheadLayer;
//! use seawall::error::BulkheadFull;
//! use tower::{Layer, Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let bulkhead = BulkheadLayer::builder().max_concurrent(1).build().unwrap();
//! let handle = bulkhead.handle();
//! let mut svc = bulkhead.layer(tower::service_fn(|ms: u64| async move {
//!     tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
//!     Ok::<_, std::io::Error>(ms)
//! }));
//!
//! // One slow call holds the only permit...
//! let slow = svc.ready().await.unwrap().call(50);
//! assert_eq!(handle.in_flight(), 1);
//! // ...so the next call is rejected at once.
//! let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
//! assert!(err.is::<BulkheadFull>());
//! // When the slow call ends, its permit comes back.
//! assert_eq!(slow.await.unwrap(), 50);
//! assert_eq!(handle.in_flight(), 0);
//! # }
//! ```
//!
//! # Permits
//!
//! A permit is taken in `poll_ready` and travels with the response future: it comes back
//! when the response arrives or when the future is dropped, at whatever point. Every
//! clone of the service, and every service built by the same layer, shares the permits.
//!
//! # Waiting
//!
//! With a positive [`max_wait`](Builder::max_wait), `poll_ready` waits for a permit in
//! FIFO order; a newcomer never takes a permit ahead of a caller already waiting. A
//! caller still waiting after `max_wait` is ready at once and its call is rejected with
//! `BulkheadFull`. [`max_waiting`](Builder::max_waiting) bounds the queue: callers beyond
//! it are rejected at once.
//!
//! # Defaults
//!
//! | setting | default | why |
//! |---|---|---|
//! | max concurrent | 25 | Resilience4j's semaphore bulkhead |
//! | max wait | zero: fail fast | Resilience4j and Polly: a bulkhead that queues hides overload |
//! | max waiting | [`DEFAULT_MAX_WAITING`], 1024 (only with a positive max wait) | Envoy's `max_pending_requests`: a queue with no bound turns a slow downstream into unbounded memory |
//!
//! # Adaptive limits
//!
//! [`Builder::adaptive`] lets an algorithm from [`adaptive`] ([`Aimd`](adaptive::Aimd),
//! [`Gradient2`](adaptive::Gradient2), [`Vegas`](adaptive::Vegas)) find the limit from the
//! latency and failures of the calls, and follow the downstream's capacity as it changes.
//! [`Handle::limit`] shows the limit it chose.
//!
//! ```
//! use seawall::bulkhead::adaptive::Gradient2;
//! use seawall::bulkhead::BulkheadLayer;
//!
//! let layer = BulkheadLayer::builder()
//!     .name("inventory")
//!     .adaptive(Gradient2::builder().min_limit(2).max_limit(500).build()?)
//!     .build()?;
//! assert_eq!(layer.handle().limit(), 20); // Gradient2's initial limit
//! # Ok::<(), seawall::error::ConfigError>(())
//! ```
//!
//! # Partitions
//!
//! [`Builder::partition`] reserves shares of the limit for named classes of traffic
//! (say interactive 90 %, batch 10 %), so that one class cannot take the last permits of
//! another; [`Builder::build_partitioned`] takes the closure that names each request's
//! class. See [`PartitionedBulkheadLayer`].
//!
//! # Run-time control
//!
//! [`BulkheadLayer::handle`] gives a [`Handle`]: calls in flight, callers waiting, the
//! limit, rejections, and [`set_limit`](Handle::set_limit) to resize the bulkhead while
//! it runs without losing or double-counting permits.
//!
//! # Cost
//!
//! Taking a permit is one compare-and-swap, giving it back one `fetch_sub`; the response
//! future holds a `&'static` reference to the bulkhead's pooled counters, not an `Arc`
//! (beyond 4096 bulkheads alive at once, the counters of the newer ones are reference
//! counted instead, and freed with them). The queue's lock is taken only when callers
//! wait; joining it and leaving it (granted, timed out or dropped) are O(1).

pub mod adaptive;
pub mod error;
pub mod future;
mod handle;
mod layer;
mod limiter;
mod partition;
mod queue;

use std::fmt;
use std::future::Future as _;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::Service;

pub use self::future::Permit;
pub use self::handle::Handle;
pub use self::layer::{Builder, BulkheadLayer, DEFAULT_MAX_WAITING};
pub use self::partition::{PartitionedBulkhead, PartitionedBulkheadLayer};

use self::future::ResponseFuture;
pub(crate) use self::limiter::Shared;
use self::limiter::{Enqueued, LaneRef, Queued};
use crate::BoxError;

/// When a call's permit is given back, given the inner service's response `T`.
///
/// [`OnResponse`] (the default) gives it back when the response arrives. With the `http`
/// feature, [`http::UntilBodyEnd`](crate::http::UntilBodyEnd) keeps it until the response
/// body has been read to its end (or dropped), so a slow body still counts against the
/// limit.
///
/// ```
/// use seawall::bulkhead::{OnResponse, Permit, Release};
///
/// fn response_type<H: Release<String, Response = String>>() {}
/// response_type::<OnResponse>(); // the response passes through unchanged
/// ```
pub trait Release<T> {
    /// The response the bulkhead returns in place of `T`.
    type Response;

    /// The call answered with `response` while holding `permit`.
    fn release(response: T, permit: Permit) -> Self::Response;

    /// The same response, with no permit to hold (a response future polled again after
    /// it completed).
    fn without_permit(response: T) -> Self::Response;
}

/// Give the permit back as soon as the response arrives (the default); see [`Release`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OnResponse;

impl<T> Release<T> for OnResponse {
    type Response = T;

    #[inline]
    fn release(response: T, permit: Permit) -> T {
        drop(permit);
        response
    }

    #[inline]
    fn without_permit(response: T) -> T {
        response
    }
}

/// A caller queued for a permit: leaves the queue if dropped before it is granted.
struct WaitSlot {
    shared: Arc<Shared>,
    /// `None` once the slot has been settled (granted or left).
    waiter: Option<Queued>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    since: tokio::time::Instant,
}

impl WaitSlot {
    /// Leave the queue. Returns whether a permit had been granted meanwhile (it is then
    /// the caller's).
    fn leave(&mut self) -> bool {
        match self.waiter.take() {
            Some(waiter) => self.shared.leave(&waiter),
            None => false,
        }
    }
}

impl Drop for WaitSlot {
    fn drop(&mut self) {
        if self.leave() {
            // Granted while nobody was looking: give the permit back.
            self.shared.lane.release();
        }
    }
}

/// What `poll_ready` found, for `call` to act on.
enum Reservation {
    None,
    Permit(Permit),
    Waiting(WaitSlot),
    Rejected,
}

/// A bulkhead around a service `S`: at most a fixed number of calls in flight at once.
///
/// Made by [`BulkheadLayer`]; every clone shares the permits. See the
/// [module docs](self).
///
/// ```
/// use seawall::bulkhead::{Bulkhead, BulkheadLayer};
/// use tower::Layer;
///
/// let svc: Bulkhead<_> = BulkheadLayer::builder()
///     .max_concurrent(8)
///     .build()
///     .unwrap()
///     .layer(tower::service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
/// assert_eq!(svc.handle().limit(), 8);
/// ```
pub struct Bulkhead<S, H = OnResponse> {
    inner: S,
    shared: Arc<Shared>,
    /// The bulkhead's lane, kept here so the success path reads it in one hop.
    lane: LaneRef,
    max_wait: Duration,
    reservation: Reservation,
    _release: PhantomData<fn() -> H>,
}

impl<S, H> Bulkhead<S, H> {
    fn from_parts(inner: S, shared: Arc<Shared>, max_wait: Duration) -> Self {
        Self {
            inner,
            lane: shared.lane.clone(),
            shared,
            max_wait,
            reservation: Reservation::None,
            _release: PhantomData,
        }
    }

    /// A handle to the bulkhead this service shares with its clones.
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

    /// The inner service, consuming the bulkhead.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Find a permit (or a rejection) for the next call. `Ready` once the reservation is
    /// a permit or a rejection.
    #[cold]
    fn reserve(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match &mut self.reservation {
                Reservation::Permit(_) | Reservation::Rejected => return Poll::Ready(()),
                Reservation::None => {
                    if self.lane.try_acquire() {
                        self.reservation = Reservation::Permit(Permit::taken(&self.shared));
                        continue;
                    }
                    if self.max_wait.is_zero() {
                        self.reservation = Reservation::Rejected;
                        continue;
                    }
                    self.reservation = match self.shared.enqueue() {
                        Enqueued::Granted => Reservation::Permit(Permit::taken(&self.shared)),
                        Enqueued::Full => Reservation::Rejected,
                        Enqueued::Queued(waiter) => Reservation::Waiting(WaitSlot {
                            shared: self.shared.clone(),
                            waiter: Some(waiter),
                            deadline: Box::pin(tokio::time::sleep(self.max_wait)),
                            since: tokio::time::Instant::now(),
                        }),
                    };
                }
                Reservation::Waiting(slot) => {
                    let granted = match &slot.waiter {
                        Some(waiter) if waiter.is_granted() => true,
                        Some(waiter) => {
                            waiter.set_waker(cx.waker());
                            // Granted between the first look and registering the waker?
                            waiter.is_granted()
                        }
                        None => false,
                    };
                    if granted {
                        slot.waiter = None; // settled: the permit is ours
                        self.shared.metrics.waited(slot.since.elapsed());
                        self.reservation = Reservation::Permit(Permit::taken(&self.shared));
                        continue;
                    }
                    if slot.deadline.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    // Waited long enough.
                    let granted = slot.leave();
                    self.shared.metrics.waited(slot.since.elapsed());
                    self.reservation = if granted {
                        Reservation::Permit(Permit::taken(&self.shared))
                    } else {
                        Reservation::Rejected
                    };
                }
            }
        }
    }
}

impl<S, H, Req> Service<Req> for Bulkhead<S, H>
where
    S: Service<Req>,
    S::Error: Into<BoxError> + 'static,
    H: Release<S::Response>,
{
    type Response = H::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, H>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self.reservation {
            // The success path: a free permit, taken at once.
            Reservation::None if self.lane.try_acquire() => {
                self.reservation = Reservation::Permit(Permit::taken(&self.shared));
            }
            // Asked again after a rejection: look again rather than repeat it.
            Reservation::Rejected => self.reservation = Reservation::None,
            _ => {}
        }
        if !matches!(self.reservation, Reservation::Permit(_)) {
            std::task::ready!(self.reserve(cx));
        }
        match self.reservation {
            Reservation::Permit(_) => self.inner.poll_ready(cx).map_err(Into::into),
            _ => Poll::Ready(Ok(())),
        }
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        match std::mem::replace(&mut self.reservation, Reservation::None) {
            Reservation::Permit(permit) => ResponseFuture::called(self.inner.call(request), permit),
            // Called without `poll_ready` (or while still waiting): no waiting here.
            Reservation::None | Reservation::Waiting(_) if self.lane.try_acquire() => {
                ResponseFuture::called(self.inner.call(request), Permit::taken(&self.shared))
            }
            _ => {
                self.shared.note_rejection();
                ResponseFuture::rejected()
            }
        }
    }
}

impl<S: Clone, H> Clone for Bulkhead<S, H> {
    fn clone(&self) -> Self {
        // A clone shares the permits but not this service's reservation.
        Self::from_parts(self.inner.clone(), self.shared.clone(), self.max_wait)
    }
}

impl<S: fmt::Debug, H> fmt::Debug for Bulkhead<S, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("inner", &self.inner)
            .field("name", &self.shared.name)
            .field("in_flight", &self.lane.in_flight())
            .field("limit", &self.lane.limit())
            .finish_non_exhaustive()
    }
}
