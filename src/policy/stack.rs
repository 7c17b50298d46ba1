//! The stages of the canonical stack, each either on or off, with the same response and
//! error types either way, so that one [`PolicyService`](super::PolicyService) type
//! covers every combination.
//!
//! Each `Maybe*` service is an enum of the stage's service (`On`) and the bare inner
//! service (`Off`); its future is a pin-projected enum of the two futures. A stage that
//! is off costs a `match` per `poll_ready`, `call` and `poll`: no allocation, no clock,
//! no atomic. Where the stage changes the response type, `Off` converts the inner
//! response the way the stage itself does when it has nothing to attach:
//!
//! - breaker: [`ClassifyEos::passthrough`] with an [`OutcomeRecorder`] (for gRPC, a
//!   `GrpcBody` with no recorder);
//! - bulkhead: [`Release::without_permit`] (for HTTP bodies, a `PermitBody` with no
//!   permit).
//!
//! Every stage's error is a [`BoxError`]; `Off` boxes the inner error as the stage
//! would.
//!
//! The types are `pub` only so that they may appear in the bounds of the public
//! [`ResponseFuture`](super::future::ResponseFuture); this module is private, so users
//! can neither name nor build them.

// Reachable only through bounds of public items: `pub` for the privacy rules, unnameable.
#![allow(unreachable_pub)]

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tower::Service;

use crate::bulkhead::{self, Bulkhead, Release};
use crate::circuit_breaker::future::OutcomeRecorder;
use crate::circuit_breaker::{self, CircuitBreaker};
use crate::classify::{Classification, Classify, ClassifyEos, Verdict};
use crate::hedge::{self, Hedge};
use crate::retry::backoff::Backoff;
use crate::retry::replay::Replay;
use crate::retry::{self, Retry};
use crate::timeout::{self, DeadlineService, Timeout};
use crate::BoxError;

// ===== attempt timeout (innermost) =====

/// The per-attempt timeout, or the client itself.
pub enum MaybeTimeout<S> {
    On(Timeout<S>),
    Off(S),
}

impl<S> MaybeTimeout<S> {
    pub(crate) fn get_ref(&self) -> &S {
        match self {
            Self::On(svc) => svc.get_ref(),
            Self::Off(svc) => svc,
        }
    }

    pub(crate) fn into_inner(self) -> S {
        match self {
            Self::On(svc) => svc.into_inner(),
            Self::Off(svc) => svc,
        }
    }
}

impl<S: Clone> Clone for MaybeTimeout<S> {
    fn clone(&self) -> Self {
        match self {
            Self::On(svc) => Self::On(svc.clone()),
            Self::Off(svc) => Self::Off(svc.clone()),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for MaybeTimeout<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::On(svc) => svc.fmt(f),
            Self::Off(svc) => svc.fmt(f),
        }
    }
}

impl<S, Req> Service<Req> for MaybeTimeout<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = TimeoutFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Self::On(svc) => svc.poll_ready(cx),
            Self::Off(svc) => svc.poll_ready(cx).map_err(Into::into),
        }
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        match self {
            Self::On(svc) => TimeoutFuture::On {
                future: svc.call(request),
            },
            Self::Off(svc) => TimeoutFuture::Off {
                future: svc.call(request),
            },
        }
    }
}

pin_project! {
    #[project = TimeoutProj]
    pub enum TimeoutFuture<F> {
        On { #[pin] future: timeout::future::ResponseFuture<F> },
        Off { #[pin] future: F },
    }
}

impl<F, T, E> Future for TimeoutFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            TimeoutProj::On { future } => future.poll(cx),
            TimeoutProj::Off { future } => future.poll(cx).map_err(Into::into),
        }
    }
}

// ===== bulkhead =====

/// The bulkhead, or the stage below it with its response as the bulkhead's (`H` with no
/// permit).
pub enum MaybeBulkhead<S, H> {
    On(Bulkhead<S, H>),
    Off(S, PhantomData<fn() -> H>),
}

impl<S, H> MaybeBulkhead<S, H> {
    pub(crate) fn get_ref(&self) -> &S {
        match self {
            Self::On(svc) => svc.get_ref(),
            Self::Off(svc, _) => svc,
        }
    }

    pub(crate) fn into_inner(self) -> S {
        match self {
            Self::On(svc) => svc.into_inner(),
            Self::Off(svc, _) => svc,
        }
    }
}

