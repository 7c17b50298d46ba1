//! `PolicyConfig`: the schema in TOML and YAML, the merge rule, every error with its
//! path, and the settings reaching the built policy.
#![cfg(feature = "serde")]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use seawall::circuit_breaker::{Readiness, State};
use seawall::classify::{classify_fn, Classification};
use seawall::error::CircuitOpen;
use seawall::policy::config::{
    BackoffSettings, BreakerWindow, BudgetSettings, BulkheadSettings, CircuitBreakerSettings,
    HedgeSettings, RetrySettings, StageSettings, Switch,
};
use seawall::policy::{ConfigFileError, PolicyConfig};
use seawall::retry::backoff::Jitter;
use seawall::BoxError;
use tower::{Layer, ServiceExt};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Every key of the schema, in TOML.
const FULL_TOML: &str = r#"
[defaults]
deadline = "2s"
attempt_timeout = "500ms"

[defaults.retry]
enabled = true
max_attempts = 3
max_pushback = "10s"
backoff = { base = "20ms", max = "1s", multiplier = 3.0, jitter = "decorrelated" }

[defaults.budget]
ratio = 0.1
min_per_sec = 5.0
window = "20s"
buckets = 20

[defaults.hedge]
enabled = false
percentile = 0.9
window = "1m"
min_samples = 50
max_hedges = 2

[defaults.circuit_breaker]
enabled = true
window = { time = "1m", buckets = 12 }
failure_rate = 0.4
minimum_calls = 10
slow_call_rate = 0.8
slow_call_duration = "1.5s"
consecutive_failures = 7
open_duration = "10s"
max_open_duration = "2m"
open_duration_multiplier = 1.5
jitter = 0.2
reset_backoff_after = "5m"
half_open_probes = 3
max_half_open_duration = "20s"
readiness = "backpressure"

[defaults.bulkhead]
enabled = true
max_concurrent = 40
max_wait = "25ms"
max_waiting = 100

[policies.payments]
deadline = "off"
attempt_timeout = "250ms"
retry = { max_attempts = 2, backoff = { jitter = "none" } }
circuit_breaker = { window = { count = 50 }, failure_rate = "off", readiness = "fail-fast" }
bulkhead = { max_concurrent = 5 }

[policies.search]
hedge = { enabled = true, delay = "30ms" }
retry = { enabled = false }
circuit_breaker = { enabled = false }
bulkhead = { enabled = false }
"#;

/// The same, in YAML.
const FULL_YAML: &str = r#"
defaults:
  deadline: 2s
  attempt_timeout: 500ms
  retry:
    enabled: true
    max_attempts: 3
    max_pushback: 10s
    backoff: { base: 20ms, max: 1s, multiplier: 3.0, jitter: decorrelated }
  budget:
    ratio: 0.1
    min_per_sec: 5.0
    window: 20s
    buckets: 20
  hedge:
    enabled: false
    percentile: 0.9
    window: 1m
    min_samples: 50
    max_hedges: 2
  circuit_breaker:
    enabled: true
    window: { time: 1m, buckets: 12 }
    failure_rate: 0.4
    minimum_calls: 10
    slow_call_rate: 0.8
    slow_call_duration: 1.5s
    consecutive_failures: 7
    open_duration: 10s
    max_open_duration: 2m
    open_duration_multiplier: 1.5
    jitter: 0.2
    reset_backoff_after: 5m
    half_open_probes: 3
    max_half_open_duration: 20s
    readiness: backpressure
  bulkhead:
    enabled: true
    max_concurrent: 40
    max_wait: 25ms
    max_waiting: 100
policies:
  payments:
    deadline: "off"
    attempt_timeout: 250ms
    retry: { max_attempts: 2, backoff: { jitter: none } }
    circuit_breaker: { window: { count: 50 }, failure_rate: off, readiness: fail-fast }
    bulkhead: { max_concurrent: 5 }
  search:
    hedge: { enabled: true, delay: 30ms }
    retry: { enabled: false }
    circuit_breaker: { enabled: false }
    bulkhead: { enabled: false }
"#;

fn toml(text: &str) -> PolicyConfig {
    PolicyConfig::from_toml_str(text).unwrap_or_else(|err| panic!("{err}"))
}

fn toml_err(text: &str) -> ConfigFileError {
    match PolicyConfig::from_toml_str(text) {
        Ok(config) => panic!("loaded: {config:?}"),
        Err(err) => err,
    }
}

fn yaml_err(text: &str) -> ConfigFileError {
    match PolicyConfig::from_yaml_str(text) {
        Ok(config) => panic!("loaded: {config:?}"),
        Err(err) => err,
    }
}

// ===== the schema =====

#[test]
fn toml_and_yaml_load_to_the_same_settings() {
    let from_toml = toml(FULL_TOML);
    let from_yaml = PolicyConfig::from_yaml_str(FULL_YAML).unwrap();
    assert_eq!(from_toml, from_yaml);
    for name in ["payments", "search", "unknown"] {
        assert_eq!(from_toml.settings(name), from_yaml.settings(name), "{name}");
    }
    assert_eq!(
        from_toml.names().collect::<Vec<_>>(),
        ["payments", "search"]
    );
}

