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
use super::budget::Withdrawal;
use super::replay::Replay;
use super::Policy;
use crate::classify::{Classification, Classify, Verdict};

pin_project! {
    /// Response future of [`Retry`](super::Retry): the attempts, and the waits between
    /// them.
    ///
    /// A retry is taken from the budget when it is decided; if it is never sent (the
    /// service fails to become ready, or this future is dropped while it waits), it is
    /// refunded.
    ///
    /// # Panics
    ///
    /// Polling it again after it returned its result panics with
    /// "`seawall::retry::future::ResponseFuture` polled after completion": a contract
    /// violation, as for `async fn` futures and `futures`' combinators (it would
    /// otherwise poll a finished attempt, wait forever, or send the request once more).
    pub struct ResponseFuture<S, Req, C, B, R>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S::Future, Req>,
        service: S,
        policy: Arc<Policy<C, B, R>>,
        // Attempts sent so far.
        attempts: u32,
        previous_delay: Duration,
    }

    impl<S, Req, C, B, R> PinnedDrop for ResponseFuture<S, Req, C, B, R>
    where
        S: Service<Req>,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            match this.state.project() {
                // A retry decided but not sent goes back to the budget.
                StateProj::Waiting { withdrawal, .. } | StateProj::Readying { withdrawal, .. } => {
                    this.policy.refund(withdrawal.take());
                }
                // An attempt cancelled while it was out (it had been polled and was not
                // rejected at once) was sent: count it.
                StateProj::Calling { out, .. } if *out => this.policy.count_sent(*this.attempts),
                StateProj::Calling { .. } | StateProj::Done => {}
            }
        }
    }
}

pin_project! {
    #[project = StateProj]
    #[project_replace = StateReplace]
    enum State<F, Req> {
        // `withdrawal`: the budget's retry this attempt spent (`None` for the first).
        // `copy`: the copy the next attempt sends (`None`: no more attempts possible).
        // `out`: the attempt answered `Pending`: it was not rejected at once.
        Calling {
            #[pin] future: F,
            withdrawal: Option<Withdrawal>,
            copy: Option<Req>,
            out: bool,
        },
        Waiting { #[pin] sleep: tokio::time::Sleep, withdrawal: Option<Withdrawal>, request: Req },
        Readying { withdrawal: Option<Withdrawal>, request: Req },
        // The result was returned.
        Done,
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
        copy: Option<Req>,
    ) -> Self {
        Self {
            state: State::Calling {
                future,
                withdrawal: None,
                copy,
                out: false,
            },
            service,
            policy,
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

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling {
                    future,
                    withdrawal,
                    copy,
                    out,
                } => {
                    let Poll::Ready(result) = future.poll(cx) else {
                        *out = true;
                        return Poll::Pending;
                    };
                    let policy = &**this.policy;
                    let rejected = matches!(&result, Err(e) if crate::error::is_rejection_any(e));
                    if rejected {
                        // A retry that a layer below rejected (say, the breaker the
                        // earlier attempts tripped) reached nobody: its budget goes
                        // back, and it is not counted as sent. The caller gets the
                        // rejection.
                        policy.refund(withdrawal.take());
                    } else {
                        policy.count_sent(*this.attempts);
                    }
                    // The copy, if the replay lets it go out after this result (asked only
                    // of a retryable failure: a success costs nothing more).
                    let copy = copy.take();
                    let decision =
                        policy.retry_after(&result, *this.attempts, *this.previous_delay, || {
                            copy.filter(|copy| policy.replay.can_retry(copy, &result))
                        });
                    let Some((delay, withdrawal, request)) = decision else {
                        this.state.set(State::Done);
                        return Poll::Ready(result);
                    };
                    *this.previous_delay = delay;
                    this.state.set(State::Waiting {
                        sleep: tokio::time::sleep(delay),
                        withdrawal,
                        request,
                    });
                }
                StateProj::Waiting { sleep, .. } => {
                    ready!(sleep.poll(cx));
                    if let StateReplace::Waiting {
                        withdrawal,
                        request,
                        ..
                    } = this.state.as_mut().project_replace(State::Done)
                    {
                        this.state.set(State::Readying {
                            withdrawal,
                            request,
                        });
                    }
                }
                StateProj::Readying { withdrawal, .. } => {
                    if let Err(e) = ready!(this.service.poll_ready(cx)) {
                        // The retry is not sent: its budget goes back.
                        this.policy.refund(withdrawal.take());
                        this.state.set(State::Done);
                        return Poll::Ready(Err(e));
                    }
                    if let StateReplace::Readying {
                        withdrawal,
                        request,
                    } = this.state.as_mut().project_replace(State::Done)
                    {
                        // Sent: the retry stays spent, unless a layer below rejects it.
                        *this.attempts += 1;
                        let copy = if *this.attempts < this.policy.max_attempts {
                            this.policy.replay.replay(&request)
                        } else {
                            None
                        };
                        let future = this.service.call(request);
                        this.state.set(State::Calling {
                            future,
                            withdrawal,
                            copy,
                            out: false,
                        });
                    }
                }
                StateProj::Done => {
                    panic!("`seawall::retry::future::ResponseFuture` polled after completion")
                }
            }
        }
    }
}