impl<S: Clone, H> Clone for MaybeBulkhead<S, H> {
    fn clone(&self) -> Self {
        match self {
            Self::On(svc) => Self::On(svc.clone()),
            Self::Off(svc, _) => Self::Off(svc.clone(), PhantomData),
        }
    }
}

impl<S: fmt::Debug, H> fmt::Debug for MaybeBulkhead<S, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::On(svc) => svc.fmt(f),
            Self::Off(svc, _) => svc.fmt(f),
        }
    }
}

impl<S, H, Req> Service<Req> for MaybeBulkhead<S, H>
where
    S: Service<Req>,
    S::Error: Into<BoxError> + 'static,
    H: Release<S::Response>,
{
    type Response = H::Response;
    type Error = BoxError;
    type Future = BulkheadFuture<S::Future, H>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Self::On(svc) => svc.poll_ready(cx),
            Self::Off(svc, _) => svc.poll_ready(cx).map_err(Into::into),
        }
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        match self {
            Self::On(svc) => BulkheadFuture::On {
                future: svc.call(request),
            },
            Self::Off(svc, _) => BulkheadFuture::Off {
                future: svc.call(request),
                release: PhantomData,
            },
        }
    }
}

pin_project! {
    #[project = BulkheadProj]
    pub enum BulkheadFuture<F, H> {
        On { #[pin] future: bulkhead::future::ResponseFuture<F, H> },
        Off { #[pin] future: F, release: PhantomData<fn() -> H> },
    }
}

impl<F, H, T, E> Future for BulkheadFuture<F, H>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError> + 'static,
    H: Release<T>,
{
    type Output = Result<H::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            BulkheadProj::On { future } => future.poll(cx),
            BulkheadProj::Off { future, .. } => future
                .poll(cx)
                .map(|result| result.map(H::without_permit).map_err(Into::into)),
        }
    }
}

// ===== circuit breaker =====

/// The breaker, or the stage below it with its response as the breaker's (the
/// classifier's end-of-stream response with no recorder).
pub enum MaybeBreaker<S, C> {
    On(CircuitBreaker<S, C>),
    Off(S, PhantomData<fn() -> C>),
}

impl<S, C> MaybeBreaker<S, C> {
    pub(crate) fn get_ref(&self) -> &S {
        match self {
            Self::On(svc) => svc.get_ref(),
            Self::Off(svc, _) => svc,
        }
    }

    pub(crate) fn into_inner(self) -> S {
        match self {
            Self::On(svc) => svc.into_inner(),
            Self::Off(svc, _) => svc,
        }
    }
}

impl<S: Clone, C: Clone> Clone for MaybeBreaker<S, C> {
    fn clone(&self) -> Self {
        match self {
            Self::On(svc) => Self::On(svc.clone()),
            Self::Off(svc, _) => Self::Off(svc.clone(), PhantomData),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for MaybeBreaker<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::On(svc) => svc.fmt(f),
            Self::Off(svc, _) => svc.fmt(f),
        }
    }
}

impl<S, C, Req> Service<Req> for MaybeBreaker<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = <C::Eos as ClassifyEos<S::Response>>::Response<OutcomeRecorder>;
    type Error = BoxError;
    type Future = BreakerFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Self::On(svc) => svc.poll_ready(cx),
            Self::Off(svc, _) => svc.poll_ready(cx).map_err(Into::into),
        }
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        match self {
            Self::On(svc) => BreakerFuture::On {
                future: svc.call(request),
            },
            Self::Off(svc, _) => BreakerFuture::Off {
                future: svc.call(request),
                classifier: PhantomData,
            },
        }
    }
}

pin_project! {
    #[project = BreakerProj]
    pub enum BreakerFuture<F, C> {
        On { #[pin] future: circuit_breaker::future::ResponseFuture<F, C> },
        Off { #[pin] future: F, classifier: PhantomData<fn() -> C> },
    }
}

impl<F, C, T, E> Future for BreakerFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, E>,
{
    type Output = Result<<C::Eos as ClassifyEos<T>>::Response<OutcomeRecorder>, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            BreakerProj::On { future } => future.poll(cx),
            BreakerProj::Off { future, .. } => future.poll(cx).map(|result| {
                result
                    .map(<C::Eos as ClassifyEos<T>>::passthrough::<OutcomeRecorder>)
                    .map_err(Into::into)
            }),
        }
    }
}

