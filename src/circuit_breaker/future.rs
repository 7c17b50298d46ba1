//! Future types

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;

use super::error::CircuitOpen;
use super::state::{Lane, Shared, Ticket};
use crate::classify::{Classification, Classify, ClassifyEos, Health, RecordOutcome, Verdict};
use crate::lane::LaneRef;
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
    /// `None` once recorded (or moved out by the response future).
    kind: Option<RecorderKind>,
}

enum RecorderKind {
    /// Holds the breaker: every outcome is recorded.
    Tracked {
        shared: Arc<Shared>,
        ticket: Ticket,
        /// When the call started (clock nanoseconds), kept only for the slow-call rule.
        started: Option<u64>,
    },
    /// Admitted while the window was full of successes: holds only the breaker's lane.
    /// A success that still finds the window clean changes nothing; anything else looks
    /// the breaker up through the lane and is recorded like a tracked call.
    Fast {
        lane: LaneRef<Lane>,
        generation: u32,
    },
}

impl OutcomeRecorder {
    /// A recorder for a fast-path call: no reference count.
    #[inline]
    pub(crate) fn fast(lane: LaneRef<Lane>, generation: u32) -> Self {
        Self {
            kind: Some(RecorderKind::Fast { lane, generation }),
        }
    }

    #[inline]
    pub(crate) fn new(shared: &Arc<Shared>, ticket: Ticket) -> Self {
        let kind = match ticket {
            Ticket::Fast { generation } => RecorderKind::Fast {
                lane: shared.lane.clone(),
                generation,
            },
            _ => RecorderKind::Tracked {
                shared: shared.clone(),
                ticket,
                started: None,
            },
        };
        Self { kind: Some(kind) }
    }

    /// A recorder for a call that starts now (the slow-call rule times it from here).
    #[inline]
    pub(crate) fn starting_now(shared: &Arc<Shared>, ticket: Ticket) -> Self {
        let mut recorder = Self::new(shared, ticket);
        recorder.start();
        recorder
    }

    /// Move the bookkeeping out, leaving an empty recorder behind.
    #[inline]
    fn take(&mut self) -> Self {
        Self {
            kind: self.kind.take(),
        }
    }

    /// The admission ticket (`None` once recorded).
    #[inline]
    pub(crate) fn ticket(&self) -> Option<Ticket> {
        match self.kind.as_ref()? {
            RecorderKind::Tracked { ticket, .. } => Some(*ticket),
            RecorderKind::Fast { generation, .. } => Some(Ticket::Fast {
                generation: *generation,
            }),
        }
    }

    /// Mark the call as started now, if the slow-call rule needs its duration.
    #[inline]
    pub(crate) fn start(&mut self) {
        if let Some(RecorderKind::Tracked {
            shared, started, ..
        }) = &mut self.kind
        {
            if shared.config.slow_calls.is_some() {
                *started = Some(shared.clock.now());
            }
        }
    }
}

impl RecordOutcome for OutcomeRecorder {
    #[inline]
    fn record(mut self, classification: Classification) {
        let health = classification.health();
        let kind = self.kind.take();
        // Nothing is left for `Drop` to give back.
        std::mem::forget(self);
        match kind {
            None => {}
            Some(RecorderKind::Tracked {
                shared,
                ticket,
                started,
            }) => {
                let slow = match (started, shared.config.slow_calls) {
                    (Some(started), Some(rule)) => {
                        let elapsed = shared.clock.now().saturating_sub(started);
                        elapsed >= crate::time::duration_to_nanos(rule.threshold)
                    }
                    _ => false,
                };
                shared.record(ticket, health, slow);
            }
            Some(RecorderKind::Fast { lane, generation }) => match health {
                Health::Ignored => {}
                Health::Success if lane.success_is_a_no_op() => {}
                _ => record_through_lane(&lane, generation, health),
            },
        }
    }
}

/// The rare path of a fast call: a failure, or a success after the window stopped being
/// clean. Find the breaker (it may be gone) and record as a tracked call would.
#[cold]
fn record_through_lane(lane: &Lane, generation: u32, health: Health) {
    if let Some(shared) = lane.breaker() {
        shared.record(Ticket::Call { generation }, health, false);
    }
}

impl Drop for OutcomeRecorder {
    #[inline]
    fn drop(&mut self) {
        // Unrecorded: only probes hold anything to give back, and probes are tracked.
        if let Some(RecorderKind::Tracked { shared, ticket, .. }) = &self.kind {
            shared.abandon(*ticket);
        }
    }
}

impl fmt::Debug for OutcomeRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutcomeRecorder")
            .field("ticket", &self.ticket())
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
            recorder: OutcomeRecorder,
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
                recorder,
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
                let recorder = recorder.take();
                if recorder.kind.is_none() {
                    // Polled again after completion: a contract breach by the caller.
                    // Answer without recording anything twice.
                    return Poll::Ready(
                        result
                            .map(<C::Eos as ClassifyEos<T>>::passthrough)
                            .map_err(Into::into),
                    );
                }
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
