//! Future types

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;

use super::error::CircuitOpen;
use super::state::{Shared, Ticket};
use crate::classify::{Classification, Classify, ClassifyEos, RecordOutcome, Verdict};
use crate::BoxError;

/// The breaker's bookkeeping for one admitted call, waiting for its outcome.
///
/// The breaker's response future records through it when the response arrives; with an
/// end-of-stream classifier it travels inside the response (see
/// [`classify`](crate::classify#classification-at-end-of-stream)) and records when the
/// stream ends. Dropped unrecorded, the call counts as nothing and a half-open probe slot
/// it holds is given back. The example of [`ClassifyEos`] shows one travelling with a
/// response.
pub struct OutcomeRecorder {
    shared: Arc<Shared>,
    ticket: Ticket,
    /// When the call started (clock nanoseconds), kept only for the slow-call rule.
    started: Option<u64>,
    recorded: bool,
}

impl OutcomeRecorder {
    pub(crate) fn new(shared: Arc<Shared>, ticket: Ticket) -> Self {
        Self {
            shared,
            ticket,
            started: None,
            recorded: false,
        }
    }

    pub(crate) fn ticket(&self) -> Ticket {
        self.ticket
    }

    /// Mark the call as started now, if the slow-call rule needs its duration.
    #[inline]
    pub(crate) fn start(&mut self) {
        if self.shared.config.slow_calls.is_some() {
            self.started = Some(self.shared.clock.now());
        }
    }
}

impl RecordOutcome for OutcomeRecorder {
    #[inline]
    fn record(mut self, classification: Classification) {
        self.recorded = true;
        let slow = match (self.started, self.shared.config.slow_calls) {
            (Some(started), Some(rule)) => {
                let elapsed = self.shared.clock.now().saturating_sub(started);
                elapsed >= crate::time::duration_to_nanos(rule.threshold)
            }
            _ => false,
        };
        self.shared
            .record(self.ticket, classification.health(), slow);
    }
}

impl Drop for OutcomeRecorder {
    fn drop(&mut self) {
        if !self.recorded {
            self.shared.abandon(self.ticket);
        }
    }
}

impl fmt::Debug for OutcomeRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutcomeRecorder")
            .field("ticket", &self.ticket)
            .field("recorded", &self.recorded)
            .finish()
    }
}

pin_project! {
    /// Response future of [`CircuitBreaker`](super::CircuitBreaker): the inner call,
    /// whose outcome it records, or a ready [`CircuitOpen`] rejection.
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
        Rejected {
            error: Option<CircuitOpen>,
        },
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn called(future: F, classifier: C, recorder: OutcomeRecorder) -> Self {
        Self {
            kind: Kind::Called {
                future,
                classifier,
                recorder: Some(recorder),
            },
        }
    }

    pub(crate) fn rejected(error: CircuitOpen) -> Self {
        Self {
            kind: Kind::Rejected { error: Some(error) },
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
                let verdict = classifier.classify(&result);
                let Some(recorder) = recorder.take() else {
                    // Polled again after completion: a contract breach by the caller.
                    // Answer without recording anything twice.
                    return Poll::Ready(
                        result
                            .map(<C::Eos as ClassifyEos<T>>::passthrough)
                            .map_err(Into::into),
                    );
                };
                Poll::Ready(match verdict {
                    Verdict::Classified(classification) => {
                        recorder.record(classification);
                        result
                            .map(<C::Eos as ClassifyEos<T>>::passthrough)
                            .map_err(Into::into)
                    }
                    Verdict::AtEndOfStream(eos) => match result {
                        Ok(response) => Ok(eos.defer(response, recorder)),
                        // An error has no stream; nothing to defer. The classifier chose
                        // end-of-stream for it, which is a classifier bug: count nothing.
                        Err(err) => Err(err.into()),
                    },
                })
            }
            KindProj::Rejected { error } => Poll::Ready(Err(match error.take() {
                Some(error) => Box::new(error),
                None => Box::new(CircuitOpen::new(None)),
            })),
        }
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
