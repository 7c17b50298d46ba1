//! Every builder rejects every invalid value with a `ConfigError` naming the field: one
//! test per (builder, field), named `<builder>::<field>`, each checking the component, the
//! field and that the reason says what is wrong. A test may try several bad values of
//! its field.
//!
//! Fields that already have a test of their own elsewhere are not tested again here:
//! the adaptive limits (`tests/bulkhead_adaptive.rs`, `aimd_rejects_bad_*`,
//! `vegas_rejects_bad_*`, `gradient2_rejects_bad_*`) and the runtime setters
//! `bulkhead::Handle::set_limit` (`tests/bulkhead/config.rs`) and
//! `chaos::Handle::set_rate` (`tests/chaos.rs`). The policy config loader has its
//! refused values in `tests/policy_config.rs`
//! (`values_a_builder_refuses_are_errors_at_their_key`); the cases it lacks are at the
//! end of this file.

use seawall::error::ConfigError;

/// Asserts that `result` is the `ConfigError` of `component`'s `field`, and that its
/// reason contains each of `says`.
#[allow(dead_code)] // unused when every feature is off
#[track_caller]
fn rejects<T>(result: Result<T, ConfigError>, component: &str, field: &str, says: &[&str]) {
    let err = match result {
        Ok(_) => panic!("{component}.{field}: the bad value was accepted"),
        Err(err) => err,
    };
    assert_eq!(
        (err.component(), err.field()),
        (component, field),
        "wrong component or field: {err}"
    );
    assert!(!err.reason().is_empty(), "{err}");
    for words in says {
        assert!(
            err.reason().contains(words),
            "the reason of `{err}` does not say {words:?}"
        );
    }
    let shown = err.to_string();
    assert!(
        shown.contains(component) && shown.contains(field),
        "{shown}"
    );
}

// ===== circuit breaker =====

#[cfg(feature = "circuit-breaker")]
mod circuit_breaker {
    use super::rejects;
    use seawall::circuit_breaker::{Builder, CircuitBreakerLayer};
    use std::time::Duration;

    const C: &str = "circuit_breaker";

    fn b() -> Builder {
        CircuitBreakerLayer::builder()
    }

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn name() {
        rejects(b().name("").build(), C, "name", &["empty"]);
    }

    #[test]
    fn count_window() {
        for (calls, got) in [(0, "got 0"), (1_000_001, "got 1000001")] {
            rejects(
                b().count_window(calls).minimum_calls(1).build(),
                C,
                "count_window",
                &["between 1 and 1000000", got],
            );
        }
    }

    #[test]
    fn time_window() {
        rejects(
            b().time_window(s(10), 0).build(),
            C,
            "time_window",
            &["between 1 and 1000 buckets", "got 0"],
        );
        rejects(
            b().time_window(s(10), 1_001).build(),
            C,
            "time_window",
            &["got 1001"],
        );
        for length in [Duration::ZERO, Duration::from_millis(5)] {
            rejects(
                b().time_window(length, 10).build(),
                C,
                "time_window",
                &["at least 1ms long"],
            );
        }
    }

    #[test]
    fn minimum_calls() {
        rejects(
            b().minimum_calls(0).build(),
            C,
            "minimum_calls",
            &["at least 1", "got 0"],
        );
        rejects(
            b().time_window(s(10), 10).minimum_calls(0).build(),
            C,
            "minimum_calls",
            &["at least 1"],
        );
        rejects(
            b().count_window(10).minimum_calls(11).build(),
            C,
            "minimum_calls",
            &["must not exceed the count window of 10 calls", "got 11"],
        );
    }

    #[test]
    fn failure_rate() {
        for rate in [-0.1, 1.01, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            rejects(
                b().failure_rate(rate).build(),
                C,
                "failure_rate",
                &["within 0.0..=1.0", &rate.to_string()],
            );
        }
        // No trip rule at all: the breaker could never open.
        rejects(
            b().without_failure_rate().build(),
            C,
            "failure_rate",
            &["no trip rule"],
        );
    }

