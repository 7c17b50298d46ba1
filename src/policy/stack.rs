//! The stages of the canonical stack, each either on or off, with the same response and
//! error types either way, so that one [`PolicyService`](super::PolicyService) type
//! covers every combination.
//!
//! Every stage is a [`Maybe`]: an enum of the stage's service (`On`) and the bare
//! service below it (`Off`); its future, [`MaybeFuture`], is a pin-projected enum of the
//! two futures. A stage that is off costs a `match` per `poll_ready`, `call` and `poll`:
//! no allocation, no clock, no atomic. Where the stage changes the response type, `Off`
//! converts the inner response the way the stage itself does when it has nothing to
//! attach ([`Passthrough`]):
//!
//! - breaker: [`ClassifyEos::passthrough`] with an [`OutcomeRecorder`] (for gRPC, a
//!   `GrpcBody` with no recorder);
//! - bulkhead: [`Release::without_permit`] (for HTTP bodies, a `PermitBody` with no
//!   permit);
//! - the others: the response unchanged.
//!
//! `Off` converts the inner error into the stage's with `Into`: boxed as a [`BoxError`]
//! as the stage would box it, or unchanged where the stage keeps the inner error type
//! (retry, hedge).
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

use crate::bulkhead::{Bulkhead, Release};
use crate::circuit_breaker::future::OutcomeRecorder;
use crate::circuit_breaker::CircuitBreaker;
use crate::classify::{Classification, Classify, ClassifyEos, Verdict};
use crate::hedge::Hedge;
use crate::retry::Retry;
use crate::timeout::{DeadlineService, Timeout};
#[cfg(doc)]
use crate::BoxError;

// ===== one stage, on or off =====

/// A stage of the stack around the service `S` below it, as [`Maybe`] needs it.
pub trait Stage<S> {
    /// The service below the stage.
    fn get_ref(&self) -> &S;

    /// The service below the stage, consuming the stage.
    fn into_inner(self) -> S;
}

/// What a stage makes of the response `T` (with errors `E`) of the stage below it when
/// it has nothing to attach: what [`Maybe`] returns for it when the stage is off.
pub trait Passthrough<T, E> {
    /// The stage's response.
    type Response;

    /// The stage's response for `response`.
    fn passthrough(response: T) -> Self::Response;
}

/// The stage `On`, or the service `Off` below it with its response and error as the
/// stage's.
pub enum Maybe<On, Off> {
    On(On),
    Off(Off),
}

impl<On: Stage<Off>, Off> Maybe<On, Off> {
    pub(crate) fn get_ref(&self) -> &Off {
        match self {
            Self::On(svc) => svc.get_ref(),
            Self::Off(svc) => svc,
        }
    }

    pub(crate) fn into_inner(self) -> Off {
        match self {
            Self::On(svc) => svc.into_inner(),
            Self::Off(svc) => svc,
        }
    }
}

impl<On: Clone, Off: Clone> Clone for Maybe<On, Off> {
    fn clone(&self) -> Self {
        match self {
            Self::On(svc) => Self::On(svc.clone()),
            Self::Off(svc) => Self::Off(svc.clone()),
        }
    }
}

impl<On: fmt::Debug, Off: fmt::Debug> fmt::Debug for Maybe<On, Off> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::On(svc) => svc.fmt(f),
            Self::Off(svc) => svc.fmt(f),
        }
    }
}

impl<On, Off, Req> Service<Req> for Maybe<On, Off>
where
    Off: Service<Req>,
    Off::Error: Into<On::Error>,
    On: Service<Req>
        + Passthrough<Off::Response, Off::Error, Response = <On as Service<Req>>::Response>,
{
    type Response = <On as Service<Req>>::Response;
    type Error = On::Error;
    type Future = MaybeFuture<On::Future, Off::Future, On>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), On::Error>> {
        match self {
            Self::On(svc) => svc.poll_ready(cx),
            Self::Off(svc) => svc.poll_ready(cx).map_err(Into::into),
        }
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        match self {
            Self::On(svc) => MaybeFuture::On {
                future: svc.call(request),
            },
            Self::Off(svc) => MaybeFuture::Off {
                future: svc.call(request),
                stage: PhantomData,
            },
        }
    }
}

