//! An online latency histogram over a rotating time window, for the percentile delay.
//!
//! # Buckets
//!
//! Latencies are counted in whole microseconds in log-linear buckets: every power of two
//! is split into [`SUB`] (16) equal sub-buckets, and values below 16 µs have a bucket
//! each. A bucket's width is therefore at most 1/16 of its lower edge. The percentile is
//! reported as the inclusive upper edge of the bucket holding the sample of its rank, so
//! it is never below the true percentile of the samples (less the sub-microsecond part
//! they were truncated by), and at most 1/16 (6.25 %) above it. Latencies of 2³² µs
//! (about 71.6 minutes) or more all count as just under 2³² µs.
//!
//! # Window
//!
//! The window is kept in [`SLICES`] slices, each a full set of bucket counters tagged
//! with the time slot it holds (as the retry budget's buckets are). Recording a latency
//! is one `fetch_add` on the counter of its bucket in the current slice, after one load
//! of the slice's tag. The first recording in a new slot recycles the slice: it claims
//! it (tag `RECYCLING`), zeroes its counters, and publishes the new slot. Samples that
//! arrive while a slice is being recycled, or that are too late for their slot, are
//! dropped: a handful per rotation at most, which moves no percentile. No thread ever
//! waits for another. A latency therefore counts for between five sixths of the window
//! and the whole window.
//!
//! # The delay
//!
//! Computing the percentile reads every counter of the live slices (a few thousand
//! loads), so it is done rarely: at most once per refresh interval (a second, or one
//! slice if slices are shorter), by the one caller that claims the refresh with a
//! compare-and-swap. The result is cached in an atomic; every other call reads the cache.
//!
//! # Why it has no loom model
//!
//! Nothing here is held, given back or charged: the window only estimates a delay, and
//! every race costs accuracy, never safety. A sample racing with its slice's recycling is
//! dropped or counted in the new slot (a handful per rotation, as above); a merge taken
//! while others record misses the samples that land during it; two refreshes cannot run
//! in the same interval (one compare-and-swap on `next_refresh`), and if one did, the
//! later store of the cached delay would only be a slightly older estimate. The worst
//! outcome is a hedge sent a little early or late, and every hedge is still charged to
//! the retry budget, whose ledger has loom models (`retry/budget.rs`).

use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::sync::CachePadded;
use crate::time::{duration_to_nanos, Clock};

/// How many slices the window is kept in.
pub(crate) const SLICES: u64 = 6;
/// log2 of the sub-buckets per power of two.
const SUB_BITS: u32 = 4;
/// Sub-buckets per power of two: the relative precision is `1 / SUB`.
pub(crate) const SUB: u64 = 1 << SUB_BITS;
/// Latencies from `2^MAX_EXP` µs up share the top bucket.
const MAX_EXP: u32 = 32;
/// The largest latency, in µs, that has a bucket of its own.
const MAX_MICROS: u64 = (1 << MAX_EXP) - 1;
/// Buckets per slice: 16 exact ones below 16 µs, then 16 per power of two.
pub(crate) const BUCKETS: usize = ((MAX_EXP - SUB_BITS + 1) as usize) * SUB as usize;
/// A slice that has never held a time slot.
const EMPTY: u64 = u64::MAX;
/// A slice that one thread is moving to a new time slot.
const RECYCLING: u64 = u64::MAX - 1;
/// The cached delay when the window holds too few samples: no hedging.
const NO_DELAY: u64 = u64::MAX;
/// The longest refresh interval.
const MAX_REFRESH_NANOS: u64 = 1_000_000_000;

/// The bucket of a latency of `micros` microseconds.
#[inline]
pub(crate) fn bucket_of(micros: u64) -> usize {
    let v = micros.min(MAX_MICROS);
    if v < SUB {
        return v as usize;
    }
    // The power of two at or below `v`: 4..=31.
    let exp = 63 - v.leading_zeros();
    let sub = (v >> (exp - SUB_BITS)) & (SUB - 1);
    (u64::from(exp - SUB_BITS + 1) * SUB + sub) as usize
}