    #[test]
    fn slow_calls() {
        rejects(
            b().slow_calls(Duration::ZERO, 0.5).build(),
            C,
            "slow_calls",
            &["threshold must be longer than zero"],
        );
        for rate in [-0.5, 2.0, f64::NAN] {
            rejects(
                b().slow_calls(s(1), rate).build(),
                C,
                "slow_calls",
                &["within 0.0..=1.0", &rate.to_string()],
            );
        }
    }

    #[test]
    fn consecutive_failures() {
        rejects(
            b().consecutive_failures(0).build(),
            C,
            "consecutive_failures",
            &["at least 1", "got 0"],
        );
    }

    #[test]
    fn open_duration() {
        rejects(
            b().open_duration(Duration::ZERO).build(),
            C,
            "open_duration",
            &["longer than zero"],
        );
    }

    #[test]
    fn max_open_duration() {
        rejects(
            b().open_duration(s(10)).max_open_duration(s(5)).build(),
            C,
            "max_open_duration",
            &["at least open_duration (10s)", "got 5s"],
        );
    }

    #[test]
    fn open_duration_multiplier() {
        for multiplier in [0.5, 0.0, -2.0, f64::NAN, f64::INFINITY] {
            rejects(
                b().open_duration_multiplier(multiplier).build(),
                C,
                "open_duration_multiplier",
                &["finite number >= 1.0", &multiplier.to_string()],
            );
        }
    }

    #[test]
    fn jitter() {
        for jitter in [-0.1, 1.5, f64::NAN] {
            rejects(
                b().jitter(jitter).build(),
                C,
                "jitter",
                &["within 0.0..=1.0", &jitter.to_string()],
            );
        }
    }

    #[test]
    fn reset_backoff_after() {
        rejects(
            b().reset_backoff_after(Duration::ZERO).build(),
            C,
            "reset_backoff_after",
            &["longer than zero"],
        );
    }

    #[test]
    fn half_open_probes() {
        for (probes, got) in [(0, "got 0"), (10_001, "got 10001")] {
            rejects(
                b().half_open_probes(probes).build(),
                C,
                "half_open_probes",
                &["between 1 and 10000", got],
            );
        }
    }

    #[test]
    fn max_half_open_duration() {
        rejects(
            b().max_half_open_duration(Duration::ZERO).build(),
            C,
            "max_half_open_duration",
            &["longer than zero"],
        );
    }
}

// ===== bulkhead =====

#[cfg(feature = "bulkhead")]
mod bulkhead {
    use super::rejects;
    use seawall::bulkhead::adaptive::{Aimd, LimitAlgorithm, Sample};
    use seawall::bulkhead::{Builder, BulkheadLayer};
    use std::time::Duration;

    const C: &str = "bulkhead";

    fn b() -> Builder {
        BulkheadLayer::builder()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn select(_: &()) -> &'static str {
        "a"
    }

    /// A hand-written algorithm with fixed limits.
    #[derive(Debug)]
    struct Fixed {
        initial: u32,
        min: u32,
        max: u32,
    }

    impl LimitAlgorithm for Fixed {
        fn initial_limit(&self) -> u32 {
            self.initial
        }
        fn min_limit(&self) -> u32 {
            self.min
        }
        fn max_limit(&self) -> u32 {
            self.max
        }
        fn update(&self, _: Sample) -> u32 {
            self.initial
        }
    }

    #[test]
    fn name() {
        rejects(b().name("").build(), C, "name", &["empty"]);
        rejects(
            b().partition("a", 1.0).name("").build_partitioned(select),
            C,
            "name",
            &["empty"],
        );
    }

    #[test]
    fn max_concurrent() {
        rejects(
            b().max_concurrent(0).build(),
            C,
            "max_concurrent",
            &["at least 1", "got 0"],
        );
        rejects(
            b().partition("a", 1.0)
                .max_concurrent(0)
                .build_partitioned(select),
            C,
            "max_concurrent",
            &["at least 1"],
        );
        // The adaptive algorithm owns the limit.
        rejects(
            b().adaptive(Aimd::builder().build().unwrap())
                .max_concurrent(10)
                .build(),
            C,
            "max_concurrent",
            &["adaptive algorithm sets the limit"],
        );
    }