impl<C, B, R> Policy<C, B, R> {
    /// Gives a retry taken by [`retry_after`](Self::retry_after) but not sent back to
    /// the budget.
    fn refund(&self, withdrawal: Option<Withdrawal>) {
        if let (Some(budget), Some(withdrawal)) = (&self.budget, withdrawal) {
            budget.refund(withdrawal);
        }
    }

    /// Whether (and after how long) to retry after `result`, the outcome of attempt
    /// number `attempts`, and the copy to send (`copy`, asked for only when the failure
    /// is retryable and attempts remain). Takes a retry from the budget when it says yes
    /// (returned with the delay; refund it if the retry is not sent).
    fn retry_after<T, E, Req>(
        &self,
        result: &Result<T, E>,
        attempts: u32,
        previous_delay: Duration,
        copy: impl FnOnce() -> Option<Req>,
    ) -> Option<(Duration, Option<Withdrawal>, Req)>
    where
        E: 'static,
        C: Classify<T, E>,
        B: Backoff<T, E>,
    {
        if attempts >= self.max_attempts {
            return None;
        }
        // A local rejection by this stack (breaker open, bulkhead full, throttled): nothing
        // reached the downstream, and retrying would only add load. Not retried, no budget.
        if let Err(e) = result {
            if crate::error::is_rejection_any(e) {
                return None;
            }
        }
        match self.classifier.classify(result) {
            Verdict::Classified(c) if c.is_retryable() => {
                let copy = copy()?;
                let (delay, withdrawal) = self.take_retry(&c, result, attempts, previous_delay)?;
                Some((delay, withdrawal, copy))
            }
            // Not retryable, or decided only when a stream ends: final.
            _ => None,
        }
    }

    /// Counts attempt number `attempt` as sent (not rejected by a stage below).
    #[inline]
    fn count_sent(&self, attempt: u32) {
        if attempt == 1 {
            self.metrics.first();
        } else {
            self.metrics.retry();
        }
    }

    /// A retryable failure: a retry from the budget, and the delay before it. Out of
    /// line: the calls that succeed never get here.
    #[inline(never)]
    fn take_retry<T, E>(
        &self,
        classification: &Classification,
        result: &Result<T, E>,
        attempts: u32,
        previous_delay: Duration,
    ) -> Option<(Duration, Option<Withdrawal>)>
    where
        B: Backoff<T, E>,
    {
        let delay = match classification.pushback() {
            Some(pushback) => pushback.min(self.max_pushback),
            None => self
                .backoff
                .delay(Retrying::new(attempts, previous_delay, result)),
        };
        // A wait that would end at or past the call's deadline is pointless: the caller
        // gets the failure now, and no budget is spent.
        #[cfg(feature = "timeout")]
        if let Some(deadline) = crate::timeout::current_instant() {
            let ends = tokio::time::Instant::now().checked_add(delay);
            if ends.is_none_or(|ends| ends >= deadline) {
                #[cfg(feature = "tracing")]
                tracing::debug!(
                    target: "seawall::retry",
                    policy = &*self.name,
                    attempts,
                    "the deadline would pass before the retry: not retrying"
                );
                return None;
            }
        }
        let mut withdrawal = None;
        if let Some(budget) = &self.budget {
            withdrawal = budget.withdraw();
            if withdrawal.is_none() {
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
        self.metrics.delay(delay);
        #[cfg(feature = "tracing")]
        tracing::debug!(
            target: "seawall::retry",
            policy = &*self.name,
            attempt = attempts + 1,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "retrying"
        );
        Some((delay, withdrawal))
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
