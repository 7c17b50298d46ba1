//! The `metrics` and `tracing` integrations.
#![cfg(feature = "circuit-breaker")]

#[path = "support/mod.rs"]
mod support;

#[cfg(feature = "tracing")]
use captured::Captured;

/// The tests of this file run one at a time. Those that install a scoped `tracing`
/// subscriber need it: `tracing` caches per call site whether anyone listens, and code
/// running on another test's thread (every layer here emits events) can make that first
/// check answer "nobody" while a scoped subscriber is listening.
#[allow(dead_code)]
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    #[cfg(feature = "tracing")]
    tracing::callsite::rebuild_interest_cache();
    guard
}

/// What a `tracing` subscriber writes, kept for the test to read.
#[cfg(feature = "tracing")]
mod captured {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        /// Everything written so far, as text.
        pub(crate) fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}

/// A current-thread runtime on tokio's paused clock, for tests that must install a
/// recorder or subscriber around the runtime. (Unused when neither `metrics` nor
/// `tracing` is on.)
#[allow(dead_code)]
fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

#[cfg(feature = "metrics")]
mod metrics_facade {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use metrics::{
        Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
    use seawall::circuit_breaker::CircuitBreakerLayer;
    use tower::Layer;

    use crate::paused_runtime;
    use crate::support::{call, Do, Downstream};

    /// Delegates to the debugging recorder and counts how often handles are registered.
    struct CountingRecorder {
        inner: DebuggingRecorder,
        registrations: Arc<AtomicUsize>,
    }

    impl Recorder for CountingRecorder {
        fn describe_counter(&self, k: KeyName, u: Option<Unit>, d: SharedString) {
            self.inner.describe_counter(k, u, d)
        }
        fn describe_gauge(&self, k: KeyName, u: Option<Unit>, d: SharedString) {
            self.inner.describe_gauge(k, u, d)
        }
        fn describe_histogram(&self, k: KeyName, u: Option<Unit>, d: SharedString) {
            self.inner.describe_histogram(k, u, d)
        }
        fn register_counter(&self, key: &Key, m: &Metadata<'_>) -> Counter {
            self.registrations.fetch_add(1, Ordering::SeqCst);
            self.inner.register_counter(key, m)
        }
        fn register_gauge(&self, key: &Key, m: &Metadata<'_>) -> Gauge {
            self.registrations.fetch_add(1, Ordering::SeqCst);
            self.inner.register_gauge(key, m)
        }
        fn register_histogram(&self, key: &Key, m: &Metadata<'_>) -> Histogram {
            self.registrations.fetch_add(1, Ordering::SeqCst);
            self.inner.register_histogram(key, m)
        }
    }

    fn value(snapshotter: &Snapshotter, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .find_map(|(key, _, _, v)| {
                let key = key.key();
                let matches = key.name() == name
                    && labels
                        .iter()
                        .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v));
                matches.then(|| match v {
                    DebugValue::Counter(c) => c as f64,
                    DebugValue::Gauge(g) => g.into_inner(),
                    DebugValue::Histogram(_) => f64::NAN,
                })
            })
    }

    #[test]
    fn calls_rejections_state_and_transitions_are_reported_with_handles_registered_once() {
        let _one_at_a_time = crate::one_at_a_time();
        let inner = DebuggingRecorder::new();
        let snapshotter = inner.snapshotter();
        let registrations = Arc::new(AtomicUsize::new(0));
        let recorder = CountingRecorder {
            inner,
            registrations: registrations.clone(),
        };
        metrics::with_local_recorder(&recorder, || {
            let rt = paused_runtime();
            rt.block_on(async {
                let layer = CircuitBreakerLayer::builder()
                    .name("payments")
                    .without_failure_rate()
                    .consecutive_failures(3)
                    .slow_calls(Duration::from_millis(100), 1.0)
                    .build()
                    .unwrap();
                let at_build = registrations.load(Ordering::SeqCst);
                assert!(at_build >= 6, "handles are resolved at build time");
                let svc = layer.layer(Downstream::default());
                for _ in 0..1_000 {
                    let _ = call(&svc, Do::Succeed).await;
                }
                let _ = call(&svc, Do::SucceedAfter(Duration::from_millis(150))).await;
                assert_eq!(
                    registrations.load(Ordering::SeqCst),
                    at_build,
                    "no registration per call"
                );
                for _ in 0..3 {
                    let _ = call(&svc, Do::Fail).await;
                }
                for _ in 0..5 {
                    let _ = call(&svc, Do::Succeed).await;
                }
            });
        });
        let p = ("policy", "payments");
        let calls = |outcome| {
            value(
                &snapshotter,
                "seawall_circuit_breaker_calls_total",
                &[p, ("outcome", outcome)],
            )
        };
        assert_eq!(calls("success"), Some(1_001.0));
        assert_eq!(calls("failure"), Some(3.0));
        assert_eq!(calls("ignored"), Some(0.0));
        assert_eq!(
            value(
                &snapshotter,
                "seawall_circuit_breaker_slow_calls_total",
                &[p]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &snapshotter,
                "seawall_circuit_breaker_rejections_total",
                &[p]
            ),
            Some(5.0)
        );
        assert_eq!(
            value(&snapshotter, "seawall_circuit_breaker_state", &[p]),
            Some(1.0),
            "open"
        );
        assert_eq!(
            value(
                &snapshotter,
                "seawall_circuit_breaker_transitions_total",
                &[p, ("from", "closed"), ("to", "open")]
            ),
            Some(1.0)
        );
    }
}