    #[test]
    fn max_waiting() {
        rejects(
            b().max_wait(ms(10)).max_waiting(0).build(),
            C,
            "max_waiting",
            &["at least 1", "got 0"],
        );
        rejects(
            b().max_waiting(10).build(),
            C,
            "max_waiting",
            &["max_wait is zero"],
        );
        // Partitions never queue.
        rejects(
            b().partition("a", 1.0)
                .max_waiting(10)
                .build_partitioned(select),
            C,
            "max_waiting",
            &["shed at once"],
        );
    }

    #[test]
    fn max_wait() {
        rejects(
            b().partition("a", 1.0)
                .max_wait(ms(5))
                .build_partitioned(select),
            C,
            "max_wait",
            &["shed at once"],
        );
    }

    #[test]
    fn adaptive() {
        rejects(
            b().adaptive(Aimd::builder().build().unwrap())
                .partition("a", 1.0)
                .build_partitioned(select),
            C,
            "adaptive",
            &["not supported"],
        );
        // A hand-written algorithm whose limits make no sense.
        for (initial, min, max) in [(0, 0, 10), (5, 0, 10), (20, 1, 10), (1, 5, 10), (5, 10, 1)] {
            rejects(
                b().adaptive(Fixed { initial, min, max }).build(),
                C,
                "adaptive",
                &[
                    "min_limit <= initial_limit <= max_limit",
                    &format!("got min {min}, initial {initial}, max {max}"),
                ],
            );
        }
    }

    #[test]
    fn partition() {
        for share in [0.0, -0.5, 1.5, f64::NAN, f64::INFINITY] {
            rejects(
                b().partition("a", share).build_partitioned(select),
                C,
                "partition",
                &["within (0.0, 1.0]", &share.to_string()],
            );
        }
        rejects(
            b().partition("a", 0.6)
                .partition("b", 0.6)
                .build_partitioned(select),
            C,
            "partition",
            &["add up to", "more than 1.0"],
        );
        rejects(
            b().partition("a", 0.5)
                .partition("a", 0.5)
                .build_partitioned(select),
            C,
            "partition",
            &["used twice"],
        );
        rejects(
            b().partition("", 0.5).build_partitioned(select),
            C,
            "partition",
            &["must not be empty"],
        );
        rejects(
            b().max_concurrent(4)
                .partition("a", 0.9)
                .partition("b", 0.1)
                .build_partitioned(select),
            C,
            "partition",
            &["no permit"],
        );
        rejects(
            b().build_partitioned(select),
            C,
            "partition",
            &["no partition is declared"],
        );
        rejects(
            b().partition("a", 1.0).build(),
            C,
            "partition",
            &["build_partitioned"],
        );
    }

    #[test]
    fn valid_edges_are_accepted_not_clamped() {
        let algorithm = Fixed {
            initial: 3,
            min: 1,
            max: 3,
        };
        let layer = b().adaptive(algorithm).build().unwrap();
        assert_eq!(layer.handle().limit(), 3);
        assert!(b()
            .adaptive(Fixed {
                initial: u32::MAX,
                min: u32::MAX,
                max: u32::MAX,
            })
            .build()
            .is_ok());
        assert!(b().max_wait(ms(1)).max_waiting(1).build().is_ok());
    }
}

// ===== retry: backoff, budget, layer =====

#[cfg(feature = "retry")]
mod backoff {
    use super::rejects;
    use seawall::retry::backoff::ExponentialBackoff;
    use std::time::Duration;

    const C: &str = "backoff";

    #[test]
    fn base() {
        rejects(
            ExponentialBackoff::builder().base(Duration::ZERO).build(),
            C,
            "base",
            &["longer than zero"],
        );
    }

    #[test]
    fn max() {
        rejects(
            ExponentialBackoff::builder()
                .base(Duration::from_millis(10))
                .max(Duration::from_millis(5))
                .build(),
            C,
            "max",
            &["at least the base (10ms)", "got 5ms"],
        );
    }

