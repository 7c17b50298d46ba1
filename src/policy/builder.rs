//! The policy's builder.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use super::handle::PolicyHandle;
use super::stack::RejectionsIgnored;
use super::{Policy, DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_DEADLINE};
use crate::bulkhead::{self, BulkheadLayer, OnResponse};
use crate::circuit_breaker::{self, CircuitBreakerLayer};
use crate::classify::ErrorsAsFailures;
use crate::error::ConfigError;
use crate::hedge::{self, HedgeLayer};
use crate::retry::backoff::ExponentialBackoff;
use crate::retry::budget::RetryBudget;
use crate::retry::replay::{CloneRequest, DefaultReplay};
use crate::retry::{self, RetryLayer};
use crate::timeout::{DeadlineLayer, TimeoutLayer};

/// A stage's builder, and whether the stage is on. Switching a stage off keeps its
/// configuration, so switching it on again starts from there.
#[derive(Debug)]
struct Stage<T> {
    builder: T,
    on: bool,
}

impl<T> Stage<T> {
    fn on(builder: T) -> Self {
        Self { builder, on: true }
    }

    fn off(builder: T) -> Self {
        Self { builder, on: false }
    }

    /// The builder, if the stage is on.
    fn enabled(self) -> Option<T> {
        self.on.then_some(self.builder)
    }
}

/// Configures a [`Policy`]: the canonical stack, every stage optional. See the
/// [module docs](super) for the stages, their defaults and their interactions.
///
/// Each stage is configured through its own builder, in a closure that takes the
/// builder and returns it (`.circuit_breaker(|b| b.failure_rate(0.25))`); the policy
/// then sets, at [`build`](Self::build), what must be the same in every stage: the
/// name, the [classifier](Self::classifier), the [replay](Self::replay) and the
/// [budget](Self::budget). Setting one of those inside a closure has no effect (the
/// retry closure cannot even change the classifier or the replay: its builder type
/// fixes them). [`build`](Self::build) checks every value of every stage that is on and
/// returns the first [`ConfigError`], naming its component and field.
///
/// ```
/// use seawall::policy::Policy;
/// use std::time::Duration;
///
/// let policy = Policy::builder("payments")
///     .deadline(Duration::from_secs(3))
///     .attempt_timeout(Duration::from_millis(800))
///     .retry(|retry| retry.max_attempts(2))
///     .circuit_breaker(|breaker| breaker.failure_rate(0.25).open_duration(Duration::from_secs(10)))
///     .bulkhead(|bulkhead| bulkhead.max_concurrent(50))
///     .build()?;
/// assert_eq!(policy.handle().bulkhead().unwrap().limit(), 50);
/// # Ok::<(), seawall::error::ConfigError>(())
/// ```
pub struct PolicyBuilder<
    C = ErrorsAsFailures,
    R = CloneRequest,
    H = OnResponse,
    B = ExponentialBackoff,
> {
    name: String,
    classifier: C,
    replay: R,
    deadline: Option<Duration>,
    retry: Stage<retry::Builder<ErrorsAsFailures, B, CloneRequest>>,
    budget: Option<RetryBudget>,
    hedge: Stage<hedge::Builder>,
    circuit_breaker: Stage<circuit_breaker::Builder>,
    bulkhead: Stage<bulkhead::Builder>,
    attempt_timeout: Option<Duration>,
    _release: PhantomData<fn() -> H>,
}

impl PolicyBuilder {
    pub(super) fn new(name: String) -> Self {
        Self {
            name,
            classifier: ErrorsAsFailures,
            replay: CloneRequest,
            deadline: Some(DEFAULT_DEADLINE),
            retry: Stage::on(RetryLayer::builder()),
            budget: None,
            hedge: Stage::off(HedgeLayer::builder()),
            circuit_breaker: Stage::on(CircuitBreakerLayer::builder()),
            bulkhead: Stage::on(BulkheadLayer::builder()),
            attempt_timeout: Some(DEFAULT_ATTEMPT_TIMEOUT),
            _release: PhantomData,
        }
    }
}

