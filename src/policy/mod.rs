//! One policy per downstream: the canonical stack of every layer, in one builder.
//!
//! [`Policy::builder`] builds the stack of the [design](crate) in the order a service
//! mesh uses, so that it cannot be got wrong, with defaults taken from the systems that
//! set them (see [Defaults](#defaults)). Every stage is optional, and the interactions
//! between stages are the right ones (see [Interactions](#interactions)).
//!
//! ```text
//! Deadline          the whole call: every attempt, backoff and hedge
//!  └ Retry          budgeted, backoff, pushback; never retries a local rejection
//!     └ Hedge       off by default; drawn from the same budget
//!        └ CircuitBreaker   sees each attempt; timeouts are failures, rejections nothing
//!           └ Bulkhead      a permit per attempt in flight
//!              └ Timeout    per attempt, capped by what is left of the deadline
//!                 └ the client (reqwest, tonic Channel, hyper, service_fn)
//! ```
//!
//! ```
//! use seawall::error::CircuitOpen;
//! use seawall::policy::Policy;
//! use seawall::BoxError;
//! use std::time::Duration;
//! use tower::{Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), BoxError> {
//! let policy = Policy::builder("payments")
//!     .deadline(Duration::from_secs(2))
//!     .attempt_timeout(Duration::from_millis(500))
//!     .circuit_breaker(|breaker| breaker.consecutive_failures(3))
//!     .build()?;
//! let handle = policy.handle();
//!
//! // A downstream that is down.
//! let payments = policy.layer(tower::service_fn(|_amount: u64| async {
//!     Err::<u64, BoxError>("503 service unavailable".into())
//! }));
//!
//! // One call: three attempts (the retry stage is above the breaker), three failures.
//! assert!(payments.clone().oneshot(10).await.is_err());
//! assert_eq!(handle.circuit_breaker().unwrap().snapshot().consecutive_failures, 3);
//!
//! // The breaker is open: the next call fails fast, is not retried, spends no budget.
//! let err = payments.clone().oneshot(20).await.unwrap_err();
//! assert!(err.is::<CircuitOpen>());
//! assert_eq!(handle.budget().unwrap().snapshot().withdrawals, 2);
//! # Ok(()) }
//! ```
//!
//! # Interactions
//!
//! - **Local rejections are not retried and spend no budget.** An open breaker
//!   ([`CircuitOpen`](crate::error::CircuitOpen)), a full bulkhead
//!   ([`BulkheadFull`](crate::error::BulkheadFull)) or a deadline that passed before an
//!   attempt was sent sent nothing downstream; retrying would only add load. The retry
//!   stage returns them as they are, whatever the classifier says, and a hedge that a
//!   stage below rejects goes back to the budget.
//! - **Attempt timeouts are breaker failures.** The timeout sits below the breaker, so
//!   an attempt that times out reaches the breaker as
//!   [`Elapsed`](crate::error::Elapsed) (or `DeadlineExceeded` when the deadline was the
//!   limit), which every built-in classifier counts as a failure: a downstream that hangs
//!   trips the breaker. (Without an attempt timeout it would not: a call cut off by the
//!   deadline, above the breaker, counts as nothing.)
//! - **Bulkhead rejections are ignored by the breaker.** The bulkhead sits below the
//!   breaker, and its rejections count as neither success nor failure, whatever the
//!   classifier says (the policy wraps it): a full bulkhead says nothing about the
//!   downstream's health.
//! - **Hedges and retries share one budget, and a call deposits once.** The retry stage
//!   deposits one per call and withdraws one per retry; the hedge stage withdraws one per
//!   hedge and deposits nothing ([`shared_budget`](crate::hedge::Builder::shared_budget)),
//!   so together they add at most the budget's ratio to the load. With retries off, the
//!   hedge stage deposits instead.
//! - **The deadline bounds everything.** Every stage below sees it
//!   ([`Deadline::current`](crate::timeout::Deadline::current)): each attempt's timeout is
//!   the lesser of its own and what is left; the retry stage starts no backoff that would
//!   end past it (the caller gets the failure at once, and no budget is spent); a hedge is
//!   not sent when less is left than the delay the first attempt was given; a call whose
//!   deadline has passed fails at once, unsent.
//! - **The breaker sees each attempt, not each call**, hedges included: three failed
//!   attempts are three failures, as in Envoy and Polly.
//! - **Cancellation is clean.** Dropping a call's future at any point (mid-attempt,
//!   mid-backoff) gives back its bulkhead permits and half-open probe slots, and refunds a
//!   retry decided but not sent.
//!
//! # Defaults
//!
//! | stage | default | source |
//! |---|---|---|
//! | deadline | 15 s per call | Envoy's route timeout (15 s) |
//! | retry | 3 attempts in all, the first included | Resilience4j's `maxAttempts` (3, the initial call included) |
//! | retry budget | 20 % of requests plus 10 retries/s, over 10 s | Finagle's `RetryBudget` and Linkerd's retry budget (`percentCanRetry` 0.2, `minRetriesPerSec` 10, `ttl` 10 s) |
//! | backoff | exponential with full jitter, 25 ms base, 250 ms max | Envoy's retry back-off (25 ms base interval, max 10 × base) |
//! | server pushback | honoured, capped at 30 s | `Retry-After`, gRPC's `grpc-retry-pushback-ms` (gRFC A6) |
//! | hedge | off; when on: at the p95 of 30 s of latencies once 100 are known, one hedge | *The Tail at Scale* (Dean and Barroso): hedge after the 95th-percentile latency |
//! | circuit breaker | last 100 calls, trips at 50 % failures once 20 calls are in the window; open 5 s, ×2 per repeated trip up to 300 s, 10 % jitter; 1 half-open probe | Resilience4j (window 100, 50 %), Hystrix (20 calls), Polly (5 s break), Envoy and Finagle (growing ejection time); see [`circuit_breaker`](crate::circuit_breaker#defaults) |
//! | bulkhead | 25 calls in flight, fail fast | Resilience4j's `maxConcurrentCalls` (25) and `maxWaitDuration` (0) |
//! | attempt timeout | 5 s | a third of the deadline, as in Polly's standard resilience pipeline (Microsoft.Extensions.Http.Resilience: 10 s per attempt within 30 s in all), so that the default 3 attempts fit in the deadline |
//! | classifier | [`ErrorsAsFailures`] | every error but a local rejection is a retryable failure |
//! | replay | the classifier's ([`DefaultReplay`](crate::retry::replay::DefaultReplay)): [`CloneRequest`] for [`ErrorsAsFailures`]; for HTTP's `StatusClassifier`, `IdempotentReplay`; for gRPC's `GrpcClassifier`, `GrpcReplay` | requests that are safe to send twice are copied: any `Clone` request for the default classifier; for HTTP, idempotent methods and requests with an `Idempotency-Key` (RFC 9110, as Envoy and Polly); for gRPC, gRFC A6's rules |
//!
//! # Configuring a stage
//!
//! Each stage is configured through its own builder, in a closure: `.retry(|r| ...)`,
//! `.hedge(|h| ...)`, `.circuit_breaker(|b| ...)`, `.bulkhead(|b| ...)`; and
//! `.deadline(d)`, `.attempt_timeout(d)`. Every sub-builder option is there (a breaker's
//! time window, an adaptive bulkhead, a constant backoff), and every `ConfigError` of a
//! stage comes out of [`PolicyBuilder::build`] naming the stage and the field. What must
//! agree across stages is set once, on the policy, and applied to every stage at build:
//!
//! - the **name**: each stage's name, the `policy` label of its metrics and tracing
//!   events;
//! - the **classifier** ([`classifier`](PolicyBuilder::classifier)), one for the
//!   breaker, the retry and the hedge stages;
//! - the **replay** ([`replay`](PolicyBuilder::replay)), one for retries and hedges;
//! - the **budget** ([`budget`](PolicyBuilder::budget)), one for retries and hedges.
//!
//! Switch a stage off with `without_deadline()`, `without_retry()`, `without_hedge()`,
//! `without_circuit_breaker()`, `without_bulkhead()` or `without_attempt_timeout()`. A
//! stage that is off does no work (a `match`: no clock read, no atomic, no allocation),
//! and the service's type is the same whichever stages are on, so a policy read from
//! configuration has one type.
//!
//! # Why hedging is off by default
//!
//! A hedge sends a second copy of a request that is merely slow. That is safe only for
//! requests that may be sent twice, and with the default classifier the
//! [replay](PolicyBuilder::replay) copies any request that is `Clone`; it adds load at the moment the downstream is
//! slowest; and it pays off only for latency-critical calls with a long tail. Envoy
//! (hedge policy per route), gRPC (`hedgingPolicy`, exclusive with `retryPolicy`),
//! Polly (a separate hedging pipeline) and Finagle (backup requests) all make it opt-in.
//! Switch it on with [`hedge`](PolicyBuilder::hedge) for idempotent reads.
//!
//! # HTTP and gRPC
//!
//! For HTTP, pass `seawall::http::StatusClassifier` (and, to hold bulkhead permits until
//! the body ends, [`release_on`](PolicyBuilder::release_on)`::<seawall::http::UntilBodyEnd>()`):
//! its replay, `seawall::http::IdempotentReplay`, comes with it, so that a POST or PATCH
//! without an `Idempotency-Key` is sent once, never retried nor hedged. For gRPC, pass
//! `seawall::grpc::GrpcClassifier`, whose status may come in the trailers: the breaker
//! then returns `http::Response<GrpcBody<B, OutcomeRecorder>>` and records the call when
//! the body ends (feature `http`); its replay, `seawall::grpc::GrpcReplay`, sends a call
//! again only when gRPC's rules say it is safe (see `seawall::grpc::GrpcClientLayer`).
//! Opting out of either is explicit: a [`replay`](PolicyBuilder::replay) set after the
//! classifier.
//!
//! # From a file, per endpoint
//!
//! - [`PolicyConfig`] (feature `serde`): defaults and a policy per downstream from one
//!   TOML or YAML file, checked at load (a config that loads builds); see
//!   [`config`].
//! - [`Registry`]: policies keyed by downstream and endpoint, made on first use,
//!   bounded (least recently used and idle entries evicted), optionally one retry budget
//!   per downstream.
//!
//! # Observing a policy
//!
//! [`Policy::handle`] gives a [`PolicyHandle`]: the breaker's, bulkhead's and hedge's
//! handles and the budget, for dashboards and operators.
//!
//! # Cost
//!
//! The success path allocates nothing and takes no lock: each stage's own success path
//! (atomics, pin-projected futures, timers armed only when an attempt is not ready at
//! once) plus a `match` per stage. Since one type covers every combination of stages, a
//! call's future is as large as it is with every stage on (the hedge stage's part is the
//! largest), whichever are on; moving it is most of what a stage that is off costs.
//! `benches/policy.rs` measures the stack against the bare service, the same layers
//! composed by hand, and an equivalent tower-resilience stack; `BENCHMARKS.md` has the
//! figures.

