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
//! The window is kept in [`SLICES`] slices, each a set of bucket counters tagged with
//! the time slot it holds (as the retry budget's buckets are). Recording a latency is one
//! `fetch_add` on the counter of its bucket in the current slice, after one load of the
//! slice's tag and one of its octave's pointer. The first recording in a new slot
//! recycles the slice: it claims it (tag `RECYCLING`), zeroes its counters, and
//! publishes the new slot.
//!
//! # Memory
//!
//! The counters are allocated an octave (a power of two: 16 buckets, for all six slices,
//! 768 bytes) at a time, on the first latency that falls in it, and kept for the
//! window's life. A downstream's latencies span a few powers of two (1 ms to 64 ms is
//! six), so a window in use holds a few kilobytes, and one never used holds none: the
//! full histogram (29 octaves, 22 KB) would be paid by every hedging policy built, used
//! or not, for octaves that no latency reaches. The first latency in an octave allocates
//! it (once per octave per window); a thread recording in that octave at that moment
//! waits for the pointer to be published (a `OnceLock`), a few instructions. Samples that
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
use std::sync::OnceLock;
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

/// Octaves of buckets (the 16 exact buckets below 16 µs count as the first).
const OCTAVES: usize = BUCKETS / SUB as usize;

/// The counters of one octave's 16 buckets in one slice: two cache lines.
#[derive(Debug)]
#[repr(align(128))]
struct Counters([AtomicU64; SUB as usize]);

/// The counters of one octave, for every slice; allocated on its first latency.
#[derive(Debug)]
struct Octave {
    slices: [Counters; SLICES as usize],
}

impl Octave {
    #[cold]
    fn new() -> Box<Self> {
        Box::new(Self {
            slices: std::array::from_fn(|_| Counters(std::array::from_fn(|_| AtomicU64::new(0)))),
        })
    }
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
    /// The time slot each slice counts (or [`EMPTY`], [`RECYCLING`]).
    slots: CachePadded<[AtomicU64; SLICES as usize]>,
    octaves: [OnceLock<Box<Octave>>; OCTAVES],
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
            slots: CachePadded::new(std::array::from_fn(|_| AtomicU64::new(EMPTY))),
            octaves: std::array::from_fn(|_| OnceLock::new()),
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
        let index = (slot % SLICES) as usize;
        let Some(tag) = self.slots.get(index) else {
            return;
        };
        let held = tag.load(Ordering::Acquire);
        if held != slot {
            if held == RECYCLING || (held != EMPTY && held > slot) {
                // Being recycled, or already past this sample's slot: drop the sample.
                return;
            }
            match tag.compare_exchange(held, RECYCLING, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    for octave in self.octaves.iter().filter_map(OnceLock::get) {
                        if let Some(counters) = octave.slices.get(index) {
                            for count in &counters.0 {
                                count.store(0, Ordering::Relaxed);
                            }
                        }
                    }
                    tag.store(slot, Ordering::Release);
                }
                // Another thread moved it to this very slot first: count here.
                Err(now_held) if now_held == slot => {}
                Err(_) => return,
            }
        }
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let bucket = bucket_of(micros);
        let Some(octave) = self.octaves.get(bucket / SUB as usize) else {
            return;
        };
        let octave = octave.get_or_init(Octave::new);
        if let Some(count) = octave
            .slices
            .get(index)
            .and_then(|counters| counters.0.get(bucket % SUB as usize))
        {
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
        let live = self.slots.each_ref().map(|tag| {
            let held = tag.load(Ordering::Acquire);
            held != EMPTY && held != RECYCLING && held.saturating_add(SLICES) > current
        });
        let mut total = 0u64;
        for (octave, sums) in self.octaves.iter().zip(merged.chunks_mut(SUB as usize)) {
            let Some(octave) = octave.get() else {
                continue;
            };
            for (counters, _) in octave.slices.iter().zip(live).filter(|(_, live)| *live) {
                for (sum, count) in sums.iter_mut().zip(counters.0.iter()) {
                    let n = count.load(Ordering::Relaxed);
                    *sum = sum.saturating_add(n);
                    total = total.saturating_add(n);
                }
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
    fn octaves_are_allocated_on_their_first_latency_only() {
        let w = window(6_000, 0.5, 1);
        let allocated = |w: &LatencyWindow| w.octaves.iter().filter(|o| o.get().is_some()).count();
        assert_eq!(allocated(&w), 0, "a window never used holds no counters");
        let s = 1_000_000_000;
        // 1.1 to 2.0 ms: one octave (1024..2047 µs), in every slice.
        for i in 0..60 {
            w.record(Duration::from_micros(1_100 + 15 * i), i * s / 10);
        }
        assert_eq!(allocated(&w), 1);
        w.record(Duration::from_millis(40), 6 * s);
        assert_eq!(allocated(&w), 2);
        // A recycled slice forgets its counts in every octave.
        assert_eq!(w.samples(6 * s), 5 * 10 + 1);
        let delay = w.refresh(6 * s).1.unwrap();
        assert!(delay < Duration::from_millis(2), "{delay:?}");
        assert_eq!(
            std::mem::size_of::<Octave>(),
            SLICES as usize * SUB as usize * 8
        );
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
