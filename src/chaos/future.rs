//! Future types

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::BoxError;

pin_project! {
    /// Response future of [`FaultInjection`](super::FaultInjection): the inner call
    /// (at once, or after an injected delay), an injected error, or an injected hang.
    ///
    /// ```
    /// use seawall::chaos::FaultLayer;
    /// use tower::{Layer, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let layer = FaultLayer::builder().rate(0.0).hang().build().unwrap();
    /// let mut svc = layer.layer(tower::service_fn(|x: u32| async move {
    ///     Ok::<_, std::io::Error>(x)
    /// }));
    /// // A `ResponseFuture`: `Send`, so it may be spawned.
    /// let future = svc.ready().await.unwrap().call(7);
    /// assert_eq!(tokio::spawn(future).await.unwrap().unwrap(), 7);
    /// # }
    /// ```
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called {
            #[pin]
            future: F,
        },
        Delayed {
            #[pin]
            future: Delayed<F>,
        },
        Error {
            error: Option<BoxError>,
        },
        Hang,
    }
}

impl<F> ResponseFuture<F> {
    #[inline]
    pub(crate) fn called(future: F) -> Self {
        Self {
            kind: Kind::Called { future },
        }
    }

    pub(crate) fn delayed(sleep: Sleep, future: F) -> Self {
        Self {
            kind: Kind::Delayed {
                future: Delayed::new(sleep, future),
            },
        }
    }

    pub(crate) fn error(error: BoxError) -> Self {
        Self {
            kind: Kind::Error { error: Some(error) },
        }
    }

    pub(crate) fn hang() -> Self {
        Self { kind: Kind::Hang }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { future } => future.poll(cx).map_err(Into::into),
            KindProj::Delayed { future } => future.poll(cx).map_err(Into::into),
            KindProj::Error { error } => Poll::Ready(Err(error
                .take()
                // Polled again after completion (a contract breach by the caller).
                .unwrap_or_else(|| Box::new(super::InjectedFault::new())))),
            // Never answers, and never wakes the task: the caller's own timer (a timeout
            // above) or a drop ends it.
            KindProj::Hang => Poll::Pending,
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Called { .. } => "called",
            Kind::Delayed { .. } => "delayed",
            Kind::Error { .. } => "error",
            Kind::Hang => "hang",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// The inner call's future, first polled once `sleep` is over: an injected latency
    /// (in both fault layers' futures).
    pub(crate) struct Delayed<F> {
        #[pin]
        sleep: Sleep,
        slept: bool,
        #[pin]
        future: F,
    }
}

impl<F> Delayed<F> {
    pub(crate) fn new(sleep: Sleep, future: F) -> Self {
        Self {
            sleep,
            slept: false,
            future,
        }
    }
}

impl<F: Future> Future for Delayed<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if !*this.slept {
            ready!(this.sleep.poll(cx));
            *this.slept = true;
        }
        this.future.poll(cx)
    }
}