    #[test]
    fn multiplier() {
        for multiplier in [0.99, 0.0, -1.0, f64::NAN, f64::INFINITY] {
            rejects(
                ExponentialBackoff::builder().multiplier(multiplier).build(),
                C,
                "multiplier",
                &["finite number >= 1.0", &multiplier.to_string()],
            );
        }
    }
}

#[cfg(feature = "retry")]
mod retry_budget {
    use super::rejects;
    use seawall::retry::budget::RetryBudget;
    use std::time::Duration;

    const C: &str = "retry_budget";

    #[test]
    fn ratio() {
        for ratio in [-0.1, 10.5, f64::NAN, f64::INFINITY] {
            rejects(
                RetryBudget::builder().ratio(ratio).build(),
                C,
                "ratio",
                &["within 0.0..=10.0", &ratio.to_string()],
            );
        }
        rejects(
            RetryBudget::builder().ratio(0.0001).build(),
            C,
            "ratio",
            &["multiple of 0.001", "0.0001"],
        );
    }

    #[test]
    fn min_per_sec() {
        for retries in [-1.0, f64::NAN, f64::INFINITY] {
            rejects(
                RetryBudget::builder().min_per_sec(retries).build(),
                C,
                "min_per_sec",
                &["finite number >= 0.0", &retries.to_string()],
            );
        }
        rejects(
            RetryBudget::builder().min_per_sec(1e300).build(),
            C,
            "min_per_sec",
            &["more than the budget can count"],
        );
    }

    #[test]
    fn buckets() {
        for (buckets, got) in [(0, "got 0"), (1_001, "got 1001")] {
            rejects(
                RetryBudget::builder().buckets(buckets).build(),
                C,
                "buckets",
                &["between 1 and 1000", got],
            );
        }
    }

    #[test]
    fn window() {
        for window in [Duration::ZERO, Duration::from_millis(5)] {
            rejects(
                RetryBudget::builder().window(window).buckets(10).build(),
                C,
                "window",
                &["at least 1ms long"],
            );
        }
    }
}

#[cfg(feature = "retry")]
mod retry {
    use super::rejects;
    use seawall::retry::RetryLayer;
    use std::time::Duration;

    const C: &str = "retry";

    #[test]
    fn name() {
        rejects(
            RetryLayer::builder().name("").build(),
            C,
            "name",
            &["empty"],
        );
    }

    #[test]
    fn max_attempts() {
        rejects(
            RetryLayer::builder().max_attempts(0).build(),
            C,
            "max_attempts",
            &["at least 1", "got 0"],
        );
    }

    #[test]
    fn max_pushback() {
        rejects(
            RetryLayer::builder().max_pushback(Duration::ZERO).build(),
            C,
            "max_pushback",
            &["longer than zero"],
        );
        // The smallest cap is a cap, not an error.
        assert!(RetryLayer::builder()
            .max_pushback(Duration::from_nanos(1))
            .build()
            .is_ok());
    }
}

// ===== hedge =====

#[cfg(feature = "hedge")]
mod hedge {
    use super::rejects;
    use seawall::hedge::{Builder, HedgeLayer};
    use std::time::Duration;

    const C: &str = "hedge";

    fn b() -> Builder {
        HedgeLayer::builder()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn name() {
        rejects(b().name("").build(), C, "name", &["empty"]);
    }

    #[test]
    fn max_hedges() {
        for (hedges, got) in [(0, "got 0"), (17, "got 17")] {
            rejects(
                b().max_hedges(hedges).build(),
                C,
                "max_hedges",
                &["between 1 and 16", got],
            );
        }
    }

    #[test]
    fn delay() {
        rejects(
            b().delay(ms(5)).percentile(0.9).build(),
            C,
            "delay",
            &["either a fixed delay or a percentile"],
        );
    }

    #[test]
    fn percentile() {
        for p in [0.0, 1.0, -0.5, 1.5, f64::NAN, f64::INFINITY] {
            rejects(
                b().percentile(p).build(),
                C,
                "percentile",
                &["both excluded", &p.to_string()],
            );
        }
    }

    #[test]
    fn window() {
        for window in [Duration::ZERO, ms(5), Duration::from_secs(86_401)] {
            rejects(
                b().window(window).build(),
                C,
                "window",
                &["between 6 ms", "one day"],
            );
        }
        rejects(
            b().delay(ms(5)).window(ms(600)).build(),
            C,
            "window",
            &["only to a percentile delay"],
        );
    }

    #[test]
    fn min_samples() {
        rejects(
            b().min_samples(0).build(),
            C,
            "min_samples",
            &["at least 1", "got 0"],
        );
        rejects(
            b().delay(ms(5)).min_samples(5).build(),
            C,
            "min_samples",
            &["only to a percentile delay"],
        );
    }
}

// ===== throttle =====

#[cfg(feature = "throttle")]
mod throttle {
    use super::rejects;
    use seawall::throttle::ThrottleLayer;
    use std::time::Duration;