#[test]
fn every_key_is_read() {
    let config = toml(FULL_TOML);
    let defaults = config.defaults();
    assert_eq!(defaults.deadline, Some(Switch::On(secs(2))));
    assert_eq!(defaults.attempt_timeout, Some(Switch::On(ms(500))));

    let retry = defaults.retry.clone().unwrap();
    assert_eq!(retry.enabled, Some(true));
    assert_eq!(retry.max_attempts, Some(3));
    assert_eq!(retry.max_pushback, Some(secs(10)));
    let backoff = retry.backoff.unwrap();
    assert_eq!(backoff.base, Some(ms(20)));
    assert_eq!(backoff.max, Some(secs(1)));
    assert_eq!(backoff.multiplier, Some(3.0));
    assert_eq!(backoff.jitter, Some(Jitter::Decorrelated));

    let budget = defaults.budget.unwrap();
    assert_eq!(budget.ratio, Some(0.1));
    assert_eq!(budget.min_per_sec, Some(5.0));
    assert_eq!(budget.window, Some(secs(20)));
    assert_eq!(budget.buckets, Some(20));

    let hedge = defaults.hedge.unwrap();
    assert_eq!(hedge.enabled, Some(false));
    assert_eq!(hedge.delay, None);
    assert_eq!(hedge.percentile, Some(0.9));
    assert_eq!(hedge.window, Some(secs(60)));
    assert_eq!(hedge.min_samples, Some(50));
    assert_eq!(hedge.max_hedges, Some(2));

    let breaker = defaults.circuit_breaker.unwrap();
    assert_eq!(breaker.enabled, Some(true));
    assert_eq!(
        breaker.window,
        Some(BreakerWindow::Time {
            length: secs(60),
            buckets: 12
        })
    );
    assert_eq!(breaker.failure_rate, Some(Switch::On(0.4)));
    assert_eq!(breaker.minimum_calls, Some(10));
    assert_eq!(breaker.slow_call_rate, Some(Switch::On(0.8)));
    assert_eq!(breaker.slow_call_duration, Some(ms(1500)));
    assert_eq!(breaker.consecutive_failures, Some(Switch::On(7)));
    assert_eq!(breaker.open_duration, Some(secs(10)));
    assert_eq!(breaker.max_open_duration, Some(secs(120)));
    assert_eq!(breaker.open_duration_multiplier, Some(1.5));
    assert_eq!(breaker.jitter, Some(0.2));
    assert_eq!(breaker.reset_backoff_after, Some(secs(300)));
    assert_eq!(breaker.half_open_probes, Some(3));
    assert_eq!(breaker.max_half_open_duration, Some(secs(20)));
    assert_eq!(breaker.readiness, Some(Readiness::Backpressure));

    let bulkhead = defaults.bulkhead.unwrap();
    assert_eq!(bulkhead.enabled, Some(true));
    assert_eq!(bulkhead.max_concurrent, Some(40));
    assert_eq!(bulkhead.max_wait, Some(ms(25)));
    assert_eq!(bulkhead.max_waiting, Some(100));
}

#[test]
fn an_empty_file_is_the_policy_defaults() {
    for config in [toml(""), PolicyConfig::from_yaml_str("{}").unwrap()] {
        assert_eq!(config, PolicyConfig::default());
        assert_eq!(config.settings("any"), StageSettings::default());
        let handle = config.policy("any").unwrap().handle();
        assert_eq!(handle.name(), "any");
        assert_eq!(handle.deadline(), Some(secs(15)));
        assert_eq!(handle.attempt_timeout(), Some(secs(5)));
        assert!(handle.retries());
        assert!(handle.hedge().is_none());
        assert!(handle.circuit_breaker().is_some());
        assert_eq!(handle.bulkhead().unwrap().limit(), 25);
    }
}

// ===== the settings reach the policy =====

#[test]
fn observable_settings_reach_the_built_policy() {
    let config = toml(FULL_TOML);

    let payments = config.policy("payments").unwrap().handle();
    assert_eq!(payments.name(), "payments");
    assert_eq!(payments.deadline(), None, "deadline = \"off\"");
    assert_eq!(payments.attempt_timeout(), Some(ms(250)));
    assert!(payments.retries());
    assert!(
        payments.hedge().is_none(),
        "the defaults' hedge is disabled"
    );
    assert_eq!(payments.circuit_breaker().unwrap().state(), State::Closed);
    assert_eq!(payments.bulkhead().unwrap().limit(), 5);
    // min_per_sec 5 over a 20 s window: 100 retries in reserve.
    let budget = payments.budget().unwrap().snapshot();
    assert_eq!(budget.balance, 100.0);

    let search = config.policy("search").unwrap().handle();
    assert_eq!(search.deadline(), Some(secs(2)), "from the defaults");
    assert_eq!(search.attempt_timeout(), Some(ms(500)));
    assert!(!search.retries());
    assert_eq!(search.hedge().unwrap().delay(), Some(ms(30)));
    assert!(search.circuit_breaker().is_none());
    assert!(search.bulkhead().is_none());

    // A name the file does not have: the defaults alone.
    assert!(!config.contains("ledger"));
    let ledger = config.policy("ledger").unwrap().handle();
    assert_eq!(ledger.name(), "ledger");
    assert_eq!(ledger.deadline(), Some(secs(2)));
    assert_eq!(ledger.bulkhead().unwrap().limit(), 40);
    assert!(ledger.hedge().is_none());
}

