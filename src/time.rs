//! The one clock every layer reads: `tokio::time::Instant`, so that
//! `tokio::time::pause` drives every test. Times are kept as nanoseconds since a base
//! instant so that they fit in an `AtomicU64`.

// The breaker uses all of this; a build with only the bulkhead uses part of it.
#![cfg_attr(not(feature = "circuit-breaker"), allow(dead_code))]

use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    base: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self {
            base: Instant::now(),
        }
    }

    /// Nanoseconds since the base instant (never before it).
    pub(crate) fn now(&self) -> u64 {
        self.since_base(Instant::now())
    }

    pub(crate) fn since_base(&self, at: Instant) -> u64 {
        duration_to_nanos(at.saturating_duration_since(self.base))
    }

    pub(crate) fn instant(&self, nanos: u64) -> Instant {
        self.base + Duration::from_nanos(nanos)
    }
}

/// A duration as nanoseconds, saturating at `u64::MAX` (about 584 years).
pub(crate) fn duration_to_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A seedable SplitMix64 generator over an atomic, for jitter. A few lines replace a
/// dependency on `rand`; quality is ample for spreading open durations.
#[derive(Debug)]
pub(crate) struct Jitter {
    state: std::sync::atomic::AtomicU64,
}

impl Jitter {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            state: std::sync::atomic::AtomicU64::new(seed),
        }
    }

    /// A uniform value in `[0, 1)`.
    pub(crate) fn next_unit(&self) -> f64 {
        let z = splitmix(
            self.state
                .fetch_add(SPLITMIX_GAMMA, std::sync::atomic::Ordering::Relaxed)
                .wrapping_add(SPLITMIX_GAMMA),
        );
        // 53 random bits into [0, 1).
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// SplitMix64's increment (the golden ratio).
pub(crate) const SPLITMIX_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function: a well-mixed 64-bit value from a counter state.
#[inline]
pub(crate) fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed that differs between processes, for when the user sets none.
pub(crate) fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x5ea3a11);
    h.finish()
}