impl<C, R, H, B> PolicyBuilder<C, R, H, B> {
    /// What counts as success, failure or neither, what may be retried, and what answer
    /// ends a hedged call, for the breaker, the retry and the hedge stages alike (default
    /// [`ErrorsAsFailures`]). For HTTP pass `seawall::http::StatusClassifier`, for gRPC
    /// `seawall::grpc::GrpcClassifier` (feature `http`).
    ///
    /// It also sets the [replay](Self::replay) to the classifier's own
    /// ([`DefaultReplay`]), the one that is safe for the calls it judges: with
    /// `StatusClassifier`, `seawall::http::IdempotentReplay` (a POST or PATCH without an
    /// `Idempotency-Key` is sent once, never retried nor hedged); with `GrpcClassifier`,
    /// `seawall::grpc::GrpcReplay` (gRPC's retry rules); with [`ErrorsAsFailures`] and
    /// closures, [`CloneRequest`]. A replay set before is replaced: call
    /// [`replay`](Self::replay) after this to choose another.
    ///
    /// It sees each result as `Result<Response, BoxError>`: the stages below the breaker
    /// box the client's error (downcast it, or walk its `source()`). Whatever it says, a
    /// local rejection by a stage below the breaker (a full bulkhead) counts as nothing for
    /// the breaker, and no local rejection is ever retried.
    ///
    /// ```
    /// use seawall::classify::{classify_fn, Classification};
    /// use seawall::policy::Policy;
    ///
    /// // "not found" is the caller's business: neither a failure nor worth a retry.
    /// let policy = Policy::builder("users")
    ///     .classifier(classify_fn(|result: &Result<Option<String>, seawall::BoxError>| match result {
    ///         Ok(_) => Classification::success(),
    ///         Err(e) if e.to_string().contains("not found") => Classification::ignored(),
    ///         Err(_) => Classification::failure(),
    ///     }))
    ///     .build()?;
    /// # let _ = policy;
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn classifier<C2: DefaultReplay>(
        self,
        classifier: C2,
    ) -> PolicyBuilder<C2, C2::Replay, H, B> {
        PolicyBuilder {
            name: self.name,
            replay: classifier.default_replay(),
            classifier,
            deadline: self.deadline,
            retry: self.retry,
            budget: self.budget,
            hedge: self.hedge,
            circuit_breaker: self.circuit_breaker,
            bulkhead: self.bulkhead,
            attempt_timeout: self.attempt_timeout,
            _release: PhantomData,
        }
    }

    /// How a request is copied for a retry or a hedge (default: the
    /// [classifier's](Self::classifier), [`CloneRequest`] for the default classifier). A
    /// request it does not copy is sent once. Set it after the
    /// [classifier](Self::classifier), which replaces it; for instance
    /// `IdempotentReplay::with(BodyReplay)` for HTTP bodies buffered by
    /// `seawall::http::ReplayBodyLayer` (feature `http`).
    ///
    /// ```
    /// use seawall::policy::Policy;
    /// use seawall::retry::replay::Replay;
    ///
    /// /// Only even requests may be sent twice.
    /// #[derive(Clone)]
    /// struct EvenOnly;
    /// impl Replay<u32> for EvenOnly {
    ///     fn replay(&self, request: &u32) -> Option<u32> {
    ///         (request % 2 == 0).then_some(*request)
    ///     }
    /// }
    ///
    /// let policy = Policy::builder("ledger").replay(EvenOnly).build()?;
    /// # let _ = policy;
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn replay<R2>(self, replay: R2) -> PolicyBuilder<C, R2, H, B> {
        PolicyBuilder {
            name: self.name,
            classifier: self.classifier,
            replay,
            deadline: self.deadline,
            retry: self.retry,
            budget: self.budget,
            hedge: self.hedge,
            circuit_breaker: self.circuit_breaker,
            bulkhead: self.bulkhead,
            attempt_timeout: self.attempt_timeout,
            _release: PhantomData,
        }
    }

    /// When the bulkhead gives a call's permit back (default [`OnResponse`]: when the
    /// response arrives); see [`Release`](crate::bulkhead::Release). For HTTP,
    /// `seawall::http::UntilBodyEnd` (feature `http`) keeps it until the response body
    /// has been read to its end, so that a slow body counts against the limit.
    ///
    /// ```
    /// use seawall::bulkhead::OnResponse;
    /// use seawall::policy::Policy;
    ///
    /// let policy = Policy::builder("files").release_on::<OnResponse>().build()?;
    /// # let _ = policy;
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn release_on<H2>(self) -> PolicyBuilder<C, R, H2, B> {
        PolicyBuilder {
            name: self.name,
            classifier: self.classifier,
            replay: self.replay,
            deadline: self.deadline,
            retry: self.retry,
            budget: self.budget,
            hedge: self.hedge,
            circuit_breaker: self.circuit_breaker,
            bulkhead: self.bulkhead,
            attempt_timeout: self.attempt_timeout,
            _release: PhantomData,
        }
    }

