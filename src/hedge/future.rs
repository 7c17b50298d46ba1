//! Future types

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::Service;

use super::{Outcome, Policy};
use crate::classify::Classify;
use crate::retry::budget::Withdrawal;
use crate::retry::replay::Replay;

/// What a call needs to send hedges: a clone of the service, a copy of the request, the
/// delay, and how many hedges it has sent.
pub(crate) struct Hedging<S, Req> {
    service: S,
    copy: Req,
    delay: Duration,
    sent: u32,
}

impl<S, Req> Hedging<S, Req> {
    pub(crate) fn new(service: S, copy: Req, delay: Duration) -> Self {
        Self {
            service,
            copy,
            delay,
            sent: 0,
        }
    }
}

/// A hedge in flight, and when it was sent (kept only to record latencies).
struct Attempt<F> {
    future: Pin<Box<F>>,
    sent: Option<Instant>,
    /// The budget's retry this hedge spent, refunded if a layer below rejects it.
    withdrawal: Option<Withdrawal>,
}

/// A failed attempt's result, kept in case every attempt fails.
struct Held<T, E> {
    result: Result<T, E>,
    rejected: bool,
}

pin_project! {
    /// Response future of [`Hedge`](super::Hedge): the first attempt (inline), the
    /// hedges (allocated only once one is sent), and the timer between them.
    ///
    /// Dropping it cancels every attempt in flight and records nothing.
    ///
    /// ```
    /// use seawall::hedge::{future::ResponseFuture, HedgeLayer};
    /// use tower::{Layer, Service};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let mut svc = HedgeLayer::builder().build().unwrap().layer(tower::service_fn(
    ///     |x: u8| async move { Ok::<_, std::io::Error>(x) },
    /// ));
    /// let future = svc.call(3);
    /// fn is_hedge_future<S: Service<u8>, C, R>(_: &ResponseFuture<S, u8, C, R>) {}
    /// is_hedge_future(&future);
    /// assert_eq!(future.await.unwrap(), 3);
    /// # }
    /// ```
    pub struct ResponseFuture<S, Req, C, R>
    where
        S: Service<Req>,
    {
        #[pin]
        primary: Option<S::Future>,
        #[pin]
        timer: Option<Sleep>,
        hedges: Vec<Attempt<S::Future>>,
        // `None`: no (further) hedge will be sent.
        hedging: Option<Hedging<S, Req>>,
        held: Option<Held<S::Response, S::Error>>,
        // When the call was made: only with a percentile delay.
        started: Option<Instant>,
        policy: Arc<Policy<C, R>>,
    }
}

impl<S, Req, C, R> ResponseFuture<S, Req, C, R>
where
    S: Service<Req>,
{
    pub(crate) fn new(
        primary: S::Future,
        hedging: Option<Hedging<S, Req>>,
        started: Option<Instant>,
        policy: Arc<Policy<C, R>>,
    ) -> Self {
        Self {
            primary: Some(primary),
            timer: None,
            hedges: Vec::new(),
            hedging,
            held: None,
            started,
            policy,
        }
    }
}

/// The result to return when every attempt failed: the latest real failure, or the
/// latest rejection if all were rejected.
fn prefer<T, E>(held: Option<Held<T, E>>, result: Result<T, E>, rejected: bool) -> Result<T, E> {
    match held {
        Some(held) if rejected && !held.rejected => held.result,
        _ => result,
    }
}

/// Keep a failure while other attempts are in flight, by the rule of [`prefer`].
fn hold<T, E>(held: &mut Option<Held<T, E>>, result: Result<T, E>, rejected: bool) {
    *held = Some(match held.take() {
        Some(kept) if rejected && !kept.rejected => kept,
        _ => Held { result, rejected },
    });
}

