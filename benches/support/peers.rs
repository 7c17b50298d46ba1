//! The contenders the benches compare, built the same way in each: the inner service,
//! and per layer seawall's, tower's built-in (where tower has one) and tower-resilience's
//! (and failsafe's breaker), configured as close to seawall's defaults as each allows.
//! `benches/peers.rs` runs them all; the per-layer benches each run theirs.

use std::convert::Infallible;
use std::fmt::Debug;
use std::time::Duration;

use tower::Service;

/// The service every contender wraps: echoes its request, never fails.
pub(crate) fn echo(
) -> impl Service<u64, Response = u64, Error = Infallible, Future: Send> + Clone + Send + 'static {
    tower::service_fn(|req: u64| async move { Ok::<_, Infallible>(req) })
}

/// seawall's breaker, as configured by `builder`, around [`echo`].
pub(crate) fn seawall_service(
    builder: seawall::circuit_breaker::Builder,
) -> impl Service<u64, Response = u64, Error: Debug, Future: Send> + Clone + Send + 'static {
    let layer = builder.name("bench").build().expect("valid seawall config");
    tower::ServiceBuilder::new().layer(layer).service(echo())
}

/// tower-resilience's breaker around [`echo`]: its count window of 100 calls,
/// 50 % failure rate, 20 calls minimum (its default minimum is the window
/// size), 5 s open (its default is 30 s).
pub(crate) fn tower_resilience_service(
) -> impl Service<u64, Response = u64, Error: Debug, Future: Send> + Clone + Send + 'static {
    let layer = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .name("bench")
        .failure_rate_threshold(0.5)
        .sliding_window_size(100)
        .minimum_number_of_calls(20)
        .wait_duration_in_open(Duration::from_secs(5))
        .build()
        .expect("valid tower-resilience config");
    tower::ServiceBuilder::new().layer(layer).service(echo())
}

/// failsafe's breaker. failsafe has no count window: the closest policy is a
/// success rate over a time window (an EMA over 10 s) that opens below 50 %
/// success once 20 calls were seen, and stays open a constant 5 s.
pub(crate) type Failsafe = failsafe::StateMachine<
    failsafe::failure_policy::SuccessRateOverTimeWindow<failsafe::backoff::Constant>,
    (),
>;

pub(crate) fn failsafe_breaker() -> Failsafe {
    let policy = failsafe::failure_policy::success_rate_over_time_window(
        0.5,
        20,
        Duration::from_secs(10),
        failsafe::backoff::constant(Duration::from_secs(5)),
    );
    failsafe::Config::new().failure_policy(policy).build()
}

// ===== bulkheads (used by `benches/bulkhead.rs` and `benches/bulkhead_contention.rs`) =====

/// The limit every bulkhead contender is given: far above the calls ever in flight in the
/// benches (at most one per task, 64 tasks), so that no call is ever rejected or made to
/// wait and only the cost of taking and giving back a permit is measured.
#[cfg(feature = "bulkhead")]
#[allow(dead_code)] // the breaker benches include this file too
pub(crate) const BULKHEAD_LIMIT: u32 = 1_000;

/// seawall's bulkhead around [`echo`]: [`BULKHEAD_LIMIT`] calls at once, fail-fast (its
/// default zero `max_wait`). Clones share the permits.
#[cfg(feature = "bulkhead")]
#[allow(dead_code)] // the breaker benches include this file too
pub(crate) fn seawall_bulkhead_service(
) -> impl Service<u64, Response = u64, Error: Debug, Future: Send> + Clone + Send + 'static {
    let layer = seawall::bulkhead::BulkheadLayer::builder()
        .name("bench")
        .max_concurrent(BULKHEAD_LIMIT)
        .build()
        .expect("valid seawall config");
    tower::ServiceBuilder::new().layer(layer).service(echo())
}

/// tower's `ConcurrencyLimit` around [`echo`], made by `ConcurrencyLimitLayer`: each
/// `layer` call makes its own semaphore, but clones of the service share it (its `Clone`
/// clones the `Arc<Semaphore>` and leaves the clone without a permit). tower's limit
/// waits for a permit in `poll_ready`; it has no fail-fast mode.
#[cfg(feature = "bulkhead")]
#[allow(dead_code)] // the breaker benches include this file too
pub(crate) fn tower_concurrency_limit_service(
) -> impl Service<u64, Response = u64, Error: Debug, Future: Send> + Clone + Send + 'static {
    tower::ServiceBuilder::new()
        .layer(tower::limit::ConcurrencyLimitLayer::new(
            BULKHEAD_LIMIT as usize,
        ))
        .service(echo())
}