mod builder;
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub mod config;
pub mod future;
mod handle;
mod registry;
mod stack;

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{Layer, Service};

pub use self::builder::PolicyBuilder;
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub use self::config::{ConfigFileError, PolicyConfig};
pub use self::handle::PolicyHandle;
pub use self::registry::{Registry, RegistryBuilder, RegistryFull};

use self::future::ResponseFuture;
use self::stack::{
    MaybeBreaker, MaybeBulkhead, MaybeDeadline, MaybeHedge, MaybeRetry, MaybeTimeout,
    RejectionsIgnored, Stack,
};
use crate::bulkhead::{BulkheadLayer, OnResponse};
use crate::circuit_breaker::CircuitBreakerLayer;
use crate::classify::ErrorsAsFailures;
use crate::hedge::HedgeLayer;
use crate::retry::backoff::ExponentialBackoff;
use crate::retry::replay::CloneRequest;
use crate::retry::RetryLayer;
use crate::timeout::{DeadlineLayer, TimeoutLayer};
use crate::BoxError;

/// Envoy's route timeout.
const DEFAULT_DEADLINE: Duration = Duration::from_secs(15);
/// A third of the deadline (Polly's standard pipeline: 10 s of 30 s).
const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// The canonical stack as one tower [`Layer`]; see the [module docs](self).
///
/// Build one with [`Policy::builder`]. Every service it makes, and every clone of those,
/// shares one breaker, one bulkhead, one budget and one hedge window: build one policy
/// per downstream and layer every client of that downstream with it.
///
/// The type parameters are the classifier `C`, the replay `R`, the bulkhead's
/// [`Release`](crate::bulkhead::Release) `H` and the retry backoff `B`; the defaults
/// suit any service whose requests are `Clone`.
///
/// ```
/// use seawall::policy::Policy;
/// use tower::ServiceBuilder;
///
/// let policy = Policy::builder("inventory").build()?;
/// let client = ServiceBuilder::new()
///     .layer(policy.clone())
///     .service_fn(|sku: u32| async move { Ok::<_, seawall::BoxError>(sku) });
/// # let _ = client;
/// # Ok::<(), seawall::error::ConfigError>(())
/// ```
pub struct Policy<C = ErrorsAsFailures, R = CloneRequest, H = OnResponse, B = ExponentialBackoff> {
    deadline: Option<DeadlineLayer>,
    retry: Option<RetryLayer<C, B, R>>,
    hedge: Option<HedgeLayer<C, R>>,
    circuit_breaker: Option<CircuitBreakerLayer<RejectionsIgnored<C>>>,
    bulkhead: Option<BulkheadLayer<H>>,
    attempt_timeout: Option<TimeoutLayer>,
    handle: PolicyHandle,
}