/// The largest latency, in µs, that falls in `bucket`.
pub(crate) fn upper_edge(bucket: usize) -> u64 {
    let i = bucket as u64;
    if i < SUB {
        return i;
    }
    let exp = (i / SUB) as u32 + SUB_BITS - 1;
    let width = 1u64 << (exp - SUB_BITS);
    ((SUB + i % SUB) << (exp - SUB_BITS)) + width - 1
}

/// One slice of the window: a set of bucket counters and the time slot they count.
#[derive(Debug)]
struct Slice {
    slot: AtomicU64,
    counts: [AtomicU64; BUCKETS],
}

/// The delay every call reads, and when it is next recomputed: one cache line, written
/// once per refresh.
#[derive(Debug)]
struct Cached {
    /// The delay in µs, or [`NO_DELAY`].
    delay: AtomicU64,
    /// Clock nanoseconds from which the next caller recomputes the delay.
    next_refresh: AtomicU64,
}

/// A latency histogram over a rotating window; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct LatencyWindow {
    clock: Clock,
    slice_nanos: NonZeroU64,
    refresh_nanos: u64,
    percentile: f64,
    min_samples: u64,
    cached: CachePadded<Cached>,
    slices: Box<[CachePadded<Slice>]>,
}

impl LatencyWindow {
    /// A window of [`SLICES`] slices of `slice_nanos` (see [`slice_nanos`](Self::slice_nanos))
    /// whose delay is the `percentile` (in (0, 1)) once it holds `min_samples` latencies.
    pub(crate) fn new(percentile: f64, min_samples: u64, slice_nanos: NonZeroU64) -> Self {
        Self {
            clock: Clock::new(),
            slice_nanos,
            refresh_nanos: slice_nanos.get().min(MAX_REFRESH_NANOS),
            percentile,
            min_samples,
            cached: CachePadded::new(Cached {
                delay: AtomicU64::new(NO_DELAY),
                next_refresh: AtomicU64::new(0),
            }),
            slices: (0..SLICES)
                .map(|_| {
                    CachePadded::new(Slice {
                        slot: AtomicU64::new(EMPTY),
                        counts: std::array::from_fn(|_| AtomicU64::new(0)),
                    })
                })
                .collect(),
        }
    }

    /// The slice length for a window, if the window is valid (slices of at least 1 ms).
    pub(crate) fn slice_nanos(window: Duration) -> Option<NonZeroU64> {
        NonZeroU64::new(duration_to_nanos(window) / SLICES).filter(|n| n.get() >= 1_000_000)
    }

    /// Clock nanoseconds of `at`.
    #[inline]
    pub(crate) fn nanos(&self, at: tokio::time::Instant) -> u64 {
        self.clock.since_base(at)
    }

