//! Metric handles, registered once when a layer is built and incremented per call.
//!
//! With the `metrics` feature the handles come from the [`metrics`](https://docs.rs/metrics)
//! facade's global recorder: install your exporter *before* building layers, as the
//! handles are resolved at build time (no per-call label lookup or `String`). Without the
//! feature every method here is an empty inline function.
//!
//! Names (all carry a `policy` label, the layer's `name`):
//!
//! | name | kind | labels | meaning |
//! |---|---|---|---|
//! | `seawall_circuit_breaker_calls_total` | counter | `outcome` = `success` / `failure` / `ignored` | admitted calls by outcome |
//! | `seawall_circuit_breaker_slow_calls_total` | counter | | admitted calls at least the slow-call threshold long |
//! | `seawall_circuit_breaker_rejections_total` | counter | | calls rejected with `CircuitOpen` |
//! | `seawall_circuit_breaker_state` | gauge | | 0 closed, 1 open, 2 half-open, 3 forced open, 4 disabled |
//! | `seawall_circuit_breaker_transitions_total` | counter | `from`, `to` | state transitions |
//! | `seawall_bulkhead_in_flight` | gauge | | calls holding a permit |
//! | `seawall_bulkhead_limit` | gauge | | the bulkhead's current limit |
//! | `seawall_bulkhead_rejections_total` | counter | | calls rejected with `BulkheadFull` |
//! | `seawall_bulkhead_wait_seconds` | histogram | | how long callers waited for a permit (granted or not) |
//! | `seawall_retry_attempts_total` | counter | `kind` = `first` / `retry` | attempts a retry layer sent that went out: counted when the attempt's result comes back and is not a local rejection, or when the attempt is cancelled after it was out (it had answered `Pending`). Not counted: an attempt that a stage below rejected (an open breaker, a full bulkhead, a throttle, a spent deadline: in those stages' rejection counters), a retry that was decided but never sent (in `seawall_retry_delay_seconds` only), and an attempt cancelled before it was first polled. (A waiting bulkhead's caller that gives up while queued is the one attempt counted that never went out.) |
//! | `seawall_retry_budget_denials_total` | counter | | retries the budget refused (the caller got the failure) |
//! | `seawall_retry_delay_seconds` | histogram | | the wait before each retry (backoff or pushback) |
//! | `seawall_retry_attempts_total` | counter | `kind` = `hedge` | hedges sent by a hedge layer (the same counter as the retry layer's attempts) |
//! | `seawall_hedge_wins_total` | counter | | calls answered by a hedge rather than the first attempt |
//! | `seawall_hedge_budget_denials_total` | counter | | hedges the budget refused (the call waited for its attempts in flight) |
//! | `seawall_hedge_delay_seconds` | gauge | | the current hedge delay (fixed, or the latest percentile); NaN while too few latencies are known to hedge |
//! | `seawall_throttle_rejections_total` | counter | | calls a throttle refused with `Throttled` |
//! | `seawall_throttle_probability` | gauge | | a throttle's rejection probability, set on each call while above zero and once when it falls back to zero |
//! | `seawall_chaos_faults_total` | counter | `fault` = `error` / `latency` / `hang` / `status` / `abort` | faults injected |
//! | `seawall_chaos_injection_rate` | gauge | | the injection rate while enabled, 0 while disabled |

#[cfg(feature = "circuit-breaker")]
pub(crate) use breaker::BreakerMetrics;
#[cfg(feature = "bulkhead")]
pub(crate) use bulkhead::{BulkheadMetrics, PermitMetrics};
#[cfg(feature = "hedge")]
pub(crate) use hedge::HedgeMetrics;
#[cfg(feature = "retry")]
pub(crate) use retry::RetryMetrics;
#[cfg(feature = "throttle")]
pub(crate) use throttle::ThrottleMetrics;

#[cfg(feature = "throttle")]
mod throttle {
    #[cfg(feature = "metrics")]
    #[derive(Debug)]
    pub(crate) struct ThrottleMetrics {
        rejections: metrics::Counter,
        probability: metrics::Gauge,
    }

    #[cfg(feature = "metrics")]
    impl ThrottleMetrics {
        pub(crate) fn new(policy: &std::sync::Arc<str>) -> Self {
            let this = Self {
                rejections: metrics::counter!(
                    "seawall_throttle_rejections_total",
                    "policy" => policy.to_string()
                ),
                probability: metrics::gauge!(
                    "seawall_throttle_probability",
                    "policy" => policy.to_string()
                ),
            };
            this.probability.set(0.0);
            this
        }

        pub(crate) fn throttled(&self) {
            self.rejections.increment(1);
        }

        pub(crate) fn probability(&self, probability: f64) {
            self.probability.set(probability);
        }
    }

    #[cfg(not(feature = "metrics"))]
    #[derive(Debug)]
    pub(crate) struct ThrottleMetrics;

    #[cfg(not(feature = "metrics"))]
    impl ThrottleMetrics {
        pub(crate) fn new(_policy: &std::sync::Arc<str>) -> Self {
            Self
        }
        #[inline(always)]
        pub(crate) fn throttled(&self) {}
        #[inline(always)]
        pub(crate) fn probability(&self, _probability: f64) {}
    }
}