    const C: &str = "throttle";

    #[test]
    fn name() {
        rejects(
            ThrottleLayer::builder().name("").build(),
            C,
            "name",
            &["empty"],
        );
    }

    #[test]
    fn k() {
        for k in [0.99, 0.0, -2.0, f64::NAN, f64::INFINITY] {
            rejects(
                ThrottleLayer::builder().k(k).build(),
                C,
                "k",
                &["finite number >= 1.0", &k.to_string()],
            );
        }
    }

    #[test]
    fn window() {
        rejects(
            ThrottleLayer::builder().window(Duration::ZERO).build(),
            C,
            "window",
            &["longer than zero"],
        );
        rejects(
            ThrottleLayer::builder()
                .window(Duration::from_millis(50))
                .buckets(100)
                .build(),
            C,
            "window",
            &["at least 1ms long"],
        );
    }

    #[test]
    fn buckets() {
        for (buckets, got) in [(0, "got 0"), (101, "got 101")] {
            rejects(
                ThrottleLayer::builder().buckets(buckets).build(),
                C,
                "buckets",
                &["between 1 and 100", got],
            );
        }
    }
}

// ===== chaos =====

#[cfg(feature = "chaos")]
mod chaos {
    use super::rejects;
    use seawall::chaos::{Builder, FaultLayer};
    use std::time::Duration;

    const C: &str = "chaos";

    /// A valid builder: a rate and a fault.
    fn ok() -> Builder {
        FaultLayer::builder().rate(0.5).hang()
    }

    #[test]
    fn name() {
        rejects(ok().name("").build(), C, "name", &["empty"]);
    }

    #[test]
    fn rate() {
        rejects(
            FaultLayer::builder().hang().build(),
            C,
            "rate",
            &["must be set"],
        );
        for rate in [-0.0001, 1.5, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            rejects(
                ok().rate(rate).build(),
                C,
                "rate",
                &["from 0.0 to 1.0", &rate.to_string()],
            );
        }
    }

    #[test]
    fn faults() {
        rejects(
            FaultLayer::builder().rate(0.5).build(),
            C,
            "faults",
            &["at least one fault"],
        );
    }

    #[test]
    fn weight() {
        rejects(ok().weight(0).build(), C, "weight", &["at least 1"]);
        rejects(
            FaultLayer::builder().rate(0.5).weight(2).hang().build(),
            C,
            "weight",
            &["no fault was added yet"],
        );
    }

    #[test]
    fn latency() {
        rejects(
            ok().latency(Duration::ZERO).build(),
            C,
            "latency",
            &["longer than zero"],
        );
    }
}

#[cfg(all(feature = "chaos", feature = "http"))]
mod chaos_http {
    use super::rejects;
    use seawall::chaos::http::{Builder, HttpFaultLayer};
    use std::time::Duration;

    const C: &str = "chaos";

    fn ok() -> Builder {
        HttpFaultLayer::builder().rate(0.5).abort()
    }

    #[test]
    fn name() {
        rejects(ok().name("").build(), C, "name", &["empty"]);
    }