#[cfg(all(feature = "metrics", feature = "bulkhead"))]
mod bulkhead_metrics {
    use std::time::Duration;

    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use seawall::bulkhead::BulkheadLayer;
    use tower::{Layer, ServiceExt};

    use crate::paused_runtime;
    use crate::support::{Do, Downstream};

    #[test]
    fn in_flight_limit_rejections_and_waits_are_reported() {
        let _one_at_a_time = crate::one_at_a_time();
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let in_flight_mid_call = metrics::with_local_recorder(&recorder, || {
            paused_runtime().block_on(async {
                let layer = BulkheadLayer::builder()
                    .name("search")
                    .max_concurrent(2)
                    .max_wait(Duration::from_millis(10))
                    .build()
                    .unwrap();
                let handle = layer.handle();
                let svc = layer.layer(Downstream::default());
                let held: Vec<_> = (0..2)
                    .map(|_| tokio::spawn(svc.clone().oneshot(Do::Hang)))
                    .collect();
                tokio::task::yield_now().await;
                let snapshot = snapshotter.snapshot().into_hashmap();
                let in_flight = snapshot.iter().find_map(|(k, (_, _, v))| {
                    (k.key().name() == "seawall_bulkhead_in_flight").then(|| match v {
                        DebugValue::Gauge(g) => g.into_inner(),
                        _ => f64::NAN,
                    })
                });
                // Three callers wait 10 ms each and are rejected.
                for _ in 0..3 {
                    let _ = svc.clone().oneshot(Do::Succeed).await;
                }
                handle.set_limit(5).unwrap();
                for h in held {
                    h.abort();
                    let _ = h.await;
                }
                in_flight
            })
        });
        assert_eq!(in_flight_mid_call, Some(2.0));
        let snapshot = snapshotter.snapshot().into_vec();
        let find = |name: &str| {
            snapshot
                .iter()
                .find(|(k, _, _, _)| {
                    k.key().name() == name
                        && k.key()
                            .labels()
                            .any(|l| l.key() == "policy" && l.value() == "search")
                })
                .map(|(_, _, _, v)| v)
        };
        assert!(
            matches!(find("seawall_bulkhead_in_flight"), Some(DebugValue::Gauge(g)) if g.into_inner() == 0.0)
        );
        assert!(
            matches!(find("seawall_bulkhead_limit"), Some(DebugValue::Gauge(g)) if g.into_inner() == 5.0)
        );
        assert!(matches!(
            find("seawall_bulkhead_rejections_total"),
            Some(DebugValue::Counter(3))
        ));
        match find("seawall_bulkhead_wait_seconds") {
            Some(DebugValue::Histogram(waits)) => {
                assert_eq!(waits.len(), 3);
                assert!(waits.iter().all(|w| (w.into_inner() - 0.010).abs() < 1e-9));
            }
            other => panic!("no wait histogram: {other:?}"),
        }
    }
}

#[cfg(all(feature = "metrics", feature = "retry"))]
mod retry_metrics {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use futures::FutureExt;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use seawall::retry::backoff::ConstantBackoff;
    use seawall::retry::budget::RetryBudget;
    use seawall::retry::RetryLayer;
    use seawall::BoxError;
    use tower::{Layer, ServiceExt};

    use crate::paused_runtime;

