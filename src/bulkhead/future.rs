//! Future types

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;

use super::error::BulkheadFull;
use super::limiter::{LaneRef, Shared};
use super::Release;
use crate::BoxError;

/// A permit of a bulkhead: one call in flight. Dropping it gives the permit back.
///
/// The bulkhead's response future holds it until the response arrives (or the future is
/// dropped). It holds no reference count: only a `&'static` reference to the bulkhead's
/// pooled counters (unless more than 4096 bulkheads are alive at once: the newer ones'
/// counters are reference counted, and freed with them).
pub struct Permit {
    lane: LaneRef,
    /// With `metrics`: the in-flight gauge, lowered when the permit is dropped.
    _metrics: crate::metrics::PermitMetrics,
    /// With an adaptive limit: what the algorithm needs to learn from this call.
    observation: Option<Observation>,
}

/// A call of an adaptive bulkhead, as it started.
struct Observation {
    shared: Arc<Shared>,
    started: u64,
    in_flight: u32,
    limit: u32,
}

impl Permit {
    /// Wrap a permit already taken from `shared`'s lane.
    #[inline]
    pub(crate) fn taken(shared: &Arc<Shared>) -> Self {
        let observation = shared.adaptive.as_ref().map(|adaptive| Observation {
            shared: shared.clone(),
            started: adaptive.clock.now(),
            in_flight: shared.lane.in_flight(),
            limit: shared.lane.limit(),
        });
        Self {
            lane: shared.lane.clone(),
            _metrics: shared.metrics.acquired(),
            observation,
        }
    }

    /// The call answered: teach an adaptive limit how it went. `dropped` is whether it
    /// failed in a way that signals overload; `None` means it says nothing about the
    /// downstream (a local rejection by an inner layer) and teaches nothing.
    #[inline]
    pub(crate) fn observe(&mut self, dropped: Option<bool>) {
        if let Some(o) = self.observation.take() {
            if let Some(dropped) = dropped {
                o.shared.observe(o.started, o.in_flight, o.limit, dropped);
            }
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
    /// permit, or a ready [`BulkheadFull`] rejection. `H` says when the permit is given
    /// back (see [`Release`](super::Release)).
    ///
    /// # Panics
    ///
    /// Polled again after it completed (returned `Poll::Ready`), it panics with
    /// "polled after completion", as the `futures` combinators do: answering `Pending`
    /// forever would hang the caller silently.
    pub struct ResponseFuture<F, H = super::OnResponse> {
        #[pin]
        kind: Kind<F>,
        _release: PhantomData<fn() -> H>,
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
        // Answered: the inner future is dropped.
        Finished,
        Rejected,
    }
}

impl<F, H> ResponseFuture<F, H> {
    pub(crate) fn called(future: F, permit: Permit) -> Self {
        Self {
            kind: Kind::Called {
                future,
                permit: Some(permit),
            },
            _release: PhantomData,
        }
    }

    pub(crate) fn rejected() -> Self {
        Self {
            kind: Kind::Rejected,
            _release: PhantomData,
        }
    }
}

impl<F, H, T, E> Future for ResponseFuture<F, H>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError> + 'static,
    H: Release<T>,
{
    type Output = Result<H::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        match kind.as_mut().project() {
            KindProj::Called { future, permit } => {
                let result = ready!(future.poll(cx));
                let mut permit = permit.take();
                // Drop the inner future before the permit can go back: whatever it still
                // holds (a timed-out attempt's call) must not outlive the permit.
                kind.set(Kind::Finished);
                if let Some(permit) = &mut permit {
                    permit.observe(match &result {
                        Ok(_) => Some(false),
                        Err(e) if crate::error::is_rejection_any(e) => None,
                        Err(_) => Some(true),
                    });
                }
                Poll::Ready(match (result, permit) {
                    (Ok(response), Some(permit)) => Ok(H::release(response, permit)),
                    // Not reached: the permit is taken once, as the future finishes.
                    (Ok(response), None) => Ok(H::without_permit(response)),
                    // An error has no body: the permit goes back now.
                    (Err(err), _) => Err(err.into()),
                })
            }
            KindProj::Rejected => {
                kind.set(Kind::Finished);
                Poll::Ready(Err(Box::new(BulkheadFull::new())))
            }
            // The caller's contract breach: say so, rather than hang it.
            KindProj::Finished => panic!("`bulkhead::ResponseFuture` polled after completion"),
        }
    }
}

impl<F, H> fmt::Debug for ResponseFuture<F, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