#[test]
fn the_merged_settings_are_what_the_builder_gets() {
    let config = toml(FULL_TOML);
    let payments = config.settings("payments");
    assert_eq!(payments.deadline, Some(Switch::Off));
    let retry = payments.retry.unwrap();
    assert_eq!(retry.max_attempts, Some(2));
    assert_eq!(retry.max_pushback, Some(secs(10)), "from the defaults");
    let backoff = retry.backoff.unwrap();
    assert_eq!(backoff.jitter, Some(Jitter::None));
    assert_eq!(backoff.base, Some(ms(20)), "from the defaults");
    let breaker = payments.circuit_breaker.unwrap();
    assert_eq!(breaker.window, Some(BreakerWindow::Count(50)));
    assert_eq!(breaker.failure_rate, Some(Switch::Off));
    assert_eq!(breaker.readiness, Some(Readiness::FailFast));
    assert_eq!(breaker.consecutive_failures, Some(Switch::On(7)));
    assert_eq!(breaker.slow_call_duration, Some(ms(1500)));
    let bulkhead = payments.bulkhead.unwrap();
    assert_eq!(
        (bulkhead.max_concurrent, bulkhead.max_wait),
        (Some(5), Some(ms(25)))
    );
}

#[tokio::test(start_paused = true)]
async fn retry_and_breaker_settings_drive_the_calls() {
    let config = toml(
        r#"
        [policies.payments]
        retry = { max_attempts = 4, backoff = { base = "10ms", jitter = "none" } }
        budget = { min_per_sec = 100.0 }
        circuit_breaker = { consecutive_failures = 6, open_duration = "7s", jitter = 0.0 }
        "#,
    );
    let policy = config.policy("payments").unwrap();
    let handle = policy.handle();
    let calls = Arc::new(AtomicU32::new(0));
    let svc = policy.layer(tower::service_fn({
        let calls = calls.clone();
        move |_: u32| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<u32, BoxError>("503".into()) }
        }
    }));

    assert!(svc.clone().oneshot(1).await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 4, "max_attempts = 4");
    let breaker = handle.circuit_breaker().unwrap();
    assert_eq!(breaker.snapshot().consecutive_failures, 4);

    // Two more failures trip it (consecutive_failures = 6), then it fails fast.
    assert!(svc.clone().oneshot(2).await.is_err());
    assert_eq!(breaker.state(), State::Open);
    let snapshot = breaker.snapshot();
    // It tripped on the second attempt of the call; the retry waited 20 ms (the second
    // backoff: base 10 ms doubled, no jitter) before its third attempt was refused.
    assert_eq!(
        snapshot.next_probe_in,
        Some(secs(7) - ms(20)),
        "open_duration, no jitter"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 6);
    let err = svc.clone().oneshot(3).await.unwrap_err();
    assert!(err.is::<CircuitOpen>());
}

