//! The contenders both breaker benches compare, built the same way in each: the inner
//! service, seawall's breaker, tower-resilience's and failsafe's, configured as close to
//! seawall's defaults as each allows.

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