pin_project! {
    /// The future of a [`Maybe`]: the stage's future `On`, or the future `Off` of the
    /// service below, whose output the stage `P` passes through.
    #[project = MaybeProj]
    pub enum MaybeFuture<On, Off, P> {
        On { #[pin] future: On },
        Off { #[pin] future: Off, stage: PhantomData<fn() -> P> },
    }
}

impl<On, Off, P, T, E, U, X> Future for MaybeFuture<On, Off, P>
where
    On: Future<Output = Result<U, X>>,
    Off: Future<Output = Result<T, E>>,
    P: Passthrough<T, E, Response = U>,
    E: Into<X>,
{
    type Output = Result<U, X>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            MaybeProj::On { future } => future.poll(cx),
            MaybeProj::Off { future, .. } => future
                .poll(cx)
                .map(|result| result.map(P::passthrough).map_err(Into::into)),
        }
    }
}

impl<On, Off, P> fmt::Debug for MaybeFuture<On, Off, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on = matches!(self, Self::On { .. });
        f.debug_struct("MaybeFuture")
            .field("on", &on)
            .finish_non_exhaustive()
    }
}

// ===== the stages =====

macro_rules! stage {
    ($($stage:ident<S $(, $param:ident)*>),* $(,)?) => {$(
        impl<S $(, $param)*> Stage<S> for $stage<S $(, $param)*> {
            #[inline]
            fn get_ref(&self) -> &S {
                $stage::get_ref(self)
            }

            #[inline]
            fn into_inner(self) -> S {
                $stage::into_inner(self)
            }
        }
    )*};
}

stage!(
    Timeout<S>,
    Bulkhead<S, H>,
    CircuitBreaker<S, C>,
    Hedge<S, C, R>,
    Retry<S, C, B, R>,
    DeadlineService<S>,
);

macro_rules! passthrough_unchanged {
    ($($stage:ident<S $(, $param:ident)*>),* $(,)?) => {$(
        impl<S $(, $param)*, T, E> Passthrough<T, E> for $stage<S $(, $param)*> {
            type Response = T;

            #[inline]
            fn passthrough(response: T) -> T {
                response
            }
        }
    )*};
}

passthrough_unchanged!(
    Timeout<S>,
    Hedge<S, C, R>,
    Retry<S, C, B, R>,
    DeadlineService<S>,
);

/// The bulkhead's response with no permit.
impl<S, H: Release<T>, T, E> Passthrough<T, E> for Bulkhead<S, H> {
    type Response = H::Response;

    #[inline]
    fn passthrough(response: T) -> H::Response {
        H::without_permit(response)
    }
}

/// The classifier's end-of-stream response with no recorder.
impl<S, C: Classify<T, E>, T, E> Passthrough<T, E> for CircuitBreaker<S, C> {
    type Response = <C::Eos as ClassifyEos<T>>::Response<OutcomeRecorder>;

    #[inline]
    fn passthrough(response: T) -> Self::Response {
        <C::Eos as ClassifyEos<T>>::passthrough::<OutcomeRecorder>(response)
    }
}

/// The per-attempt timeout, or the client itself.
pub type MaybeTimeout<S> = Maybe<Timeout<S>, S>;
/// The bulkhead, or the stage below it with its response as the bulkhead's (`H` with no
/// permit).
pub type MaybeBulkhead<S, H> = Maybe<Bulkhead<S, H>, S>;
/// The breaker, or the stage below it with its response as the breaker's (the
/// classifier's end-of-stream response with no recorder).
pub type MaybeBreaker<S, C> = Maybe<CircuitBreaker<S, C>, S>;
/// The hedge, or the stage below it.
pub type MaybeHedge<S, C, R> = Maybe<Hedge<S, C, R>, S>;
/// The retry, or the stage below it.
pub type MaybeRetry<S, C, B, R> = Maybe<Retry<S, C, B, R>, S>;
/// The overall deadline, or the stage below it.
pub type MaybeDeadline<S> = Maybe<DeadlineService<S>, S>;

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