/// tower's `GlobalConcurrencyLimitLayer`: one semaphore shared by every service the layer
/// (or a clone of it) makes. Same service type and same call path as
/// [`tower_concurrency_limit_service`]; only where the semaphore is made differs.
#[cfg(feature = "bulkhead")]
#[allow(dead_code)] // the breaker benches include this file too
pub(crate) fn tower_global_concurrency_limit_layer() -> tower::limit::GlobalConcurrencyLimitLayer {
    tower::limit::GlobalConcurrencyLimitLayer::new(BULKHEAD_LIMIT as usize)
}

/// tower-resilience's bulkhead around [`echo`]: [`BULKHEAD_LIMIT`] concurrent calls,
/// `reject_when_full` (its fail-fast mode: a zero `max_wait_duration`; its default is to
/// wait for ever), not in backpressure mode (its default: the permit is taken inside the
/// response future, not in `poll_ready`). Clones share its semaphore.
#[cfg(feature = "bulkhead")]
#[allow(dead_code)] // the breaker benches include this file too
pub(crate) fn tower_resilience_bulkhead_service(
) -> impl Service<u64, Response = u64, Error: Debug, Future: Send> + Clone + Send + 'static {
    let layer = tower_resilience::bulkhead::BulkheadLayer::builder()
        .name("bench")
        .max_concurrent_calls(BULKHEAD_LIMIT as usize)
        .reject_when_full()
        .build()
        .expect("valid tower-resilience config");
    tower::ServiceBuilder::new().layer(layer).service(echo())
}

// ===== retries (used by `benches/retry.rs`) =====

/// Attempts in all (the first included) every retry contender is given.
#[cfg(feature = "retry")]
#[allow(dead_code)] // the breaker and bulkhead benches include this file too
pub(crate) const RETRY_MAX_ATTEMPTS: u32 = 3;

/// seawall's retry around [`echo`], as configured by `builder` (given
/// [`RETRY_MAX_ATTEMPTS`] here): with its default budget (20 % plus 10/s over 10 s) unless
/// `builder` says `without_budget`, its default backoff (exponential, full jitter).
#[cfg(feature = "retry")]
#[allow(dead_code)] // the breaker and bulkhead benches include this file too
pub(crate) fn seawall_retry_service(
    builder: seawall::retry::Builder,
) -> impl Service<u64, Response = u64, Error: Debug, Future: Send> + Clone + Send + 'static {
    let layer = builder
        .max_attempts(RETRY_MAX_ATTEMPTS)
        .build()
        .expect("valid seawall config");
    tower::ServiceBuilder::new().layer(layer).service(echo())
}

/// The policy of tower's `Retry` as tower's docs use it, with a `TpsBudget`: up to
/// [`RETRY_MAX_ATTEMPTS`] attempts, a deposit per success, a withdrawal per retry; no
/// backoff (the retry is sent at once: the success path never gets there). tower's
/// `Retry` clones the policy for every call, so `remaining` counts per call.
#[cfg(feature = "retry")]
#[allow(dead_code)] // the breaker and bulkhead benches include this file too
#[derive(Clone)]
pub(crate) struct TowerBudgetPolicy {
    budget: std::sync::Arc<tower::retry::budget::TpsBudget>,
    remaining: u32,
}

#[cfg(feature = "retry")]
impl<Res, E> tower::retry::Policy<u64, Res, E> for TowerBudgetPolicy {
    type Future = std::future::Ready<()>;

    fn retry(&mut self, _req: &mut u64, result: &mut Result<Res, E>) -> Option<Self::Future> {
        use tower::retry::budget::Budget;
        match result {
            Ok(_) => {
                self.budget.deposit();
                None
            }
            Err(_) if self.remaining > 0 && self.budget.withdraw() => {
                self.remaining -= 1;
                Some(std::future::ready(()))
            }
            Err(_) => None,
        }
    }

    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

/// tower's `Retry` around [`echo`] with [`TowerBudgetPolicy`]: a `TpsBudget` with
/// seawall's defaults (10 s window, 10 retries/s floor, 20 % of requests).
#[cfg(feature = "retry")]
#[allow(dead_code)] // the breaker and bulkhead benches include this file too
pub(crate) fn tower_retry_service(
) -> impl Service<u64, Response = u64, Error: Debug, Future: Send> + Clone + Send + 'static {
    tower::ServiceBuilder::new()
        .layer(tower::retry::RetryLayer::new(tower_budget_policy()))
        .service(echo())
}