impl Policy {
    /// A builder of the canonical stack with every default of the
    /// [module docs](self#defaults), named `name` (each stage's name and the `policy`
    /// label of its metrics; an empty name is a [`ConfigError`](crate::error::ConfigError)
    /// at build).
    ///
    /// ```
    /// use seawall::policy::Policy;
    ///
    /// let policy = Policy::builder("payments").build()?;
    /// assert_eq!(policy.name(), "payments");
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn builder(name: impl Into<String>) -> PolicyBuilder {
        PolicyBuilder::new(name.into())
    }
}

impl<C, R, H, B> Policy<C, R, H, B> {
    /// The policy's name.
    ///
    /// ```
    /// let policy = seawall::policy::Policy::builder("search").build()?;
    /// assert_eq!(policy.name(), "search");
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn name(&self) -> &str {
        self.handle.name()
    }

    /// The handles of the policy's stages, shared by every service it builds.
    ///
    /// ```
    /// let policy = seawall::policy::Policy::builder("search").build()?;
    /// let handle = policy.handle();
    /// assert_eq!(handle.bulkhead().unwrap().in_flight(), 0);
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn handle(&self) -> PolicyHandle {
        self.handle.clone()
    }
}

impl<C: Clone, R, H, B> Clone for Policy<C, R, H, B> {
    fn clone(&self) -> Self {
        Self {
            deadline: self.deadline,
            retry: self.retry.clone(),
            hedge: self.hedge.clone(),
            circuit_breaker: self.circuit_breaker.clone(),
            bulkhead: self.bulkhead.clone(),
            attempt_timeout: self.attempt_timeout,
            handle: self.handle.clone(),
        }
    }
}