#[cfg(feature = "circuit-breaker")]
mod breaker {
    use crate::circuit_breaker::State;
    use crate::classify::Health;

    #[cfg(feature = "metrics")]
    #[derive(Debug)]
    pub(crate) struct BreakerMetrics {
        policy: std::sync::Arc<str>,
        success: metrics::Counter,
        failure: metrics::Counter,
        ignored: metrics::Counter,
        slow: metrics::Counter,
        rejections: metrics::Counter,
        state: metrics::Gauge,
    }

    #[cfg(feature = "metrics")]
    impl BreakerMetrics {
        pub(crate) fn new(policy: &std::sync::Arc<str>) -> Self {
            let calls = |outcome: &'static str| {
                metrics::counter!(
                    "seawall_circuit_breaker_calls_total",
                    "policy" => policy.to_string(),
                    "outcome" => outcome
                )
            };
            Self {
                policy: policy.clone(),
                success: calls("success"),
                failure: calls("failure"),
                ignored: calls("ignored"),
                slow: metrics::counter!(
                    "seawall_circuit_breaker_slow_calls_total",
                    "policy" => policy.to_string()
                ),
                rejections: metrics::counter!(
                    "seawall_circuit_breaker_rejections_total",
                    "policy" => policy.to_string()
                ),
                state: metrics::gauge!(
                    "seawall_circuit_breaker_state",
                    "policy" => policy.to_string()
                ),
            }
        }

        #[inline]
        pub(crate) fn call(&self, health: Health, slow: bool) {
            match health {
                Health::Success => self.success.increment(1),
                Health::Failure => self.failure.increment(1),
                Health::Ignored => self.ignored.increment(1),
            }
            if slow {
                self.slow.increment(1);
            }
        }

        pub(crate) fn rejection(&self) {
            self.rejections.increment(1);
        }

        pub(crate) fn state(&self, state: State) {
            self.state.set(f64::from(state as u8));
        }

        pub(crate) fn transition(&self, from: State, to: State) {
            self.state(to);
            // Transitions are rare: resolving this handle here costs nothing per call.
            metrics::counter!(
                "seawall_circuit_breaker_transitions_total",
                "policy" => self.policy.to_string(),
                "from" => from.as_str(),
                "to" => to.as_str()
            )
            .increment(1);
        }
    }

    #[cfg(not(feature = "metrics"))]
    #[derive(Debug)]
    pub(crate) struct BreakerMetrics;

    #[cfg(not(feature = "metrics"))]
    impl BreakerMetrics {
        pub(crate) fn new(_policy: &std::sync::Arc<str>) -> Self {
            Self
        }
        #[inline(always)]
        pub(crate) fn call(&self, _health: Health, _slow: bool) {}
        #[inline(always)]
        pub(crate) fn rejection(&self) {}
        #[inline(always)]
        pub(crate) fn state(&self, _state: State) {}
        #[inline(always)]
        pub(crate) fn transition(&self, _from: State, _to: State) {}
    }
}

#[cfg(feature = "bulkhead")]
mod bulkhead {
    use std::time::Duration;

    /// The in-flight gauge's share of one permit: up when taken, down when given back.
    #[cfg(feature = "metrics")]
    #[derive(Debug)]
    pub(crate) struct PermitMetrics(metrics::Gauge);

    #[cfg(feature = "metrics")]
    impl Drop for PermitMetrics {
        fn drop(&mut self) {
            self.0.decrement(1.0);
        }
    }

    #[cfg(not(feature = "metrics"))]
    #[derive(Debug)]
    pub(crate) struct PermitMetrics;

    #[cfg(feature = "metrics")]
    #[derive(Debug)]
    pub(crate) struct BulkheadMetrics {
        in_flight: metrics::Gauge,
        limit: metrics::Gauge,
        rejections: metrics::Counter,
        wait: metrics::Histogram,
    }

    #[cfg(feature = "metrics")]
    impl BulkheadMetrics {
        pub(crate) fn new(policy: &std::sync::Arc<str>, limit: u32) -> Self {
            let this = Self {
                in_flight: metrics::gauge!(
                    "seawall_bulkhead_in_flight",
                    "policy" => policy.to_string()
                ),
                limit: metrics::gauge!("seawall_bulkhead_limit", "policy" => policy.to_string()),
                rejections: metrics::counter!(
                    "seawall_bulkhead_rejections_total",
                    "policy" => policy.to_string()
                ),
                wait: metrics::histogram!(
                    "seawall_bulkhead_wait_seconds",
                    "policy" => policy.to_string()
                ),
            };
            this.limit(limit);
            this
        }

        pub(crate) fn limit(&self, limit: u32) {
            self.limit.set(f64::from(limit));
        }

        #[inline]
        pub(crate) fn acquired(&self) -> PermitMetrics {
            self.in_flight.increment(1.0);
            PermitMetrics(self.in_flight.clone())
        }