    #[test]
    fn rate() {
        rejects(
            HttpFaultLayer::builder().abort().build(),
            C,
            "rate",
            &["must be set"],
        );
        for rate in [-0.5, 1.01, f64::NAN] {
            rejects(
                ok().rate(rate).build(),
                C,
                "rate",
                &["from 0.0 to 1.0", &rate.to_string()],
            );
        }
    }

    #[test]
    fn faults() {
        rejects(
            HttpFaultLayer::builder().rate(0.5).build(),
            C,
            "faults",
            &["at least one fault"],
        );
    }

    #[test]
    fn status() {
        for status in [0, 42, 100, 101, 199, 1_000, u16::MAX] {
            rejects(
                ok().status(status).build(),
                C,
                "status",
                &["final status code", &format!("got {status}")],
            );
        }
    }

    #[test]
    fn retry_after() {
        let wait = Duration::from_secs(1);
        rejects(
            ok().retry_after(wait).build(),
            C,
            "retry_after",
            &["status fault added just before"],
        );
        rejects(
            HttpFaultLayer::builder()
                .rate(0.5)
                .retry_after(wait)
                .status(503)
                .build(),
            C,
            "retry_after",
            &["status fault added just before"],
        );
    }

    #[test]
    fn weight() {
        rejects(ok().weight(0).build(), C, "weight", &["at least 1"]);
        rejects(
            HttpFaultLayer::builder()
                .rate(0.5)
                .weight(3)
                .abort()
                .build(),
            C,
            "weight",
            &["no fault was added yet"],
        );
    }

    #[test]
    fn latency() {
        rejects(
            ok().latency(Duration::ZERO).build(),
            C,
            "latency",
            &["longer than zero"],
        );
    }
}

// ===== timeouts =====

#[cfg(feature = "timeout")]
mod timeout {
    use super::rejects;
    use seawall::timeout::{DeadlineLayer, TimeoutLayer};
    use std::time::Duration;

    #[test]
    fn timeout_layer_timeout() {
        rejects(
            TimeoutLayer::new(Duration::ZERO),
            "timeout",
            "timeout",
            &["more than zero"],
        );
    }

    #[test]
    fn deadline_layer_timeout() {
        rejects(
            DeadlineLayer::new(Duration::ZERO),
            "deadline",
            "timeout",
            &["more than zero"],
        );
    }
}

// ===== http =====

#[cfg(feature = "http")]
mod shed_load {
    use super::rejects;
    use seawall::bulkhead::BulkheadLayer;
    use seawall::http::ShedLoadLayer;
    use std::time::Duration;

    #[test]
    fn max_wait() {
        let waiting = BulkheadLayer::builder()
            .max_wait(Duration::from_millis(10))
            .build()
            .unwrap();
        rejects(
            ShedLoadLayer::new(waiting),
            "shed_load",
            "max_wait",
            &["must not wait", "10ms"],
        );
    }

    #[test]
    fn retry_after() {
        let layer = || ShedLoadLayer::new(BulkheadLayer::builder().build().unwrap()).unwrap();
        for wait in [
            Duration::ZERO,
            Duration::from_micros(500),
            Duration::from_millis(i32::MAX as u64 + 1),
            Duration::from_secs(3_000_000),
        ] {
            rejects(
                layer().retry_after(wait),
                "shed_load",
                "retry_after",
                &["from 1ms to 2147483647ms", &format!("got {wait:?}")],
            );
        }
    }
}

#[cfg(all(feature = "http", feature = "timeout"))]
mod server_deadline {
    use super::rejects;
    use http::HeaderName;
    use seawall::http::ServerDeadlineLayer;
    use std::time::Duration;

    const C: &str = "server_deadline";

    #[test]
    fn max() {
        rejects(
            ServerDeadlineLayer::builder().max(Duration::ZERO).build(),
            C,
            "max",
            &["more than zero"],
        );
    }

    #[test]
    fn default_timeout() {
        rejects(
            ServerDeadlineLayer::builder()
                .default_timeout(Duration::ZERO)
                .build(),
            C,
            "default_timeout",
            &["more than zero"],
        );
        // More than the cap: an error, not cut to it.
        rejects(
            ServerDeadlineLayer::builder()
                .max(Duration::from_secs(5))
                .default_timeout(Duration::from_secs(6))
                .build(),
            C,
            "default_timeout",
            &["more than max"],
        );
    }