// ===== hedge =====

/// The hedge, or the stage below it.
pub enum MaybeHedge<S, C, R> {
    On(Hedge<S, C, R>),
    Off(S),
}

impl<S, C, R> MaybeHedge<S, C, R> {
    pub(crate) fn get_ref(&self) -> &S {
        match self {
            Self::On(svc) => svc.get_ref(),
            Self::Off(svc) => svc,
        }
    }

    pub(crate) fn into_inner(self) -> S {
        match self {
            Self::On(svc) => svc.into_inner(),
            Self::Off(svc) => svc,
        }
    }
}

impl<S: Clone, C, R> Clone for MaybeHedge<S, C, R> {
    fn clone(&self) -> Self {
        match self {
            Self::On(svc) => Self::On(svc.clone()),
            Self::Off(svc) => Self::Off(svc.clone()),
        }
    }
}

impl<S: fmt::Debug, C, R> fmt::Debug for MaybeHedge<S, C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::On(svc) => svc.fmt(f),
            Self::Off(svc) => svc.fmt(f),
        }
    }
}

impl<S, C, R, Req> Service<Req> for MaybeHedge<S, C, R>
where
    S: Service<Req> + Clone,
    S::Error: 'static,
    C: Classify<S::Response, S::Error>,
    R: Replay<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = HedgeFuture<S, Req, C, R>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        match self {
            Self::On(svc) => svc.poll_ready(cx),
            Self::Off(svc) => svc.poll_ready(cx),
        }
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        match self {
            Self::On(svc) => HedgeFuture::On {
                future: svc.call(request),
            },
            Self::Off(svc) => HedgeFuture::Off {
                future: svc.call(request),
            },
        }
    }
}

pin_project! {
    #[project = HedgeProj]
    pub enum HedgeFuture<S, Req, C, R>
    where
        S: Service<Req>,
    {
        On { #[pin] future: hedge::future::ResponseFuture<S, Req, C, R> },
        Off { #[pin] future: S::Future },
    }
}

impl<S, Req, C, R> Future for HedgeFuture<S, Req, C, R>
where
    S: Service<Req>,
    S::Error: 'static,
    C: Classify<S::Response, S::Error>,
    R: Replay<Req>,
{
    type Output = Result<S::Response, S::Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            HedgeProj::On { future } => future.poll(cx),
            HedgeProj::Off { future } => future.poll(cx),
        }
    }
}

// ===== retry =====

/// The retry, or the stage below it.
pub enum MaybeRetry<S, C, B, R> {
    On(Retry<S, C, B, R>),
    Off(S),
}

impl<S, C, B, R> MaybeRetry<S, C, B, R> {
    pub(crate) fn get_ref(&self) -> &S {
        match self {
            Self::On(svc) => svc.get_ref(),
            Self::Off(svc) => svc,
        }
    }

    pub(crate) fn into_inner(self) -> S {
        match self {
            Self::On(svc) => svc.into_inner(),
            Self::Off(svc) => svc,
        }
    }
}

impl<S: Clone, C, B, R> Clone for MaybeRetry<S, C, B, R> {
    fn clone(&self) -> Self {
        match self {
            Self::On(svc) => Self::On(svc.clone()),
            Self::Off(svc) => Self::Off(svc.clone()),
        }
    }
}

impl<S: fmt::Debug, C, B, R> fmt::Debug for MaybeRetry<S, C, B, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::On(svc) => svc.fmt(f),
            Self::Off(svc) => svc.fmt(f),
        }
    }
}

impl<S, C, B, R, Req> Service<Req> for MaybeRetry<S, C, B, R>
where
    S: Service<Req> + Clone,
    S::Error: 'static,
    C: Classify<S::Response, S::Error>,
    B: Backoff<S::Response, S::Error>,
    R: Replay<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = RetryFuture<S, Req, C, B, R>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        match self {
            Self::On(svc) => svc.poll_ready(cx),
            Self::Off(svc) => svc.poll_ready(cx),
        }
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        match self {
            Self::On(svc) => RetryFuture::On {
                future: svc.call(request),
            },
            Self::Off(svc) => RetryFuture::Off {
                future: svc.call(request),
            },
        }
    }
}