    #[test]
    fn attempts_by_kind_delays_and_denials_are_reported() {
        let _one_at_a_time = crate::one_at_a_time();
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            paused_runtime().block_on(async {
                let calls = Arc::new(AtomicU32::new(0));
                let flaky = {
                    let calls = calls.clone();
                    tower::service_fn(move |_: ()| {
                        let n = calls.fetch_add(1, Ordering::SeqCst);
                        async move {
                            if n < 2 {
                                Err::<(), BoxError>("503".into())
                            } else {
                                Ok(())
                            }
                        }
                    })
                };
                // Budget: 2 retries from the floor, then nothing.
                let budget = RetryBudget::builder()
                    .ratio(0.0)
                    .min_per_sec(0.2)
                    .window(Duration::from_secs(10))
                    .build()
                    .unwrap();
                let layer = RetryLayer::builder()
                    .name("orders")
                    .budget(budget)
                    .backoff(ConstantBackoff::new(Duration::from_millis(20)))
                    .build()
                    .unwrap();
                let svc = layer.layer(flaky.clone());
                assert!(svc.clone().oneshot(()).await.is_ok()); // first + 2 retries
                calls.store(0, Ordering::SeqCst);
                assert!(svc.clone().oneshot(()).await.is_err()); // first, then denied

                // A retry the caller abandons while waiting is not an attempt.
                calls.store(0, Ordering::SeqCst);
                let unbudgeted = RetryLayer::builder()
                    .name("abandoned")
                    .without_budget()
                    .backoff(ConstantBackoff::new(Duration::from_secs(1)))
                    .build()
                    .unwrap();
                let mut abandoned = Box::pin(unbudgeted.layer(flaky).oneshot(()));
                assert!((&mut abandoned).now_or_never().is_none());
                drop(abandoned);
            });
        });
        let snapshot = snapshotter.snapshot().into_vec();
        let find_for = |policy: &str, name: &str, kind: Option<&str>| {
            snapshot.iter().find_map(|(k, _, _, v)| {
                let key = k.key();
                let has = |label: &str, value: &str| {
                    key.labels().any(|l| l.key() == label && l.value() == value)
                };
                let wanted = has("policy", policy) && kind.is_none_or(|kind| has("kind", kind));
                (key.name() == name && wanted).then_some(v)
            })
        };
        let find = |name: &str, kind: Option<&str>| find_for("orders", name, kind);
        let counter = |v: Option<&DebugValue>| match v {
            Some(DebugValue::Counter(n)) => Some(*n),
            _ => None,
        };
        assert_eq!(
            counter(find("seawall_retry_attempts_total", Some("first"))),
            Some(2)
        );
        assert_eq!(
            counter(find("seawall_retry_attempts_total", Some("retry"))),
            Some(2)
        );
        assert_eq!(
            counter(find("seawall_retry_budget_denials_total", None)),
            Some(1)
        );
        assert_eq!(
            counter(find_for(
                "abandoned",
                "seawall_retry_attempts_total",
                Some("retry")
            )),
            Some(0),
            "the abandoned retry was never sent"
        );
        match find("seawall_retry_delay_seconds", None) {
            Some(DebugValue::Histogram(delays)) => {
                assert_eq!(delays.len(), 2);
                assert!(delays.iter().all(|d| (d.into_inner() - 0.020).abs() < 1e-9));
            }
            other => panic!("no delay histogram: {other:?}"),
        }
    }
}

#[cfg(all(feature = "metrics", feature = "policy"))]
mod sent_attempts {
    use std::time::Duration;

    use futures::FutureExt;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
    use seawall::policy::Policy;
    use seawall::retry::backoff::ConstantBackoff;
    use seawall::BoxError;
    use tower::{Layer, ServiceExt};

    use crate::paused_runtime;

    fn counter(snapshotter: &Snapshotter, policy: &str, name: &str, kind: Option<&str>) -> u64 {
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .find_map(|(key, _, _, value)| {
                let key = key.key();
                let has = |label: &str, value: &str| {
                    key.labels().any(|l| l.key() == label && l.value() == value)
                };
                let wanted = key.name() == name
                    && has("policy", policy)
                    && kind.is_none_or(|kind| has("kind", kind));
                match value {
                    DebugValue::Counter(n) if wanted => Some(n),
                    _ => None,
                }
            })
            .unwrap_or_else(|| panic!("no {name} {kind:?} for {policy}"))
    }

