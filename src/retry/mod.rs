//! Retries that cannot cause a retry storm.
//!
//! A naive retry turns one failing service into three times its load and keeps it down.
//! [`Retry`] retries a failed call only when:
//!
//! - the [classifier](crate::classify) says the failure is retryable;
//! - the attempt was not rejected locally by a seawall layer below (an open breaker, a
//!   full bulkhead: nothing reached the downstream, and retrying would add load);
//! - attempts remain (`max_attempts`, default 3 in all);
//! - a copy of the request can be made ([`replay`]); a request that cannot be copied is
//!   sent once. For HTTP, use `seawall::http::IdempotentReplay` (feature `http`): it
//!   copies only requests that are safe to send twice (idempotent methods, or an
//!   `Idempotency-Key` header);
//! - the wait before it (backoff or pushback) ends before the call's
//!   [deadline](crate::timeout::Deadline) (feature `timeout`): otherwise the caller gets
//!   the failure at once, and no budget is spent;
//! - the [`RetryBudget`] has a retry to spare. An exhausted budget
//!   returns the last real failure, not a new error. The retry is taken when it is
//!   decided, and given back if it is never sent (the service fails to become ready, or
//!   the caller drops the response while the retry waits).
//!
//! A call that succeeds at once costs a copy of the request, a clone of the service, a
//! reference to the layer's shared policy, and the budget's deposit: one clock read and
//! one atomic compare-and-swap. Nothing is allocated.
//!
//! Between attempts it waits as the server asked (pushback from the classifier, e.g.
//! `Retry-After`, capped at `max_pushback`, default 30 s) or else as the
//! [`backoff`] says (default: exponential with full jitter, 25 ms to 250 ms).
//!
//! ```
//! use seawall::retry::RetryLayer;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use tower::{Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let calls = Arc::new(AtomicU32::new(0));
//! let flaky = {
//!     let calls = calls.clone();
//!     tower::service_fn(move |_: ()| {
//!         // Fails twice, then succeeds.
//!         let n = calls.fetch_add(1, Ordering::SeqCst);
//!         async move { if n < 2 { Err("503") } else { Ok("ok") } }
//!     })
//! };
//! let retry = RetryLayer::builder().max_attempts(3).build().unwrap();
//! assert_eq!(retry.layer(flaky).oneshot(()).await, Ok("ok"));
//! assert_eq!(calls.load(Ordering::SeqCst), 3);
//! # }
//! ```
//!
//! Streamed HTTP request bodies are made copyable by `seawall::http::ReplayBodyLayer`
//! (buffered up to 64 KiB; a larger body is sent once). Slow (rather than failed) calls
//! are the job of [`hedge`](crate::hedge), which can share this layer's budget.

pub mod backoff;
pub mod budget;
pub mod future;
pub mod replay;

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{Layer, Service};

use self::backoff::ExponentialBackoff;
use self::budget::{RetryBudget, SlotCache};
use self::future::ResponseFuture;
use self::replay::{CloneRequest, Replay};
use crate::classify::ErrorsAsFailures;
use crate::error::ConfigError;

/// What a retry layer does: shared by every service and future it makes.
pub(crate) struct Policy<C, B, R> {
    name: Arc<str>,
    metrics: crate::metrics::RetryMetrics,
    max_attempts: u32,
    classifier: C,
    backoff: B,
    replay: R,
    budget: Option<RetryBudget>,
    max_pushback: Duration,
}

/// Applies retries to services; see the [module docs](self).
///
/// ```
/// use seawall::retry::backoff::ConstantBackoff;
/// use seawall::retry::budget::RetryBudget;
/// use seawall::retry::RetryLayer;
/// use std::time::Duration;
///
/// // One budget shared by every client of the payments service.
/// let budget = RetryBudget::builder().ratio(0.1).build()?;
/// let layer = RetryLayer::builder()
///     .max_attempts(2)
///     .backoff(ConstantBackoff::new(Duration::from_millis(50)))
///     .budget(budget.clone())
///     .build()?;
/// # let _ = layer;
/// # Ok::<(), seawall::error::ConfigError>(())
/// ```
pub struct RetryLayer<C = ErrorsAsFailures, B = ExponentialBackoff, R = CloneRequest> {
    policy: Arc<Policy<C, B, R>>,
}