    #[test]
    fn header() {
        for name in [
            "content-length",
            "content-type",
            "transfer-encoding",
            "host",
            "connection",
            "te",
            "grpc-timeout",
            "grpc-status",
        ] {
            rejects(
                ServerDeadlineLayer::builder()
                    .header(HeaderName::from_static(name))
                    .build(),
                C,
                "header",
                &["cannot carry a deadline", name],
            );
        }
        assert!(ServerDeadlineLayer::builder()
            .header(HeaderName::from_static("x-deadline-ms"))
            .max(Duration::from_nanos(1))
            .default_timeout(Duration::from_nanos(1))
            .build()
            .is_ok());
    }
}

#[cfg(all(feature = "http", feature = "timeout"))]
mod propagate_deadline {
    use super::rejects;
    use http::HeaderName;
    use seawall::http::PropagateDeadlineLayer;

    #[test]
    fn header() {
        for name in [
            "content-length",
            "content-type",
            "content-encoding",
            "transfer-encoding",
            "host",
            "upgrade",
            "grpc-timeout",
            "grpc-message",
        ] {
            rejects(
                PropagateDeadlineLayer::new().header(HeaderName::from_static(name)),
                "propagate_deadline",
                "header",
                &["cannot carry a deadline", name],
            );
        }
        assert!(PropagateDeadlineLayer::new()
            .header(HeaderName::from_static("x-deadline-ms"))
            .is_ok());
    }
}

// ===== policy and registry =====

#[cfg(feature = "policy")]
mod policy {
    use super::rejects;
    use seawall::policy::Policy;
    use std::time::Duration;

    #[test]
    fn name() {
        rejects(Policy::builder("").build(), "policy", "name", &["empty"]);
    }

    #[test]
    fn deadline() {
        rejects(
            Policy::builder("p").deadline(Duration::ZERO).build(),
            "deadline",
            "timeout",
            &["more than zero"],
        );
    }

    #[test]
    fn attempt_timeout() {
        rejects(
            Policy::builder("p").attempt_timeout(Duration::ZERO).build(),
            "timeout",
            "timeout",
            &["more than zero"],
        );
    }

    /// Each stage's own fields are the stage builder's (tested above); the policy hands
    /// their errors on unchanged.
    #[test]
    fn stage_errors_come_through_naming_the_stage() {
        rejects(
            Policy::builder("p")
                .retry(|retry| retry.max_pushback(Duration::ZERO))
                .build(),
            "retry",
            "max_pushback",
            &["longer than zero"],
        );
        rejects(
            Policy::builder("p")
                .hedge(|hedge| hedge.max_hedges(0))
                .build(),
            "hedge",
            "max_hedges",
            &["between 1 and 16"],
        );
        rejects(
            Policy::builder("p")
                .circuit_breaker(|breaker| breaker.jitter(2.0))
                .build(),
            "circuit_breaker",
            "jitter",
            &["within 0.0..=1.0"],
        );
        rejects(
            Policy::builder("p")
                .bulkhead(|bulkhead| bulkhead.max_waiting(3))
                .build(),
            "bulkhead",
            "max_waiting",
            &["max_wait is zero"],
        );
    }
}

#[cfg(feature = "policy")]
mod registry {
    use super::rejects;
    use seawall::policy::{Policy, Registry, RegistryBuilder};
    use std::time::Duration;

    fn b() -> RegistryBuilder {
        Registry::builder(|d, _| Ok::<_, seawall::BoxError>(Policy::builder(d)))
    }

    #[test]
    fn max_entries() {
        rejects(
            b().max_entries(0).build(),
            "registry",
            "max_entries",
            &["at least 1", "got 0"],
        );
    }

    #[test]
    fn idle_timeout() {
        rejects(
            b().idle_timeout(Duration::ZERO).build(),
            "registry",
            "idle_timeout",
            &["longer than zero"],
        );
    }
}

// ===== the policy config loader: the cases tests/policy_config.rs lacks =====

#[cfg(feature = "serde")]
mod policy_config {
    use seawall::policy::PolicyConfig;