    /// `seawall_retry_attempts_total` counts what went out: an attempt rejected by the
    /// breaker or the bulkhead below the retry stage is not an attempt (it is in their
    /// rejection counters).
    #[test]
    fn attempts_rejected_by_the_breaker_or_the_bulkhead_below_are_not_counted() {
        let _one_at_a_time = crate::one_at_a_time();
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            paused_runtime().block_on(async {
                // A downstream that is down; the breaker opens at its first failure.
                let down = tower::service_fn(|_: u32| async {
                    Err::<u32, BoxError>("503 service unavailable".into())
                });
                let policy = Policy::builder("tripped")
                    .circuit_breaker(|breaker| breaker.consecutive_failures(1))
                    .retry(|retry| retry.backoff(ConstantBackoff::new(Duration::from_millis(10))))
                    .build()
                    .unwrap();
                let svc = policy.layer(down);
                // Sent once, then its retry is rejected by the open breaker.
                assert!(svc.clone().oneshot(0).await.is_err());
                // Ten calls the open breaker rejects: nothing goes out.
                for n in 1..=10 {
                    let err = svc.clone().oneshot(n).await.unwrap_err();
                    assert!(seawall::error::is_rejection(&*err), "{err}");
                }

                // A downstream that never answers, behind a bulkhead of one.
                let hang =
                    tower::service_fn(|_: u32| std::future::pending::<Result<u32, BoxError>>());
                let policy = Policy::builder("full")
                    .without_circuit_breaker()
                    .bulkhead(|bulkhead| bulkhead.max_concurrent(1))
                    .build()
                    .unwrap();
                let svc = policy.layer(hang);
                let mut out = Box::pin(svc.clone().oneshot(0));
                assert!((&mut out).now_or_never().is_none(), "the first call is out");
                for n in 1..=5 {
                    let err = svc.clone().oneshot(n).await.unwrap_err();
                    assert!(seawall::error::is_rejection(&*err), "{err}");
                }
                // The caller gives up on the call that was out: it was sent all the same.
                drop(out);
            });
        });
        let count = |policy, name, kind| counter(&snapshotter, policy, name, kind);
        let attempts = "seawall_retry_attempts_total";
        assert_eq!(
            count("tripped", attempts, Some("first")),
            1,
            "one call went out"
        );
        assert_eq!(
            count("tripped", attempts, Some("retry")),
            0,
            "its retry did not"
        );
        assert_eq!(
            count("tripped", "seawall_circuit_breaker_rejections_total", None),
            11
        );
        assert_eq!(
            count("full", attempts, Some("first")),
            1,
            "one call went out"
        );
        assert_eq!(count("full", attempts, Some("retry")), 0);
        assert_eq!(count("full", "seawall_bulkhead_rejections_total", None), 5);
    }
}

#[cfg(feature = "tracing")]
mod tracing_events {
    use std::time::Duration;

    use seawall::circuit_breaker::CircuitBreakerLayer;
    use tower::Layer;

    use crate::support::{call, Do, Downstream};
    use crate::{paused_runtime, Captured};

    #[test]
    fn one_event_per_transition_and_none_per_call() {
        let _one_at_a_time = crate::one_at_a_time();
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let rt = paused_runtime();
            rt.block_on(async {
                let layer = CircuitBreakerLayer::builder()
                    .name("search")
                    .without_failure_rate()
                    .consecutive_failures(2)
                    .open_duration(Duration::from_secs(1))
                    .build()
                    .unwrap();
                let svc = layer.layer(Downstream::default());
                for _ in 0..100 {
                    let _ = call(&svc, Do::Succeed).await;
                }
                for _ in 0..2 {
                    let _ = call(&svc, Do::Fail).await;
                }
                for _ in 0..50 {
                    let _ = call(&svc, Do::Succeed).await; // rejected
                }
                tokio::time::advance(Duration::from_secs(1)).await;
                let _ = call(&svc, Do::Succeed).await; // probe closes it
            });
        });
        let text = captured.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.len(),
            3,
            "closed->open, open->half_open, half_open->closed:\n{text}"
        );
        assert!(lines[0].contains("WARN") && lines[0].contains("circuit breaker opened"));
        assert!(
            lines
                .iter()
                .all(|l| l.contains("policy=\"search\"") || l.contains("policy=search")),
            "{text}"
        );
        assert!(lines[2].contains("to=Closed"), "{text}");
    }
}

#[cfg(all(feature = "tracing", feature = "bulkhead"))]
mod bulkhead_bursts {
    use std::time::Duration;

    use seawall::bulkhead::BulkheadLayer;
    use tower::{Layer, ServiceExt};

    use crate::support::{Do, Downstream};
    use crate::{paused_runtime, Captured};

    #[test]
    fn one_event_per_rejection_burst() {
        let _one_at_a_time = crate::one_at_a_time();
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            paused_runtime().block_on(async {
                let layer = BulkheadLayer::builder()
                    .name("db")
                    .max_concurrent(1)
                    .build()
                    .unwrap();
                let svc = layer.layer(Downstream::default());
                let _held = tokio::spawn(svc.clone().oneshot(Do::Hang));
                tokio::task::yield_now().await;
                for _ in 0..50 {
                    let _ = svc.clone().oneshot(Do::Succeed).await; // burst one: 50
                }
                tokio::time::advance(Duration::from_secs(2)).await;
                for _ in 0..3 {
                    let _ = svc.clone().oneshot(Do::Succeed).await; // burst two
                }
            });
        });
        let text = captured.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].contains("bulkhead full") && lines[0].contains("previous_burst=0"));
        assert!(lines[1].contains("previous_burst=50"), "{text}");
        assert!(lines.iter().all(|l| l.contains("db")), "{text}");
    }
}