impl RetryLayer {
    /// A builder with the defaults: 3 attempts, exponential backoff with full jitter
    /// (25 ms to 250 ms), a budget of 20 % plus 10 retries/s over 10 s, pushback capped at
    /// 30 s.
    pub fn builder() -> Builder {
        Builder {
            name: "default".to_owned(),
            max_attempts: 3,
            classifier: ErrorsAsFailures,
            backoff: ExponentialBackoff::envoy_defaults(),
            replay: CloneRequest,
            budget: Some(RetryBudget::defaults()),
            max_pushback: Duration::from_secs(30),
        }
    }
}

impl<C, B, R> RetryLayer<C, B, R> {
    /// The layer's budget, if it has one.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.policy.budget.as_ref()
    }
}

impl<C, B, R> Clone for RetryLayer<C, B, R> {
    fn clone(&self) -> Self {
        Self {
            policy: self.policy.clone(),
        }
    }
}

impl<C, B, R> fmt::Debug for RetryLayer<C, B, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("name", &self.policy.name)
            .field("max_attempts", &self.policy.max_attempts)
            .field("budget", &self.policy.budget)
            .field("max_pushback", &self.policy.max_pushback)
            .finish_non_exhaustive()
    }
}

impl<S, C, B, R> Layer<S> for RetryLayer<C, B, R> {
    type Service = Retry<S, C, B, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry {
            inner,
            policy: self.policy.clone(),
            slot: SlotCache::new(),
        }
    }
}

/// Configures a [`RetryLayer`]; [`build`](Self::build) checks every value.
pub struct Builder<C = ErrorsAsFailures, B = ExponentialBackoff, R = CloneRequest> {
    name: String,
    max_attempts: u32,
    classifier: C,
    backoff: B,
    replay: R,
    budget: Option<RetryBudget>,
    max_pushback: Duration,
}

impl<C, B, R> fmt::Debug for Builder<C, B, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("name", &self.name)
            .field("max_attempts", &self.max_attempts)
            .field("budget", &self.budget)
            .field("max_pushback", &self.max_pushback)
            .finish_non_exhaustive()
    }
}

