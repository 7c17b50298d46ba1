//! Future types

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tower::Service;

use super::backoff::{Backoff, Retrying};
use super::replay::Replay;
use super::Policy;
use crate::classify::{Classify, Verdict};

pin_project! {
    /// Response future of [`Retry`](super::Retry): the attempts, and the waits between
    /// them.
    pub struct ResponseFuture<S, Req, C, B, R>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S::Future>,
        service: S,
        policy: Arc<Policy<C, B, R>>,
        // The copy the next attempt sends (`None`: no more attempts are possible).
        request: Option<Req>,
        // Attempts sent so far.
        attempts: u32,
        previous_delay: Duration,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Calling { #[pin] future: F },
        Waiting { #[pin] sleep: tokio::time::Sleep },
        Readying,
    }
}

impl<S, Req, C, B, R> ResponseFuture<S, Req, C, B, R>
where
    S: Service<Req>,
{
    pub(crate) fn new(
        future: S::Future,
        service: S,
        policy: Arc<Policy<C, B, R>>,
        request: Option<Req>,
    ) -> Self {
        Self {
            state: State::Calling { future },
            service,
            policy,
            request,
            attempts: 1,
            previous_delay: Duration::ZERO,
        }
    }
}

impl<S, Req, C, B, R> Future for ResponseFuture<S, Req, C, B, R>
where
    S: Service<Req>,
    S::Error: 'static,
    C: Classify<S::Response, S::Error>,
    B: Backoff<S::Response, S::Error>,
    R: Replay<Req>,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    let result = ready!(future.poll(cx));
                    let policy = &**this.policy;
                    let Some(delay) = policy.retry_after(
                        &result,
                        *this.attempts,
                        *this.previous_delay,
                        this.request
                            .as_ref()
                            .is_some_and(|copy| policy.replay.can_replay(copy)),
                    ) else {
                        return Poll::Ready(result);
                    };
                    *this.previous_delay = delay;
                    this.state.set(State::Waiting {
                        sleep: tokio::time::sleep(delay),
                    });
                }
                StateProj::Waiting { sleep } => {
                    ready!(sleep.poll(cx));
                    this.state.set(State::Readying);
                }
                StateProj::Readying => {
                    ready!(this.service.poll_ready(cx))?;
                    let Some(request) = this.request.take() else {
                        // Unreachable by construction (a retry is decided only with a
                        // copy in hand); answer as a completed service would not, but
                        // without panicking: wait forever is worse, so poll again.
                        return Poll::Pending;
                    };
                    *this.attempts += 1;
                    this.policy.metrics.retry();
                    if *this.attempts < this.policy.max_attempts {
                        *this.request = this.policy.replay.replay(&request);
                    }
                    let future = this.service.call(request);
                    this.state.set(State::Calling { future });
                }
            }
        }
    }
}

impl<C, B, R> Policy<C, B, R> {
    /// Whether (and after how long) to retry after `result`, the outcome of attempt
    /// number `attempts`. Spends a retry from the budget when it says yes.
    fn retry_after<T, E>(
        &self,
        result: &Result<T, E>,
        attempts: u32,
        previous_delay: Duration,
        have_copy: bool,
    ) -> Option<Duration>
    where
        E: 'static,
        C: Classify<T, E>,
        B: Backoff<T, E>,
    {
        if attempts >= self.max_attempts || !have_copy {
            return None;
        }
        // A local rejection by this stack (breaker open, bulkhead full, throttled): nothing
        // reached the downstream, and retrying would only add load. Not retried, no budget.
        if let Err(e) = result {
            if crate::error::is_rejection_any(e) {
                return None;
            }
        }
        let classification = match self.classifier.classify(result) {
            Verdict::Classified(c) if c.is_retryable() => c,
            // Not retryable, or decided only when a stream ends: final.
            _ => return None,
        };
        if let Some(budget) = &self.budget {
            if !budget.try_withdraw() {
                // Out of budget: the caller gets the last real failure.
                self.metrics.denied();
                #[cfg(feature = "tracing")]
                tracing::debug!(
                    target: "seawall::retry",
                    policy = &*self.name,
                    attempts,
                    "retry budget exhausted: not retrying"
                );
                return None;
            }
        }
        let delay = match classification.pushback() {
            Some(pushback) => pushback.min(self.max_pushback),
            None => self
                .backoff
                .delay(Retrying::new(attempts, previous_delay, result)),
        };
        self.metrics.delay(delay);
        #[cfg(feature = "tracing")]
        tracing::debug!(
            target: "seawall::retry",
            policy = &*self.name,
            attempt = attempts + 1,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "retrying"
        );
        Some(delay)
    }
}

impl<S, Req, C, B, R> fmt::Debug for ResponseFuture<S, Req, C, B, R>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}