/// A [`TowerBudgetPolicy`] with its own `TpsBudget` with seawall's defaults (10 s window,
/// 10 retries/s floor, 20 % of requests) and [`RETRY_MAX_ATTEMPTS`] attempts. Clones
/// share the budget.
#[cfg(feature = "retry")]
#[allow(dead_code)] // the breaker and bulkhead benches include this file too
pub(crate) fn tower_budget_policy() -> TowerBudgetPolicy {
    TowerBudgetPolicy {
        budget: std::sync::Arc::new(tower::retry::budget::TpsBudget::new(
            Duration::from_secs(10),
            10,
            0.2,
        )),
        remaining: RETRY_MAX_ATTEMPTS - 1,
    }
}

/// tower-resilience's retry around [`echo`]: [`RETRY_MAX_ATTEMPTS`] attempts, its default
/// backoff (exponential from 100 ms). It has no budget by default (unlimited retries) and
/// no ratio budget at all; the closest is its token bucket with its defaults, 10 tokens/s
/// and a burst of 100 (seawall's floor), to which every success deposits a whole token
/// (a 100 % ratio, capped at the burst). Its bucket is a `Mutex`.
#[cfg(feature = "retry")]
#[allow(dead_code)] // the breaker and bulkhead benches include this file too
pub(crate) fn tower_resilience_retry_service(
) -> impl Service<u64, Response = u64, Error: Debug, Future: Send> + Clone + Send + 'static {
    let budget = tower_resilience::retry::RetryBudgetBuilder::new()
        .token_bucket()
        .tokens_per_second(10.0)
        .max_tokens(100)
        .build()
        .expect("valid tower-resilience budget");
    let layer = tower_resilience::retry::RetryLayer::<u64, u64, Infallible>::builder()
        .name("bench")
        .max_attempts(RETRY_MAX_ATTEMPTS as usize)
        .budget(budget)
        .build();
    tower::ServiceBuilder::new().layer(layer).service(echo())
}

// ===== timeouts (used by `benches/peers.rs`) =====

/// The timeout every single-layer timeout contender is given (as in `benches/timeout.rs`).
#[allow(dead_code)] // the other benches include this file too
pub(crate) const TIMEOUT: Duration = Duration::from_secs(1);

/// seawall's per-attempt `TimeoutLayer` ([`TIMEOUT`]) around [`echo`].
#[cfg(feature = "timeout")]
#[allow(dead_code)] // the other benches include this file too
pub(crate) fn seawall_timeout_service(
) -> impl Service<u64, Response = u64, Error: Debug, Future: Send> + Clone + Send + 'static {
    tower::ServiceBuilder::new()
        .layer(seawall::timeout::TimeoutLayer::new(TIMEOUT).expect("valid timeout"))
        .service(echo())
}

/// seawall's `DeadlineLayer` ([`TIMEOUT`]) around [`echo`].
#[cfg(feature = "timeout")]
#[allow(dead_code)] // the other benches include this file too
pub(crate) fn seawall_deadline_service(
) -> impl Service<u64, Response = u64, Error: Debug, Future: Send> + Clone + Send + 'static {
    tower::ServiceBuilder::new()
        .layer(seawall::timeout::DeadlineLayer::new(TIMEOUT).expect("valid deadline"))
        .service(echo())
}

/// tower's `Timeout` ([`TIMEOUT`]) around [`echo`].
#[allow(dead_code)] // the other benches include this file too
pub(crate) fn tower_timeout_service(
) -> impl Service<u64, Response = u64, Error: Debug, Future: Send> + Clone + Send + 'static {
    tower::ServiceBuilder::new()
        .layer(tower::timeout::TimeoutLayer::new(TIMEOUT))
        .service(echo())
}

// ===== full stacks (used by `benches/peers.rs`; `benches/policy.rs` builds the same
// seawall and tower-resilience stacks itself) =====

/// The full stacks' overall deadline and attempt timeout (the policy's defaults).
#[cfg(feature = "policy")]
#[allow(dead_code)] // the other benches include this file too
pub(crate) const STACK_DEADLINE: Duration = Duration::from_secs(15);
#[cfg(feature = "policy")]
#[allow(dead_code)] // the other benches include this file too
pub(crate) const STACK_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// The full stacks' bulkhead limit (the policy's default, Resilience4j's).
#[cfg(feature = "policy")]
#[allow(dead_code)] // the other benches include this file too
pub(crate) const STACK_MAX_CONCURRENT: u32 = 25;