    /// Count one latency, finished at clock nanoseconds `now`.
    pub(crate) fn record(&self, latency: Duration, now: u64) {
        let slot = now / self.slice_nanos;
        let Some(slice) = self.slices.get((slot % SLICES) as usize) else {
            return;
        };
        let held = slice.slot.load(Ordering::Acquire);
        if held != slot {
            if held == RECYCLING || (held != EMPTY && held > slot) {
                // Being recycled, or already past this sample's slot: drop the sample.
                return;
            }
            match slice
                .slot
                .compare_exchange(held, RECYCLING, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    for count in &slice.counts {
                        count.store(0, Ordering::Relaxed);
                    }
                    slice.slot.store(slot, Ordering::Release);
                }
                // Another thread moved it to this very slot first: count here.
                Err(now_held) if now_held == slot => {}
                Err(_) => return,
            }
        }
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        if let Some(count) = slice.counts.get(bucket_of(micros)) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether the caller at clock nanoseconds `now` should recompute the delay; at most
    /// one caller per refresh interval is told yes.
    #[inline]
    pub(crate) fn claim_refresh(&self, now: u64) -> bool {
        let due = self.cached.next_refresh.load(Ordering::Relaxed);
        now >= due
            && self
                .cached
                .next_refresh
                .compare_exchange(
                    due,
                    now.saturating_add(self.refresh_nanos),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// The cached delay: `None` while the window holds too few samples.
    #[inline]
    pub(crate) fn cached(&self) -> Option<Duration> {
        match self.cached.delay.load(Ordering::Relaxed) {
            NO_DELAY => None,
            micros => Some(Duration::from_micros(micros)),
        }
    }

    /// Recompute the delay from the window as of clock nanoseconds `now` and cache it.
    /// Returns the delays before and after.
    pub(crate) fn refresh(&self, now: u64) -> (Option<Duration>, Option<Duration>) {
        let mut merged = [0u64; BUCKETS];
        let total = self.merge(now, &mut merged);
        let micros = if total < self.min_samples {
            NO_DELAY
        } else {
            percentile_of(&merged, total, self.percentile).unwrap_or(NO_DELAY)
        };
        let before = self.cached.delay.swap(micros, Ordering::Relaxed);
        let as_delay = |m: u64| (m != NO_DELAY).then(|| Duration::from_micros(m));
        (as_delay(before), as_delay(micros))
    }

    /// The latencies in the window as of clock nanoseconds `now`.
    pub(crate) fn samples(&self, now: u64) -> u64 {
        let mut merged = [0u64; BUCKETS];
        self.merge(now, &mut merged)
    }

    /// The counts of the slices still in the window at `now`, added into `merged`; the
    /// total.
    fn merge(&self, now: u64, merged: &mut [u64; BUCKETS]) -> u64 {
        let current = now / self.slice_nanos;
        let mut total = 0u64;
        for slice in self.slices.iter() {
            let held = slice.slot.load(Ordering::Acquire);
            if held == EMPTY || held == RECYCLING || held.saturating_add(SLICES) <= current {
                continue;
            }
            for (sum, count) in merged.iter_mut().zip(slice.counts.iter()) {
                let n = count.load(Ordering::Relaxed);
                *sum = sum.saturating_add(n);
                total = total.saturating_add(n);
            }
        }
        total
    }
}

/// The `p`-th percentile, in µs, of `total` samples counted in `counts`: the upper edge
/// of the bucket holding the sample of rank `ceil(p * total)`.
pub(crate) fn percentile_of(counts: &[u64; BUCKETS], total: u64, p: f64) -> Option<u64> {
    if total == 0 {
        return None;
    }
    let rank = ((p * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0u64;
    for (bucket, &count) in counts.iter().enumerate() {
        seen = seen.saturating_add(count);
        if seen >= rank {
            return Some(upper_edge(bucket));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(window_ms: u64, p: f64, min: u64) -> LatencyWindow {
        let window = Duration::from_millis(window_ms);
        LatencyWindow::new(
            p,
            min,
            LatencyWindow::slice_nanos(window).expect("valid window"),
        )
    }

    /// A seeded SplitMix64 stream.
    fn rng(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
    }

    #[test]
    fn buckets_tile_the_range_in_order() {
        assert_eq!(BUCKETS, 464);
        // Every bucket starts just after the previous one ends.
        let mut next = 0u64;
        for bucket in 0..BUCKETS {
            assert_eq!(bucket_of(next), bucket, "first value of bucket {bucket}");
            let edge = upper_edge(bucket);
            assert!(edge >= next);
            assert_eq!(bucket_of(edge), bucket, "last value of bucket {bucket}");
            next = edge + 1;
        }
        assert_eq!(next, 1 << MAX_EXP);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(upper_edge(BUCKETS - 1), MAX_MICROS);
    }

    #[test]
    fn values_below_32_us_are_exact() {
        for v in 0..32 {
            assert_eq!(upper_edge(bucket_of(v)), v);
        }
    }

    #[test]
    fn a_bucket_is_at_most_one_sixteenth_wide() {
        let mut next = rng(7);
        for _ in 0..100_000 {
            let v = next() % MAX_MICROS;
            let edge = upper_edge(bucket_of(v));
            assert!(edge >= v);
            assert!(
                (edge - v) * SUB <= v,
                "{v} µs reported as {edge} µs: more than 1/16 above"
            );
        }
    }

    #[test]
    fn percentile_of_a_known_distribution_within_precision() {
        let mut next = rng(42);
        let mut samples: Vec<u64> = (0..10_000).map(|_| 100 + next() % 500_000).collect();
        let mut counts = [0u64; BUCKETS];
        for &s in &samples {
            counts[bucket_of(s)] += 1;
        }
        samples.sort_unstable();
        for p in [0.5, 0.9, 0.95, 0.99, 0.999] {
            let rank = (p * samples.len() as f64).ceil() as usize;
            let truth = samples[rank - 1];
            let estimate = percentile_of(&counts, samples.len() as u64, p).unwrap();
            assert!(
                estimate >= truth && (estimate - truth) * SUB <= truth,
                "p{p}: estimate {estimate} µs, truth {truth} µs"
            );
        }
        assert_eq!(percentile_of(&[0; BUCKETS], 0, 0.5), None);
    }

    #[test]
    fn no_delay_until_min_samples() {
        let w = window(6_000, 0.5, 3);
        let ms = 1_000_000;
        w.record(Duration::from_millis(10), ms);
        w.record(Duration::from_millis(20), ms);
        assert_eq!(w.refresh(2 * ms), (None, None));
        w.record(Duration::from_millis(30), 3 * ms);
        let (before, after) = w.refresh(4 * ms);
        assert_eq!(before, None);
        let delay = after.unwrap();
        assert!(delay >= Duration::from_millis(20) && delay <= Duration::from_micros(21_250));
        assert_eq!(w.cached(), after);
        assert_eq!(w.samples(4 * ms), 3);
    }

    #[test]
    fn old_slices_leave_the_window() {
        // Slices of 1 s; a latency counts while its slot is one of the last six.
        let w = window(6_000, 0.5, 1);
        let s = 1_000_000_000;
        w.record(Duration::from_millis(10), 0);
        w.record(Duration::from_millis(500), 3 * s);
        assert_eq!(w.samples(5 * s + s / 2), 2);
        assert_eq!(w.samples(6 * s), 1, "slot 0 left the window");
        assert_eq!(w.samples(9 * s), 0, "slot 3 left the window");
        assert_eq!(w.refresh(9 * s).1, None);
        // A new latency in a recycled slice does not count the old ones again.
        w.record(Duration::from_millis(40), 12 * s);
        assert_eq!(w.samples(12 * s), 1);
        let delay = w.refresh(12 * s).1.unwrap();
        assert!(delay >= Duration::from_millis(40) && delay <= Duration::from_millis(43));
    }

    #[test]
    fn late_samples_are_dropped_not_misfiled() {
        let w = window(6_000, 0.5, 1);
        let s = 1_000_000_000;
        w.record(Duration::from_millis(10), 7 * s); // slot 7, slice 1
        w.record(Duration::from_millis(10), s); // slot 1: its slice now holds slot 7
        assert_eq!(w.samples(7 * s), 1);
    }

    #[test]
    fn refresh_is_claimed_once_per_interval() {
        let w = window(600, 0.5, 1); // slices of 100 ms: refresh every 100 ms
        let ms = 1_000_000;
        assert!(w.claim_refresh(0));
        assert!(!w.claim_refresh(0));
        assert!(!w.claim_refresh(99 * ms));
        assert!(w.claim_refresh(100 * ms));
        assert!(!w.claim_refresh(150 * ms));
        let long = window(60_000, 0.5, 1); // slices of 10 s: refresh every second
        assert!(long.claim_refresh(0));
        assert!(!long.claim_refresh(999 * ms));
        assert!(long.claim_refresh(1_000 * ms));
    }

    #[test]
    fn many_threads_record_without_losing_counts_within_a_slot() {
        let w = std::sync::Arc::new(window(6_000, 0.5, 1));
        // The slice is moved to slot 0 first: a sample racing that move may be dropped.
        w.record(Duration::from_millis(1), 5);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    let mut next = rng(t);
                    for _ in 0..10_000 {
                        w.record(Duration::from_micros(next() % 1_000_000), 5);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Within one slot, no sample is lost however many threads record.
        assert_eq!(w.samples(5), 80_001);
    }
}