#[tokio::test(start_paused = true)]
async fn readiness_reaches_the_breaker() {
    let config = toml(
        r#"
        [policies.balanced]
        circuit_breaker = { readiness = "backpressure" }
        [policies.direct]
        circuit_breaker = { readiness = "fail-fast" }
        "#,
    );
    for (name, ready_while_open) in [("balanced", false), ("direct", true)] {
        let policy = config.policy(name).unwrap();
        policy.handle().circuit_breaker().unwrap().force_open();
        let mut svc = policy.layer(tower::service_fn(
            |n: u32| async move { Ok::<_, BoxError>(n) },
        ));
        let ready = tokio::time::timeout(secs(1), svc.ready()).await.is_ok();
        assert_eq!(ready, ready_while_open, "{name}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_count_window_holds_its_size() {
    let config = toml(
        r#"
        [defaults.circuit_breaker]
        window = { count = 5 }
        minimum_calls = 5
        "#,
    );
    let policy = config.policy("x").unwrap();
    let svc = policy.layer(tower::service_fn(
        |n: u32| async move { Ok::<_, BoxError>(n) },
    ));
    for n in 0..12 {
        svc.clone().oneshot(n).await.unwrap();
    }
    let snapshot = policy.handle().circuit_breaker().unwrap().snapshot();
    assert_eq!(snapshot.calls, 5);
}

#[test]
fn the_builder_takes_a_classifier_after_loading() {
    let config =
        toml("[policies.users]\nretry = { max_attempts = 2 }\nbulkhead = { max_concurrent = 3 }\n");
    let policy = config
        .builder("users")
        .unwrap()
        .classifier(classify_fn(|result: &Result<u32, BoxError>| match result {
            Ok(_) => Classification::success(),
            Err(_) => Classification::failure(),
        }))
        .build()
        .unwrap();
    assert_eq!(policy.name(), "users");
    assert_eq!(policy.handle().bulkhead().unwrap().limit(), 3);

    let named = config
        .builder_named("users", "users/10.0.0.1")
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(named.name(), "users/10.0.0.1");
    assert_eq!(named.handle().bulkhead().unwrap().limit(), 3);
}

// ===== merge =====

#[test]
fn a_policy_overrides_the_defaults_key_by_key_at_every_depth() {
    let config = toml(
        r#"
        [defaults]
        deadline = "3s"
        retry = { max_attempts = 5, max_pushback = "1s", backoff = { base = "5ms", max = "50ms" } }
        budget = { ratio = 0.3, window = "5s" }
        bulkhead = { max_concurrent = 7, max_wait = "1ms" }

        [policies.a]
        retry = { backoff = { max = "80ms" } }
        budget = { min_per_sec = 2.0 }
        bulkhead = { max_wait = "2ms" }
        "#,
    );
    let a = config.settings("a");
    assert_eq!(a.deadline, Some(Switch::On(secs(3))));
    let retry = a.retry.unwrap();
    assert_eq!(
        (retry.max_attempts, retry.max_pushback),
        (Some(5), Some(secs(1)))
    );
    let backoff = retry.backoff.unwrap();
    assert_eq!((backoff.base, backoff.max), (Some(ms(5)), Some(ms(80))));
    let budget = a.budget.unwrap();
    assert_eq!(
        (budget.ratio, budget.min_per_sec, budget.window),
        (Some(0.3), Some(2.0), Some(secs(5)))
    );
    let bulkhead = a.bulkhead.unwrap();
    assert_eq!(
        (bulkhead.max_concurrent, bulkhead.max_wait),
        (Some(7), Some(ms(2)))
    );
    // The defaults themselves are untouched.
    assert_eq!(
        config
            .defaults()
            .retry
            .as_ref()
            .unwrap()
            .backoff
            .unwrap()
            .max,
        Some(ms(50))
    );
}

#[test]
fn a_breaker_window_is_replaced_as_a_whole() {
    let config = toml(
        r#"
        [defaults]
        circuit_breaker = { window = { time = "10s", buckets = 5 } }
        [policies.a]
        circuit_breaker = { window = { count = 30 }, minimum_calls = 10 }
        [policies.b]
        circuit_breaker = { window = { time = "20s" } }
        "#,
    );
    let window = |name| config.settings(name).circuit_breaker.unwrap().window;
    assert_eq!(window("a"), Some(BreakerWindow::Count(30)));
    assert_eq!(
        window("b"),
        Some(BreakerWindow::Time {
            length: secs(20),
            buckets: 10
        }),
        "buckets default to 10, not the defaults' 5"
    );
}

#[test]
fn the_two_hedge_triggers_replace_each_other() {
    let config = toml(
        r#"
        [defaults]
        hedge = { percentile = 0.9, window = "10s", min_samples = 20, max_hedges = 2 }
        [policies.fixed]
        hedge = { delay = "40ms" }
        [policies.p99]
        hedge = { percentile = 0.99 }
        "#,
    );
    let fixed = config.settings("fixed").hedge.unwrap();
    assert_eq!(fixed.delay, Some(ms(40)));
    assert_eq!(
        (fixed.percentile, fixed.window, fixed.min_samples),
        (None, None, None)
    );
    assert_eq!(fixed.max_hedges, Some(2), "not part of the trigger");
    assert_eq!(
        config
            .policy("fixed")
            .unwrap()
            .handle()
            .hedge()
            .unwrap()
            .delay(),
        Some(ms(40))
    );

    let p99 = config.settings("p99").hedge.unwrap();
    assert_eq!(
        (p99.percentile, p99.window, p99.min_samples),
        (Some(0.99), Some(secs(10)), Some(20))
    );

    let fixed_defaults = toml(
        r#"
        [defaults]
        hedge = { delay = "40ms" }
        [policies.p]
        hedge = { percentile = 0.5 }
        "#,
    );
    let p = fixed_defaults.settings("p").hedge.unwrap();
    assert_eq!((p.delay, p.percentile), (None, Some(0.5)));
    assert!(fixed_defaults
        .policy("p")
        .unwrap()
        .handle()
        .hedge()
        .is_some());
}

#[test]
fn enabled_merges_and_a_written_table_switches_its_stage_on() {
    let config = toml(
        r#"
        [defaults]
        hedge = { enabled = false, delay = "10ms" }
        bulkhead = { enabled = false }

        [policies.on]
        hedge = { enabled = true }
        bulkhead = { enabled = true, max_concurrent = 3 }

        [policies.still_off]
        hedge = { max_hedges = 2 }
        bulkhead = { max_concurrent = 3 }
        "#,
    );
    let on = config.policy("on").unwrap().handle();
    assert_eq!(on.hedge().unwrap().delay(), Some(ms(10)));
    assert_eq!(on.bulkhead().unwrap().limit(), 3);
    let off = config.policy("still_off").unwrap().handle();
    assert!(off.hedge().is_none(), "enabled = false from the defaults");
    assert!(off.bulkhead().is_none());

    // A hedge table written without `enabled` switches hedging on.
    let written = toml("[policies.s]\nhedge = { max_hedges = 1 }\n");
    assert!(written.policy("s").unwrap().handle().hedge().is_some());
    assert!(written.policy("other").unwrap().handle().hedge().is_none());
}

#[test]
fn off_values_override_the_defaults() {
    let config = toml(
        r#"
        [defaults]
        deadline = "1s"
        attempt_timeout = "100ms"
        circuit_breaker = { consecutive_failures = 3, slow_call_rate = 0.5, slow_call_duration = "1s" }
        [policies.a]
        deadline = "off"
        attempt_timeout = "off"
        circuit_breaker = { consecutive_failures = "off", slow_call_rate = "off" }
        "#,
    );
    let a = config.policy("a").unwrap().handle();
    assert_eq!((a.deadline(), a.attempt_timeout()), (None, None));
    let breaker = config.settings("a").circuit_breaker.unwrap();
    assert_eq!(breaker.consecutive_failures, Some(Switch::Off));
    assert_eq!(breaker.slow_call_rate, Some(Switch::Off));
}

// ===== errors =====

#[test]
fn unknown_keys_are_errors_that_name_them() {
    let cases = [
        ("bogus = 1\n", "bogus", 1),
        ("[default]\n", "default", 1),
        ("[defaults]\n\nbogus = 1\n", "defaults.bogus", 3),
        (
            "[policies.p]\nretry = { max_atempts = 2 }\n",
            "policies.p.retry.max_atempts",
            2,
        ),
        (
            "[policies.p.budget]\nratio = 0.1\nminpersec = 1\n",
            "policies.p.budget.minpersec",
            3,
        ),
        (
            "[policies.p]\nretry.backoff = { bas = \"1s\" }\n",
            "policies.p.retry.backoff.bas",
            2,
        ),
        (
            "[policies.p]\ncircuit_breaker.window = { count = 5, size = 3 }\n",
            "policies.p.circuit_breaker.window.size",
            2,
        ),
        (
            "[policies.p]\nhedge = { quantile = 0.9 }\n",
            "policies.p.hedge.quantile",
            2,
        ),
        (
            "[policies.p]\nbulkhead = { max_concurency = 9 }\n",
            "policies.p.bulkhead.max_concurency",
            2,
        ),
        (
            "[policies.p]\ncircuit_breaker = { open_multiplier = 2.0 }\n",
            "policies.p.circuit_breaker.open_multiplier",
            2,
        ),
    ];
    for (text, path, line) in cases {
        let err = toml_err(text);
        assert_eq!(err.path(), path, "{text}");
        assert!(err.reason().contains("unknown field"), "{err}");
        assert_eq!(err.line(), Some(line), "{err}");
        assert!(err.column().is_some());
        assert!(err.config_error().is_none());
    }

    let err = yaml_err("policies:\n  p:\n    retry:\n      backoff: { bas: 1s }\n");
    assert_eq!(err.path(), "policies.p.retry.backoff.bas");
    assert_eq!(err.line(), Some(4));
    assert!(err.reason().starts_with("unknown field `bas`"), "{err}");
    let err = yaml_err("defaults:\n  bogus: 1\n");
    assert_eq!(err.path(), "defaults.bogus");
    assert_eq!((err.line(), err.column()), (Some(2), Some(3)));
}

#[test]
fn bad_durations_are_errors_that_name_their_key() {
    let cases = [
        ("\"250\"", "has no unit"),
        ("\"-5s\"", "negative"),
        ("\"NaN\"", "not a number"),
        ("\"nanms\"", "not a number"),
        ("\"5 s\"", "unknown unit"),
        ("\"5d\"", "unknown unit"),
        ("\"1m30s\"", "unknown unit"),
        ("\"1.2.3s\"", "not a number and a unit"),
        ("\".5s\"", "not a number and a unit"),
        ("\"99999999999999999999h\"", "too long"),
        ("\"\"", "not a duration"),
        ("250", "invalid type: integer"),
        ("2.5", "invalid type: floating point"),
        ("true", "invalid type: boolean"),
    ];
    for (value, reason) in cases {
        for key in [
            "deadline",
            "bulkhead.max_wait",
            "circuit_breaker.open_duration",
        ] {
            let err = toml_err(&format!("[policies.p]\n{key} = {value}\n"));
            assert_eq!(err.path(), format!("policies.p.{key}"), "{value}");
            assert!(err.reason().contains(reason), "{value}: {err}");
            assert_eq!(err.line(), Some(2));
        }
    }
    let err = yaml_err("policies:\n  p:\n    attempt_timeout: 250\n");
    assert_eq!(err.path(), "policies.p.attempt_timeout");
    assert_eq!(err.line(), Some(3));
    let err = yaml_err("policies:\n  p:\n    attempt_timeout: -1ms\n");
    assert!(err.reason().contains("negative"), "{err}");
    let err = yaml_err("policies:\n  p:\n    attempt_timeout: .nan\n");
    assert!(
        err.reason().contains("invalid type: floating point"),
        "{err}"
    );

    // Every unit, and decimals.
    let config = toml(
        r#"
        [defaults.circuit_breaker]
        open_duration = "1.5s"
        max_open_duration = "2h"
        slow_call_duration = "250000us"
        slow_call_rate = 0.5
        max_half_open_duration = "30000000000ns"
        reset_backoff_after = "0.5m"
        [defaults.bulkhead]
        max_wait = "7µs"
        "#,
    );
    let breaker = config.defaults().circuit_breaker.unwrap();
    assert_eq!(breaker.open_duration, Some(ms(1500)));
    assert_eq!(breaker.max_open_duration, Some(secs(7200)));
    assert_eq!(breaker.slow_call_duration, Some(ms(250)));
    assert_eq!(breaker.max_half_open_duration, Some(secs(30)));
    assert_eq!(breaker.reset_backoff_after, Some(secs(30)));
    assert_eq!(
        config.defaults().bulkhead.unwrap().max_wait,
        Some(Duration::from_micros(7))
    );
}

#[test]
fn bad_choices_are_errors_that_name_their_key() {
    let err = toml_err("[policies.p]\nretry.backoff.jitter = \"fulll\"\n");
    assert_eq!(err.path(), "policies.p.retry.backoff.jitter");
    assert!(err.reason().contains("unknown variant `fulll`"), "{err}");
    assert!(err.reason().contains("`decorrelated`"), "{err}");

    let err = toml_err("[policies.p]\ncircuit_breaker.readiness = \"fail_fast\"\n");
    assert_eq!(err.path(), "policies.p.circuit_breaker.readiness");
    assert!(err.reason().contains("`fail-fast`"), "{err}");

    for (value, path) in [
        ("deadline = \"of\"", "policies.p.deadline"),
        (
            "circuit_breaker.failure_rate = \"none\"",
            "policies.p.circuit_breaker.failure_rate",
        ),
        (
            "circuit_breaker.consecutive_failures = \"never\"",
            "policies.p.circuit_breaker.consecutive_failures",
        ),
        (
            "circuit_breaker.window = { count = 5, time = \"1s\" }",
            "policies.p.circuit_breaker.window",
        ),
        (
            "circuit_breaker.window = { count = 5, buckets = 2 }",
            "policies.p.circuit_breaker.window",
        ),
        (
            "circuit_breaker.window = { buckets = 2 }",
            "policies.p.circuit_breaker.window",
        ),
    ] {
        let err = toml_err(&format!("[policies.p]\n{value}\n"));
        assert_eq!(err.path(), path, "{value}: {err}");
        assert_eq!(err.line(), Some(2), "{value}");
    }

    let err = yaml_err("policies:\n  p:\n    circuit_breaker: { readiness: eager }\n");
    assert_eq!(err.path(), "policies.p.circuit_breaker.readiness");
}

#[test]
fn wrong_types_are_errors_that_name_their_key() {
    for (value, path) in [
        (
            "retry = { max_attempts = \"3\" }",
            "policies.p.retry.max_attempts",
        ),
        (
            "retry = { max_attempts = -1 }",
            "policies.p.retry.max_attempts",
        ),
        (
            "retry = { max_attempts = 5000000000 }",
            "policies.p.retry.max_attempts",
        ),
        ("retry = { enabled = \"yes\" }", "policies.p.retry.enabled"),
        ("retry = 3", "policies.p.retry"),
        ("budget = { ratio = \"high\" }", "policies.p.budget.ratio"),
        (
            "hedge = { max_hedges = 1.5 }",
            "policies.p.hedge.max_hedges",
        ),
        (
            "circuit_breaker = { consecutive_failures = -2 }",
            "policies.p.circuit_breaker.consecutive_failures",
        ),
        (
            "circuit_breaker = { failure_rate = true }",
            "policies.p.circuit_breaker.failure_rate",
        ),
        (
            "bulkhead = { max_concurrent = [1] }",
            "policies.p.bulkhead.max_concurrent",
        ),
    ] {
        let err = toml_err(&format!("[policies.p]\n{value}\n"));
        assert_eq!(err.path(), path, "{value}: {err}");
        assert!(err.reason().starts_with("invalid"), "{value}: {err}");
        assert_eq!(err.line(), Some(2), "{value}");
    }
    let err = toml_err("policies = 3\n");
    assert_eq!(err.path(), "policies");
    let err = yaml_err("policies:\n  p:\n    retry: { max_attempts: three }\n");
    assert_eq!(err.path(), "policies.p.retry.max_attempts");
    assert_eq!(err.line(), Some(3));
}

#[test]
fn syntax_errors_have_a_position() {
    let err = toml_err("[policies.p\n");
    assert_eq!(err.path(), "");
    assert_eq!(err.line(), Some(1));
    assert!(!err.reason().contains('\n'));
    // Where the parser was, as far as it is known.
    let err = yaml_err("policies:\n  p: {\n");
    assert_eq!(err.path(), "policies.p");
    assert!(err.line().is_some());
}

/// A policy named twice is a mistake in either format: the file would say two things
/// of one downstream. TOML's parser refuses it; YAML's must too (it used to keep the
/// last one, silently).
#[test]
fn a_policy_named_twice_is_refused_in_both_formats() {
    let toml = toml_err(
        "[policies.payments]\ndeadline = \"1s\"\n[policies.payments]\ndeadline = \"9s\"\n",
    );
    assert!(toml.reason().contains("duplicate"), "{toml}");

    let yaml = yaml_err(
        "policies:\n  payments:\n    deadline: 1s\n  search: {}\n  payments:\n    deadline: 9s\n",
    );
    assert_eq!(yaml.path(), "policies.payments", "{yaml}");
    assert!(yaml.reason().contains("duplicate key `payments`"), "{yaml}");
    assert!(yaml.line().is_some(), "{yaml}");

    // The same name in flow style, and under the defaults' keys too.
    let yaml = yaml_err("policies: { a: {}, a: { deadline: 2s } }\n");
    assert_eq!(yaml.path(), "policies.a", "{yaml}");
    let yaml = yaml_err("defaults:\n  deadline: 1s\n  deadline: 2s\n");
    assert!(yaml.path().starts_with("defaults"), "{yaml}");
    assert!(yaml.reason().contains("duplicate"), "{yaml}");
}

/// Also shows that each of these keys reaches its builder: the builder is the one that
/// refuses the value.
#[test]
fn values_a_builder_refuses_are_errors_at_their_key() {
    let cases = [
        ("deadline = \"0s\"", "deadline", "deadline"),
        ("attempt_timeout = \"0ms\"", "attempt_timeout", "timeout"),
        (
            "retry = { max_attempts = 0 }",
            "retry.max_attempts",
            "retry",
        ),
        (
            "retry.backoff = { base = \"0s\" }",
            "retry.backoff.base",
            "backoff",
        ),
        (
            "retry.backoff = { base = \"1s\", max = \"10ms\" }",
            "retry.backoff.max",
            "backoff",
        ),
        (
            "retry.backoff = { multiplier = 0.5 }",
            "retry.backoff.multiplier",
            "backoff",
        ),
        ("budget = { ratio = 11.0 }", "budget.ratio", "retry_budget"),
        (
            "budget = { min_per_sec = -1.0 }",
            "budget.min_per_sec",
            "retry_budget",
        ),
        ("budget = { buckets = 0 }", "budget.buckets", "retry_budget"),
        (
            "budget = { window = \"5ms\", buckets = 10 }",
            "budget.window",
            "retry_budget",
        ),
        ("hedge = { percentile = 1.0 }", "hedge.percentile", "hedge"),
        (
            "hedge = { delay = \"5ms\", percentile = 0.9 }",
            "hedge.delay",
            "hedge",
        ),
        (
            "hedge = { delay = \"5ms\", window = \"10s\" }",
            "hedge.window",
            "hedge",
        ),
        ("hedge = { window = \"1ms\" }", "hedge.window", "hedge"),
        ("hedge = { min_samples = 0 }", "hedge.min_samples", "hedge"),
        ("hedge = { max_hedges = 17 }", "hedge.max_hedges", "hedge"),
        (
            "circuit_breaker = { window = { count = 0 } }",
            "circuit_breaker.window.count",
            "circuit_breaker",
        ),
        (
            "circuit_breaker = { window = { time = \"5ms\", buckets = 10 } }",
            "circuit_breaker.window",
            "circuit_breaker",
        ),
        (
            "circuit_breaker = { window = { count = 10 }, minimum_calls = 20 }",
            "circuit_breaker.minimum_calls",
            "circuit_breaker",
        ),
        (
            "circuit_breaker = { failure_rate = 1.5 }",
            "circuit_breaker.failure_rate",
            "circuit_breaker",
        ),
        (
            "circuit_breaker = { failure_rate = nan }",
            "circuit_breaker.failure_rate",
            "circuit_breaker",
        ),
        (
            "circuit_breaker = { failure_rate = \"off\" }",
            "circuit_breaker.failure_rate",
            "circuit_breaker",
        ),
        (
            "circuit_breaker = { minimum_calls = 0 }",
            "circuit_breaker.minimum_calls",
            "circuit_breaker",
        ),
        (
            "circuit_breaker = { slow_call_rate = 2.0, slow_call_duration = \"1s\" }",
            "circuit_breaker.slow_call_rate",
            "circuit_breaker",
        ),
        (
            "circuit_breaker = { slow_call_rate = 0.5, slow_call_duration = \"0s\" }",
            "circuit_breaker.slow_call_duration",
            "circuit_breaker",
        ),
        (
            "circuit_breaker = { slow_call_rate = 0.5 }",
            "circuit_breaker.slow_call_duration",
            "circuit_breaker",
        ),
        (
            "circuit_breaker = { slow_call_duration = \"1s\" }",
            "circuit_breaker.slow_call_rate",
            "circuit_breaker",
        ),
        (
            "circuit_breaker = { consecutive_failures = 0 }",
            "circuit_breaker.consecutive_failures",
            "circuit_breaker",
        ),
        (
            "circuit_breaker = { open_duration = \"0s\" }",
            "circuit_breaker.open_duration",
            "circuit_breaker",
        ),
        (
            "circuit_breaker = { max_open_duration = \"1s\" }",
            "circuit_breaker.max_open_duration",
            "circuit_breaker",
        ),
        (
            "circuit_breaker = { open_duration_multiplier = 0.9 }",
            "circuit_breaker.open_duration_multiplier",
            "circuit_breaker",
        ),
        (
            "circuit_breaker = { jitter = 1.1 }",
            "circuit_breaker.jitter",
            "circuit_breaker",
        ),
        (
            "circuit_breaker = { reset_backoff_after = \"0s\" }",
            "circuit_breaker.reset_backoff_after",
            "circuit_breaker",
        ),
        (
            "circuit_breaker = { half_open_probes = 0 }",
            "circuit_breaker.half_open_probes",
            "circuit_breaker",
        ),
        (
            "circuit_breaker = { max_half_open_duration = \"0s\" }",
            "circuit_breaker.max_half_open_duration",
            "circuit_breaker",
        ),
        (
            "bulkhead = { max_concurrent = 0 }",
            "bulkhead.max_concurrent",
            "bulkhead",
        ),
        (
            "bulkhead = { max_waiting = 0, max_wait = \"1s\" }",
            "bulkhead.max_waiting",
            "bulkhead",
        ),
        (
            "bulkhead = { max_waiting = 5 }",
            "bulkhead.max_waiting",
            "bulkhead",
        ),
    ];
    for (value, relative, component) in cases {
        // In a policy, and in the defaults.
        for (text, prefix) in [
            (
                format!("[policies.payments]\n{value}\n"),
                "policies.payments",
            ),
            (format!("[defaults]\n{value}\n"), "defaults"),
        ] {
            let err = toml_err(&text);
            assert_eq!(err.path(), format!("{prefix}.{relative}"), "{value}: {err}");
            let cause = err
                .config_error()
                .unwrap_or_else(|| panic!("{value}: {err}"));
            assert_eq!(cause.component(), component, "{value}");
            assert_eq!(err.reason(), cause.reason(), "{value}");
            assert!(err
                .to_string()
                .starts_with(&format!("{prefix}.{relative}: ")));
            assert!(std::error::Error::source(&err).is_some());
        }
    }
    // YAML too.
    let err = yaml_err("policies:\n  payments:\n    circuit_breaker: { failure_rate: 1.5 }\n");
    assert_eq!(err.path(), "policies.payments.circuit_breaker.failure_rate");
}

#[test]
fn a_value_from_the_defaults_is_reported_in_the_policy_that_fails() {
    // Fine alone (the open duration is 1 s), not with the policy's open duration.
    let err = toml_err(
        r#"
        [defaults]
        circuit_breaker = { open_duration = "1s", max_open_duration = "1m" }
        [policies.payments]
        circuit_breaker = { open_duration = "2m" }
        "#,
    );
    assert_eq!(
        err.path(),
        "policies.payments.circuit_breaker.max_open_duration"
    );
    assert!(
        err.reason()
            .ends_with("(the value is from `defaults.circuit_breaker.max_open_duration`)"),
        "{err}"
    );
}

#[test]
fn the_defaults_alone_must_build() {
    // Every policy overrides it, but an unknown downstream would get it.
    let err = toml_err(
        r#"
        [defaults]
        bulkhead = { max_concurrent = 0 }
        [policies.a]
        bulkhead = { max_concurrent = 1 }
        "#,
    );
    assert_eq!(err.path(), "defaults.bulkhead.max_concurrent");
}

#[test]
fn an_empty_policy_name_is_an_error() {
    let err = toml_err("[policies.\"\"]\n");
    assert_eq!(err.path(), "policies");
    assert_eq!(err.config_error().unwrap().field(), "name");
}

#[test]
fn a_stage_that_is_off_is_not_range_checked() {
    let config = toml(
        r#"
        [policies.p]
        retry = { enabled = false, max_attempts = 0, backoff = { base = "0s" } }
        hedge = { enabled = false, percentile = 7.0 }
        circuit_breaker = { enabled = false, failure_rate = 3.0 }
        bulkhead = { enabled = false, max_concurrent = 0 }
        "#,
    );
    let handle = config.policy("p").unwrap().handle();
    assert!(!handle.retries());
    assert!(handle.hedge().is_none());
    assert!(handle.circuit_breaker().is_none());
    assert!(handle.bulkhead().is_none());
    // ... and switching it on in a policy makes it checked.
    let err = toml_err(
        r#"
        [defaults]
        bulkhead = { enabled = false, max_concurrent = 0 }
        [policies.p]
        bulkhead = { enabled = true }
        "#,
    );
    assert_eq!(err.path(), "policies.p.bulkhead.max_concurrent");
    assert!(err
        .reason()
        .contains("(the value is from `defaults.bulkhead.max_concurrent`)"));
}

#[test]
fn from_path_reads_by_extension() {
    let dir = std::env::temp_dir().join(format!("seawall-policy-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml_file = dir.join("policies.toml");
    let yaml_file = dir.join("policies.YML");
    let bad_file = dir.join("bad.yaml");
    std::fs::write(&toml_file, FULL_TOML).unwrap();
    std::fs::write(&yaml_file, FULL_YAML).unwrap();
    std::fs::write(
        &bad_file,
        "policies:\n  p:\n    retry: { max_attempts: 0 }\n",
    )
    .unwrap();

    let from_toml = PolicyConfig::from_path(&toml_file);
    let from_yaml = PolicyConfig::from_path(&yaml_file);
    let bad = PolicyConfig::from_path(&bad_file);
    let missing = PolicyConfig::from_path(dir.join("missing.toml"));
    let unknown = PolicyConfig::from_path(dir.join("policies.json"));
    std::fs::remove_dir_all(&dir).unwrap();

    assert_eq!(from_toml.unwrap(), from_yaml.unwrap());

    let bad = bad.unwrap_err();
    assert_eq!(bad.file(), Some(bad_file.as_path()));
    assert_eq!(bad.path(), "policies.p.retry.max_attempts");
    assert!(bad.to_string().starts_with(&format!(
        "{}: policies.p.retry.max_attempts: ",
        bad_file.display()
    )));

    let missing = missing.unwrap_err();
    assert_eq!(missing.path(), "");
    assert!(missing.file().is_some());
    let io = std::error::Error::source(&missing).unwrap();
    assert!(io.downcast_ref::<std::io::Error>().is_some());

    let unknown = unknown.unwrap_err();
    assert!(
        unknown.reason().contains(".toml, .yaml or .yml"),
        "{unknown}"
    );
}

#[test]
#[allow(clippy::field_reassign_with_default)]
fn settings_types_are_plain_data() {
    // The settings types can be made and compared by users (e.g. in their own tests).
    let mut expected = StageSettings::default();
    expected.deadline = Some(Switch::On(secs(1)));
    let mut retry = RetrySettings::default();
    retry.max_attempts = Some(2);
    let mut backoff = BackoffSettings::default();
    backoff.jitter = Some(Jitter::Equal);
    retry.backoff = Some(backoff);
    expected.retry = Some(retry);
    let mut budget = BudgetSettings::default();
    budget.buckets = Some(4);
    expected.budget = Some(budget);
    let mut hedge = HedgeSettings::default();
    hedge.delay = Some(ms(9));
    expected.hedge = Some(hedge);
    let mut breaker = CircuitBreakerSettings::default();
    breaker.half_open_probes = Some(2);
    expected.circuit_breaker = Some(breaker);
    let mut bulkhead = BulkheadSettings::default();
    bulkhead.max_waiting = Some(3);
    bulkhead.max_wait = Some(ms(1));
    expected.bulkhead = Some(bulkhead);

    let config = toml(
        r#"
        [policies.p]
        deadline = "1s"
        retry = { max_attempts = 2, backoff = { jitter = "equal" } }
        budget = { buckets = 4 }
        hedge = { delay = "9ms" }
        circuit_breaker = { half_open_probes = 2 }
        bulkhead = { max_waiting = 3, max_wait = "1ms" }
        "#,
    );
    assert_eq!(config.settings("p"), expected);
}