    /// `value` (a line of TOML) is refused, in a policy and in the defaults, at
    /// `relative` under each, with the `ConfigError` of `component` as its cause.
    #[track_caller]
    fn refused_at(value: &str, relative: &str, component: &str) {
        for (text, prefix) in [
            (
                format!("[policies.payments]\n{value}\n"),
                "policies.payments",
            ),
            (format!("[defaults]\n{value}\n"), "defaults"),
        ] {
            let err = PolicyConfig::from_toml_str(&text).expect_err(value);
            assert_eq!(err.path(), format!("{prefix}.{relative}"), "{value}: {err}");
            let cause = err
                .config_error()
                .unwrap_or_else(|| panic!("{value}: no builder error: {err}"));
            assert_eq!(cause.component(), component, "{value}: {err}");
            assert_eq!(err.reason(), cause.reason(), "{value}");
        }
    }

    #[test]
    fn retry_max_pushback() {
        refused_at(
            "retry = { max_pushback = \"0s\" }",
            "retry.max_pushback",
            "retry",
        );
        let err =
            PolicyConfig::from_yaml_str("policies:\n  a:\n    retry: { max_pushback: 0ms }\n")
                .unwrap_err();
        assert_eq!(err.path(), "policies.a.retry.max_pushback");
    }

    #[test]
    fn budget_values_past_what_the_first_cases_cover() {
        refused_at(
            "budget = { window = \"0s\" }",
            "budget.window",
            "retry_budget",
        );
        refused_at(
            "budget = { ratio = 0.0001 }",
            "budget.ratio",
            "retry_budget",
        );
        refused_at("budget = { ratio = nan }", "budget.ratio", "retry_budget");
        refused_at(
            "budget = { min_per_sec = 1e300 }",
            "budget.min_per_sec",
            "retry_budget",
        );
        refused_at(
            "budget = { min_per_sec = inf }",
            "budget.min_per_sec",
            "retry_budget",
        );
        refused_at(
            "budget = { buckets = 1001 }",
            "budget.buckets",
            "retry_budget",
        );
    }

    #[test]
    fn hedge_values_past_what_the_first_cases_cover() {
        refused_at("hedge = { max_hedges = 0 }", "hedge.max_hedges", "hedge");
        refused_at("hedge = { percentile = 0.0 }", "hedge.percentile", "hedge");
        refused_at("hedge = { percentile = nan }", "hedge.percentile", "hedge");
        refused_at("hedge = { window = \"25h\" }", "hedge.window", "hedge");
    }

    #[test]
    fn breaker_values_past_what_the_first_cases_cover() {
        refused_at(
            "circuit_breaker = { window = { count = 1000001 }, minimum_calls = 1 }",
            "circuit_breaker.window.count",
            "circuit_breaker",
        );
        refused_at(
            "circuit_breaker = { window = { time = \"10s\", buckets = 0 } }",
            "circuit_breaker.window",
            "circuit_breaker",
        );
        refused_at(
            "circuit_breaker = { window = { time = \"0s\" } }",
            "circuit_breaker.window",
            "circuit_breaker",
        );
        refused_at(
            "circuit_breaker = { half_open_probes = 10001 }",
            "circuit_breaker.half_open_probes",
            "circuit_breaker",
        );
        refused_at(
            "circuit_breaker = { open_duration_multiplier = inf }",
            "circuit_breaker.open_duration_multiplier",
            "circuit_breaker",
        );
        refused_at(
            "circuit_breaker = { jitter = -0.1 }",
            "circuit_breaker.jitter",
            "circuit_breaker",
        );
        refused_at(
            "circuit_breaker = { slow_call_rate = nan, slow_call_duration = \"1s\" }",
            "circuit_breaker.slow_call_rate",
            "circuit_breaker",
        );
        refused_at(
            "circuit_breaker = { failure_rate = \"off\", consecutive_failures = \"off\" }",
            "circuit_breaker.failure_rate",
            "circuit_breaker",
        );
    }
}