impl<C, B, R> Builder<C, B, R> {
    /// The layer's name: the `policy` label of its metrics and tracing events. Default
    /// `"default"`; an empty name is a [`ConfigError`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Attempts in all, the first included (default 3; 1 means never retry). Zero is a
    /// [`ConfigError`].
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// The budget retries are spent from (default: a new one with the defaults of
    /// [`RetryBudget::builder`]). Share one budget between layers by passing clones.
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Retry without a budget: only `max_attempts` bounds the load (not recommended;
    /// see the [module docs](self)).
    pub fn without_budget(mut self) -> Self {
        self.budget = None;
        self
    }

    /// The longest a server's pushback may delay a retry (default 30 s); a longer
    /// pushback is cut to this. Zero is a [`ConfigError`] at [`build`](Self::build): it
    /// would turn every pushback into a retry at once, whatever the server asked for.
    pub fn max_pushback(mut self, max: Duration) -> Self {
        self.max_pushback = max;
        self
    }

    /// What may be retried (default [`ErrorsAsFailures`]: every error but a local
    /// rejection). It does not change the [replay](Self::replay): for HTTP requests, set
    /// `seawall::http::IdempotentReplay` too, so that a POST is sent once. (A
    /// [`Policy`](crate::policy::Policy) sets the classifier's own replay,
    /// [`DefaultReplay`](replay::DefaultReplay), with it.)
    pub fn classifier<C2>(self, classifier: C2) -> Builder<C2, B, R> {
        Builder {
            name: self.name,
            max_attempts: self.max_attempts,
            classifier,
            replay: self.replay,
            backoff: self.backoff,
            budget: self.budget,
            max_pushback: self.max_pushback,
        }
    }

    /// The classifier and the replay together, whatever the classifier: for a policy,
    /// which sets both.
    #[cfg_attr(not(feature = "policy"), allow(dead_code))]
    pub(crate) fn classify_and_replay<C2, R2>(
        self,
        classifier: C2,
        replay: R2,
    ) -> Builder<C2, B, R2> {
        Builder {
            name: self.name,
            max_attempts: self.max_attempts,
            classifier,
            backoff: self.backoff,
            replay,
            budget: self.budget,
            max_pushback: self.max_pushback,
        }
    }

    /// The delays between attempts (default exponential with full jitter).
    pub fn backoff<B2>(self, backoff: B2) -> Builder<C, B2, R> {
        Builder {
            name: self.name,
            max_attempts: self.max_attempts,
            classifier: self.classifier,
            backoff,
            replay: self.replay,
            budget: self.budget,
            max_pushback: self.max_pushback,
        }
    }

    /// How a request is copied for a retry (default [`CloneRequest`]).
    pub fn replay<R2>(self, replay: R2) -> Builder<C, B, R2> {
        Builder {
            name: self.name,
            max_attempts: self.max_attempts,
            classifier: self.classifier,
            backoff: self.backoff,
            replay,
            budget: self.budget,
            max_pushback: self.max_pushback,
        }
    }

    /// Check every value and build the layer.
    pub fn build(self) -> Result<RetryLayer<C, B, R>, ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::new(
                "retry",
                "name",
                "must not be empty".to_owned(),
            ));
        }
        if self.max_attempts == 0 {
            return Err(ConfigError::new(
                "retry",
                "max_attempts",
                "must be at least 1 (got 0); 1 means never retry".to_owned(),
            ));
        }
        if self.max_pushback.is_zero() {
            return Err(ConfigError::new(
                "retry",
                "max_pushback",
                "must be longer than zero: a zero cap would retry at once whatever wait the \
                 server asked for"
                    .to_owned(),
            ));
        }
        Ok(RetryLayer {
            policy: Arc::new(Policy {
                metrics: crate::metrics::RetryMetrics::new(&self.name),
                name: Arc::from(self.name),
                max_attempts: self.max_attempts,
                classifier: self.classifier,
                backoff: self.backoff,
                replay: self.replay,
                budget: self.budget,
                max_pushback: self.max_pushback,
            }),
        })
    }
}

/// Retries calls to `S`; see the [module docs](self).
pub struct Retry<S, C = ErrorsAsFailures, B = ExponentialBackoff, R = CloneRequest> {
    inner: S,
    policy: Arc<Policy<C, B, R>>,
    /// The budget's time slot this service deposited in last.
    slot: SlotCache,
}

impl<S, C, B, R> Retry<S, C, B, R> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, consuming the retry.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, C, B, R> Clone for Retry<S, C, B, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            policy: self.policy.clone(),
            slot: self.slot,
        }
    }
}

impl<S: fmt::Debug, C, B, R> fmt::Debug for Retry<S, C, B, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("max_attempts", &self.policy.max_attempts)
            .finish_non_exhaustive()
    }
}

impl<S, Req, C, B, R> Service<Req> for Retry<S, C, B, R>
where
    S: Service<Req> + Clone,
    S::Error: 'static,
    C: crate::classify::Classify<S::Response, S::Error>,
    B: backoff::Backoff<S::Response, S::Error>,
    R: Replay<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, Req, C, B, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        if let Some(budget) = &self.policy.budget {
            budget.deposit_cached(&mut self.slot);
        }
        let copy = if self.policy.max_attempts > 1 {
            self.policy.replay.replay(&request)
        } else {
            None
        };
        // The readied service makes this call; a clone (readied again before use) makes
        // the retries.
        let retries = self.inner.clone();
        let future = self.inner.call(request);
        ResponseFuture::new(future, retries, self.policy.clone(), copy)
    }
}
