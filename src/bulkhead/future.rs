//! Future types

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;

use super::error::BulkheadFull;
use super::limiter::{Lane, Shared};
use crate::BoxError;

/// A permit of a bulkhead: one call in flight. Dropping it gives the permit back.
///
/// The bulkhead's response future holds it until the response arrives (or the future is
/// dropped). It holds no reference count: only a `&'static` reference to the bulkhead's
/// pooled counters.
pub struct Permit {
    lane: &'static Lane,
    /// With `metrics`: the in-flight gauge, lowered when the permit is dropped.
    _metrics: crate::metrics::PermitMetrics,
}

impl Permit {
    /// Wrap a permit already taken from `shared`'s lane.
    #[inline]
    pub(crate) fn taken(shared: &Shared) -> Self {
        Self {
            lane: shared.lane,
            _metrics: shared.metrics.acquired(),
        }
    }
}

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        self.lane.release();
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit").finish_non_exhaustive()
    }
}

pin_project! {
    /// Response future of [`Bulkhead`](super::Bulkhead): the inner call holding its
    /// permit, or a ready [`BulkheadFull`] rejection.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called {
            #[pin]
            future: F,
            permit: Option<Permit>,
        },
        Rejected,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(future: F, permit: Permit) -> Self {
        Self {
            kind: Kind::Called {
                future,
                permit: Some(permit),
            },
        }
    }

    pub(crate) fn rejected() -> Self {
        Self {
            kind: Kind::Rejected,
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { future, permit } => {
                let result = ready!(future.poll(cx));
                // The call is over: give the permit back before handing over the result.
                drop(permit.take());
                Poll::Ready(result.map_err(Into::into))
            }
            KindProj::Rejected => Poll::Ready(Err(Box::new(BulkheadFull::new()))),
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