impl<C, R, H, B> fmt::Debug for Policy<C, R, H, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("deadline", &self.deadline)
            .field("retry", &self.retry)
            .field("hedge", &self.hedge)
            .field("circuit_breaker", &self.circuit_breaker)
            .field("bulkhead", &self.bulkhead)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("handle", &self.handle)
            .finish()
    }
}

impl<S, C: Clone, R, H, B> Layer<S> for Policy<C, R, H, B> {
    type Service = PolicyService<S, C, R, H, B>;

    fn layer(&self, client: S) -> Self::Service {
        let svc = match &self.attempt_timeout {
            Some(layer) => MaybeTimeout::On(layer.layer(client)),
            None => MaybeTimeout::Off(client),
        };
        let svc = match &self.bulkhead {
            Some(layer) => MaybeBulkhead::On(layer.layer(svc)),
            None => MaybeBulkhead::Off(svc),
        };
        let svc = match &self.circuit_breaker {
            Some(layer) => MaybeBreaker::On(layer.layer(svc)),
            None => MaybeBreaker::Off(svc),
        };
        let svc = match &self.hedge {
            Some(layer) => MaybeHedge::On(layer.layer(svc)),
            None => MaybeHedge::Off(svc),
        };
        let svc = match &self.retry {
            Some(layer) => MaybeRetry::On(layer.layer(svc)),
            None => MaybeRetry::Off(svc),
        };
        let svc = match &self.deadline {
            Some(layer) => MaybeDeadline::On(layer.layer(svc)),
            None => MaybeDeadline::Off(svc),
        };
        PolicyService {
            inner: svc,
            name: self.handle.name.clone(),
        }
    }
}

