//! The deadline of the call in progress, shared by every layer polled on its task.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Instant;

tokio::task_local! {
    /// The deadline of the call being made on this task, set by a `DeadlineService`, a
    /// server-side deadline layer or `Deadline::scope`.
    static DEADLINE: CallContext;
}

/// What the task-local carries.
#[derive(Clone, Copy)]
struct CallContext {
    /// The deadline, as an instant, if one is known.
    deadline: Option<Instant>,
    /// The timeout of an attempt whose clock has not been read yet (an attempt timeout
    /// with no deadline around it reads the clock only at its first `Pending`): the
    /// attempt ends at most this long after whoever reads the deadline reads it. `None`
    /// when there is no such attempt.
    attempt: Option<Duration>,
    /// The clock as a `DeadlineService` read it, while it makes its call: inner layers
    /// called in the same synchronous `call` chain reuse it rather than read the clock
    /// again (a read costs about 20 ns). `None` while futures are polled, where it would
    /// be stale.
    call_now: Option<Instant>,
}

impl CallContext {
    /// The deadline as an instant: the known one, or the end of an attempt that has not
    /// read its clock yet, whichever is earlier. Reads the clock only in the second case.
    #[inline]
    fn deadline(&self) -> Option<Instant> {
        let Some(timeout) = self.attempt else {
            return self.deadline;
        };
        let end = after(Instant::now(), timeout);
        Some(self.deadline.map_or(end, |deadline| deadline.min(end)))
    }
}

/// How far away a deadline "never" is: about 30 years, like tokio's own far future. A
/// timeout too large to add to `Instant::now()` becomes this.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// The instant by which a call must be done, shared by every attempt, backoff and hedge
/// of the call, and by the calls its handler makes in turn.
///
/// The deadline of the call in progress travels in a tokio task-local:
/// [`DeadlineLayer`](super::DeadlineLayer) sets it for everything it wraps, a server-side
/// layer sets it from the incoming request (see `seawall::http::ServerDeadlineLayer`),
/// and [`Deadline::scope`] sets it by hand. Every layer polled on the same task sees it
/// with [`Deadline::current`]: the attempt timeout is capped by it, a retry starts no
/// wait it cannot finish, and `seawall::http::PropagateDeadlineLayer` writes what is left
/// of it into the outgoing request.
///
/// A task-local does not cross `tokio::spawn`: a layer below a `tower::buffer::Buffer`
/// (which runs its service on a task of its own) does not see the caller's deadline.
///
/// ```
/// use seawall::timeout::Deadline;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// assert_eq!(Deadline::current(), None, "no call in progress");
/// let deadline = Deadline::after(Duration::from_secs(2));
/// deadline
///     .scope(async {
///         assert_eq!(Deadline::current(), Some(deadline));
///         tokio::time::sleep(Duration::from_millis(500)).await;
///         assert_eq!(Deadline::current().unwrap().remaining(), Duration::from_millis(1500));
///     })
///     .await;
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// A deadline at `instant`.
    pub fn at(instant: Instant) -> Self {
        Self { at: instant }
    }

    /// A deadline `timeout` from now. A timeout too large to represent (say
    /// `Duration::MAX`) is a deadline about 30 years away, which never comes.
    ///
    /// ```
    /// use seawall::timeout::Deadline;
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// assert_eq!(Deadline::after(Duration::from_secs(1)).remaining(), Duration::from_secs(1));
    /// assert!(!Deadline::after(Duration::MAX).is_expired());
    /// # }
    /// ```
    pub fn after(timeout: Duration) -> Self {
        Self::at(after(Instant::now(), timeout))
    }

    /// The deadline of the call in progress on this task, if any; see the
    /// [type docs](Self).
    ///
    /// ```
    /// assert_eq!(seawall::timeout::Deadline::current(), None);
    /// ```
    pub fn current() -> Option<Self> {
        current_instant().map(Self::at)
    }

    /// When the deadline is.
    pub fn instant(&self) -> Instant {
        self.at
    }

    /// The time left until the deadline (zero once it has passed).
    ///
    /// ```
    /// use seawall::timeout::Deadline;
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let deadline = Deadline::after(Duration::from_millis(100));
    /// tokio::time::advance(Duration::from_millis(150)).await;
    /// assert_eq!(deadline.remaining(), Duration::ZERO);
    /// assert!(deadline.is_expired());
    /// # }
    /// ```
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    pub fn is_expired(&self) -> bool {
        self.at <= Instant::now()
    }

    /// Run `future` with this deadline as the current one, or with the current one if
    /// that is earlier: a deadline inherited from the caller is never extended.
    ///
    /// ```
    /// use seawall::timeout::Deadline;
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let outer = Deadline::after(Duration::from_secs(1));
    /// outer
    ///     .scope(async move {
    ///         Deadline::after(Duration::from_secs(60))
    ///             .scope(async move { assert_eq!(Deadline::current(), Some(outer)) })
    ///             .await
    ///     })
    ///     .await;
    /// # }
    /// ```
    pub fn scope<F: Future>(self, future: F) -> Scoped<F> {
        let at = match current_instant() {
            Some(current) => current.min(self.at),
            None => self.at,
        };
        Scoped {
            future,
            deadline: Some(at),
        }
    }
}

