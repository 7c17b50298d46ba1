//! Every invalid value is a `ConfigError` naming its field.

use std::time::Duration;

use seawall::circuit_breaker::{Builder, CircuitBreakerLayer};

fn field_of(builder: Builder) -> &'static str {
    let err = builder.build().expect_err("must be rejected");
    assert_eq!(err.component(), "circuit_breaker");
    assert!(!err.reason().is_empty());
    assert!(err.to_string().contains(err.field()), "{err}");
    err.field()
}

fn b() -> Builder {
    CircuitBreakerLayer::builder()
}

#[test]
fn defaults_build() {
    assert!(b().build().is_ok());
}

#[test]
fn every_bad_value_names_its_field() {
    let s = Duration::from_secs;
    let cases: Vec<(Builder, &str)> = vec![
        (b().count_window(0), "count_window"),
        (b().count_window(1_000_001), "count_window"),
        (b().count_window(10).minimum_calls(11), "minimum_calls"),
        (b().minimum_calls(0), "minimum_calls"),
        (b().time_window(Duration::ZERO, 10), "time_window"),
        (b().time_window(s(10), 0), "time_window"),
        (b().time_window(s(10), 1_001), "time_window"),
        (b().time_window(Duration::from_millis(5), 10), "time_window"),
        (b().time_window(s(10), 10).minimum_calls(0), "minimum_calls"),
        (b().failure_rate(1.01), "failure_rate"),
        (b().failure_rate(-0.1), "failure_rate"),
        (b().failure_rate(f64::NAN), "failure_rate"),
        (b().without_failure_rate(), "failure_rate"),
        (b().slow_calls(Duration::ZERO, 0.5), "slow_calls"),
        (b().slow_calls(s(1), 2.0), "slow_calls"),
        (b().slow_calls(s(1), f64::NAN), "slow_calls"),
        (b().consecutive_failures(0), "consecutive_failures"),
        (b().open_duration(Duration::ZERO), "open_duration"),
        (
            b().open_duration(s(10)).max_open_duration(s(5)),
            "max_open_duration",
        ),
        (
            b().open_duration_multiplier(0.5),
            "open_duration_multiplier",
        ),
        (
            b().open_duration_multiplier(f64::INFINITY),
            "open_duration_multiplier",
        ),
        (
            b().open_duration_multiplier(f64::NAN),
            "open_duration_multiplier",
        ),
        (b().jitter(-0.1), "jitter"),
        (b().jitter(1.5), "jitter"),
        (
            b().reset_backoff_after(Duration::ZERO),
            "reset_backoff_after",
        ),
        (b().half_open_probes(0), "half_open_probes"),
        (b().half_open_probes(10_001), "half_open_probes"),
        (
            b().max_half_open_duration(Duration::ZERO),
            "max_half_open_duration",
        ),
        (b().name(""), "name"),
    ];
    for (builder, field) in cases {
        let debug = format!("{builder:?}");
        assert_eq!(field_of(builder), field, "{debug}");
    }
}

#[test]
fn boundary_values_are_accepted_not_clamped() {
    let s = Duration::from_secs;
    for builder in [
        b().count_window(1).minimum_calls(1),
        b().count_window(1_000_000),
        b().failure_rate(0.0),
        b().failure_rate(1.0),
        b().without_failure_rate().consecutive_failures(1),
        b().without_failure_rate()
            .slow_calls(Duration::from_nanos(1), 1.0),
        b().open_duration(s(7)).max_open_duration(s(7)),
        b().open_duration_multiplier(1.0),
        b().jitter(0.0),
        b().jitter(1.0),
        b().half_open_probes(10_000),
        b().time_window(Duration::from_millis(10), 10),
        b().time_window(s(10), 1_000).minimum_calls(1_000_000),
    ] {
        let debug = format!("{builder:?}");
        assert!(builder.build().is_ok(), "{debug}");
    }
}

#[tokio::test(start_paused = true)]
async fn extreme_accepted_values_run_without_panicking() {
    use crate::support::{call, is_open, Do, Downstream};
    use seawall::circuit_breaker::State;
    use tower::Layer;

    let max = Duration::MAX;
    let builders = [
        b().open_duration(max).max_open_duration(max).jitter(0.0),
        b().open_duration(Duration::from_nanos(1))
            .max_open_duration(max)
            .open_duration_multiplier(1e300)
            .jitter(1.0),
        b().open_duration(Duration::from_nanos(1))
            .max_open_duration(max)
            .open_duration_multiplier(f64::MAX),
        b().max_half_open_duration(max).reset_backoff_after(max),
        b().slow_calls(max, 0.5),
        b().time_window(max, 1_000),
    ];
    for builder in builders {
        let debug = format!("{builder:?}");
        let layer = builder
            .count_window(2)
            .minimum_calls(1)
            .failure_rate(0.5)
            .build()
            .unwrap_or_else(|e| panic!("{debug}: {e}"));
        let handle = layer.handle();
        let svc = layer.layer(Downstream::default());
        for _ in 0..3 {
            // Trip, wait a little, probe (if the open duration allows it), trip again.
            let _ = call(&svc, Do::Fail).await;
            tokio::time::advance(Duration::from_secs(1)).await;
            let result = call(&svc, Do::Fail).await;
            assert!(result.is_err(), "{debug}");
        }
        assert_ne!(handle.state(), State::Closed, "{debug}");
        let _ = handle.snapshot();
        let _ = is_open(&call(&svc, Do::Succeed).await);
    }
}