    /// Rename the policy (the name given to [`Policy::builder`]): each stage's name, the
    /// `policy` label of its metrics and tracing events, and [`PolicyHandle::name`].
    /// An empty name is a [`ConfigError`] at build. (A [`Registry`](super::Registry)
    /// uses it to keep the number of metric series bounded.)
    ///
    /// ```
    /// use seawall::policy::Policy;
    ///
    /// let policy = Policy::builder("payments/10.0.0.7:443").name("payments").build()?;
    /// assert_eq!(policy.name(), "payments");
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The name the policy will have.
    pub(crate) fn name_ref(&self) -> &str {
        &self.name
    }

    /// Bound each call, every attempt, backoff and hedge of it, by `timeout` (default
    /// 15 s); see [`DeadlineLayer`]. A zero timeout is a [`ConfigError`] at build.
    ///
    /// ```
    /// use seawall::policy::Policy;
    /// use std::time::Duration;
    ///
    /// let policy = Policy::builder("search").deadline(Duration::from_millis(500)).build()?;
    /// assert_eq!(policy.handle().deadline(), Some(Duration::from_millis(500)));
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn deadline(mut self, timeout: Duration) -> Self {
        self.deadline = Some(timeout);
        self
    }

    /// No overall deadline: a call takes as long as its attempts and backoffs take (a
    /// deadline inherited from the caller still applies).
    ///
    /// ```
    /// let policy = seawall::policy::Policy::builder("batch").without_deadline().build()?;
    /// assert_eq!(policy.handle().deadline(), None);
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn without_deadline(mut self) -> Self {
        self.deadline = None;
        self
    }

    /// Configure the retry stage (and switch it on): `configure` gets the stage's
    /// [`retry::Builder`] as configured so far and returns it. It may change the backoff
    /// (and with it the builder's type); the name, classifier, replay and budget are the
    /// policy's.
    ///
    /// ```
    /// use seawall::policy::Policy;
    /// use seawall::retry::backoff::ConstantBackoff;
    /// use std::time::Duration;
    ///
    /// let policy = Policy::builder("orders")
    ///     .retry(|retry| {
    ///         retry
    ///             .max_attempts(4)
    ///             .backoff(ConstantBackoff::new(Duration::from_millis(100)))
    ///             .max_pushback(Duration::from_secs(5))
    ///     })
    ///     .build()?;
    /// assert!(policy.handle().retries());
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn retry<B2>(
        self,
        configure: impl FnOnce(
            retry::Builder<ErrorsAsFailures, B, CloneRequest>,
        ) -> retry::Builder<ErrorsAsFailures, B2, CloneRequest>,
    ) -> PolicyBuilder<C, R, H, B2> {
        PolicyBuilder {
            name: self.name,
            classifier: self.classifier,
            replay: self.replay,
            deadline: self.deadline,
            retry: Stage::on(configure(self.retry.builder)),
            budget: self.budget,
            hedge: self.hedge,
            circuit_breaker: self.circuit_breaker,
            bulkhead: self.bulkhead,
            attempt_timeout: self.attempt_timeout,
            _release: PhantomData,
        }
    }

    /// No retries: each call is sent once (hedges, if on, are still sent).
    ///
    /// ```
    /// let policy = seawall::policy::Policy::builder("payments").without_retry().build()?;
    /// assert!(!policy.handle().retries());
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn without_retry(mut self) -> Self {
        self.retry.on = false;
        self
    }

