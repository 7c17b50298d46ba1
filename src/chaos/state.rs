//! The shared engine of both fault layers: the switch, the rate, the seeded decisions,
//! the faults and their counts.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::Snapshot;
use crate::error::ConfigError;
use crate::BoxError;

/// Bit 63 of the state word: injection is on.
const ENABLED: u64 = 1 << 63;
/// The draws are 53-bit integers; a threshold of `ONE` injects on every call.
const ONE: u64 = 1 << 53;
use crate::time::{splitmix as mix, SPLITMIX_GAMMA as GAMMA};

/// Makes the error of an error fault, boxed.
pub(crate) type ErrorFn = Arc<dyn Fn() -> BoxError + Send + Sync>;

/// What one fault does. The generic layer's builder makes only `Error`, `Latency` and
/// `Hang`; the HTTP layer's only `Status`, `Abort`, `Latency` and `Hang`.
#[derive(Clone)]
pub(crate) enum Action {
    Error(ErrorFn),
    Latency(Duration),
    Hang,
    #[cfg(feature = "http")]
    Status {
        status: http::StatusCode,
        retry_after: Option<http::HeaderValue>,
    },
    #[cfg(feature = "http")]
    Abort,
}

impl Action {
    fn kind(&self) -> Kind {
        match self {
            Action::Error(_) => Kind::Error,
            Action::Latency(_) => Kind::Latency,
            Action::Hang => Kind::Hang,
            #[cfg(feature = "http")]
            Action::Status { .. } => Kind::Status,
            #[cfg(feature = "http")]
            Action::Abort => Kind::Abort,
        }
    }
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Error(_) => f.write_str("Error"),
            Action::Latency(d) => f.debug_tuple("Latency").field(d).finish(),
            Action::Hang => f.write_str("Hang"),
            #[cfg(feature = "http")]
            Action::Status {
                status,
                retry_after,
            } => f
                .debug_struct("Status")
                .field("status", status)
                .field("retry_after", retry_after)
                .finish(),
            #[cfg(feature = "http")]
            Action::Abort => f.write_str("Abort"),
        }
    }
}

/// The kinds of fault, as counted in a [`Snapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Error = 0,
    Latency = 1,
    Hang = 2,
    #[cfg(feature = "http")]
    Status = 3,
    #[cfg(feature = "http")]
    Abort = 4,
}

const KINDS: usize = 5;

impl Kind {
    #[cfg(any(feature = "metrics", feature = "tracing"))]
    fn label(self) -> &'static str {
        match self {
            Kind::Error => "error",
            Kind::Latency => "latency",
            Kind::Hang => "hang",
            #[cfg(feature = "http")]
            Kind::Status => "status",
            #[cfg(feature = "http")]
            Kind::Abort => "abort",
        }
    }
}

/// One fault of the list, with its share of the injections.
pub(crate) struct Entry {
    pub(crate) action: Action,
    kind: Kind,
    /// The sum of the weights of this entry and every one before it.
    cumulative: u64,
    #[cfg(feature = "metrics")]
    injected: metrics::Counter,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("action", &self.action)
            .field("cumulative", &self.cumulative)
            .finish_non_exhaustive()
    }
}

/// What to do with one call, decided before it is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Send the call as it is.
    Pass,
    /// Inject the fault at this index of the list.
    Fault(u32),
}

/// The validated configuration common to both layers' builders.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) name: String,
    pub(crate) rate: f64,
    pub(crate) seed: u64,
    pub(crate) enabled: bool,
    /// Each fault with its weight (at least 1); not empty.
    pub(crate) faults: Vec<(Action, u32)>,
}

pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    seed: u64,
    /// [`ENABLED`] or'ed with the injection threshold (`0..=ONE`): one load tells a call
    /// whether to draw and what to compare the draw with.
    state: AtomicU64,
    /// The rate as set, for reading back exactly.
    rate: AtomicU64,
    /// Decisions drawn so far: the position in the seeded sequence, and the calls seen.
    draws: AtomicU64,
    faults: Box<[Entry]>,
    total_weight: u64,
    injected: [AtomicU64; KINDS],
    #[cfg(feature = "metrics")]
    effective_rate: metrics::Gauge,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.name)
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

