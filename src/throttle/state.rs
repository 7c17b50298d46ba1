//! The state every clone of a throttle shares: the window, the coin, the counters.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::window::{Counts, Outcome, Window};
use super::Snapshot;
use crate::metrics::ThrottleMetrics;
use crate::sync::CachePadded;
use crate::time::{Clock, Jitter};

/// What a service decided for its next call in `poll_ready`, kept for `call`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Send the call; count its outcome in `slot`.
    Send { slot: u64 },
    /// Refuse the call with `Throttled`; count it as a request in `slot`.
    Throttle { slot: u64 },
}

/// The configuration, checked by the builder.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) name: Arc<str>,
    pub(crate) k: f64,
    /// No call is refused while fewer requests than this were sent in the window.
    pub(crate) minimum_calls: u64,
    pub(crate) window: Duration,
    pub(crate) buckets: u32,
    pub(crate) slot_nanos: u64,
    pub(crate) seed: u64,
}

pub(crate) struct Shared {
    pub(crate) config: Config,
    clock: Clock,
    window: Window,
    /// The coin of every rejection: a seeded SplitMix64 stream over one atomic. Only
    /// flipped while the probability is above zero.
    coin: CachePadded<Jitter>,
    /// Calls refused since the throttle was built.
    rejections: CachePadded<AtomicU64>,
    /// Whether the last decision saw a probability above zero: read on every call,
    /// written only when throttling starts or stops.
    throttling: AtomicBool,
    metrics: ThrottleMetrics,
}

impl Shared {
    pub(crate) fn new(config: Config) -> Arc<Self> {
        let metrics = ThrottleMetrics::new(&config.name);
        Arc::new(Self {
            clock: Clock::new(),
            window: Window::new(config.buckets),
            coin: CachePadded::new(Jitter::new(config.seed)),
            rejections: CachePadded::new(AtomicU64::new(0)),
            throttling: AtomicBool::new(false),
            metrics,
            config,
        })
    }

    #[inline]
    fn slot_now(&self) -> u64 {
        self.clock.now() / self.config.slot_nanos
    }

    /// Decide the next call: one clock read, the window's sum, and a coin flip only
    /// while the probability is above zero.
    #[inline]
    pub(crate) fn decide(&self) -> Decision {
        let slot = self.slot_now();
        let probability = self.probability_of(self.window.counts(slot));
        if probability > 0.0 {
            self.note_throttling(probability);
            if self.coin.next_unit() < probability {
                return Decision::Throttle { slot };
            }
        } else if self.throttling.load(Ordering::Relaxed) {
            self.note_stopped();
        }
        Decision::Send { slot }
    }

    /// The probability is above zero: report it, and say so if throttling just started.
    #[cold]
    fn note_throttling(&self, probability: f64) {
        self.metrics.probability(probability);
        if !self.throttling.load(Ordering::Relaxed)
            && !self.throttling.swap(true, Ordering::Relaxed)
        {
            #[cfg(feature = "tracing")]
            tracing::debug!(
                target: "seawall::throttle",
                policy = &*self.config.name,
                probability,
                "throttling started: the backend is rejecting requests"
            );
        }
    }

    /// The probability is back at zero after throttling.
    #[cold]
    fn note_stopped(&self) {
        if self.throttling.swap(false, Ordering::Relaxed) {
            self.metrics.probability(0.0);
            #[cfg(feature = "tracing")]
            tracing::debug!(
                target: "seawall::throttle",
                policy = &*self.config.name,
                "throttling stopped"
            );
        }
    }

    /// Count the outcome of a call that was sent, in the slot it was decided in.
    #[inline]
    pub(crate) fn record(&self, slot: u64, outcome: Outcome) {
        self.window.record(slot, outcome);
    }

    /// Count a refused call: a request that was not accepted.
    pub(crate) fn throttled(&self, slot: u64) {
        self.window.record(slot, Outcome::Refused);
        self.rejections.fetch_add(1, Ordering::Relaxed);
        self.metrics.throttled();
    }

    pub(crate) fn counts(&self) -> Counts {
        self.window.counts(self.slot_now())
    }

    /// The probability of refusing a call, for the window's `counts`.
    #[inline]
    pub(crate) fn probability_of(&self, counts: Counts) -> f64 {
        counts.probability(self.config.k, self.config.minimum_calls)
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let counts = self.counts();
        Snapshot {
            requests: counts.requests,
            accepts: counts.accepts,
            sent: counts.sent,
            probability: self.probability_of(counts),
            rejections: self.rejections.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn reset(&self) {
        self.window.reset();
        self.note_stopped();
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("snapshot", &self.snapshot())
            .finish_non_exhaustive()
    }
}
