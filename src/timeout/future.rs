//! Future types

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::deadline::{after, in_scope};
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
        // The timer fired: the attempt is already dropped.
        Finished,
        Running {
            #[pin]
            future: F,
            #[pin]
            timer: Timer,
            timeout: Duration,
            // The call's deadline, if it has one.
            deadline: Option<Instant>,
            // When the attempt was sent, if the clock was read then (it is read at the
            // call only to check a deadline; otherwise at the first `Pending`).
            sent_at: Option<Instant>,
            // The deadline, not the timeout, is what the armed timer waits for.
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

    pub(crate) fn new(
        future: F,
        timeout: Duration,
        deadline: Option<Instant>,
        sent_at: Option<Instant>,
    ) -> Self {
        Self {
            kind: Kind::Running {
                future,
                timer: Timer::Idle,
                timeout,
                deadline,
                sent_at,
                by_deadline: false,
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
        let error: BoxError = match kind.as_mut().project() {
            KindProj::Rejected => return Poll::Ready(Err(DeadlineExceeded::before_send().into())),
            // Polled after completion: the caller's contract breach; never answer again.
            KindProj::Finished => return Poll::Pending,
            KindProj::Running {
                future,
                timer,
                timeout,
                deadline,
                sent_at,
                by_deadline,
            } => {
                if let Poll::Ready(result) = future.poll(cx) {
                    return Poll::Ready(result.map_err(Into::into));
                }
                ready!(timer.poll_until(cx, || {
                    let sent_at = *sent_at.get_or_insert_with(Instant::now);
                    let own = after(sent_at, *timeout);
                    match *deadline {
                        Some(deadline) if deadline < own => {
                            *by_deadline = true;
                            deadline
                        }
                        _ => own,
                    }
                }));
                if *by_deadline {
                    DeadlineExceeded::while_sent().into()
                } else {
                    Elapsed::new(*timeout).into()
                }
            }
        };
        // Drop the attempt now, not when the caller drops this future: a hung call must
        // end at its timeout, so that the bulkhead permit given back above this layer
        // never stands for a call still alive below it.
        kind.set(Kind::Finished);
        Poll::Ready(Err(error))
    }
}

pin_project! {
    /// Response future of [`DeadlineService`](super::DeadlineService): the whole call,
    /// polled with its deadline as the current one.
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
        // The deadline passed: the call is already dropped.
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
        match kind.as_mut().project() {
            DeadlineKindProj::Rejected => {
                return Poll::Ready(Err(DeadlineExceeded::before_send().into()))
            }
            // Polled after completion: the caller's contract breach; never answer again.
            DeadlineKindProj::Finished => return Poll::Pending,
            DeadlineKindProj::Running {
                future,
                timer,
                deadline,
            } => {
                let deadline = *deadline;
                if let Poll::Ready(result) = in_scope(deadline, || future.poll(cx)) {
                    return Poll::Ready(result.map_err(Into::into));
                }
                ready!(timer.poll_until(cx, || deadline));
            }
        }
        // Drop the call, every attempt and permit in it, at the deadline.
        kind.set(DeadlineKind::Finished);
        Poll::Ready(Err(DeadlineExceeded::while_sent().into()))
    }
}
