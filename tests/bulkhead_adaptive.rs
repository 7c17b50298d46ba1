//! The adaptive limit algorithms against a simulated downstream, plus their configuration
//! errors, bounds and thread safety.
//!
//! The simulation ([`sim`]) is deterministic: simulated time in nanoseconds, an event
//! queue, and a seeded SplitMix64 for arrivals and jitter. The downstream serves
//! `capacity` calls at once in 10 ms (±10 % jitter); past that, calls queue and each takes
//! `10 ms × in_flight / capacity`; past twice the capacity it drops calls (an error after
//! 10 ms). A client offers three times the most the downstream can ever serve, as a
//! Poisson stream, and admits a call only while fewer than the current limit are in
//! flight; every completion goes to `update`. Each run has three phases of 40 000
//! completions: capacity C, then C/2, then C again.
//!
//! `examples/adaptive_convergence.rs` runs the same simulation and prints the tables.
#![cfg(feature = "bulkhead")]

use std::sync::Arc;
use std::time::Duration;

use seawall::bulkhead::adaptive::{Aimd, Gradient2, LimitAlgorithm, Sample, Vegas, MAX_LIMIT};
use seawall::error::ConfigError;

/// The simulated downstream and client.
pub mod sim {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    use std::time::Duration;

    use seawall::bulkhead::adaptive::{LimitAlgorithm, Sample};

    /// Latency of one call while the downstream is below its capacity.
    pub const BASE_LATENCY: Duration = Duration::from_millis(10);
    /// Each call's latency is scaled by a uniform factor in `1 ± JITTER`.
    pub const JITTER: f64 = 0.1;
    /// The client offers this many times the largest capacity's throughput.
    pub const OFFERED_LOAD: f64 = 3.0;
    /// Completions per phase.
    pub const PHASE_COMPLETIONS: usize = 40_000;
    /// A limit within this share of the capacity has settled.
    pub const BAND: f64 = 0.25;

    /// A small seeded generator (SplitMix64), so that every run is reproducible.
    #[derive(Debug, Clone)]
    pub struct SplitMix64(u64);

    impl SplitMix64 {
        /// A generator seeded with `seed`.
        pub fn new(seed: u64) -> Self {
            Self(seed)
        }