pin_project! {
    /// A future run with a deadline as the current one; see [`Deadline::scope`].
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct Scoped<F> {
        #[pin]
        future: F,
        deadline: Option<Instant>,
    }
}

impl<F> Scoped<F> {
    /// `future` with `deadline` as the current one, or as it is with none.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn new(future: F, deadline: Option<Instant>) -> Self {
        Self { future, deadline }
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let future = this.future;
        match *this.deadline {
            Some(deadline) => in_scope(deadline, || future.poll(cx)),
            None => future.poll(cx),
        }
    }
}

/// The current deadline, as an instant: one task-local read, and no clock unless an
/// attempt timeout that has not started its clock is the limit (see [`in_attempt_scope`]).
#[inline]
pub(crate) fn current_instant() -> Option<Instant> {
    DEADLINE.try_with(CallContext::deadline).ok().flatten()
}

/// The time of the call being made: the instant the `DeadlineService` around it read,
/// or the clock. Only for a service's `call`, which runs synchronously inside the outer
/// layer's.
#[inline]
pub(crate) fn now_for_call() -> Instant {
    DEADLINE
        .try_with(|context| context.call_now)
        .ok()
        .flatten()
        .unwrap_or_else(Instant::now)
}

/// The earlier of `deadline` and the current one: a scope never extends the deadline
/// it runs under.
#[inline]
fn narrowed(deadline: Instant) -> Instant {
    match current_instant() {
        Some(current) => current.min(deadline),
        None => deadline,
    }
}

/// Run `f` with `deadline` as the current deadline, or with the current one if that is
/// earlier: a future built outside a tighter scope and polled inside it must not extend
/// the caller's deadline.
#[inline]
pub(crate) fn in_scope<R>(deadline: Instant, f: impl FnOnce() -> R) -> R {
    let context = CallContext {
        deadline: Some(narrowed(deadline)),
        attempt: None,
        call_now: None,
    };
    DEADLINE.sync_scope(context, f)
}

/// Run `f` inside an attempt that ends `timeout` after its clock starts, which it has not
/// read yet (it reads it only if the attempt has to wait): whoever reads the deadline in
/// `f` sees `timeout` from the moment it reads, or the current deadline if that is
/// earlier. So an attempt timeout reaches the layers below it (and the headers that
/// carry a deadline downstream) at no clock read of its own.
#[inline]
pub(crate) fn in_attempt_scope<R>(timeout: Duration, f: impl FnOnce() -> R) -> R {
    let context = match DEADLINE.try_with(|context| *context) {
        // The enclosing attempt started no later than this one: the shorter timeout,
        // counted from the same read, is the earlier end.
        Ok(outer) => CallContext {
            deadline: outer.deadline,
            attempt: Some(outer.attempt.map_or(timeout, |outer| outer.min(timeout))),
            call_now: None,
        },
        Err(_) => CallContext {
            deadline: None,
            attempt: Some(timeout),
            call_now: None,
        },
    };
    DEADLINE.sync_scope(context, f)
}

/// [`in_scope`], for a `call` made at `now`: the inner layers' `call`s see `now` through
/// [`now_for_call`].
#[inline]
pub(crate) fn in_call_scope<R>(deadline: Instant, now: Instant, f: impl FnOnce() -> R) -> R {
    let context = CallContext {
        deadline: Some(narrowed(deadline)),
        attempt: None,
        call_now: Some(now),
    };
    DEADLINE.sync_scope(context, f)
}

/// `now + timeout`, or the far future if that cannot be represented.
pub(crate) fn after(now: Instant, timeout: Duration) -> Instant {
    now.checked_add(timeout)
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}
