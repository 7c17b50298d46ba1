//! Future types

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tower::Service;

use super::stack::Stack;
use crate::bulkhead::OnResponse;
use crate::classify::ErrorsAsFailures;
use crate::retry::backoff::ExponentialBackoff;
use crate::retry::replay::CloneRequest;

pin_project! {
    /// Response future of [`PolicyService`](super::PolicyService): one call through the
    /// whole stack (every attempt, backoff and hedge of it, within its deadline).
    ///
    /// It holds no lock and no allocation of its own; dropping it at any point cancels
    /// the attempts in flight and gives back every bulkhead permit, half-open probe slot
    /// and unsent retry it holds.
    ///
    /// The type parameters are those of the [`PolicyService`](super::PolicyService) and
    /// the request type `Req`, so the future of a policy can be named:
    ///
    /// ```
    /// use seawall::policy::future::ResponseFuture;
    /// use seawall::policy::Policy;
    /// use tower::{Layer, Service, ServiceExt};
    ///
    /// #[derive(Clone)]
    /// struct Echo;
    /// impl Service<u32> for Echo {
    ///     type Response = u32;
    ///     type Error = seawall::BoxError;
    ///     type Future = std::future::Ready<Result<u32, seawall::BoxError>>;
    ///     fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
    ///         std::task::Poll::Ready(Ok(()))
    ///     }
    ///     fn call(&mut self, x: u32) -> Self::Future {
    ///         std::future::ready(Ok(x))
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), seawall::BoxError> {
    /// let mut svc = Policy::builder("echo").build()?.layer(Echo);
    /// let future: ResponseFuture<Echo, u32> = svc.ready().await?.call(7);
    /// assert_eq!(future.await?, 7);
    /// # Ok(()) }
    /// ```
    pub struct ResponseFuture<
        S,
        Req,
        C = ErrorsAsFailures,
        R = CloneRequest,
        H = OnResponse,
        B = ExponentialBackoff,
    >
    where
        Stack<S, C, R, H, B>: Service<Req>,
    {
        #[pin]
        inner: <Stack<S, C, R, H, B> as Service<Req>>::Future,
    }
}

impl<S, Req, C, R, H, B> ResponseFuture<S, Req, C, R, H, B>
where
    Stack<S, C, R, H, B>: Service<Req>,
{
    #[inline]
    pub(crate) fn new(inner: <Stack<S, C, R, H, B> as Service<Req>>::Future) -> Self {
        Self { inner }
    }
}

impl<S, Req, C, R, H, B> Future for ResponseFuture<S, Req, C, R, H, B>
where
    Stack<S, C, R, H, B>: Service<Req>,
{
    type Output = Result<
        <Stack<S, C, R, H, B> as Service<Req>>::Response,
        <Stack<S, C, R, H, B> as Service<Req>>::Error,
    >;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

impl<S, Req, C, R, H, B> fmt::Debug for ResponseFuture<S, Req, C, R, H, B>
where
    Stack<S, C, R, H, B>: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