        /// The next 64 random bits.
        pub fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        /// A uniform value in `[0, 1)`.
        pub fn unit(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// What one phase looked like.
    #[derive(Debug, Clone)]
    pub struct Phase {
        /// The downstream's capacity during the phase.
        pub capacity: u32,
        /// Completions into the phase after which the limit stayed within
        /// `capacity × (1 ± BAND)` to the end of the phase; `None` if it was outside at
        /// the end.
        pub settled_after: Option<usize>,
        /// The limit at the phase's last completion.
        pub end_limit: u32,
        /// The lowest and highest limit over the phase's second half.
        pub late_range: (u32, u32),
        /// Mean and 99th-percentile latency of the calls answered (not dropped).
        pub mean_latency: Duration,
        /// See `mean_latency`.
        pub p99_latency: Duration,
        /// Calls the downstream dropped.
        pub dropped: usize,
        /// Calls the client shed because the limit was reached.
        pub shed: usize,
    }

    impl Phase {
        /// Whether the limit settled within the band by `bound` completions.
        pub fn settled_within(&self, bound: usize) -> bool {
            self.settled_after.is_some_and(|n| n <= bound)
        }
    }

    /// A call in the downstream, ordered by when it completes (then by admission, so
    /// that ties are deterministic).
    type Pending = Reverse<(u64, u64, u64, u32, u32, bool)>;

    /// Runs `algorithm` through one phase per entry of `capacities`.
    pub fn run<A: LimitAlgorithm + ?Sized>(
        algorithm: &A,
        capacities: &[u32],
        seed: u64,
    ) -> Vec<Phase> {
        let base = BASE_LATENCY.as_nanos() as f64;
        let most = capacities.iter().copied().max().unwrap_or(1);
        let arrivals_per_nano = OFFERED_LOAD * f64::from(most) / base;

        let mut rng = SplitMix64::new(seed);
        let mut pending: BinaryHeap<Pending> = BinaryHeap::new();
        let mut next_arrival = 0u64;
        let mut admitted = 0u64;
        let mut in_flight = 0u32;
        let mut limit = algorithm.initial_limit();
        let mut phases = Vec::with_capacity(capacities.len());

        for &capacity in capacities {
            let capacity = capacity.max(1);
            let (low, high) = band(capacity);
            let mut completions = 0usize;
            let mut settled_after = Some(0usize);
            let mut limits = Vec::with_capacity(PHASE_COMPLETIONS);
            let mut latencies = Vec::with_capacity(PHASE_COMPLETIONS);
            let (mut dropped, mut shed) = (0usize, 0usize);

            while completions < PHASE_COMPLETIONS {
                let completion_due = pending
                    .peek()
                    .is_some_and(|Reverse(call)| call.0 <= next_arrival);
                if completion_due {
                    let Some(Reverse((_, _, rtt, started_with, started_under, drop))) =
                        pending.pop()
                    else {
                        break;
                    };
                    in_flight -= 1;
                    limit = algorithm.update(Sample::new(
                        Duration::from_nanos(rtt),
                        started_with,
                        started_under,
                        drop,
                    ));
                    completions += 1;
                    if drop {
                        dropped += 1;
                    } else {
                        latencies.push(rtt);
                    }
                    let within = (low..=high).contains(&f64::from(limit));
                    if !within {
                        settled_after = (completions < PHASE_COMPLETIONS).then_some(completions);
                    }
                    limits.push(limit);
                } else {
                    let now = next_arrival;
                    let gap = -(1.0 - rng.unit()).ln() / arrivals_per_nano;
                    next_arrival = now + (gap as u64).max(1);
                    if in_flight >= limit {
                        shed += 1;
                        continue;
                    }
                    in_flight += 1;
                    admitted += 1;
                    let (rtt, drop) = if in_flight > 2 * capacity {
                        (base as u64, true)
                    } else {
                        let queueing = (f64::from(in_flight) / f64::from(capacity)).max(1.0);
                        let jitter = 1.0 + JITTER * (2.0 * rng.unit() - 1.0);
                        ((base * queueing * jitter) as u64, false)
                    };
                    pending.push(Reverse((now + rtt, admitted, rtt, in_flight, limit, drop)));
                }
            }

            latencies.sort_unstable();
            let late = &limits[limits.len() / 2..];
            phases.push(Phase {
                capacity,
                settled_after,
                end_limit: limit,
                late_range: (
                    late.iter().copied().min().unwrap_or(0),
                    late.iter().copied().max().unwrap_or(0),
                ),
                mean_latency: mean(&latencies),
                p99_latency: percentile(&latencies, 0.99),
                dropped,
                shed,
            });
        }
        phases
    }

    /// The settled band of a capacity: `capacity × (1 ± BAND)`.
    pub fn band(capacity: u32) -> (f64, f64) {
        let c = f64::from(capacity);
        (c * (1.0 - BAND), c * (1.0 + BAND))
    }

    fn mean(sorted: &[u64]) -> Duration {
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let sum: u128 = sorted.iter().map(|&n| u128::from(n)).sum();
        Duration::from_nanos((sum / sorted.len() as u128) as u64)
    }

    fn percentile(sorted: &[u64], p: f64) -> Duration {
        let index = ((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1));
        Duration::from_nanos(sorted.get(index).copied().unwrap_or(0))
    }
}

// ===== convergence in the simulation =====

/// Every phase must settle within ±25 % of its capacity by this many completions (and
/// stay there for the remaining 20 000 or more).
const SETTLE_BOUND: usize = 20_000;
const SEEDS: [u64; 5] = [1, 2, 3, 4, 5];

/// Runs C → C/2 → C for each seed and checks that every phase settles in time: (1) it
/// finds C, (2) it backs off to C/2, (3) it climbs back to C.
fn assert_tracks<A: LimitAlgorithm>(make: impl Fn() -> A, capacity: u32) {
    for seed in SEEDS {
        let algorithm = make();
        let phases = sim::run(&algorithm, &[capacity, capacity / 2, capacity], seed);
        for (what, phase) in ["finds", "backs off to", "climbs back to"]
            .iter()
            .zip(&phases)
        {
            assert!(
                phase.settled_within(SETTLE_BOUND),
                "{algorithm:?} never {what} {} ± 25 % within {SETTLE_BOUND} completions \
                 (seed {seed}): {phase:?}",
                phase.capacity,
            );
        }
    }
}

// The algorithms as the simulation runs them (the example uses these too): defaults,
// except that the max limit is raised from 200 so that it is not what holds the limit
// near a capacity of 200.

/// AIMD sees only drops and timeouts, so it gets the timeout a client of a 10 ms service
/// would set: 12 ms, 20 % over the no-load latency. (With the default 5 s it settles near
/// twice the capacity, where the drops start; see
/// `aimd_on_drops_alone_settles_where_drops_start_not_at_capacity`.)
pub fn aimd() -> Aimd {
    Aimd::builder()
        .timeout(Duration::from_millis(12))
        .max_limit(1_000)
        .build()
        .unwrap()
}

/// AIMD with its defaults: drops (and calls over 5 s) only.
pub fn aimd_on_drops_alone() -> Aimd {
    Aimd::builder().max_limit(1_000).build().unwrap()
}

/// Gradient2 with its defaults.
pub fn gradient2() -> Gradient2 {
    Gradient2::builder().max_limit(1_000).build().unwrap()
}

/// Vegas with its defaults (its max limit is 1000 already).
pub fn vegas() -> Vegas {
    Vegas::builder().max_limit(1_000).build().unwrap()
}

#[test]
fn aimd_tracks_capacity_50_within_20k_completions_per_phase() {
    assert_tracks(aimd, 50);
}

#[test]
fn aimd_tracks_capacity_200_within_20k_completions_per_phase() {
    assert_tracks(aimd, 200);
}

#[test]
fn gradient2_tracks_capacity_50_within_20k_completions_per_phase() {
    assert_tracks(gradient2, 50);
}

#[test]
fn gradient2_tracks_capacity_200_within_20k_completions_per_phase() {
    assert_tracks(gradient2, 200);
}

// Vegas keeps 3 to 6 × log10(limit) calls queued by design (Netflix's alpha and beta):
// 4 to 9 at a capacity of 25, more than 25 % of it. So its capacities start at 100,
// whose half (50) leaves room for its queue; the example's table shows 50 → 25 failing.
#[test]
fn vegas_tracks_capacity_100_within_20k_completions_per_phase() {
    assert_tracks(vegas, 100);
}

#[test]
fn vegas_tracks_capacity_200_within_20k_completions_per_phase() {
    assert_tracks(vegas, 200);
}

#[test]
fn aimd_on_drops_alone_settles_where_drops_start_not_at_capacity() {
    let phases = sim::run(&aimd_on_drops_alone(), &[100], 1);
    let (low, high) = phases[0].late_range;
    // Drops start past 2 × capacity; the sawtooth backs off by 10 % from there.
    assert!(low >= 170 && high <= 210, "{:?}", phases[0]);
    assert!(!phases[0].settled_within(SETTLE_BOUND));
}

#[test]
fn the_simulation_is_deterministic() {
    let runs: Vec<_> = (0..2)
        .map(|_| sim::run(&gradient2(), &[60, 30], 7))
        .map(|phases| {
            phases
                .iter()
                .map(|p| (p.settled_after, p.end_limit, p.mean_latency, p.shed))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(runs[0], runs[1]);
}

// ===== configuration errors: one test per field =====

fn assert_config_error(result: Result<impl std::fmt::Debug, ConfigError>, field: &str, got: &str) {
    let err = result.unwrap_err();
    assert_eq!(err.component(), "adaptive");
    assert_eq!(err.field(), field);
    assert!(err.to_string().contains(got), "{err}");
}

#[test]
fn aimd_rejects_bad_initial_limit() {
    assert_config_error(
        Aimd::builder().initial_limit(201).build(),
        "initial_limit",
        "201",
    );
    assert_config_error(
        Aimd::builder().min_limit(5).initial_limit(4).build(),
        "initial_limit",
        "4",
    );
}

#[test]
fn aimd_rejects_bad_min_limit() {
    assert_config_error(Aimd::builder().min_limit(0).build(), "min_limit", "0");
}

#[test]
fn aimd_rejects_bad_max_limit() {
    assert_config_error(
        Aimd::builder()
            .min_limit(10)
            .max_limit(9)
            .initial_limit(10)
            .build(),
        "max_limit",
        "9",
    );
    assert_config_error(
        Aimd::builder().max_limit(MAX_LIMIT + 1).build(),
        "max_limit",
        "1000001",
    );
}

#[test]
fn aimd_rejects_bad_backoff_ratio() {
    for ratio in [1.0, 0.49, f64::NAN, -0.9] {
        assert_config_error(
            Aimd::builder().backoff_ratio(ratio).build(),
            "backoff_ratio",
            &ratio.to_string(),
        );
    }
}

#[test]
fn aimd_rejects_bad_timeout() {
    assert_config_error(
        Aimd::builder().timeout(Duration::ZERO).build(),
        "timeout",
        "zero",
    );
}

#[test]
fn vegas_rejects_bad_initial_limit() {
    assert_config_error(
        Vegas::builder().initial_limit(1001).build(),
        "initial_limit",
        "1001",
    );
}

#[test]
fn vegas_rejects_bad_min_limit() {
    assert_config_error(Vegas::builder().min_limit(0).build(), "min_limit", "0");
}

#[test]
fn vegas_rejects_bad_max_limit() {
    assert_config_error(Vegas::builder().max_limit(0).build(), "max_limit", "0");
    assert_config_error(
        Vegas::builder().max_limit(MAX_LIMIT + 1).build(),
        "max_limit",
        "1000001",
    );
}

#[test]
fn vegas_rejects_bad_alpha() {
    assert_config_error(Vegas::builder().alpha(0.5).build(), "alpha", "0.5");
    assert_config_error(Vegas::builder().alpha(f64::NAN).build(), "alpha", "NaN");
}

#[test]
fn vegas_rejects_bad_beta() {
    assert_config_error(Vegas::builder().beta(3.0).build(), "beta", "3");
    assert_config_error(Vegas::builder().beta(f64::INFINITY).build(), "beta", "inf");
}

#[test]
fn vegas_rejects_bad_threshold() {
    assert_config_error(Vegas::builder().threshold(-1.0).build(), "threshold", "-1");
    assert_config_error(
        Vegas::builder().threshold(f64::NAN).build(),
        "threshold",
        "NaN",
    );
    assert_config_error(
        Vegas::builder().threshold(4.0).build(),
        "alpha",
        "threshold (4)",
    );
}

#[test]
fn vegas_rejects_bad_smoothing() {
    for smoothing in [0.0, 1.5, f64::NAN] {
        assert_config_error(
            Vegas::builder().smoothing(smoothing).build(),
            "smoothing",
            &smoothing.to_string(),
        );
    }
}

#[test]
fn vegas_rejects_bad_probe_interval() {
    assert_config_error(
        Vegas::builder().probe_interval(0).build(),
        "probe_interval",
        "0",
    );
}

#[test]
fn gradient2_rejects_bad_initial_limit() {
    assert_config_error(
        Gradient2::builder().initial_limit(0).build(),
        "initial_limit",
        "0",
    );
}

#[test]
fn gradient2_rejects_bad_min_limit() {
    assert_config_error(Gradient2::builder().min_limit(0).build(), "min_limit", "0");
}

#[test]
fn gradient2_rejects_bad_max_limit() {
    assert_config_error(
        Gradient2::builder().max_limit(19).build(),
        "initial_limit",
        "19",
    );
    assert_config_error(
        Gradient2::builder().min_limit(30).max_limit(25).build(),
        "max_limit",
        "25",
    );
    assert_config_error(
        Gradient2::builder().max_limit(u32::MAX).build(),
        "max_limit",
        &u32::MAX.to_string(),
    );
}

#[test]
fn gradient2_rejects_bad_tolerance() {
    for tolerance in [0.99, f64::NAN, f64::INFINITY] {
        assert_config_error(
            Gradient2::builder().tolerance(tolerance).build(),
            "tolerance",
            &tolerance.to_string(),
        );
    }
}

#[test]
fn gradient2_rejects_bad_smoothing() {
    for smoothing in [0.0, -0.2, 1.01] {
        assert_config_error(
            Gradient2::builder().smoothing(smoothing).build(),
            "smoothing",
            &smoothing.to_string(),
        );
    }
}

#[test]
fn gradient2_rejects_bad_short_window() {
    assert_config_error(
        Gradient2::builder().short_window(0).build(),
        "short_window",
        "0",
    );
}

#[test]
fn gradient2_rejects_bad_probe_interval() {
    assert_config_error(
        Gradient2::builder().probe_interval(0).build(),
        "probe_interval",
        "0",
    );
}

// ===== defaults and bounds =====

#[test]
fn defaults_are_the_documented_ones() {
    let aimd = Aimd::builder().build().unwrap();
    let vegas = Vegas::builder().build().unwrap();
    let gradient2 = Gradient2::builder().build().unwrap();
    let limits = |a: &dyn LimitAlgorithm| (a.initial_limit(), a.min_limit(), a.max_limit());
    assert_eq!(limits(&aimd), (20, 1, 200));
    assert_eq!(limits(&vegas), (20, 1, 1000));
    assert_eq!(limits(&gradient2), (20, 1, 200));
    assert_eq!(aimd.limit(), 20);
    assert_eq!(vegas.limit(), 20);
    assert_eq!(gradient2.limit(), 20);
}

fn algorithms(min: u32, max: u32) -> Vec<Arc<dyn LimitAlgorithm>> {
    vec![
        Arc::new(
            Aimd::builder()
                .min_limit(min)
                .max_limit(max)
                .initial_limit(min)
                .timeout(Duration::from_millis(50))
                .build()
                .unwrap(),
        ),
        Arc::new(
            Vegas::builder()
                .min_limit(min)
                .max_limit(max)
                .initial_limit(min)
                .probe_interval(3)
                .build()
                .unwrap(),
        ),
        Arc::new(
            Gradient2::builder()
                .min_limit(min)
                .max_limit(max)
                .initial_limit(min)
                .probe_interval(3)
                .build()
                .unwrap(),
        ),
    ]
}

#[test]
fn fast_calls_grow_the_limit_to_max_and_no_further() {
    for algorithm in algorithms(5, 40) {
        let mut limit = algorithm.initial_limit();
        let mut highest = 0;
        for _ in 0..20_000 {
            limit = algorithm.update(Sample::new(Duration::from_millis(10), limit, limit, false));
            assert!((5..=40).contains(&limit), "{algorithm:?}: {limit}");
            highest = highest.max(limit);
        }
        assert_eq!(highest, 40, "{algorithm:?}");
        // The latency-based ones probe at 90 % of the limit now and then.
        assert!(limit >= 36, "{algorithm:?}: {limit}");
    }
}

#[test]
fn drops_shrink_the_limit_to_min_and_no_further() {
    for algorithm in algorithms(5, 40) {
        let mut limit = algorithm.initial_limit();
        for _ in 0..5_000 {
            limit = algorithm.update(Sample::new(Duration::from_millis(10), limit, limit, false));
        }
        assert!(limit > 5, "{algorithm:?}");
        for _ in 0..5_000 {
            limit = algorithm.update(Sample::new(Duration::from_millis(10), limit, limit, true));
            assert!((5..=40).contains(&limit), "{algorithm:?}: {limit}");
        }
        assert_eq!(limit, 5, "{algorithm:?}");
    }
}

#[test]
fn latency_that_grows_with_concurrency_holds_the_latency_based_limits_near_the_knee() {
    // A downstream that serves 10 calls at once in 10 ms and queues the rest, fed with
    // exactly as many calls as the limit allows.
    for algorithm in algorithms(1, 100).into_iter().skip(1) {
        let mut limit = algorithm.initial_limit();
        let mut highest_late = 0;
        for call in 0..20_000 {
            let rtt = Duration::from_millis(10) * limit.max(10) / 10;
            limit = algorithm.update(Sample::new(rtt, limit, limit, false));
            assert!((1..=100).contains(&limit), "{algorithm:?}: {limit}");
            if call >= 10_000 {
                highest_late = highest_late.max(limit);
            }
        }
        // Vegas keeps up to 6 × log10 calls queued (6 at these limits); Gradient2 about
        // 5 % plus log10.
        assert!((9..=16).contains(&limit), "{algorithm:?}: {limit}");
        assert!(highest_late <= 17, "{algorithm:?}: {highest_late}");
    }
}

#[test]
fn odd_samples_keep_the_limit_in_bounds() {
    for algorithm in algorithms(2, 30) {
        let odd = [
            Sample::new(Duration::ZERO, 0, 0, false),
            Sample::new(Duration::MAX, u32::MAX, u32::MAX, false),
            Sample::new(Duration::MAX, 1, 0, true),
            Sample::new(Duration::from_nanos(1), u32::MAX, 1, false),
        ];
        for _ in 0..2_000 {
            for sample in odd {
                let limit = algorithm.update(sample);
                assert!((2..=30).contains(&limit), "{algorithm:?}: {limit}");
            }
        }
    }
}

#[test]
fn a_queue_size_that_is_not_a_number_counts_as_zero() {
    let gradient = Gradient2::builder()
        .queue_size(|_| f64::NAN)
        .max_limit(50)
        .build()
        .unwrap();
    let mut limit = gradient.initial_limit();
    for _ in 0..5_000 {
        limit = gradient.update(Sample::new(Duration::from_millis(10), limit, limit, false));
        assert!((1..=50).contains(&limit));
    }
    // With no queue and no slower rounds, the gradient's headroom alone still grows it.
    assert!(gradient.limit() > 20);
}

#[test]
fn an_arc_is_an_algorithm_too() {
    let shared = Arc::new(Aimd::builder().build().unwrap());
    let limit = shared.update(Sample::new(Duration::from_millis(1), 20, 20, false));
    assert_eq!(limit, 21);
    assert_eq!(shared.limit(), 21);
    assert_eq!(LimitAlgorithm::max_limit(&shared), 200);
}

// ===== concurrency =====

#[test]
fn concurrent_updates_never_leave_min_to_max() {
    const THREADS: u64 = 8;
    const UPDATES: usize = 50_000;
    for algorithm in algorithms(4, 64) {
        let handles: Vec<_> = (0..THREADS)
            .map(|thread| {
                let algorithm = algorithm.clone();
                std::thread::spawn(move || {
                    let mut rng = sim::SplitMix64::new(thread + 1);
                    let mut limit = algorithm.initial_limit();
                    for _ in 0..UPDATES {
                        let roll = rng.next_u64();
                        let rtt = Duration::from_micros(5_000 + roll % 20_000);
                        let in_flight = 1 + (roll >> 20) as u32 % (limit + 1);
                        let dropped = roll % 97 == 0;
                        limit = algorithm.update(Sample::new(rtt, in_flight, limit, dropped));
                        assert!((4..=64).contains(&limit), "{algorithm:?}: {limit}");
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        let after = algorithm.update(Sample::new(Duration::from_millis(10), 4, 4, false));
        assert!((4..=64).contains(&after), "{algorithm:?}: {after}");
    }
}
