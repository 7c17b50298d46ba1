//! Future types

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::deadline::{after, in_attempt_scope, in_scope};
use super::error::{DeadlineExceeded, Elapsed};
use crate::BoxError;

pin_project! {
    /// A timer armed only once the inner future has returned `Pending`: a call that is
    /// ready at once does no timer work.
    #[project = TimerProj]
    enum Timer {
        Idle,
        Armed { #[pin] sleep: Sleep },
    }
}

pin_project! {
    /// Response future of [`Timeout`](super::Timeout): one attempt, bounded by the
    /// timeout and by the call's deadline.
    ///
    /// While it is polled, the end of the attempt (the earlier of its timeout and the
    /// call's deadline) is the [current deadline](super::Deadline::current) of the
    /// layers below, so a deadline written into an outgoing request is the attempt's.
    ///
    /// # Panics
    ///
    /// Polling it again after it has completed panics ("polled after completion"): that
    /// breaks the `Future` contract, and an answer that never comes would be worse.
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F> {
        // The deadline had passed before the attempt was sent.
        Rejected,
        // The answer is given, and the attempt dropped.
        Finished,
        Running {
            #[pin]
            future: F,
            #[pin]
            timer: Timer,
            timeout: Duration,
            // When the attempt ends: the earlier of its timeout and the call's deadline.
            // Known from the call when there is a deadline (the clock was read then to
            // check it); otherwise set at the first `Pending`, when the attempt's clock
            // starts.
            end: Option<Instant>,
            // The deadline, not the timeout, is the end.
            by_deadline: bool,
        },
    }
}
impl Timer {
    /// Arms the timer at the instant `end` returns, unless it is armed already, and
    /// polls it: `Ready` once that instant has passed.
    #[inline]
    fn poll_until(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        end: impl FnOnce() -> Instant,
    ) -> Poll<()> {
        if let TimerProj::Idle = self.as_mut().project() {
            self.set(Timer::Armed {
                sleep: tokio::time::sleep_until(end()),
            });
        }
        match self.project() {
            TimerProj::Armed { sleep } => sleep.poll(cx),
            TimerProj::Idle => Poll::Pending, // armed just above
        }
    }
}

impl Timer {
    /// Whether the timer is armed and has fired (no clock read).
    #[inline]
    fn fired(&self) -> bool {
        match self {
            Timer::Armed { sleep } => sleep.is_elapsed(),
            Timer::Idle => false,
        }
    }
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Timer::Idle => f.write_str("Idle"),
            Timer::Armed { sleep } => f.debug_tuple("Armed").field(&sleep.deadline()).finish(),
        }
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn rejected() -> Self {
        Self {
            kind: Kind::Rejected,
        }
    }

    /// An attempt `future` that ends `timeout` after its clock starts, or at `end` if
    /// that is known already (`by_deadline`: the call's deadline, not the timeout, is
    /// `end`).
    pub(crate) fn new(
        future: F,
        timeout: Duration,
        end: Option<Instant>,
        by_deadline: bool,
    ) -> Self {
        Self {
            kind: Kind::Running {
                future,
                timer: Timer::Idle,
                timeout,
                end,
                by_deadline,
            },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        let output = match kind.as_mut().project() {
            KindProj::Rejected => Err(DeadlineExceeded::before_send().into()),
            KindProj::Finished => {
                panic!("`seawall::timeout::future::ResponseFuture` polled after completion")
            }
            KindProj::Running {
                future,
                timer,
                timeout,
                end,
                by_deadline,
            } => {
                let timeout = *timeout;
                // Once the timer has fired the attempt is over, whatever comes in the
                // same tick: the downstream or the transport may enforce the same end (it
                // was sent as the deadline; tonic's client does), and the caller gets this
                // layer's error, not theirs. (No clock read: the timer knows.)
                let fired = timer.as_ref().get_ref().fired();
                let polled = if fired {
                    Poll::Pending
                } else {
                    // Below, the attempt's end is the deadline.
                    match *end {
                        Some(end) => in_scope(end, || future.poll(cx)),
                        None => in_attempt_scope(timeout, || future.poll(cx)),
                    }
                };
                match polled {
                    Poll::Ready(result) => result.map_err(Into::into),
                    Poll::Pending => {
                        ready!(timer.poll_until(cx, || {
                            *end.get_or_insert_with(|| after(Instant::now(), timeout))
                        }));
                        if *by_deadline {
                            Err(DeadlineExceeded::while_sent().into())
                        } else {
                            Err(Elapsed::new(timeout).into())
                        }
                    }
                }
            }
        };
        // Drop the attempt now, not when the caller drops this future: a hung call must
        // end at its timeout, so that the bulkhead permit given back above this layer
        // never stands for a call still alive below it.
        kind.set(Kind::Finished);
        Poll::Ready(output)
    }
}

pin_project! {
    /// Response future of [`DeadlineService`](super::DeadlineService): the whole call,
    /// polled with its deadline as the current one.
    ///
    /// # Panics
    ///
    /// Polling it again after it has completed panics ("polled after completion"): that
    /// breaks the `Future` contract, and an answer that never comes would be worse.
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct DeadlineFuture<F> {
        #[pin]
        kind: DeadlineKind<F>,
    }
}

pin_project! {
    #[project = DeadlineKindProj]
    #[derive(Debug)]
    enum DeadlineKind<F> {
        Rejected,
        // The answer is given, and the call dropped.
        Finished,
        Running {
            #[pin]
            future: F,
            #[pin]
            timer: Timer,
            deadline: Instant,
        },
    }
}

impl<F> DeadlineFuture<F> {
    pub(crate) fn rejected() -> Self {
        Self {
            kind: DeadlineKind::Rejected,
        }
    }

    pub(crate) fn new(future: F, deadline: Instant) -> Self {
        Self {
            kind: DeadlineKind::Running {
                future,
                timer: Timer::Idle,
                deadline,
            },
        }
    }
}

impl<F, T, E> Future for DeadlineFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        let output = match kind.as_mut().project() {
            DeadlineKindProj::Rejected => Err(DeadlineExceeded::before_send().into()),
            DeadlineKindProj::Finished => {
                panic!("`seawall::timeout::future::DeadlineFuture` polled after completion")
            }
            DeadlineKindProj::Running {
                future,
                timer,
                deadline,
            } => {
                let deadline = *deadline;
                match in_scope(deadline, || future.poll(cx)) {
                    Poll::Ready(result) => result.map_err(Into::into),
                    Poll::Pending => {
                        ready!(timer.poll_until(cx, || deadline));
                        Err(DeadlineExceeded::while_sent().into())
                    }
                }
            }
        };
        // Drop the call, every attempt and permit in it, as soon as it is over (at the
        // deadline, at once).
        kind.set(DeadlineKind::Finished);
        Poll::Ready(output)
    }
}