/// The canonical stack around a client `S`, made by [`Policy`]; see the
/// [module docs](self).
///
/// Its type is the same whichever stages are on. Its error is a [`BoxError`]: the
/// client's error, or one of seawall's (see [`error`](crate::error)). Its response is
/// the client's, as the bulkhead's `H` and the classifier's end of stream make it
/// (unchanged with the defaults).
///
/// ```
/// use seawall::policy::{Policy, PolicyService};
/// use tower::{Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), seawall::BoxError> {
/// let client = tower::service_fn(|n: u32| async move { Ok::<_, seawall::BoxError>(n * 2) });
/// let full = Policy::builder("doubler").build()?.layer(client);
/// let bare = Policy::builder("doubler")
///     .without_deadline()
///     .without_retry()
///     .without_circuit_breaker()
///     .without_bulkhead()
///     .without_attempt_timeout()
///     .build()?
///     .layer(client);
/// // One type for both.
/// let services: [PolicyService<_>; 2] = [full, bare];
/// for svc in services {
///     assert_eq!(svc.oneshot(21).await?, 42);
/// }
/// # Ok(()) }
/// ```
pub struct PolicyService<
    S,
    C = ErrorsAsFailures,
    R = CloneRequest,
    H = OnResponse,
    B = ExponentialBackoff,
> {
    inner: Stack<S, C, R, H, B>,
    /// The policy's name, shared with the policy and its handles: a [`Registry`] counts
    /// its references to tell an entry in use (a service lives) from one that only the
    /// registry holds. Never read per call.
    name: Arc<str>,
}

impl<S, C, R, H, B> PolicyService<S, C, R, H, B> {
    /// The client.
    ///
    /// ```
    /// use tower::Layer;
    ///
    /// let policy = seawall::policy::Policy::builder("echo").build()?;
    /// let svc = policy.layer(tower::service_fn(|x: u8| async move { Ok::<_, seawall::BoxError>(x) }));
    /// let _client = svc.get_ref();
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn get_ref(&self) -> &S {
        self.inner
            .get_ref()
            .get_ref()
            .get_ref()
            .get_ref()
            .get_ref()
            .get_ref()
    }

    /// The client, consuming the stack.
    ///
    /// ```
    /// use tower::Layer;
    ///
    /// let policy = seawall::policy::Policy::builder("echo").build()?;
    /// let svc = policy.layer(tower::service_fn(|x: u8| async move { Ok::<_, seawall::BoxError>(x) }));
    /// let _client = svc.into_inner();
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
            .into_inner()
            .into_inner()
            .into_inner()
            .into_inner()
            .into_inner()
            .into_inner()
    }
}

impl<S, C, R, H, B> Clone for PolicyService<S, C, R, H, B>
where
    Stack<S, C, R, H, B>: Clone,
{
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            name: self.name.clone(),
        }
    }
}

impl<S, C, R, H, B> fmt::Debug for PolicyService<S, C, R, H, B>
where
    Stack<S, C, R, H, B>: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyService")
            .field("inner", &self.inner)
            .finish()
    }
}

impl<S, Req, C, R, H, B> Service<Req> for PolicyService<S, C, R, H, B>
where
    Stack<S, C, R, H, B>: Service<Req, Error = BoxError>,
{
    type Response = <Stack<S, C, R, H, B> as Service<Req>>::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, C, R, H, B>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        ResponseFuture::new(self.inner.call(request))
    }
}