/// seawall's `Policy` with its defaults (hedging off) around [`echo`]: a 15 s deadline,
/// [`RETRY_MAX_ATTEMPTS`] attempts with the default budget, the default breaker, a
/// fail-fast bulkhead of 25, a 5 s attempt timeout.
#[cfg(feature = "policy")]
#[allow(dead_code)] // the other benches include this file too
pub(crate) fn seawall_policy_service(
) -> impl Service<u64, Response = u64, Error: Debug, Future: Send> + Clone + Send + 'static {
    let policy = seawall::policy::Policy::builder("bench")
        .build()
        .expect("valid policy");
    tower::ServiceBuilder::new().layer(policy).service(echo())
}

/// tower's built-ins composed the same way, as far as tower has them: `Timeout` (15 s,
/// the deadline), `Retry` with [`TowerBudgetPolicy`], `ConcurrencyLimit` (25), `Timeout`
/// (5 s, per attempt). tower has no circuit breaker, so this stack has none.
#[cfg(feature = "policy")]
#[allow(dead_code)] // the other benches include this file too
pub(crate) fn tower_stack_service(
) -> impl Service<u64, Response = u64, Error: Debug, Future: Send> + Clone + Send + 'static {
    tower::ServiceBuilder::new()
        .layer(tower::timeout::TimeoutLayer::new(STACK_DEADLINE))
        .layer(tower::retry::RetryLayer::new(tower_budget_policy()))
        .layer(tower::limit::ConcurrencyLimitLayer::new(
            STACK_MAX_CONCURRENT as usize,
        ))
        .layer(tower::timeout::TimeoutLayer::new(STACK_ATTEMPT_TIMEOUT))
        .service(echo())
}

/// The error tower-resilience's retry sees in its stack: its breaker's, around its
/// bulkhead's, around tower's `Timeout`'s.
#[cfg(feature = "policy")]
type TowerResilienceStackError = tower_resilience::circuitbreaker::CircuitBreakerError<
    tower_resilience::bulkhead::BulkheadServiceError<tower::BoxError>,
>;

/// tower-resilience 0.13's equivalent stack around [`echo`], as in `benches/policy.rs`:
/// tower's `Timeout` (15 s), its retry ([`RETRY_MAX_ATTEMPTS`] attempts, its token bucket
/// with the bucket's defaults), its breaker (as [`tower_resilience_service`]), its
/// bulkhead (25, `reject_when_full`), tower's `Timeout` (5 s). Its time limiter is not
/// among the dev-dependency's features, and tower's `Timeout` is what a tower user would
/// reach for.
#[cfg(feature = "policy")]
#[allow(dead_code)] // the other benches include this file too
pub(crate) fn tower_resilience_stack_service(
) -> impl Service<u64, Response = u64, Error: Debug, Future: Send> + Clone + Send + 'static {
    let budget = tower_resilience::retry::RetryBudgetBuilder::new()
        .token_bucket()
        .tokens_per_second(10.0)
        .max_tokens(100)
        .build()
        .expect("valid tower-resilience budget");
    let retry =
        tower_resilience::retry::RetryLayer::<u64, u64, TowerResilienceStackError>::builder()
            .name("bench")
            .max_attempts(RETRY_MAX_ATTEMPTS as usize)
            .budget(budget)
            .build();
    let breaker = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .name("bench")
        .failure_rate_threshold(0.5)
        .sliding_window_size(100)
        .minimum_number_of_calls(20)
        .wait_duration_in_open(Duration::from_secs(5))
        .build()
        .expect("valid tower-resilience breaker");
    let bulkhead = tower_resilience::bulkhead::BulkheadLayer::builder()
        .name("bench")
        .max_concurrent_calls(STACK_MAX_CONCURRENT as usize)
        .reject_when_full()
        .build()
        .expect("valid tower-resilience bulkhead");
    tower::ServiceBuilder::new()
        .layer(tower::timeout::TimeoutLayer::new(STACK_DEADLINE))
        .layer(retry)
        .layer(breaker)
        .layer(bulkhead)
        .layer(tower::timeout::TimeoutLayer::new(STACK_ATTEMPT_TIMEOUT))
        .service(echo())
}