        pub(crate) fn rejection(&self) {
            self.rejections.increment(1);
        }

        pub(crate) fn waited(&self, wait: Duration) {
            self.wait.record(wait.as_secs_f64());
        }
    }

    #[cfg(not(feature = "metrics"))]
    #[derive(Debug)]
    pub(crate) struct BulkheadMetrics;

    #[cfg(not(feature = "metrics"))]
    impl BulkheadMetrics {
        pub(crate) fn new(_policy: &std::sync::Arc<str>, _limit: u32) -> Self {
            Self
        }
        #[inline(always)]
        pub(crate) fn limit(&self, _limit: u32) {}
        #[inline(always)]
        pub(crate) fn acquired(&self) -> PermitMetrics {
            PermitMetrics
        }
        #[inline(always)]
        pub(crate) fn rejection(&self) {}
        #[inline(always)]
        pub(crate) fn waited(&self, _wait: Duration) {}
    }
}

#[cfg(feature = "retry")]
mod retry {
    use std::time::Duration;

    #[cfg(feature = "metrics")]
    #[derive(Debug)]
    pub(crate) struct RetryMetrics {
        first: metrics::Counter,
        retry: metrics::Counter,
        denials: metrics::Counter,
        delay: metrics::Histogram,
    }

    #[cfg(feature = "metrics")]
    impl RetryMetrics {
        pub(crate) fn new(policy: &str) -> Self {
            let attempts = |kind: &'static str| {
                metrics::counter!(
                    "seawall_retry_attempts_total",
                    "policy" => policy.to_owned(),
                    "kind" => kind
                )
            };
            Self {
                first: attempts("first"),
                retry: attempts("retry"),
                denials: metrics::counter!(
                    "seawall_retry_budget_denials_total",
                    "policy" => policy.to_owned()
                ),
                delay: metrics::histogram!(
                    "seawall_retry_delay_seconds",
                    "policy" => policy.to_owned()
                ),
            }
        }

        #[inline]
        pub(crate) fn first(&self) {
            self.first.increment(1);
        }

        #[inline]
        pub(crate) fn retry(&self) {
            self.retry.increment(1);
        }

        pub(crate) fn delay(&self, delay: Duration) {
            self.delay.record(delay.as_secs_f64());
        }

        pub(crate) fn denied(&self) {
            self.denials.increment(1);
        }
    }

    #[cfg(not(feature = "metrics"))]
    #[derive(Debug)]
    pub(crate) struct RetryMetrics;

    #[cfg(not(feature = "metrics"))]
    impl RetryMetrics {
        pub(crate) fn new(_policy: &str) -> Self {
            Self
        }
        #[inline(always)]
        pub(crate) fn first(&self) {}
        #[inline(always)]
        pub(crate) fn retry(&self) {}
        #[inline(always)]
        pub(crate) fn delay(&self, _delay: Duration) {}
        #[inline(always)]
        pub(crate) fn denied(&self) {}
    }
}

#[cfg(feature = "hedge")]
mod hedge {
    use std::time::Duration;

    #[cfg(feature = "metrics")]
    #[derive(Debug)]
    pub(crate) struct HedgeMetrics {
        hedges: metrics::Counter,
        wins: metrics::Counter,
        denials: metrics::Counter,
        delay: metrics::Gauge,
    }

    #[cfg(feature = "metrics")]
    impl HedgeMetrics {
        pub(crate) fn new(policy: &str) -> Self {
            Self {
                hedges: metrics::counter!(
                    "seawall_retry_attempts_total",
                    "policy" => policy.to_owned(),
                    "kind" => "hedge"
                ),
                wins: metrics::counter!(
                    "seawall_hedge_wins_total",
                    "policy" => policy.to_owned()
                ),
                denials: metrics::counter!(
                    "seawall_hedge_budget_denials_total",
                    "policy" => policy.to_owned()
                ),
                delay: metrics::gauge!(
                    "seawall_hedge_delay_seconds",
                    "policy" => policy.to_owned()
                ),
            }
        }

        #[inline]
        pub(crate) fn hedge(&self) {
            self.hedges.increment(1);
        }

        pub(crate) fn won(&self) {
            self.wins.increment(1);
        }

        pub(crate) fn denied(&self) {
            self.denials.increment(1);
        }

        /// The delay now; `None`: not hedging (NaN).
        pub(crate) fn delay(&self, delay: Option<Duration>) {
            self.delay
                .set(delay.map_or(f64::NAN, |delay| delay.as_secs_f64()));
        }
    }

    #[cfg(not(feature = "metrics"))]
    #[derive(Debug)]
    pub(crate) struct HedgeMetrics;

    #[cfg(not(feature = "metrics"))]
    impl HedgeMetrics {
        pub(crate) fn new(_policy: &str) -> Self {
            Self
        }
        #[inline(always)]
        pub(crate) fn hedge(&self) {}
        #[inline(always)]
        pub(crate) fn won(&self) {}
        #[inline(always)]
        pub(crate) fn denied(&self) {}
        #[inline(always)]
        pub(crate) fn delay(&self, _delay: Option<Duration>) {}
    }
}