/// `Ok` if `rate` is a probability.
pub(crate) fn check_rate(rate: f64) -> Result<(), ConfigError> {
    check((0.0..=1.0).contains(&rate), "rate", || {
        format!("must be a number from 0.0 to 1.0 (got {rate})")
    })
}

pub(crate) fn check(
    ok: bool,
    field: &'static str,
    reason: impl FnOnce() -> String,
) -> Result<(), ConfigError> {
    ConfigError::check("chaos", ok, field, reason)
}

/// The draw below which a call gets a fault, for a valid rate.
fn threshold(rate: f64) -> u64 {
    if rate >= 1.0 {
        ONE
    } else {
        // Exact: a power-of-two scale; the cast truncates to within 2^-53 of the rate.
        (rate * ONE as f64) as u64
    }
}

impl Shared {
    pub(crate) fn new(config: Config) -> Arc<Self> {
        let name: Arc<str> = Arc::from(config.name);
        let mut cumulative = 0u64;
        let faults: Box<[Entry]> = config
            .faults
            .into_iter()
            .map(|(action, weight)| {
                cumulative += u64::from(weight);
                let kind = action.kind();
                Entry {
                    #[cfg(feature = "metrics")]
                    injected: metrics::counter!(
                        "seawall_chaos_faults_total",
                        "policy" => name.to_string(),
                        "fault" => kind.label()
                    ),
                    action,
                    kind,
                    cumulative,
                }
            })
            .collect();
        let state = threshold(config.rate) | if config.enabled { ENABLED } else { 0 };
        let shared = Self {
            #[cfg(feature = "metrics")]
            effective_rate: metrics::gauge!(
                "seawall_chaos_injection_rate",
                "policy" => name.to_string()
            ),
            name,
            seed: config.seed,
            state: AtomicU64::new(state),
            rate: AtomicU64::new(config.rate.to_bits()),
            draws: AtomicU64::new(0),
            faults,
            total_weight: cumulative,
            injected: Default::default(),
        };
        shared.report_rate();
        #[cfg(feature = "tracing")]
        if config.enabled {
            tracing::debug!(
                target: "seawall::chaos",
                policy = &*shared.name,
                rate = config.rate,
                "fault injection built enabled"
            );
        }
        Arc::new(shared)
    }

    /// Decide the next call. Disabled: one relaxed load. Enabled: that load, one
    /// `fetch_add` and a SplitMix64 mix; a second mix only to pick which fault.
    #[inline]
    pub(crate) fn decide(&self) -> Decision {
        let state = self.state.load(Ordering::Relaxed);
        if state & ENABLED == 0 {
            return Decision::Pass;
        }
        let n = self.draws.fetch_add(1, Ordering::Relaxed);
        // The n-th output of a SplitMix64 generator seeded with `seed`.
        let z = mix(self
            .seed
            .wrapping_add(n.wrapping_add(1).wrapping_mul(GAMMA)));
        if z >> 11 >= state & !ENABLED {
            return Decision::Pass;
        }
        self.pick(z)
    }

    /// Which fault, in proportion to the weights, from a fresh mix of the draw.
    #[cold]
    fn pick(&self, z: u64) -> Decision {
        let point = ((u128::from(mix(z ^ GAMMA)) * u128::from(self.total_weight)) >> 64) as u64;
        let index = self.faults.partition_point(|e| e.cumulative <= point);
        u32::try_from(index).map_or(Decision::Pass, Decision::Fault)
    }

    /// The fault a decision names, if any.
    #[inline]
    pub(crate) fn entry(&self, decision: Decision) -> Option<&Entry> {
        match decision {
            Decision::Pass => None,
            Decision::Fault(index) => self.faults.get(index as usize),
        }
    }

