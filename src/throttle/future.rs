//! Future types

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;

use super::error::Throttled;
use super::state::Shared;
use super::window::Outcome;
use crate::classify::{Classification, Classify, ClassifyEos, Health, RecordOutcome, Verdict};
use crate::BoxError;

/// The throttle's bookkeeping for one call it sent, waiting for the call's outcome.
///
/// The response future records through it when the response arrives; with an
/// end-of-stream classifier it travels inside the response (see
/// [`classify`](crate::classify#classification-at-end-of-stream)) and records when the
/// stream ends. A success counts as a request the backend accepted, a failure as a request
/// it did not accept, an ignored outcome as nothing. Dropped unrecorded (the caller gave
/// up, or the body was dropped half-way), the call counts as nothing.
///
/// ```
/// use seawall::classify::{Classification, RecordOutcome};
/// use seawall::throttle::future::OutcomeRecorder;
///
/// fn finish(recorder: OutcomeRecorder, trailers_ok: bool) {
///     recorder.record(if trailers_ok {
///         Classification::success()
///     } else {
///         Classification::failure()
///     });
/// }
/// # let _ = finish;
/// ```
pub struct OutcomeRecorder {
    shared: Arc<Shared>,
    slot: u64,
}

impl OutcomeRecorder {
    #[inline]
    pub(crate) fn new(shared: Arc<Shared>, slot: u64) -> Self {
        Self { shared, slot }
    }
}

impl RecordOutcome for OutcomeRecorder {
    #[inline]
    fn record(self, classification: Classification) {
        match classification.health() {
            Health::Success => self.shared.record(self.slot, Outcome::Accepted),
            Health::Failure => self.shared.record(self.slot, Outcome::Failed),
            Health::Ignored => {}
        }
    }
}

impl fmt::Debug for OutcomeRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutcomeRecorder")
            .field("policy", &&*self.shared.config.name)
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// Response future of [`Throttle`](super::Throttle): the inner call, whose outcome
    /// it counts, or a ready [`Throttled`] rejection.
    ///
    /// ```
    /// use seawall::throttle::ThrottleLayer;
    /// use tower::{Layer, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let mut svc = ThrottleLayer::builder().build().unwrap().layer(tower::service_fn(
    ///     |x: u32| async move { Ok::<_, std::io::Error>(x) },
    /// ));
    /// // A `ResponseFuture`: `Send`, so it may be spawned.
    /// let future = svc.ready().await.unwrap().call(7);
    /// assert_eq!(tokio::spawn(future).await.unwrap().unwrap(), 7);
    /// # }
    /// ```
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F, C>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, C> {
        Called {
            #[pin]
            future: F,
            classifier: C,
            recorder: Option<OutcomeRecorder>,
        },
        Throttled,
    }
}

impl<F, C> ResponseFuture<F, C> {
    #[inline]
    pub(crate) fn called(future: F, classifier: C, recorder: OutcomeRecorder) -> Self {
        Self {
            kind: Kind::Called {
                future,
                classifier,
                recorder: Some(recorder),
            },
        }
    }

    pub(crate) fn throttled() -> Self {
        Self {
            kind: Kind::Throttled,
        }
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, E>,
{
    type Output = Result<<C::Eos as ClassifyEos<T>>::Response<OutcomeRecorder>, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called {
                future,
                classifier,
                recorder,
            } => {
                let result = ready!(future.poll(cx));
                let Some(recorder) = recorder.take() else {
                    // Polled again after completion (a contract breach by the caller,
                    // reached only if the inner future tolerates it): answer without
                    // counting anything twice.
                    return Poll::Ready(
                        result
                            .map(<C::Eos as ClassifyEos<T>>::passthrough)
                            .map_err(Into::into),
                    );
                };
                Poll::Ready(match classifier.classify(&result) {
                    Verdict::Classified(classification) => {
                        recorder.record(classification);
                        result
                            .map(<C::Eos as ClassifyEos<T>>::passthrough)
                            .map_err(Into::into)
                    }
                    Verdict::AtEndOfStream(eos) => match result {
                        Ok(response) => Ok(eos.defer(response, recorder)),
                        // An error has no stream to wait for; the classifier chose
                        // end-of-stream for it, which is a classifier bug: count nothing.
                        Err(err) => Err(err.into()),
                    },
                })
            }
            // A zero-sized error: boxing it allocates nothing.
            KindProj::Throttled => Poll::Ready(Err(Box::new(Throttled::new()))),
        }
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let throttled = matches!(self.kind, Kind::Throttled);
        f.debug_struct("ResponseFuture")
            .field("throttled", &throttled)
            .finish_non_exhaustive()
    }
}