pin_project! {
    #[project = RetryProj]
    pub enum RetryFuture<S, Req, C, B, R>
    where
        S: Service<Req>,
    {
        On { #[pin] future: retry::future::ResponseFuture<S, Req, C, B, R> },
        Off { #[pin] future: S::Future },
    }
}

impl<S, Req, C, B, R> Future for RetryFuture<S, Req, C, B, R>
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
        match self.project() {
            RetryProj::On { future } => future.poll(cx),
            RetryProj::Off { future } => future.poll(cx),
        }
    }
}

// ===== deadline (outermost) =====

/// The overall deadline, or the stage below it.
pub enum MaybeDeadline<S> {
    On(DeadlineService<S>),
    Off(S),
}

impl<S> MaybeDeadline<S> {
    pub(crate) fn get_ref(&self) -> &S {
        match self {
            Self::On(svc) => svc.get_ref(),
            Self::Off(svc) => svc,
        }
    }

    pub(crate) fn into_inner(self) -> S {
        match self {
            Self::On(svc) => svc.into_inner(),
            Self::Off(svc) => svc,
        }
    }
}

impl<S: Clone> Clone for MaybeDeadline<S> {
    fn clone(&self) -> Self {
        match self {
            Self::On(svc) => Self::On(svc.clone()),
            Self::Off(svc) => Self::Off(svc.clone()),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for MaybeDeadline<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::On(svc) => svc.fmt(f),
            Self::Off(svc) => svc.fmt(f),
        }
    }
}

impl<S, Req> Service<Req> for MaybeDeadline<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = DeadlineFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Self::On(svc) => svc.poll_ready(cx),
            Self::Off(svc) => svc.poll_ready(cx).map_err(Into::into),
        }
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        match self {
            Self::On(svc) => DeadlineFuture::On {
                future: svc.call(request),
            },
            Self::Off(svc) => DeadlineFuture::Off {
                future: svc.call(request),
            },
        }
    }
}

pin_project! {
    #[project = DeadlineProj]
    pub enum DeadlineFuture<F> {
        On { #[pin] future: timeout::future::DeadlineFuture<F> },
        Off { #[pin] future: F },
    }
}

impl<F, T, E> Future for DeadlineFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            DeadlineProj::On { future } => future.poll(cx),
            DeadlineProj::Off { future } => future.poll(cx).map_err(Into::into),
        }
    }
}

// ===== Debug for the futures =====

macro_rules! debug_future {
    ($name:ident < $($param:ident),* > $(where $bound:ty : $trait:path)?) => {
        impl<$($param),*> fmt::Debug for $name<$($param),*>
        $(where $bound: $trait)?
        {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let on = matches!(self, Self::On { .. });
                f.debug_struct(stringify!($name))
                    .field("on", &on)
                    .finish_non_exhaustive()
            }
        }
    };
}

debug_future!(TimeoutFuture<F>);
debug_future!(BulkheadFuture<F, H>);
debug_future!(BreakerFuture<F, C>);
debug_future!(HedgeFuture<S, Req, C, R> where S: Service<Req>);
debug_future!(RetryFuture<S, Req, C, B, R> where S: Service<Req>);
debug_future!(DeadlineFuture<F>);

// ===== the breaker's classifier =====

/// The policy's classifier as the breaker sees it: a local rejection by a stage below
/// (a full bulkhead, a deadline that passed before the attempt was sent) counts as
/// nothing, whatever the classifier says of other errors. Every built-in classifier
/// does this already; a closure may not, and the policy promises it. Only an `Err` is
/// looked at, so a success costs nothing more.
#[derive(Clone, Copy, Debug)]
pub struct RejectionsIgnored<C>(pub(crate) C);

impl<T, E: 'static, C: Classify<T, E>> Classify<T, E> for RejectionsIgnored<C> {
    type Eos = C::Eos;

    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Verdict<C::Eos> {
        if let Err(error) = result {
            if crate::error::is_rejection_any(error) {
                return Verdict::Classified(Classification::ignored());
            }
        }
        self.0.classify(result)
    }
}

/// The canonical stack, outermost first: deadline, retry, hedge, breaker, bulkhead,
/// attempt timeout, the client `S`.
pub type Stack<S, C, R, H, B> = MaybeDeadline<
    MaybeRetry<
        MaybeHedge<MaybeBreaker<MaybeBulkhead<MaybeTimeout<S>, H>, RejectionsIgnored<C>>, C, R>,
        C,
        B,
        R,
    >,
>;