    /// Count a fault as injected (when the call it replaces is made).
    #[cold]
    pub(crate) fn injected(&self, entry: &Entry) {
        self.injected[entry.kind as usize].fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        entry.injected.increment(1);
        #[cfg(feature = "tracing")]
        tracing::trace!(
            target: "seawall::chaos",
            policy = &*self.name,
            fault = entry.kind.label(),
            "fault injected"
        );
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.state.load(Ordering::Relaxed) & ENABLED != 0
    }

    pub(crate) fn rate(&self) -> f64 {
        f64::from_bits(self.rate.load(Ordering::Relaxed))
    }

    pub(crate) fn set_enabled(&self, enabled: bool) {
        let before = if enabled {
            self.state.fetch_or(ENABLED, Ordering::Relaxed)
        } else {
            self.state.fetch_and(!ENABLED, Ordering::Relaxed)
        };
        if (before & ENABLED != 0) != enabled {
            self.report_rate();
            #[cfg(feature = "tracing")]
            if enabled {
                tracing::debug!(
                    target: "seawall::chaos",
                    policy = &*self.name,
                    rate = self.rate(),
                    "fault injection enabled"
                );
            } else {
                tracing::debug!(
                    target: "seawall::chaos",
                    policy = &*self.name,
                    "fault injection disabled"
                );
            }
        }
    }

    pub(crate) fn set_rate(&self, rate: f64) -> Result<(), ConfigError> {
        check_rate(rate)?;
        self.rate.store(rate.to_bits(), Ordering::Relaxed);
        let threshold = threshold(rate);
        // The closure always answers `Some`: this cannot fail.
        let _ = self
            .state
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |state| {
                Some((state & ENABLED) | threshold)
            });
        self.report_rate();
        #[cfg(feature = "tracing")]
        tracing::debug!(
            target: "seawall::chaos",
            policy = &*self.name,
            rate,
            "fault injection rate set"
        );
        Ok(())
    }

    /// The gauge of the rate in effect: the rate while enabled, zero while disabled.
    fn report_rate(&self) {
        #[cfg(feature = "metrics")]
        self.effective_rate
            .set(if self.is_enabled() { self.rate() } else { 0.0 });
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let count = |kind: usize| self.injected[kind].load(Ordering::Relaxed);
        Snapshot {
            enabled: self.is_enabled(),
            rate: self.rate(),
            calls: self.draws.load(Ordering::Relaxed),
            errors: count(0),
            delays: count(1),
            hangs: count(2),
            statuses: count(3),
            aborts: count(4),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(rate: f64, weights: &[u32]) -> Arc<Shared> {
        Shared::new(Config {
            name: "t".to_owned(),
            rate,
            seed: 42,
            enabled: true,
            faults: weights.iter().map(|&w| (Action::Hang, w)).collect(),
        })
    }

    #[test]
    fn thresholds() {
        assert_eq!(threshold(0.0), 0);
        assert_eq!(threshold(1.0), ONE);
        assert_eq!(threshold(0.5), ONE / 2);
    }

    #[test]
    fn picks_follow_weights() {
        let s = shared(1.0, &[1, 3]);
        let mut counts = [0u32; 2];
        for _ in 0..40_000 {
            match s.decide() {
                Decision::Fault(i) => counts[i as usize] += 1,
                Decision::Pass => panic!("rate 1 passed a call"),
            }
        }
        // Expected 10 000 and 30 000; sd = sqrt(40 000 * 0.25 * 0.75) ~ 87.
        assert!((9_550..=10_450).contains(&counts[0]), "{counts:?}");
    }

    #[test]
    fn disabled_draws_nothing() {
        let s = shared(1.0, &[1]);
        s.set_enabled(false);
        assert_eq!(s.decide(), Decision::Pass);
        assert_eq!(s.snapshot().calls, 0);
    }
}