    /// The budget that retries and hedges share (default: a new one with the defaults
    /// of [`RetryBudget::builder`]: 20 % of requests plus 10 retries per second, over
    /// 10 s). Pass clones of one budget to several policies to bound their retries
    /// together. It replaces any budget set in the [`retry`](Self::retry) or
    /// [`hedge`](Self::hedge) closure.
    ///
    /// ```
    /// use seawall::policy::Policy;
    /// use seawall::retry::budget::RetryBudget;
    ///
    /// let budget = RetryBudget::builder().ratio(0.1).min_per_sec(1.0).build()?;
    /// let policy = Policy::builder("payments").budget(budget.clone()).build()?;
    /// assert_eq!(policy.handle().budget().unwrap().snapshot(), budget.snapshot());
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Configure the hedge stage and switch it on (hedging is off by default; see the
    /// [module docs](super#why-hedging-is-off-by-default)): `configure` gets the stage's
    /// [`hedge::Builder`] and returns it. Hedges are drawn from the policy's
    /// [budget](Self::budget); the name, classifier and replay are the policy's.
    ///
    /// ```
    /// use seawall::policy::Policy;
    /// use std::time::Duration;
    ///
    /// // Hedge the slowest 5 % of calls once 200 latencies are known.
    /// let policy = Policy::builder("search")
    ///     .hedge(|hedge| hedge.percentile(0.95).min_samples(200))
    ///     .build()?;
    /// assert_eq!(policy.handle().hedge().unwrap().delay(), None, "warming up");
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn hedge(mut self, configure: impl FnOnce(hedge::Builder) -> hedge::Builder) -> Self {
        self.hedge = Stage::on(configure(self.hedge.builder));
        self
    }

    /// No hedging (the default).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let policy = seawall::policy::Policy::builder("search")
    ///     .hedge(|hedge| hedge.delay(Duration::from_millis(20)))
    ///     .without_hedge()
    ///     .build()?;
    /// assert!(policy.handle().hedge().is_none());
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn without_hedge(mut self) -> Self {
        self.hedge.on = false;
        self
    }

    /// Configure the circuit breaker (and switch it on): `configure` gets the stage's
    /// [`circuit_breaker::Builder`] and returns it. The name and classifier are the
    /// policy's.
    ///
    /// ```
    /// use seawall::policy::Policy;
    /// use std::time::Duration;
    ///
    /// let policy = Policy::builder("payments")
    ///     .circuit_breaker(|breaker| {
    ///         breaker
    ///             .time_window(Duration::from_secs(30), 10)
    ///             .failure_rate(0.3)
    ///             .consecutive_failures(10)
    ///     })
    ///     .build()?;
    /// assert!(policy.handle().circuit_breaker().is_some());
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn circuit_breaker(
        mut self,
        configure: impl FnOnce(circuit_breaker::Builder) -> circuit_breaker::Builder,
    ) -> Self {
        self.circuit_breaker = Stage::on(configure(self.circuit_breaker.builder));
        self
    }

    /// No circuit breaker.
    ///
    /// ```
    /// let policy = seawall::policy::Policy::builder("payments")
    ///     .without_circuit_breaker()
    ///     .build()?;
    /// assert!(policy.handle().circuit_breaker().is_none());
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn without_circuit_breaker(mut self) -> Self {
        self.circuit_breaker.on = false;
        self
    }

    /// Configure the bulkhead (and switch it on): `configure` gets the stage's
    /// [`bulkhead::Builder`] and returns it (fixed or [adaptive](bulkhead::adaptive)
    /// limit, max wait). The name is the policy's. Partitions are not supported in a
    /// policy (build them with `build_partitioned` and layer them yourself).
    ///
    /// ```
    /// use seawall::bulkhead::adaptive::Aimd;
    /// use seawall::policy::Policy;
    ///
    /// let aimd = Aimd::builder().min_limit(5).max_limit(200).build()?;
    /// let policy = Policy::builder("payments").bulkhead(|b| b.adaptive(aimd)).build()?;
    /// assert!(policy.handle().bulkhead().is_some());
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn bulkhead(
        mut self,
        configure: impl FnOnce(bulkhead::Builder) -> bulkhead::Builder,
    ) -> Self {
        self.bulkhead = Stage::on(configure(self.bulkhead.builder));
        self
    }

    /// No bulkhead: no bound on the calls in flight.
    ///
    /// ```
    /// let policy = seawall::policy::Policy::builder("payments").without_bulkhead().build()?;
    /// assert!(policy.handle().bulkhead().is_none());
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn without_bulkhead(mut self) -> Self {
        self.bulkhead.on = false;
        self
    }

    /// Bound each attempt by `timeout` (default 5 s), or by what is left of the
    /// deadline if that is less; see [`TimeoutLayer`]. An attempt that times out fails
    /// with [`Elapsed`](crate::error::Elapsed), which the breaker counts as a failure and
    /// the retry stage may retry. A zero timeout is a [`ConfigError`] at build.
    ///
    /// ```
    /// use seawall::policy::Policy;
    /// use std::time::Duration;
    ///
    /// let policy = Policy::builder("search").attempt_timeout(Duration::from_millis(150)).build()?;
    /// assert_eq!(policy.handle().attempt_timeout(), Some(Duration::from_millis(150)));
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// No timeout per attempt: an attempt is bounded only by the deadline. (A downstream
    /// that hangs then never counts against the breaker: a call cut off by the deadline
    /// above the breaker counts as nothing.)
    ///
    /// ```
    /// let policy = seawall::policy::Policy::builder("stream")
    ///     .without_attempt_timeout()
    ///     .build()?;
    /// assert_eq!(policy.handle().attempt_timeout(), None);
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn without_attempt_timeout(mut self) -> Self {
        self.attempt_timeout = None;
        self
    }

    /// Check every value of every stage that is on, and build the policy (and with it
    /// each stage's shared state: breaker, bulkhead, budget, hedge latencies). The first
    /// bad value is a [`ConfigError`] naming its component (`"policy"`, `"deadline"`,
    /// `"retry"`, `"hedge"`, `"circuit_breaker"`, `"bulkhead"`, `"timeout"`) and field.
    ///
    /// ```
    /// use seawall::policy::Policy;
    ///
    /// let err = Policy::builder("payments")
    ///     .circuit_breaker(|breaker| breaker.failure_rate(1.5))
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!((err.component(), err.field()), ("circuit_breaker", "failure_rate"));
    ///
    /// let err = Policy::builder("").build().unwrap_err();
    /// assert_eq!((err.component(), err.field()), ("policy", "name"));
    /// ```
    pub fn build(self) -> Result<Policy<C, R, H, B>, ConfigError>
    where
        C: Clone,
        R: Clone,
    {
        ConfigError::check("policy", !self.name.is_empty(), "name", || {
            "must not be empty".to_owned()
        })?;
        let name = self.name;

        let deadline = self.deadline.map(DeadlineLayer::new).transpose()?;
        let attempt_timeout = self.attempt_timeout.map(TimeoutLayer::new).transpose()?;

        let circuit_breaker = match self.circuit_breaker.enabled() {
            Some(builder) => Some(
                builder
                    .name(name.as_str())
                    .classifier(RejectionsIgnored(self.classifier.clone()))
                    .build()?,
            ),
            None => None,
        };
        let bulkhead = match self.bulkhead.enabled() {
            Some(builder) => Some(builder.name(name.as_str()).build()?.release_on::<H>()),
            None => None,
        };

        let retry = self.retry.enabled();
        let hedge = self.hedge.enabled();
        let budget = (retry.is_some() || hedge.is_some())
            .then(|| self.budget.unwrap_or_else(RetryBudget::defaults));
        let (retry, hedge) = match budget.clone() {
            // Both off: no budget, nothing to build.
            None => (None, None),
            Some(budget) => {
                let hedge = match hedge {
                    Some(builder) => {
                        let builder = builder
                            .name(name.as_str())
                            .classifier(self.classifier.clone())
                            .replay(self.replay.clone());
                        // The retry stage above deposits once per call; the hedge stage
                        // deposits only when it is the one stage that sees every call.
                        let builder = if retry.is_some() {
                            builder.shared_budget(budget.clone())
                        } else {
                            builder.budget(budget.clone())
                        };
                        Some(builder.build()?)
                    }
                    None => None,
                };
                let retry = match retry {
                    Some(builder) => Some(
                        builder
                            .name(name.as_str())
                            .classify_and_replay(self.classifier, self.replay)
                            .budget(budget)
                            .build()?,
                    ),
                    None => None,
                };
                (retry, hedge)
            }
        };

        let handle = PolicyHandle {
            name: Arc::from(name),
            deadline: deadline.as_ref().map(DeadlineLayer::timeout),
            retries: retry.is_some(),
            budget,
            hedge: hedge.as_ref().map(HedgeLayer::handle),
            circuit_breaker: circuit_breaker.as_ref().map(CircuitBreakerLayer::handle),
            bulkhead: bulkhead.as_ref().map(BulkheadLayer::handle),
            attempt_timeout: attempt_timeout.as_ref().map(TimeoutLayer::timeout),
        };
        Ok(Policy {
            deadline,
            retry,
            hedge,
            circuit_breaker,
            bulkhead,
            attempt_timeout,
            handle,
        })
    }
}

impl<C, R, H, B> fmt::Debug for PolicyBuilder<C, R, H, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyBuilder")
            .field("name", &self.name)
            .field("deadline", &self.deadline)
            .field("retry", &self.retry)
            .field("budget", &self.budget)
            .field("hedge", &self.hedge)
            .field("circuit_breaker", &self.circuit_breaker)
            .field("bulkhead", &self.bulkhead)
            .field("attempt_timeout", &self.attempt_timeout)
            .finish_non_exhaustive()
    }
}