impl<S, Req, C, R> Future for ResponseFuture<S, Req, C, R>
where
    S: Service<Req>,
    S::Error: 'static,
    C: Classify<S::Response, S::Error>,
    R: Replay<Req>,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let policy = &**this.policy;
            let shared = &*policy.shared;

            // The first attempt, polled first: a call answered at once touches no timer.
            if let Some(primary) = this.primary.as_mut().as_pin_mut() {
                if let Poll::Ready(result) = primary.poll(cx) {
                    this.primary.set(None);
                    if this.hedges.is_empty() && this.held.is_none() {
                        // No other attempt: this is the answer, success or failure.
                        if let Some(started) = *this.started {
                            shared.record(started, Instant::now(), policy.judge(&result));
                        }
                        *this.hedging = None;
                        this.timer.set(None);
                        return Poll::Ready(result);
                    }
                    let outcome = policy.judge(&result);
                    if let Some(started) = *this.started {
                        shared.record(started, Instant::now(), outcome);
                    }
                    if outcome == Outcome::Answer {
                        // Cancel the hedges at once.
                        this.hedges.clear();
                        *this.hedging = None;
                        this.timer.set(None);
                        return Poll::Ready(result);
                    }
                    // No further hedge after a failure: retrying is the retry layer's job.
                    *this.hedging = None;
                    this.timer.set(None);
                    let rejected = outcome == Outcome::Rejected;
                    if this.hedges.is_empty() {
                        return Poll::Ready(prefer(this.held.take(), result, rejected));
                    }
                    hold(this.held, result, rejected);
                }
            }

            // The hedges in flight.
            let mut i = 0;
            while let Some(attempt) = this.hedges.get_mut(i) {
                let Poll::Ready(result) = attempt.future.as_mut().poll(cx) else {
                    i += 1;
                    continue;
                };
                let sent = attempt.sent;
                let withdrawal = attempt.withdrawal.take();
                drop(this.hedges.swap_remove(i));
                let outcome = policy.judge(&result);
                if outcome == Outcome::Rejected {
                    shared.rejected_below(withdrawal);
                }
                let now = this.started.map(|_| Instant::now());
                if let (Some(sent), Some(now)) = (sent, now) {
                    shared.record(sent, now, outcome);
                }
                if outcome == Outcome::Answer {
                    // The first attempt, cancelled by this win, counts as slow as it has
                    // been so far: a lower bound, on the slow side of the percentile.
                    if let (Some(started), Some(now)) = (*this.started, now) {
                        if this.primary.is_some() {
                            shared.record_cancelled(started, now);
                        }
                    }
                    this.primary.set(None);
                    this.hedges.clear();
                    *this.hedging = None;
                    this.timer.set(None);
                    shared.won();
                    return Poll::Ready(result);
                }
                *this.hedging = None;
                this.timer.set(None);
                let rejected = outcome == Outcome::Rejected;
                if this.primary.is_none() && this.hedges.is_empty() {
                    return Poll::Ready(prefer(this.held.take(), result, rejected));
                }
                hold(this.held, result, rejected);
            }

            // The next hedge, once the delay has passed.
            let Some(hedging) = this.hedging.as_mut() else {
                return Poll::Pending;
            };
            if this.timer.is_none() {
                let timer = match *this.started {
                    None => tokio::time::sleep(hedging.delay),
                    Some(started) => match started.checked_add(hedging.delay) {
                        Some(at) => tokio::time::sleep_until(at),
                        // Beyond the clock's range: never.
                        None => {
                            *this.hedging = None;
                            return Poll::Pending;
                        }
                    },
                };
                this.timer.set(Some(timer));
            }
            if let Some(timer) = this.timer.as_mut().as_pin_mut() {
                ready!(timer.poll(cx));
            }
            // A hedge left less time by the call's deadline than the primary was given
            // before it is unlikely to answer in time: it would only add load.
            #[cfg(feature = "timeout")]
            if let Some(deadline) = crate::timeout::current_instant() {
                if deadline.saturating_duration_since(Instant::now()) <= hedging.delay {
                    *this.hedging = None;
                    this.timer.set(None);
                    return Poll::Pending;
                }
            }
            // A buffered copy may not be whole (yet): then this call is not hedged.
            if !policy.replay.can_replay(&hedging.copy) {
                *this.hedging = None;
                this.timer.set(None);
                return Poll::Pending;
            }
            // Readiness before the budget: a service that is not ready costs no hedge.
            match hedging.service.poll_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => {
                    #[cfg(feature = "tracing")]
                    tracing::debug!(
                        target: "seawall::hedge",
                        policy = &*shared.name,
                        "service not ready for a hedge: not hedging"
                    );
                    *this.hedging = None;
                    this.timer.set(None);
                    return Poll::Pending;
                }
            }
            let Some(withdrawal) = shared.budget.withdraw() else {
                // Dropping the readied clone gives back whatever it reserved.
                shared.denied();
                *this.hedging = None;
                this.timer.set(None);
                return Poll::Pending;
            };
            hedging.sent += 1;
            let hedge = hedging.sent;
            let delay = hedging.delay;
            let again = if hedge < shared.max_hedges {
                policy.replay.replay(&hedging.copy)
            } else {
                None
            };
            let future = match again {
                Some(request) => hedging.service.call(request),
                None => {
                    // The last hedge (or the copy cannot be copied again): send the copy.
                    let Some(Hedging {
                        mut service, copy, ..
                    }) = this.hedging.take()
                    else {
                        return Poll::Pending;
                    };
                    this.timer.set(None);
                    service.call(copy)
                }
            };
            let now = Instant::now();
            if this.hedges.capacity() == 0 {
                this.hedges.reserve_exact(shared.max_hedges as usize);
            }
            this.hedges.push(Attempt {
                future: Box::pin(future),
                sent: this.started.map(|_| now),
                withdrawal: Some(withdrawal),
            });
            shared.hedged(hedge, delay);
            if this.hedging.is_some() {
                match (this.timer.as_mut().as_pin_mut(), now.checked_add(delay)) {
                    (Some(timer), Some(at)) => timer.reset(at),
                    _ => {
                        *this.hedging = None;
                        this.timer.set(None);
                    }
                }
            }
            // Around again, to poll the new hedge (and register its waker).
        }
    }
}

impl<S, Req, C, R> fmt::Debug for ResponseFuture<S, Req, C, R>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("primary_in_flight", &self.primary.is_some())
            .field("hedges_in_flight", &self.hedges.len())
            .field("hedges_sent", &self.hedging.as_ref().map(|h| h.sent))
            .finish_non_exhaustive()
    }
}
